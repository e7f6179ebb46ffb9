//! Reading Prometheus HTTP API answers, watchpost's or a real Prometheus', the same way.

use std::collections::BTreeMap;

use serde_json::Value;

/// `time` (and `start`/`end`) parameters: Unix seconds from ms.
pub fn secs(ms: i64) -> String {
    format!("{}", ms as f64 / 1000.0)
}

/// `GET base + path` with `params`; the JSON answer.
pub async fn api_get(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    params: &[(&str, String)],
) -> Value {
    client
        .get(format!("{base}{path}"))
        .query(params)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {base}{path}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {base}{path}: not JSON: {e}"))
}

/// An instant query at `t_ms`.
pub async fn query_at(client: &reqwest::Client, base: &str, q: &str, t_ms: i64) -> Value {
    api_get(
        client,
        base,
        "/api/v1/query",
        &[("query", q.to_string()), ("time", secs(t_ms))],
    )
    .await
}

/// The raw samples of a matrix answer (`x[5m]`), as written, keyed by label set.
pub fn raw_matrix(body: &Value) -> BTreeMap<String, Vec<(String, String)>> {
    body["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("not a matrix answer: {body}"))
        .iter()
        .map(|s| {
            let points = s["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    (
                        p[0].to_string(),
                        p[1].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            (s["metric"].to_string(), points)
        })
        .collect()
}
