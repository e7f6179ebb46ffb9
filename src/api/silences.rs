//! Silences, Alertmanager-style: `GET/POST /api/v1/silences`, `GET/DELETE
//! /api/v1/silences/{id}` (and the same under Alertmanager's `/api/v2/silences`,
//! `/api/v2/silence/{id}` for amtool). Creating, updating and expiring need the
//! operator role and are audited.

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::alerts::query_pairs;
use super::auth::Operator;
use super::error::{ApiError, Json};
use crate::alerts::service::SilenceOpError;
use crate::audit::AuditRecord;
use crate::silence::{PostableSilence, SilenceState};
use crate::store::now_ms;

impl From<SilenceOpError> for ApiError {
    fn from(e: SilenceOpError) -> Self {
        match e {
            SilenceOpError::Invalid(e) => ApiError::bad_request(e.0),
            SilenceOpError::NotFound(id) => ApiError::not_found(format!("silence {id} not found")),
            SilenceOpError::Store(e) => e.into(),
            SilenceOpError::Pipeline(e) => e.into(),
        }
    }
}

/// `GET /api/v1/silences[?state=active|pending|expired]`: every silence, newest first.
pub async fn list(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(q.as_deref())?;
    let wanted = match pairs.iter().find(|(k, _)| k == "state") {
        Some((_, v)) if !v.is_empty() => Some(SilenceState::parse(v).ok_or_else(|| {
            ApiError::bad_request(format!(
                "state: {v:?} is not one of active, pending, expired"
            ))
        })?),
        _ => None,
    };
    let now = now_ms();
    let list: Vec<serde_json::Value> = state
        .alerts
        .silences()
        .await?
        .iter()
        .filter(|s| wanted.is_none_or(|w| s.state(now) == w))
        .map(|s| s.to_json(now))
        .collect();
    Ok(axum::Json(list).into_response())
}

/// `GET /api/v1/silences/{id}`.
pub async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match state.alerts.silence(&id).await? {
        Some(s) => Ok(axum::Json(s.to_json(now_ms())).into_response()),
        None => Err(ApiError::not_found(format!("silence {id} not found"))),
    }
}

/// `POST /api/v1/silences` (operator): creates a silence, or updates the one named by
/// `id`; answers the silence with Alertmanager's `silenceID`.
pub async fn create(
    State(state): State<AppState>,
    Operator(who): Operator,
    Json(posted): Json<PostableSilence>,
) -> Result<Response, ApiError> {
    let (s, _created) = state
        .alerts
        .save_silence(&posted, who.display_name(), |s, created| {
            AuditRecord::new(
                &who,
                if created {
                    "silence.create"
                } else {
                    "silence.update"
                },
                s.id.clone(),
                s.to_json(now_ms()),
            )
        })
        .await?;
    let mut v = s.to_json(now_ms());
    if let serde_json::Value::Object(m) = &mut v {
        m.insert("silenceID".into(), json!(s.id));
    }
    Ok(axum::Json(v).into_response())
}

/// `DELETE /api/v1/silences/{id}` (operator): expires the silence now.
pub async fn expire(
    State(state): State<AppState>,
    Operator(who): Operator,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let s = state
        .alerts
        .expire_silence(&id, |s| {
            AuditRecord::new(&who, "silence.expire", s.id.clone(), s.to_json(now_ms()))
        })
        .await?;
    Ok(axum::Json(s.to_json(now_ms())).into_response())
}
