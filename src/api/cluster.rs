//! `GET /api/v1/cluster` — the members, who leads, and the fencing epoch.

use axum::Router;
use axum::extract::State;
use axum::routing::get;

use super::auth::Viewer;
use super::{ApiError, AppState};
use crate::cluster::ClusterStatus;

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/cluster", get(cluster))
}

/// `{"self", "leader", "epoch", "nodes": [...]}` as stored (the database's view, so
/// every node answers the same).
async fn cluster(
    _: Viewer,
    State(state): State<AppState>,
) -> Result<axum::Json<ClusterStatus>, ApiError> {
    Ok(axum::Json(state.cluster.status().await?))
}
