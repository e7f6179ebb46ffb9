//! `GET /api/v1/alerts/{id}/chart.png`: the chart Telegram notifications carry, for
//! e-mail and the dashboard. Optional `window` (a duration, default
//! `telegram.chart_window`), `width` and `height` (pixels, default
//! `telegram.chart_size`); each bad one is a 400 naming it. An alert that is not from one
//! of watchpost's rules has no expression to chart: 422.

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::alerts::parse_id;
use super::error::ApiError;
use crate::alerts::model::AlertState;
use crate::notify::chart::ChartSize;
use crate::notify::chart::source::{ChartRef, RuleCharts, SourceError};
use crate::store::now_ms;

/// Shortest chart window.
const MIN_WINDOW: Duration = Duration::from_secs(60);
/// Longest chart window.
const MAX_WINDOW: Duration = Duration::from_secs(31 * 86_400);

/// The chart route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/alerts/{id}/chart.png", get(chart_png))
}

/// The query parameters, checked.
#[derive(Debug, PartialEq)]
struct Params {
    window: Option<Duration>,
    width: Option<u32>,
    height: Option<u32>,
}

fn side(name: &str, v: &str) -> Result<u32, ApiError> {
    let n: u32 = v
        .trim()
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{name}: {v:?} is not a number of pixels")))?;
    if !(crate::notify::chart::MIN_SIDE..=crate::notify::chart::MAX_SIDE).contains(&n) {
        return Err(ApiError::bad_request(format!(
            "{name}: {n} is out of range ({}..={})",
            crate::notify::chart::MIN_SIDE,
            crate::notify::chart::MAX_SIDE
        )));
    }
    Ok(n)
}

fn params(query: Option<&str>) -> Result<Params, ApiError> {
    let mut p = Params {
        window: None,
        width: None,
        height: None,
    };
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "window" => {
                let d = humantime::parse_duration(v.trim()).map_err(|_| {
                    ApiError::bad_request(format!(
                        "window: {v:?} is not a duration like 30m, 1h or 1d"
                    ))
                })?;
                if !(MIN_WINDOW..=MAX_WINDOW).contains(&d) {
                    return Err(ApiError::bad_request(format!(
                        "window: {v} is out of range (1m..=31d)"
                    )));
                }
                p.window = Some(d);
            }
            "width" => p.width = Some(side("width", &v)?),
            "height" => p.height = Some(side("height", &v)?),
            other => {
                return Err(ApiError::bad_request(format!(
                    "{other}: unknown parameter (window, width, height)"
                )));
            }
        }
    }
    Ok(p)
}

/// `GET /api/v1/alerts/{id}/chart.png`: `image/png`, not cached (it ends now while the
/// alert fires).
pub async fn chart_png(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let p = params(query.as_deref())?;
    let Some((alert, _)) = state.alerts.get(id).await? else {
        return Err(ApiError::not_found(format!("alert {id} not found")));
    };
    let resolved = (alert.state != AlertState::Firing)
        .then_some(alert.ends_at_ms)
        .flatten();
    let Some(r) = ChartRef::for_alert(
        alert.id,
        &alert.source,
        alert.generator_url.as_deref(),
        &alert.labels,
        alert.starts_at_ms,
        resolved,
        now_ms(),
    ) else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "alert {id} is not from a watchpost rule (source {:?}): only rule alerts have a chart",
                alert.source
            ),
        ));
    };
    let charts = RuleCharts::from_config(&state.config, state.engine.clone());
    let default = charts.size();
    let size = ChartSize {
        width: p.width.unwrap_or(default.width),
        height: p.height.unwrap_or(default.height),
    };
    let window = p.window.unwrap_or(charts.window());
    let png = crate::notify::chart::source::on_drawing_thread(move || charts.png(&r, window, size))
        .await
        .map_err(|e| ApiError::internal("chart", e))?
        .map_err(|e| match e {
            SourceError::Query(_) | SourceError::Parse { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            SourceError::Chart(e) => ApiError::internal("chart", e),
        })?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        png,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_and_named() {
        assert_eq!(
            params(Some("window=30m&width=640&height=360")).unwrap(),
            Params {
                window: Some(Duration::from_secs(1800)),
                width: Some(640),
                height: Some(360)
            }
        );
        for (q, name) in [
            ("window=soon", "window"),
            ("window=10s", "window"),
            ("width=99", "width"),
            ("height=x", "height"),
            ("size=2", "size"),
        ] {
            let e = params(Some(q)).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.starts_with(name), "{q}: {}", e.message);
        }
    }
}
