//! Remote write out: every sample the store appends is shipped to each
//! `[[remote_write]]` endpoint, in append order (so in time order per series).
//!
//! * A fan-out task drains the store's append tap every 100 ms into one bounded queue
//!   per endpoint (`queue_capacity`; past it the oldest samples are dropped and
//!   counted), after its `keep_metrics`/`drop_metrics` filter.
//! * One task per endpoint sends one request at a time: up to `max_samples_per_send`
//!   samples, or fewer once the oldest has waited `batch_send_deadline`. 5xx, 429 and
//!   connection errors are retried with backoff (`min_backoff` doubling to
//!   `max_backoff`, or the 429's `Retry-After`) until they succeed, holding the queue
//!   behind them; other 4xx drop the request (counted), as Prometheus does.
//! * At shutdown the queues are flushed within `shutdown_timeout`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};
use prost::Message;
use regex::Regex;
use reqwest::StatusCode;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::proto::{Label, Sample, TimeSeries, WriteRequest};
use crate::config::RemoteWriteConfig;
use crate::metrics::Metrics;
use crate::tsdb::{Appended, Labels, METRIC_NAME, Tsdb};

/// Least the append tap holds between two drains, whatever the queues' capacities.
const TAP_FLOOR: usize = 200_000;

/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How often the append tap is drained into the endpoints' queues.
const FAN_OUT_EVERY: Duration = Duration::from_millis(100);

/// The endpoint as metrics and logs name it: scheme, host, port and path (no
/// credentials, no query).
pub fn url_label(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!(
                "{}://{}{port}{}",
                u.scheme(),
                u.host_str().unwrap_or_default(),
                u.path()
            )
        }
        Err(_) => crate::redact::endpoint(url),
    }
}

/// Configuration problems of `[[remote_write]]`, each naming its key.
pub fn validate(configs: &[RemoteWriteConfig]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, c) in configs.iter().enumerate() {
        let key = |k: &str| format!("remote_write[{i}].{k}");
        match reqwest::Url::parse(&c.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            _ => problems.push(format!("{}: not an http(s) URL", key("url"))),
        }
        if !seen.insert(url_label(&c.url)) {
            problems.push(format!("{}: the same endpoint twice", key("url")));
        }
        for (k, n) in [
            ("queue_capacity", c.queue_capacity),
            ("max_samples_per_send", c.max_samples_per_send),
        ] {
            if n == 0 {
                problems.push(format!("{}: must be greater than 0", key(k)));
            }
        }
        if c.max_samples_per_send > c.queue_capacity {
            problems.push(format!(
                "{}: must not exceed queue_capacity",
                key("max_samples_per_send")
            ));
        }
        for (k, d) in [
            ("batch_send_deadline", c.batch_send_deadline),
            ("min_backoff", c.min_backoff),
            ("remote_timeout", c.remote_timeout),
        ] {
            if d.is_zero() {
                problems.push(format!("{}: must be greater than 0", key(k)));
            }
        }
        if c.max_backoff < c.min_backoff {
            problems.push(format!(
                "{}: must not be less than min_backoff",
                key("max_backoff")
            ));
        }
        for (k, re) in [
            ("keep_metrics", &c.keep_metrics),
            ("drop_metrics", &c.drop_metrics),
        ] {
            if let Some(re) = re
                && let Err(e) = anchored(re)
            {
                problems.push(format!("{}: {e}", key(k)));
            }
        }
        for name in c.headers.keys() {
            let reserved = [
                "content-encoding",
                "content-type",
                "content-length",
                "user-agent",
            ]
            .contains(&name.to_ascii_lowercase().as_str())
                || name.eq_ignore_ascii_case("x-prometheus-remote-write-version");
            if reserved || reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                problems.push(format!("{}: {name:?} cannot be set", key("headers")));
            }
        }
        if c.bearer_token.is_some() && c.basic_auth.is_some() {
            problems.push(format!(
                "{}: set bearer_token or basic_auth, not both",
                key("bearer_token")
            ));
        }
    }
    problems
}

fn anchored(re: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{re})$"))
}

/// Which metric names an endpoint receives.
struct Filter {
    keep: Option<Regex>,
    drop: Option<Regex>,
}

impl Filter {
    fn new(c: &RemoteWriteConfig) -> Self {
        let compile = |re: &Option<String>| re.as_deref().and_then(|r| anchored(r).ok());
        Self {
            keep: compile(&c.keep_metrics),
            drop: compile(&c.drop_metrics),
        }
    }

    fn passes(&self, labels: &Labels) -> bool {
        let name = labels.get(METRIC_NAME).unwrap_or_default();
        self.keep.as_ref().is_none_or(|re| re.is_match(name))
            && !self.drop.as_ref().is_some_and(|re| re.is_match(name))
    }
}

/// `watchpost_remote_write_*` of the senders.
#[derive(Clone)]
struct SenderMetrics {
    samples: IntCounterVec,
    retried: IntCounterVec,
    pending: IntGaugeVec,
    highest_sent: prometheus::GaugeVec,
    duration: HistogramVec,
}

impl SenderMetrics {
    fn new(metrics: &Metrics) -> Result<Self, prometheus::Error> {
        let m = Self {
            samples: IntCounterVec::new(
                Opts::new(
                    "watchpost_remote_write_sent_samples_total",
                    "Samples shipped by remote write, by endpoint and outcome: sent (accepted), \
                     rejected (a 4xx other than 429: never retried), dropped (queue full, or \
                     unsent at shutdown).",
                ),
                &["url", "outcome"],
            )?,
            retried: IntCounterVec::new(
                Opts::new(
                    "watchpost_remote_write_retried_samples_total",
                    "Samples in requests that failed with a retryable error (5xx, 429, \
                     connection) and were sent again.",
                ),
                &["url"],
            )?,
            pending: IntGaugeVec::new(
                Opts::new(
                    "watchpost_remote_write_pending_samples",
                    "Samples queued for the endpoint (the request in flight not included).",
                ),
                &["url"],
            )?,
            highest_sent: prometheus::GaugeVec::new(
                Opts::new(
                    "watchpost_remote_write_highest_sent_timestamp_seconds",
                    "Timestamp of the newest sample the endpoint accepted.",
                ),
                &["url"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "watchpost_remote_write_sent_batch_duration_seconds",
                    "Duration of remote-write requests, successful or not.",
                )
                .buckets(crate::metrics::HTTP_BUCKETS.to_vec()),
                &["url"],
            )?,
        };
        metrics.register_all(
            "remote write out",
            vec![
                Box::new(m.samples.clone()),
                Box::new(m.retried.clone()),
                Box::new(m.pending.clone()),
                Box::new(m.highest_sent.clone()),
                Box::new(m.duration.clone()),
            ],
        );
        Ok(m)
    }
}

/// One endpoint: its queue and what its sender needs.
struct Endpoint {
    cfg: RemoteWriteConfig,
    label: String,
    filter: Filter,
    client: reqwest::Client,
    queue: Mutex<VecDeque<Appended>>,
    wake: Notify,
    metrics: SenderMetrics,
    /// Set when shutdown begins: flush until then.
    flush_by: OnceLock<Instant>,
    /// The queue dropped samples since the last accepted request (logged once).
    overflowing: std::sync::atomic::AtomicBool,
    closing: CancellationToken,
}

/// Why a request failed.
enum Failure {
    /// Retry later (after the given wait, if the endpoint named one).
    Retry(String, Option<Duration>),
    /// Never accepted: drop.
    Reject(String),
}

impl Endpoint {
    fn count(&self, outcome: &str, n: usize) {
        self.metrics
            .samples
            .with_label_values(&[&self.label, outcome])
            .inc_by(n as u64);
    }

    /// Queues `samples`, dropping the oldest queued past the capacity.
    fn enqueue(&self, samples: &[Appended]) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let before = queue.len();
        queue.extend(
            samples
                .iter()
                .filter(|s| self.filter.passes(&s.labels))
                .cloned(),
        );
        if queue.len() == before {
            return;
        }
        let over = queue.len().saturating_sub(self.cfg.queue_capacity);
        if over > 0 {
            queue.drain(..over);
            self.count("dropped", over);
            if !self
                .overflowing
                .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                tracing::warn!(url = %self.label, capacity = self.cfg.queue_capacity, "remote write queue full: dropping the oldest samples (queue_capacity)");
            }
        }
        self.metrics
            .pending
            .with_label_values(&[&self.label])
            .set(queue.len() as i64);
        drop(queue);
        self.wake.notify_one();
    }

    fn queued(&self) -> usize {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn take(&self, n: usize) -> Vec<Appended> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let n = n.min(queue.len());
        queue.drain(..n).collect()
    }

    /// The next request's samples: a full one, or what is queued once the oldest has
    /// waited `batch_send_deadline` (or at shutdown); `None` when shut down and empty.
    async fn next_batch(&self) -> Option<Vec<Appended>> {
        let mut since: Option<Instant> = None;
        loop {
            let queued = self.queued();
            self.metrics
                .pending
                .with_label_values(&[&self.label])
                .set(queued as i64);
            let closing = self.closing.is_cancelled();
            if self.flush_time_left().is_some_and(|left| left.is_zero()) {
                // Shutdown's flush time is over: what is still queued is dropped.
                return None;
            }
            let waited = since.is_some_and(|s| s.elapsed() >= self.cfg.batch_send_deadline);
            if queued >= self.cfg.max_samples_per_send || (queued > 0 && (closing || waited)) {
                return Some(self.take(self.cfg.max_samples_per_send));
            }
            if closing {
                return None;
            }
            if queued > 0 && since.is_none() {
                since = Some(Instant::now());
            }
            let wait = since.map_or(self.cfg.batch_send_deadline, |s| {
                self.cfg.batch_send_deadline.saturating_sub(s.elapsed())
            });
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = self.closing.cancelled() => {}
            }
        }
    }

    /// Sends one request until it is accepted or rejected (or shutdown's flush time
    /// is over).
    async fn deliver(&self, batch: Vec<Appended>) {
        let n = batch.len();
        let newest = batch.iter().map(|s| s.t).max().unwrap_or_default();
        let body = encode(&batch);
        drop(batch);
        let mut backoff = self.cfg.min_backoff;
        let mut failures = 0u32;
        loop {
            let started = Instant::now();
            let result = self.send(&body).await;
            self.metrics
                .duration
                .with_label_values(&[&self.label])
                .observe(started.elapsed().as_secs_f64());
            let (why, wait) = match result {
                Ok(()) => {
                    self.count("sent", n);
                    self.overflowing
                        .store(false, std::sync::atomic::Ordering::Relaxed);
                    self.metrics
                        .highest_sent
                        .with_label_values(&[&self.label])
                        .set(newest as f64 / 1000.0);
                    if failures > 0 {
                        tracing::info!(url = %self.label, failures, "remote write endpoint accepts samples again");
                    }
                    return;
                }
                Err(Failure::Reject(why)) => {
                    self.count("rejected", n);
                    tracing::warn!(url = %self.label, samples = n, "remote write request rejected, dropped: {why}");
                    return;
                }
                Err(Failure::Retry(why, wait)) => (why, wait),
            };
            failures += 1;
            self.metrics
                .retried
                .with_label_values(&[&self.label])
                .inc_by(n as u64);
            // A Retry-After is waited in full, up to five minutes.
            let mut wait = wait.map_or(backoff, |w| w.min(MAX_RETRY_AFTER.max(backoff)));
            if let Some(left) = self.flush_time_left() {
                if left.is_zero() {
                    self.count("dropped", n);
                    tracing::warn!(url = %self.label, samples = n, "remote write: shutdown_timeout reached, unsent samples dropped: {why}");
                    return;
                }
                wait = wait.min(left);
            }
            if failures == 1 {
                tracing::warn!(url = %self.label, retry_in = ?wait, "remote write failed, retrying: {why}");
            } else {
                tracing::debug!(url = %self.label, failures, retry_in = ?wait, "remote write failed again: {why}");
            }
            // A shutdown cuts the wait short (the flush time then bounds it).
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.closing.cancelled(), if self.flush_by.get().is_none() => {}
            }
            backoff = (backoff * 2).min(self.cfg.max_backoff);
        }
    }

    /// Time left to flush once shutdown began (`None` before).
    fn flush_time_left(&self) -> Option<Duration> {
        self.flush_by
            .get()
            .map(|by| by.saturating_duration_since(Instant::now()))
    }

    async fn send(&self, body: &[u8]) -> Result<(), Failure> {
        // At shutdown no request outlasts the flush time.
        let timeout = self
            .flush_time_left()
            .map_or(self.cfg.remote_timeout, |left| {
                left.min(self.cfg.remote_timeout)
                    .max(Duration::from_millis(1))
            });
        let mut req = self
            .client
            .post(&self.cfg.url)
            .timeout(timeout)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header(
                "User-Agent",
                concat!("watchpost/", env!("CARGO_PKG_VERSION")),
            )
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body.to_vec());
        for (k, v) in &self.cfg.headers {
            req = req.header(k, v);
        }
        if let Some(token) = &self.cfg.bearer_token {
            req = req.bearer_auth(token.expose());
        }
        if let Some(auth) = &self.cfg.basic_auth {
            req = req.basic_auth(&auth.username, Some(auth.password.expose()));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::Retry(crate::redact::http_error(&e), None))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp.text().await.unwrap_or_default();
        let why = format!(
            "{status}: {}",
            crate::redact::text(text.trim().chars().take(256).collect::<String>().as_str())
        );
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Err(Failure::Retry(why, retry_after))
        } else {
            Err(Failure::Reject(why))
        }
    }

    /// Sends until shut down and flushed.
    async fn run(self: Arc<Self>) {
        while let Some(batch) = self.next_batch().await {
            self.deliver(batch).await;
        }
        let left = self.queued();
        if left > 0 {
            self.count("dropped", left);
        }
        self.metrics
            .pending
            .with_label_values(&[&self.label])
            .set(0);
    }
}

/// A request body: the samples grouped by series (first appearance order), each
/// series' samples in append order; protobuf, snappy block format.
pub fn encode(batch: &[Appended]) -> Vec<u8> {
    let mut index: HashMap<&Labels, usize> = HashMap::new();
    let mut timeseries: Vec<TimeSeries> = Vec::new();
    for s in batch {
        let i = *index.entry(&s.labels).or_insert_with(|| {
            timeseries.push(TimeSeries {
                labels: s
                    .labels
                    .iter()
                    .map(|(name, value)| Label {
                        name: name.to_string(),
                        value: value.to_string(),
                    })
                    .collect(),
                ..TimeSeries::default()
            });
            timeseries.len() - 1
        });
        timeseries[i].samples.push(Sample {
            value: s.v,
            timestamp: s.t,
        });
    }
    let raw = WriteRequest {
        timeseries,
        metadata: Vec::new(),
    }
    .encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}

/// Starts shipping `tsdb`'s appended samples to every endpoint; the task ends after
/// `shutdown`, once the queues are flushed (at most `flush_timeout`). `None` without
/// endpoints.
pub fn start(
    tsdb: &Tsdb,
    configs: &[RemoteWriteConfig],
    metrics: &Metrics,
    shutdown: CancellationToken,
    flush_timeout: Duration,
) -> Result<Option<JoinHandle<()>>, String> {
    if configs.is_empty() {
        return Ok(None);
    }
    let sender_metrics = SenderMetrics::new(metrics).map_err(|e| e.to_string())?;
    let closing = CancellationToken::new();
    let mut endpoints = Vec::new();
    for cfg in configs {
        let client = reqwest::Client::builder()
            .timeout(cfg.remote_timeout)
            .build()
            .map_err(|e| format!("remote_write {}: {e}", url_label(&cfg.url)))?;
        let label = url_label(&cfg.url);
        for outcome in ["sent", "rejected", "dropped"] {
            sender_metrics.samples.with_label_values(&[&label, outcome]);
        }
        sender_metrics.retried.with_label_values(&[&label]);
        endpoints.push(Arc::new(Endpoint {
            filter: Filter::new(cfg),
            cfg: cfg.clone(),
            label,
            client,
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            metrics: sender_metrics.clone(),
            flush_by: OnceLock::new(),
            overflowing: Default::default(),
            closing: closing.clone(),
        }));
    }
    // The tap holds what is appended between two drains (100 ms), before filtering.
    let capacity = configs.iter().map(|c| c.queue_capacity).sum::<usize>();
    tsdb.attach_tap(capacity.max(TAP_FLOOR));
    let tsdb = tsdb.clone();
    Ok(Some(tokio::spawn(fan_out(
        tsdb,
        endpoints,
        shutdown,
        closing,
        flush_timeout,
    ))))
}

async fn fan_out(
    tsdb: Tsdb,
    endpoints: Vec<Arc<Endpoint>>,
    shutdown: CancellationToken,
    closing: CancellationToken,
    flush_timeout: Duration,
) {
    let senders: Vec<JoinHandle<()>> = endpoints
        .iter()
        .map(|e| tokio::spawn(e.clone().run()))
        .collect();
    let mut buf = Vec::new();
    let mut overflowed = 0;
    let mut tick = tokio::time::interval(FAN_OUT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stop = tokio::select! {
            _ = tick.tick() => false,
            _ = shutdown.cancelled() => true,
        };
        tsdb.drain_appended(&mut buf);
        for e in &endpoints {
            e.enqueue(&buf);
        }
        buf.clear();
        let now_overflowed = tsdb.tap_overflowed();
        if now_overflowed > overflowed {
            for e in &endpoints {
                e.count("dropped", (now_overflowed - overflowed) as usize);
            }
            overflowed = now_overflowed;
        }
        if stop {
            break;
        }
    }
    let by = Instant::now() + flush_timeout;
    for e in &endpoints {
        let _ = e.flush_by.set(by);
    }
    closing.cancel();
    for s in senders {
        let _ = s.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, t: i64) -> Appended {
        Appended {
            labels: Labels::new([(METRIC_NAME, name), ("job", "x")]),
            t,
            v: t as f64,
        }
    }

    #[test]
    fn encode_groups_by_series_in_order() {
        let batch = [sample("a", 1), sample("b", 1), sample("a", 2)];
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&encode(&batch))
            .unwrap();
        let req = WriteRequest::decode(raw.as_slice()).unwrap();
        assert_eq!(req.timeseries.len(), 2);
        assert_eq!(req.timeseries[0].labels[0].value, "a");
        let ts: Vec<i64> = req.timeseries[0]
            .samples
            .iter()
            .map(|s| s.timestamp)
            .collect();
        assert_eq!(ts, vec![1, 2]);
    }

    #[test]
    fn filters_are_anchored_and_drop_wins() {
        let mut c = RemoteWriteConfig::new("http://x/api/v1/write");
        c.keep_metrics = Some("node_.*|up".into());
        c.drop_metrics = Some("node_cpu.*".into());
        let f = Filter::new(&c);
        let pass = |n: &str| f.passes(&Labels::new([(METRIC_NAME, n)]));
        assert!(pass("node_load1") && pass("up"));
        assert!(!pass("node_cpu_seconds_total") && !pass("xup") && !pass("upx"));
    }

    #[test]
    fn validation_names_the_key() {
        let mut c = RemoteWriteConfig::new("ftp://x");
        c.keep_metrics = Some("(".into());
        c.max_samples_per_send = c.queue_capacity + 1;
        c.headers.insert("Content-Type".into(), "x".into());
        let dup = RemoteWriteConfig::new("ftp://x");
        let problems = validate(&[c, dup]).join("\n");
        for key in [
            "remote_write[0].url",
            "remote_write[0].keep_metrics",
            "remote_write[0].max_samples_per_send",
            "remote_write[0].headers",
            "remote_write[1].url: the same endpoint twice",
        ] {
            assert!(problems.contains(key), "{key} not in {problems}");
        }
        assert_eq!(
            url_label("https://user:pw@mimir:9009/api/v1/push?token=s"),
            "https://mimir:9009/api/v1/push"
        );
    }
}
