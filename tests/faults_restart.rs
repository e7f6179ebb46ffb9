//! Fault injection, restarts: the real binary is stopped (SIGTERM or kill -9) while a
//! notification is still waiting in the dispatcher — an alert inside `group_wait`, a
//! resolve inside `group_interval` — and started again: the notification goes out
//! exactly once (SQLite and PostgreSQL, side by side). Also: a child route with an empty
//! receiver is a config error.

mod common;
#[path = "support/fake_telegram.rs"]
mod fake_telegram;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::TestDb;
use common::faults::{Conf, Proc, each_database, firing, mentioning, resolved, token, wait_for};
use fake_telegram::FakeTelegram;

const BOT_TOKEN: &str = "42:faults-restart";
const CHAT: i64 = 4242;
/// Long enough to stop the process inside it.
const GROUP_WAIT: Duration = Duration::from_secs(6);
/// Long enough to stop the process between two flushes.
const GROUP_INTERVAL: Duration = Duration::from_secs(8);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// What SIGTERM may take beyond `shutdown_timeout`.
const SLACK: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy)]
enum Stop {
    Term,
    Kill,
}

fn conf(db: &TestDb, fake: &FakeTelegram) -> Conf {
    let mut c = Conf::telegram(&db.url, &fake.url, BOT_TOKEN, &[CHAT]);
    c.group_wait = format!("{}s", GROUP_WAIT.as_secs());
    c.group_interval = format!("{}s", GROUP_INTERVAL.as_secs());
    c.shutdown_timeout = Some(format!("{}s", SHUTDOWN_TIMEOUT.as_secs()));
    c
}

/// What the fake delivered about `needle`.
fn sent(fake: &FakeTelegram, needle: &str) -> Vec<String> {
    mentioning(fake.delivered().into_iter().map(|c| c.text()), needle)
}

async fn stop(p: &mut Proc, how: Stop) {
    match how {
        Stop::Term => {
            p.terminate(SHUTDOWN_TIMEOUT + SLACK).await;
        }
        Stop::Kill => p.kill9().await,
    }
}

/// An alert accepted, then the process is stopped 2 s into `group_wait` and restarted:
/// exactly one firing message.
async fn firing_inside_group_wait(db: TestDb, how: Stop) {
    let tag = format!("{} {how:?} inside group_wait", db.kind);
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeTelegram::start(BOT_TOKEN).await;
    let mut p = Proc::start(&tag, dir.path(), &conf(&db, &fake)).await;
    let t = token("RestartFiring");
    let id = p.fire(&t).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        sent(&fake, &t).is_empty(),
        "{tag}: nothing may be sent inside group_wait ({GROUP_WAIT:?})"
    );
    stop(&mut p, how).await;
    p.restart().await;

    wait_for(
        &format!("{tag}: the firing message after the restart"),
        Duration::from_secs(40),
        || {
            let s = sent(&fake, &t);
            (firing(&s) >= 1, s)
        },
    )
    .await;
    // A duplicate would come with the next flush (group_interval) at the latest.
    tokio::time::sleep(GROUP_INTERVAL + Duration::from_secs(3)).await;
    let s = sent(&fake, &t);
    assert_eq!(firing(&s), 1, "{tag}: exactly one firing message: {s:#?}");
    assert_eq!(resolved(&s), 0, "{tag}: no resolved message: {s:#?}");

    let (status, alert) = p
        .get_json(&format!("/api/v1/alerts/{id}"))
        .await
        .expect("GET alert");
    assert_eq!(status, 200, "{tag}: the 202'd alert is stored: {alert}");
    assert_eq!(alert["state"], "firing", "{tag}: {alert}");
    p.terminate(SHUTDOWN_TIMEOUT + SLACK).await;
}

/// An alert fires and is notified; its resolve is accepted, then the process is stopped
/// 2 s into `group_interval` and restarted: exactly one resolved message (and still one
/// firing message).
async fn resolve_inside_group_interval(db: TestDb, how: Stop) {
    let tag = format!("{} {how:?} inside group_interval", db.kind);
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeTelegram::start(BOT_TOKEN).await;
    let mut p = Proc::start(&tag, dir.path(), &conf(&db, &fake)).await;
    let t = token("RestartResolve");
    let id = p.fire(&t).await;
    wait_for(
        &format!("{tag}: the firing message"),
        GROUP_WAIT + Duration::from_secs(15),
        || {
            let s = sent(&fake, &t);
            (firing(&s) >= 1, s)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    p.resolve(&t).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        resolved(&sent(&fake, &t)),
        0,
        "{tag}: nothing resolved may be sent inside group_interval ({GROUP_INTERVAL:?})"
    );
    stop(&mut p, how).await;
    p.restart().await;

    wait_for(
        &format!("{tag}: the resolved message after the restart"),
        Duration::from_secs(40),
        || {
            let s = sent(&fake, &t);
            (resolved(&s) >= 1, s)
        },
    )
    .await;
    tokio::time::sleep(GROUP_INTERVAL + Duration::from_secs(3)).await;
    let s = sent(&fake, &t);
    assert_eq!(
        resolved(&s),
        1,
        "{tag}: exactly one resolved message: {s:#?}"
    );
    assert_eq!(firing(&s), 1, "{tag}: still one firing message: {s:#?}");

    let (status, alert) = p
        .get_json(&format!("/api/v1/alerts/{id}"))
        .await
        .expect("GET alert");
    assert_eq!(status, 200, "{tag}: {alert}");
    assert_eq!(alert["state"], "resolved", "{tag}: {alert}");
    p.terminate(SHUTDOWN_TIMEOUT + SLACK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_inside_group_wait_notifies_once_after_restart() {
    each_database(|db| firing_inside_group_wait(db, Stop::Term)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_inside_group_wait_notifies_once_after_restart() {
    each_database(|db| firing_inside_group_wait(db, Stop::Kill)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_inside_group_interval_resolves_once_after_restart() {
    each_database(|db| resolve_inside_group_interval(db, Stop::Term)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_inside_group_interval_resolves_once_after_restart() {
    each_database(|db| resolve_inside_group_interval(db, Stop::Kill)).await;
}

/// A child route with `receiver = ""` is a config error naming the key, for
/// `check-config` and for `serve` (which must not start with it).
#[test]
fn empty_child_route_receiver_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("watchpost.toml");
    std::fs::write(
        &config,
        format!(
            r#"listen = "127.0.0.1:0"
database_url = "sqlite://{}/watchpost.db"

[rules]
files = []

[route]
receiver = "ops"
group_wait = "1s"

[[route.routes]]
matchers = ["severity=\"critical\""]
receiver = ""

[[receivers]]
name = "ops"
webhook = {{ url = "http://127.0.0.1:9/hook" }}
"#,
            dir.path().display()
        ),
    )
    .unwrap();
    const KEY: &str = "route.routes[0].receiver";

    let out = common::command(dir.path())
        .arg("check-config")
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run check-config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "check-config exit code; output:\n{text}"
    );
    assert!(text.contains(KEY), "check-config must name {KEY}:\n{text}");

    let mut child = common::command(dir.path())
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("serve output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        code,
        Some(1),
        "serve must refuse the config (None = it kept running); output:\n{text}"
    );
    assert!(text.contains(KEY), "serve must name {KEY}:\n{text}");
}
