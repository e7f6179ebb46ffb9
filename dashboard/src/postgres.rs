//! The PostgreSQL page's data: PromQL instant queries over the collector's series
//! (postgres_exporter's names, one `server` label per target), folded into one row per
//! server and a table of its top statements.

use std::collections::BTreeMap;

use serde_json::Value;

/// What a server row shows, each from one instant query (aggregated `by (server)`).
pub const SERVER_QUERIES: &[(&str, &str)] = &[
    ("up", "min by (server) (pg_up)"),
    ("connections", "sum by (server) (pg_stat_activity_count)"),
    (
        "max_connections",
        "max by (server) (pg_settings_max_connections)",
    ),
    (
        "tps",
        "sum by (server) (irate(pg_stat_database_xact_commit[5m]) + irate(pg_stat_database_xact_rollback[5m]))",
    ),
    (
        "cache_hit",
        "sum by (server) (irate(pg_stat_database_blks_hit[5m])) / (sum by (server) (irate(pg_stat_database_blks_hit[5m])) + sum by (server) (irate(pg_stat_database_blks_read[5m])))",
    ),
    ("locks", "sum by (server) (pg_locks_count)"),
    (
        "longest_tx",
        "max by (server) (pg_stat_activity_max_tx_duration)",
    ),
    ("replica", "max by (server) (pg_replication_is_replica)"),
    ("lag", "max by (server) (pg_replication_lag_seconds)"),
];

/// The statements table's queries: per (server, queryid).
pub const STATEMENT_QUERIES: &[(&str, &str)] = &[
    (
        "calls",
        "sum by (server, queryid) (pg_stat_statements_calls)",
    ),
    (
        "total",
        "sum by (server, queryid) (pg_stat_statements_total_time_seconds)",
    ),
    (
        "mean",
        "max by (server, queryid) (pg_stat_statements_mean_time_seconds)",
    ),
    ("rows", "sum by (server, queryid) (pg_stat_statements_rows)"),
    ("info", "pg_stat_statements_query_info"),
];

/// One server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Server {
    /// Its `server` label.
    pub name: String,
    /// Values by key of [`SERVER_QUERIES`].
    pub values: BTreeMap<&'static str, f64>,
}

impl Server {
    /// A value, when the query returned one.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.values.get(key).copied().filter(|v| v.is_finite())
    }

    /// Whether the collector reaches it.
    pub fn up(&self) -> bool {
        self.get("up") == Some(1.0)
    }

    /// Connections in use as a share of `max_connections`.
    pub fn connections_used(&self) -> Option<f64> {
        match (self.get("connections"), self.get("max_connections")) {
            (Some(c), Some(m)) if m > 0.0 => Some(c / m),
            _ => None,
        }
    }
}

/// One statement of a server's top list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Statement {
    /// Server.
    pub server: String,
    /// `queryid`.
    pub queryid: String,
    /// Database.
    pub datname: String,
    /// Role.
    pub rolname: String,
    /// Normalised text (truncated by the collector).
    pub query: String,
    /// Calls.
    pub calls: f64,
    /// Total execution time (s).
    pub total: f64,
    /// Mean time per call (s).
    pub mean: f64,
    /// Rows.
    pub rows: f64,
}

/// `(labels, value)` of an instant-vector answer of `/api/v1/query`.
pub fn vector(answer: &Value) -> Vec<(BTreeMap<String, String>, f64)> {
    answer["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let labels = s["metric"]
                .as_object()?
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect();
            let v = match s["value"][1].as_str()? {
                "NaN" => f64::NAN,
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                t => t.parse().ok()?,
            };
            Some((labels, v))
        })
        .collect()
}

/// Server rows from the answers to [`SERVER_QUERIES`] (in that order), by name.
pub fn servers(answers: &[Value]) -> Vec<Server> {
    let mut by_name: BTreeMap<String, Server> = BTreeMap::new();
    for ((key, _), answer) in SERVER_QUERIES.iter().zip(answers) {
        for (labels, v) in vector(answer) {
            let Some(name) = labels.get("server") else {
                continue;
            };
            let s = by_name.entry(name.clone()).or_insert_with(|| Server {
                name: name.clone(),
                ..Server::default()
            });
            s.values.insert(key, v);
        }
    }
    by_name.into_values().collect()
}

/// The statements from the answers to [`STATEMENT_QUERIES`] (in that order), slowest
/// (by total time) first.
pub fn statements(answers: &[Value]) -> Vec<Statement> {
    let mut by_id: BTreeMap<(String, String), Statement> = BTreeMap::new();
    for ((key, _), answer) in STATEMENT_QUERIES.iter().zip(answers) {
        for (l, v) in vector(answer) {
            let (Some(server), Some(queryid)) = (l.get("server"), l.get("queryid")) else {
                continue;
            };
            let s = by_id
                .entry((server.clone(), queryid.clone()))
                .or_insert_with(|| Statement {
                    server: server.clone(),
                    queryid: queryid.clone(),
                    ..Statement::default()
                });
            match *key {
                "calls" => s.calls = v,
                "total" => s.total = v,
                "mean" => s.mean = v,
                "rows" => s.rows = v,
                _ => {
                    let text = |k: &str| l.get(k).cloned().unwrap_or_default();
                    s.query = text("query");
                    s.datname = text("datname");
                    s.rolname = text("rolname");
                }
            }
        }
    }
    let mut out: Vec<Statement> = by_id.into_values().collect();
    out.sort_by(|a, b| b.total.total_cmp(&a.total));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(series: &[(&[(&str, &str)], &str)]) -> Value {
        json!({"status": "success", "data": {"resultType": "vector", "result":
            series.iter().map(|(labels, v)| json!({
                "metric": labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "value": [1.0, v],
            })).collect::<Vec<_>>()}})
    }

    #[test]
    fn servers_fold_every_query_by_name() {
        let mut answers = vec![answer(&[]); SERVER_QUERIES.len()];
        answers[0] = answer(&[(&[("server", "a")], "1"), (&[("server", "b")], "0")]);
        answers[1] = answer(&[(&[("server", "a")], "30")]);
        answers[2] = answer(&[(&[("server", "a")], "100")]);
        answers[4] = answer(&[(&[("server", "a")], "NaN")]);
        let s = servers(&answers);
        assert_eq!(s.len(), 2);
        assert!(s[0].up() && !s[1].up());
        assert_eq!(s[0].connections_used(), Some(0.3));
        assert_eq!(
            s[0].get("cache_hit"),
            None,
            "NaN (no reads yet) shows as unknown"
        );
        assert_eq!(s[1].connections_used(), None);
    }

    #[test]
    fn statements_join_the_text_and_sort_by_total_time() {
        let a: &[(&str, &str)] = &[("server", "a"), ("queryid", "1")];
        let b: &[(&str, &str)] = &[("server", "a"), ("queryid", "2")];
        let answers = vec![
            answer(&[(a, "10"), (b, "3")]),
            answer(&[(a, "0.5"), (b, "9")]),
            answer(&[(a, "0.05"), (b, "3")]),
            answer(&[(a, "10"), (b, "1")]),
            answer(&[(
                &[
                    ("server", "a"),
                    ("queryid", "2"),
                    ("query", "SELECT pg_sleep($1)"),
                    ("datname", "app"),
                    ("rolname", "web"),
                ],
                "1",
            )]),
        ];
        let s = statements(&answers);
        assert_eq!(
            s.iter().map(|x| x.queryid.as_str()).collect::<Vec<_>>(),
            ["2", "1"]
        );
        assert_eq!(s[0].query, "SELECT pg_sleep($1)");
        assert_eq!(
            (s[0].calls, s[0].mean, s[0].datname.as_str()),
            (3.0, 3.0, "app")
        );
        assert_eq!(s[1].query, "", "no text when its _info series is missing");
    }
}
