//! `GET /api/v1/reports?window=W&format=json|markdown`: a report of the window
//! (counts, top alerts, MTTR, noisiest sources and rules). The window defaults to
//! `reports.window`.

use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::alerts::query_pairs;
use super::error::ApiError;
use crate::alerts::stats::parse_window;

/// `GET /api/v1/reports`.
pub async fn report(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(q.as_deref())?;
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let label = get("window")
        .unwrap_or_else(|| humantime::format_duration(state.config.reports.window).to_string());
    let window = parse_window(&label).map_err(ApiError::bad_request)?;
    let format = get("format").unwrap_or_else(|| "json".into());
    if !matches!(format.as_str(), "json" | "markdown" | "md") {
        return Err(ApiError::bad_request(format!(
            "format: {format:?} is not json or markdown"
        )));
    }
    let report = state.alerts.report(window, &label).await?;
    if format == "json" {
        Ok(axum::Json(report).into_response())
    } else {
        Ok((
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            report.to_markdown(),
        )
            .into_response())
    }
}
