//! Sends e-mail rows over SMTP with lettre: implicit TLS on port 465, else STARTTLS
//! (required unless `require_tls = false`), AUTH PLAIN/LOGIN, one kept-alive connection
//! per receiver (its rows are sent one after another).
//!
//! The transaction is driven step by step so that an attempt knows how far it got:
//!
//! | failure | attempt |
//! |---|---|
//! | 4xx reply (greeting, MAIL, RCPT, DATA, end of data) | transient |
//! | 5xx reply, AUTH refused, no STARTTLS when required | rejected, with the server's text |
//! | connection refused, reset or timed out before the message content went out | transient |
//! | connection lost or no reply after the content went out | ambiguous |

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lettre::Message;
use lettre::address::Envelope;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use tokio::sync::Mutex;

use super::{EmailPayload, host_port};
use crate::config::{EmailReceiver, TlsClientConfig};
use crate::notify::outbox::OutboxRow;
use crate::notify::policy::Attempt;
use crate::notify::sender::{OutboxTransport, Started, not_leading};

/// An idle connection older than this is not reused (servers drop idle clients).
const IDLE_MAX: Duration = Duration::from_secs(30);

/// How the connection is secured.
#[derive(Clone)]
enum Security {
    /// TLS from the first byte (SMTPS, port 465).
    Wrapper(TlsParameters),
    /// STARTTLS: required, or used when offered.
    StartTls {
        params: TlsParameters,
        required: bool,
    },
}

/// The SMTP server of one receiver, with its kept-alive connection.
struct Server {
    host: String,
    port: u16,
    security: Security,
    hello: ClientId,
    credentials: Option<Credentials>,
    timeout: Duration,
    idle: Mutex<Option<(AsyncSmtpConnection, Instant)>>,
}

/// TLS parameters for `host` from a receiver's `tls_config`; the error names the key
/// (`ca_file: …`).
pub fn tls_parameters(host: &str, tls: &TlsClientConfig) -> Result<TlsParameters, String> {
    let name = tls.server_name.clone().unwrap_or_else(|| host.to_string());
    let mut b = TlsParameters::builder(name)
        .dangerous_accept_invalid_certs(tls.insecure_skip_verify)
        .dangerous_accept_invalid_hostnames(tls.insecure_skip_verify);
    if let Some(path) = &tls.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("ca_file: cannot read {}: {e}", path.display()))?;
        let cert = Certificate::from_pem(&pem)
            .map_err(|e| format!("ca_file: {}: not PEM certificates: {e}", path.display()))?;
        b = b.add_root_certificate(cert);
    }
    b.build_rustls().map_err(|e| format!("server_name: {e}"))
}

impl Server {
    fn new(cfg: &EmailReceiver, timeout: Duration) -> Result<Server, String> {
        let (host, port) = host_port(&cfg.smarthost).map_err(|e| format!("smarthost: {e}"))?;
        let params =
            tls_parameters(&host, &cfg.tls_config).map_err(|e| format!("tls_config.{e}"))?;
        let security = if port == 465 {
            Security::Wrapper(params)
        } else {
            Security::StartTls {
                params,
                required: cfg.require_tls,
            }
        };
        let hello = match &cfg.hello {
            Some(h) => ClientId::Domain(h.trim().to_string()),
            None => ClientId::default(),
        };
        let credentials = match (&cfg.auth_username, &cfg.auth_password) {
            (Some(u), Some(p)) => Some(Credentials::new(u.clone(), p.expose().to_string())),
            _ => None,
        };
        Ok(Server {
            host,
            port,
            security,
            hello,
            credentials,
            timeout,
            idle: Mutex::new(None),
        })
    }

    fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// A new connection: greeting, EHLO, TLS, AUTH.
    async fn connect(&self) -> Result<AsyncSmtpConnection, Attempt> {
        let wrapper = match &self.security {
            Security::Wrapper(p) => Some(p.clone()),
            Security::StartTls { .. } => None,
        };
        let at = self.endpoint();
        let connected = match wrapper {
            Some(tls) => {
                AsyncSmtpConnection::connect_tokio1(
                    (self.host.as_str(), self.port),
                    Some(self.timeout),
                    &self.hello,
                    Some(tls),
                    None,
                )
                .await
            }
            None => {
                let tcp = self.tcp().await?;
                AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello).await
            }
        };
        let mut conn = connected.map_err(|e| {
            reply_or(&e, || {
                Attempt::Transient(format!("cannot connect to {at}: {e}"))
            })
        })?;
        if let Security::StartTls { params, required } = &self.security {
            if conn.can_starttls() {
                conn.starttls(params.clone(), &self.hello)
                    .await
                    .map_err(|e| {
                        reply_or(&e, || {
                            Attempt::Transient(format!("STARTTLS with {at} failed: {e}"))
                        })
                    })?;
            } else if *required {
                conn.abort().await;
                return Err(Attempt::Rejected(format!(
                    "{at} does not offer STARTTLS (require_tls = true)"
                )));
            }
        }
        if let Some(c) = &self.credentials {
            if !conn.is_encrypted() && !is_loopback(&self.host) {
                conn.abort().await;
                return Err(Attempt::Rejected(format!(
                    "{at}: not sending auth_password over an unencrypted connection (the server offers no STARTTLS)"
                )));
            }
            if let Err(e) = conn.auth(&[Mechanism::Plain, Mechanism::Login], c).await {
                conn.abort().await;
                return Err(reply_or(&e, || {
                    Attempt::Rejected(format!("authentication with {at} failed: {e}"))
                }));
            }
        }
        Ok(conn)
    }

    /// A TCP connection without Nagle's delay (each SMTP step is a write then a read).
    async fn tcp(&self) -> Result<tokio::net::TcpStream, Attempt> {
        let at = self.endpoint();
        let connect = tokio::net::TcpStream::connect((self.host.as_str(), self.port));
        let tcp = match tokio::time::timeout(self.timeout, connect).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(Attempt::Transient(format!("cannot connect to {at}: {e}"))),
            Err(_) => {
                return Err(Attempt::Transient(format!(
                    "cannot connect to {at}: timed out"
                )));
            }
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        Ok(tcp)
    }

    /// Sends `message` on a kept-alive connection, else on a new one.
    async fn deliver(&self, envelope: &Envelope, message: &[u8], started: &Started) -> Attempt {
        let mut idle = self.idle.lock().await;
        if let Some((mut conn, at)) = idle.take()
            && at.elapsed() < IDLE_MAX
        {
            match self
                .transaction(&mut conn, envelope, message, started)
                .await
            {
                Ok(answer) => return keep_if_delivered(&mut idle, conn, answer).await,
                // The server closed the idle connection: nothing was sent, try a new one.
                Err(Stale) => conn.abort().await,
            }
        }
        let mut conn = match self.connect().await {
            Ok(c) => c,
            Err(a) => return a,
        };
        match self
            .transaction(&mut conn, envelope, message, started)
            .await
        {
            Ok(answer) => keep_if_delivered(&mut idle, conn, answer).await,
            Err(Stale) => {
                conn.abort().await;
                Attempt::Transient(format!(
                    "{}: connection closed before MAIL FROM",
                    self.endpoint()
                ))
            }
        }
    }

    /// One mail transaction on `conn`: MAIL, RCPT…, DATA, content. `Err(Stale)` when the
    /// connection broke at MAIL (a kept-alive connection the server closed).
    async fn transaction(
        &self,
        conn: &mut AsyncSmtpConnection,
        envelope: &Envelope,
        message: &[u8],
        started: &Started,
    ) -> Result<Attempt, Stale> {
        let at = self.endpoint();
        let mut options = Vec::new();
        let info = conn.server_info();
        let non_ascii = envelope
            .to()
            .iter()
            .chain(envelope.from())
            .any(|a| !AsRef::<str>::as_ref(a).is_ascii());
        if non_ascii {
            if !info.supports_feature(Extension::SmtpUtfEight) {
                return Ok(Attempt::Rejected(format!(
                    "{at} does not support SMTPUTF8, needed for these addresses"
                )));
            }
            options.push(MailParameter::SmtpUtfEight);
        }
        if !message.is_ascii() && info.supports_feature(Extension::EightBitMime) {
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        if let Err(e) = conn
            .command(Mail::new(envelope.from().cloned(), options))
            .await
        {
            if e.status().is_none() {
                return Err(Stale);
            }
            return Ok(reply_or(&e, || Attempt::Transient(format!("{at}: {e}"))));
        }
        for to in envelope.to() {
            if let Err(e) = conn.command(Rcpt::new(to.clone(), vec![])).await {
                return Ok(reply_or(&e, || {
                    Attempt::Transient(format!("{at}: connection lost at RCPT TO: {e}"))
                }));
            }
        }
        if let Err(e) = conn.command(Data).await {
            return Ok(reply_or(&e, || {
                Attempt::Transient(format!("{at}: connection lost at DATA: {e}"))
            }));
        }
        // The last gate: a node that stopped leading does not send the content.
        if !started.mark() {
            return Ok(not_leading());
        }
        let sent = match DataBody::new(message) {
            Some(body) => conn.command(body).await,
            None => conn.message(message).await,
        };
        Ok(match sent {
            Ok(r) => Attempt::Delivered(Some(
                format!("{} {}", r.code(), r.message().collect::<Vec<_>>().join(" "))
                    .trim()
                    .to_string(),
            )),
            Err(e) => reply_or(&e, || {
                Attempt::Ambiguous(format!("{at}: no answer after the message was sent: {e}"))
            }),
        })
    }
}

/// The connection broke before a transaction started.
struct Stale;

/// A message's content as sent after DATA: dot-stuffed and ending with `CRLF.CRLF`, so
/// that it goes out in one write (two writes then a read would wait for the server's
/// delayed ACK).
struct DataBody(String);

impl DataBody {
    /// `None` when the message is not UTF-8 (then it is sent the usual way).
    fn new(message: &[u8]) -> Option<DataBody> {
        let text = std::str::from_utf8(message).ok()?;
        let mut out = String::with_capacity(text.len() + 64);
        let mut line_start = true;
        for c in text.chars() {
            if line_start && c == '.' {
                out.push('.');
            }
            out.push(c);
            line_start = c == '\n';
        }
        out.push_str("\r\n.\r\n");
        Some(DataBody(out))
    }
}

impl std::fmt::Display for DataBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A server's reply as an attempt (4xx transient, 5xx rejected), else `otherwise()`.
fn reply_or(e: &lettre::transport::smtp::Error, otherwise: impl FnOnce() -> Attempt) -> Attempt {
    if e.is_transient() {
        Attempt::Transient(e.to_string())
    } else if e.is_permanent() {
        Attempt::Rejected(e.to_string())
    } else {
        otherwise()
    }
}

/// Keeps `conn` for the next row after a delivery; closes it after anything else (a
/// refused transaction leaves it mid-way).
async fn keep_if_delivered(
    idle: &mut Option<(AsyncSmtpConnection, Instant)>,
    mut conn: AsyncSmtpConnection,
    answer: Attempt,
) -> Attempt {
    if matches!(answer, Attempt::Delivered(_)) {
        *idle = Some((conn, Instant::now()));
    } else {
        conn.abort().await;
    }
    answer
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Sends e-mail rows: one SMTP server per receiver name.
pub struct EmailTransport {
    servers: HashMap<String, Arc<Server>>,
}

impl EmailTransport {
    /// A transport for `receivers` (name, config); each SMTP exchange step may take
    /// `timeout`. The error names the receiver's key.
    pub fn new<'a>(
        receivers: impl IntoIterator<Item = (&'a str, &'a EmailReceiver)>,
        timeout: Duration,
    ) -> Result<EmailTransport, String> {
        let mut servers = HashMap::new();
        for (name, cfg) in receivers {
            let server =
                Server::new(cfg, timeout).map_err(|e| format!("receiver {name:?}: email.{e}"))?;
            servers.insert(name.to_string(), Arc::new(server));
        }
        Ok(EmailTransport { servers })
    }

    /// Whether no receiver sends e-mail.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }
}

/// The message of a payload, dated `created_ms` (a resend is the same message).
pub fn build_message(p: &EmailPayload, created_ms: i64) -> Result<Message, String> {
    let mailbox = |s: &str| {
        s.trim()
            .parse::<Mailbox>()
            .map_err(|e| format!("bad address {s:?}: {e}"))
    };
    let date = UNIX_EPOCH + Duration::from_millis(u64::try_from(created_ms).unwrap_or(0));
    let mut b = Message::builder()
        .from(mailbox(&p.from)?)
        .subject(p.subject.clone())
        .date(if created_ms > 0 {
            date
        } else {
            SystemTime::now()
        })
        .message_id(Some(p.message_id.clone()))
        .user_agent(concat!("watchpost/", env!("CARGO_PKG_VERSION")).to_string());
    for to in &p.to {
        b = b.to(mailbox(to)?);
    }
    if let Some(root) = &p.in_reply_to {
        b = b.in_reply_to(root.clone());
    }
    if !p.references.is_empty() {
        b = b.references(p.references.join(" "));
    }
    for (name, value) in &p.headers {
        let name = HeaderName::new_from_ascii(name.clone())
            .map_err(|e| format!("bad header name {name:?}: {e}"))?;
        b = b.raw_header(HeaderValue::new(name, value.clone()));
    }
    b.multipart(MultiPart::alternative_plain_html(
        p.text.clone(),
        p.html.clone(),
    ))
    .map_err(|e| format!("cannot build the message: {e}"))
}

#[async_trait::async_trait]
impl OutboxTransport for EmailTransport {
    async fn send(&self, row: &OutboxRow, started: &Started) -> Attempt {
        let Some(server) = self.servers.get(&row.receiver) else {
            return Attempt::Rejected(format!(
                "no e-mail receiver {:?} in the config",
                row.receiver
            ));
        };
        let payload: EmailPayload = match serde_json::from_str(&row.payload) {
            Ok(p) => p,
            Err(e) => return Attempt::Rejected(format!("unreadable payload: {e}")),
        };
        let message = match build_message(&payload, row.created_ms) {
            Ok(m) => m,
            Err(e) => return Attempt::Rejected(e),
        };
        let bytes = message.formatted();
        // Each step has `timeout`; the whole exchange at most a few of them.
        let limit = server.timeout.saturating_mul(4);
        match tokio::time::timeout(limit, server.deliver(message.envelope(), &bytes, started)).await
        {
            Ok(answer) => answer,
            Err(_) if started.is_set() => Attempt::Ambiguous(format!(
                "{}: no answer within {} after the message was sent",
                server.endpoint(),
                humantime::format_duration(limit)
            )),
            Err(_) => Attempt::Transient(format!(
                "{}: no answer within {}",
                server.endpoint(),
                humantime::format_duration(limit)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_carries_the_payload_and_its_date() {
        let p = EmailPayload {
            from: "Watchpost <wp@alerts.example.org>".into(),
            to: vec!["ops@example.org".into(), "Bob <bob@example.org>".into()],
            subject: "[RESOLVED] DiskFull 🔥".into(),
            text: "✅ RESOLVED · DiskFull".into(),
            html: "<!DOCTYPE html><b>RESOLVED</b>".into(),
            message_id: "<watchpost.ab.2@alerts.example.org>".into(),
            in_reply_to: Some("<watchpost.ab@alerts.example.org>".into()),
            references: vec!["<watchpost.ab@alerts.example.org>".into()],
            headers: [("X-Team".to_string(), "storage".to_string())].into(),
        };
        let m = build_message(&p, 1_700_000_000_000).unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        assert!(raw.is_ascii(), "headers and parts are encoded: {raw}");
        for want in [
            "Message-ID: <watchpost.ab.2@alerts.example.org>\r\n",
            "In-Reply-To: <watchpost.ab@alerts.example.org>\r\n",
            "References: <watchpost.ab@alerts.example.org>\r\n",
            "X-Team: storage\r\n",
            "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n",
            "Content-Type: multipart/alternative;",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Type: text/html; charset=utf-8",
        ] {
            assert!(raw.contains(want), "{want:?} in\n{raw}");
        }
        let env = m.envelope();
        assert_eq!(env.to().len(), 2);
        assert_eq!(
            env.from().map(|a| a.to_string()),
            Some("wp@alerts.example.org".into())
        );
        let mut bad = p.clone();
        bad.to = vec!["not an address".into()];
        assert!(build_message(&bad, 0).unwrap_err().contains("bad address"));
    }

    #[test]
    fn data_is_dot_stuffed_and_terminated() {
        let b = DataBody::new(b".top\r\nmid.dle\r\n.\r\n..x").unwrap();
        assert_eq!(b.to_string(), "..top\r\nmid.dle\r\n..\r\n...x\r\n.\r\n");
    }

    #[test]
    fn implicit_tls_on_465_else_starttls() {
        let cfg = |host: &str, require_tls: bool| -> EmailReceiver {
            toml::from_str(&format!(
                "to = \"a@b.c\"\nfrom = \"w@b.c\"\nsmarthost = \"{host}\"\nrequire_tls = {require_tls}\n"
            ))
            .unwrap()
        };
        let s = Server::new(&cfg("smtp.example.org:465", true), Duration::from_secs(1)).unwrap();
        assert!(matches!(s.security, Security::Wrapper(_)));
        let s = Server::new(&cfg("smtp.example.org:587", false), Duration::from_secs(1)).unwrap();
        assert!(matches!(
            s.security,
            Security::StartTls {
                required: false,
                ..
            }
        ));
        assert_eq!(s.endpoint(), "smtp.example.org:587");
        let e = EmailTransport::new(
            [("m", &cfg("smtp.example.org", true))],
            Duration::from_secs(1),
        );
        assert!(e.err().unwrap().contains("email.smarthost: missing port"));
    }
}
