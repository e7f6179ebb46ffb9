//! `GET /api/v1/audit` (admin): the audit log, newest first, with `action`, `actor`,
//! `limit` (default 100, max 1000) and an opaque `cursor`.

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::alerts::{DEFAULT_LIMIT, decode_cursor, encode_cursor, parse_limit, query_pairs};
use super::auth::Admin;
use super::error::ApiError;
use crate::audit::{self, AuditFilter};

/// `GET /api/v1/audit`.
pub async fn list(
    State(state): State<AppState>,
    Admin(_who): Admin,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let mut f = AuditFilter {
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    for (k, v) in query_pairs(q.as_deref())? {
        match k.as_str() {
            "action" if !v.is_empty() => f.action = Some(v),
            "actor" if !v.is_empty() => f.actor = Some(v),
            "limit" => f.limit = parse_limit(&v)?,
            "cursor" if !v.is_empty() => f.before_id = Some(decode_cursor(&v)?),
            _ => {}
        }
    }
    let limit = f.limit;
    f.limit += 1;
    let mut entries = audit::list(state.alerts.db(), &f).await?;
    let next_cursor = if entries.len() as i64 > limit {
        entries.truncate(limit as usize);
        entries.last().map(|e| encode_cursor(e.id))
    } else {
        None
    };
    Ok(axum::Json(json!({"entries": entries, "next_cursor": next_cursor})).into_response())
}
