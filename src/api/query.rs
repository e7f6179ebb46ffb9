//! Prometheus' HTTP query API over the in-memory store, so Grafana's Prometheus data
//! source (and `promtool`, and scripts written for Prometheus) work against watchpost.
//!
//! Every query endpoint accepts GET with URL parameters and POST with a form body
//! (Grafana's default), merged like Prometheus' `r.FormValue`. Responses are
//! `{"status":"success","data":…}`; errors `{"status":"error","errorType":…,"error":…}`
//! with 400 `bad_data` for bad input (a parse error carries the parser's message), 422
//! `execution` for queries that cannot be evaluated on the data.
//!
//! Range query results are cached (moka) by query, start, end and step. An entry whose
//! end is well in the past cannot change and lives for a minute; one whose end is
//! recent lives one collection interval, the time before new samples could land in it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;

use axum::Router;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use moka::notification::RemovalCause;
use promql_parser::label::Matcher;
use promql_parser::parser::Expr;
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde_json::json;

use super::AppState;
use crate::metrics::CacheMetrics;
use crate::promql::{self, EvalError, Value, format_float};
use crate::tsdb::Labels;

/// `cache` label of the range-query cache.
pub const RANGE_CACHE: &str = "query_range";
/// Size budget of the range-query cache (encoded JSON bytes).
const RANGE_CACHE_BYTES: u64 = 32 * 1024 * 1024;
/// How long a settled range result (end well in the past) stays cached.
const SETTLED_TTL: Duration = Duration::from_secs(60);

/// A Prometheus API error.
#[derive(Debug)]
pub struct PromError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl PromError {
    /// 400 `bad_data`.
    pub fn bad_data(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "bad_data",
            message: message.into(),
        }
    }

    fn param(name: &str, msg: impl std::fmt::Display) -> Self {
        Self::bad_data(format!("invalid parameter \"{name}\": {msg}"))
    }
}

impl From<EvalError> for PromError {
    fn from(e: EvalError) -> Self {
        match e {
            EvalError::Unsupported(_) | EvalError::BadQuery(_) => Self::bad_data(e.to_string()),
            EvalError::Execution(_) | EvalError::TooManySamples => Self {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                kind: "execution",
                message: e.to_string(),
            },
            EvalError::Timeout(_) => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                kind: "timeout",
                message: e.to_string(),
            },
        }
    }
}

impl IntoResponse for PromError {
    fn into_response(self) -> Response {
        let body = json!({"status": "error", "errorType": self.kind, "error": self.message});
        (self.status, axum::Json(body)).into_response()
    }
}

fn success<T: Serialize>(data: T) -> Response {
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

/// URL and form parameters, in order (repeated keys such as `match[]` allowed).
pub struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = PromError;

    async fn from_request(req: Request, state: &S) -> Result<Self, PromError> {
        let mut pairs: Vec<(String, String)> = req
            .uri()
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let is_form = req.method() == Method::POST
            && req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            let body = Bytes::from_request(req, state)
                .await
                .map_err(|e| PromError {
                    status: e.status(),
                    kind: "bad_data",
                    message: format!("error reading form body: {}", e.body_text()),
                })?;
            // Form values take precedence, as in Go's `r.FormValue`.
            let mut form: Vec<(String, String)> =
                form_urlencoded::parse(&body).into_owned().collect();
            form.extend(pairs);
            pairs = form;
        }
        Ok(Params(pairs))
    }
}

/// Parses a Prometheus API timestamp: Unix seconds (float) or RFC 3339.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() {
            return Err(format!("cannot parse {s:?} to a valid timestamp"));
        }
        let ms = (secs * 1000.0).round();
        if ms.abs() > 9.0e15 {
            return Err(format!("cannot parse {s:?} to a valid timestamp"));
        }
        return Ok(ms as i64);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp_millis())
        .map_err(|_| format!("cannot parse {s:?} to a valid timestamp"))
}

/// Parses a Prometheus API duration: float seconds or `1m30s`-style.
pub fn parse_step(s: &str) -> Result<i64, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() {
            return Err(format!("cannot parse {s:?} to a valid duration"));
        }
        let ms = (secs * 1000.0).round();
        if ms.abs() > 9.0e15 {
            return Err(format!(
                "cannot parse {s:?} to a valid duration. It overflows int64"
            ));
        }
        return Ok(ms as i64);
    }
    promql_parser::util::parse_duration(s)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .map_err(|e| format!("cannot parse {s:?} to a valid duration: {e}"))
}

fn time_param(p: &Params, name: &str, default: i64) -> Result<i64, PromError> {
    match p.get(name) {
        None => Ok(default),
        Some(s) => parse_time(s).map_err(|e| PromError::param(name, e)),
    }
}

fn required_time(p: &Params, name: &str) -> Result<i64, PromError> {
    let s = p
        .get(name)
        .ok_or_else(|| PromError::param(name, "missing value"))?;
    parse_time(s).map_err(|e| PromError::param(name, e))
}

fn parse_query(p: &Params) -> Result<(String, Expr), PromError> {
    let q = p
        .get("query")
        .ok_or_else(|| PromError::param("query", "missing value"))?;
    let expr = promql::parse(q).map_err(PromError::bad_data)?;
    Ok((q.to_string(), expr))
}

/// Parses every `match[]` selector.
fn matchers(p: &Params) -> Result<Vec<Vec<Matcher>>, PromError> {
    p.all("match[]")
        .into_iter()
        .map(|s| parse_selector(s).map_err(|e| PromError::param("match[]", e)))
        .collect()
}

/// Parses a series selector (`up{job="x"}`) into its matchers, name included.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>, String> {
    match promql::parse(s)? {
        Expr::VectorSelector(vs) => {
            if !vs.matchers.or_matchers.is_empty() {
                return Err("`or` inside label matchers is not supported".into());
            }
            let mut m = vs.matchers.matchers.clone();
            if let Some(name) = &vs.name {
                m.push(Matcher::new(
                    promql_parser::label::MatchOp::Equal,
                    crate::tsdb::METRIC_NAME,
                    name,
                ));
            }
            Ok(m)
        }
        _ => Err(format!("{s:?} is not a series selector")),
    }
}

fn limit(p: &Params) -> Result<Option<usize>, PromError> {
    match p.get("limit") {
        None => Ok(None),
        Some(s) => match s.parse::<usize>() {
            Ok(0) => Ok(None),
            Ok(n) => Ok(Some(n)),
            Err(_) => Err(PromError::param(
                "limit",
                "cannot parse as a non-negative integer",
            )),
        },
    }
}

fn now_ms() -> i64 {
    crate::store::now_ms()
}

/// Runs a CPU-bound evaluation off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EvalError> + Send + 'static,
) -> Result<T, PromError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(PromError::from),
        Err(e) => {
            tracing::error!(error = %e, "query evaluation panicked");
            Err(PromError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                kind: "internal",
                message: "query evaluation failed".into(),
            })
        }
    }
}

/// Admission of PromQL evaluations: at most `query.max_concurrency` at once (others
/// wait, as in Prometheus' active query tracker), each ending by its deadline —
/// `query.timeout`, or the request's own `timeout` if shorter — queueing included.
#[derive(Clone)]
pub struct QueryGate {
    permits: Arc<tokio::sync::Semaphore>,
    timeout: Duration,
}

impl QueryGate {
    /// A gate from `[query]`.
    pub fn new(config: &crate::config::QueryConfig) -> Self {
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(config.max_concurrency)),
            timeout: config.timeout,
        }
    }

    /// Evaluates `f` on an engine bounded by this request's deadline.
    async fn run<T: Send + 'static>(
        &self,
        engine: &promql::Engine,
        params: &Params,
        f: impl FnOnce(promql::Engine) -> Result<T, EvalError> + Send + 'static,
    ) -> Result<T, PromError> {
        let timeout = match params.get("timeout") {
            None => self.timeout,
            Some(s) => {
                let ms = parse_step(s).map_err(|e| PromError::param("timeout", e))?;
                let ms = u64::try_from(ms)
                    .map_err(|_| PromError::param("timeout", "must not be negative"))?;
                self.timeout.min(Duration::from_millis(ms))
            }
        };
        let deadline = Instant::now() + timeout;
        let permit = tokio::time::timeout_at(deadline.into(), self.permits.clone().acquire_owned())
            .await
            .map_err(|_| PromError::from(EvalError::Timeout("query queue")))?
            .map_err(|_| PromError::from(EvalError::Timeout("query queue")))?;
        let engine = engine.until(deadline);
        blocking(move || {
            let _permit = permit;
            f(engine)
        })
        .await
    }
}

/// `GET|POST /api/v1/query`.
async fn query(
    State(state): State<AppState>,
    axum::Extension(gate): axum::Extension<QueryGate>,
    params: Params,
) -> Result<Response, PromError> {
    let (_, expr) = parse_query(&params)?;
    let t = time_param(&params, "time", now_ms())?;
    let value = gate
        .run(&state.engine, &params, move |e| e.instant(&expr, t))
        .await?;
    Ok(success(InstantResult { value: &value, t }))
}

/// Cache key of a range query.
#[derive(Clone, PartialEq, Eq, Hash)]
struct RangeKey {
    query: Arc<str>,
    start: i64,
    end: i64,
    step: i64,
}

/// A cached range result (encoded JSON) and how long it may be served.
#[derive(Clone)]
struct Cached {
    body: Bytes,
    ttl: Duration,
}

/// Per-entry lifetime: settled results live longer than ones near "now".
struct CachedExpiry;

impl Expiry<RangeKey, Cached> for CachedExpiry {
    fn expire_after_create(&self, _: &RangeKey, value: &Cached, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Range-query cache with `watchpost_cache_*` accounting.
#[derive(Clone)]
pub struct RangeCache {
    cache: moka::sync::Cache<RangeKey, Cached>,
    metrics: CacheMetrics,
    /// Entries whose end is within this of now may still receive samples.
    settle_ms: i64,
    fresh_ttl: Duration,
}

impl RangeCache {
    /// A cache for a store fed every `collect_interval`.
    pub fn new(metrics: CacheMetrics, collect_interval: Duration) -> Self {
        let evictions = metrics.evictions.with_label_values(&[RANGE_CACHE]);
        let cache = moka::sync::Cache::builder()
            .name(RANGE_CACHE)
            .max_capacity(RANGE_CACHE_BYTES)
            .weigher(|_k: &RangeKey, v: &Cached| {
                u32::try_from(v.body.len()).unwrap_or(u32::MAX).max(1)
            })
            .expire_after(CachedExpiry)
            .eviction_listener(move |_k, _v, cause| {
                if matches!(
                    cause,
                    RemovalCause::Expired | RemovalCause::Size | RemovalCause::Explicit
                ) {
                    evictions.inc();
                }
            })
            .build();
        metrics.entries.with_label_values(&[RANGE_CACHE]).set(0);
        for result in ["hit", "miss"] {
            metrics.requests.with_label_values(&[RANGE_CACHE, result]);
        }
        metrics.evictions.with_label_values(&[RANGE_CACHE]);
        let collect_ms = i64::try_from(collect_interval.as_millis()).unwrap_or(i64::MAX);
        Self {
            cache,
            metrics,
            settle_ms: collect_ms.saturating_mul(2).saturating_add(5_000),
            fresh_ttl: collect_interval.max(Duration::from_millis(100)),
        }
    }

    fn get(&self, key: &RangeKey) -> Option<Bytes> {
        let hit = self.cache.get(key).map(|c| c.body);
        let result = if hit.is_some() { "hit" } else { "miss" };
        self.metrics
            .requests
            .with_label_values(&[RANGE_CACHE, result])
            .inc();
        hit
    }

    fn insert(&self, key: RangeKey, body: Bytes) {
        let ttl = if key.end < now_ms() - self.settle_ms {
            SETTLED_TTL
        } else {
            self.fresh_ttl
        };
        self.cache.insert(key, Cached { body, ttl });
        self.cache.run_pending_tasks();
        self.update_entries();
    }

    fn update_entries(&self) {
        self.metrics
            .entries
            .with_label_values(&[RANGE_CACHE])
            .set(i64::try_from(self.cache.entry_count()).unwrap_or(i64::MAX));
    }
}

/// `GET|POST /api/v1/query_range`.
async fn query_range(
    State(state): State<AppState>,
    axum::Extension(cache): axum::Extension<RangeCache>,
    axum::Extension(gate): axum::Extension<QueryGate>,
    params: Params,
) -> Result<Response, PromError> {
    let (q, expr) = parse_query(&params)?;
    let start = required_time(&params, "start")?;
    let end = required_time(&params, "end")?;
    let step_s = params
        .get("step")
        .ok_or_else(|| PromError::param("step", "missing value"))?;
    let step = parse_step(step_s).map_err(|e| PromError::param("step", e))?;
    if end < start {
        return Err(PromError::param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    if step <= 0 {
        return Err(PromError::param(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end - start) / step > promql::MAX_POINTS_PER_SERIES {
        return Err(PromError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let key = RangeKey {
        query: q.into(),
        start,
        end,
        step,
    };
    if let Some(body) = cache.get(&key) {
        return Ok(json_bytes(body));
    }
    let value = gate
        .run(&state.engine, &params, move |e| {
            e.range(&expr, start, end, step)
        })
        .await?;
    let body = serde_json::to_vec(&SuccessBody {
        data: RangeResult { value: &value },
    })
    .map_err(|e| PromError::bad_data(format!("encoding result: {e}")))?;
    let body = Bytes::from(body);
    cache.insert(key, body.clone());
    Ok(json_bytes(body))
}

fn json_bytes(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `GET|POST /api/v1/series`.
async fn series(State(state): State<AppState>, params: Params) -> Result<Response, PromError> {
    let sets = matchers(&params)?;
    if sets.is_empty() {
        return Err(PromError::bad_data("no match[] parameter provided"));
    }
    let mint = time_param(&params, "start", i64::MIN)?;
    let maxt = time_param(&params, "end", i64::MAX)?;
    let limit = limit(&params)?;
    let tsdb = state.tsdb.clone();
    let out = blocking(move || {
        let mut found: Vec<Labels> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for set in &sets {
            for s in tsdb.select(set) {
                if s.overlaps(mint, maxt) && seen.insert(s.labels().clone()) {
                    found.push(s.labels().clone());
                }
            }
        }
        found.sort();
        if let Some(n) = limit {
            found.truncate(n);
        }
        Ok(found)
    })
    .await?;
    Ok(success(out))
}

/// `GET|POST /api/v1/labels`.
async fn labels(State(state): State<AppState>, params: Params) -> Result<Response, PromError> {
    let sets = matchers(&params)?;
    let mint = time_param(&params, "start", i64::MIN)?;
    let maxt = time_param(&params, "end", i64::MAX)?;
    let limit = limit(&params)?;
    let tsdb = state.tsdb.clone();
    let mut names = blocking(move || Ok(tsdb.label_names(&sets, mint, maxt))).await?;
    if let Some(n) = limit {
        names.truncate(n);
    }
    Ok(success(names))
}

/// `GET /api/v1/label/{name}/values`.
async fn label_values(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, PromError> {
    // Prometheus accepts `U__`-escaped names for UTF-8; plain names are the common case.
    if !crate::promql::is_valid_label_name(&name) {
        return Err(PromError::bad_data(format!("invalid label name: {name:?}")));
    }
    let sets = matchers(&params)?;
    let mint = time_param(&params, "start", i64::MIN)?;
    let maxt = time_param(&params, "end", i64::MAX)?;
    let limit = limit(&params)?;
    let tsdb = state.tsdb.clone();
    let mut values = blocking(move || Ok(tsdb.label_values(&name, &sets, mint, maxt))).await?;
    if let Some(n) = limit {
        values.truncate(n);
    }
    Ok(success(values))
}

/// `GET /api/v1/status/buildinfo`. The `version` is the Prometheus API level watchpost
/// implements (Grafana gates features on it); watchpost's own is `watchpostVersion`.
async fn buildinfo() -> Response {
    success(json!({
        "version": "2.53.0",
        "revision": "",
        "branch": "",
        "buildUser": "watchpost",
        "buildDate": "",
        "goVersion": "n/a (watchpost is written in Rust)",
        "application": "watchpost",
        "watchpostVersion": env!("CARGO_PKG_VERSION"),
    }))
}

/// When this process started serving the API (for `runtimeinfo`).
static STARTED: std::sync::OnceLock<chrono::DateTime<chrono::Utc>> = std::sync::OnceLock::new();

/// `GET /api/v1/status/runtimeinfo`.
async fn runtimeinfo(State(state): State<AppState>) -> Response {
    let started = STARTED.get_or_init(chrono::Utc::now);
    success(json!({
        "startTime": started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "CWD": std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default(),
        "reloadConfigSuccess": true,
        "lastConfigTime": started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "corruptionCount": 0,
        "goroutineCount": 0,
        "GOMAXPROCS": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "GOGC": "",
        "GODEBUG": "",
        "storageRetention": humantime::format_duration(state.config.tsdb.retention).to_string(),
    }))
}

/// `GET /api/v1/status/tsdb`: store statistics (Prometheus' head stats plus sizes).
async fn tsdb_status(State(state): State<AppState>) -> Result<Response, PromError> {
    let tsdb = state.tsdb.clone();
    let stats = blocking(move || Ok(tsdb.stats())).await?;
    let bytes_per_sample = if stats.samples > 0 {
        stats.chunk_bytes as f64 / stats.samples as f64
    } else {
        0.0
    };
    Ok(success(json!({
        "headStats": {
            "numSeries": stats.series,
            "chunkCount": stats.chunks,
            "numSamples": stats.samples,
            "chunkBytes": stats.chunk_bytes,
            "bytesPerSample": bytes_per_sample,
            "maxTime": state.tsdb.max_time().unwrap_or(0),
        },
        "retention": humantime::format_duration(state.config.tsdb.retention).to_string(),
    })))
}

/// `GET /api/v1/metadata`: type and help of every family in the registry.
async fn metadata(State(state): State<AppState>, params: Params) -> Response {
    use prometheus::proto::MetricType;
    let only = params.get("metric").map(str::to_string);
    let limit = params.get("limit").and_then(|l| l.parse::<usize>().ok());
    let mut out = serde_json::Map::new();
    for family in state.metrics.gather() {
        let name = family.name().to_string();
        if only.as_ref().is_some_and(|m| *m != name) {
            continue;
        }
        if limit.is_some_and(|l| l > 0 && out.len() >= l) {
            break;
        }
        let kind = match family.get_field_type() {
            MetricType::COUNTER => "counter",
            MetricType::GAUGE => "gauge",
            MetricType::HISTOGRAM => "histogram",
            MetricType::SUMMARY => "summary",
            MetricType::UNTYPED => "unknown",
        };
        out.insert(
            name,
            json!([{"type": kind, "help": family.help(), "unit": ""}]),
        );
    }
    success(out)
}

/// `GET /api/v1/query_exemplars`: watchpost stores no exemplars.
async fn exemplars() -> Response {
    success(Vec::<()>::new())
}

/// The query API routes (merged into the main router).
pub fn routes(state: &AppState) -> Router<AppState> {
    STARTED.get_or_init(chrono::Utc::now);
    let cache = RangeCache::new(state.metrics.cache.clone(), state.config.collect.interval);
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/api/v1/status/runtimeinfo", get(runtimeinfo))
        .route("/api/v1/status/tsdb", get(tsdb_status))
        .route("/api/v1/metadata", get(metadata))
        .route("/api/v1/query_exemplars", get(exemplars).post(exemplars))
        .layer(axum::Extension(cache))
        .layer(axum::Extension(QueryGate::new(&state.config.query)))
}

// ---- JSON shapes -------------------------------------------------------------------

struct SuccessBody<T> {
    data: T,
}

impl<T: Serialize> Serialize for SuccessBody<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("status", "success")?;
        m.serialize_entry("data", &self.data)?;
        m.end()
    }
}

/// Unix seconds from milliseconds as Prometheus writes them: a whole number without a
/// fraction (`1700000000`), else the shortest decimal (`1700000000.25`).
struct UnixSeconds(i64);

impl Serialize for UnixSeconds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 % 1000 == 0 {
            s.serialize_i64(self.0 / 1000)
        } else {
            s.serialize_f64(self.0 as f64 / 1000.0)
        }
    }
}

/// `[<unix seconds>, "<value>"]`.
struct PointJson(i64, f64);

impl Serialize for PointJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(2))?;
        seq.serialize_element(&UnixSeconds(self.0))?;
        seq.serialize_element(&format_float(self.1))?;
        seq.end()
    }
}

struct StringPoint<'a>(i64, &'a str);

impl Serialize for StringPoint<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(2))?;
        seq.serialize_element(&UnixSeconds(self.0))?;
        seq.serialize_element(self.1)?;
        seq.end()
    }
}

struct SeriesJson<'a> {
    labels: &'a Labels,
    points: &'a [(i64, f64)],
}

impl Serialize for SeriesJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("metric", self.labels)?;
        m.serialize_entry("values", &Points(self.points))?;
        m.end()
    }
}

struct Points<'a>(&'a [(i64, f64)]);

impl Serialize for Points<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|&(t, v)| PointJson(t, v)))
    }
}

struct SampleJson<'a> {
    labels: &'a Labels,
    t: i64,
    value: f64,
}

impl Serialize for SampleJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("metric", self.labels)?;
        m.serialize_entry("value", &PointJson(self.t, self.value))?;
        m.end()
    }
}

/// `{"resultType": …, "result": …}` of an instant query evaluated at `t`.
struct InstantResult<'a> {
    value: &'a Value,
    t: i64,
}

impl Serialize for InstantResult<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("resultType", self.value.type_name())?;
        match self.value {
            Value::Scalar(v) => m.serialize_entry("result", &PointJson(self.t, *v))?,
            Value::String(v) => m.serialize_entry("result", &StringPoint(self.t, v))?,
            Value::Vector(v) => m.serialize_entry(
                "result",
                &Seq(v.iter().map(|smp| SampleJson {
                    labels: &smp.labels,
                    t: self.t,
                    value: smp.value,
                })),
            )?,
            Value::Matrix(mx) => m.serialize_entry(
                "result",
                &Seq(mx.iter().map(|se| SeriesJson {
                    labels: &se.labels,
                    points: &se.points,
                })),
            )?,
        }
        m.end()
    }
}

/// `{"resultType": "matrix", "result": […]}` of a range query.
struct RangeResult<'a> {
    value: &'a Value,
}

impl Serialize for RangeResult<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("resultType", "matrix")?;
        match self.value {
            Value::Matrix(mx) => m.serialize_entry(
                "result",
                &Seq(mx.iter().map(|se| SeriesJson {
                    labels: &se.labels,
                    points: &se.points,
                })),
            )?,
            _ => m.serialize_entry("result", &[] as &[()])?,
        }
        m.end()
    }
}

/// Serializes an iterator as a JSON array (once).
struct Seq<I>(I);

impl<I, T> Serialize for Seq<I>
where
    I: Iterator<Item = T> + Clone,
    T: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_steps() {
        assert_eq!(parse_time("1435781451.781"), Ok(1_435_781_451_781));
        assert_eq!(parse_time("1435781451"), Ok(1_435_781_451_000));
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z"),
            Ok(1_435_781_451_781)
        );
        assert_eq!(
            parse_time("2015-07-01T22:10:51+02:00"),
            Ok(1_435_781_451_000)
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("NaN").is_err());
        assert_eq!(parse_step("15"), Ok(15_000));
        assert_eq!(parse_step("0.5"), Ok(500));
        assert_eq!(parse_step("1m30s"), Ok(90_000));
        assert_eq!(parse_step("-1"), Ok(-1_000));
        assert!(parse_step("abc").is_err());
        assert!(parse_step("inf").is_err());
    }

    #[test]
    fn selectors() {
        let m = parse_selector(r#"up{job="a"}"#).unwrap();
        assert_eq!(m.len(), 2);
        assert!(parse_selector("sum(up)").is_err());
        assert!(parse_selector("up{").is_err());
    }
}
