//! `GET /api/v1/rules` (Prometheus' shape) and `POST /-/reload`.

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::auth::Admin;
use crate::rules::api::{RulesFilter, rules_response};

/// A Prometheus API error: `{"status":"error","errorType":…,"error":…}`.
fn prom_error(status: StatusCode, kind: &str, message: String) -> Response {
    (
        status,
        axum::Json(json!({"status": "error", "errorType": kind, "error": message})),
    )
        .into_response()
}

/// Rule groups with state, health and active alerts; `?type=alert|record`,
/// `rule_name[]`, `rule_group[]`, `file[]`, `exclude_alerts`.
pub async fn list(State(state): State<AppState>, uri: Uri) -> Response {
    let filter = match RulesFilter::from_query(uri.query()) {
        Ok(f) => f,
        Err(e) => return prom_error(StatusCode::BAD_REQUEST, "bad_data", e),
    };
    let groups = state.rules.groups();
    let mut response = rules_response(&groups, &filter);
    response.data.last_reload_error = state.rules.last_error();
    axum::Json(response).into_response()
}

/// Re-reads the rule files (admin). A broken file changes nothing and answers 400 with
/// every problem as `file:line: message`.
pub async fn reload(State(state): State<AppState>, Admin(who): Admin) -> Response {
    tracing::info!(by = %who.name, "rule reload requested");
    match state.rules.reload().await {
        Ok(outcome) => axum::Json(json!({"status": "success", "data": outcome})).into_response(),
        Err(problems) => prom_error(
            StatusCode::BAD_REQUEST,
            "bad_data",
            format!("reloading rules failed; the previous rules keep running:\n{problems}"),
        ),
    }
}
