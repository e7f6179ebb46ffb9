//! The agent protocol (version [`VERSION`]), shared by `watchpost agent` and the server.
//!
//! - **Handshake**: `GET /api/v1/agents/connect?protocol=1&name=…&host=…&version=…&session=…`
//!   upgraded to a WebSocket, with `Authorization: Bearer <token>` (role `agent`). Every
//!   refusal is an HTTP answer before the upgrade, with a JSON error naming the reason:
//!   401/403 token, 400 protocol or parameters, 409 name already connected, 503 full.
//!   The version may also be offered as the subprotocol `watchpost-agent.v1`.
//! - **Agent → server**: binary messages, each one batch: 8 bytes of big-endian sequence
//!   number, then a snappy-compressed remote-write `WriteRequest` (labels without
//!   `instance` and `job`: the server sets them). WebSocket pings keep it alive.
//! - **Server → agent**: text messages, JSON [`ServerMessage`]: each batch is acked
//!   after its samples are in the store; the agent forgets acked batches only.
//!   A fatal problem closes the socket with a code and a reason.

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;
/// The WebSocket subprotocol naming this version (`Sec-WebSocket-Protocol`), offered
/// by the agent beside the `protocol` parameter.
pub const SUBPROTOCOL: &str = "watchpost-agent.v1";
/// The WebSocket endpoint.
pub const PATH: &str = "/api/v1/agents/connect";
/// How often the agent pings; the server drops a connection silent for
/// [`IDLE_TIMEOUT`].
pub const PING_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
/// A connection with nothing received for this long is closed.
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Longest wait of an agent between two connection attempts (jittered below it): a
/// restarted server hears from every agent within this.
pub const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(10);
/// Longest agent name.
pub const MAX_NAME: usize = 128;

/// Who is connecting: the handshake's query parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol version of the agent.
    pub protocol: u32,
    /// The agent's name: its series' `instance` label.
    pub name: String,
    /// The host name of the agent's machine.
    #[serde(default)]
    pub host: String,
    /// The agent's version.
    #[serde(default)]
    pub version: String,
    /// Random per agent process: a reconnect of the same process replaces its old
    /// connection, another process with the same name is refused.
    #[serde(default)]
    pub session: String,
}

impl Hello {
    /// The handshake URL under `server` (`http(s)://` becomes `ws(s)://`).
    pub fn url(&self, server: &str) -> Result<String, String> {
        let base = server.trim_end_matches('/');
        let ws = if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if base.starts_with("ws://") || base.starts_with("wss://") {
            base.to_string()
        } else {
            return Err(format!(
                "agent.server {server:?}: expected an http:// or https:// URL"
            ));
        };
        let query = serde_urlencoded::to_string(self).map_err(|e| e.to_string())?;
        Ok(format!("{ws}{PATH}?{query}"))
    }
}

/// Why an agent name cannot be used.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("must be 1 to {MAX_NAME} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':')))
    {
        return Err(format!(
            "{name:?}: {c:?} is not allowed (letters, digits, '.', '_', '-', ':')"
        ));
    }
    Ok(())
}

/// What the server tells an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Batch `seq` is done: its samples are stored, resent ones and refused ones
    /// counted. A refused sample will never be accepted: the agent drops it.
    Ack {
        /// The batch.
        seq: u64,
        /// Samples stored.
        appended: usize,
        /// Samples refused (out of order, too old, series limit, invalid).
        refused: usize,
        /// What was refused, when anything was.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

/// A malformed batch.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "a batch is 8 bytes of sequence number and a snappy-compressed WriteRequest; got {0} bytes"
)]
pub struct ShortBatch(pub usize);

/// One batch message: `seq`, then the compressed request.
pub fn encode_batch(seq: u64, compressed: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + compressed.len());
    frame.extend_from_slice(&seq.to_be_bytes());
    frame.extend_from_slice(compressed);
    frame
}

/// The sequence number and compressed request of a batch message.
pub fn split_batch(frame: &[u8]) -> Result<(u64, &[u8]), ShortBatch> {
    match frame.split_first_chunk::<8>() {
        Some((seq, rest)) if !rest.is_empty() => Ok((u64::from_be_bytes(*seq), rest)),
        _ => Err(ShortBatch(frame.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_names_and_frames() {
        let hello = Hello {
            protocol: VERSION,
            name: "web-1".into(),
            host: "web 1".into(),
            version: "0.1.0".into(),
            session: "s".into(),
        };
        assert_eq!(
            hello.url("https://wp.example/").unwrap(),
            "wss://wp.example/api/v1/agents/connect?protocol=1&name=web-1&host=web+1&version=0.1.0&session=s"
        );
        assert!(hello.url("wp.example").is_err());
        assert!(check_name("db-1.example.org").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a b").unwrap_err().contains("' '"));
        let frame = encode_batch(7, b"xyz");
        assert_eq!(split_batch(&frame).unwrap(), (7, &b"xyz"[..]));
        assert_eq!(split_batch(&frame[..8]), Err(ShortBatch(8)));
        let ack = ServerMessage::Ack {
            seq: 3,
            appended: 10,
            refused: 0,
            error: None,
        };
        assert_eq!(
            serde_json::to_string(&ack).unwrap(),
            r#"{"type":"ack","seq":3,"appended":10,"refused":0}"#
        );
    }
}
