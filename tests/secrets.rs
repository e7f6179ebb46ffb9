//! Secrets stay secret, against the real binary: webhook URLs (secret paths,
//! `user:pass@`, query tokens), the Telegram bot token and database passwords never
//! reach the log (stdout and stderr), the stored `last_error`, or what a viewer reads;
//! an admin still sees each webhook's full URL.

mod common;

use std::fs::File;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use common::{command, databases, eventually, free_port, listening_addr};
use serde_json::{Value, json};

const VIEWER: &str = "viewer-token-5f2a";
const ADMIN: &str = "admin-token-9c4e";

/// The receiver that answers: its path and its userinfo password are secrets.
const UP_PATH: &str = "/services/T0UPSECRET/B0UPSECRET/UpPathToken7Q";
const UP_PASS: &str = "UpHookPass9x";
/// The receiver nobody listens on: path, password and query token.
const DOWN_PATH_TOKEN: &str = "DownPathToken3k";
const DOWN_PASS: &str = "DownHookPass4z";
const DOWN_QUERY_TOKEN: &str = "DownQueryToken5m";
/// The bot token; the Bot API "proxy" echoes it in its answers (teloxide takes it out of
/// its own errors' URLs, not out of an answer).
const BOT_TOKEN: &str = "123456789:TgBotTokenSecret8w";
/// Database passwords: in the userinfo and as a query parameter.
const DB_PASS: &str = "DbUserinfoPw6v";
const DB_QUERY_PASS: &str = "DbQueryPw2r";

/// Every secret of a run; none may appear in the log or in what a viewer reads.
fn secrets() -> Vec<&'static str> {
    vec![
        "T0UPSECRET",
        "B0UPSECRET",
        "UpPathToken7Q",
        UP_PASS,
        DOWN_PATH_TOKEN,
        DOWN_PASS,
        DOWN_QUERY_TOKEN,
        "TgBotTokenSecret8w",
        DB_PASS,
        DB_QUERY_PASS,
    ]
}

/// Panics naming every secret `text` contains.
fn assert_no_secret(what: &str, text: &str) {
    let leaked: Vec<&str> = secrets().into_iter().filter(|s| text.contains(s)).collect();
    assert!(leaked.is_empty(), "{what} leaks {leaked:?}:\n{text}");
}

/// A webhook receiver answering 200 to any path; the paths it was called on.
async fn start_hook() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    async fn receive(State(seen): State<Arc<Mutex<Vec<String>>>>, uri: Uri) -> StatusCode {
        if let Ok(mut s) = seen.lock() {
            s.push(uri.path().to_string());
        }
        StatusCode::OK
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new().fallback(receive).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

/// A stand-in for a proxy in front of the Bot API that answers everything with a 404
/// naming the path, so the bot token comes back in the answer.
async fn start_echo() -> SocketAddr {
    async fn echo(uri: Uri) -> (StatusCode, String) {
        (StatusCode::NOT_FOUND, format!("Cannot POST {}", uri.path()))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, Router::new().fallback(echo)).await });
    addr
}

/// The database URL with both passwords added (PostgreSQL with trust authentication
/// ignores them); `None` when the URL brings its own password (then it is used as is).
fn with_passwords(db_url: &str) -> Option<String> {
    let mut u = url::Url::parse(db_url).ok()?;
    if u.password().is_some() {
        return None;
    }
    u.set_password(Some(DB_PASS)).ok()?;
    u.query_pairs_mut().append_pair("password", DB_QUERY_PASS);
    Some(u.to_string())
}

struct Receivers {
    up: String,
    down: String,
    telegram_api: String,
}

fn config_toml(db_url: &str, r: &Receivers) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
database_url = "{db_url}"
[collect]
interval = "200ms"
[rules]
files = []
[log]
level = "debug"
[notify]
min_backoff = "200ms"
max_backoff = "1s"
[telegram]
bot_token = "{BOT_TOKEN}"
api_url = "{api}"
[[auth.tokens]]
token = "{VIEWER}"
role = "viewer"
[[auth.tokens]]
token = "{ADMIN}"
role = "admin"
[route]
receiver = "up"
group_by = ["alertname"]
group_wait = "100ms"
[[route.routes]]
matchers = ["severity=\"critical\""]
receiver = "up"
continue = true
[[route.routes]]
matchers = ["severity=\"critical\""]
receiver = "down"
continue = true
[[route.routes]]
matchers = ["severity=\"critical\""]
receiver = "tg"
[[receivers]]
name = "up"
webhook = {{ url = "{up}" }}
[[receivers]]
name = "down"
webhook = {{ url = "{down}" }}
[[receivers]]
name = "tg"
telegram = {{ chat_ids = [42] }}
"#,
        api = r.telegram_api,
        up = r.up,
        down = r.down,
    )
}

/// `watchpost serve` with stdout and stderr both going to `log`; killed on drop.
struct Serve {
    child: Child,
    addr: SocketAddr,
}

impl Serve {
    fn start(mut cmd: Command, log: &Path) -> Serve {
        let out = File::create(log).expect("log file");
        let err = out.try_clone().expect("log file");
        cmd.stdout(Stdio::from(out)).stderr(Stdio::from(err));
        let child = cmd.spawn().expect("spawn watchpost");
        let mut serve = Serve {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if let Some(addr) = text.lines().find_map(listening_addr) {
                serve.addr = addr;
                return serve;
            }
            if Instant::now() > deadline || matches!(serve.child.try_wait(), Ok(Some(_))) {
                panic!("watchpost did not start:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits for the exit (so the log is complete).
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `path` with `token`: the body as text (asserted 200) and as JSON.
async fn get(base: &str, path: &str, token: &str) -> (String, Value) {
    let r = common::client()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    assert_eq!(status, 200, "GET {path}: {text}");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (text, json)
}

/// The notifications of receiver `name` in a `/api/v1/notifications` answer.
fn rows<'a>(list: &'a Value, name: &str) -> Vec<&'a Value> {
    list["notifications"]
        .as_array()
        .map(|a| a.iter().filter(|n| n["receiver"] == name).collect())
        .unwrap_or_default()
}

/// Whether the admin view shows what the test needs: the working receiver delivered,
/// the dead webhook and Telegram failed at least once with a `last_error`.
fn settled(list: &Value) -> bool {
    let delivered = rows(list, "up").iter().any(|n| n["state"] == "delivered");
    let failed = |name| {
        rows(list, name)
            .iter()
            .any(|n| n["last_error"].as_str().is_some_and(|e| !e.is_empty()))
    };
    delivered && failed("down") && failed("tg")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_urls_and_tokens_stay_out_of_logs_and_viewer_output() {
    for db in databases().await {
        let db_url = if db.kind == "postgres" {
            with_passwords(&db.url).unwrap_or_else(|| {
                eprintln!("postgres: the test URL has its own password; adding none");
                db.url.clone()
            })
        } else {
            db.url.clone()
        };
        run_notifications(db.kind, &db_url).await;
    }
}

async fn run_notifications(kind: &str, db_url: &str) {
    eprintln!("{kind}: notifications through the real binary");
    let (hook, seen) = start_hook().await;
    let dead = free_port();
    let receivers = Receivers {
        up: format!("http://hookuser:{UP_PASS}@{hook}{UP_PATH}"),
        down: format!(
            "http://downuser:{DOWN_PASS}@127.0.0.1:{dead}/hooks/{DOWN_PATH_TOKEN}?token={DOWN_QUERY_TOKEN}"
        ),
        telegram_api: format!("http://{}/tgproxy", start_echo().await),
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wp.toml");
    std::fs::write(&file, config_toml(db_url, &receivers)).unwrap();
    let log = dir.path().join("watchpost.log");
    let mut cmd = command(dir.path());
    cmd.arg("serve").arg("--config").arg(&file);
    let serve = Serve::start(cmd, &log);
    let base = format!("http://{}", serve.addr);

    let r = common::client()
        .post(format!("{base}/api/v1/alerts"))
        .bearer_auth(ADMIN)
        .json(&json!({
            "message": "disk full on db1",
            "severity": "critical",
            "labels": {"alertname": "DiskFull", "instance": "db1"},
        }))
        .send()
        .await
        .expect("POST alert");
    assert_eq!(r.status().as_u16(), 202, "{kind}");
    let accepted: Value = r.json().await.unwrap_or(Value::Null);
    let alert_id = accepted["ids"][0].as_i64().expect("alert id");

    let admin = eventually(Duration::from_secs(30), || async {
        let (_, list) = get(&base, "/api/v1/notifications", ADMIN).await;
        settled(&list).then_some(list)
    })
    .await
    .unwrap_or_else(|| panic!("{kind}: notifications did not settle"));
    assert!(
        seen.lock().unwrap().iter().any(|p| p == UP_PATH),
        "{kind}: the webhook was called on its path"
    );

    // An admin sees the full URLs; last_error is stored redacted even for admins.
    let admin_text = admin.to_string();
    assert!(
        admin_text.contains(&format!("webhook:{}", receivers.up)),
        "{kind}: admin sees the full URL: {admin_text}"
    );
    assert!(
        admin_text.contains(&format!("webhook:{}", receivers.down)),
        "{kind}: {admin_text}"
    );
    for name in ["down", "tg"] {
        for n in rows(&admin, name) {
            assert_no_secret(
                &format!("{kind}: stored last_error"),
                &n["last_error"].to_string(),
            );
        }
    }

    // A viewer sees scheme://host/… only, in every field.
    let (viewer_text, viewer) = get(&base, "/api/v1/notifications", VIEWER).await;
    assert_no_secret(&format!("{kind}: viewer notifications"), &viewer_text);
    assert!(!viewer_text.contains("hookuser"), "{kind}: {viewer_text}");
    let targets: Vec<&str> = viewer["notifications"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["target"].as_str())
        .collect();
    assert!(
        targets.contains(&format!("webhook:http://{hook}/…").as_str()),
        "{kind}: {targets:?}"
    );
    assert!(
        targets.contains(&format!("webhook:http://127.0.0.1:{dead}/…").as_str()),
        "{kind}: {targets:?}"
    );
    let down_error = rows(&viewer, "down")
        .first()
        .and_then(|n| n["last_error"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(
        down_error.contains(&format!("127.0.0.1:{dead}")),
        "{kind}: last_error still names the endpoint: {down_error}"
    );
    let tg_error = rows(&viewer, "tg")
        .first()
        .and_then(|n| n["last_error"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(
        tg_error.contains("Cannot POST /tgproxy/bot<redacted>/"),
        "{kind}: the echoed path is kept, without the token: {tg_error}"
    );
    // The alert's `notified` events, the cluster and readiness views.
    for path in [
        format!("/api/v1/alerts/{alert_id}"),
        "/api/v1/cluster".to_string(),
        "/ready".to_string(),
    ] {
        let (text, _) = get(&base, &path, VIEWER).await;
        assert_no_secret(&format!("{kind}: viewer {path}"), &text);
    }

    serve.stop();
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert_no_secret(&format!("{kind}: the log"), &logged);
    assert!(!logged.contains("hookuser:"), "{kind}: userinfo in the log");
    // The log did record the deliveries and failures (else the check above is empty).
    assert!(
        logged.contains(&format!("webhook:http://{hook}/…")),
        "{kind}: delivery logged with the endpoint:\n{logged}"
    );
    assert!(
        logged.contains("getUpdates failed") && logged.contains("Cannot POST /tgproxy/bot"),
        "{kind}: the bot's failures are logged with the echoed path:\n{logged}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_passwords_stay_out_of_the_log_when_it_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "postgres://wp:{DB_PASS}@127.0.0.1:{}/wp?sslmode=disable&password={DB_QUERY_PASS}",
        free_port()
    );
    let out = command(dir.path())
        .arg("serve")
        .env("WATCHPOST_LISTEN", "127.0.0.1:0")
        .env("WATCHPOST_DATABASE_URL", &url)
        // One attempt waits 5 s for the pool: this makes one retry.
        .env("WATCHPOST_DATABASE__CONNECT_TIMEOUT", "6s")
        .output()
        .expect("run watchpost");
    let logged = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(2), "{logged}");
    assert!(
        logged.contains("database not reachable yet"),
        "the retries are logged:\n{logged}"
    );
    assert!(
        logged.contains("wp:<redacted>@127.0.0.1") && logged.contains("password=<redacted>"),
        "the URL is shown redacted:\n{logged}"
    );
    assert_no_secret("the log", &logged);
}

#[test]
fn check_config_prints_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wp.toml");
    let receivers = Receivers {
        up: format!("https://hookuser:{UP_PASS}@hooks.example{UP_PATH}"),
        down: format!(
            "https://downuser:{DOWN_PASS}@[::1]:9443/hooks/{DOWN_PATH_TOKEN}?token={DOWN_QUERY_TOKEN}"
        ),
        telegram_api: "https://api.telegram.org".into(),
    };
    let db_url = format!("postgres://wp:{DB_PASS}@db.example:5432/wp?password={DB_QUERY_PASS}");
    std::fs::write(&file, config_toml(&db_url, &receivers)).unwrap();
    let out = command(dir.path())
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .expect("run watchpost");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_secret("check-config", &printed);
    for shown in [
        "postgres://wp:<redacted>@db.example:5432/wp?password=<redacted>",
        "https://hooks.example/…",
        "https://[::1]:9443/…",
    ] {
        assert!(printed.contains(shown), "{shown} missing:\n{printed}");
    }

    // A key=value connection string is refused, its password not repeated.
    let out = command(dir.path())
        .arg("check-config")
        .env(
            "WATCHPOST_DATABASE_URL",
            format!("host=db password={DB_PASS}"),
        )
        .output()
        .expect("run watchpost");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("database_url") && err.contains("password=<redacted>"),
        "{err}"
    );
    assert_no_secret("the config error", &err);
}
