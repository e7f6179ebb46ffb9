//! `GET /api/v1/alerts/groups` — the dispatcher's aggregation groups (pending and
//! active), shaped like Alertmanager's `/api/v2/alerts/groups`; the groups live on the
//! cluster's leader, so another node passes the request on to it — and
//! `GET /api/v1/notifications` — the outbox with each notification's delivery state.

use std::time::Duration;

use axum::Router;
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::DateTime;
use serde::Serialize;
use serde_json::{Value, json};

use super::auth::Viewer;
use super::{ApiError, AppState};
use crate::config::Role;
use crate::dispatch::{GroupFilter, Matchers};
use crate::notify::{OutboxFilter, OutboxRow};
use crate::redact;

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/alerts/groups", get(groups))
        .route("/api/v1/notifications", get(notifications))
}

fn parse_bool(key: &str, v: &str) -> Result<bool, ApiError> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "{key}: expected true or false, got {v:?}"
        ))),
    }
}

/// Query: `filter` (matchers, repeatable), `receiver` (regex), `active`, `silenced`,
/// `inhibited` (booleans, default true).
async fn groups(
    _: Viewer,
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let filter = group_filter(&params)?;
    if !state.cluster.is_leader() && !headers.contains_key(FORWARDED) {
        return from_leader(&state, raw.as_deref(), &headers).await;
    }
    let groups = match state.notify.dispatch() {
        Some(d) => d.groups(&filter),
        None => Vec::new(),
    };
    Ok(axum::Json(serde_json::to_value(groups).unwrap_or(Value::Array(vec![]))).into_response())
}

/// Marks a request one node passed on to the leader (never passed on again).
const FORWARDED: &str = "x-watchpost-forwarded-by";
/// How long the leader has to answer a passed-on request.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks the leader for its groups with the caller's query and credentials: a node
/// that does not lead has none (it dispatches nothing).
async fn from_leader(
    state: &AppState,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let status = state.cluster.status().await?;
    let Some(leader) = status.nodes.iter().find(|n| n.leader && n.alive) else {
        return Err(ApiError::unavailable(
            "no node leads the cluster right now (a new leader is chosen within cluster.node_timeout); retry",
            2,
        ));
    };
    let mut url = format!(
        "{}/api/v1/alerts/groups",
        leader.address.trim_end_matches('/')
    );
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(q);
    }
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(FORWARD_TIMEOUT)
            .build()
            .unwrap_or_default()
    });
    let mut req = client.get(&url).header(FORWARDED, status.self_id.as_str());
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        req = req.header(header::AUTHORIZATION, auth.as_bytes());
    }
    let unreachable = |e: &dyn std::fmt::Display| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!(
                "the groups live on the leader {} ({}), which did not answer: {e}",
                leader.id, leader.address
            ),
        )
    };
    let resp = req.send().await.map_err(|e| unreachable(&e))?;
    let code = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = resp.bytes().await.map_err(|e| unreachable(&e))?;
    Ok((code, [(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The filter of `GET /api/v1/alerts/groups`.
fn group_filter(params: &[(String, String)]) -> Result<GroupFilter, ApiError> {
    let mut filter = GroupFilter::all();
    for (k, v) in params {
        match k.as_str() {
            "filter" => {
                let m = Matchers::parse(v)
                    .map_err(|e| ApiError::bad_request(format!("filter: {e}")))?;
                filter.matchers.0.extend(m.0);
            }
            "receiver" => {
                let re = regex::Regex::new(&format!("^(?:{v})$"))
                    .map_err(|e| ApiError::bad_request(format!("receiver: invalid regex: {e}")))?;
                filter.receiver = Some(re);
            }
            "active" => filter.active = parse_bool(k, v)?,
            "silenced" => filter.silenced = parse_bool(k, v)?,
            "inhibited" => filter.inhibited = parse_bool(k, v)?,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {other:?}; expected filter, receiver, active, silenced, inhibited"
                )));
            }
        }
    }
    Ok(filter)
}

/// One outbox row as the API shows it.
#[derive(Serialize)]
struct NotificationView {
    id: i64,
    receiver: String,
    kind: String,
    target: String,
    group_key: String,
    status: String,
    part: i64,
    parts: i64,
    alert_ids: Vec<i64>,
    state: String,
    attempts: i64,
    idempotency_key: String,
    created_at: Option<String>,
    updated_at: Option<String>,
    next_attempt_at: Option<String>,
    delivered_at: Option<String>,
    last_error: Option<String>,
    response: Option<String>,
    /// Who holds the claim while it is being sent, and the leadership epoch of the
    /// last claim (the term that sent it).
    claimed_by: Option<String>,
    epoch: Option<i64>,
    /// Sends whose outcome was unknown.
    ambiguous: i64,
}

fn rfc(ms: i64) -> Option<String> {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

impl NotificationView {
    /// The row as `role` may see it: below admin, a webhook's URL is reduced to
    /// `scheme://host/…` in the target and the idempotency key, and URLs in the texts
    /// likewise (rows stored before texts were redacted on write may still hold one).
    fn new(r: OutboxRow, role: Role) -> Self {
        let full = role >= Role::Admin;
        let shown = |t: Option<String>| match t {
            Some(t) if !full => Some(redact::text(&t)),
            t => t,
        };
        let pending = r.state == "pending";
        // The idempotency key embeds the target.
        let (target, idempotency_key) = if full {
            (r.target, r.idempotency_key)
        } else {
            let reduced = redact::target(&r.target);
            (
                reduced.clone(),
                r.idempotency_key.replace(&r.target, &reduced),
            )
        };
        NotificationView {
            id: r.id,
            receiver: r.receiver,
            kind: r.kind,
            target,
            group_key: r.group_key,
            status: r.status,
            part: r.part,
            parts: r.parts,
            alert_ids: r.alert_ids,
            state: r.state,
            attempts: r.attempts,
            idempotency_key,
            created_at: rfc(r.created_ms),
            updated_at: rfc(r.updated_ms),
            next_attempt_at: if pending {
                rfc(r.next_attempt_ms)
            } else {
                None
            },
            delivered_at: r.delivered_ms.and_then(rfc),
            last_error: shown(r.last_error),
            response: shown(r.response),
            claimed_by: r.claimed_by,
            epoch: r.claim_epoch,
            ambiguous: r.ambiguous,
        }
    }
}

/// Query: `state` (pending, delivered, failed), `receiver`, `alert_id`, `limit`
/// (default 100, max 1000), `cursor` → `{"notifications": […], "next_cursor": …}`.
/// Webhook URLs in full for admins only.
async fn notifications(
    Viewer(who): Viewer,
    State(state): State<AppState>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<axum::Json<Value>, ApiError> {
    let mut f = OutboxFilter {
        limit: 100,
        ..Default::default()
    };
    for (k, v) in &params {
        match k.as_str() {
            "state" => {
                if !["pending", "delivered", "failed"].contains(&v.as_str()) {
                    return Err(ApiError::bad_request(format!(
                        "state: expected pending, delivered or failed, got {v:?}"
                    )));
                }
                f.state = Some(v.clone());
            }
            "receiver" => f.receiver = Some(v.clone()),
            "alert_id" => {
                f.alert_id = Some(v.parse().map_err(|_| {
                    ApiError::bad_request(format!("alert_id: not an integer: {v:?}"))
                })?)
            }
            "limit" => {
                let n: i64 = v
                    .parse()
                    .map_err(|_| ApiError::bad_request(format!("limit: not an integer: {v:?}")))?;
                if !(1..=1000).contains(&n) {
                    return Err(ApiError::bad_request("limit: must be between 1 and 1000"));
                }
                f.limit = n;
            }
            "cursor" => {
                f.before_id =
                    Some(v.parse().map_err(|_| {
                        ApiError::bad_request(format!("cursor: invalid cursor {v:?}"))
                    })?)
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {other:?}; expected state, receiver, alert_id, limit, cursor"
                )));
            }
        }
    }
    let limit = f.limit;
    // One more than asked tells whether there is a next page.
    f.limit = limit + 1;
    let mut rows = state.notify.list(&f).await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id.to_string())
    } else {
        None
    };
    let views: Vec<NotificationView> = rows
        .into_iter()
        .map(|r| NotificationView::new(r, who.role))
        .collect();
    Ok(axum::Json(json!({
        "notifications": views,
        "next_cursor": next_cursor,
    })))
}
