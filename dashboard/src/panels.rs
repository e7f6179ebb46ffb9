//! The Overview page's charts: what each one queries, its unit and legends.
//!
//! Expressions may use `$__rate_interval` (as in Grafana), replaced by
//! [`rate_interval`] of the server's collection interval before subscribing.
//!
//! Host panels (`system_*` series) show one host at a time: this server's own series
//! (no `instance` label) or an agent's (`instance="<agent name>"`), by adding an
//! `instance` matcher to every selector of their queries ([`with_instance`]).

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
    /// A host panel: its queries read `system_*` series, restricted to the chosen host.
    pub host: bool,
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
        host: true,
    },
    Panel {
        id: "cpu-cores",
        title: "CPU per core",
        unit: Unit::Percent,
        queries: &[q("system_cpu_core_usage_ratio", "core {core}")],
        empty: WAITING,
        host: true,
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
        host: true,
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
        host: true,
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
        host: true,
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
        host: true,
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
        host: false,
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
        host: false,
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
        host: false,
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
        host: false,
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
        host: false,
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
        host: false,
    },
    Panel {
        id: "notify",
        title: "Notification queue",
        unit: Unit::Count,
        queries: &[q("watchpost_notification_queue_depth", "{receiver}")],
        empty: "no notification has been queued yet",
        host: false,
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

/// The expression `q` of `panel` subscribes to: expanded, and for a host panel
/// restricted to `host` ("" for this server, else an agent's name).
pub fn panel_expr(panel: &Panel, q: &Query, interval_ms: i64, host: &str) -> String {
    let e = expand(q.expr, interval_ms);
    if panel.host {
        with_instance(&e, host)
    } else {
        e
    }
}

/// Every expression of the Overview for `host`, expanded, without duplicates, in page
/// order.
pub fn overview_exprs(interval_ms: i64, host: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in OVERVIEW {
        for q in p.queries {
            let e = panel_expr(p, q, interval_ms, host);
            if !out.contains(&e) {
                out.push(e);
            }
        }
    }
    out
}

/// Words that are never metric names where they stand: keywords and operators.
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
];

/// Keywords followed by a parenthesized list of label names.
const LABEL_LIST: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Aggregation operators, which may take `by (…)`/`without (…)` before their argument.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// `expr` with `instance="<instance>"` added to every vector selector:
/// `sum by (mount) (system_disk_used_bytes)` →
/// `sum by (mount) (system_disk_used_bytes{instance="web-1"})`, and
/// `x{interface!="lo"}` → `x{interface!="lo",instance="web-1"}`. Function names, keywords,
/// label lists (`by (…)`, `on (…)`), strings, numbers, durations and ranges are left
/// alone. An empty `instance` selects series without the label.
pub fn with_instance(expr: &str, instance: &str) -> String {
    let mut value = String::with_capacity(instance.len());
    for c in instance.chars() {
        match c {
            '\\' => value.push_str("\\\\"),
            '"' => value.push_str("\\\""),
            '\n' => value.push_str("\\n"),
            c => value.push(c),
        }
    }
    let matcher = format!("instance=\"{value}\"");
    let b = expr.as_bytes();
    let mut out = String::with_capacity(expr.len() + 24 * 4);
    let mut i = 0;
    // After `by`, `on`…: the next `(…)` lists label names.
    let mut label_list = false;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            out.push(c as char);
            i += 1;
            continue;
        }
        let was_label_list = std::mem::take(&mut label_list);
        match c {
            b'"' | b'\'' | b'`' => {
                let end = string_end(b, i);
                out.push_str(&expr[i..end]);
                i = end;
            }
            b'[' => {
                let end = b[i..]
                    .iter()
                    .position(|&x| x == b']')
                    .map_or(b.len(), |p| i + p + 1);
                out.push_str(&expr[i..end]);
                i = end;
            }
            b'(' if was_label_list => {
                let end = b[i..]
                    .iter()
                    .position(|&x| x == b')')
                    .map_or(b.len(), |p| i + p + 1);
                out.push_str(&expr[i..end]);
                i = end;
            }
            b'{' => {
                // A selector without a metric name (`{__name__="x"}`).
                let end = selector_end(b, i);
                out.push_str(&add_matcher(&expr[i..end], &matcher));
                i = end;
            }
            b'0'..=b'9' | b'.' => {
                // Numbers (`0.99`, `1e-3`, `0x1f`) and durations (`5m`).
                let mut j = i;
                while j < b.len() {
                    let x = b[j];
                    let part = x.is_ascii_alphanumeric() || x == b'.' || x == b'_';
                    // The sign of an exponent (`1e-3`), not of a hex digit (`0x1e-3`).
                    let exponent_sign = (x == b'+' || x == b'-')
                        && matches!(b[j - 1], b'e' | b'E')
                        && !expr[i..j].starts_with("0x");
                    if !(part || exponent_sign) {
                        break;
                    }
                    j += 1;
                }
                out.push_str(&expr[i..j]);
                i = j;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let mut j = i;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b':')
                {
                    j += 1;
                }
                let word = &expr[i..j];
                let lower = word.to_ascii_lowercase();
                let mut k = j;
                while k < b.len() && b[k].is_ascii_whitespace() {
                    k += 1;
                }
                let next = b.get(k).copied();
                let next_word = &expr[k..][..expr[k..]
                    .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                    .unwrap_or(expr.len() - k)];
                out.push_str(word);
                if KEYWORDS.contains(&lower.as_str()) {
                    label_list = LABEL_LIST.contains(&lower.as_str());
                } else if next == Some(b'(') {
                    // A function call or an aggregation.
                } else if AGGREGATIONS.contains(&lower.as_str())
                    && matches!(next_word.to_ascii_lowercase().as_str(), "by" | "without")
                {
                    // `sum by (…) (…)`.
                } else if next == Some(b'{') {
                    out.push_str(&expr[j..k]);
                    let end = selector_end(b, k);
                    out.push_str(&add_matcher(&expr[k..end], &matcher));
                    j = end;
                } else {
                    out.push('{');
                    out.push_str(&matcher);
                    out.push('}');
                }
                i = j;
            }
            _ => {
                let ch = expr[i..].chars().next().unwrap_or(' ');
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    out
}

/// The end (exclusive) of the string literal starting at `start`.
fn string_end(b: &[u8], start: usize) -> usize {
    let quote = b[start];
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == b'\\' && quote != b'`' {
            i += 2;
        } else if b[i] == quote {
            return i + 1;
        } else {
            i += 1;
        }
    }
    b.len()
}

/// The end (exclusive) of the `{…}` starting at `start`, strings skipped.
fn selector_end(b: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => i = string_end(b, i),
            b'}' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// `{…}` with `matcher` appended.
fn add_matcher(selector: &str, matcher: &str) -> String {
    let inner = selector
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(selector);
    let trimmed = inner.trim_end();
    if trimmed.trim_start().is_empty() {
        format!("{{{matcher}}}")
    } else if trimmed.ends_with(',') {
        format!("{{{trimmed}{matcher}}}")
    } else {
        format!("{{{trimmed},{matcher}}}")
    }
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
        let exprs = overview_exprs(1000, "");
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
    fn instance_matcher_on_every_selector() {
        let w = |e: &str| with_instance(e, "web-1");
        assert_eq!(
            w("system_cpu_usage_ratio"),
            r#"system_cpu_usage_ratio{instance="web-1"}"#
        );
        assert_eq!(
            w("sum by (mount) (system_disk_used_bytes)"),
            r#"sum by (mount) (system_disk_used_bytes{instance="web-1"})"#
        );
        assert_eq!(
            w("system_disk_used_bytes / system_disk_total_bytes"),
            r#"system_disk_used_bytes{instance="web-1"} / system_disk_total_bytes{instance="web-1"}"#
        );
        assert_eq!(
            w(r#"rate(system_network_received_bytes_total{interface!="lo"}[15s])"#),
            r#"rate(system_network_received_bytes_total{interface!="lo",instance="web-1"}[15s])"#
        );
        assert_eq!(
            w("histogram_quantile(0.99, sum by (route, le) (rate(x_bucket[1m])))"),
            r#"histogram_quantile(0.99, sum by (route, le) (rate(x_bucket{instance="web-1"}[1m])))"#
        );
        assert_eq!(
            w("sum(rate(x{}[5m:1m] offset 5m)) without (cpu) > bool 1e-3"),
            r#"sum(rate(x{instance="web-1"}[5m:1m] offset 5m)) without (cpu) > bool 1e-3"#
        );
        assert_eq!(
            w("a * on(job) group_left(mount) b and ignoring (x) c"),
            r#"a{instance="web-1"} * on(job) group_left(mount) b{instance="web-1"} and ignoring (x) c{instance="web-1"}"#
        );
        assert_eq!(
            w(r#"{__name__="up", path="/a{b}",} or topk(3, y) or count_values("v", z)"#),
            r#"{__name__="up", path="/a{b}",instance="web-1"} or topk(3, y{instance="web-1"}) or count_values("v", z{instance="web-1"})"#
        );
        assert_eq!(w("-x + Inf"), r#"-x{instance="web-1"} + Inf"#);
        assert_eq!(
            with_instance("system_load1", ""),
            r#"system_load1{instance=""}"#
        );
        assert_eq!(with_instance("x", r#"we"b\1"#), r#"x{instance="we\"b\\1"}"#);
    }

    #[test]
    fn only_host_panels_follow_the_host() {
        for p in OVERVIEW {
            for q in p.queries {
                assert_eq!(p.host, q.expr.contains("system_"), "{}", p.id);
                let e = panel_expr(p, q, 1000, "web-1");
                assert_eq!(p.host, e.contains(r#"instance="web-1""#), "{e}");
            }
        }
        let exprs = overview_exprs(1000, "web-1");
        assert!(exprs.contains(&r#"system_cpu_usage_ratio{instance="web-1"}"#.to_string()));
        assert!(exprs.contains(&"watchpost_notification_queue_depth".to_string()));
        let here = overview_exprs(1000, "");
        assert!(here.contains(&r#"system_memory_used_bytes{instance=""}"#.to_string()));
        assert_eq!(here.len(), exprs.len());
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
