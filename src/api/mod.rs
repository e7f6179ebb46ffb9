//! The HTTP API: router assembly, shared state, and one module per resource.
//!
//! Handlers are thin: they parse, check permissions, and call the service layer.

mod agents;
pub mod alerts;
pub mod audit;
pub mod auth;
pub mod chart;
pub mod cluster;
pub mod error;
pub mod groups;
mod health;
mod heartbeats;
pub mod ingest;
pub mod query;
pub mod reports;
mod rules;
pub mod silences;
pub mod stream;
mod write;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;

use crate::collect::CollectLoop;
use crate::config::Config;
use crate::events::EventBus;
use crate::metrics::Metrics;
use crate::metrics::http::HttpMetricsLayer;
use crate::promql::Engine;
use crate::store::Db;
use crate::tsdb::Tsdb;
pub use error::{ApiError, Json};

/// Shared state of every handler. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Effective configuration.
    pub config: Arc<Config>,
    /// Metric registry.
    pub metrics: Metrics,
    /// Database.
    pub db: Db,
    /// Alert events for live subscribers.
    pub events: EventBus,
    /// The collection loop (tick notifications for live samples).
    pub collect: CollectLoop,
    /// The in-memory time-series store (self-scraped metrics, rule results).
    pub tsdb: Tsdb,
    /// PromQL over `tsdb`.
    pub engine: Engine,
    /// Timestamp (Unix ms) of the latest self-scrape into `tsdb`: the stream's ticks.
    pub scraped: tokio::sync::watch::Receiver<i64>,
    /// Rule groups (`/api/v1/rules`, `/-/reload`).
    pub rules: crate::rules::RuleManager,
    /// The alert pipeline: ingest, queries, acks, silences, stats, reports.
    pub alerts: crate::alerts::AlertService,
    /// Notification groups, outbox and delivery reports.
    pub notify: crate::notify::NotifyHandle,
    /// Membership and leadership.
    pub cluster: crate::cluster::Cluster,
    /// Static tokens and identity-provider JWTs.
    pub auth: auth::Authenticator,
    /// Remote write into `tsdb` (`POST /api/v1/write`).
    pub remote_write: crate::remote_write::Receiver,
    /// Heartbeats: pings and the list.
    pub heartbeats: crate::heartbeat::Heartbeats,
    /// Agents: their connections and the list.
    pub agents: crate::agent::Agents,
}

/// Builds the router with every route, the JSON 404/405 fallbacks and the middleware.
/// Requests end by `http.request_timeout`, except PromQL queries, which the engine
/// ends by `query.timeout` with Prometheus' own error.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.alerts.max_body_bytes;
    let http_metrics = HttpMetricsLayer::new(state.metrics.http.clone());
    let samples: Arc<dyn stream::SampleSource> = Arc::new(stream::EngineSource::new(
        state.engine.clone(),
        state.config.collect.interval,
    ));
    let timeout = state.config.http.request_timeout;
    let timed = Router::new()
        .merge(crate::web::router())
        .merge(stream::router(&state, samples))
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/api/v1/rules", get(rules::list))
        .route("/-/reload", axum::routing::post(rules::reload))
        .merge(alerts::routes())
        .merge(chart::routes())
        .merge(groups::routes())
        .merge(heartbeats::routes())
        .merge(agents::routes())
        .merge(cluster::routes())
        .merge(auth::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            (timeout, "http.request_timeout"),
            request_timeout,
        ));
    // The engine ends evaluations; this only bounds a body that never arrives.
    let backstop = state.config.query.timeout + Duration::from_secs(5);
    let queries = query::routes(&state).layer(middleware::from_fn_with_state(
        (backstop, "query.timeout"),
        request_timeout,
    ));
    let limited = Router::new()
        .merge(queries)
        .merge(timed)
        .layer(middleware::from_fn_with_state(
            (body_limit, "alerts.max_body_bytes"),
            declared_length,
        ))
        .layer(DefaultBodyLimit::max(body_limit));
    Router::new()
        .merge(limited)
        .merge(write::routes(&state).layer(middleware::from_fn_with_state(
            (timeout, "http.request_timeout"),
            request_timeout,
        )))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn(error::json_errors))
        .layer(http_metrics)
}

/// Answers 408 (JSON) when the request, its body included, takes longer than `limit`
/// (set by the config key `knob`).
async fn request_timeout(
    State((limit, knob)): State<(Duration, &'static str)>,
    req: Request,
    next: Next,
) -> axum::response::Response {
    let path = req.uri().path().to_owned();
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => error::error_for(
            &path,
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("request not completed within {limit:?} ({knob})"),
            ),
        ),
    }
}

/// Bodies over the limit read (and dropped) before the 413, so an honest client that is
/// still sending gets the answer instead of a reset connection (as Go's server does).
const DRAIN_BYTES: u64 = 8 * 1024 * 1024;
/// Longest such a body is waited for.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Refuses (413, naming the config key `knob`) a body whose declared `Content-Length`
/// is over `limit` before any handler reads it: at once beyond [`DRAIN_BYTES`], else
/// once it has arrived.
async fn declared_length(
    State((limit, knob)): State<(usize, &'static str)>,
    req: Request,
    next: Next,
) -> axum::response::Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let Some(n) = declared.filter(|n| *n > limit as u64) else {
        return next.run(req).await;
    };
    let path = req.uri().path().to_owned();
    if n <= DRAIN_BYTES {
        use futures_util::StreamExt;
        let mut body = req.into_body().into_data_stream();
        let drain = async { while let Some(Ok(_)) = body.next().await {} };
        let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
    }
    let message =
        format!("request body of {n} bytes exceeds the size limit of {limit} bytes ({knob})");
    error::error_for(&path, ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message))
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> axum::response::Response {
    let message = format!("method {method} not allowed on {}", uri.path());
    error::error_for(
        uri.path(),
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, message),
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    use axum::response::IntoResponse;
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}
