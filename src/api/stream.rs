//! `GET /api/v1/stream`: the dashboard's live feed over a WebSocket.
//!
//! Protocol (JSON text frames; see `docs/dashboard.md`):
//!
//! - client → server: `{"type":"subscribe","series":["system_cpu_usage_ratio", "rate(x[1m])"]}`
//!   replaces the client's set of PromQL expressions (at most [`MAX_SERIES`]).
//! - server → client: `{"type":"hello","interval_ms":…,"server_time":…,"version":…}` once;
//!   then after every self-scrape (each `collect.interval`) one `{"type":"sample","series":EXPR,"labels":{…},"t":MS,"v":X}`
//!   per result series of each subscribed expression followed by `{"type":"tick","t":MS}`;
//!   `{"type":"alert","kind":…,"alert":{…}}` for every alert event; `{"type":"error",
//!   "series":EXPR,"error":…}` when an expression cannot be evaluated (once per change);
//!   `{"type":"lagged","missed":N}` when alert events were lost for this client.
//!   Non-finite values are sent as the strings `"NaN"`, `"+Inf"`, `"-Inf"`.
//!
//! One pump task per app evaluates each distinct expression once per tick, serializes
//! each message once and hands every client a shared batch through a bounded channel.
//! A client whose channel is full (it reads slower than we produce) is disconnected
//! rather than slowing the others or buffering without bound. The server pings every
//! [`PING_EVERY`] and drops a client that stays silent (no pong) for [`IDLE_TIMEOUT`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use prometheus::{IntCounter, IntGauge};
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc, watch};

use super::AppState;
use crate::events::{AlertEvent, EventBus, RelayListeners};
use crate::metrics::Metrics;
use crate::promql::{Engine, Value};

/// Most expressions one client may subscribe to.
pub const MAX_SERIES: usize = 200;
/// Most distinct expressions the stream evaluates per tick, over all clients.
pub const MAX_DISTINCT_EXPRS: usize = 2000;
/// Longest expression accepted.
pub const MAX_EXPR_BYTES: usize = 2048;
/// Batches (ticks or alert events) buffered per client before it counts as too slow.
pub const CLIENT_QUEUE: usize = 64;
/// How often the server pings.
pub const PING_EVERY: Duration = Duration::from_secs(20);
/// A client silent for this long (no pong, no message) is disconnected.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a single write to a client may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest client message.
const MAX_CLIENT_MESSAGE: usize = 256 * 1024;

/// The labels and value of one series at one instant.
pub type Sample = (BTreeMap<String, String>, f64);

/// Evaluates subscribed expressions at a scrape of the tsdb.
pub trait SampleSource: Send + Sync + 'static {
    /// The series of `expr` at `t_ms` (Unix ms), or why it cannot be evaluated.
    fn eval(&self, expr: &str, t_ms: i64) -> Result<Vec<Sample>, String>;
}

/// Evaluates subscriptions with the PromQL engine over the tsdb, which the self-scrape
/// fills at the same ticks: `rate()`, `histogram_quantile()`, binary operators… all work.
pub struct EngineSource {
    engine: Engine,
    /// Longest one subscription's evaluation may take: one collection interval, so a
    /// heavy expression cannot stall every client's ticks for `query.timeout`.
    budget: std::time::Duration,
    parsed: Mutex<HashMap<String, Result<Arc<promql_parser::parser::Expr>, String>>>,
}

/// Parsed expressions kept; subscriptions beyond this are parsed per tick.
const PARSE_CACHE: usize = 1024;

impl EngineSource {
    /// A source over `engine`, each evaluation cut after `budget`.
    pub fn new(engine: Engine, budget: std::time::Duration) -> Self {
        Self {
            engine,
            budget,
            parsed: Mutex::new(HashMap::new()),
        }
    }

    fn parse(&self, expr: &str) -> Result<Arc<promql_parser::parser::Expr>, String> {
        let mut cache = self.parsed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = cache.get(expr) {
            return p.clone();
        }
        let parsed = crate::promql::parse(expr).map(Arc::new);
        if cache.len() >= PARSE_CACHE {
            cache.clear();
        }
        cache.insert(expr.to_string(), parsed.clone());
        parsed
    }
}

impl SampleSource for EngineSource {
    fn eval(&self, expr: &str, t_ms: i64) -> Result<Vec<Sample>, String> {
        let parsed = self.parse(expr)?;
        match self
            .engine
            .until(std::time::Instant::now() + self.budget)
            .instant(&parsed, t_ms)
            .map_err(|e| e.to_string())?
        {
            Value::Vector(samples) => Ok(samples
                .into_iter()
                .map(|s| {
                    let labels = s
                        .labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    (labels, s.value)
                })
                .collect()),
            Value::Scalar(v) => Ok(vec![(BTreeMap::new(), v)]),
            Value::Matrix(_) => Err(
                "a range vector cannot be streamed; wrap it in a function such as rate()".into(),
            ),
            Value::String(_) => Err("a string cannot be streamed".into()),
        }
    }
}

/// What the pump sends a client: pre-serialized frames, shared between clients.
type Batch = Arc<[Utf8Bytes]>;

struct Client {
    tx: mpsc::Sender<Batch>,
    series: Vec<Arc<str>>,
}

#[derive(Default)]
struct Clients {
    next_id: u64,
    map: HashMap<u64, Client>,
    /// Last error text sent per expression, so errors go out once per change.
    errors: HashMap<Arc<str>, String>,
    /// Tells the event bus whether anyone listens (alert events are built only then).
    relay: Option<RelayListeners>,
}

impl Clients {
    /// Reports the number of clients to the metric and the event bus.
    fn counted(&mut self, metrics: &StreamMetrics) {
        metrics.clients.set(self.map.len() as i64);
        if let Some(r) = &mut self.relay {
            r.set(self.map.len());
        }
    }
}

/// Stream self-metrics.
#[derive(Clone)]
struct StreamMetrics {
    clients: IntGauge,
    dropped: IntCounter,
}

impl StreamMetrics {
    fn register(metrics: &Metrics) -> Self {
        let clients = IntGauge::new(
            "watchpost_stream_clients",
            "Dashboard WebSocket clients connected to /api/v1/stream.",
        )
        .expect("valid metric");
        let dropped = IntCounter::new(
            "watchpost_stream_slow_clients_dropped_total",
            "Stream clients disconnected because they read slower than samples arrive.",
        )
        .expect("valid metric");
        metrics.register_all(
            "stream",
            vec![Box::new(clients.clone()), Box::new(dropped.clone())],
        );
        Self { clients, dropped }
    }
}

/// Fan-out state shared by the pump and the connections.
pub struct Hub {
    clients: Mutex<Clients>,
    source: Arc<dyn SampleSource>,
    ticks: watch::Receiver<i64>,
    interval_ms: i64,
    metrics: StreamMetrics,
}

impl Hub {
    /// A hub over `source`, ticking with `ticks`, relaying the bus's alert events.
    /// Spawns the pump, which ends when the tick sender is dropped (the app stopped).
    pub fn start(
        source: Arc<dyn SampleSource>,
        ticks: watch::Receiver<i64>,
        bus: &EventBus,
        interval: Duration,
        metrics: &Metrics,
    ) -> Arc<Hub> {
        let (alerts, relay) = bus.relay();
        let hub = Arc::new(Hub {
            clients: Mutex::new(Clients {
                relay: Some(relay),
                ..Clients::default()
            }),
            source,
            ticks: ticks.clone(),
            interval_ms: interval.as_millis() as i64,
            metrics: StreamMetrics::register(metrics),
        });
        tokio::spawn(pump(Arc::downgrade(&hub), ticks, alerts));
        hub
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Clients> {
        // A panic while holding the lock cannot leave `Clients` inconsistent in a way
        // that matters (worst case a stale entry), so recover from poisoning.
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self) -> (u64, mpsc::Receiver<Batch>) {
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let mut c = self.lock();
        c.next_id += 1;
        let id = c.next_id;
        c.map.insert(
            id,
            Client {
                tx,
                series: Vec::new(),
            },
        );
        c.counted(&self.metrics);
        (id, rx)
    }

    fn remove(&self, id: u64) {
        let mut c = self.lock();
        c.map.remove(&id);
        c.counted(&self.metrics);
    }

    /// Replaces a client's subscription, unless the hub would then evaluate more than
    /// [`MAX_DISTINCT_EXPRS`] distinct expressions per tick.
    fn subscribe(&self, id: u64, series: Vec<Arc<str>>) -> Result<(), String> {
        let mut c = self.lock();
        let mut distinct: HashSet<&str> = c
            .map
            .iter()
            .filter(|(other, _)| **other != id)
            .flat_map(|(_, cl)| cl.series.iter().map(|e| &**e))
            .collect();
        distinct.extend(series.iter().map(|e| &**e));
        if distinct.len() > MAX_DISTINCT_EXPRS {
            return Err(format!(
                "series: the server already evaluates close to {MAX_DISTINCT_EXPRS} distinct expressions for its stream clients; subscribe to fewer"
            ));
        }
        drop(distinct);
        if let Some(client) = c.map.get_mut(&id) {
            client.series = series;
        }
        Ok(())
    }

    /// Number of connected clients.
    pub fn client_count(&self) -> usize {
        self.lock().map.len()
    }

    /// Evaluates `exprs` at `t` into frames: samples of each, errors for those failing.
    fn frames_for(&self, exprs: &[Arc<str>], t: i64) -> Vec<Utf8Bytes> {
        let mut frames = Vec::new();
        for e in exprs {
            match self.source.eval(e, t) {
                Ok(samples) => {
                    frames.extend(samples.iter().map(|(l, v)| sample_frame(e, l, t, *v)))
                }
                Err(msg) => frames.push(error_frame(Some(e), &msg)),
            }
        }
        frames
    }
}

/// Serializes a sample message.
pub fn sample_frame(series: &str, labels: &BTreeMap<String, String>, t: i64, v: f64) -> Utf8Bytes {
    let value = if v.is_finite() {
        serde_json::json!(v)
    } else if v.is_nan() {
        serde_json::json!("NaN")
    } else if v > 0.0 {
        serde_json::json!("+Inf")
    } else {
        serde_json::json!("-Inf")
    };
    let msg = serde_json::json!({"type": "sample", "series": series, "labels": labels, "t": t, "v": value});
    Utf8Bytes::from(msg.to_string())
}

fn error_frame(series: Option<&str>, error: &str) -> Utf8Bytes {
    let msg = serde_json::json!({"type": "error", "series": series, "error": error});
    Utf8Bytes::from(msg.to_string())
}

fn tick_frame(t: i64) -> Utf8Bytes {
    Utf8Bytes::from(format!(r#"{{"type":"tick","t":{t}}}"#))
}

/// The fan-out loop: one evaluation per distinct expression per tick, alert events as
/// they come. Holds only a weak reference so the hub can go away with the router.
async fn pump(
    hub: Weak<Hub>,
    mut ticks: watch::Receiver<i64>,
    mut alerts: broadcast::Receiver<AlertEvent>,
) {
    let mut alerts_open = true;
    loop {
        tokio::select! {
            changed = ticks.changed() => {
                if changed.is_err() {
                    break;
                }
                let t = *ticks.borrow_and_update();
                let Some(hub) = hub.upgrade() else { break };
                // Evaluation is CPU work: keep it off the async workers.
                if let Err(e) = tokio::task::spawn_blocking(move || on_tick(&hub, t)).await {
                    tracing::error!(error = %e, "stream tick failed");
                }
            }
            event = alerts.recv(), if alerts_open => {
                let Some(hub) = hub.upgrade() else { break };
                match event {
                    Ok(e) => {
                        let msg = serde_json::json!({"type": "alert", "kind": e.kind, "alert": e.alert});
                        broadcast_all(&hub, Arc::from(vec![Utf8Bytes::from(msg.to_string())]));
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "stream fell behind the alert event bus");
                        let msg = format!(r#"{{"type":"lagged","missed":{n}}}"#);
                        broadcast_all(&hub, Arc::from(vec![Utf8Bytes::from(msg)]));
                    }
                    Err(broadcast::error::RecvError::Closed) => alerts_open = false,
                }
            }
        }
    }
    // The app is stopping: dropping the senders makes every connection close.
    if let Some(hub) = hub.upgrade() {
        let mut c = hub.lock();
        c.map.clear();
        c.counted(&hub.metrics);
        // The pump's receiver goes with it: so does the relay's count.
        c.relay = None;
    }
    tracing::debug!("stream pump stopped");
}

fn on_tick(hub: &Hub, t: i64) {
    let wanted: Vec<Arc<str>> = {
        let c = hub.lock();
        if c.map.is_empty() {
            return;
        }
        let set: HashSet<Arc<str>> = c
            .map
            .values()
            .flat_map(|c| c.series.iter().cloned())
            .collect();
        set.into_iter().collect()
    };
    // Evaluate outside the lock: expressions may take a while.
    let mut frames: HashMap<Arc<str>, Vec<Utf8Bytes>> = HashMap::with_capacity(wanted.len());
    let mut errors: HashMap<Arc<str>, String> = HashMap::new();
    for e in wanted {
        match hub.source.eval(&e, t) {
            Ok(samples) => {
                let f = samples
                    .iter()
                    .map(|(l, v)| sample_frame(&e, l, t, *v))
                    .collect();
                frames.insert(e, f);
            }
            Err(msg) => {
                errors.insert(e, msg);
            }
        }
    }
    let tick = tick_frame(t);
    let mut c = hub.lock();
    // Errors go out when they first appear or change; recovered expressions are forgotten.
    let mut new_errors: HashMap<Arc<str>, Utf8Bytes> = HashMap::new();
    for (e, msg) in &errors {
        if c.errors.get(e) != Some(msg) {
            new_errors.insert(e.clone(), error_frame(Some(e), msg));
        }
    }
    c.errors = errors;
    let mut slow = Vec::new();
    for (id, client) in &c.map {
        if client.series.is_empty() {
            continue; // nothing subscribed yet: no samples, no ticks
        }
        let mut batch: Vec<Utf8Bytes> = Vec::new();
        for e in &client.series {
            if let Some(f) = frames.get(e) {
                batch.extend(f.iter().cloned());
            } else if let Some(f) = new_errors.get(e) {
                batch.push(f.clone());
            }
        }
        batch.push(tick.clone());
        if !deliver(&client.tx, Arc::from(batch)) {
            slow.push(*id);
        }
    }
    drop_slow(hub, &mut c, slow);
}

fn broadcast_all(hub: &Hub, batch: Batch) {
    let mut c = hub.lock();
    let slow: Vec<u64> = c
        .map
        .iter()
        .filter(|(_, client)| !deliver(&client.tx, batch.clone()))
        .map(|(id, _)| *id)
        .collect();
    drop_slow(hub, &mut c, slow);
}

/// Queues `batch` for a client; false when its queue is full (or it is gone).
fn deliver(tx: &mpsc::Sender<Batch>, batch: Batch) -> bool {
    tx.try_send(batch).is_ok()
}

fn drop_slow(hub: &Hub, c: &mut Clients, ids: Vec<u64>) {
    for id in ids {
        if c.map.remove(&id).is_some() {
            hub.metrics.dropped.inc();
            tracing::info!(
                client = id,
                "stream client too slow (or gone): disconnecting"
            );
        }
    }
    c.counted(&hub.metrics);
}

/// A client message.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ClientMsg {
    Subscribe { series: Vec<String> },
}

/// Validates a subscription: at most [`MAX_SERIES`] non-empty expressions of at most
/// [`MAX_EXPR_BYTES`] each; duplicates are dropped.
fn validate(series: Vec<String>) -> Result<Vec<Arc<str>>, String> {
    if series.len() > MAX_SERIES {
        return Err(format!(
            "series: at most {MAX_SERIES} expressions per connection, got {}",
            series.len()
        ));
    }
    let mut out: Vec<Arc<str>> = Vec::with_capacity(series.len());
    for (i, s) in series.into_iter().enumerate() {
        let s = s.trim();
        if s.is_empty() {
            return Err(format!("series[{i}]: empty expression"));
        }
        if s.len() > MAX_EXPR_BYTES {
            return Err(format!("series[{i}]: longer than {MAX_EXPR_BYTES} bytes"));
        }
        if !out.iter().any(|e| &**e == s) {
            out.push(Arc::from(s));
        }
    }
    Ok(out)
}

/// Routes of the stream, sharing one hub.
pub fn router(state: &AppState, source: Arc<dyn SampleSource>) -> Router<AppState> {
    let hub = Hub::start(
        source,
        state.scraped.clone(),
        &state.events,
        state.config.collect.interval,
        &state.metrics,
    );
    Router::new().route(
        "/api/v1/stream",
        get(move |ws: WebSocketUpgrade, State(_): State<AppState>| {
            let hub = hub.clone();
            async move { upgrade(ws, hub) }
        }),
    )
}

fn upgrade(ws: WebSocketUpgrade, hub: Arc<Hub>) -> Response {
    ws.max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| connection(socket, hub))
}

/// Why a connection ended (for the close frame and the log).
enum End {
    ClientGone,
    TooSlow,
    Idle,
    WriteFailed,
}

async fn connection(socket: WebSocket, hub: Arc<Hub>) {
    let (id, mut rx) = hub.add();
    tracing::debug!(client = id, "stream client connected");
    let (mut sink, mut stream) = socket.split();
    let hello = serde_json::json!({
        "type": "hello",
        "interval_ms": hub.interval_ms,
        "server_time": crate::store::now_ms(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    let mut end = End::ClientGone;
    if send_all(&mut sink, [Utf8Bytes::from(hello.to_string())])
        .await
        .is_err()
    {
        hub.remove(id);
        return;
    }
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            batch = rx.recv() => match batch {
                Some(batch) => {
                    if send_all(&mut sink, batch.iter().cloned()).await.is_err() {
                        end = End::WriteFailed;
                        break;
                    }
                }
                None => {
                    end = End::TooSlow;
                    break;
                }
            },
            msg = stream.next() => {
                last_heard = tokio::time::Instant::now();
                match msg {
                    Some(Ok(Message::Text(text))) => {
                        // Subscribing evaluates at once: CPU work, off the async workers.
                        let h = hub.clone();
                        let reply = tokio::task::spawn_blocking(move || on_client_text(&h, id, text.as_str()))
                            .await
                            .unwrap_or_default();
                        if send_all(&mut sink, reply).await.is_err() {
                            end = End::WriteFailed;
                            break;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        let e = error_frame(None, "binary messages are not supported; send JSON text");
                        if send_all(&mut sink, [e]).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > IDLE_TIMEOUT {
                    end = End::Idle;
                    break;
                }
                let ping = sink.send(Message::Ping(bytes::Bytes::from_static(b"wp")));
                if !matches!(tokio::time::timeout(WRITE_TIMEOUT, ping).await, Ok(Ok(()))) {
                    end = End::WriteFailed;
                    break;
                }
            }
        }
    }
    hub.remove(id);
    let close = match end {
        End::TooSlow => Some((1013, "too slow: reconnect")),
        End::Idle => Some((1001, "idle")),
        End::ClientGone | End::WriteFailed => None,
    };
    if let Some((code, reason)) = close {
        tracing::debug!(client = id, reason, "closing stream client");
        let frame = Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        }));
        let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(frame)).await;
    }
    tracing::debug!(client = id, "stream client disconnected");
}

/// Handles a client text frame; returns the frames to answer with.
fn on_client_text(hub: &Hub, id: u64, text: &str) -> Vec<Utf8Bytes> {
    let msg: ClientMsg = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => {
            return vec![error_frame(
                None,
                &format!(
                    "invalid message: {e}; expected {{\"type\":\"subscribe\",\"series\":[...]}}"
                ),
            )];
        }
    };
    match msg {
        ClientMsg::Subscribe { series } => match validate(series) {
            Ok(series) => {
                if let Err(e) = hub.subscribe(id, series.clone()) {
                    return vec![error_frame(None, &e)];
                }
                // Answer at once with the latest tick, so charts need not wait for the next.
                let t = *hub.ticks.borrow();
                if t == 0 || series.is_empty() {
                    return Vec::new();
                }
                let mut frames = hub.frames_for(&series, t);
                frames.push(tick_frame(t));
                frames
            }
            Err(e) => vec![error_frame(None, &e)],
        },
    }
}

/// Writes `frames` and flushes once, within [`WRITE_TIMEOUT`].
async fn send_all<S>(sink: &mut S, frames: impl IntoIterator<Item = Utf8Bytes>) -> Result<(), ()>
where
    S: SinkExt<Message> + Unpin,
{
    let write = async {
        for f in frames {
            sink.feed(Message::Text(f)).await.map_err(|_| ())?;
        }
        sink.flush().await.map_err(|_| ())
    };
    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
        Ok(r) => r,
        Err(_) => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_are_validated() {
        assert_eq!(
            validate(vec!["a".into(), " a ".into(), "b".into()])
                .unwrap()
                .len(),
            2
        );
        assert!(validate(vec!["".into()]).unwrap_err().contains("series[0]"));
        assert!(validate(vec!["x".repeat(MAX_EXPR_BYTES + 1)]).is_err());
        assert!(validate(vec!["a".into(); MAX_SERIES + 1]).is_err());
    }

    #[test]
    fn sample_frames_encode_non_finite_values_as_strings() {
        let mut l = BTreeMap::new();
        l.insert("core".to_string(), "0".to_string());
        let f = sample_frame("x", &l, 5, f64::INFINITY);
        let v: serde_json::Value = serde_json::from_str(f.as_str()).unwrap();
        assert_eq!(v["v"], "+Inf");
        assert_eq!(v["labels"]["core"], "0");
        assert_eq!(v["t"], 5);
        let f = sample_frame("x", &l, 5, 0.25);
        let v: serde_json::Value = serde_json::from_str(f.as_str()).unwrap();
        assert_eq!(v["v"], 0.25);
    }

    #[test]
    fn engine_source_evaluates_promql_at_the_tick() {
        use crate::tsdb::{Labels, Tsdb};
        let tsdb = Tsdb::new(Duration::from_secs(3600));
        for (core, v) in [("0", 0.25), ("1", 0.75)] {
            let l = Labels::new([("__name__", "system_cpu_core_usage_ratio"), ("core", core)]);
            tsdb.append(&l, 1_000, v);
        }
        let c = Labels::new([("__name__", "requests_total")]);
        for i in 0..=10 {
            tsdb.append(&c, i * 1000, (i * 5) as f64);
        }
        let s = EngineSource::new(Engine::new(tsdb), std::time::Duration::from_secs(1));
        let cores = s.eval("system_cpu_core_usage_ratio", 1_000).unwrap();
        assert_eq!(cores.len(), 2);
        assert_eq!(cores[0].0["core"], "0");
        assert_eq!(cores[0].0["__name__"], "system_cpu_core_usage_ratio");
        let avg = s.eval("avg(system_cpu_core_usage_ratio)", 1_000).unwrap();
        assert_eq!(avg[0].1, 0.5);
        let rate = s.eval("rate(requests_total[5s])", 10_000).unwrap();
        assert!((rate[0].1 - 5.0).abs() < 1e-9, "{rate:?}");
        assert_eq!(s.eval("1 + 1", 0).unwrap()[0].1, 2.0);
        assert!(s.eval("sum(", 0).is_err());
        assert!(
            s.eval("requests_total[1m]", 10_000)
                .unwrap_err()
                .contains("range vector")
        );
    }
}

#[cfg(test)]
mod hub_tests {
    use super::*;
    use crate::events::AlertEventKind;

    struct Fake;
    impl SampleSource for Fake {
        fn eval(&self, expr: &str, t: i64) -> Result<Vec<Sample>, String> {
            match expr {
                "bad" => Err("nope".into()),
                _ => {
                    let mut l = BTreeMap::new();
                    l.insert("expr".to_string(), expr.to_string());
                    Ok(vec![(l, t as f64)])
                }
            }
        }
    }

    fn parse(frames: &[Utf8Bytes]) -> Vec<serde_json::Value> {
        frames
            .iter()
            .map(|f| serde_json::from_str(f.as_str()).unwrap())
            .collect()
    }

    async fn recv(rx: &mut mpsc::Receiver<Batch>) -> Vec<serde_json::Value> {
        let b = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a batch in time")
            .expect("channel open");
        parse(&b)
    }

    /// A hub over the fake evaluator, with its tick sender, event bus and metrics.
    fn fake_hub() -> (Arc<Hub>, watch::Sender<i64>, EventBus, Metrics) {
        let (tick_tx, tick_rx) = watch::channel(0i64);
        let bus = EventBus::default();
        let metrics = Metrics::new().unwrap();
        let hub = Hub::start(
            Arc::new(Fake),
            tick_rx,
            &bus,
            Duration::from_secs(1),
            &metrics,
        );
        (hub, tick_tx, bus, metrics)
    }

    #[tokio::test]
    async fn ticks_fan_out_evaluated_once_and_errors_once() {
        let (hub, tick_tx, bus, metrics) = fake_hub();
        let (a, mut rx_a) = hub.add();
        let (b, mut rx_b) = hub.add();
        hub.subscribe(a, vec![Arc::from("x"), Arc::from("bad")])
            .unwrap();
        hub.subscribe(b, vec![Arc::from("y")]).unwrap();
        tick_tx.send_replace(1000);
        let got_a = recv(&mut rx_a).await;
        assert_eq!(got_a[0]["type"], "sample");
        assert_eq!(got_a[0]["series"], "x");
        assert_eq!(got_a[0]["t"], 1000);
        assert_eq!(got_a[0]["v"], 1000.0);
        assert_eq!(got_a[1]["type"], "error");
        assert_eq!(got_a[1]["series"], "bad");
        assert_eq!(got_a[2], serde_json::json!({"type": "tick", "t": 1000}));
        let got_b = recv(&mut rx_b).await;
        assert_eq!(got_b.len(), 2);
        assert_eq!(got_b[0]["labels"]["expr"], "y");
        // The same error is not repeated on the next tick.
        tick_tx.send_replace(2000);
        let got_a = recv(&mut rx_a).await;
        assert_eq!(got_a.len(), 2, "{got_a:?}");
        assert_eq!(got_a[0]["t"], 2000);

        // Alert events reach everyone.
        bus.publish_alert(AlertEvent {
            kind: AlertEventKind::Fired,
            alert: serde_json::json!({"id": 1, "message": "m"}),
        });
        for rx in [&mut rx_a, &mut rx_b] {
            let got = recv(rx).await;
            if got[0]["type"] == "sample" {
                continue; // a tick raced in; the alert follows
            }
            assert_eq!(got[0]["type"], "alert");
            assert_eq!(got[0]["kind"], "fired");
            assert_eq!(got[0]["alert"]["id"], 1);
        }
        assert_eq!(metrics_value(&metrics, "watchpost_stream_clients"), 2.0);
    }

    #[tokio::test]
    async fn distinct_expressions_are_capped_over_all_clients() {
        let (hub, _tick_tx, _bus, _metrics) = fake_hub();
        let exprs = |client: usize| -> Vec<Arc<str>> {
            (0..MAX_SERIES)
                .map(|i| Arc::from(format!("e{client}_{i}")))
                .collect()
        };
        let per_client = MAX_DISTINCT_EXPRS / MAX_SERIES;
        let mut ids = Vec::new();
        for c in 0..per_client {
            let (id, rx) = hub.add();
            hub.subscribe(id, exprs(c)).unwrap();
            ids.push((id, rx));
        }
        let (extra, _rx) = hub.add();
        let err = hub.subscribe(extra, exprs(per_client)).unwrap_err();
        assert!(err.starts_with("series:"), "{err}");
        // Shared expressions cost nothing extra, and a client may replace its own set.
        hub.subscribe(extra, exprs(0)).unwrap();
        hub.subscribe(extra, Vec::new()).unwrap();
        hub.subscribe(ids[0].0, exprs(per_client)).unwrap();
    }

    #[tokio::test]
    async fn a_slow_client_is_dropped_without_blocking_others() {
        let (hub, tick_tx, _bus, metrics) = fake_hub();
        let (slow, mut rx_slow) = hub.add();
        let (fast, mut rx_fast) = hub.add();
        hub.subscribe(slow, vec![Arc::from("x")]).unwrap();
        hub.subscribe(fast, vec![Arc::from("x")]).unwrap();
        for t in 1..=(CLIENT_QUEUE as i64 + 5) {
            tick_tx.send_replace(t);
            // The fast client keeps up.
            let got = recv(&mut rx_fast).await;
            assert_eq!(got.last().unwrap()["t"], t);
        }
        assert_eq!(hub.client_count(), 1, "slow client removed");
        // The slow one gets what was queued, then the end of its channel.
        let mut n = 0;
        while rx_slow.recv().await.is_some() {
            n += 1;
        }
        assert_eq!(n, CLIENT_QUEUE);
        assert_eq!(
            metrics_value(&metrics, "watchpost_stream_slow_clients_dropped_total"),
            1.0
        );
    }

    #[tokio::test]
    async fn the_pump_ends_and_disconnects_everyone_when_the_app_stops() {
        let (hub, tick_tx, _bus, _metrics) = fake_hub();
        let (_, mut rx) = hub.add();
        drop(tick_tx);
        let end = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert!(matches!(end, Ok(None)));
    }

    fn metrics_value(m: &Metrics, name: &str) -> f64 {
        m.registry
            .gather()
            .iter()
            .find(|f| f.name() == name)
            .map(|f| {
                let x = &f.get_metric()[0];
                match f.get_field_type() {
                    prometheus::proto::MetricType::GAUGE => x.get_gauge().get_value(),
                    _ => x.get_counter().get_value(),
                }
            })
            .unwrap_or(f64::NAN)
    }
}
