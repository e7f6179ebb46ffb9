//! Shared test set-up: real databases (SQLite always, PostgreSQL from
//! `WATCHPOST_TEST_DATABASE_URL`), the app in-process on 127.0.0.1:0, the real binary,
//! and throwaway PostgreSQL clusters for tests that stop their database.
#![allow(
    dead_code,
    clippy::field_reassign_with_default,
    clippy::zombie_processes
)]

pub mod faults;
pub mod peers;
pub mod prom;
pub mod workload;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sqlx::Connection;
use watchpost::App;
use watchpost::config::{Config, Secret};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A database for one test: a fresh SQLite file or a fresh PostgreSQL database.
pub struct TestDb {
    /// `sqlite` or `postgres`, for assertion messages.
    pub kind: &'static str,
    /// The URL to give watchpost.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

/// Every database the suite runs against: SQLite, plus PostgreSQL when
/// `WATCHPOST_TEST_DATABASE_URL` is set (required when `CI=true`).
pub async fn databases() -> Vec<TestDb> {
    let mut dbs = vec![sqlite_db()];
    if let Some(db) = postgres_db().await {
        dbs.push(db);
    }
    dbs
}

/// A fresh SQLite database in a temporary folder.
pub fn sqlite_db() -> TestDb {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/watchpost.db", dir.path().display());
    TestDb {
        kind: "sqlite",
        url,
        _dir: Some(dir),
    }
}

/// A fresh PostgreSQL database on the test cluster, or `None` when there is no cluster
/// (a failure under `CI=true`).
pub async fn postgres_db() -> Option<TestDb> {
    let admin = match std::env::var("WATCHPOST_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "CI=true but WATCHPOST_TEST_DATABASE_URL is not set: run the tests with scripts/test.sh"
                );
            }
            eprintln!("WATCHPOST_TEST_DATABASE_URL unset: skipping PostgreSQL");
            return None;
        }
    };
    Some(create_pg_database(&admin).await)
}

/// Creates a uniquely named database on the cluster of `admin_url`; returns its URL.
pub async fn create_pg_database(admin_url: &str) -> TestDb {
    sqlx::any::install_default_drivers();
    let name = format!(
        "wp_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        rand_suffix()
    );
    let mut conn = sqlx::AnyConnection::connect(admin_url)
        .await
        .expect("connect to test PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let _ = conn.close().await;
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .unwrap_or(admin_url);
    TestDb {
        kind: "postgres",
        url: format!("{base}/{name}"),
        _dir: None,
    }
}

fn rand_suffix() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    t % 100_000
}

/// A config for tests: a free port, the given database, fast collection, no rule files.
#[allow(clippy::field_reassign_with_default)]
pub fn test_config(db_url: &str) -> Config {
    let mut c = Config {
        listen: "127.0.0.1:0".into(),
        database_url: Secret(db_url.into()),
        ..Config::default()
    };
    c.collect.interval = Duration::from_millis(200);
    // The PostgreSQL collector watches only what a test names (tests/postgres_collector.rs
    // covers the own database).
    c.postgres.monitor_own = false;
    c.database.connect_timeout = Duration::from_secs(5);
    c.rules.files = vec![];
    c
}

/// `toml` on top of [`test_config`]: its free port, database, fast collection, no rule
/// files and no PostgreSQL targets, whatever the TOML says of those.
pub fn test_config_with(db_url: &str, toml: &str) -> Config {
    let mut c = Config::from_toml(toml).expect("test config");
    let base = test_config(db_url);
    c.listen = base.listen;
    c.database_url = base.database_url;
    c.collect = base.collect;
    c.database = base.database;
    c.rules = base.rules;
    c.postgres = base.postgres;
    c
}

/// Static tokens for each role: `viewer-token-1` (vera), `operator-token-1` (otto),
/// `admin-token-1` (ada).
pub fn role_tokens() -> Vec<watchpost::config::TokenConfig> {
    use watchpost::config::{Role, TokenConfig};
    [
        ("viewer-token-1", Role::Viewer, "vera"),
        ("operator-token-1", Role::Operator, "otto"),
        ("admin-token-1", Role::Admin, "ada"),
    ]
    .into_iter()
    .map(|(token, role, name)| TokenConfig {
        token: Secret(token.into()),
        role,
        name: Some(name.into()),
    })
    .collect()
}

/// The app running in this process.
pub struct TestApp {
    /// The running service.
    pub app: App,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// A client without proxies.
    pub client: reqwest::Client,
}

impl TestApp {
    /// Starts the app with `config`.
    pub async fn start(config: Config) -> TestApp {
        init_logs();
        let app = App::start(config).await.expect("app starts");
        let base = format!("http://{}", app.local_addr());
        TestApp {
            app,
            base,
            client: client(),
        }
    }

    /// `base + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// GET returning status and JSON body (or `null`).
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self.client.get(self.url(path)).send().await.expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// GET returning status and text.
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let r = self.client.get(self.url(path)).send().await.expect("GET");
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }

    /// POST JSON returning status and JSON body (or `null`).
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let r = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Stops the app gracefully.
    pub async fn stop(self) {
        self.app.stop().await;
    }
}

/// An HTTP client that ignores proxy settings.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Logs of in-process apps go to the test output (shown for failing tests).
pub fn init_logs() {
    let _ = tracing_subscriber_init();
}

fn tracing_subscriber_init() -> Option<()> {
    watchpost::telemetry::init(&watchpost::config::LogConfig {
        format: Some(watchpost::config::LogFormat::Pretty),
        level: Some("warn,watchpost=info".into()),
    });
    Some(())
}

/// The built `watchpost` binary.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_watchpost"))
}

/// A `watchpost` command in `dir` with a clean `WATCHPOST_*` environment.
pub fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(binary());
    cmd.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("WATCHPOST_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("WATCHPOST_LOG__FORMAT", "json");
    cmd
}

/// A running `watchpost serve` child process.
pub struct Server {
    /// The child.
    pub child: Child,
    /// The address from the `listening on` log line.
    pub addr: SocketAddr,
    /// Log lines after start-up (stderr), as they arrive.
    pub logs: mpsc::Receiver<String>,
}

impl Server {
    /// Spawns `cmd serve` (with `--config`-less defaults unless set) and waits for
    /// `listening on ADDR`.
    #[allow(clippy::zombie_processes)] // `Server`'s Drop kills and waits for the child.
    pub fn spawn(mut cmd: Command) -> Server {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn watchpost");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = listening_addr(&line) {
                        return Server {
                            child,
                            addr,
                            logs: rx,
                        };
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("watchpost did not start; output:\n{}", seen.join("\n"));
                }
            }
        }
    }

    /// `http://ADDR`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends a signal to the child.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for exit, at most `timeout`; returns the exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address of a `listening on ADDR` log line.
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    let at = line.find("listening on ")?;
    line[at + "listening on ".len()..]
        .split(|c: char| c == '"' || c.is_whitespace())
        .next()?
        .parse()
        .ok()
}

/// A throwaway PostgreSQL cluster of our own, for tests that stop and start it.
pub struct PgCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Extra `-c name=value` settings of every start.
    settings: Vec<String>,
}

impl PgCluster {
    /// initdb + start on a free port; `None` when no PostgreSQL binaries are known
    /// (`WATCHPOST_TEST_PG_BIN`), which is a failure under `CI=true`.
    pub fn start() -> Option<PgCluster> {
        Self::start_with(&[])
    }

    /// [`PgCluster::start`] with `-c` settings (`"shared_preload_libraries=pg_stat_statements"`).
    pub fn start_with(settings: &[&str]) -> Option<PgCluster> {
        let mut c = Self::empty()?;
        c.settings = settings.iter().map(|s| s.to_string()).collect();
        c.pg(
            "initdb",
            &[
                "-D",
                &c.data(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        );
        c.start_server();
        Some(c)
    }

    /// A streaming replica of `primary` (`pg_basebackup -R`), started.
    pub fn replica_of(primary: &PgCluster) -> Option<PgCluster> {
        let c = Self::empty()?;
        c.pg(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                "postgres",
                "-D",
                &c.data(),
                "-R",
                "-X",
                "stream",
            ],
        );
        c.start_server();
        Some(c)
    }

    /// A data directory not initialised yet, and a free port.
    fn empty() -> Option<PgCluster> {
        let bin = match std::env::var("WATCHPOST_TEST_PG_BIN") {
            Ok(b) if !b.is_empty() => PathBuf::from(b),
            _ => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!(
                        "CI=true but WATCHPOST_TEST_PG_BIN is not set: run the tests with scripts/test.sh"
                    );
                }
                eprintln!("WATCHPOST_TEST_PG_BIN unset: skipping");
                return None;
            }
        };
        let dir = tempfile::Builder::new()
            .prefix("wp-pgc")
            .tempdir()
            .expect("tempdir");
        if is_root() {
            let ok = Command::new("chown")
                .arg("postgres")
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(ok.success());
        }
        let port = free_port();
        Some(PgCluster {
            bin,
            dir,
            port,
            settings: Vec::new(),
        })
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn pg(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.args(args).output().expect("run PostgreSQL tool");
        assert!(
            out.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts (or restarts) the server.
    pub fn start_server(&self) {
        let mut opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        for s in &self.settings {
            opts.push_str(&format!(" -c {s}"));
        }
        let log = self.dir.path().join("log").display().to_string();
        self.pg(
            "pg_ctl",
            &["-D", &self.data(), "-l", &log, "-w", "-o", &opts, "start"],
        );
    }

    /// Stops the server immediately (connections are cut).
    pub fn stop_server(&self) {
        self.pg(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    /// The admin URL.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let exe = self.bin.join("pg_ctl");
        let data = self.data();
        let args = ["-D", data.as_str(), "-m", "immediate", "stop"];
        let _ = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&exe)
                .args(args)
                .output()
        } else {
            Command::new(&exe).args(args).output()
        };
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Polls `f` until it returns `Some`, at most `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
