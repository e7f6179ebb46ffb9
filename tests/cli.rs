//! The real binary: CLI, configuration precedence, exit codes, migrations, signals.

mod common;

use std::time::Duration;

use common::{Server, command};

fn run(cmd: &mut std::process::Command) -> (i32, String, String) {
    let out = cmd.output().expect("run watchpost");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_and_help() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(command(dir.path()).arg("--version"));
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        format!("watchpost {}", env!("CARGO_PKG_VERSION"))
    );
    let (code, out, _) = run(command(dir.path()).arg("--help"));
    assert_eq!(code, 0);
    for sub in ["serve", "check-config", "migrate"] {
        assert!(out.contains(sub), "--help lacks {sub}:\n{out}");
    }
}

#[test]
fn config_precedence_is_defaults_then_file_then_env() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wp.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:9999\"\n[collect]\ninterval = \"3s\"\n[rules]\nevaluation_interval = \"7s\"\n",
    )
    .unwrap();
    let (code, out, err) = run(command(dir.path())
        .args(["check-config", "--config"])
        .arg(&file)
        .env("WATCHPOST_RULES__EVALUATION_INTERVAL", "9s"));
    assert_eq!(code, 0, "{err}");
    let effective: toml::Value = toml::from_str(&out).expect("check-config prints TOML");
    assert_eq!(
        effective["listen"].as_str(),
        Some("127.0.0.1:9999"),
        "file beats default"
    );
    assert_eq!(
        effective["collect"]["interval"].as_str(),
        Some("3s"),
        "file beats default"
    );
    assert_eq!(
        effective["rules"]["evaluation_interval"].as_str(),
        Some("9s"),
        "env beats file"
    );
    assert_eq!(
        effective["tsdb"]["retention"].as_str(),
        Some("1h"),
        "default kept"
    );

    // WATCHPOST_CONFIG picks the file when --config is absent; ./watchpost.toml otherwise.
    let (_, out, _) = run(command(dir.path())
        .arg("check-config")
        .env("WATCHPOST_CONFIG", &file));
    assert!(out.contains("127.0.0.1:9999"), "{out}");
    std::fs::write(
        dir.path().join("watchpost.toml"),
        "listen = \"127.0.0.1:7777\"\n",
    )
    .unwrap();
    let (_, out, _) = run(command(dir.path()).arg("check-config"));
    assert!(out.contains("127.0.0.1:7777"), "{out}");
}

#[test]
fn check_config_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(command(dir.path())
        .arg("check-config")
        .env("WATCHPOST_TELEGRAM__BOT_TOKEN", "123456:SUPERSECRET")
        .env(
            "WATCHPOST_DATABASE_URL",
            "postgres://wp:hunter2@db.example/wp",
        )
        .env(
            "WATCHPOST_AUTH__TOKENS",
            r#"[{token="tok-very-secret", role="admin"}]"#,
        ));
    assert_eq!(code, 0, "{err}");
    for secret in ["SUPERSECRET", "hunter2", "tok-very-secret"] {
        assert!(!out.contains(secret), "{secret} leaked:\n{out}");
    }
    assert!(
        out.contains("postgres://wp:<redacted>@db.example/wp"),
        "{out}"
    );
    assert!(out.contains("role = \"admin\""), "{out}");
}

#[test]
fn invalid_config_exits_1_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");

    std::fs::write(&file, "[collect]\nintervall = \"1s\"\n").unwrap();
    let (code, _, err) = run(command(dir.path())
        .args(["check-config", "--config"])
        .arg(&file));
    assert_eq!(code, 1);
    assert!(err.contains("intervall"), "{err}");

    std::fs::write(&file, "[collect]\ninterval = \"soon\"\n").unwrap();
    let (code, _, err) = run(command(dir.path()).args(["serve", "--config"]).arg(&file));
    assert_eq!(code, 1);
    assert!(err.contains("collect.interval"), "{err}");

    let (code, _, err) = run(command(dir.path())
        .arg("serve")
        .env("WATCHPOST_TSDB__RETENTION", "forever"));
    assert_eq!(code, 1);
    assert!(err.contains("tsdb.retention"), "{err}");

    let (code, _, err) = run(command(dir.path())
        .arg("serve")
        .env("WATCHPOST_LISTEN", "0.0.0.0:0"));
    assert_eq!(code, 1, "non-loopback without tokens must be refused");
    assert!(err.contains("auth.tokens"), "{err}");

    let (code, _, err) =
        run(command(dir.path()).args(["check-config", "--config", "/nonexistent/wp.toml"]));
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/wp.toml"), "{err}");
}

#[test]
fn runtime_failures_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    // Port already taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, _, err) = run(command(dir.path())
        .arg("serve")
        .env("WATCHPOST_LISTEN", &addr));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&addr), "{err}");

    // Database unreachable for longer than connect_timeout.
    let port = common::free_port();
    let (code, _, err) = run(command(dir.path())
        .arg("serve")
        .env("WATCHPOST_LISTEN", "127.0.0.1:0")
        .env(
            "WATCHPOST_DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:{port}/x"),
        )
        .env("WATCHPOST_DATABASE__CONNECT_TIMEOUT", "1s"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unreachable"), "{err}");
}

#[tokio::test]
async fn migrate_is_idempotent_on_every_database() {
    for db in common::databases().await {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..2 {
            let (code, _, err) = run(command(dir.path())
                .arg("migrate")
                .env("WATCHPOST_DATABASE_URL", &db.url));
            assert_eq!(code, 0, "{} round {round}: {err}", db.kind);
        }
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
        let (applied,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&pool)
            .await
            .unwrap();
        let expected =
            std::fs::read_dir(format!("{}/migrations/sqlite", env!("CARGO_MANIFEST_DIR")))
                .unwrap()
                .count() as i64;
        assert_eq!(applied, expected, "{}", db.kind);
        let (audit,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_log")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(audit, 0);
        pool.close().await;
    }
}

#[test]
fn serve_defaults_create_the_sqlite_file_and_sigterm_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.arg("serve").env("WATCHPOST_LISTEN", "127.0.0.1:0");
    let mut server = Server::spawn(cmd);
    assert!(
        dir.path().join("data/watchpost.db").exists(),
        "default SQLite file not created"
    );
    let body = reqwest::blocking_get(&format!("{}/ready", server.base()));
    assert!(body.contains("\"database\":\"up\""), "{body}");
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(15)), Some(0));
}

#[test]
fn sigint_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.arg("serve").env("WATCHPOST_LISTEN", "127.0.0.1:0");
    let mut server = Server::spawn(cmd);
    server.signal("INT");
    assert_eq!(server.wait_exit(Duration::from_secs(15)), Some(0));
}

mod reqwest {
    /// A tiny blocking GET over a raw socket (keeps the test free of a blocking client).
    pub fn blocking_get(url: &str) -> String {
        use std::io::{Read, Write};
        let rest = url.strip_prefix("http://").expect("http url");
        let (host, path) = rest
            .split_once('/')
            .map(|(h, p)| (h, format!("/{p}")))
            .unwrap_or((rest, "/".into()));
        let mut s = std::net::TcpStream::connect(host).expect("connect");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }
}
