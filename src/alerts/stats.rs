//! Alert statistics over a window (`5m` … `30d`, any duration): counts by severity,
//! type, source and state, and the most frequent labels, over the alerts that started
//! in the window. Served from a moka cache whose entries belong to one "generation" of
//! the data: every committed write starts a new generation, so a cached answer is never
//! older than the last write (and at most [`TTL`] old, since windows slide).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache;
use prometheus::{IntCounter, IntGauge};
use serde::Serialize;
use sqlx::{AssertSqlSafe, Row};

use super::model::{Severity, duration_ms, rfc3339};
use crate::metrics::CacheMetrics;
use crate::store::{Backend, Db, StoreError, now_ms};

/// The `cache` label of the stats cache metrics.
pub const CACHE: &str = "alert_stats";
/// Longest a cached answer is served.
pub const TTL: Duration = Duration::from_secs(5);
/// How many labels `top_labels` lists.
pub const TOP_LABELS: i64 = 10;

/// Longest window of statistics and reports (HTTP and `/report`): 366 days, a year
/// whether leap or not. Alerts are kept `alerts.retention` (90 days by default), so a
/// longer window only costs a larger scan.
pub const MAX_WINDOW: Duration = Duration::from_secs(366 * 86400);
/// [`MAX_WINDOW`] as errors write it.
pub const MAX_WINDOW_TEXT: &str = "366d";

/// Parses a window: a humantime duration (`5m`, `1h`, `7d`, `90s`), at most
/// [`MAX_WINDOW`].
pub fn parse_window(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("window: {s:?} is not a duration like 5m, 1h or 7d ({e})"))?;
    check_window(d).map_err(|e| format!("window: {e}"))
}

/// `d` if it is a usable window: more than 0, at most [`MAX_WINDOW`].
pub fn check_window(d: Duration) -> Result<Duration, String> {
    if d.is_zero() {
        return Err("must be greater than 0".into());
    }
    if d > MAX_WINDOW {
        return Err(format!(
            "must be at most {MAX_WINDOW_TEXT} (366 days), got {}",
            humantime::format_duration(d)
        ));
    }
    Ok(d)
}

/// Problems with the `reports` settings, each naming its key.
pub fn validate(config: &crate::config::Config) -> Vec<String> {
    check_window(config.reports.window)
        .err()
        .map(|e| format!("reports.window: {e}"))
        .into_iter()
        .collect()
}

/// The start of `window` ending at `to_ms`, saturating (never wraps to the future).
pub fn window_start(to_ms: i64, window: Duration) -> i64 {
    to_ms.saturating_sub(duration_ms(window))
}

/// A label value and how many alerts carry it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LabelCount {
    /// Label name.
    pub name: String,
    /// Label value.
    pub value: String,
    /// Alerts with it.
    pub count: i64,
}

/// Statistics of one window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stats {
    /// The window as given back (`1h`).
    pub window: String,
    /// The window in seconds.
    pub window_seconds: i64,
    /// Start of the window (RFC 3339).
    pub from: String,
    /// End of the window (RFC 3339).
    pub to: String,
    /// Alerts that started in the window.
    pub total: i64,
    /// Of which firing now.
    pub firing: i64,
    /// Of which resolved.
    pub resolved: i64,
    /// Of which acknowledged.
    pub acknowledged: i64,
    /// Of which silenced or inhibited.
    pub silenced: i64,
    /// Receipts of those alerts (fired + repeated).
    pub receipts: i64,
    /// By severity (every severity present, zeros included).
    pub by_severity: BTreeMap<String, i64>,
    /// By type.
    pub by_type: BTreeMap<String, i64>,
    /// By source.
    pub by_source: BTreeMap<String, i64>,
    /// By state (`firing`, `resolved`).
    pub by_state: BTreeMap<String, i64>,
    /// The most frequent label pairs.
    pub top_labels: Vec<LabelCount>,
}

/// Computes the statistics of `window` ending now.
pub async fn compute(db: &Db, window: Duration) -> Result<Stats, StoreError> {
    let to = now_ms();
    let from = window_start(to, window);
    let rows = db
        .timed("alerts.stats", async {
            sqlx::query(
                "SELECT severity, type, source, state, count(*) AS n, \
                 CAST(sum(count) AS BIGINT) AS receipts, \
                 CAST(sum(CASE WHEN ack_at_ms IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) AS acked, \
                 CAST(sum(CASE WHEN silenced_by <> '[]' OR inhibited_by IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) AS muted \
                 FROM alerts WHERE starts_at_ms >= $1 GROUP BY severity, type, source, state",
            )
            .bind(from)
            .fetch_all(db.pool())
            .await
            .map_err(StoreError::from)
        })
        .await?;
    let mut s = Stats {
        window: humantime::format_duration(window).to_string(),
        window_seconds: i64::try_from(window.as_secs()).unwrap_or(i64::MAX),
        from: rfc3339(from),
        to: rfc3339(to),
        total: 0,
        firing: 0,
        resolved: 0,
        acknowledged: 0,
        silenced: 0,
        receipts: 0,
        by_severity: Severity::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect(),
        by_type: BTreeMap::new(),
        by_source: BTreeMap::new(),
        by_state: [("firing".to_string(), 0), ("resolved".to_string(), 0)].into(),
        top_labels: Vec::new(),
    };
    for r in &rows {
        let n: i64 = r.try_get("n")?;
        let severity: String = r.try_get("severity")?;
        let kind: String = r.try_get("type")?;
        let source: String = r.try_get("source")?;
        let state: String = r.try_get("state")?;
        s.total += n;
        s.receipts += r.try_get::<Option<i64>, _>("receipts")?.unwrap_or(0);
        s.acknowledged += r.try_get::<Option<i64>, _>("acked")?.unwrap_or(0);
        s.silenced += r.try_get::<Option<i64>, _>("muted")?.unwrap_or(0);
        *s.by_severity.entry(severity).or_default() += n;
        *s.by_type.entry(kind).or_default() += n;
        *s.by_source.entry(source).or_default() += n;
        *s.by_state.entry(state).or_default() += n;
    }
    s.firing = s.by_state.get("firing").copied().unwrap_or(0);
    s.resolved = s.by_state.get("resolved").copied().unwrap_or(0);
    s.top_labels = top_labels(db, from).await?;
    Ok(s)
}

async fn top_labels(db: &Db, from: i64) -> Result<Vec<LabelCount>, StoreError> {
    let sql = match db.backend() {
        Backend::Sqlite => format!(
            "SELECT j.key AS name, CAST(j.value AS TEXT) AS value, count(*) AS n \
             FROM alerts, json_each(alerts.labels) AS j WHERE alerts.starts_at_ms >= $1 \
             GROUP BY j.key, j.value ORDER BY n DESC, name, value LIMIT {TOP_LABELS}"
        ),
        Backend::Postgres => format!(
            "SELECT j.key AS name, j.value AS value, count(*) AS n \
             FROM alerts, jsonb_each_text(alerts.labels::jsonb) AS j WHERE alerts.starts_at_ms >= $1 \
             GROUP BY j.key, j.value ORDER BY n DESC, name, value LIMIT {TOP_LABELS}"
        ),
    };
    let rows = db
        .timed("alerts.stats_labels", async {
            sqlx::query(AssertSqlSafe(sql))
                .bind(from)
                .fetch_all(db.pool())
                .await
                .map_err(StoreError::from)
        })
        .await?;
    rows.iter()
        .map(|r| {
            Ok(LabelCount {
                name: r.try_get("name")?,
                value: r.try_get("value")?,
                count: r.try_get("n")?,
            })
        })
        .collect()
}

/// The stats cache with its `watchpost_cache_*{cache="alert_stats"}` metrics.
#[derive(Clone)]
pub struct StatsCache {
    cache: Cache<(u64, u64), Arc<Stats>>,
    generation: Arc<AtomicU64>,
    hits: IntCounter,
    misses: IntCounter,
    entries: IntGauge,
}

impl StatsCache {
    /// A cache whose entries are invalidated when `generation` moves.
    pub fn new(metrics: &CacheMetrics, generation: Arc<AtomicU64>) -> Self {
        let evictions = metrics.evictions.with_label_values(&[CACHE]);
        evictions.inc_by(0);
        let cache = Cache::builder()
            .max_capacity(256)
            .time_to_live(TTL)
            .eviction_listener(move |_k, _v, _cause| evictions.inc())
            .support_invalidation_closures()
            .build();
        let entries = metrics.entries.with_label_values(&[CACHE]);
        entries.set(0);
        StatsCache {
            cache,
            generation,
            hits: metrics.requests.with_label_values(&[CACHE, "hit"]),
            misses: metrics.requests.with_label_values(&[CACHE, "miss"]),
            entries,
        }
    }

    /// Statistics of `window` (labelled `label`), cached.
    pub async fn get(&self, db: &Db, window: Duration, label: &str) -> Result<Stats, StoreError> {
        let s = self.get_shared(db, window).await?;
        let mut s = Stats::clone(&s);
        s.window = label.to_string();
        Ok(s)
    }

    async fn get_shared(&self, db: &Db, window: Duration) -> Result<Arc<Stats>, StoreError> {
        let generation = self.generation.load(Ordering::Relaxed);
        let key = (
            generation,
            u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
        );
        if let Some(s) = self.cache.get(&key).await {
            self.hits.inc();
            return Ok(s);
        }
        self.misses.inc();
        let stats = Arc::new(compute(db, window).await?);
        if self.generation.load(Ordering::Relaxed) == generation {
            self.cache.insert(key, stats.clone()).await;
        }
        if generation > 0 {
            // Entries of older generations can never be hit again.
            let stale = generation;
            let _ = self.cache.invalidate_entries_if(move |k, _| k.0 < stale);
        }
        self.cache.run_pending_tasks().await;
        self.entries.set(self.cache.entry_count() as i64);
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows() {
        assert_eq!(parse_window("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(
            parse_window("30d").unwrap(),
            Duration::from_secs(30 * 86400)
        );
        assert_eq!(parse_window("90s").unwrap(), Duration::from_secs(90));
        assert!(parse_window("soon").unwrap_err().starts_with("window"));
        assert!(parse_window("0s").is_err());
    }

    #[test]
    fn windows_are_bounded() {
        assert_eq!(parse_window("366d").unwrap(), MAX_WINDOW);
        for w in ["367d", "10y", "300000y", "584542046090y"] {
            let e = parse_window(w).unwrap_err();
            assert!(e.starts_with("window: must be at most 366d"), "{w}: {e}");
        }
        // Beyond what a `Duration` holds: humantime's own error, still named.
        let e = parse_window("99999999999999999999y").unwrap_err();
        assert!(e.starts_with("window:"), "{e}");
    }

    #[test]
    fn window_start_saturates() {
        let d = Duration::from_secs(60);
        assert_eq!(window_start(1_000_000, d), 940_000);
        assert_eq!(window_start(i64::MIN, d), i64::MIN);
        assert_eq!(window_start(0, Duration::from_secs(u64::MAX)), -i64::MAX);
        assert_eq!(window_start(-1, Duration::MAX), i64::MIN);
    }
}
