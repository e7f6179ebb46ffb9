//! The Overview page's charts: what each one queries, its unit and legends.
//!
//! Expressions may use `$__rate_interval` (as in Grafana), replaced by
//! [`rate_interval`] of the server's collection interval before subscribing.

use std::collections::BTreeMap;

use crate::format::Unit;

/// One query of a chart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Query {
    /// PromQL, possibly with `$__rate_interval`.
    pub expr: &'static str,
    /// Legend template: `{label}` placeholders are replaced by label values.
    pub legend: &'static str,
    /// Drawn dashed (limits and capacities).
    pub dashed: bool,
}

/// One chart of the Overview.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Panel {
    /// Stable id (DOM id `chart-<id>`, used by the browser tests).
    pub id: &'static str,
    /// Title.
    pub title: &'static str,
    /// Unit of every query.
    pub unit: Unit,
    /// Queries.
    pub queries: &'static [Query],
    /// What the chart says while no query has any series.
    pub empty: &'static str,
}

/// The usual text of a chart without series.
pub const WAITING: &str = "waiting for data…";

const fn q(expr: &'static str, legend: &'static str) -> Query {
    Query {
        expr,
        legend,
        dashed: false,
    }
}

const fn limit(expr: &'static str, legend: &'static str) -> Query {
    Query {
        expr,
        legend,
        dashed: true,
    }
}

/// The Overview charts, in page order.
pub const OVERVIEW: &[Panel] = &[
    Panel {
        id: "cpu",
        title: "CPU",
        unit: Unit::Percent,
        queries: &[q("system_cpu_usage_ratio", "all cores")],
        empty: WAITING,
    },
    Panel {
        id: "cpu-cores",
        title: "CPU per core",
        unit: Unit::Percent,
        queries: &[q("system_cpu_core_usage_ratio", "core {core}")],
        empty: WAITING,
    },
    Panel {
        id: "load",
        title: "Load average",
        unit: Unit::Count,
        queries: &[
            q("system_load1", "1m"),
            q("system_load5", "5m"),
            q("system_load15", "15m"),
        ],
        empty: WAITING,
    },
    Panel {
        id: "memory",
        title: "Memory and swap",
        unit: Unit::Bytes,
        queries: &[
            q("system_memory_used_bytes", "memory used"),
            q("system_swap_used_bytes", "swap used"),
            limit("system_memory_total_bytes", "memory total"),
            limit("system_swap_total_bytes", "swap total"),
        ],
        empty: WAITING,
    },
    Panel {
        id: "disk",
        title: "Disk used per mount",
        unit: Unit::Percent,
        queries: &[q(
            "system_disk_used_bytes / system_disk_total_bytes",
            "{mount}",
        )],
        empty: WAITING,
    },
    Panel {
        id: "network",
        title: "Network",
        unit: Unit::BytesPerSec,
        queries: &[
            q(
                "rate(system_network_received_bytes_total{interface!=\"lo\"}[$__rate_interval])",
                "{interface} in",
            ),
            q(
                "rate(system_network_transmitted_bytes_total{interface!=\"lo\"}[$__rate_interval])",
                "{interface} out",
            ),
        ],
        empty: WAITING,
    },
    Panel {
        id: "http-rate",
        title: "HTTP requests by route",
        unit: Unit::PerSec,
        queries: &[q(
            "sum by (route) (rate(watchpost_http_requests_total[$__rate_interval]))",
            "{route}",
        )],
        empty: WAITING,
    },
    Panel {
        id: "http-p99",
        title: "HTTP p99 latency by route",
        unit: Unit::Seconds,
        queries: &[q(
            "histogram_quantile(0.99, sum by (route, le) (rate(watchpost_http_request_duration_seconds_bucket[$__rate_interval])))",
            "{route}",
        )],
        empty: WAITING,
    },
    Panel {
        id: "db-p99",
        title: "DB query p99 latency",
        unit: Unit::Seconds,
        queries: &[q(
            "histogram_quantile(0.99, sum by (query, le) (rate(watchpost_db_query_duration_seconds_bucket[$__rate_interval])))",
            "{query}",
        )],
        empty: WAITING,
    },
    Panel {
        id: "db-slow",
        title: "DB slow queries and errors",
        unit: Unit::PerSec,
        queries: &[
            q(
                "sum(rate(watchpost_db_slow_queries_total[$__rate_interval]))",
                "slow",
            ),
            q(
                "sum(rate(watchpost_db_queries_total{outcome=\"error\"}[$__rate_interval]))",
                "errors",
            ),
        ],
        empty: WAITING,
    },
    Panel {
        id: "cache-hit",
        title: "Cache hit ratio",
        unit: Unit::Percent,
        queries: &[q(
            "sum by (cache) (rate(watchpost_cache_requests_total{result=\"hit\"}[$__rate_interval])) / sum by (cache) (rate(watchpost_cache_requests_total[$__rate_interval]))",
            "{cache}",
        )],
        empty: WAITING,
    },
    Panel {
        id: "batch",
        title: "Batch queue depth vs capacity",
        unit: Unit::Count,
        queries: &[
            q("watchpost_batch_queue_depth", "{queue} depth"),
            limit("watchpost_batch_queue_capacity", "{queue} capacity"),
        ],
        empty: WAITING,
    },
    Panel {
        id: "notify",
        title: "Notification queue",
        unit: Unit::Count,
        queries: &[q("watchpost_notification_queue_depth", "{receiver}")],
        empty: "no notification has been queued yet",
    },
];

/// Grafana's `$__rate_interval` for a collection interval: four intervals, at least
/// 15 s, in whole seconds.
pub fn rate_interval(interval_ms: i64) -> String {
    let ms = (interval_ms * 4).max(15_000);
    format!("{}s", (ms + 999) / 1000)
}

/// `expr` with `$__rate_interval` replaced.
pub fn expand(expr: &str, interval_ms: i64) -> String {
    expr.replace("$__rate_interval", &rate_interval(interval_ms))
}

/// Every expression of the Overview, expanded, without duplicates, in page order.
pub fn overview_exprs(interval_ms: i64) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in OVERVIEW {
        for q in p.queries {
            let e = expand(q.expr, interval_ms);
            if !out.contains(&e) {
                out.push(e);
            }
        }
    }
    out
}

/// Fills a legend template: `{label}` becomes the label's value ("" when missing).
pub fn render_legend(template: &str, labels: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        match rest[open..].find('}') {
            Some(close) => {
                let name = &rest[open + 1..open + close];
                out.push_str(labels.get(name).map(String::as_str).unwrap_or(""));
                rest = &rest[open + close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    let trimmed = out.trim();
    if trimmed.is_empty() {
        template.to_string()
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_interval_follows_the_collection_interval() {
        assert_eq!(rate_interval(1000), "15s");
        assert_eq!(rate_interval(200), "15s");
        assert_eq!(rate_interval(10_000), "40s");
        assert_eq!(expand("rate(x[$__rate_interval])", 1000), "rate(x[15s])");
    }

    #[test]
    fn overview_covers_the_issue_and_has_unique_ids() {
        let ids: Vec<&str> = OVERVIEW.iter().map(|p| p.id).collect();
        for want in [
            "cpu",
            "cpu-cores",
            "load",
            "memory",
            "disk",
            "network",
            "http-rate",
            "http-p99",
            "db-p99",
            "db-slow",
            "cache-hit",
            "batch",
            "notify",
        ] {
            assert!(ids.contains(&want), "{want}");
        }
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len());
        let exprs = overview_exprs(1000);
        assert!(exprs.iter().all(|e| !e.contains('$')));
        assert!(exprs.len() >= 18);
        // Balanced brackets in every expression.
        for e in &exprs {
            for (o, c) in [('(', ')'), ('[', ']'), ('{', '}')] {
                assert_eq!(e.matches(o).count(), e.matches(c).count(), "{e}");
            }
        }
    }

    #[test]
    fn legends() {
        let mut l = BTreeMap::new();
        l.insert("interface".to_string(), "eth0".to_string());
        assert_eq!(render_legend("{interface} in", &l), "eth0 in");
        assert_eq!(render_legend("total", &l), "total");
        assert_eq!(render_legend("{route}", &l), "{route}");
        assert_eq!(render_legend("{unclosed", &l), "{unclosed");
    }
}
