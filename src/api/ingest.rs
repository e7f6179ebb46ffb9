//! Ingest endpoints: the generic API, Alertmanager's webhook and v2 alert API, and
//! ntopng's webhook. Every one authenticates (operator), rate-limits per caller, reads
//! the body within `alerts.max_body_bytes` (413), parses it with errors naming the
//! field, and answers only after the batch holding the alerts has committed. In an
//! array each invalid alert is refused alone, as Alertmanager's v2 API does: the valid
//! ones are stored and the answer is a 400 naming each refused alert, with the ids of
//! those stored.

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::auth::{Principal, require};
use super::error::ApiError;
use crate::alerts::PipelineError;
use crate::alerts::ingest::{IngestError, Parsed, RawAlert, alertmanager, generic, ntopng};
use crate::audit::AuditRecord;
use crate::config::Role;
use crate::store::now_ms;

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        ApiError::bad_request(e.0)
    }
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> Self {
        match &e {
            PipelineError::Full { .. } => ApiError::unavailable(e.to_string(), 1),
            PipelineError::TooManyFiring { .. } => ApiError::unavailable(e.to_string(), 30),
            PipelineError::Store {
                transient: true, ..
            }
            | PipelineError::Stopped
            | PipelineError::Timeout(_) => ApiError::unavailable(e.to_string(), 5),
            PipelineError::Store { .. } => ApiError::internal("storing alerts", &e),
        }
    }
}

/// The request body as bytes, 413 naming `alerts.max_body_bytes` when too large.
pub struct Body(pub Bytes);

impl FromRequest<AppState> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.config.alerts.max_body_bytes;
        Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(|rejection| {
                let status = rejection.status();
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        status,
                        format!(
                            "request body is larger than {limit} bytes (alerts.max_body_bytes)"
                        ),
                    )
                } else {
                    ApiError::new(status, rejection.body_text())
                }
            })
    }
}

/// The rate-limit key of a request: its verified bearer token (hashed; however the
/// header spells the scheme or spaces it), else its address — a token nobody checks
/// (no `auth.tokens`) would give every made-up value a fresh bucket.
fn rate_key(parts_headers: &HeaderMap, principal: &Principal, verified: bool) -> String {
    // A person signed in with JWTs keeps one bucket across token refreshes.
    if let Some(id) = &principal.identity {
        return format!("jwt:{}:{}", id.iss.as_deref().unwrap_or_default(), id.sub);
    }
    if let Some(token) = parts_headers
        .get(header::AUTHORIZATION)
        .filter(|_| verified)
        .and_then(|v| v.to_str().ok())
        .and_then(super::auth::bearer_token)
    {
        let digest = Sha256::digest(token.as_bytes());
        let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        return format!("token:{hex}");
    }
    match principal.remote_addr {
        Some(a) => format!("ip:{}", a.ip()),
        None => "ip:unknown".into(),
    }
}

/// 429 with `Retry-After` when the caller is over `alerts.rate_limit_per_second`.
fn check_rate(
    state: &AppState,
    headers: &HeaderMap,
    principal: &Principal,
) -> Result<(), ApiError> {
    let key = rate_key(headers, principal, state.auth.enabled());
    state.alerts.limiter().check(&key).map_err(|wait| {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        ApiError {
            retry_after: Some(secs),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "rate limit exceeded: at most {} ingest requests per second (alerts.rate_limit_per_second, burst alerts.rate_limit_burst); retry in {secs}s",
                    state.config.alerts.rate_limit_per_second
                ),
            )
        }
    })
}

/// An operator allowed to ingest now (authenticated, within the rate limit).
pub struct IngestCaller(pub Principal);

impl FromRequestParts<AppState> for IngestCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let p = state.auth.authenticate(parts).await?;
        require(&p, Role::Operator)?;
        check_rate(state, &parts.headers, &p)?;
        Ok(IngestCaller(p))
    }
}

/// Stores parsed alerts; returns their ids.
async fn store(
    state: &AppState,
    who: &Principal,
    endpoint: &str,
    alerts: Vec<RawAlert>,
) -> Result<Vec<i64>, ApiError> {
    let n = alerts.len();
    let audit = AuditRecord::new(who, "alerts.ingest", endpoint, json!({"alerts": n}));
    Ok(state.alerts.ingest(alerts, Some(audit)).await?)
}

fn accepted(ids: Vec<i64>) -> Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"accepted": ids.len(), "ids": ids})),
    )
        .into_response()
}

/// Stores a request's valid alerts; `Ok(ids)` when none was refused, else a 400 that
/// names each refused alert's field and lists what was stored (as Alertmanager keeps
/// the valid alerts of a request and answers 400 for the others).
async fn store_parsed(
    state: &AppState,
    who: &Principal,
    endpoint: &str,
    parsed: Parsed,
) -> Result<Vec<i64>, Response> {
    let ids = match parsed.alerts.is_empty() {
        true => Vec::new(),
        false => store(state, who, endpoint, parsed.alerts)
            .await
            .map_err(IntoResponse::into_response)?,
    };
    if parsed.rejected.is_empty() {
        return Ok(ids);
    }
    let errors: Vec<String> = parsed.rejected.into_iter().map(|e| e.0).collect();
    let error = match errors.as_slice() {
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} (and {} more refused alerts)", rest.len()),
        [] => String::new(),
    };
    tracing::debug!(
        endpoint,
        refused = errors.len(),
        stored = ids.len(),
        "alerts refused"
    );
    let body = json!({"error": error, "errors": errors, "accepted": ids.len(), "ids": ids});
    Err((StatusCode::BAD_REQUEST, axum::Json(body)).into_response())
}

/// `POST /api/v1/alerts`: one generic alert or an array.
pub async fn generic_alerts(
    State(state): State<AppState>,
    IngestCaller(who): IngestCaller,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let parsed = generic::parse(&body, state.config.alerts.max_alerts_per_request)?;
    match store_parsed(&state, &who, "/api/v1/alerts", parsed).await {
        Ok(ids) => Ok(accepted(ids)),
        Err(resp) => Ok(resp),
    }
}

/// `POST /api/v1/webhooks/alertmanager`: Alertmanager's webhook payload (version 4).
pub async fn alertmanager_webhook(
    State(state): State<AppState>,
    IngestCaller(who): IngestCaller,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let parsed =
        alertmanager::parse_webhook(&body, state.config.alerts.max_alerts_per_request, now_ms())?;
    match store_parsed(&state, &who, "/api/v1/webhooks/alertmanager", parsed).await {
        Ok(ids) => Ok(accepted(ids)),
        Err(resp) => Ok(resp),
    }
}

/// `POST /api/v2/alerts`: Alertmanager's alert API (what Prometheus sends); 200 with an
/// empty body like Alertmanager.
pub async fn alertmanager_v2(
    State(state): State<AppState>,
    IngestCaller(who): IngestCaller,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let parsed =
        alertmanager::parse_v2(&body, state.config.alerts.max_alerts_per_request, now_ms())?;
    match store_parsed(&state, &who, "/api/v2/alerts", parsed).await {
        Ok(_) => Ok(StatusCode::OK.into_response()),
        Err(resp) => Ok(resp),
    }
}

/// How an ntopng request authenticates: with `alerts.ntopng_shared_secret` set, a
/// matching `sharedsecret` in the body (ntopng cannot send bearer tokens; a wrong one is
/// 401); otherwise the usual token rules, with HTTP basic auth's password accepted as
/// the token.
pub struct NtopngCaller(Option<Principal>, Option<std::net::SocketAddr>);

impl FromRequestParts<AppState> for NtopngCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let addr = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0);
        if state.config.alerts.ntopng_shared_secret.is_some() {
            return Ok(NtopngCaller(None, addr));
        }
        let p = authenticate_basic_or_bearer(state, parts).await?;
        require(&p, Role::Operator)?;
        check_rate(state, &parts.headers, &p)?;
        Ok(NtopngCaller(Some(p), addr))
    }
}

/// `POST /api/v1/webhooks/ntopng`: ntopng's webhook; an empty `alerts` list (the test
/// button) stores nothing.
pub async fn ntopng_webhook(
    State(state): State<AppState>,
    NtopngCaller(caller, addr): NtopngCaller,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let payload = ntopng::parse_envelope(&body)?;
    let who = match (caller, &state.config.alerts.ntopng_shared_secret) {
        (Some(p), _) => p,
        (None, secret) => {
            let expected = secret.as_ref().map(|s| s.expose()).unwrap_or("");
            let given = payload.sharedsecret.as_deref().unwrap_or("");
            if expected.is_empty() || !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "sharedsecret does not match alerts.ntopng_shared_secret",
                ));
            }
            let p = Principal {
                name: "ntopng".into(),
                role: Role::Operator,
                remote_addr: addr,
                identity: None,
            };
            check_rate(&state, &HeaderMap::new(), &p)?;
            p
        }
    };
    if payload.alerts.is_empty() {
        return Ok(accepted(Vec::new()));
    }
    let parsed = ntopng::convert(
        &payload,
        state.config.alerts.max_alerts_per_request,
        now_ms(),
    )?;
    match store_parsed(&state, &who, "/api/v1/webhooks/ntopng", parsed).await {
        Ok(ids) => Ok(accepted(ids)),
        Err(resp) => Ok(resp),
    }
}

/// Bearer tokens, or HTTP basic auth whose password is a token.
async fn authenticate_basic_or_bearer(
    state: &AppState,
    parts: &Parts,
) -> Result<Principal, ApiError> {
    let basic = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| s.split_once(':').map(|(_, pass)| pass.to_string()));
    match basic {
        Some(token) if state.auth.enabled() => {
            let addr = parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0);
            state.auth.principal(&token, addr).await
        }
        _ => state.auth.authenticate(parts).await,
    }
}
