//! Reading Prometheus HTTP API answers (`/api/v1/query_range`, `/api/v1/query`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::series::Point;

/// One series of a range or instant query result.
#[derive(Debug, Clone, PartialEq)]
pub struct QuerySeries {
    /// Labels (`metric`).
    pub labels: BTreeMap<String, String>,
    /// Points in time order (Unix ms).
    pub points: Vec<Point>,
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Value,
}

#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
    #[serde(default)]
    value: Option<(f64, String)>,
}

/// Parses a Prometheus sample value ("1.5", "NaN", "+Inf", "-Inf").
pub fn parse_value(s: &str) -> f64 {
    match s {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => s.parse().unwrap_or(f64::NAN),
    }
}

/// Parses a query answer into series; a `matrix`, `vector` or `scalar` result is
/// accepted, an error answer becomes `Err` with the server's message.
pub fn parse_query_response(v: &Value) -> Result<Vec<QuerySeries>, String> {
    let env: Envelope =
        serde_json::from_value(v.clone()).map_err(|e| format!("unexpected answer: {e}"))?;
    if env.status != "success" {
        return Err(format!(
            "{}: {}",
            env.error_type.unwrap_or_else(|| "error".into()),
            env.error.unwrap_or_default()
        ));
    }
    let data = env.data.ok_or("answer without data")?;
    let to_ms = |t: f64| (t * 1000.0).round() as i64;
    match data.result_type.as_str() {
        "matrix" | "vector" => {
            let items: Vec<Item> =
                serde_json::from_value(data.result).map_err(|e| format!("result: {e}"))?;
            Ok(items
                .into_iter()
                .map(|it| {
                    let mut points: Vec<Point> = it
                        .values
                        .iter()
                        .map(|(t, v)| (to_ms(*t), parse_value(v)))
                        .collect();
                    if let Some((t, v)) = it.value {
                        points.push((to_ms(t), parse_value(&v)));
                    }
                    QuerySeries {
                        labels: it.metric,
                        points,
                    }
                })
                .collect())
        }
        "scalar" => {
            let (t, v): (f64, String) =
                serde_json::from_value(data.result).map_err(|e| format!("result: {e}"))?;
            Ok(vec![QuerySeries {
                labels: BTreeMap::new(),
                points: vec![(to_ms(t), parse_value(&v))],
            }])
        }
        other => Err(format!("unsupported result type {other}")),
    }
}

/// The step for backfilling `window_ms` of history: the collection interval, coarsened
/// so one series needs at most `max_points` points.
pub fn backfill_step_ms(window_ms: i64, interval_ms: i64, max_points: i64) -> i64 {
    let interval = interval_ms.max(100);
    let needed = (window_ms + max_points - 1) / max_points.max(1);
    // Round up to a multiple of the interval so points line up with live samples.
    ((needed + interval - 1) / interval).max(1) * interval
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matrix_and_vector_answers() {
        let v = json!({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"__name__": "up", "job": "a"}, "values": [[1700000000, "1"], [1700000001.5, "NaN"]]}
        ]}});
        let s = parse_query_response(&v).unwrap();
        assert_eq!(s[0].labels["job"], "a");
        assert_eq!(s[0].points[0], (1_700_000_000_000, 1.0));
        assert_eq!(s[0].points[1].0, 1_700_000_001_500);
        assert!(s[0].points[1].1.is_nan());
        let v = json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {}, "value": [1700000000.25, "+Inf"]}
        ]}});
        let s = parse_query_response(&v).unwrap();
        assert_eq!(s[0].points, vec![(1_700_000_000_250, f64::INFINITY)]);
        let v = json!({"status": "success", "data": {"resultType": "scalar", "result": [1, "2"]}});
        assert_eq!(
            parse_query_response(&v).unwrap()[0].points,
            vec![(1000, 2.0)]
        );
    }

    #[test]
    fn errors_carry_the_server_message() {
        let v = json!({"status": "error", "errorType": "bad_data", "error": "unclosed left parenthesis"});
        assert_eq!(
            parse_query_response(&v).unwrap_err(),
            "bad_data: unclosed left parenthesis"
        );
        assert!(parse_query_response(&json!({"x": 1})).is_err());
    }

    #[test]
    fn backfill_steps() {
        assert_eq!(backfill_step_ms(300_000, 1000, 900), 1000);
        assert_eq!(backfill_step_ms(3_600_000, 1000, 900), 4000);
        assert_eq!(backfill_step_ms(900_000, 1000, 900), 1000);
        assert_eq!(backfill_step_ms(3_600_000, 200, 900), 4000);
    }
}
