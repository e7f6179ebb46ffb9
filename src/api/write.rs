//! `POST /api/v1/write`: Prometheus remote write 1.0 (operator). Answers as Prometheus'
//! receiver: 204 when every sample was stored (or was a resend), 400 naming what was
//! refused (after storing the rest), so senders drop data that will never be accepted.

use axum::Router;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::routing::post;
use bytes::Bytes;

use super::AppState;
use super::auth::require;
use super::error::ApiError;
use crate::config::Role;
use crate::remote_write::DecodeError;
use crate::store::now_ms;

/// The route, with its own body limit (`tsdb.max_write_bytes`).
pub fn routes(state: &AppState) -> Router<AppState> {
    let limit = state.config.tsdb.max_write_bytes;
    Router::new()
        .route("/api/v1/write", post(write))
        .layer(axum::middleware::from_fn_with_state(
            (limit, "tsdb.max_write_bytes"),
            super::declared_length,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
}

async fn write(State(state): State<AppState>, req: Request) -> Result<StatusCode, ApiError> {
    let (parts, body) = req.into_parts();
    let principal = state.auth.authenticate(&parts).await?;
    require(&principal, Role::Operator)?;
    let limit = state.config.tsdb.max_write_bytes;
    let body = Bytes::from_request(Request::from_parts(parts, body), &state)
        .await
        .map_err(|rejection| match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than {limit} bytes (tsdb.max_write_bytes)"),
            ),
            status => ApiError::new(status, rejection.body_text()),
        })?;
    let receipt = state
        .remote_write
        .receive_blocking(body, now_ms())
        .await
        .map_err(|e| match e {
            DecodeError::TooLarge { .. } | DecodeError::TooManyItems { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
            }
            DecodeError::Internal(why) => ApiError::internal("remote write", why),
            e => ApiError::bad_request(e.to_string()),
        })?;
    if receipt.refused() > 0 {
        return Err(ApiError::bad_request(receipt.message()));
    }
    Ok(StatusCode::NO_CONTENT)
}
