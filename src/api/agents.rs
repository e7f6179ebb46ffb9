//! `GET /api/v1/agents`: the agents and their state; `GET /api/v1/agents/connect`
//! (role `agent`): the WebSocket `watchpost agent` streams over. Every refusal is an
//! HTTP answer before the upgrade, naming its reason.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::auth::{Admin, require};
use super::error::ApiError;
use crate::agent::protocol::{self, Hello};
use crate::agent::registry::{AgentView, Refusal};
use crate::config::Role;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/agents", get(list))
        .route("/api/v1/agents/{name}", axum::routing::delete(forget))
        .route(protocol::PATH, get(connect))
}

/// Open like every read (with tokens configured, writes need one).
async fn list(State(state): State<AppState>) -> Result<axum::Json<Vec<AgentView>>, ApiError> {
    let agents = state
        .agents
        .list()
        .await
        .map_err(|e| ApiError::internal("agents", e))?;
    Ok(axum::Json(agents))
}

/// `DELETE /api/v1/agents/{name}` (admin): forgets a disconnected agent; 409 while it
/// is connected.
async fn forget(
    State(state): State<AppState>,
    admin: Admin,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<StatusCode, ApiError> {
    match state.agents.forget(&name).await {
        Ok(true) => {
            let rec = crate::audit::AuditRecord::new(
                &admin.0,
                "agent.forget",
                name.clone(),
                serde_json::Value::Null,
            );
            if let Err(e) = crate::audit::record(&state.db, &rec).await {
                tracing::warn!(error = %e, "audit record of agent.forget");
            }
            Ok(StatusCode::NO_CONTENT)
        }
        Ok(false) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no agent named {name:?}"),
        )),
        Err(Refusal::Duplicate { address, .. }) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("agent {name:?} is connected (from {address}); stop it first"),
        )),
        Err(e) => Err(ApiError::unavailable(e.to_string(), 5)),
    }
}

async fn connect(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (mut parts, _body) = req.into_parts();
    let principal = state.auth.authenticate(&parts).await?;
    require(&principal, Role::Agent)?;
    let offered = parts
        .headers
        .get(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let hello = hello(parts.uri.query().unwrap_or(""), offered.as_deref())?;
    let ws = WebSocketUpgrade::from_request_parts(&mut parts, &state)
        .await
        .map_err(|e: WebSocketUpgradeRejection| {
            ApiError::new(
                e.status(),
                format!("{}: expected a WebSocket upgrade", e.body_text()),
            )
        })?;
    let address = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(String::new, |c| c.0.to_string());
    let agents = state.agents.clone();
    let admission = agents.admit(hello, address).await.map_err(|e| match e {
        Refusal::Duplicate { .. } => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        Refusal::Full(_) => ApiError::unavailable(e.to_string(), 30),
        Refusal::Busy | Refusal::Store(_) => ApiError::unavailable(e.to_string(), 5),
    })?;
    let max = state.config.agents.max_message_bytes;
    // Live only once upgraded: an upgrade that fails drops the admission, and the
    // stored claim goes stale (another connection of the agent takes it over).
    Ok(ws
        .protocols([protocol::SUBPROTOCOL])
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            let conn = agents.activate(admission);
            crate::agent::session::serve(agents, conn, socket).await;
        })
        .into_response())
}

/// The handshake's parameters, checked: protocol version first (the `protocol`
/// parameter, or a `watchpost-agent.vN` subprotocol in `offered`), then the name.
fn hello(query: &str, offered: Option<&str>) -> Result<Hello, ApiError> {
    #[derive(serde::Deserialize)]
    struct Raw {
        protocol: Option<String>,
        name: Option<String>,
        #[serde(default)]
        host: String,
        #[serde(default)]
        version: String,
        #[serde(default)]
        session: String,
    }
    let raw: Raw = serde_urlencoded::from_str(query)
        .map_err(|e| ApiError::bad_request(format!("query: {e}")))?;
    let speaks = protocol::VERSION;
    let subprotocols: Vec<&str> = offered
        .map(|o| {
            o.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect()
        })
        .unwrap_or_default();
    match (&raw.protocol, subprotocols.is_empty()) {
        (Some(version), _) => match version.parse::<u32>() {
            Ok(v) if v == speaks => {}
            _ => {
                return Err(ApiError::bad_request(format!(
                    "protocol: unsupported agent protocol {version:?}; this server speaks protocol {speaks} (upgrade the agent or the server so they match)"
                )));
            }
        },
        (None, false) if subprotocols.contains(&protocol::SUBPROTOCOL) => {}
        (None, false) => {
            return Err(ApiError::bad_request(format!(
                "Sec-WebSocket-Protocol: unsupported agent protocol {:?}; this server speaks {} (protocol {speaks})",
                subprotocols.join(", "),
                protocol::SUBPROTOCOL
            )));
        }
        (None, true) => {
            return Err(ApiError::bad_request(format!(
                "protocol: missing; this server speaks agent protocol {speaks} (?protocol={speaks}, or the subprotocol {})",
                protocol::SUBPROTOCOL
            )));
        }
    }
    let name = raw
        .name
        .ok_or_else(|| ApiError::bad_request("name: missing"))?;
    protocol::check_name(&name).map_err(|e| ApiError::bad_request(format!("name: {e}")))?;
    for (key, value) in [
        ("host", &raw.host),
        ("version", &raw.version),
        ("session", &raw.session),
    ] {
        if value.len() > 256 {
            return Err(ApiError::bad_request(format!(
                "{key}: longer than 256 bytes"
            )));
        }
    }
    Ok(Hello {
        protocol: speaks,
        name,
        host: raw.host,
        version: raw.version,
        session: raw.session,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_refusals_name_the_parameter() {
        let err = |q: &str| hello(q, None).unwrap_err().message;
        assert!(err("name=a").contains("protocol: missing"));
        assert!(err("protocol=2&name=a").contains("unsupported agent protocol \"2\""));
        assert!(err("protocol=1").contains("name: missing"));
        assert!(err("protocol=1&name=a%20b").starts_with("name:"));
        let h = hello("protocol=1&name=web-1&host=h&version=0.1.0&session=s", None).unwrap();
        assert_eq!((h.name.as_str(), h.host.as_str()), ("web-1", "h"));
        // The version as a subprotocol.
        assert!(hello("name=a", Some("chat, watchpost-agent.v1")).is_ok());
        let e = hello("name=a", Some("watchpost-agent.v9"))
            .unwrap_err()
            .message;
        assert!(
            e.contains("unsupported agent protocol \"watchpost-agent.v9\""),
            "{e}"
        );
    }
}
