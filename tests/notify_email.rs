//! The e-mail receiver against a real SMTP server (Debian's `python3-aiosmtpd`, started
//! by each test): multipart text + HTML, recipients, subject, thread headers, STARTTLS and
//! implicit TLS, retries while the server is down, 5xx not retried (SQLite and
//! PostgreSQL).

mod common;
#[path = "support/fake_telegram.rs"]
mod fake_telegram;
#[path = "support/kafka_mock.rs"]
mod kafka_mock;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestApp, databases, test_config_with};
use serde_json::{Value, json};

const PYTHON: &str = "/usr/bin/python3";

/// Whether aiosmtpd can run; a missing one fails the test under `CI=true`.
fn have_aiosmtpd() -> bool {
    let ok = Command::new(PYTHON)
        .args(["-c", "import aiosmtpd"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true but python3-aiosmtpd is missing: run the tests with scripts/test.sh"
        );
        eprintln!("python3-aiosmtpd missing: skipping");
    }
    ok
}

/// How the test server speaks.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Plain SMTP (STARTTLS not offered).
    Plain,
    /// STARTTLS offered and required before MAIL.
    StartTls,
    /// TLS from the first byte.
    Implicit,
    /// Refuses every recipient with 550.
    Reject,
    /// Stores every message but cuts the connection before answering the first one.
    CutOnce,
    /// STARTTLS, then AUTH as `watchpost` / `s3cret` before MAIL.
    Auth,
}

/// A test CA (`ca.pem`) and the server certificate it signed for `localhost` and
/// 127.0.0.1 (`cert.pem`, `key.pem`).
fn certificate(dir: &Path) {
    let openssl = |args: &[&str]| {
        let st = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(st.success(), "openssl {args:?} failed");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca = [
        "-days",
        "2",
        "-subj",
        "/CN=watchpost test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ];
    openssl(&[&["req", "-x509"][..], &ec, &ca].concat());
    let leaf = [
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "req.csr",
    ];
    openssl(&[&["req"][..], &ec, &leaf].concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "req.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "cert.pem",
    ]);
}

/// An aiosmtpd process writing what it receives as a Maildir.
struct Smtpd {
    child: Child,
    port: u16,
    maildir: PathBuf,
}

impl Smtpd {
    fn start(mode: Mode, port: u16, dir: &Path) -> Smtpd {
        let maildir = dir.join("maildir");
        let mut cmd = Command::new(PYTHON);
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        if mode == Mode::Auth {
            cmd.arg(fixtures.join("smtp_auth.py"))
                .arg(port.to_string())
                .args([&cert, &key, &maildir])
                .args(["watchpost", "s3cret"]);
        } else {
            cmd.args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")]);
        }
        match mode {
            Mode::StartTls => {
                cmd.arg("--tlscert").arg(&cert).arg("--tlskey").arg(&key);
            }
            Mode::Implicit => {
                cmd.arg("--smtpscert")
                    .arg(&cert)
                    .arg("--smtpskey")
                    .arg(&key);
            }
            _ => {}
        }
        match mode {
            Mode::Reject => cmd
                .env("PYTHONPATH", fixtures)
                .args(["-c", "smtp_reject.Reject"]),
            Mode::CutOnce => cmd
                .env("PYTHONPATH", fixtures)
                .args(["-c", "smtp_reject.CutOnce"])
                .arg(&maildir),
            Mode::Auth => &mut cmd,
            _ => cmd.args(["-c", "aiosmtpd.handlers.Mailbox"]).arg(&maildir),
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn aiosmtpd");
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Smtpd {
            child,
            port,
            maildir,
        }
    }

    /// The messages received so far, oldest first.
    fn messages(&self) -> Vec<Vec<u8>> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
            .flatten()
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, p)| std::fs::read(p).ok())
            .collect()
    }

    async fn wait_for(&self, n: usize) -> Vec<Vec<u8>> {
        common::eventually(Duration::from_secs(30), || async {
            let m = self.messages();
            (m.len() >= n).then_some(m)
        })
        .await
        .unwrap_or_else(|| panic!("aiosmtpd did not receive {n} messages"))
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a test reads of a received message.
struct Mail {
    headers: Vec<(String, String)>,
    text: String,
    html: String,
    content_type: String,
}

impl Mail {
    fn parse(raw: &[u8]) -> Mail {
        let m = mailparse::parse_mail(raw).expect("a MIME message");
        let headers = m
            .headers
            .iter()
            .map(|h| (h.get_key().to_ascii_lowercase(), h.get_value()))
            .collect();
        let part = |mime: &str| {
            m.subparts
                .iter()
                .find(|p| p.ctype.mimetype == mime)
                .map(|p| p.get_body().expect("decodable part"))
                .unwrap_or_default()
        };
        Mail {
            text: part("text/plain"),
            html: part("text/html"),
            content_type: m.ctype.mimetype.clone(),
            headers,
        }
    }

    fn header(&self, name: &str) -> String {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

fn config(db_url: &str, email: &str) -> watchpost::config::Config {
    test_config_with(
        db_url,
        &format!(
            r#"
external_url = "https://wp.example"
[route]
receiver = "mail"
group_by = ["alertname"]
group_wait = "200ms"
group_interval = "500ms"
[notify]
min_backoff = "200ms"
max_backoff = "1s"
timeout = "5s"
[[receivers]]
name = "mail"
email = {{ {email} }}
"#
        ),
    )
}

fn to_from(port: u16) -> String {
    format!(
        r#"to = ["ops@example.org", "Dev Team <dev@example.org>"], from = "Watchpost <wp@alerts.example.org>", smarthost = "127.0.0.1:{port}", headers = {{ "X-Team" = "storage" }}"#
    )
}

fn tls(dir: &Path) -> String {
    format!(
        r#"tls_config = {{ ca_file = "{}", server_name = "localhost" }}"#,
        dir.join("ca.pem").display()
    )
}

fn disk_alert(ends_in_secs: i64) -> Value {
    let at = |s: i64| (chrono::Utc::now() + chrono::Duration::seconds(s)).to_rfc3339();
    json!([{
        "labels": {"alertname": "DiskFull", "instance": "db-1", "severity": "critical"},
        "annotations": {"summary": "disk 95% full on db-1"},
        "startsAt": at(-60),
        "endsAt": at(ends_in_secs),
    }])
}

async fn post_alerts(app: &TestApp, alerts: &Value) {
    let (status, body) = app.post_json("/api/v2/alerts", alerts).await;
    assert_eq!(status, 200, "{body}");
}

/// The e-mail rows of `/api/v1/notifications`, newest first.
async fn rows(app: &TestApp) -> Vec<Value> {
    let (status, body) = app.get_json("/api/v1/notifications?receiver=mail").await;
    assert_eq!(status, 200, "{body}");
    body["notifications"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Fires DiskFull, then resolves it; returns the two messages as received.
async fn fire_and_resolve(app: &TestApp, smtpd: &Smtpd) -> (Mail, Mail) {
    post_alerts(app, &disk_alert(3600)).await;
    let got = smtpd.wait_for(1).await;
    let firing = Mail::parse(&got[0]);
    post_alerts(app, &disk_alert(-1)).await;
    let got = smtpd.wait_for(2).await;
    (firing, Mail::parse(&got[1]))
}

#[tokio::test]
async fn firing_and_resolved_arrive_as_one_thread_over_starttls() {
    if !have_aiosmtpd() {
        return;
    }
    for db in databases().await {
        let k = db.kind;
        let dir = tempfile::tempdir().unwrap();
        certificate(dir.path());
        let smtpd = Smtpd::start(Mode::StartTls, common::free_port(), dir.path());
        let email = format!("{}, {}", to_from(smtpd.port), tls(dir.path()));
        let app = TestApp::start(config(&db.url, &email)).await;
        // The server refuses MAIL before STARTTLS: a delivery proves TLS was used.
        let (firing, resolved) = fire_and_resolve(&app, &smtpd).await;

        let rcpt = firing.header("x-rcptto");
        assert!(
            rcpt.contains("ops@example.org") && rcpt.contains("dev@example.org"),
            "{k}: {rcpt}"
        );
        assert_eq!(firing.header("x-mailfrom"), "wp@alerts.example.org", "{k}");
        assert_eq!(
            firing.header("subject"),
            "[FIRING:1] DiskFull (instance=db-1 severity=critical source=prometheus)",
            "{k}"
        );
        let to = firing.header("to");
        assert!(
            to.contains("Dev Team") && to.contains("<dev@example.org>"),
            "{k}: {to}"
        );
        assert_eq!(firing.header("x-team"), "storage", "{k}");
        assert_eq!(firing.content_type, "multipart/alternative", "{k}");
        assert!(
            firing.text.contains("FIRING · DiskFull"),
            "{k}: {}",
            firing.text
        );
        assert!(
            firing.text.contains("disk 95% full on db-1"),
            "{k}: {}",
            firing.text
        );
        assert!(
            firing.text.contains("(https://wp.example/alerts/"),
            "{k}: links spelled out: {}",
            firing.text
        );
        assert!(!firing.text.contains("<b>"), "{k}: {}", firing.text);
        assert!(
            firing.html.starts_with("<!DOCTYPE html>"),
            "{k}: {}",
            firing.html
        );
        assert!(
            firing.html.contains("<b>FIRING</b>"),
            "{k}: {}",
            firing.html
        );
        assert!(
            firing.html.contains("<a href=\"https://wp.example/alerts/"),
            "{k}: {}",
            firing.html
        );

        let root = firing.header("message-id");
        assert!(root.ends_with("@alerts.example.org>"), "{k}: {root}");
        assert_eq!(
            firing.header("in-reply-to"),
            "",
            "{k}: the thread's first message"
        );
        assert_eq!(
            resolved.header("subject"),
            "[RESOLVED] DiskFull (instance=db-1 severity=critical source=prometheus)",
            "{k}"
        );
        assert!(
            resolved.text.contains("RESOLVED · DiskFull"),
            "{k}: {}",
            resolved.text
        );
        assert!(resolved.html.contains("<b>RESOLVED</b>"), "{k}");
        assert_ne!(resolved.header("message-id"), root, "{k}");
        assert_eq!(resolved.header("in-reply-to"), root, "{k}");
        assert!(resolved.header("references").contains(&root), "{k}");

        // The server has the message a moment before the sender records its verdict.
        let rows = common::eventually(Duration::from_secs(10), || async {
            let rows = rows(&app).await;
            rows.iter().all(|r| r["state"] != "pending").then_some(rows)
        })
        .await
        .expect("both verdicts recorded");
        assert_eq!(rows.len(), 2, "{k}: {rows:?}");
        for r in &rows {
            assert_eq!(r["kind"], "email", "{k}");
            assert_eq!(r["state"], "delivered", "{k}: {r}");
            assert_eq!(r["attempts"], 1, "{k}: {r}");
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn the_thread_holds_across_a_restart_and_a_new_episode_starts_a_new_one() {
    if !have_aiosmtpd() {
        return;
    }
    for db in databases().await {
        let k = db.kind;
        let dir = tempfile::tempdir().unwrap();
        let smtpd = Smtpd::start(Mode::Plain, common::free_port(), dir.path());
        let email = format!("{}, require_tls = false", to_from(smtpd.port));
        let app = TestApp::start(config(&db.url, &email)).await;
        post_alerts(&app, &disk_alert(3600)).await;
        let root = Mail::parse(&smtpd.wait_for(1).await[0]).header("message-id");
        app.stop().await;

        // A new process: the thread comes from the stored notification log.
        let app = TestApp::start(config(&db.url, &email)).await;
        post_alerts(&app, &disk_alert(-1)).await;
        let resolved = Mail::parse(&smtpd.wait_for(2).await[1]);
        assert!(resolved.header("subject").starts_with("[RESOLVED]"), "{k}");
        assert_eq!(resolved.header("in-reply-to"), root, "{k}");

        // The group emptied; the next firing is a new thread.
        tokio::time::sleep(Duration::from_secs(1)).await;
        post_alerts(&app, &disk_alert(3600)).await;
        let again = Mail::parse(&smtpd.wait_for(3).await[2]);
        assert!(again.header("subject").starts_with("[FIRING:1]"), "{k}");
        assert_ne!(again.header("message-id"), root, "{k}");
        assert_eq!(
            again.header("in-reply-to"),
            "",
            "{k}: {}",
            again.header("in-reply-to")
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn auth_after_starttls_and_a_refused_password_fails() {
    if !have_aiosmtpd() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    certificate(dir.path());
    let smtpd = Smtpd::start(Mode::Auth, common::free_port(), dir.path());
    for (password, delivered) in [("s3cret", true), ("wrong", false)] {
        let db = common::sqlite_db();
        let email = format!(
            r#"{}, {}, auth_username = "watchpost", auth_password = "{password}""#,
            to_from(smtpd.port),
            tls(dir.path())
        );
        let app = TestApp::start(config(&db.url, &email)).await;
        post_alerts(&app, &disk_alert(3600)).await;
        let row = common::eventually(Duration::from_secs(20), || async {
            let r = rows(&app).await.first()?.clone();
            (r["state"] != "pending").then_some(r)
        })
        .await
        .expect("a verdict");
        if delivered {
            assert_eq!(row["state"], "delivered", "{row}");
            smtpd.wait_for(1).await;
        } else {
            assert_eq!(row["state"], "failed", "{row}");
            let error = row["last_error"].as_str().unwrap();
            assert!(error.contains("535"), "{row}");
            assert!(
                !error.contains("wrong"),
                "the password is not echoed: {row}"
            );
            assert_eq!(smtpd.messages().len(), 1, "nothing more arrived");
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn implicit_tls_on_port_465() {
    if !have_aiosmtpd() {
        return;
    }
    // Port 465 is what selects implicit TLS; binding it needs root (or
    // CAP_NET_BIND_SERVICE). Without that the test cannot run; a taken port under CI fails.
    match std::net::TcpListener::bind("127.0.0.1:465") {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!("cannot bind 127.0.0.1:465 ({e}): skipping, run as root to test SMTPS");
            return;
        }
        Err(e) => {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "CI=true but 127.0.0.1:465 cannot be bound: {e}"
            );
            eprintln!("cannot bind 127.0.0.1:465 ({e}): skipping");
            return;
        }
    }
    let db = common::sqlite_db();
    let dir = tempfile::tempdir().unwrap();
    certificate(dir.path());
    let smtpd = Smtpd::start(Mode::Implicit, 465, dir.path());
    let email = format!("{}, {}", to_from(465), tls(dir.path()));
    let app = TestApp::start(config(&db.url, &email)).await;
    let (firing, resolved) = fire_and_resolve(&app, &smtpd).await;
    assert!(firing.header("subject").starts_with("[FIRING:1] DiskFull"));
    assert_eq!(resolved.header("in-reply-to"), firing.header("message-id"));
    app.stop().await;
}

#[tokio::test]
async fn a_server_that_is_down_gets_the_message_once_it_is_back() {
    if !have_aiosmtpd() {
        return;
    }
    for db in databases().await {
        let k = db.kind;
        let dir = tempfile::tempdir().unwrap();
        let port = common::free_port();
        let email = format!("{}, require_tls = false", to_from(port));
        let app = TestApp::start(config(&db.url, &email)).await;
        post_alerts(&app, &disk_alert(3600)).await;
        let row = common::eventually(Duration::from_secs(20), || async {
            let rows = rows(&app).await;
            let r = rows.first()?.clone();
            (r["attempts"].as_i64() >= Some(2)).then_some(r)
        })
        .await
        .expect("retried while the server is down");
        assert_eq!(row["state"], "pending", "{k}: {row}");
        assert!(
            row["last_error"]
                .as_str()
                .unwrap()
                .contains("cannot connect"),
            "{k}: {row}"
        );

        let smtpd = Smtpd::start(Mode::Plain, port, dir.path());
        smtpd.wait_for(1).await;
        common::eventually(Duration::from_secs(10), || async {
            (rows(&app).await[0]["state"] == "delivered").then_some(())
        })
        .await
        .expect("delivered");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(smtpd.messages().len(), 1, "{k}: delivered exactly once");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_permanent_refusal_fails_with_the_server_reason() {
    if !have_aiosmtpd() {
        return;
    }
    for db in databases().await {
        let k = db.kind;
        let dir = tempfile::tempdir().unwrap();
        let smtpd = Smtpd::start(Mode::Reject, common::free_port(), dir.path());
        let email = format!("{}, require_tls = false", to_from(smtpd.port));
        let app = TestApp::start(config(&db.url, &email)).await;
        post_alerts(&app, &disk_alert(3600)).await;
        let row = common::eventually(Duration::from_secs(20), || async {
            let rows = rows(&app).await;
            let r = rows.first()?.clone();
            (r["state"] == "failed").then_some(r)
        })
        .await
        .expect("failed row");
        let error = row["last_error"].as_str().unwrap();
        assert!(error.contains("550"), "{k}: {row}");
        assert!(error.contains("User unknown"), "{k}: {row}");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(rows(&app).await[0]["attempts"], 1, "{k}: not retried");
        app.stop().await;
    }
}

#[tokio::test]
async fn an_unanswered_message_is_resent_once_with_the_same_message_id() {
    if !have_aiosmtpd() {
        return;
    }
    for db in databases().await {
        let k = db.kind;
        let dir = tempfile::tempdir().unwrap();
        let smtpd = Smtpd::start(Mode::CutOnce, common::free_port(), dir.path());
        let email = format!("{}, require_tls = false", to_from(smtpd.port));
        let app = TestApp::start(config(&db.url, &email)).await;
        post_alerts(&app, &disk_alert(3600)).await;
        let got = smtpd.wait_for(2).await;
        let (first, second) = (Mail::parse(&got[0]), Mail::parse(&got[1]));
        assert_eq!(
            first.header("message-id"),
            second.header("message-id"),
            "{k}: the resend is the same message, so mail systems can drop it"
        );
        assert_eq!(first.header("date"), second.header("date"), "{k}");
        let row = common::eventually(Duration::from_secs(10), || async {
            let r = rows(&app).await.first()?.clone();
            (r["state"] == "delivered").then_some(r)
        })
        .await
        .expect("delivered");
        assert_eq!(row["attempts"], 2, "{k}: {row}");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(smtpd.messages().len(), 2, "{k}: resent once, not again");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_server_without_starttls_is_refused_when_tls_is_required() {
    if !have_aiosmtpd() {
        return;
    }
    let db = common::sqlite_db();
    let dir = tempfile::tempdir().unwrap();
    let smtpd = Smtpd::start(Mode::Plain, common::free_port(), dir.path());
    // require_tls defaults to true.
    let app = TestApp::start(config(&db.url, &to_from(smtpd.port))).await;
    post_alerts(&app, &disk_alert(3600)).await;
    let row = common::eventually(Duration::from_secs(20), || async {
        let r = rows(&app).await.first()?.clone();
        (r["state"] == "failed").then_some(r)
    })
    .await
    .expect("failed row");
    assert!(
        row["last_error"]
            .as_str()
            .unwrap()
            .contains("does not offer STARTTLS"),
        "{row}"
    );
    assert!(smtpd.messages().is_empty(), "nothing sent in clear text");
    app.stop().await;
}

#[test]
fn check_config_names_the_email_keys() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wp.toml");
    std::fs::write(
        &file,
        r#"
[route]
receiver = "mail"
[[receivers]]
name = "mail"
email = { to = "ops@example.org", from = "not an address" }
"#,
    )
    .unwrap();
    let out = common::command(dir.path())
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("receivers[0].email.smarthost: missing"),
        "{err}"
    );
    assert!(
        err.contains("receivers[0].email.from: not an e-mail address"),
        "{err}"
    );
}

/// One receiver with all four kinds of target (Alertmanager's `*_configs` side by side):
/// a firing and a resolved notification reach the SMTP server, the Kafka broker, the
/// webhook and the Telegram chat, each once, each as its own outbox row.
#[tokio::test]
async fn one_receiver_delivers_to_email_kafka_webhook_and_telegram() {
    if !have_aiosmtpd() || !kafka_mock::available() {
        return;
    }
    for db in databases().await {
        let k = db.kind;
        let dir = tempfile::tempdir().unwrap();
        let smtpd = Smtpd::start(Mode::Plain, common::free_port(), dir.path());
        let mock = kafka_mock::KafkaMock::start("alerts");
        let telegram = fake_telegram::FakeTelegram::start("1:T").await;
        let (hook, hook_count) = common::workload::start_hook().await;
        let toml = format!(
            r#"
external_url = "https://wp.example"
[telegram]
bot_token = "1:T"
api_url = "{}"
chat_ids = [7]
[route]
receiver = "all"
group_by = ["alertname"]
group_wait = "200ms"
group_interval = "500ms"
[notify]
min_backoff = "200ms"
[[receivers]]
name = "all"
email = {{ to = "ops@example.org", from = "wp@example.org", smarthost = "127.0.0.1:{}", require_tls = false }}
kafka = {{ brokers = ["{}"], topic = "alerts" }}
webhook = {{ url = "{hook}" }}
telegram = {{ chat_ids = [7] }}
"#,
            telegram.url, smtpd.port, mock.addr
        );
        let app = TestApp::start(test_config_with(&db.url, &toml)).await;
        let (firing, resolved) = fire_and_resolve(&app, &smtpd).await;
        assert!(
            firing.header("subject").starts_with("[FIRING:1] DiskFull"),
            "{k}"
        );
        assert!(
            resolved
                .header("subject")
                .starts_with("[RESOLVED] DiskFull"),
            "{k}"
        );
        let records = mock.wait_for(2, Duration::from_secs(20)).await;
        let statuses: Vec<Value> = records
            .iter()
            .map(|r| serde_json::from_str::<Value>(&r.value).expect("JSON")["status"].clone())
            .collect();
        assert_eq!(statuses, [json!("firing"), json!("resolved")], "{k}");
        let told = common::eventually(Duration::from_secs(20), || async {
            let texts: Vec<String> = telegram
                .calls_of("sendmessage")
                .iter()
                .map(|c| c.text())
                .collect();
            (texts.len() >= 2).then_some(texts)
        })
        .await
        .unwrap_or_else(|| panic!("{k}: Telegram got {:?}", telegram.calls()));
        assert!(
            told[0].contains("FIRING") && told[1].contains("RESOLVED"),
            "{k}: {told:?}"
        );
        let hooked = common::eventually(Duration::from_secs(20), || async {
            (hook_count.load(std::sync::atomic::Ordering::SeqCst) >= 2).then_some(())
        })
        .await;
        assert!(hooked.is_some(), "{k}: the webhook got both");
        // Each peer has its message a moment before the sender records the verdict.
        let (kinds, body) = common::eventually(Duration::from_secs(10), || async {
            let (_, body) = app.get_json("/api/v1/notifications?receiver=all").await;
            let rows = body["notifications"].as_array()?;
            if rows.iter().any(|r| r["state"] == "pending") {
                return None;
            }
            let mut kinds: Vec<String> = rows
                .iter()
                .filter(|r| r["state"] == "delivered")
                .map(|r| r["kind"].as_str().unwrap_or_default().to_string())
                .collect();
            kinds.sort();
            Some((kinds, body))
        })
        .await
        .unwrap_or_else(|| panic!("{k}: rows still pending"));
        assert_eq!(
            kinds,
            [
                "email", "email", "kafka", "kafka", "telegram", "telegram", "webhook", "webhook"
            ],
            "{k}: one delivered row per target and notification: {body}"
        );
        assert_eq!(smtpd.messages().len(), 2, "{k}: nothing sent twice");
        app.stop().await;
    }
}
