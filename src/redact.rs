//! Redaction of secrets, in one place: receiver URLs (secret paths, `user:pass@`,
//! query strings), database URLs and connection strings (passwords), and free text such
//! as error messages that may quote either.
//!
//! - [`endpoint`]: a receiver URL as logs and non-admins see it, `scheme://host[:port]/…`.
//! - [`target`]: an outbox target (`webhook:URL` → `webhook:` + [`endpoint`]).
//! - [`dsn`]: a database URL or `key=value` connection string without its passwords.
//! - [`text`]: every URL in a message reduced to its endpoint, `password=…` values hidden.
//! - [`http_error`]: a reqwest error with its causes, through [`text`].
//! - [`without`]: a known secret (the bot token) removed wherever it appears.
//!
//! A URL whose authority does not parse cleanly (a port that is not a number, an `@`
//! after the host, as an unescaped `/` or `?` in a password leaves it) shows
//! `<redacted>` in place of the host: what cannot be told apart is hidden.

use std::error::Error;

/// What a secret is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Appended by [`endpoint`] when it dropped anything.
const ELIDED: &str = "/…";

/// A URL cut at its authority (RFC 3986): `scheme://[userinfo@]host[:port]rest`.
struct Url<'a> {
    scheme: &'a str,
    userinfo: Option<&'a str>,
    host: &'a str,
    /// Path, query and fragment, as given.
    rest: &'a str,
}

impl<'a> Url<'a> {
    /// `None` unless `s` starts with `scheme://`.
    fn parse(s: &'a str) -> Option<Url<'a>> {
        let (scheme, after) = s.split_once("://")?;
        if !is_scheme(scheme) {
            return None;
        }
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let (authority, rest) = after.split_at(end);
        let (userinfo, host) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        Some(Url {
            scheme,
            userinfo,
            host,
            rest,
        })
    }

    /// The host can be trusted to be one: a numeric port (if any), no `@` after it.
    fn is_clean(&self) -> bool {
        is_host_port(self.host) && !self.rest.contains('@')
    }

    /// `host[:port]`, or `<redacted>` when the URL is not clean.
    fn shown_host(&self) -> &'a str {
        if self.is_clean() { self.host } else { REDACTED }
    }
}

/// `[A-Za-z][A-Za-z0-9+.-]*`.
fn is_scheme(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// `name`, `name:digits`, `[v6]` or `[v6]:digits` (the name may be empty: `sqlite:///p`).
fn is_host_port(s: &str) -> bool {
    let port = match s.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((ip, port))
                if ip
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ":.%".contains(c)) =>
            {
                port
            }
            _ => return false,
        },
        None => s.find(':').map_or("", |i| &s[i..]),
    };
    port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// A receiver URL reduced to `scheme://host[:port]`, with `/…` appended when anything
/// was dropped (userinfo, path, query, fragment); input that is not a URL is
/// `<redacted>`.
pub fn endpoint(s: &str) -> String {
    let Some(url) = Url::parse(s) else {
        return REDACTED.into();
    };
    let dropped = url.userinfo.is_some() || !matches!(url.rest, "" | "/") || !url.is_clean();
    let tail = if dropped { ELIDED } else { url.rest };
    format!("{}://{}{tail}", url.scheme, url.shown_host())
}

/// An outbox target as logs and non-admins see it: `webhook:URL` with the URL reduced
/// by [`endpoint`]; other targets (`telegram:CHAT`) as they are.
pub fn target(t: &str) -> String {
    match t.strip_prefix("webhook:") {
        Some(url) => format!("webhook:{}", endpoint(url)),
        None => t.to_string(),
    }
}

/// A database URL or connection string with every password replaced by `<redacted>`:
/// the userinfo password (`postgres://u:pw@h/db`), `password` query parameters, and
/// `password=…` pairs of a `key=value` string (`host=h password='p w'`).
pub fn dsn(s: &str) -> String {
    match Url::parse(s) {
        Some(url) if url.is_clean() => {
            let user = match url.userinfo {
                Some(u) if u.contains(':') => {
                    format!("{}:{REDACTED}@", u.split(':').next().unwrap_or(""))
                }
                Some(u) => format!("{u}@"),
                None => String::new(),
            };
            format!("{}://{user}{}{}", url.scheme, url.host, query(url.rest))
        }
        Some(url) => format!("{}://{REDACTED}", url.scheme),
        None => pairs(s),
    }
}

/// A `Secret`'s printable form: a URL through [`dsn`], anything else `<redacted>`.
pub fn secret(s: &str) -> String {
    if Url::parse(s).is_some() {
        dsn(s)
    } else {
        REDACTED.into()
    }
}

/// Free text (an error message, a receiver's answer) with every URL in it reduced by
/// [`endpoint`] and every `password=…` value hidden.
pub fn text(s: &str) -> String {
    pairs(&urls(s))
}

/// A reqwest error with its causes, without the URL it names (which may carry a bot
/// token, a secret path or a password): the URL is reduced by [`endpoint`].
pub fn http_error(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    text(&s)
}

/// `text` with every occurrence of a known `secret` (a bot token a server may echo in a
/// path) replaced by `<redacted>`.
pub fn without(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_string()
    } else {
        text.replace(secret, REDACTED)
    }
}

/// `display` through [`text`]: for logging errors that may quote a URL.
pub fn error(display: &impl std::fmt::Display) -> String {
    text(&display.to_string())
}

/// Whether a query or `key=value` key names a password (`password`, `sslpassword`, …).
fn is_password_key(key: &str) -> bool {
    key.to_ascii_lowercase().contains("pass")
}

/// The path, query and fragment of a URL with password parameters' values redacted.
fn query(rest: &str) -> String {
    let Some((path, after)) = rest.split_once('?') else {
        return rest.to_string();
    };
    let (query, fragment) = match after.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (after, None),
    };
    let params: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if is_password_key(k) => format!("{k}={REDACTED}"),
            _ => pair.to_string(),
        })
        .collect();
    let mut out = format!("{path}?{}", params.join("&"));
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// `s` with each `password=value` pair's value (libpq style: spaces may surround `=`,
/// a value may be quoted) replaced.
fn pairs(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let (before, after) = (&rest[..eq], &rest[eq + 1..]);
        out.push_str(before);
        out.push('=');
        let key = before
            .trim_end()
            .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .next()
            .unwrap_or("");
        if !is_password_key(key) {
            rest = after;
            continue;
        }
        let value = after.trim_start();
        out.push_str(&after[..after.len() - value.len()]);
        out.push_str(REDACTED);
        rest = &value[value_len(value)..];
    }
    out.push_str(rest);
    out
}

/// The length of a value: up to its closing quote (`'…'` or `"…"`, backslash escapes),
/// else up to whitespace.
fn value_len(v: &str) -> usize {
    let Some(quote) = v.chars().next().filter(|c| *c == '\'' || *c == '"') else {
        return v.find(char::is_whitespace).unwrap_or(v.len());
    };
    let mut escaped = false;
    for (i, c) in v.char_indices().skip(1) {
        match c {
            '\\' if !escaped => escaped = true,
            c if c == quote && !escaped => return i + c.len_utf8(),
            _ => escaped = false,
        }
    }
    v.len()
}

/// `s` with every `scheme://…` in it reduced by [`endpoint`]. A URL ends at whitespace,
/// a quote or `<>`; trailing `)`, `,`, `.`, `;`, `:` are taken as the sentence's.
fn urls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("://") {
        let start = rest[..at]
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let len = rest[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .unwrap_or(rest.len() - at);
        let candidate = rest[start..at + len].trim_end_matches([')', ',', '.', ';', ':']);
        if Url::parse(candidate).is_none() {
            out.push_str(&rest[..at + 3]);
            rest = &rest[at + 3..];
            continue;
        }
        out.push_str(&rest[..start]);
        out.push_str(&endpoint(candidate));
        rest = &rest[start + candidate.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_keeps_scheme_and_host() {
        let slack = "https://hooks.slack.com/services/T000/B000/XXXXSECRET";
        assert_eq!(endpoint(slack), "https://hooks.slack.com/…");
        assert_eq!(
            endpoint("http://user:pass@hooks.example:8443/x?token=abc"),
            "http://hooks.example:8443/…"
        );
        assert_eq!(endpoint("https://hooks.example"), "https://hooks.example");
        assert_eq!(endpoint("https://hooks.example/"), "https://hooks.example/");
        assert_eq!(
            endpoint("https://h.example?k=SECRET"),
            "https://h.example/…"
        );
        assert_eq!(endpoint("https://user@h.example"), "https://h.example/…");
    }

    #[test]
    fn endpoint_of_ipv6_hosts() {
        assert_eq!(
            endpoint("http://[::1]:9093/hook/SECRET"),
            "http://[::1]:9093/…"
        );
        assert_eq!(
            endpoint("http://u:p@[fe80::1%25eth0]/x"),
            "http://[fe80::1%25eth0]/…"
        );
    }

    #[test]
    fn endpoint_hides_what_it_cannot_parse() {
        assert_eq!(endpoint("not a url SECRET"), REDACTED);
        assert_eq!(endpoint("hooks.example/SECRET"), REDACTED);
        // An unescaped `/` in the password: the "port" is not a number.
        assert_eq!(endpoint("https://u:pa/SECRET@h/x"), "https://<redacted>/…");
        // An `@` after the host: the userinfo cannot be told from the path.
        assert_eq!(endpoint("https://u:12/SECRET@h/x"), "https://<redacted>/…");
        assert_eq!(endpoint("https://[::1/SECRET"), "https://<redacted>/…");
    }

    #[test]
    fn targets() {
        assert_eq!(
            target("webhook:https://discord.com/api/webhooks/1/SECRET"),
            "webhook:https://discord.com/…"
        );
        assert_eq!(target("telegram:-100123"), "telegram:-100123");
    }

    #[test]
    fn dsn_userinfo_password() {
        assert_eq!(
            dsn("postgres://u:pw@db:5432/wp"),
            "postgres://u:<redacted>@db:5432/wp"
        );
        assert_eq!(dsn("postgres://u@db/wp"), "postgres://u@db/wp");
        assert_eq!(dsn("postgres://db/wp"), "postgres://db/wp");
        assert_eq!(
            dsn("postgres://u:p@ss@db/wp"),
            "postgres://u:<redacted>@db/wp"
        );
        assert_eq!(
            dsn("sqlite://data/watchpost.db"),
            "sqlite://data/watchpost.db"
        );
        assert_eq!(dsn("sqlite:///tmp/wp.db"), "sqlite:///tmp/wp.db");
        assert_eq!(
            dsn("postgres://u:pw@[::1]:5432/wp"),
            "postgres://u:<redacted>@[::1]:5432/wp"
        );
    }

    #[test]
    fn dsn_query_password() {
        assert_eq!(
            dsn("postgres://db/wp?password=SECRET"),
            "postgres://db/wp?password=<redacted>"
        );
        assert_eq!(
            dsn("postgres://u:pw@db/wp?sslmode=require&password=SECRET&application_name=x#f"),
            "postgres://u:<redacted>@db/wp?sslmode=require&password=<redacted>&application_name=x#f"
        );
        assert_eq!(
            dsn("postgres://db/wp?sslpassword=SECRET"),
            "postgres://db/wp?sslpassword=<redacted>"
        );
    }

    #[test]
    fn dsn_key_value() {
        assert_eq!(
            dsn("host=db password=SECRET dbname=wp"),
            "host=db password=<redacted> dbname=wp"
        );
        assert_eq!(
            dsn("host=db password = 'SE CR\\'ET' user=u"),
            "host=db password = <redacted> user=u"
        );
        assert_eq!(
            dsn("host=db PASSWORD=SECRET"),
            "host=db PASSWORD=<redacted>"
        );
        assert_eq!(dsn("host=db user=u"), "host=db user=u");
    }

    #[test]
    fn dsn_hides_what_it_cannot_parse() {
        assert_eq!(dsn("postgres://u:pa/SECRET@db/wp"), "postgres://<redacted>");
        assert_eq!(dsn("postgres://u:pa?SECRET@db/wp"), "postgres://<redacted>");
        assert_eq!(dsn("postgres://u:12/SECRET@db/wp"), "postgres://<redacted>");
    }

    #[test]
    fn secrets_print_as_urls_or_not_at_all() {
        assert_eq!(secret("123:BOTTOKEN"), REDACTED);
        assert_eq!(
            secret("postgres://u:pw@db/wp"),
            "postgres://u:<redacted>@db/wp"
        );
    }

    #[test]
    fn text_reduces_urls_and_passwords() {
        let e = "error sending request for url (https://api.telegram.org/bot123:TOKEN/sendMessage): \
                 connection refused";
        assert_eq!(
            text(e),
            "error sending request for url (https://api.telegram.org/…): connection refused"
        );
        assert_eq!(
            text("POST \"http://user:pass@[::1]:8080/hook/SECRET\" failed."),
            "POST \"http://[::1]:8080/…\" failed."
        );
        assert_eq!(
            text("bad dsn host=db password=SECRET, try again"),
            "bad dsn host=db password=<redacted> try again"
        );
        assert_eq!(text("no url here: a://"), "no url here: a://");
        assert_eq!(text("ratio 3://x"), "ratio 3://x");
        assert_eq!(text("é https://h/SECRET"), "é https://h/…");
    }

    #[test]
    fn known_secrets_are_removed() {
        assert_eq!(
            without("Cannot POST /tg/bot1:TOKEN/SendMessage", "1:TOKEN"),
            "Cannot POST /tg/bot<redacted>/SendMessage"
        );
        assert_eq!(without("as is", ""), "as is");
    }

    #[test]
    fn text_is_idempotent() {
        let once = text("see https://u:p@h.example:1/SECRET?password=x and password=y");
        assert_eq!(once, "see https://h.example:1/… and password=<redacted>");
        assert_eq!(text(&once), once);
    }

    #[tokio::test]
    async fn http_errors_lose_their_url() {
        let url = "http://user:pass@127.0.0.1:1/hook/SECRET";
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let e = client
            .post(url)
            .send()
            .await
            .expect_err("nothing listens on port 1");
        let shown = http_error(&e);
        assert!(
            !shown.contains("SECRET") && !shown.contains("pass@"),
            "{shown}"
        );
        assert!(shown.contains("127.0.0.1:1"), "{shown}");
    }
}
