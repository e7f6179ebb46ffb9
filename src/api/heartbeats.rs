//! Heartbeats: `GET|POST /api/v1/heartbeats/{name}` (a ping; `curl URL` at the end of a
//! cron job is enough), `…/{name}/start`, `…/{name}/fail` (operator), the same under
//! each heartbeat's own unguessable URL `/api/v1/heartbeats/p/{key}` (no token), and
//! `GET /api/v1/heartbeats` (open like the alert list; ping URLs for operators only).

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Operator, allows};
use super::{ApiError, AppState};
use crate::config::Role;
use crate::heartbeat::{Create, Heartbeat, HeartbeatError, Ping, rfc3339};

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/heartbeats", get(list))
        .route("/api/v1/heartbeats/{name}", get(ping).post(ping))
        .route("/api/v1/heartbeats/{name}/start", get(start).post(start))
        .route("/api/v1/heartbeats/{name}/fail", get(fail).post(fail))
        .route("/api/v1/heartbeats/p/{key}", get(key_ping).post(key_ping))
        .route(
            "/api/v1/heartbeats/p/{key}/start",
            get(key_start).post(key_start),
        )
        .route(
            "/api/v1/heartbeats/p/{key}/fail",
            get(key_fail).post(key_fail),
        )
}

impl From<HeartbeatError> for ApiError {
    fn from(e: HeartbeatError) -> Self {
        match e {
            HeartbeatError::NotFound(m) => ApiError::not_found(m),
            HeartbeatError::Invalid(m) => ApiError::bad_request(m),
            HeartbeatError::Store(e) => {
                ApiError::unavailable(format!("heartbeat not stored: {e}"), 5)
            }
        }
    }
}

/// `?period=1h&grace=5m`: creates the heartbeat on its first ping.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateParams {
    period: Option<String>,
    grace: Option<String>,
}

fn duration(key: &str, v: &str) -> Result<Duration, ApiError> {
    let d = crate::rules::duration::parse_duration(v)
        .map_err(|e| ApiError::bad_request(format!("{key}: {e}")))?;
    if key == "period" && d < Duration::from_secs(1) {
        return Err(ApiError::bad_request("period: at least 1s"));
    }
    Ok(d)
}

impl CreateParams {
    fn create(&self) -> Result<Option<Create>, ApiError> {
        let grace = match &self.grace {
            Some(g) => Some(duration("grace", g)?),
            None => None,
        };
        match &self.period {
            Some(p) => Ok(Some(Create {
                period: duration("period", p)?,
                grace: grace.unwrap_or_else(crate::config::HeartbeatConfig::default_grace),
            })),
            None if grace.is_some() => Err(ApiError::bad_request(
                "grace: only with period (they create a heartbeat on its first ping)",
            )),
            None => Ok(None),
        }
    }
}

/// The API's view of a heartbeat; the ping URL only for those who may ping.
fn item(state: &AppState, h: &Heartbeat, with_url: bool) -> Value {
    let period = humantime::format_duration(Duration::from_millis(h.period_ms.max(0) as u64));
    let grace = humantime::format_duration(Duration::from_millis(h.grace_ms.max(0) as u64));
    let mut v = json!({
        "name": h.name,
        "status": h.status.as_str(),
        "period": period.to_string(),
        "grace": grace.to_string(),
        "period_seconds": h.period_ms as f64 / 1000.0,
        "grace_seconds": h.grace_ms as f64 / 1000.0,
        "last_ping": h.last_ping_ms.map(rfc3339),
        "next_due": h.next_due_ms.map(rfc3339),
        "last_duration": h.last_duration_ms.map(|d| d as f64 / 1000.0),
        "severity": h.severity,
        "labels": h.labels,
        "configured": h.configured,
    });
    if with_url {
        let base = state.config.external_url();
        v["ping_url"] = json!(format!(
            "{}/api/v1/heartbeats/p/{}",
            base.trim_end_matches('/'),
            h.ping_key
        ));
    }
    v
}

/// Open like the alert list; the ping URLs only for a caller who may ping.
async fn list(parts: Parts, State(state): State<AppState>) -> Result<axum::Json<Value>, ApiError> {
    let all = state
        .heartbeats
        .list()
        .await
        .map_err(|e| ApiError::unavailable(format!("heartbeats: {e}"), 5))?;
    let with_url = state
        .auth
        .authenticate(&parts)
        .await
        .is_ok_and(|who| allows(who.role, Role::Operator));
    Ok(axum::Json(Value::Array(
        all.iter().map(|h| item(&state, h, with_url)).collect(),
    )))
}

async fn by_name(
    state: &AppState,
    name: &str,
    kind: Ping,
    params: &CreateParams,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let h = state.heartbeats.ping(name, kind, params.create()?).await?;
    Ok((StatusCode::OK, axum::Json(item(state, &h, true))))
}

async fn ping(
    _: Operator,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<CreateParams>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    by_name(&state, &name, Ping::Success, &params).await
}

async fn start(
    _: Operator,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<CreateParams>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    by_name(&state, &name, Ping::Start, &params).await
}

async fn fail(
    _: Operator,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<CreateParams>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    by_name(&state, &name, Ping::Fail, &params).await
}

/// A ping by URL key answers only the status: the URL is the secret.
async fn by_key(state: &AppState, key: &str, kind: Ping) -> Result<axum::Json<Value>, ApiError> {
    let h = state.heartbeats.ping_key(key, kind).await?;
    Ok(axum::Json(
        json!({"name": h.name, "status": h.status.as_str()}),
    ))
}

async fn key_ping(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    by_key(&state, &key, Ping::Success).await
}

async fn key_start(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    by_key(&state, &key, Ping::Start).await
}

async fn key_fail(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    by_key(&state, &key, Ping::Fail).await
}
