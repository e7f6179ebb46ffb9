//! Helpers of the fault-injection suite (`tests/faults_*.rs`): the real binary with a
//! config file, signals and restarts, a recording webhook receiver, counting what the
//! fakes received, the outbox and the metrics as the API shows them, a write lock held
//! on a SQLite file by another connection, and running the SQLite and PostgreSQL
//! variants of a scenario side by side.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};
use sqlx::Connection;

use super::{Server, command};

/// Log lines of a server kept for the failure output.
const LOG_TAIL: usize = 200;

/// Where notifications go.
#[derive(Debug, Clone)]
pub enum Sink {
    /// A (fake) Telegram Bot API: `api_url`, `bot_token`, the chats of the receiver.
    Telegram {
        /// `telegram.api_url`.
        api_url: String,
        /// `telegram.bot_token`.
        token: String,
        /// The receiver's chats.
        chats: Vec<i64>,
    },
    /// A webhook receiver at this URL.
    Webhook(String),
}

/// A `watchpost serve` config file: one receiver named `ops` behind the root route.
#[derive(Debug, Clone)]
pub struct Conf {
    /// `database_url`.
    pub db_url: String,
    /// The receiver.
    pub sink: Sink,
    /// `route.group_by`.
    pub group_by: Vec<String>,
    /// `route.group_wait`.
    pub group_wait: String,
    /// `route.group_interval`.
    pub group_interval: String,
    /// `route.repeat_interval`.
    pub repeat_interval: String,
    /// `shutdown_timeout`, when set.
    pub shutdown_timeout: Option<String>,
    /// `[notify]` keys (`("ambiguous", "\"drop\"")`, values in TOML syntax); no
    /// section when empty.
    pub notify: Vec<(String, String)>,
    /// More TOML tables, appended as they are.
    pub extra: String,
    /// `cluster.node_id` (fixed across restarts: claims of an earlier run of the same
    /// node are taken over at once, not after their lease).
    pub node_id: String,
    /// More `[cluster]` keys (values in TOML syntax).
    pub cluster: Vec<(String, String)>,
    /// More `[telegram]` keys (values in TOML syntax), with a Telegram sink.
    pub telegram: Vec<(String, String)>,
    /// More `[alerts]` keys (values in TOML syntax).
    pub alerts: Vec<(String, String)>,
    /// `rules.files` (none by default), evaluated every second.
    pub rules: Vec<String>,
    /// `listen` (default `127.0.0.1:0`; fixed when clients must find a restarted server).
    pub listen: Option<String>,
}

impl Conf {
    /// Alerts to the fake Telegram `api_url`/`token`, chats `chats`; one group per
    /// alertname, `group_wait` 1s, `group_interval` 2s.
    pub fn telegram(db_url: &str, api_url: &str, token: &str, chats: &[i64]) -> Conf {
        Conf::new(
            db_url,
            Sink::Telegram {
                api_url: api_url.into(),
                token: token.into(),
                chats: chats.to_vec(),
            },
        )
    }

    /// Alerts to a webhook; one group per alertname, `group_wait` 1s, `group_interval` 2s.
    pub fn webhook(db_url: &str, url: &str) -> Conf {
        Conf::new(db_url, Sink::Webhook(url.into()))
    }

    fn new(db_url: &str, sink: Sink) -> Conf {
        Conf {
            db_url: db_url.into(),
            sink,
            group_by: vec!["alertname".into()],
            group_wait: "1s".into(),
            group_interval: "2s".into(),
            repeat_interval: "1h".into(),
            shutdown_timeout: None,
            notify: Vec::new(),
            extra: String::new(),
            node_id: "fault-test".into(),
            cluster: Vec::new(),
            telegram: Vec::new(),
            alerts: Vec::new(),
            rules: Vec::new(),
            listen: None,
        }
    }

    /// Sets a `[notify]` key (`value` in TOML syntax, e.g. `"\"2s\""`).
    pub fn notify(mut self, key: &str, value: &str) -> Conf {
        self.notify.push((key.into(), value.into()));
        self
    }

    /// The TOML text.
    pub fn toml(&self) -> String {
        let q = |s: &str| Value::String(s.to_string()).to_string();
        let mut t = String::new();
        let listen = self.listen.as_deref().unwrap_or("127.0.0.1:0");
        t.push_str(&format!("listen = {}\n", q(listen)));
        t.push_str(&format!("database_url = {}\n", q(&self.db_url)));
        if let Some(s) = &self.shutdown_timeout {
            t.push_str(&format!("shutdown_timeout = {}\n", q(s)));
        }
        t.push_str(&format!("\n[cluster]\nnode_id = {}\n", q(&self.node_id)));
        for (k, v) in &self.cluster {
            t.push_str(&format!("{k} = {v}\n"));
        }
        let files: Vec<String> = self.rules.iter().map(|f| q(f)).collect();
        t.push_str(&format!(
            "\n[rules]\nfiles = [{}]\nevaluation_interval = \"1s\"\n",
            files.join(", ")
        ));
        t.push_str("\n[alerts]\nrate_limit_per_second = 0\n");
        for (k, v) in &self.alerts {
            t.push_str(&format!("{k} = {v}\n"));
        }
        t.push_str("\n[log]\nlevel = \"warn,watchpost=info\"\n");
        let receiver = match &self.sink {
            Sink::Telegram {
                api_url,
                token,
                chats,
            } => {
                t.push_str(&format!(
                    "\n[telegram]\nbot_token = {}\napi_url = {}\nchat_ids = {chats:?}\n",
                    q(token),
                    q(api_url)
                ));
                for (k, v) in &self.telegram {
                    t.push_str(&format!("{k} = {v}\n"));
                }
                format!("telegram = {{ chat_ids = {chats:?} }}")
            }
            Sink::Webhook(url) => format!("webhook = {{ url = {} }}", q(url)),
        };
        let group_by: Vec<String> = self.group_by.iter().map(|g| q(g)).collect();
        t.push_str(&format!(
            "\n[route]\nreceiver = \"ops\"\ngroup_by = [{}]\ngroup_wait = {}\ngroup_interval = {}\nrepeat_interval = {}\n",
            group_by.join(", "),
            q(&self.group_wait),
            q(&self.group_interval),
            q(&self.repeat_interval)
        ));
        t.push_str(&format!("\n[[receivers]]\nname = \"ops\"\n{receiver}\n"));
        if !self.notify.is_empty() {
            t.push_str("\n[notify]\n");
            for (k, v) in &self.notify {
                t.push_str(&format!("{k} = {v}\n"));
            }
        }
        t.push_str(&self.extra);
        t
    }
}

/// A `watchpost serve --config FILE` that can be signalled and started again with the
/// same working directory (its receipt journal lives there) and config.
pub struct Proc {
    /// `sqlite`/`postgres` and the scenario, for messages.
    pub tag: String,
    /// The working directory.
    pub dir: PathBuf,
    /// The config file.
    pub config: PathBuf,
    /// The running server, if any (in a mutex: a `Server` is not `Sync`, and the
    /// scenarios run in spawned tasks).
    server: Mutex<Option<Server>>,
    /// `http://ADDR` of the running server.
    pub base: String,
    logs: Vec<String>,
}

impl Proc {
    /// Writes `conf` to `dir/watchpost.toml` and starts the binary.
    pub async fn start(tag: &str, dir: &Path, conf: &Conf) -> Proc {
        let config = dir.join("watchpost.toml");
        std::fs::write(&config, conf.toml()).expect("write config");
        let mut p = Proc {
            tag: tag.to_string(),
            dir: dir.to_path_buf(),
            config,
            server: Mutex::new(None),
            base: String::new(),
            logs: Vec::new(),
        };
        p.restart().await;
        p
    }

    /// Starts the binary again (after it exited or was killed).
    pub async fn restart(&mut self) {
        if let Some(s) = self.take_server() {
            self.collect_logs_of(&s);
        }
        let mut cmd = command(&self.dir);
        cmd.arg("serve").arg("--config").arg(&self.config);
        let server = tokio::task::spawn_blocking(move || Server::spawn(cmd))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        self.base = server.base();
        self.logs.push(format!("--- started on {}", server.addr));
        *self.server.get_mut().unwrap() = Some(server);
    }

    fn take_server(&mut self) -> Option<Server> {
        self.server.get_mut().unwrap().take()
    }

    fn server(&mut self) -> &mut Server {
        self.server
            .get_mut()
            .unwrap()
            .as_mut()
            .expect("the server is running")
    }

    /// Sends `sig` (`TERM`, `KILL`, …).
    pub fn signal(&mut self, sig: &str) {
        self.server().signal(sig);
    }

    /// Waits for the exit, at most `timeout`; the exit code (`None`: killed by a signal,
    /// or still running at the deadline, then killed).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let code = loop {
            match self.server().child.try_wait() {
                Ok(Some(status)) => break status.code(),
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ => {
                    let _ = self.server().child.kill();
                    let _ = self.server().child.wait();
                    break None;
                }
            }
        };
        if let Some(s) = self.take_server() {
            self.collect_logs_of(&s);
        }
        code
    }

    /// SIGTERM: asserts exit code 0 within `within`; returns how long it took.
    pub async fn terminate(&mut self, within: Duration) -> Duration {
        let started = Instant::now();
        self.signal("TERM");
        let code = self.wait_exit(within).await;
        assert_eq!(
            code,
            Some(0),
            "{}: SIGTERM must exit 0 within {within:?} (None = still running then)",
            self.tag
        );
        started.elapsed()
    }

    /// kill -9, and waits for the exit.
    pub async fn kill9(&mut self) {
        self.signal("KILL");
        let _ = self.wait_exit(Duration::from_secs(10)).await;
    }

    fn collect_logs_of(&mut self, s: &Server) {
        self.logs.extend(s.logs.try_iter());
        let n = self.logs.len();
        if n > LOG_TAIL {
            self.logs.drain(..n - LOG_TAIL);
        }
    }

    /// The log tail (shown with a failing test).
    pub fn log_tail(&mut self) -> String {
        if let Some(s) = self.take_server() {
            self.collect_logs_of(&s);
            *self.server.get_mut().unwrap() = Some(s);
        }
        self.logs.join("\n")
    }

    /// `base + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// POSTs one generic alert named `token` (alertname and message), firing or resolved.
    pub async fn post_alert(&self, token: &str, resolved: bool) -> Posted {
        post_alert(&self.base, token, resolved).await
    }

    /// POSTs an alert and asserts 202; returns its id.
    pub async fn fire(&self, token: &str) -> i64 {
        let p = self.post_alert(token, false).await;
        p.id.unwrap_or_else(|| panic!("{}: POST {token}: expected 202, got {p:?}", self.tag))
    }

    /// POSTs the resolve of `token` and asserts 202.
    pub async fn resolve(&self, token: &str) -> i64 {
        let p = self.post_alert(token, true).await;
        p.id.unwrap_or_else(|| {
            panic!(
                "{}: POST resolve {token}: expected 202, got {p:?}",
                self.tag
            )
        })
    }

    /// GET returning status and JSON (or `null`); `None` when the request failed.
    pub async fn get_json(&self, path: &str) -> Option<(u16, Value)> {
        get_json(&self.url(path)).await
    }

    /// The outbox rows of alert `id` (`GET /api/v1/notifications?alert_id=`).
    pub async fn outbox_of(&self, id: i64) -> Vec<Value> {
        self.try_outbox_of(id)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.tag))
    }

    async fn try_outbox_of(&self, id: i64) -> Result<Vec<Value>, String> {
        match self
            .get_json(&format!("/api/v1/notifications?alert_id={id}&limit=1000"))
            .await
        {
            Some((200, v)) => Ok(v["notifications"].as_array().cloned().unwrap_or_default()),
            other => Err(format!("GET /api/v1/notifications: {other:?}")),
        }
    }

    /// Every outbox row, newest first.
    pub async fn outbox(&self) -> Vec<Value> {
        let mut rows = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/notifications?limit=1000&cursor={c}"),
                None => "/api/v1/notifications?limit=1000".to_string(),
            };
            let v = match self.get_json(&path).await {
                Some((200, v)) => v,
                other => panic!("{}: GET /api/v1/notifications: {other:?}", self.tag),
            };
            rows.extend(v["notifications"].as_array().cloned().unwrap_or_default());
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return rows,
            }
        }
    }

    /// Waits (at most `timeout`) until every outbox row of alert `id` is in `state`
    /// (and there is at least one); returns the rows.
    pub async fn wait_outbox_state(&self, id: i64, state: &str, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            // The API may answer 503 while the database is coming back.
            let rows = self.try_outbox_of(id).await;
            if let Ok(rows) = &rows
                && !rows.is_empty()
                && rows.iter().all(|r| r["state"] == state)
            {
                return rows.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{}: outbox rows of alert {id} not all {state} within {timeout:?}: {rows:#?}",
                self.tag
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `/metrics`, summed over the samples of `name` that carry every label in `labels`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = reqwest_client()
            .get(self.url("/metrics"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text");
        metric_sum(&text, name, labels)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let tail = self.log_tail();
            eprintln!(
                "===== {}: last log lines of watchpost =====\n{tail}",
                self.tag
            );
        }
    }
}

/// Sums the samples of `name` carrying every `labels` pair in Prometheus text.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .fold(0.0, |a, b| a + b)
}

/// An HTTP client without proxies and with the suite's 15 s client timeout.
pub fn reqwest_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client")
}

/// GET returning status and JSON (or `null`); `None` when the request failed.
pub async fn get_json(url: &str) -> Option<(u16, Value)> {
    let r = reqwest_client().get(url).send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.unwrap_or(Value::Null)))
}

/// The answer to one ingest request.
#[derive(Debug, Clone)]
pub struct Posted {
    /// The alert's token.
    pub token: String,
    /// The status, or why there was none (timeout, connection error).
    pub status: Result<u16, String>,
    /// The id when 202.
    pub id: Option<i64>,
    /// The `Retry-After` header.
    pub retry_after: Option<String>,
    /// The body.
    pub body: String,
    /// When it was sent.
    pub at: Instant,
    /// How long it took.
    pub took: Duration,
}

/// POSTs `{"message": "<token> …", "labels": {"alertname": "<token>"}}` (with `ends_at`
/// a minute ago when `resolved`) to `base/api/v1/alerts`, with a 15 s client timeout.
pub async fn post_alert(base: &str, token: &str, resolved: bool) -> Posted {
    let mut body = json!({
        "message": format!("{token} fault test alert"),
        "severity": "critical",
        "labels": {"alertname": token},
    });
    if resolved {
        body["ends_at"] = json!(
            (chrono::Utc::now() - chrono::Duration::seconds(60))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    let started = Instant::now();
    let r = reqwest_client()
        .post(format!("{base}/api/v1/alerts"))
        .json(&body)
        .send()
        .await;
    let mut posted = Posted {
        token: token.to_string(),
        status: Err(String::new()),
        id: None,
        retry_after: None,
        body: String::new(),
        at: started,
        took: Duration::ZERO,
    };
    match r {
        Ok(r) => {
            posted.status = Ok(r.status().as_u16());
            posted.retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            posted.body = r.text().await.unwrap_or_else(|e| format!("<body: {e}>"));
            if posted.status == Ok(202) {
                posted.id = serde_json::from_str::<Value>(&posted.body)
                    .ok()
                    .and_then(|v| v["ids"][0].as_i64());
            }
        }
        Err(e) => posted.status = Err(format!("{e:?}")),
    }
    posted.took = started.elapsed();
    posted
}

/// A webhook receiver answering 200 that records every body.
pub struct FakeHook {
    /// `http://127.0.0.1:PORT/hook`.
    pub url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeHook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hook(State(bodies): State<Arc<Mutex<Vec<Value>>>>, body: Bytes) -> StatusCode {
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    bodies.lock().unwrap().push(v);
    StatusCode::OK
}

impl FakeHook {
    /// Starts it on a free port.
    pub async fn start() -> FakeHook {
        let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(bodies.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind hook");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeHook { url, bodies, task }
    }

    /// Every payload received.
    pub fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }

    /// Per alertname: how many notifications listed it with `status` (`firing`,
    /// `resolved`).
    pub fn counts(&self, status: &str) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for b in self.bodies() {
            for a in b["alerts"].as_array().into_iter().flatten() {
                if a["status"] == status
                    && let Some(name) = a["labels"]["alertname"].as_str()
                {
                    *out.entry(name.to_string()).or_default() += 1;
                }
            }
        }
        out
    }
}

/// The texts that mention `needle` (e.g. the texts of a fake Telegram's delivered
/// sendMessage calls).
pub fn mentioning(texts: impl IntoIterator<Item = String>, needle: &str) -> Vec<String> {
    texts.into_iter().filter(|t| t.contains(needle)).collect()
}

/// How many of `texts` are firing notifications.
pub fn firing(texts: &[String]) -> usize {
    texts.iter().filter(|t| t.contains("FIRING")).count()
}

/// How many of `texts` are resolved notifications.
pub fn resolved(texts: &[String]) -> usize {
    texts.iter().filter(|t| t.contains("RESOLVED")).count()
}

/// Waits until `f()` holds, at most `timeout`; panics with `what` and the last value.
pub async fn wait_for<T: std::fmt::Debug>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> (bool, T),
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let (ok, v) = f();
        if ok {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {timeout:?}; last: {v:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The SQLite file of a `sqlite://PATH` URL.
pub fn sqlite_path(url: &str) -> PathBuf {
    PathBuf::from(
        url.strip_prefix("sqlite://")
            .expect("a sqlite:// URL")
            .split('?')
            .next()
            .unwrap_or_default(),
    )
}

/// A write lock on a SQLite database held by another connection (`BEGIN IMMEDIATE`):
/// every writer of that file gets `SQLITE_BUSY` after its busy timeout; readers (WAL)
/// still read. Released by [`SqliteWriteLock::release`] (or when dropped).
pub struct SqliteWriteLock {
    conn: Option<sqlx::SqliteConnection>,
}

impl SqliteWriteLock {
    /// Takes the lock (waiting up to the connection's busy timeout for a writer in
    /// progress).
    pub async fn take(url: &str) -> SqliteWriteLock {
        let path = sqlite_path(url);
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .busy_timeout(Duration::from_secs(10));
        let mut conn = sqlx::SqliteConnection::connect_with(&opts)
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut conn)
            .await
            .expect("BEGIN IMMEDIATE");
        SqliteWriteLock { conn: Some(conn) }
    }

    /// Commits (nothing written) and closes the connection.
    pub async fn release(mut self) {
        if let Some(mut conn) = self.conn.take() {
            sqlx::raw_sql("COMMIT")
                .execute(&mut conn)
                .await
                .expect("COMMIT");
            let _ = conn.close().await;
        }
    }
}

/// Runs scenario `f` on every test database (SQLite, and PostgreSQL when configured)
/// side by side, as [`run_variants`].
pub async fn each_database<F, Fut>(f: F)
where
    F: Fn(super::TestDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let variants = super::databases()
        .await
        .into_iter()
        .map(|db| (db.kind.to_string(), f(db)))
        .collect();
    run_variants(variants).await;
}

/// Runs the variants of a scenario concurrently, each in its own task; panics after all
/// finished, naming every variant that failed and why.
pub async fn run_variants<F>(variants: Vec<(String, F)>)
where
    F: Future<Output = ()> + Send + 'static,
{
    let handles: Vec<(String, tokio::task::JoinHandle<()>)> = variants
        .into_iter()
        .map(|(name, f)| (name, tokio::spawn(f)))
        .collect();
    let mut failures = Vec::new();
    for (name, h) in handles {
        if let Err(e) = h.await {
            let msg = if e.is_panic() {
                let p = e.into_panic();
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into())
            } else {
                e.to_string()
            };
            failures.push(format!("[{name}] {msg}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} variant(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A unique token for alert names: `prefix` + a random suffix.
pub fn token(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}{:x}", n % 0xffff_ffff)
}

/// Stops the PostgreSQL server of `cluster` (immediately: connections are cut).
pub async fn pg_stop(cluster: &Arc<super::PgCluster>) {
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.stop_server())
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
}

/// Starts the PostgreSQL server of `cluster` again and checks that a new connection to
/// `db_url` works (so a failure after this is watchpost's, not the cluster's).
pub async fn pg_start(cluster: &Arc<super::PgCluster>, db_url: &str) {
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.start_server())
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(db_url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is back but the test cannot connect: {e}"));
    sqlx::query("SELECT 1")
        .execute(&mut conn)
        .await
        .expect("SELECT 1 on the restarted PostgreSQL");
    let _ = conn.close().await;
}
