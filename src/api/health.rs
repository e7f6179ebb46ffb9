//! `/health`, `/ready` and `/metrics`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use crate::metrics::{
    OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, encode_openmetrics, encode_text,
};

/// 200 while the process runs.
pub async fn health() -> Response {
    axum::Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})).into_response()
}

/// 200 when the database answers, else 503 with `"database":"down"`.
pub async fn ready(State(state): State<AppState>) -> Response {
    match state.db.ping().await {
        Ok(()) => axum::Json(json!({"status": "ready", "database": "up"})).into_response(),
        Err(e) => {
            let error = crate::redact::error(&e);
            tracing::warn!(%error, "readiness check: database down");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"status": "not ready", "database": "down", "error": error})),
            )
                .into_response()
        }
    }
}

/// Prometheus text 0.0.4, or OpenMetrics 1.0 when `Accept` asks for it.
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let wants_openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    state.db.update_pool_gauges();
    let families = state.metrics.gather();
    if wants_openmetrics {
        (
            [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
            encode_openmetrics(&families),
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, TEXT_CONTENT_TYPE)],
            encode_text(&families),
        )
            .into_response()
    }
}
