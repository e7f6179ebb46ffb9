//! Alert statistics and reports as the server sends them (`GET /api/v1/alerts/stats`,
//! `GET /api/v1/reports?format=json`), read tolerantly (missing fields default), and
//! the small computations the History page shows.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Windows offered by the History page (all accepted by the API).
pub const WINDOWS: [&str; 7] = ["5m", "15m", "30m", "1h", "24h", "7d", "30d"];

/// A label pair and how many alerts carry it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LabelCount {
    /// Label name.
    #[serde(default)]
    pub name: String,
    /// Label value.
    #[serde(default)]
    pub value: String,
    /// Alerts with it.
    #[serde(default)]
    pub count: i64,
}

/// `GET /api/v1/alerts/stats?window=W`: the alerts that started in the window.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// The window as given.
    pub window: String,
    /// Start of the window (RFC 3339).
    pub from: String,
    /// End of the window (RFC 3339).
    pub to: String,
    /// Alerts.
    pub total: i64,
    /// Of which firing now.
    pub firing: i64,
    /// Of which resolved.
    pub resolved: i64,
    /// Of which acknowledged.
    pub acknowledged: i64,
    /// Of which silenced or inhibited.
    pub silenced: i64,
    /// Receipts (fired + repeated).
    pub receipts: i64,
    /// By severity (every severity, zeros included).
    pub by_severity: BTreeMap<String, i64>,
    /// By classified type.
    pub by_type: BTreeMap<String, i64>,
    /// By source.
    pub by_source: BTreeMap<String, i64>,
    /// By state.
    pub by_state: BTreeMap<String, i64>,
    /// The most frequent label pairs.
    pub top_labels: Vec<LabelCount>,
}

/// One of the most repeated alerts of a report.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TopAlert {
    /// Alert id (links to the drawer).
    pub id: i64,
    /// Alert name.
    #[serde(default)]
    pub alertname: Option<String>,
    /// Source.
    #[serde(default)]
    pub source: String,
    /// Severity.
    #[serde(default)]
    pub severity: String,
    /// State.
    #[serde(default)]
    pub state: String,
    /// Receipts.
    #[serde(default)]
    pub count: i64,
    /// Message.
    #[serde(default)]
    pub message: String,
}

impl TopAlert {
    /// alertname, else the message.
    pub fn title(&self) -> &str {
        self.alertname
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(&self.message)
    }
}

/// A source or rule and how noisy it was.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Noisy {
    /// Source or alert name.
    #[serde(default)]
    pub name: String,
    /// Distinct alerts.
    #[serde(default)]
    pub alerts: i64,
    /// Receipts.
    #[serde(default)]
    pub receipts: i64,
}

/// `GET /api/v1/reports?window=W&format=json`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct Report {
    /// The window.
    pub window: String,
    /// The window's stats.
    pub counts: Stats,
    /// Resolved alerts of the window.
    pub resolved: i64,
    /// Mean time to resolve, seconds.
    pub mttr_seconds: Option<f64>,
    /// Acknowledged alerts of the window.
    pub acknowledged: i64,
    /// Mean time to acknowledge, seconds.
    pub mtta_seconds: Option<f64>,
    /// Most repeated alerts.
    pub top_alerts: Vec<TopAlert>,
    /// Sources by receipts.
    pub noisiest_sources: Vec<Noisy>,
    /// Rules (alert names) by receipts.
    pub noisiest_rules: Vec<Noisy>,
}

/// Parses a stats answer.
pub fn parse_stats(v: &serde_json::Value) -> Result<Stats, String> {
    serde_json::from_value(v.clone()).map_err(|e| format!("stats: {e}"))
}

/// Parses a JSON report.
pub fn parse_report(v: &serde_json::Value) -> Result<Report, String> {
    serde_json::from_value(v.clone()).map_err(|e| format!("report: {e}"))
}

/// Counts largest first, ties by name: the bars of one dimension.
pub fn ranked(counts: &BTreeMap<String, i64>) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = counts.iter().map(|(k, v)| (k.clone(), *v as f64)).collect();
    out.sort_by(|a, b| {
        b.1.partial_cmp(&a.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.0.cmp(&b.0))
    });
    out
}

/// Severities in severity order (critical, warning, info, then others by name), so the
/// severity chart keeps its layout whatever the counts.
pub fn by_severity(stats: &Stats) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = ["critical", "warning", "info"]
        .iter()
        .map(|s| {
            (
                s.to_string(),
                stats.by_severity.get(*s).copied().unwrap_or(0) as f64,
            )
        })
        .collect();
    out.extend(
        stats
            .by_severity
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "critical" | "warning" | "info"))
            .map(|(k, v)| (k.clone(), *v as f64)),
    );
    out
}

/// Width of a bar in percent of the largest (0 for an all-zero chart).
pub fn bar_percent(value: f64, max: f64) -> f64 {
    if max > 0.0 && value.is_finite() {
        (value / max * 100.0).clamp(0.0, 100.0)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stats_json() -> serde_json::Value {
        json!({
            "window": "24h", "window_seconds": 86400,
            "from": "2026-01-01T00:00:00.000Z", "to": "2026-01-02T00:00:00.000Z",
            "total": 7, "firing": 4, "resolved": 3, "acknowledged": 1, "silenced": 2, "receipts": 19,
            "by_severity": {"critical": 5, "info": 0, "warning": 2},
            "by_type": {"system": 4, "network": 3},
            "by_source": {"api": 1, "watchpost": 6},
            "by_state": {"firing": 4, "resolved": 3},
            "top_labels": [{"name": "instance", "value": "db1", "count": 4}]
        })
    }

    #[test]
    fn stats_in_the_servers_shape() {
        let s = parse_stats(&stats_json()).unwrap();
        assert_eq!(s.total, 7);
        assert_eq!(s.receipts, 19);
        assert_eq!(s.top_labels[0].value, "db1");
        assert_eq!(
            by_severity(&s),
            vec![
                ("critical".to_string(), 5.0),
                ("warning".to_string(), 2.0),
                ("info".to_string(), 0.0)
            ]
        );
        assert_eq!(
            ranked(&s.by_source),
            vec![("watchpost".to_string(), 6.0), ("api".to_string(), 1.0)]
        );
        assert!(parse_stats(&json!("nope")).is_err());
        // Missing fields default rather than failing the page.
        assert_eq!(parse_stats(&json!({})).unwrap().total, 0);
    }

    #[test]
    fn reports_in_the_servers_shape() {
        let r = parse_report(&json!({
            "window": "24h", "from": "x", "to": "y", "counts": stats_json(),
            "resolved": 3, "mttr_seconds": 125.5, "acknowledged": 1, "mtta_seconds": null,
            "top_alerts": [{"id": 4, "alertname": null, "source": "api", "severity": "warning",
                            "state": "firing", "count": 9, "message": "disk full"}],
            "noisiest_sources": [{"name": "api", "alerts": 1, "receipts": 9}],
            "noisiest_rules": []
        }))
        .unwrap();
        assert_eq!(r.mttr_seconds, Some(125.5));
        assert_eq!(r.mtta_seconds, None);
        assert_eq!(r.counts.total, 7);
        assert_eq!(r.top_alerts[0].title(), "disk full");
        assert_eq!(r.noisiest_sources[0].receipts, 9);
    }

    #[test]
    fn bars() {
        assert_eq!(bar_percent(5.0, 10.0), 50.0);
        assert_eq!(bar_percent(0.0, 0.0), 0.0);
        assert_eq!(bar_percent(20.0, 10.0), 100.0);
        assert_eq!(bar_percent(f64::NAN, 10.0), 0.0);
    }
}
