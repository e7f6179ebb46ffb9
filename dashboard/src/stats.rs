//! Reading alert statistics and reports (`/api/v1/alerts/stats`, `/api/v1/reports`).
//!
//! The contract names what they contain (counts by severity, type, source, top labels;
//! counts, top alerts, MTTR, noisiest rules) rather than one exact shape, so these
//! readers accept the usual spellings: `{"by_severity": {"critical": 3}}`,
//! `{"severity": [{"severity": "critical", "count": 3}]}`, `{"counts": {"severity": …}}`.

use serde_json::{Map, Value};

/// Windows offered by the History page (all accepted by the API).
pub const WINDOWS: [&str; 7] = ["5m", "15m", "30m", "1h", "24h", "7d", "30d"];

/// Counts of one dimension (severity, type, source…), largest first.
pub fn counts(stats: &Value, dim: &str) -> Vec<(String, f64)> {
    let Some(obj) = stats.as_object() else {
        return Vec::new();
    };
    let candidates = [
        format!("by_{dim}"),
        dim.to_string(),
        format!("{dim}s"),
        format!("{dim}_counts"),
    ];
    let nested = ["counts", "by", "totals"];
    let found = candidates
        .iter()
        .find_map(|k| obj.get(k.as_str()))
        .or_else(|| {
            nested.iter().find_map(|n| {
                let inner = obj.get(*n)?.as_object()?;
                candidates.iter().find_map(|k| inner.get(k.as_str()))
            })
        });
    let mut out = match found {
        Some(v) => pairs(v, dim),
        None => Vec::new(),
    };
    out.sort_by(|a, b| {
        b.1.partial_cmp(&a.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.0.cmp(&b.0))
    });
    out
}

/// `{"k": n}`, `{"k": {"count": n}}` or `[{"<dim>"|"name"|"key"|"value": k, "count": n}]`.
fn pairs(v: &Value, dim: &str) -> Vec<(String, f64)> {
    match v {
        Value::Object(m) => m
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), number(v).or_else(|| count_of(v.as_object()?))?)))
            .collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|it| {
                let o = it.as_object()?;
                let name = [dim, "name", "key", "label", "value"]
                    .iter()
                    .find_map(|k| o.get(*k).and_then(Value::as_str))?;
                Some((name.to_string(), count_of(o)?))
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn count_of(o: &Map<String, Value>) -> Option<f64> {
    ["count", "total", "n", "alerts"]
        .iter()
        .find_map(|k| o.get(*k).and_then(number))
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The total number of alerts in the window: `total`, else the sum by severity.
pub fn total(stats: &Value) -> f64 {
    stats
        .get("total")
        .and_then(number)
        .or_else(|| {
            stats
                .get("counts")
                .and_then(|c| c.get("total"))
                .and_then(number)
        })
        .unwrap_or_else(|| counts(stats, "severity").iter().map(|c| c.1).sum())
}

/// Mean time to resolve in seconds: a number under any key containing "mttr" (seconds,
/// or milliseconds when the key ends in `_ms`), or `{"mttr": {"seconds": n}}`.
pub fn mttr_seconds(report: &Value) -> Option<f64> {
    let obj = report.as_object()?;
    for (k, v) in obj {
        let kl = k.to_ascii_lowercase();
        if !kl.contains("mttr") {
            continue;
        }
        if let Some(n) = number(v) {
            return Some(if kl.ends_with("_ms") { n / 1000.0 } else { n });
        }
        if let Some(o) = v.as_object()
            && let Some(n) = ["seconds", "mean_seconds", "avg_seconds", "overall"]
                .iter()
                .find_map(|k| o.get(*k).and_then(number))
        {
            return Some(n);
        }
        if v.is_null() {
            return None;
        }
    }
    obj.get("summary").and_then(mttr_seconds)
}

/// A row of the "top noisy alerts" table.
#[derive(Debug, Clone, PartialEq)]
pub struct TopAlert {
    /// alertname, name or message.
    pub name: String,
    /// How many times it fired / was received.
    pub count: f64,
    /// Extra text (source, severity) when present.
    pub detail: String,
}

/// The noisiest alerts (or rules) from a report or stats answer, largest first.
pub fn top_alerts(report: &Value) -> Vec<TopAlert> {
    let Some(obj) = report.as_object() else {
        return Vec::new();
    };
    let keys = [
        "top_alerts",
        "noisiest_alerts",
        "top_noisy",
        "noisy_alerts",
        "noisiest_rules",
        "top_rules",
        "top",
    ];
    let Some(items) = keys
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_array))
    else {
        return Vec::new();
    };
    let mut out: Vec<TopAlert> = items
        .iter()
        .filter_map(|it| {
            let o = it.as_object()?;
            let name = ["alertname", "name", "rule", "message", "fingerprint"]
                .iter()
                .find_map(|k| o.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()))?;
            let detail = ["source", "severity"]
                .iter()
                .filter_map(|k| o.get(*k).and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" · ");
            Some(TopAlert {
                name: name.to_string(),
                count: count_of(o).unwrap_or(0.0),
                detail,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        b.count
            .partial_cmp(&a.count)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_in_the_usual_shapes() {
        let a = json!({"by_severity": {"warning": 2, "critical": 5}});
        let b = json!({"severity": [{"severity": "critical", "count": 5}, {"severity": "warning", "count": 2}]});
        let c =
            json!({"counts": {"severity": {"critical": {"count": 5}, "warning": {"count": 2}}}});
        let want = vec![("critical".to_string(), 5.0), ("warning".to_string(), 2.0)];
        assert_eq!(counts(&a, "severity"), want);
        assert_eq!(counts(&b, "severity"), want);
        assert_eq!(counts(&c, "severity"), want);
        assert!(counts(&a, "source").is_empty());
        assert_eq!(total(&a), 7.0);
        assert_eq!(total(&json!({"total": 9, "by_severity": {}})), 9.0);
    }

    #[test]
    fn mttr_and_top_alerts() {
        assert_eq!(mttr_seconds(&json!({"mttr_seconds": 125.5})), Some(125.5));
        assert_eq!(mttr_seconds(&json!({"mttr_ms": 2000})), Some(2.0));
        assert_eq!(mttr_seconds(&json!({"mttr": {"seconds": 60}})), Some(60.0));
        assert_eq!(
            mttr_seconds(&json!({"summary": {"mttr_seconds": 3}})),
            Some(3.0)
        );
        assert_eq!(mttr_seconds(&json!({"mttr_seconds": null})), None);
        let r = json!({"top_alerts": [
            {"alertname": "A", "count": 3, "source": "rules"},
            {"name": "B", "count": 10},
            {"count": 1}
        ]});
        let t = top_alerts(&r);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].name, "B");
        assert_eq!(t[1].detail, "rules");
    }
}
