//! The HTTP server: accepts at most `http.max_connections` connections at once, serves
//! each with hyper's HTTP/1.1 (upgrades for the WebSocket), and drains in-flight
//! requests on shutdown. Two clocks close connections nobody uses:
//!
//! * `http.header_timeout` (short): a new connection must send a request's headers
//!   within it, and a request's headers must be complete within it of their first byte
//!   (slowloris). [`Guarded`] keeps this clock.
//! * `http.idle_timeout` (longer than clients keep pooled connections, so a client never
//!   reuses one just as it closes): an idle keep-alive connection. Hyper keeps it.
//!
//! Hyper answers requests it cannot parse (URI over 64 KiB, headers over its buffer)
//! itself, with an empty body; [`Guarded`] gives those answers the same JSON error body
//! as every other layer, and hands hyper at most [`MAX_HEAD_BYTES`] of a request's
//! headers, so one large read cannot carry oversized headers past hyper's limit.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::HttpConfig;

/// The most bytes a request's line and headers may take (hyper's default read buffer,
/// set explicitly because [`Guarded`] enforces it too): past it the answer is `431`.
pub const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;

/// Serves `router` until `shutdown`, then lets open connections finish their requests
/// for at most `grace`; returns when the shutdown began.
pub async fn serve(
    mut listener: TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
    grace: Duration,
    limits: &HttpConfig,
) -> tokio::time::Instant {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let drain = CancellationToken::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => tokio::select! {
                    _ = shutdown.cancelled() => break,
                    c = Listener::accept(&mut listener) => (p, c),
                },
                Err(_) => break,
            },
        };
        let (permit, (io, remote)) = accepted;
        let service = router
            .clone()
            .map_request(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(remote));
                req.map(Body::new)
            });
        let stop = drain.clone();
        let clocks = (limits.header_timeout, limits.idle_timeout);
        connections.spawn(async move {
            serve_connection(io, remote, service, clocks, stop).await;
            drop(permit);
        });
    }
    drop(listener);
    let began = tokio::time::Instant::now();
    tracing::info!(grace = ?grace, open = connections.len(), "shutting down: draining in-flight requests");
    drain.cancel();
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("shutdown_timeout reached; dropping unfinished requests");
    }
    began
}

/// One connection: HTTP/1.1 with upgrades until the peer closes, an error, or `stop`
/// (then the request in progress is answered and the connection closed).
async fn serve_connection<S>(
    io: tokio::net::TcpStream,
    remote: SocketAddr,
    service: S,
    (header_timeout, idle_timeout): (Duration, Duration),
    stop: CancellationToken,
) where
    S: tower::Service<
            hyper::Request<Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .max_buf_size(MAX_HEAD_BYTES)
        .header_read_timeout(idle_timeout.max(header_timeout));
    let conn = builder
        .serve_connection(
            TokioIo::new(Guarded::new(io, header_timeout)),
            TowerToHyperService::new(service),
        )
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%remote, error = %e, "connection closed");
    }
}

/// Where a connection is in its requests, for the header clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between requests: hyper's idle clock applies.
    Idle,
    /// Reading a request's headers; `blank` when the current line is empty so far.
    Head { blank: bool },
    /// Headers complete: the body and the handler, until the answer is written.
    Request,
}

/// A connection as hyper sees it: the header clock (a request's headers complete within
/// `header_timeout` of the connection's start or of their first byte, else the read
/// fails and the connection closes), and hyper's own bodiless error heads (`400`,
/// `413`, `414`, `431`) rewritten into JSON answers.
pub struct Guarded<T> {
    inner: T,
    header_timeout: Duration,
    phase: Phase,
    /// Bytes of the current request's headers read so far.
    head_len: usize,
    /// When the headers being read must be complete.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A rewritten answer still being written, and how much of it went out.
    pending: Option<(Vec<u8>, usize)>,
    /// Switched protocols (WebSocket): bytes pass untouched.
    upgraded: bool,
}

impl<T> Guarded<T> {
    fn new(inner: T, header_timeout: Duration) -> Self {
        Self {
            inner,
            header_timeout,
            // A new connection owes its first request's headers from now.
            phase: Phase::Head { blank: false },
            head_len: 0,
            deadline: Some(Box::pin(tokio::time::sleep(header_timeout))),
            pending: None,
            upgraded: false,
        }
    }

    /// Follows the bytes read: the first byte after an answer starts a request's
    /// headers (and the clock); an empty line ends them (and stops it).
    fn on_read(&mut self, bytes: &[u8]) {
        for &b in bytes {
            let blank = match self.phase {
                Phase::Request => return,
                Phase::Idle => {
                    self.deadline = Some(Box::pin(tokio::time::sleep(self.header_timeout)));
                    self.head_len = 0;
                    false
                }
                Phase::Head { blank } => blank,
            };
            self.head_len += 1;
            self.phase = match b {
                b'\n' if blank => {
                    self.deadline = None;
                    Phase::Request
                }
                b'\n' => Phase::Head { blank: true },
                b'\r' => Phase::Head { blank },
                _ => Phase::Head { blank: false },
            };
        }
    }

    /// How many more bytes a read may hand hyper: the rest of [`MAX_HEAD_BYTES`] while
    /// headers are read, so hyper's buffer fills to its limit and never past it.
    fn read_allowance(&self) -> usize {
        match self.phase {
            _ if self.upgraded => usize::MAX,
            Phase::Head { .. } => MAX_HEAD_BYTES.saturating_sub(self.head_len),
            Phase::Idle => MAX_HEAD_BYTES,
            Phase::Request => usize::MAX,
        }
    }

    /// An answer is going out: the request is over, the next one is not due yet.
    fn on_write(&mut self, bytes: &[u8]) {
        if bytes.starts_with(b"HTTP/1.1 101 ") {
            self.upgraded = true;
        } else if bytes.starts_with(b"HTTP/1.1 1") {
            // An interim answer (`100 Continue`): the request's body follows.
            return;
        }
        self.phase = Phase::Idle;
        self.deadline = None;
    }
}

/// The JSON answer for a bodiless error head written by hyper, if `buf` is one.
fn json_error_for(buf: &[u8]) -> Option<Vec<u8>> {
    let head = std::str::from_utf8(buf).ok()?;
    let rest = head.strip_prefix("HTTP/1.1 ")?;
    let status: u16 = rest.get(..3)?.parse().ok()?;
    let (message, reason) = match status {
        400 => ("malformed HTTP request", "Bad Request"),
        413 => ("request too large", "Payload Too Large"),
        414 => ("request URI too long (limit 65534 bytes)", "URI Too Long"),
        431 => (
            "request headers too large",
            "Request Header Fields Too Large",
        ),
        _ => return None,
    };
    let lower = head.to_ascii_lowercase();
    let empty = lower.contains("content-length: 0\r\n")
        || !(lower.contains("content-length:") || lower.contains("transfer-encoding:"));
    if !head.ends_with("\r\n\r\n") || lower.contains("content-type:") || !empty {
        return None;
    }
    let body = serde_json::json!({ "error": message }).to_string();
    Some(
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.upgraded
            && let Some(deadline) = self.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request headers not received within http.header_timeout",
            )));
        }
        let allowance = self.read_allowance();
        if allowance < buf.remaining() {
            return self.poll_read_at_most(cx, buf, allowance);
        }
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if !self.upgraded {
            let this = &mut *self;
            this.on_read(&buf.filled()[before..]);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> Guarded<T> {
    /// Reads at most `allowance` bytes of headers into `buf`.
    fn poll_read_at_most(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
        allowance: usize,
    ) -> Poll<io::Result<()>> {
        if allowance == 0 {
            // Hyper refuses a full buffer before reading again; this is a safety net.
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request headers too large",
            )));
        }
        let mut scratch = [0u8; 8192];
        let mut limited = ReadBuf::new(&mut scratch[..allowance.min(8192)]);
        std::task::ready!(Pin::new(&mut self.inner).poll_read(cx, &mut limited))?;
        let got = limited.filled();
        buf.put_slice(got);
        self.on_read(got);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> Guarded<T> {
    /// Writes what is left of a rewritten answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, sent)) = &mut self.pending {
            if *sent == bytes.len() {
                self.pending = None;
                break;
            }
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *sent += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_pending(cx))?;
        if self.upgraded {
            return Pin::new(&mut self.inner).poll_write(cx, buf);
        }
        self.on_write(buf);
        if buf.len() < 512
            && let Some(answer) = json_error_for(buf)
        {
            // Taken whole now; written out by the next write, flush or shutdown.
            self.pending = Some((answer, 0));
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn oversized_headers_reach_hyper_only_up_to_the_limit() {
        use tokio::io::AsyncReadExt;
        let head = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(500_000));
        let mut g = Guarded::new(head.as_bytes(), Duration::from_secs(10));
        let mut handed = 0;
        let mut buf = vec![0u8; 1 << 20];
        let err = loop {
            match g.read(&mut buf).await {
                Ok(n) => handed += n,
                Err(e) => break e,
            }
        };
        assert_eq!(handed, MAX_HEAD_BYTES, "even with a 1 MiB read buffer");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // A request's body is not capped, and the next request's headers count afresh.
        let body = vec![b'x'; 2 * MAX_HEAD_BYTES];
        let mut g = Guarded::new(&body[..], Duration::from_secs(10));
        g.on_read(b"POST / HTTP/1.1\r\n\r\n");
        let mut all = Vec::new();
        g.read_to_end(&mut all).await.unwrap();
        assert_eq!(all.len(), body.len());
        g.on_write(b"HTTP/1.1 200 OK\r\n");
        g.on_read(b"GET / HTTP/1.1\r\n");
        assert_eq!(g.read_allowance(), MAX_HEAD_BYTES - 16);
        // After `100 Continue` the body comes, not the next request's headers.
        g.on_read(b"Expect: 100-continue\r\n\r\n");
        g.on_write(b"HTTP/1.1 100 Continue\r\n\r\n");
        assert_eq!((g.phase, g.read_allowance()), (Phase::Request, usize::MAX));
    }

    #[tokio::test]
    async fn the_header_clock_runs_only_while_headers_are_read() {
        let mut g = Guarded::new((), Duration::from_secs(10));
        assert!(g.deadline.is_some(), "a new connection owes its headers");
        g.on_read(b"GET / HTTP/1.1\r\nHost: x\r\n");
        assert!(g.deadline.is_some());
        g.on_read(b"\r");
        g.on_read(b"\n{\"body\":1}");
        assert_eq!(g.phase, Phase::Request);
        assert!(
            g.deadline.is_none(),
            "the body and the handler are not timed here"
        );
        g.on_write(b"HTTP/1.1 200 OK\r\n");
        assert_eq!(
            (g.phase, g.deadline.is_none()),
            (Phase::Idle, true),
            "idle: hyper's clock"
        );
        g.on_read(b"G");
        assert!(
            g.deadline.is_some(),
            "the next request's first byte starts the clock"
        );
        g.on_read(b"ET / HTTP/1.1\n\n");
        assert_eq!(g.phase, Phase::Request, "bare LF line ends count too");
        g.on_write(b"HTTP/1.1 101 Switching Protocols\r\n");
        assert!(g.upgraded);
    }

    #[test]
    fn only_bodiless_error_heads_are_rewritten() {
        let hyper_431 = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Sun, 06 Dec 2026 19:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(json_error_for(hyper_431).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
        assert!(out.contains("content-type: application/json"), "{out}");
        assert!(
            out.ends_with(r#"{"error":"request headers too large"}"#),
            "{out}"
        );
        let app = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 13\r\n\r\n";
        assert!(json_error_for(app).is_none());
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert!(json_error_for(ok).is_none());
        assert!(json_error_for(b"{\"error\":\"x\"}").is_none());
    }
}
