//! Heartbeats (dead man's switches) over the HTTP API, on SQLite and PostgreSQL: on
//! time nothing fires; late past the grace one `HeartbeatMissing`; `/fail` a
//! `HeartbeatFailed`; the next good ping resolves; a ping may create a heartbeat and
//! its own ping URL needs no token; the due time survives a restart.

mod alerts_support;
mod common;

use std::time::Duration;

use serde_json::Value;
use watchpost::config::HeartbeatConfig;

use alerts_support::{get, list_all, metric};
use common::{TestApp, databases, eventually, sqlite_db, test_config};

fn configured(name: &str, period_ms: u64, grace_ms: u64) -> HeartbeatConfig {
    HeartbeatConfig {
        name: name.into(),
        period: Duration::from_millis(period_ms),
        grace: Duration::from_millis(grace_ms),
        labels: [("team".to_string(), "backup".to_string())]
            .into_iter()
            .collect(),
        severity: "critical".into(),
    }
}

async fn status(app: &TestApp, name: &str) -> Value {
    let r = get(app, "/api/v1/heartbeats", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} not in {}", r.body))
}

/// The heartbeat's alerts as `(alertname, state)`.
async fn alerts(app: &TestApp, name: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = list_all(app, &format!("label=heartbeat={name}"))
        .await
        .iter()
        .map(|a| {
            (
                a["labels"]["alertname"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                a["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

async fn wait_status(app: &TestApp, name: &str, want: &str, within: Duration) {
    let got = eventually(within, || async {
        (status(app, name).await["status"] == want).then_some(())
    })
    .await;
    assert!(
        got.is_some(),
        "{name} never {want}: {}",
        status(app, name).await
    );
}

async fn ping(app: &TestApp, path: &str) -> Value {
    let r = get(app, path, None).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text);
    r.body
}

#[tokio::test]
async fn late_fires_once_fail_fires_and_a_good_ping_resolves() {
    for db in databases().await {
        let mut cfg = test_config(&db.url);
        cfg.heartbeats = vec![configured("backup", 2_000, 1_000)];
        let app = TestApp::start(cfg).await;
        assert_eq!(status(&app, "backup").await["status"], "new");
        assert_eq!(status(&app, "backup").await["period"], "2s");

        // On time: up, nothing fires.
        let h = ping(&app, "/api/v1/heartbeats/backup").await;
        assert_eq!(h["status"], "up", "{h}");
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        ping(&app, "/api/v1/heartbeats/backup").await;
        assert!(alerts(&app, "backup").await.is_empty());
        assert_eq!(
            metric(&app, "watchpost_heartbeat_up{heartbeat=\"backup\"}").await,
            Some(1.0)
        );

        // Late, then down past the grace: one HeartbeatMissing.
        wait_status(&app, "backup", "late", Duration::from_secs(3)).await;
        assert!(
            alerts(&app, "backup").await.is_empty(),
            "late is within grace"
        );
        wait_status(&app, "backup", "down", Duration::from_secs(3)).await;
        let fired = eventually(Duration::from_secs(5), || async {
            let a = alerts(&app, "backup").await;
            (!a.is_empty()).then_some(a)
        })
        .await
        .unwrap();
        assert_eq!(fired, vec![("HeartbeatMissing".into(), "firing".into())]);
        let one = &list_all(&app, "label=heartbeat=backup").await[0];
        assert_eq!(one["labels"]["team"], "backup");
        assert_eq!(one["severity"], "critical");
        assert_eq!(
            metric(&app, "watchpost_heartbeat_up{heartbeat=\"backup\"}").await,
            Some(0.0)
        );

        // The next good ping resolves it.
        ping(&app, "/api/v1/heartbeats/backup").await;
        assert_eq!(
            alerts(&app, "backup").await,
            vec![("HeartbeatMissing".into(), "resolved".into())]
        );

        // A failure fires HeartbeatFailed; a good ping resolves it.
        let h = ping(&app, "/api/v1/heartbeats/backup/fail").await;
        assert_eq!(h["status"], "failed");
        assert_eq!(
            alerts(&app, "backup").await,
            vec![
                ("HeartbeatFailed".into(), "firing".into()),
                ("HeartbeatMissing".into(), "resolved".into())
            ]
        );
        ping(&app, "/api/v1/heartbeats/backup").await;
        assert_eq!(
            alerts(&app, "backup").await,
            vec![
                ("HeartbeatFailed".into(), "resolved".into()),
                ("HeartbeatMissing".into(), "resolved".into())
            ]
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_first_ping_creates_and_the_ping_url_needs_no_token() {
    let db = sqlite_db();
    let mut cfg = test_config(&db.url);
    cfg.auth.tokens = common::role_tokens();
    let app = TestApp::start(cfg).await;
    let op = Some("operator-token-1");
    let r = get(&app, "/api/v1/heartbeats/nightly", op).await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert!(
        r.body["error"].as_str().unwrap().contains("period"),
        "{}",
        r.text
    );
    assert_eq!(
        get(&app, "/api/v1/heartbeats/nightly?period=1h", None)
            .await
            .status,
        401
    );
    let viewer = get(
        &app,
        "/api/v1/heartbeats/nightly?period=1h",
        Some("viewer-token-1"),
    )
    .await;
    assert_eq!(viewer.status, 403);
    for (path, needle) in [
        ("/api/v1/heartbeats/nightly?period=soon", "period"),
        ("/api/v1/heartbeats/nightly?grace=5m", "grace"),
        ("/api/v1/heartbeats/nightly?period=1h&every=2", "every"),
        ("/api/v1/heartbeats/a%20b?period=1h", "heartbeat name"),
        ("/api/v1/heartbeats/p?period=1h", "reserved"),
    ] {
        let r = get(&app, path, op).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text);
        assert!(r.text.contains(needle), "{path}: {}", r.text);
    }

    let start = get(
        &app,
        "/api/v1/heartbeats/nightly/start?period=1h&grace=5m",
        op,
    )
    .await;
    assert_eq!(start.status, 200, "{}", start.text);
    assert_eq!(start.body["status"], "new");
    let url = start.body["ping_url"].as_str().unwrap().to_string();
    let key_path = &url[url.find("/api/").unwrap()..];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = app.client.post(app.url(key_path)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = status(&app, "nightly").await;
    assert_eq!(
        (h["status"].as_str(), h["grace"].as_str()),
        (Some("up"), Some("5m"))
    );
    assert!(h["last_duration"].as_f64().unwrap() >= 0.3, "{h}");
    assert!(
        h.get("ping_url").is_none(),
        "anonymous readers do not see ping URLs"
    );
    let seen = get(&app, "/api/v1/heartbeats", Some("viewer-token-1")).await;
    assert!(seen.body[0].get("ping_url").is_none());
    let unknown = app
        .client
        .get(app.url("/api/v1/heartbeats/p/0123"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn the_due_time_survives_a_restart() {
    let db = sqlite_db();
    let mut cfg = test_config(&db.url);
    cfg.heartbeats = vec![configured("cron", 3_000, 1_000)];
    let app = TestApp::start(cfg.clone()).await;
    let pinged = ping(&app, "/api/v1/heartbeats/cron").await;
    app.stop().await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let app = TestApp::start(cfg).await;
    let h = status(&app, "cron").await;
    assert_eq!(h["next_due"], pinged["next_due"], "the due time is stored");
    assert_eq!(h["status"], "up");
    // Due 3 s after the ping, down 1 s later: ~2.5 s after this restart, not 4 s.
    wait_status(&app, "cron", "down", Duration::from_secs(4)).await;
    let fired = eventually(Duration::from_secs(5), || async {
        let a = alerts(&app, "cron").await;
        (!a.is_empty()).then_some(a)
    })
    .await;
    assert_eq!(
        fired,
        Some(vec![("HeartbeatMissing".into(), "firing".into())])
    );
    app.stop().await;
}
