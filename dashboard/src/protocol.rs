//! The `/api/v1/stream` WebSocket protocol, client side. See `docs/dashboard.md`.
//!
//! Client → server: `{"type":"subscribe","series":["system_cpu_usage_ratio", …]}`
//! (replaces the previous set; each entry is a PromQL expression).
//! Server → client: `hello`, `sample`, `tick`, `alert`, `error`, `lagged` messages.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::model::{Alert, Labels};

/// A message from the server.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerMsg {
    /// Sent once after connecting.
    Hello {
        /// The collection interval (ms).
        interval_ms: i64,
        /// Server clock (Unix ms) when sent.
        #[serde(default)]
        server_time: i64,
        /// Server version.
        #[serde(default)]
        version: String,
    },
    /// One sample of one series of a subscribed expression.
    Sample {
        /// The expression as subscribed.
        series: String,
        /// The series' labels.
        #[serde(default)]
        labels: Labels,
        /// Unix ms.
        t: i64,
        /// Value (non-finite values arrive as "NaN", "+Inf", "-Inf").
        #[serde(deserialize_with = "sample_value")]
        v: f64,
    },
    /// All samples of collection tick `t` have been sent.
    Tick {
        /// Unix ms of the tick.
        t: i64,
    },
    /// An alert lifecycle event.
    Alert {
        /// fired, repeated, resolved, acked, silenced, unsilenced, notified.
        kind: String,
        /// The alert after the event.
        alert: Box<Alert>,
    },
    /// A subscription problem (bad expression, too many series) or a protocol error.
    Error {
        /// The expression concerned, if any.
        #[serde(default)]
        series: Option<String>,
        /// What is wrong.
        error: String,
    },
    /// The client fell behind and missed `missed` alert events: reload the alert list.
    Lagged {
        /// How many.
        #[serde(default)]
        missed: u64,
    },
    /// A message type this client does not know (newer server).
    #[serde(other)]
    Unknown,
}

fn sample_value<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) => crate::promql::parse_value(&s),
        _ => f64::NAN,
    })
}

/// A message to the server.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ClientMsg {
    /// Replace the subscription with these expressions.
    Subscribe {
        /// PromQL expressions.
        series: Vec<String>,
    },
}

/// Parses one text frame.
pub fn parse_server_msg(text: &str) -> Result<ServerMsg, String> {
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// Reconnect delay after `attempt` consecutive failures: exponential from 500 ms,
/// capped at 30 s, with "equal jitter" (`jitter01` ∈ [0, 1) picks within the upper half)
/// so many dashboards do not reconnect in lockstep after a restart.
pub fn backoff_ms(attempt: u32, jitter01: f64) -> u32 {
    let base = 500u64.saturating_mul(1u64 << attempt.min(16)).min(30_000);
    let half = base / 2;
    (half + (half as f64 * jitter01.clamp(0.0, 1.0)) as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_message() {
        let m = parse_server_msg(
            r#"{"type":"sample","series":"rate(x[1m])","labels":{"a":"b"},"t":5,"v":0.25}"#,
        )
        .unwrap();
        assert!(
            matches!(m, ServerMsg::Sample { ref series, t: 5, v, .. } if series == "rate(x[1m])" && v == 0.25)
        );
        let m = parse_server_msg(r#"{"type":"sample","series":"x","t":5,"v":"+Inf"}"#).unwrap();
        assert!(matches!(m, ServerMsg::Sample { v, .. } if v == f64::INFINITY));
        let m =
            parse_server_msg(r#"{"type":"alert","kind":"fired","alert":{"id":3,"message":"m"}}"#)
                .unwrap();
        assert!(
            matches!(m, ServerMsg::Alert { ref kind, ref alert } if kind == "fired" && alert.id == 3)
        );
        let m = parse_server_msg(r#"{"type":"hello","interval_ms":1000}"#).unwrap();
        assert!(matches!(
            m,
            ServerMsg::Hello {
                interval_ms: 1000,
                ..
            }
        ));
        assert_eq!(
            parse_server_msg(r#"{"type":"future","x":1}"#).unwrap(),
            ServerMsg::Unknown
        );
        assert!(parse_server_msg("nope").is_err());
    }

    #[test]
    fn subscribe_shape() {
        let s = serde_json::to_string(&ClientMsg::Subscribe {
            series: vec!["up".into()],
        })
        .unwrap();
        assert_eq!(s, r#"{"type":"subscribe","series":["up"]}"#);
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        assert_eq!(backoff_ms(0, 0.0), 250);
        assert_eq!(backoff_ms(0, 1.0), 500);
        assert_eq!(backoff_ms(3, 1.0), 4000);
        assert_eq!(backoff_ms(10, 1.0), 30_000);
        assert_eq!(backoff_ms(u32::MAX, 0.0), 15_000);
        assert!((250..=500).contains(&backoff_ms(0, 0.37)));
    }
}
