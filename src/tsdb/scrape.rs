//! Self-scrape: at every collection tick, every sample `/metrics` shows goes into the
//! store under the same name and labels, timestamped at the tick — watchpost scraping
//! itself the way Prometheus would. Series that disappear get a stale marker.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::time::Duration;

use prometheus::proto::{LabelPair, MetricFamily, MetricType};
use rustc_hash::FxHashMap;
use tokio_util::sync::CancellationToken;

use super::{Labels, LabelsBuilder, METRIC_NAME, Prehashed, Tsdb};
use crate::collect::CollectLoop;
use crate::metrics::Metrics;

/// How often retention runs, at most.
const RETENTION_EVERY_MS: i64 = 30_000;
/// Largest shift applied to a tick timestamp to keep scrape spacing exact (as
/// Prometheus' `--scrape.timestamp-tolerance`): regular spacing makes every timestamp
/// one bit in the chunk instead of nine.
const ALIGN_TOLERANCE_MS: i64 = 25;

/// Turns registry snapshots into samples and appends them, tracking which series
/// disappeared since the previous scrape.
pub struct SelfScraper {
    tsdb: Tsdb,
    previous: HashSet<Labels, Prehashed>,
    labels: SampleLabels,
    last_retention_ms: i64,
    /// Expected spacing of scrapes, for timestamp alignment (0 = none).
    interval_ms: i64,
    last_ts: Option<i64>,
    /// Told the stored timestamp after every scrape (the dashboard stream's ticks).
    scraped: Option<tokio::sync::watch::Sender<i64>>,
}

impl SelfScraper {
    /// A scraper appending to `tsdb`.
    pub fn new(tsdb: Tsdb) -> Self {
        Self {
            tsdb,
            previous: HashSet::default(),
            labels: SampleLabels::default(),
            last_retention_ms: i64::MIN,
            interval_ms: 0,
            last_ts: None,
            scraped: None,
        }
    }

    /// Aligns tick timestamps that are within a few ms of `interval` after the
    /// previous scrape to exactly that spacing.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval_ms = i64::try_from(interval.as_millis()).unwrap_or(0);
        self
    }

    /// After every scrape, sends the timestamp its samples were stored at: readers that
    /// evaluate at that instant see the scrape complete.
    pub fn with_scraped(mut self, scraped: tokio::sync::watch::Sender<i64>) -> Self {
        self.scraped = Some(scraped);
        self
    }

    /// The timestamp to store for a tick at `ts_ms`.
    fn align(&mut self, ts_ms: i64) -> i64 {
        let aligned = match self.last_ts {
            Some(prev) if self.interval_ms > 0 => {
                let expected = prev + self.interval_ms;
                if (ts_ms - expected).abs() <= ALIGN_TOLERANCE_MS {
                    expected
                } else {
                    ts_ms
                }
            }
            _ => ts_ms,
        };
        self.last_ts = Some(aligned);
        aligned
    }

    /// Appends every sample of `families` at `ts_ms`, stale-marks the series of the
    /// previous scrape that are gone, and applies retention now and then. Returns the
    /// number of samples appended.
    pub fn scrape(&mut self, families: &[MetricFamily], ts_ms: i64) -> usize {
        let ts_ms = self.align(ts_ms);
        let mut current: HashSet<Labels, Prehashed> =
            HashSet::with_capacity_and_hasher(self.previous.len(), Prehashed::default());
        let tsdb = &self.tsdb;
        self.labels.for_each(families, |labels, value| {
            tsdb.append(labels, ts_ms, value);
            current.insert(labels.clone());
        });
        for gone in self.previous.difference(&current) {
            self.tsdb.mark_stale(gone, ts_ms);
        }
        let appended = current.len();
        self.previous = current;
        if let Some(tx) = &self.scraped {
            tx.send_replace(ts_ms);
        }
        if ts_ms.saturating_sub(self.last_retention_ms) >= RETENTION_EVERY_MS {
            self.last_retention_ms = ts_ms;
            self.tsdb.apply_retention(ts_ms);
        }
        appended
    }

    /// Scrapes `metrics` at every tick of `collect` until `shutdown`.
    pub async fn run(
        mut self,
        metrics: Metrics,
        collect: CollectLoop,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut ticks = collect.subscribe();
        // The first sample may already have been taken before we subscribed.
        ticks.mark_changed();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                changed = ticks.changed() => {
                    if changed.is_err() {
                        // The collect loop is gone (shutdown in progress).
                        shutdown.cancelled().await;
                        return Ok(());
                    }
                }
            }
            let ts = *ticks.borrow_and_update();
            if ts <= 0 {
                continue;
            }
            let started = std::time::Instant::now();
            let families = metrics.gather();
            let n = self.scrape(&families, ts);
            let took = started.elapsed();
            if took > Duration::from_millis(200) {
                tracing::warn!(samples = n, took = ?took, "self-scrape is slow");
            } else {
                tracing::trace!(samples = n, took = ?took, "self-scrape");
            }
        }
    }
}

/// Calls `f` with the labels and value of every sample of `families`, exactly as the
/// text exposition names them: histograms as `_bucket{le}` (with `+Inf`), `_sum` and
/// `_count`; summaries as `{quantile}`, `_sum` and `_count`.
pub fn for_each_sample(families: &[MetricFamily], mut f: impl FnMut(Labels, f64)) {
    visit(families, |s| f(s.build(), s.value));
}

/// The label sets of a registry's samples, built once per series and reused while the
/// series stays: a scrape of an unchanged registry allocates nothing per sample.
#[derive(Default)]
pub struct SampleLabels {
    by_key: FxHashMap<Box<str>, Labels>,
    key: String,
}

impl SampleLabels {
    /// As [`for_each_sample`], with label sets from the cache.
    pub fn for_each(&mut self, families: &[MetricFamily], mut f: impl FnMut(&Labels, f64)) {
        let mut used = 0;
        visit(families, |s| {
            used += 1;
            s.key(&mut self.key);
            if let Some(labels) = self.by_key.get(self.key.as_str()) {
                f(labels, s.value);
                return;
            }
            let labels = s.build();
            f(&labels, s.value);
            self.by_key.insert(self.key.as_str().into(), labels);
        });
        // Series that went away: forget them now and then, not at every scrape.
        if self.by_key.len() > 2 * used + 64 {
            self.by_key.clear();
        }
    }
}

/// One sample as the text exposition names it.
struct Sample<'a> {
    name: &'a str,
    suffix: &'a str,
    pairs: &'a [LabelPair],
    extra: Option<(&'a str, &'a str)>,
    value: f64,
}

impl Sample<'_> {
    fn build(&self) -> Labels {
        let mut b = LabelsBuilder::default();
        for p in self.pairs {
            b.set(p.name(), p.value());
        }
        if self.suffix.is_empty() {
            b.set(METRIC_NAME, self.name);
        } else {
            b.set(METRIC_NAME, &format!("{}{}", self.name, self.suffix));
        }
        if let Some((k, v)) = self.extra {
            b.set(k, v);
        }
        b.build()
    }

    /// An exact identity of the sample's labels, written into `key`: every field with
    /// its length first, so no name or value (which may hold any character) can run
    /// into the next.
    fn key(&self, key: &mut String) {
        key.clear();
        let extra = self.extra.iter().flat_map(|(k, v)| [*k, *v]);
        let pairs = self.pairs.iter().flat_map(|p| [p.name(), p.value()]);
        for field in [self.name, self.suffix]
            .into_iter()
            .chain(pairs)
            .chain(extra)
        {
            let _ = write!(key, "{}:", field.len());
            key.push_str(field);
        }
    }
}

/// Calls `f` with every sample of `families`.
fn visit(families: &[MetricFamily], mut f: impl FnMut(Sample<'_>)) {
    let mut text = String::new();
    for family in families {
        let name = family.name();
        for m in family.get_metric() {
            let pairs = m.get_label();
            let mut emit = |suffix: &str, extra: Option<(&str, &str)>, value: f64| {
                f(Sample {
                    name,
                    suffix,
                    pairs,
                    extra,
                    value,
                })
            };
            match family.get_field_type() {
                MetricType::COUNTER => emit("", None, m.get_counter().get_value()),
                MetricType::GAUGE => emit("", None, m.get_gauge().get_value()),
                #[allow(deprecated)] // untyped is how the crate models `unknown`
                MetricType::UNTYPED => emit("", None, m.get_untyped().get_value()),
                MetricType::HISTOGRAM => {
                    let h = m.get_histogram();
                    let mut inf_seen = false;
                    for b in h.get_bucket() {
                        let ub = b.upper_bound();
                        text.clear();
                        if ub == f64::INFINITY {
                            inf_seen = true;
                            text.push_str("+Inf");
                        } else {
                            let _ = write!(text, "{ub}");
                        }
                        emit("_bucket", Some(("le", &text)), b.cumulative_count() as f64);
                    }
                    if !inf_seen {
                        emit("_bucket", Some(("le", "+Inf")), h.get_sample_count() as f64);
                    }
                    emit("_sum", None, h.get_sample_sum());
                    emit("_count", None, h.get_sample_count() as f64);
                }
                MetricType::SUMMARY => {
                    let s = m.get_summary();
                    for q in s.get_quantile() {
                        text.clear();
                        let _ = write!(text, "{}", q.quantile());
                        emit("", Some(("quantile", &text)), q.value());
                    }
                    emit("_sum", None, s.sample_sum());
                    emit("_count", None, s.sample_count() as f64);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::encode_text;

    /// Every sample line of the text exposition, as (labels, value).
    fn parse_text(text: &str) -> Vec<(Labels, f64)> {
        let mut out = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, rest) = match series.split_once('{') {
                Some((n, r)) => (n, r.trim_end_matches('}')),
                None => (series, ""),
            };
            let mut b = LabelsBuilder::default();
            b.set(METRIC_NAME, name);
            for pair in rest.split(',').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap();
                b.set(k, v.trim_matches('"'));
            }
            let v = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap(),
            };
            out.push((b.build(), v));
        }
        out
    }

    #[test]
    fn sample_keys_cannot_run_into_each_other() {
        let pair = |n: &str, v: &str| {
            let mut p = LabelPair::default();
            p.set_name(n.into());
            p.set_value(v.into());
            p
        };
        let key = |pairs: &[LabelPair]| {
            let mut k = String::new();
            Sample {
                name: "m",
                suffix: "",
                pairs,
                extra: None,
                value: 0.0,
            }
            .key(&mut k);
            k
        };
        assert_ne!(
            key(&[pair("a", "x\0b\0y")]),
            key(&[pair("a", "x"), pair("b", "y")])
        );
        assert_ne!(key(&[pair("a", "1:b")]), key(&[pair("a1", ":b")]));
    }

    /// A registry with one counted request and one timed request to `/health`.
    fn health_metrics() -> Metrics {
        let metrics = Metrics::new().unwrap();
        metrics
            .http
            .requests
            .with_label_values(&["GET", "/health", "200"])
            .inc_by(3);
        metrics
            .http
            .duration
            .with_label_values(&["GET", "/health"])
            .observe(0.003);
        metrics
    }

    #[test]
    fn cached_label_sets_are_the_same_and_reused() {
        let families = health_metrics().gather();
        let mut fresh = Vec::new();
        for_each_sample(&families, |l, v| fresh.push((l, v)));
        let mut cache = SampleLabels::default();
        let mut first = Vec::new();
        cache.for_each(&families, |l, v| first.push((l.clone(), v)));
        assert_eq!(first, fresh);
        let mut second = Vec::new();
        cache.for_each(&families, |l, _| second.push(l.clone()));
        assert_eq!(second.len(), first.len());
        assert!(
            first.iter().zip(&second).all(|((a, _), b)| a.ptr_eq(b)),
            "a second scrape reuses every label set"
        );
        let bucket = first
            .iter()
            .find(|(l, _)| l.get("le") == Some("0.005"))
            .expect("a bucket labelled as the text exposition does");
        assert_eq!(
            bucket.0.get(METRIC_NAME),
            Some("watchpost_http_request_duration_seconds_bucket")
        );
    }

    #[test]
    fn samples_match_the_text_exposition() {
        let families = health_metrics().gather();
        let mut ours = Vec::new();
        for_each_sample(&families, |l, v| ours.push((l, v)));
        let mut text = parse_text(&encode_text(&families));
        // Process metrics change between two gathers; compare names and labels only for them.
        ours.sort_by(|a, b| a.0.cmp(&b.0));
        text.sort_by(|a, b| a.0.cmp(&b.0));
        let ours_labels: Vec<_> = ours.iter().map(|s| s.0.clone()).collect();
        let text_labels: Vec<_> = text.iter().map(|s| s.0.clone()).collect();
        assert_eq!(ours_labels, text_labels);
        let find = |name: &str, extra: &[(&str, &str)]| {
            let mut pairs = vec![(METRIC_NAME, name)];
            pairs.extend_from_slice(extra);
            let want = Labels::new(pairs);
            ours.iter().find(|s| s.0 == want).map(|s| s.1)
        };
        assert_eq!(
            find(
                "watchpost_http_requests_total",
                &[("method", "GET"), ("route", "/health"), ("status", "200")]
            ),
            Some(3.0)
        );
        let route = [("method", "GET"), ("route", "/health")];
        let with_le = |le| {
            let mut v = route.to_vec();
            v.push(("le", le));
            v
        };
        assert_eq!(
            find(
                "watchpost_http_request_duration_seconds_bucket",
                &with_le("0.0025")
            ),
            Some(0.0)
        );
        assert_eq!(
            find(
                "watchpost_http_request_duration_seconds_bucket",
                &with_le("0.005")
            ),
            Some(1.0)
        );
        assert_eq!(
            find(
                "watchpost_http_request_duration_seconds_bucket",
                &with_le("+Inf")
            ),
            Some(1.0)
        );
        assert_eq!(
            find("watchpost_http_request_duration_seconds_count", &route),
            Some(1.0)
        );
        assert_eq!(
            find("watchpost_http_request_duration_seconds_sum", &route),
            Some(0.003)
        );
    }

    #[test]
    fn tick_jitter_is_aligned_within_tolerance() {
        let tsdb = Tsdb::new(Duration::from_secs(3600));
        let mut s = SelfScraper::new(tsdb).with_interval(Duration::from_secs(1));
        assert_eq!(s.align(10_003), 10_003);
        assert_eq!(s.align(11_010), 11_003);
        assert_eq!(s.align(11_990), 12_003);
        // A late tick (skipped or slow) keeps its own time.
        assert_eq!(s.align(14_500), 14_500);
        assert_eq!(s.align(15_480), 15_500);
    }

    #[test]
    fn vanished_series_get_a_stale_marker() {
        let metrics = Metrics::new().unwrap();
        let tsdb = Tsdb::new(Duration::from_secs(3600));
        let mut scraper = SelfScraper::new(tsdb.clone());
        let child = metrics.cache.entries.with_label_values(&["query_range"]);
        child.set(5);
        scraper.scrape(&metrics.gather(), 1_000);
        metrics
            .cache
            .entries
            .remove_label_values(&["query_range"])
            .unwrap();
        scraper.scrape(&metrics.gather(), 2_000);
        let labels = Labels::new([
            (METRIC_NAME, "watchpost_cache_entries"),
            ("cache", "query_range"),
        ]);
        let s = tsdb.get(&labels).expect("series stored");
        assert_eq!(s.sample_at(1_500, 300_000), Some((1_000, 5.0)));
        assert_eq!(s.sample_at(2_500, 300_000), None, "stale after it vanished");
        let raw = s.samples(0, 10_000);
        assert_eq!(raw.len(), 2);
        assert!(super::super::is_stale_nan(raw[1].1));
    }
}
