//! Alert queries and actions: list with filters and cursor pagination, one alert with
//! its events, acknowledge, stats; Alertmanager's `GET /api/v2/alerts` and
//! `GET /api/v2/status` for Prometheus and amtool. Also the route table of every
//! alert-pipeline endpoint ([`routes`]).

use std::sync::OnceLock;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;
use super::auth::Operator;
use super::error::ApiError;
use super::{audit as audit_api, ingest, reports, silences};
use crate::alerts::model::{AlertState, AlertView, Severity, rfc3339};
use crate::alerts::repo::ListFilter;
use crate::alerts::stats::{parse_window, window_start};
use crate::audit::AuditRecord;
use crate::silence::Matcher;
use crate::store::now_ms;

/// Default page size of the list.
pub const DEFAULT_LIMIT: i64 = 100;
/// Largest page size of the list.
pub const MAX_LIMIT: i64 = 1000;

static STARTED: OnceLock<String> = OnceLock::new();

/// Every endpoint of the alert pipeline.
pub fn routes() -> Router<AppState> {
    STARTED.get_or_init(|| rfc3339(now_ms()));
    Router::new()
        .route("/api/v1/alerts", get(list).post(ingest::generic_alerts))
        .route("/api/v1/alerts/stats", get(stats))
        .route("/api/v1/alerts/{id}", get(detail))
        .route("/api/v1/alerts/{id}/ack", post(ack))
        .route(
            "/api/v1/webhooks/alertmanager",
            post(ingest::alertmanager_webhook),
        )
        .route("/api/v1/webhooks/ntopng", post(ingest::ntopng_webhook))
        .route(
            "/api/v2/alerts",
            get(v2_alerts).post(ingest::alertmanager_v2),
        )
        .route("/api/v2/status", get(v2_status))
        .route(
            "/api/v1/silences",
            get(silences::list).post(silences::create),
        )
        .route(
            "/api/v1/silences/{id}",
            get(silences::one).delete(silences::expire),
        )
        .route(
            "/api/v2/silences",
            get(silences::list).post(silences::create),
        )
        .route(
            "/api/v2/silence/{id}",
            get(silences::one).delete(silences::expire),
        )
        .route("/api/v1/reports", get(reports::report))
        .route("/api/v1/audit", get(audit_api::list))
}

/// Query parameters as ordered pairs (repeated keys kept).
pub fn query_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(raw.unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))
}

/// An opaque cursor for "ids below `id`".
pub fn encode_cursor(id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("id:{id}"))
}

/// The id of a cursor.
pub fn decode_cursor(c: &str) -> Result<i64, ApiError> {
    URL_SAFE_NO_PAD
        .decode(c.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("id:").and_then(|n| n.parse().ok()))
        .ok_or_else(|| ApiError::bad_request("cursor: not a cursor returned by this API"))
}

/// `limit`: 1..=1000 (larger values are capped at 1000).
pub fn parse_limit(v: &str) -> Result<i64, ApiError> {
    match v.trim().parse::<i64>() {
        Ok(n) if n >= 1 => Ok(n.min(MAX_LIMIT)),
        _ => Err(ApiError::bad_request(format!(
            "limit: {v:?} is not a number between 1 and {MAX_LIMIT}"
        ))),
    }
}

/// `since`: a duration back from now (`1h`) or an RFC 3339 time. A duration longer
/// than the epoch is simply "since ever" (saturating, never wrapping to the future).
pub fn parse_since(v: &str) -> Result<i64, ApiError> {
    if let Ok(d) = humantime::parse_duration(v.trim()) {
        return Ok(window_start(now_ms(), d));
    }
    chrono::DateTime::parse_from_rfc3339(v.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            ApiError::bad_request(format!(
                "since: {v:?} is neither a duration like 1h nor an RFC 3339 time"
            ))
        })
}

fn valid_label_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | ':'))
}

/// The list filter from query pairs.
pub fn list_filter(pairs: &[(String, String)]) -> Result<ListFilter, ApiError> {
    let mut f = ListFilter {
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    for (k, v) in pairs {
        match k.as_str() {
            "state" => match v.as_str() {
                "firing" => f.state = Some(AlertState::Firing),
                "resolved" => f.state = Some(AlertState::Resolved),
                "acknowledged" | "acked" => f.acknowledged = true,
                "silenced" => f.silenced = true,
                "flapping" => f.flapping = true,
                "" => {}
                other => {
                    return Err(ApiError::bad_request(format!(
                        "state: {other:?} is not one of firing, resolved, acknowledged, silenced, flapping"
                    )));
                }
            },
            "severity" if !v.is_empty() => {
                f.severity = Some(Severity::parse_strict(v).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "severity: {v:?} is not one of critical, warning, info"
                    ))
                })?)
            }
            "source" if !v.is_empty() => f.source = Some(v.clone()),
            "flapping" => {
                f.flapping = match v.as_str() {
                    "true" | "1" => true,
                    "false" | "0" | "" => false,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "flapping: {other:?} is not true or false"
                        )));
                    }
                }
            }
            "since" if !v.is_empty() => f.since_ms = Some(parse_since(v)?),
            "label" => {
                let (name, value) = v.split_once('=').ok_or_else(|| {
                    ApiError::bad_request(format!("label: {v:?} is not name=value"))
                })?;
                let name = name.trim();
                if !valid_label_name(name) {
                    return Err(ApiError::bad_request(format!(
                        "label: invalid label name {name:?}"
                    )));
                }
                let value = value.trim().trim_matches('"');
                f.labels.push((name.to_string(), value.to_string()));
            }
            "limit" => f.limit = parse_limit(v)?,
            "cursor" if !v.is_empty() => f.before_id = Some(decode_cursor(v)?),
            _ => {}
        }
    }
    Ok(f)
}

#[derive(Serialize)]
struct Page<'a> {
    alerts: Vec<AlertView<'a>>,
    next_cursor: Option<String>,
}

/// `GET /api/v1/alerts`.
pub async fn list(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(q.as_deref())?;
    let mut f = list_filter(&pairs)?;
    let limit = f.limit;
    f.limit = limit + 1;
    let mut alerts = state.alerts.list(&f).await?;
    let next_cursor = if alerts.len() as i64 > limit {
        alerts.truncate(limit as usize);
        alerts.last().map(|a| encode_cursor(a.id))
    } else {
        None
    };
    let page = Page {
        alerts: alerts.iter().map(|a| a.view()).collect(),
        next_cursor,
    };
    Ok(axum::Json(page).into_response())
}

/// Parses an alert id path segment.
pub fn parse_id(s: &str) -> Result<i64, ApiError> {
    s.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::bad_request(format!("id: {s:?} is not an alert id")))
}

/// `GET /api/v1/alerts/{id}`: the alert and its events (oldest first).
pub async fn detail(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let Some((alert, events)) = state.alerts.get(id).await? else {
        return Err(ApiError::not_found(format!("alert {id} not found")));
    };
    let mut v = alert.to_json();
    if let serde_json::Value::Object(m) = &mut v {
        let c = crate::alerts::classify::explain(&alert);
        m.insert(
            "classification".into(),
            serde_json::json!({
                "type_reason": c.type_reason,
                "severity_reason": c.severity_reason,
            }),
        );
        m.insert(
            "events".into(),
            events.iter().map(|e| e.to_json()).collect(),
        );
    }
    Ok(axum::Json(v).into_response())
}

/// Body of `POST /api/v1/alerts/{id}/ack` (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    /// Who; defaults to the caller's token name.
    #[serde(default)]
    pub by: Option<String>,
    /// Why, or what is being done.
    #[serde(default)]
    pub comment: Option<String>,
}

/// `POST /api/v1/alerts/{id}/ack` (operator): no re-notification until the alert
/// resolves or its severity rises.
pub async fn ack(
    State(state): State<AppState>,
    Operator(who): Operator,
    Path(id): Path<String>,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let b: AckBody = if body.iter().all(u8::is_ascii_whitespace) {
        AckBody::default()
    } else {
        super::error::parse_json(&body)?
    };
    let by =
        b.by.filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| who.display_name().to_string());
    let comment = b.comment.unwrap_or_default();
    if by.chars().count() > 256 || comment.chars().count() > 4096 {
        return Err(ApiError::bad_request(
            "by: at most 256 characters; comment: at most 4096 characters",
        ));
    }
    let audit = AuditRecord::new(
        &who,
        "alert.ack",
        id.to_string(),
        json!({"by": by, "comment": comment}),
    );
    match state.alerts.ack(id, by, comment, audit).await? {
        Some(a) => Ok(axum::Json(a.view()).into_response()),
        None => Err(ApiError::not_found(format!("alert {id} not found"))),
    }
}

/// `GET /api/v1/alerts/stats?window=W` (default 24h).
pub async fn stats(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(q.as_deref())?;
    let label = pairs
        .iter()
        .find(|(k, _)| k == "window")
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "24h".into());
    let window = parse_window(&label).map_err(ApiError::bad_request)?;
    let s = state.alerts.stats(window, &label).await?;
    Ok(axum::Json(s).into_response())
}

fn flag(pairs: &[(String, String)], name: &str) -> Result<bool, ApiError> {
    match pairs
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
    {
        None | Some("true") | Some("1") | Some("") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(other) => Err(ApiError::bad_request(format!(
            "{name}: {other:?} is not true or false"
        ))),
    }
}

/// `GET /api/v2/alerts`: firing alerts in Alertmanager's gettable shape; `filter`
/// matchers and the `active`, `silenced`, `inhibited` flags as in Alertmanager.
pub async fn v2_alerts(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(q.as_deref())?;
    let matchers = pairs
        .iter()
        .filter(|(k, _)| k == "filter")
        .map(|(_, v)| Matcher::parse(v).map_err(|e| ApiError::bad_request(format!("filter: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let (active, silenced, inhibited) = (
        flag(&pairs, "active")?,
        flag(&pairs, "silenced")?,
        flag(&pairs, "inhibited")?,
    );
    let f = ListFilter {
        state: Some(AlertState::Firing),
        limit: 10_000,
        ..Default::default()
    };
    let alerts = state.alerts.list(&f).await?;
    let out: Vec<serde_json::Value> = alerts
        .iter()
        .filter(|a| {
            let labels = a.match_view();
            matchers.iter().all(|m| m.matches(&labels))
                && if a.is_silenced() {
                    silenced
                } else if a.is_inhibited() {
                    inhibited
                } else {
                    active
                }
        })
        .map(|a| {
            let suppressed = a.is_suppressed();
            json!({
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": rfc3339(a.starts_at_ms),
                "endsAt": a.ends_at_ms.map(rfc3339).unwrap_or_else(|| "0001-01-01T00:00:00.000Z".into()),
                "updatedAt": rfc3339(a.last_seen_ms),
                "generatorURL": a.generator_url.clone().unwrap_or_default(),
                "fingerprint": a.fingerprint,
                "receivers": [{"name": "watchpost"}],
                "status": {
                    "state": if suppressed { "suppressed" } else { "active" },
                    "silencedBy": a.silenced_by,
                    "inhibitedBy": a.inhibited_by.iter().collect::<Vec<_>>(),
                },
            })
        })
        .collect();
    Ok(axum::Json(out).into_response())
}

/// `GET /api/v2/status`: enough of Alertmanager's status for amtool and Prometheus.
pub async fn v2_status() -> Response {
    let started = STARTED.get().cloned().unwrap_or_else(|| rfc3339(now_ms()));
    (
        StatusCode::OK,
        axum::Json(json!({
            "cluster": {"name": "watchpost", "status": "disabled", "peers": []},
            "versionInfo": {
                "version": env!("CARGO_PKG_VERSION"),
                "revision": "", "branch": "", "buildUser": "", "buildDate": "", "goVersion": ""
            },
            "config": {"original": ""},
            "uptime": started,
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        query_pairs(Some(q)).unwrap()
    }

    #[test]
    fn list_filters() {
        let f = list_filter(&pairs(
            "state=firing&severity=critical&label=job%3Dnode&label=instance=a&limit=5000&source=api",
        ))
        .unwrap();
        assert_eq!(f.state, Some(AlertState::Firing));
        assert_eq!(f.severity, Some(Severity::Critical));
        assert_eq!(f.labels.len(), 2);
        assert_eq!(f.labels[0], ("job".into(), "node".into()));
        assert_eq!(f.limit, MAX_LIMIT);
        assert!(
            list_filter(&pairs("state=sleepy"))
                .unwrap_err()
                .message
                .starts_with("state")
        );
        assert!(
            list_filter(&pairs("limit=0"))
                .unwrap_err()
                .message
                .starts_with("limit")
        );
        assert!(
            list_filter(&pairs("since=yesterday"))
                .unwrap_err()
                .message
                .starts_with("since")
        );
        assert!(
            list_filter(&pairs("cursor=zzz"))
                .unwrap_err()
                .message
                .starts_with("cursor")
        );
        assert!(
            list_filter(&pairs("label=novalue"))
                .unwrap_err()
                .message
                .starts_with("label")
        );
        let f = list_filter(&pairs("state=acknowledged&since=2024-01-01T00:00:00Z")).unwrap();
        assert!(f.acknowledged);
        assert_eq!(f.since_ms, Some(1_704_067_200_000));
    }

    #[test]
    fn since_saturates() {
        let now = now_ms();
        let hour = parse_since("1h").unwrap();
        assert!((now - 3_600_000..=now_ms() - 3_600_000).contains(&hour));
        // 500 billion years is more ms than an i64 holds: since ever, not the future.
        let before = now_ms();
        let ever = parse_since("500000000000y").unwrap();
        assert!(
            (before - i64::MAX..=now_ms() - i64::MAX).contains(&ever),
            "{ever}"
        );
        assert!(parse_since("99999999999999999999y").is_err());
        let e = parse_since("tomorrow").unwrap_err();
        assert!(e.message.starts_with("since"), "{}", e.message);
    }

    #[test]
    fn cursors_round_trip() {
        assert_eq!(decode_cursor(&encode_cursor(42)).unwrap(), 42);
    }
}
