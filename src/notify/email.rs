//! The e-mail receiver: one multipart (text + HTML) message per notification group,
//! rendered when the outbox row is written, so that the transport ([`smtp`]) only sends.
//!
//! Threading is derived from what is stored: the notification log keeps when a group's
//! episode began (its first notification since it was empty), so the thread of a group
//! and receiver is `hash(receiver, group key, episode start)` — the same after a restart
//! or on another node. The episode's first message carries the thread's root id as its
//! `Message-ID`; every later one (repeats, alerts that come and go, the resolve) has
//! `In-Reply-To` and `References` naming it. A row's message id is in its payload, so a
//! resend after an ambiguous attempt keeps it and receivers can drop the duplicate.

pub mod smtp;

use std::collections::BTreeMap;
use std::fmt::Write;

use lettre::message::Mailbox;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::message::{MessageBuilder, escape};
use super::split::strip_tags;
use super::template;
use super::webhook::webhook_payload;
use crate::config::EmailReceiver;
use crate::dispatch::{AlertState, Notification};
use crate::rules::template::Context;

pub use smtp::EmailTransport;

/// Outbox row kind of e-mail rows.
pub const KIND: &str = "email";

/// Longest subject kept (characters); longer ones end with `…`.
const SUBJECT_MAX: usize = 200;

/// Headers watchpost sets itself; `headers` may not override them.
const RESERVED_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

/// What an e-mail receiver's rows are rendered from.
#[derive(Debug, Clone, PartialEq)]
pub struct EmailTarget {
    /// Recipients.
    pub to: Vec<String>,
    /// Sender.
    pub from: String,
    /// Subject template.
    pub subject: Option<String>,
    /// HTML body template.
    pub html: Option<String>,
    /// Plain-text body template.
    pub text: Option<String>,
    /// Extra headers.
    pub headers: BTreeMap<String, String>,
}

impl EmailTarget {
    /// The target of a configured receiver.
    pub fn from_config(c: &EmailReceiver) -> Self {
        EmailTarget {
            to: c.to.iter().map(|t| t.trim().to_string()).collect(),
            from: c.from.trim().to_string(),
            subject: c.subject.clone(),
            html: c.html.clone(),
            text: c.text.clone(),
            headers: c.headers.clone(),
        }
    }

    /// The outbox target: `email:` and the recipients (rows to the same recipients are
    /// sent in order).
    pub fn outbox_target(&self) -> String {
        format!("email:{}", self.to.join(","))
    }
}

/// A ready message: what an e-mail outbox row holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailPayload {
    /// Sender mailbox.
    pub from: String,
    /// Recipient mailboxes.
    pub to: Vec<String>,
    /// Subject (one line).
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part (a whole document).
    pub html: String,
    /// `<id@domain>`.
    pub message_id: String,
    /// The thread's root message, for replies.
    #[serde(default)]
    pub in_reply_to: Option<String>,
    /// `References` (the root).
    #[serde(default)]
    pub references: Vec<String>,
    /// Extra headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// The message ids of one notification: its own, and the root of its thread when it is
/// not the root itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadIds {
    /// This message's `Message-ID`.
    pub message_id: String,
    /// The episode's first message, when this is a later one.
    pub root: Option<String>,
}

/// The thread ids of `n` for a sender in `domain`.
pub fn thread_ids(n: &Notification, domain: &str) -> ThreadIds {
    let digest = Sha256::digest(format!("{}\0{}\0{}", n.receiver, n.group_key, n.episode_ms));
    let thread: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
    let root = format!("<watchpost.{thread}@{domain}>");
    if n.at_ms == n.episode_ms {
        ThreadIds {
            message_id: root,
            root: None,
        }
    } else {
        ThreadIds {
            message_id: format!("<watchpost.{thread}.{}@{domain}>", n.seq),
            root: Some(root),
        }
    }
}

/// The domain of a mailbox (`Name <user@example.org>` → `example.org`).
fn domain_of(mailbox: &str) -> String {
    mailbox
        .parse::<Mailbox>()
        .map(|m| m.email.domain().to_string())
        .unwrap_or_else(|_| "watchpost.invalid".into())
}

/// Renders `n` for target `t`: the built-in message (or the user's templates) as
/// subject, text and HTML, with the thread headers.
pub fn payload(
    n: &Notification,
    t: &EmailTarget,
    builder: &MessageBuilder,
    external_url: &str,
) -> EmailPayload {
    let builtin = builder.render(n, None);
    let templated = t.subject.is_some() || t.html.is_some() || t.text.is_some();
    let data = templated.then(|| template::template_data(&webhook_payload(n, external_url)));
    let user = |source: &Option<String>, part: &str, html: bool| -> Option<String> {
        let (source, data) = (source.as_deref()?, data.clone()?);
        match render_user(source, data, external_url, html, builder.timezone()) {
            Ok(s) if !s.trim().is_empty() => Some(s),
            Ok(_) => {
                tracing::warn!(receiver = %n.receiver, part, "e-mail template rendered empty text; using the built-in one");
                None
            }
            Err(e) => {
                tracing::warn!(receiver = %n.receiver, part, error = %e, "e-mail template failed; using the built-in one");
                None
            }
        }
    };
    let subject = one_line(
        &user(&t.subject, "subject", false).unwrap_or_else(|| default_subject(n)),
        SUBJECT_MAX,
    );
    let text = user(&t.text, "text", false).unwrap_or_else(|| telegram_to_text(&builtin));
    let html = user(&t.html, "html", true)
        .unwrap_or_else(|| html_document(&subject, &builtin, external_url));
    let ids = thread_ids(n, &domain_of(&t.from));
    EmailPayload {
        from: t.from.clone(),
        to: t.to.clone(),
        subject,
        text,
        html,
        message_id: ids.message_id,
        in_reply_to: ids.root.clone(),
        references: ids.root.into_iter().collect(),
        headers: t.headers.clone(),
    }
}

/// Runs a user template over the notification data; HTML templates escape what their
/// actions print.
fn render_user(
    source: &str,
    data: crate::rules::template::Value,
    external_url: &str,
    html: bool,
    timezone: chrono_tz::Tz,
) -> Result<String, String> {
    let t = template::parse(source)?;
    let ctx = Context {
        external_url,
        query: None,
        escape: html.then_some(escape as fn(&str) -> String),
        timezone,
    };
    t.execute_value(&ctx, data).map_err(|e| e.to_string())
}

/// Alertmanager's subject: `[FIRING:2] DiskFull (instance=db-1 job=node)`: the status,
/// the group labels' values, then the labels every alert shares beyond those.
pub fn default_subject(n: &Notification) -> String {
    let mut s = match n.status {
        AlertState::Resolved => "[RESOLVED] ".to_string(),
        _ => {
            let firing = n
                .alerts()
                .filter(|a| a.state != AlertState::Resolved)
                .count();
            format!("[FIRING:{firing}] ")
        }
    };
    if n.group_labels.is_empty() {
        s.push_str(&super::message::title_of(n));
    } else {
        let values: Vec<&str> = n.group_labels.values().map(String::as_str).collect();
        s.push_str(&values.join(" "));
    }
    let extra: Vec<String> = n
        .common_labels()
        .into_iter()
        .filter(|(k, _)| !n.group_labels.contains_key(k) && !k.starts_with("__"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !extra.is_empty() {
        let _ = write!(s, " ({})", extra.join(" "));
    }
    s
}

/// One line (control characters become spaces), at most `max` characters.
fn one_line(s: &str, max: usize) -> String {
    let line: String = s
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.chars().count() <= max {
        return line;
    }
    let mut cut: String = line.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// A small HTML document around a message in Telegram's HTML subset: its line breaks
/// become `<br>` (outside `<pre>`), Telegram-only tags become spans.
pub fn html_document(subject: &str, telegram_html: &str, external_url: &str) -> String {
    let body = telegram_to_html(telegram_html);
    let url = escape(external_url);
    format!(
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width\">\n<title>{}</title>\n</head>\n<body style=\"font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;font-size:14px;line-height:1.5;color:#1f2328\">\n<div>{body}</div>\n<p style=\"color:#656d76;font-size:12px;margin-top:24px\">Sent by <a href=\"{url}\">watchpost</a></p>\n</body>\n</html>\n",
        escape(subject)
    )
}

/// Telegram HTML → e-mail HTML (see [`html_document`]).
fn telegram_to_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    let mut pre = 0usize;
    let mut rest = s;
    while let Some(i) = rest.find(['<', '\n']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix('\n') {
            out.push_str(if pre > 0 { "\n" } else { "<br>\n" });
            rest = after;
            continue;
        }
        let end = tail.find('>').map_or(tail.len(), |e| e + 1);
        let tag = &tail[..end];
        let name: String = tag
            .trim_start_matches(['<', '/'])
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect::<String>()
            .to_ascii_lowercase();
        match name.as_str() {
            "pre" if tag.starts_with("</") => pre = pre.saturating_sub(1),
            "pre" => pre += 1,
            _ => {}
        }
        if name.starts_with("tg-") {
            out.push_str(if tag.starts_with("</") {
                "</span>"
            } else {
                "<span>"
            });
        } else {
            out.push_str(tag);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Telegram HTML → plain text: links as `text (url)`, tags dropped, entities decoded.
pub fn telegram_to_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("<a href=\"") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 9..];
        let parsed = tail.find('"').and_then(|q| {
            let href = &tail[..q];
            let after = &tail[q..];
            let open_end = after.find('>')?;
            let inner = &after[open_end + 1..];
            let close = inner.find("</a>")?;
            Some((href, &inner[..close], &inner[close + 4..]))
        });
        match parsed {
            Some((href, label, after)) => {
                let label = strip_tags(label);
                let href = strip_tags(href);
                if label == href {
                    out.push_str(&escape(&href));
                } else {
                    let _ = write!(out, "{} ({})", escape(&label), escape(&href));
                }
                rest = after;
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    strip_tags(&out)
}

/// Splits `host:port` (`[v6]:port` too); the error says what is missing.
pub fn host_port(smarthost: &str) -> Result<(String, u16), String> {
    let s = smarthost.trim();
    if s.is_empty() {
        return Err("missing (set it to host:port, e.g. smtp.example.org:587)".into());
    }
    let (host, port) = s
        .rsplit_once(':')
        .filter(|(h, _)| !h.is_empty() && (!h.contains(':') || h.starts_with('[')))
        .ok_or_else(|| format!("missing port in {s:?} (host:port, e.g. {s}:587)"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("bad port {port:?} in {s:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("bad host in {s:?}"));
    }
    Ok((host.to_string(), port))
}

/// Config problems of the e-mail receiver at `key` (`receivers[0].email`).
pub fn validate(key: &str, cfg: &EmailReceiver) -> Vec<String> {
    let mut problems = Vec::new();
    if cfg.to.iter().all(|t| t.trim().is_empty()) {
        problems.push(format!("{key}.to: no recipients"));
    }
    for (i, to) in cfg.to.iter().enumerate() {
        if let Err(e) = to.trim().parse::<Mailbox>() {
            problems.push(format!(
                "{key}.to[{i}]: not an e-mail address: {to:?} ({e})"
            ));
        }
    }
    if cfg.from.trim().is_empty() {
        problems.push(format!("{key}.from: missing (the sender address)"));
    } else if let Err(e) = cfg.from.trim().parse::<Mailbox>() {
        problems.push(format!(
            "{key}.from: not an e-mail address: {:?} ({e})",
            cfg.from
        ));
    }
    if let Err(e) = host_port(&cfg.smarthost) {
        problems.push(format!("{key}.smarthost: {e}"));
    }
    match (&cfg.auth_username, &cfg.auth_password) {
        (Some(_), None) => problems.push(format!("{key}.auth_password: needed with auth_username")),
        (None, Some(_)) => problems.push(format!("{key}.auth_username: needed with auth_password")),
        _ => {}
    }
    if let Some(h) = &cfg.hello
        && (h.trim().is_empty() || h.contains(char::is_whitespace))
    {
        problems.push(format!("{key}.hello: not a host name: {h:?}"));
    }
    if let Err(e) = smtp::tls_parameters("localhost", &cfg.tls_config) {
        problems.push(format!("{key}.tls_config.{e}"));
    }
    for (field, source) in [
        ("subject", &cfg.subject),
        ("html", &cfg.html),
        ("text", &cfg.text),
    ] {
        if let Some(source) = source
            && let Err(e) = template::parse(source)
        {
            problems.push(format!("{key}.{field}: {e}"));
        }
    }
    for (name, value) in &cfg.headers {
        if let Err(e) = check_header(name, value) {
            problems.push(format!("{key}.headers.{name}: {e}"));
        }
    }
    problems
}

/// Whether `name: value` may be added to messages.
fn check_header(name: &str, value: &str) -> Result<(), String> {
    let token = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    if !token {
        return Err("not a header name".into());
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err("set by watchpost (use `to`, `from` or `subject`)".into());
    }
    if value.contains(['\r', '\n']) {
        return Err("line breaks are not allowed in a header value".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::AlertNotice;

    fn notification(at_ms: i64, episode_ms: i64, seq: u64, status: AlertState) -> Notification {
        let mut a = AlertNotice::test(7, "fp7", "DiskFull");
        a.labels.insert("instance".into(), "db-1 <prod>".into());
        a.annotations
            .insert("summary".into(), "disk 95% full & growing".into());
        a.state = status;
        let (firing, resolved) = match status {
            AlertState::Resolved => (vec![], vec![a]),
            _ => (vec![a], vec![]),
        };
        Notification {
            group_key: "{}:{alertname=\"DiskFull\"}".into(),
            receiver: "mail".into(),
            group_labels: BTreeMap::from([("alertname".into(), "DiskFull".into())]),
            status,
            firing,
            resolved,
            flapping: Vec::new(),
            stable: Default::default(),
            seq,
            at_ms,
            episode_ms,
        }
    }

    fn target() -> EmailTarget {
        EmailTarget {
            to: vec!["ops@example.org".into(), "Bob <bob@example.org>".into()],
            from: "Watchpost <wp@alerts.example.org>".into(),
            subject: None,
            html: None,
            text: None,
            headers: BTreeMap::from([("X-Team".into(), "storage".into())]),
        }
    }

    #[test]
    fn resolve_replies_to_the_episode_root() {
        let b = MessageBuilder::new("https://wp.example", None);
        let fire = payload(
            &notification(1000, 1000, 1, AlertState::Firing),
            &target(),
            &b,
            "https://wp.example",
        );
        let resolve = payload(
            &notification(5000, 1000, 2, AlertState::Resolved),
            &target(),
            &b,
            "https://wp.example",
        );
        assert!(
            fire.message_id.ends_with("@alerts.example.org>"),
            "{}",
            fire.message_id
        );
        assert_eq!(fire.in_reply_to, None);
        assert_eq!(resolve.in_reply_to.as_ref(), Some(&fire.message_id));
        assert_eq!(resolve.references, vec![fire.message_id.clone()]);
        assert_ne!(resolve.message_id, fire.message_id);
        // Rendered again (a retried flush): the same ids.
        let again = payload(
            &notification(5000, 1000, 2, AlertState::Resolved),
            &target(),
            &b,
            "https://wp.example",
        );
        assert_eq!(again.message_id, resolve.message_id);
        // The next episode of the group: a new thread.
        let next = payload(
            &notification(9000, 9000, 1, AlertState::Firing),
            &target(),
            &b,
            "https://wp.example",
        );
        assert_ne!(next.message_id, fire.message_id);
        assert_eq!(next.in_reply_to, None);
    }

    #[test]
    fn built_in_subject_text_and_html() {
        let b = MessageBuilder::new("https://wp.example", None);
        let p = payload(
            &notification(1, 1, 1, AlertState::Firing),
            &target(),
            &b,
            "https://wp.example",
        );
        assert_eq!(p.subject, "[FIRING:1] DiskFull (instance=db-1 <prod>)");
        assert!(p.text.contains("disk 95% full & growing"), "{}", p.text);
        assert!(p.text.contains("instance=db-1 <prod>"), "{}", p.text);
        assert!(
            p.text.contains("Alert #7 (https://wp.example/alerts/7)"),
            "{}",
            p.text
        );
        assert!(!p.text.contains("<b>"), "{}", p.text);
        assert!(p.html.starts_with("<!DOCTYPE html>"), "{}", p.html);
        assert!(p.html.contains("<b>FIRING</b>"), "{}", p.html);
        assert!(
            p.html.contains("disk 95% full &amp; growing<br>"),
            "{}",
            p.html
        );
        assert!(
            p.html
                .contains("<title>[FIRING:1] DiskFull (instance=db-1 &lt;prod&gt;)</title>")
        );
        let r = payload(
            &notification(2, 1, 2, AlertState::Resolved),
            &target(),
            &b,
            "https://wp.example",
        );
        assert_eq!(r.subject, "[RESOLVED] DiskFull (instance=db-1 <prod>)");
    }

    #[test]
    fn user_templates_render_with_the_notification_data() {
        let b = MessageBuilder::new("https://wp.example", None);
        let mut t = target();
        t.subject = Some("{{ .Status | toUpper }} {{ .CommonLabels.instance }}\nnext".into());
        t.html = Some("<p>{{ range .Alerts }}{{ .Labels.instance }}{{ end }}</p>".into());
        t.text = Some("{{ len .Alerts }} alert(s): {{ .CommonAnnotations.summary }}".into());
        let p = payload(
            &notification(1, 1, 1, AlertState::Firing),
            &t,
            &b,
            "https://wp.example",
        );
        assert_eq!(p.subject, "FIRING db-1 <prod> next");
        assert_eq!(p.html, "<p>db-1 &lt;prod&gt;</p>");
        assert_eq!(p.text, "1 alert(s): disk 95% full & growing");
        t.text = Some("{{ .Nope.Missing }}".into());
        let p = payload(
            &notification(1, 1, 1, AlertState::Firing),
            &t,
            &b,
            "https://wp.example",
        );
        assert!(
            p.text.contains("FIRING"),
            "a failed template falls back: {}",
            p.text
        );
    }

    #[test]
    fn telegram_html_converts() {
        assert_eq!(
            telegram_to_html("a\n<pre>x\ny</pre>\n<tg-spoiler>s</tg-spoiler>"),
            "a<br>\n<pre>x\ny</pre><br>\n<span>s</span>"
        );
        assert_eq!(
            telegram_to_text(
                "<b>x</b> &amp; <a href=\"http://h/?a=1&amp;b=2\">Link</a> <a href=\"http://u\">http://u</a>"
            ),
            "x & Link (http://h/?a=1&b=2) http://u"
        );
        assert_eq!(one_line("a\r\nb", 10), "a  b");
        assert_eq!(one_line("abcdef", 4), "abc…");
    }

    #[test]
    fn smarthost_and_validation() {
        assert_eq!(
            host_port("smtp.example.org:587").unwrap(),
            ("smtp.example.org".into(), 587)
        );
        assert_eq!(host_port("[::1]:25").unwrap(), ("::1".into(), 25));
        assert!(
            host_port("smtp.example.org")
                .unwrap_err()
                .contains("missing port")
        );
        assert!(host_port("").unwrap_err().contains("missing"));
        assert!(host_port("h:0").unwrap_err().contains("bad port"));
        let cfg: EmailReceiver = toml::from_str(
            r#"
to = "ops@example.org, not an address"
from = ""
smarthost = "smtp.example.org"
auth_username = "u"
subject = "{{ if }}"
headers = { Subject = "x", "X-Ok" = "fine" }
tls_config = { ca_file = "/nonexistent/ca.pem" }
"#,
        )
        .unwrap();
        let p = validate("receivers[0].email", &cfg).join("\n");
        for want in [
            "receivers[0].email.to[1]: not an e-mail address",
            "receivers[0].email.from: missing",
            "receivers[0].email.smarthost: missing port",
            "receivers[0].email.auth_password: needed with auth_username",
            "receivers[0].email.subject: ",
            "receivers[0].email.headers.Subject: set by watchpost",
            "receivers[0].email.tls_config.ca_file: ",
        ] {
            assert!(p.contains(want), "{want}\n{p}");
        }
        assert!(!p.contains("X-Ok"), "{p}");
    }
}
