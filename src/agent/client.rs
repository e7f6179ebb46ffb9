//! `watchpost agent`: collects this host's metrics as `serve` does and streams them to
//! a server over one WebSocket, buffering while disconnected and back-filling in order.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};
use tokio_util::sync::CancellationToken;

use super::buffer::Buffer;
use super::protocol::{self, Hello, ServerMessage};
use crate::collect::HostCollector;
use crate::metrics::SystemMetrics;
use crate::tsdb::scrape::SampleLabels;
use crate::tsdb::{Appended, Labels, STALE_NAN};

/// Batches sent and not yet acked, at most.
const WINDOW: usize = 64;
/// Bytes of batches held while disconnected, at most (whatever `agent.buffer` says).
const MAX_BUFFER_BYTES: usize = 32 << 20;
/// First and longest wait between connection attempts (jittered).
const BACKOFF: (Duration, Duration) = (Duration::from_millis(500), protocol::MAX_BACKOFF);
/// A connection attempt that takes longer is abandoned.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A write the server does not take within this ends the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// At shutdown, how long unacked batches are waited for.
const FLUSH: Duration = Duration::from_secs(5);

/// What the agent needs to run.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The server's base URL.
    pub server: String,
    /// Bearer token (role `agent`).
    pub token: Option<String>,
    /// The agent's name (`instance`).
    pub name: String,
    /// This machine's host name.
    pub host: String,
    /// Collection interval.
    pub interval: Duration,
    /// Samples kept while disconnected.
    pub buffer: Duration,
}

/// Why a connection ended or could not start.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("{0}")]
    Refused(String),
    #[error("connection: {0}")]
    Socket(#[from] tungstenite::Error),
    #[error("timed out connecting")]
    Timeout,
    #[error("server closed the connection: {0}")]
    Closed(String),
    #[error("bad message from the server: {0}")]
    Protocol(String),
}

/// The agent's state shared by its collector and its sender.
struct Shared {
    buffer: Mutex<Buffer>,
    collected: Notify,
}

impl Shared {
    fn buffer(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs the agent until `shutdown`, then sends what is buffered (for at most a few
/// seconds) and closes the connection.
pub async fn run(opts: AgentOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    let hello = Hello {
        protocol: protocol::VERSION,
        name: opts.name.clone(),
        host: opts.host.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        session: format!("{:032x}", rand::random::<u128>()),
    };
    let url = hello.url(&opts.server).map_err(anyhow::Error::msg)?;
    let registry = prometheus::Registry::new();
    let mut collector = Collector {
        host: HostCollector::new(SystemMetrics::register(&registry)?)?,
        registry,
        previous: HashSet::new(),
        labels: SampleLabels::default(),
    };
    let max_age = i64::try_from(opts.buffer.as_millis()).unwrap_or(i64::MAX);
    let shared = Arc::new(Shared {
        buffer: Mutex::new(Buffer::new(max_age, MAX_BUFFER_BYTES)),
        collected: Notify::new(),
    });
    let stop_sending = CancellationToken::new();
    let sender = tokio::spawn(send_loop(
        url,
        opts.token.clone(),
        shared.clone(),
        stop_sending.clone(),
    ));
    tracing::info!(server = %opts.server, name = %opts.name, interval = ?opts.interval, "agent started");
    let mut ticker = tokio::time::interval(opts.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {
                let now = crate::store::now_ms();
                let frame = collector.collect(now);
                let dropped = {
                    let mut buffer = shared.buffer();
                    let before = buffer.dropped;
                    buffer.push(now, |seq| protocol::encode_batch(seq, &frame));
                    buffer.dropped - before
                };
                if dropped > 0 {
                    tracing::warn!(dropped, "agent buffer full (agent.buffer): oldest samples dropped");
                }
                shared.collected.notify_one();
            }
        }
    }
    // One last collection is not needed: the server stale-marks nothing on its own,
    // and the series end by Prometheus' lookback.
    let flushed = tokio::time::timeout(FLUSH, async {
        while !shared.buffer().is_empty() && !sender.is_finished() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if flushed.is_err() {
        tracing::warn!(
            batches = shared.buffer().len(),
            "agent stopping with batches not acked by the server"
        );
    }
    stop_sending.cancel();
    let _ = sender.await;
    tracing::info!("agent stopped");
    Ok(())
}

/// The host collector and its registry, turned into batches.
struct Collector {
    host: HostCollector,
    registry: prometheus::Registry,
    /// Series of the previous batch: the ones gone get a stale marker.
    previous: HashSet<Labels>,
    /// The samples' label sets, built once per series.
    labels: SampleLabels,
}

impl Collector {
    /// Samples the host at `now` into one compressed remote-write request.
    fn collect(&mut self, now: i64) -> Vec<u8> {
        self.host.collect();
        let mut samples = Vec::with_capacity(self.previous.len() + 8);
        let mut current = HashSet::with_capacity(self.previous.len());
        self.labels.for_each(&self.registry.gather(), |labels, v| {
            current.insert(labels.clone());
            samples.push(Appended {
                labels: labels.clone(),
                t: now,
                v,
            });
        });
        for gone in self.previous.difference(&current) {
            samples.push(Appended {
                labels: gone.clone(),
                t: now,
                v: STALE_NAN,
            });
        }
        self.previous = current;
        crate::remote_write::send::encode(&samples)
    }
}

/// Connects, streams, and reconnects with jittered exponential backoff until `stop`.
async fn send_loop(
    url: String,
    token: Option<String>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let mut wait = BACKOFF.0;
    let mut connected_once = false;
    loop {
        let mut acked = false;
        let outcome = tokio::select! {
            _ = stop.cancelled() => return,
            r = session(&url, token.as_deref(), &shared, &stop, &mut acked) => r,
        };
        match outcome {
            Ok(()) => return,
            Err(e) => {
                // Backoff starts over only after a connection that worked (acked).
                if acked {
                    wait = BACKOFF.0;
                    connected_once = true;
                }
                let buffered = shared.buffer().len();
                let retry_in = wait.mul_f64(rand::random_range(0.5..=1.0));
                if connected_once {
                    tracing::warn!(error = %e, buffered, ?retry_in, "agent disconnected; buffering");
                } else {
                    tracing::error!(error = %e, buffered, ?retry_in, "agent cannot connect");
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(retry_in) => {}
                }
            }
        }
        wait = (wait * 2).min(BACKOFF.1);
    }
}

/// One connection: sends buffered batches in order (at most [`WINDOW`] unacked) and
/// applies acks (`acked` is set at the first). `Ok` when stopped; else why it ended.
async fn session(
    url: &str,
    token: Option<&str>,
    shared: &Shared,
    stop: &CancellationToken,
    acked: &mut bool,
) -> Result<(), SessionError> {
    let ws = connect(url, token).await?;
    tracing::info!(buffered = shared.buffer().len(), "agent connected");
    let (mut tx, mut rx) = ws.split();
    let mut sent_upto = 0u64;
    let mut ping = tokio::time::interval(protocol::PING_EVERY);
    let mut heard = tokio::time::Instant::now();
    loop {
        loop {
            let next = {
                let buffer = shared.buffer();
                if buffer.in_flight(sent_upto) >= WINDOW {
                    None
                } else {
                    buffer.after(sent_upto).map(|b| (b.seq, b.frame.clone()))
                }
            };
            let Some((seq, frame)) = next else { break };
            send(&mut tx, Message::Binary(frame)).await?;
            sent_upto = seq;
        }
        tokio::select! {
            _ = stop.cancelled() => {
                let _ = tx.send(Message::Close(None)).await;
                return Ok(());
            }
            _ = shared.collected.notified() => {}
            _ = ping.tick() => {
                if heard.elapsed() > protocol::IDLE_TIMEOUT {
                    return Err(SessionError::Closed(format!("nothing from the server for {:?}", protocol::IDLE_TIMEOUT)));
                }
                send(&mut tx, Message::Ping(Default::default())).await?;
            }
            msg = rx.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    heard = tokio::time::Instant::now();
                    on_message(text.as_str(), shared)?;
                    *acked = true;
                }
                Some(Ok(Message::Close(frame))) => {
                    let why = frame.map_or_else(|| "no reason given".to_string(), |f| {
                        let code = u16::from(f.code);
                        // The oldest batch was refused as a whole: it will never be accepted.
                        if code == 1007 || code == 1009 {
                            let dropped = shared.buffer().drop_first();
                            tracing::error!(batch = ?dropped, reason = %f.reason, code, "server refused a batch; dropped");
                        }
                        format!("{} ({code})", f.reason)
                    });
                    return Err(SessionError::Closed(why));
                }
                Some(Ok(_)) => heard = tokio::time::Instant::now(),
                Some(Err(e)) => return Err(e.into()),
                None => return Err(SessionError::Closed("connection lost".into())),
            },
        }
    }
}

/// Sends `msg`, failing when the server does not take it within [`WRITE_TIMEOUT`]
/// (stopped, or its network gone).
async fn send(
    tx: &mut futures_util::stream::SplitSink<Socket, Message>,
    msg: Message,
) -> Result<(), SessionError> {
    match tokio::time::timeout(WRITE_TIMEOUT, tx.send(msg)).await {
        Ok(r) => r.map_err(SessionError::from),
        Err(_) => Err(SessionError::Closed(format!(
            "the server took nothing for {WRITE_TIMEOUT:?}"
        ))),
    }
}

/// Applies one server message.
fn on_message(text: &str, shared: &Shared) -> Result<(), SessionError> {
    let msg: ServerMessage =
        serde_json::from_str(text).map_err(|e| SessionError::Protocol(format!("{e}: {text}")))?;
    match msg {
        ServerMessage::Ack {
            seq,
            refused,
            error,
            ..
        } => {
            if refused > 0 {
                tracing::warn!(
                    seq,
                    refused,
                    error = error.as_deref().unwrap_or(""),
                    "server refused samples"
                );
            }
            shared.buffer().ack(seq);
        }
    }
    Ok(())
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the WebSocket; a refusal before the upgrade names the server's reason.
async fn connect(url: &str, token: Option<&str>) -> Result<Socket, SessionError> {
    let mut request = url.into_client_request()?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        tungstenite::http::HeaderValue::from_static(protocol::SUBPROTOCOL),
    );
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| SessionError::Refused("the token is not a valid header value".into()))?;
        request.headers_mut().insert("authorization", value);
    }
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(request)).await {
        Err(_) => Err(SessionError::Timeout),
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tungstenite::Error::Http(response))) => {
            let status = response.status();
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let reason = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or_else(|| body.trim().to_string());
            Err(SessionError::Refused(format!(
                "server refused the agent ({status}): {reason}"
            )))
        }
        Ok(Err(e)) => Err(e.into()),
    }
}
