//! One agent connection on the server: batches decoded, relabeled (`instance`, `job`),
//! appended within the agent's limits, and acked in order.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use tokio::time::Instant;

use super::protocol::{self, ServerMessage};
use super::registry::{Agents, Connection, JOB};
use crate::remote_write::receive::{self, SeriesRefusal};
use crate::store::now_ms;
use crate::tsdb::{Labels, LabelsBuilder};

/// An agent that does not read its acks within this is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Close code for a message over `agents.max_message_bytes` (RFC 6455 "message too big").
const TOO_BIG: u16 = 1009;

/// Serves `conn` over `socket` until either side closes it.
pub async fn serve(agents: Agents, conn: Arc<Connection>, mut socket: WebSocket) {
    let mut limiter = Limiter::new(agents.config().max_samples_per_second);
    let close = loop {
        let msg = tokio::select! {
            _ = conn.close.cancelled() => break Some((close_code::AWAY, "closed by the server: shutting down, or replaced by a new connection of this agent".to_string())),
            msg = tokio::time::timeout(protocol::IDLE_TIMEOUT, socket.recv()) => msg,
        };
        conn.last_seen_ms.store(now_ms(), Ordering::Relaxed);
        match msg {
            Err(_) => {
                agents.count_refused("idle");
                break Some((
                    close_code::POLICY,
                    format!("nothing received for {:?}", protocol::IDLE_TIMEOUT),
                ));
            }
            Ok(None) | Ok(Some(Ok(Message::Close(_)))) => break None,
            Ok(Some(Err(e))) => {
                let text = e.to_string();
                if text.contains("too long")
                    || text.contains("too big")
                    || text.contains("Space limit")
                {
                    agents.count_refused("too_large");
                    break Some((
                        TOO_BIG,
                        format!(
                            "message larger than agents.max_message_bytes ({} bytes)",
                            agents.config().max_message_bytes
                        ),
                    ));
                }
                tracing::debug!(agent = %conn.hello.name, error = %text, "agent connection failed");
                break None;
            }
            Ok(Some(Ok(Message::Binary(frame)))) => match batch(&agents, &conn, &frame).await {
                Ok((ack, samples)) => {
                    let text = serde_json::to_string(&ack).unwrap_or_default();
                    match tokio::time::timeout(
                        WRITE_TIMEOUT,
                        socket.send(Message::Text(text.into())),
                    )
                    .await
                    {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break None,
                        Err(_) => {
                            agents.count_refused("slow");
                            break None;
                        }
                    }
                    // Past the rate, the next read waits (TCP pushes back on the agent).
                    tokio::select! {
                        _ = conn.close.cancelled() => {}
                        _ = limiter.take(samples) => {}
                    }
                }
                Err(why) => {
                    agents.count_refused("bad_message");
                    break Some((close_code::INVALID, why));
                }
            },
            Ok(Some(Ok(Message::Text(text)))) => {
                agents.count_refused("bad_message");
                break Some(text_refusal(text.as_str()));
            }
            Ok(Some(Ok(_))) => {} // ping (answered by the socket) or pong
        }
    };
    if let Some((code, reason)) = close {
        tracing::info!(agent = %conn.hello.name, code, reason = %reason, "closing agent connection");
        let frame = CloseFrame {
            code,
            reason: reason.chars().take(120).collect::<String>().into(),
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            socket.send(Message::Close(Some(frame))),
        )
        .await;
    }
    agents.release(&conn).await;
}

/// The close for a text message: agents send binary batches. A JSON hello naming
/// another protocol version is told which one this server speaks.
fn text_refusal(text: &str) -> (u16, String) {
    let version = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("protocol").or_else(|| v.get("version")).cloned())
        .filter(|v| v.as_u64() != Some(u64::from(protocol::VERSION)) && !v.is_null());
    match version {
        Some(v) => (
            close_code::PROTOCOL,
            format!(
                "unsupported agent protocol {v}; this server speaks {}",
                protocol::VERSION
            ),
        ),
        None => (
            close_code::UNSUPPORTED,
            format!(
                "agents send binary batches; text messages are not part of protocol {}",
                protocol::VERSION
            ),
        ),
    }
}

/// Applies one batch (at most a few at once over all agents, so decoded batches never
/// pile up): its ack and its sample count. `Err` names why the message is not a
/// batch (fatal).
async fn batch(
    agents: &Agents,
    conn: &Connection,
    frame: &[u8],
) -> Result<(ServerMessage, usize), String> {
    let (seq, body) = protocol::split_batch(frame).map_err(|e| e.to_string())?;
    let _turn = agents.decode_turn().await;
    let (tsdb, limits) = agents.tsdb();
    let req =
        receive::decode(body, limits.max_decoded_bytes).map_err(|e| format!("batch {seq}: {e}"))?;
    let samples: usize = req.timeseries.iter().map(|t| t.samples.len()).sum();
    let state = agents.state_of(&conn.hello.name);
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    let session = conn.hello.session.as_str();
    if let Some((applied_session, applied_seq)) = &state.applied
        && applied_session == session
        && seq <= *applied_seq
    {
        // Applied before; its ack was lost with the previous connection.
        agents.count_samples("repeated", samples);
        let ack = ServerMessage::Ack {
            seq,
            appended: 0,
            refused: 0,
            error: None,
        };
        return Ok((ack, 0));
    }
    let max_series = agents.config().max_series;
    let instance = conn.hello.name.as_str();
    let min_t = now_ms().saturating_sub(tsdb.retention_ms());
    let known = &mut state.series;
    let receipt = receive::apply_mapped(tsdb, &req, limits, min_t, |labels| {
        let labels = relabel(&labels, instance);
        if !known.contains(&labels) {
            if known.len() >= max_series {
                return Err(SeriesRefusal::Limit(format!(
                    "new series refused: agent {instance} has {max_series} series (agents.max_series)"
                )));
            }
            known.insert(labels.clone());
        }
        Ok(labels)
    });
    state.applied = Some((session.to_string(), seq));
    drop(state);
    for (outcome, n) in receipt.outcomes() {
        agents.count_samples(outcome, n);
    }
    conn.samples.fetch_add(
        i64::try_from(receipt.appended + receipt.repeated).unwrap_or(0),
        Ordering::Relaxed,
    );
    let refused = receipt.refused();
    let ack = ServerMessage::Ack {
        seq,
        appended: receipt.appended,
        refused,
        error: (refused > 0).then(|| receipt.message()),
    };
    Ok((ack, samples))
}

/// `labels` with `instance` = the agent's name and `job` = `agent` (whatever it sent).
fn relabel(labels: &Labels, instance: &str) -> Labels {
    let mut b = LabelsBuilder::default();
    for (k, v) in labels.iter() {
        b.set(k, v);
    }
    b.set("instance", instance);
    b.set("job", JOB);
    b.build()
}

/// A token bucket of samples per second: past it, the agent's reads wait (TCP pushes
/// back on the agent; nothing is lost).
struct Limiter {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Limiter {
    fn new(per_second: u32) -> Self {
        let rate = f64::from(per_second.max(1));
        Self {
            rate,
            tokens: rate,
            at: Instant::now(),
        }
    }

    async fn take(&mut self, n: usize) {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.rate);
        self.at = now;
        self.tokens -= n as f64;
        if self.tokens < 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(-self.tokens / self.rate)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_limiter_slows_reads_past_the_rate_and_refills() {
        let mut l = Limiter::new(100);
        let start = Instant::now();
        l.take(100).await; // the first second's burst
        assert_eq!(start.elapsed(), Duration::ZERO);
        l.take(50).await;
        assert_eq!(start.elapsed(), Duration::from_millis(500));
        // A batch bigger than a second's worth waits in proportion.
        l.take(300).await;
        assert_eq!(start.elapsed(), Duration::from_millis(3_500));
        tokio::time::sleep(Duration::from_secs(10)).await;
        let idle = Instant::now();
        l.take(100).await; // refilled, capped at one second's worth
        assert_eq!(idle.elapsed(), Duration::ZERO);
        l.take(1).await;
        assert_eq!(idle.elapsed(), Duration::from_millis(10));
    }

    #[test]
    fn relabel_sets_instance_and_job_over_what_the_agent_sent() {
        let sent = Labels::new([("__name__", "up"), ("instance", "spoofed"), ("job", "x")]);
        let got = relabel(&sent, "web-1");
        assert_eq!(got.get("instance"), Some("web-1"));
        assert_eq!(got.get("job"), Some("agent"));
        assert_eq!(got.get("__name__"), Some("up"));
    }
}
