//! The HTTP API: router assembly, shared state, and one module per resource.
//!
//! Handlers are thin: they parse, check permissions, and call the service layer.

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod cluster;
pub mod error;
pub mod groups;
mod health;
pub mod ingest;
pub mod query;
pub mod reports;
mod rules;
pub mod silences;
pub mod stream;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, Uri};
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use crate::collect::CollectLoop;
use crate::config::Config;
use crate::events::EventBus;
use crate::metrics::Metrics;
use crate::metrics::http::HttpMetricsLayer;
use crate::promql::Engine;
use crate::store::Db;
use crate::tsdb::Tsdb;
pub use error::{ApiError, Json};

/// Longest a request may take before it is answered 408.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Shared state of every handler. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Effective configuration.
    pub config: Arc<Config>,
    /// Metric registry.
    pub metrics: Metrics,
    /// Database.
    pub db: Db,
    /// Alert events for live subscribers.
    pub events: EventBus,
    /// The collection loop (tick notifications for live samples).
    pub collect: CollectLoop,
    /// The in-memory time-series store (self-scraped metrics, rule results).
    pub tsdb: Tsdb,
    /// PromQL over `tsdb`.
    pub engine: Engine,
    /// Timestamp (Unix ms) of the latest self-scrape into `tsdb`: the stream's ticks.
    pub scraped: tokio::sync::watch::Receiver<i64>,
    /// Rule groups (`/api/v1/rules`, `/-/reload`).
    pub rules: crate::rules::RuleManager,
    /// The alert pipeline: ingest, queries, acks, silences, stats, reports.
    pub alerts: crate::alerts::AlertService,
    /// Notification groups, outbox and delivery reports.
    pub notify: crate::notify::NotifyHandle,
    /// Membership and leadership.
    pub cluster: crate::cluster::Cluster,
}

/// Builds the router with every route, the JSON 404/405 fallbacks and the middleware.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.alerts.max_body_bytes;
    let http_metrics = HttpMetricsLayer::new(state.metrics.http.clone());
    let samples: Arc<dyn stream::SampleSource> =
        Arc::new(stream::EngineSource::new(state.engine.clone()));
    Router::new()
        .merge(crate::web::router())
        .merge(stream::router(&state, samples))
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .merge(query::routes(&state))
        .route("/api/v1/rules", get(rules::list))
        .route("/-/reload", axum::routing::post(rules::reload))
        .merge(alerts::routes())
        .merge(groups::routes())
        .merge(cluster::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(http_metrics)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} not allowed on {}", uri.path()),
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    use axum::response::IntoResponse;
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}
