//! Flap damping end to end on SQLite and PostgreSQL: an alert that fires and resolves
//! over and over through the API sends one "flapping" and one "stable again" message to
//! the (fake) Telegram, not one per change; the API shows `flapping`, its events, the
//! `state=flapping` filter and the classifier's reasons; `watchpost_alerts_flapping`.

mod common;
#[path = "support/fake_telegram.rs"]
mod fake_telegram;

use std::time::Duration;

use chrono::Utc;
use common::{TestApp, databases, eventually, test_config_with};
use fake_telegram::FakeTelegram;
use serde_json::json;
use watchpost::config::Config;

const TOKEN: &str = "123456:TEST-token";

fn config(db_url: &str, fake: &FakeTelegram) -> Config {
    config_with_window(db_url, fake, "9s")
}

fn config_with_window(db_url: &str, fake: &FakeTelegram, window: &str) -> Config {
    test_config_with(
        db_url,
        &format!(
            r#"
[telegram]
bot_token = "{TOKEN}"
api_url = "{}"
chat_ids = [100]
[route]
receiver = "telegram"
group_by = ["alertname"]
group_wait = "200ms"
group_interval = "500ms"
repeat_interval = "1h"
[flap]
max_transitions = 4
window = "{window}"
"#,
            fake.url
        ),
    )
}

/// Fires (or resolves) the alert through the generic API; its id.
async fn send(app: &TestApp, resolve: bool) -> i64 {
    let mut body = json!({
        "message": "PostgreSQL replica db-2 is down",
        "labels": {"alertname": "PostgresReplicaDown", "instance": "db-2"},
    });
    if resolve {
        body["ends_at"] = (Utc::now() - chrono::Duration::milliseconds(10))
            .to_rfc3339()
            .into();
    }
    let (status, r) = app.post_json("/api/v1/alerts", &body).await;
    assert_eq!(status, 202, "{r}");
    r["ids"][0].as_i64().expect("id")
}

/// Messages containing `needle`.
fn count(sent: &[String], needle: &str) -> usize {
    sent.iter().filter(|t| t.contains(needle)).count()
}

async fn metric(app: &TestApp, name: &str) -> Option<f64> {
    let (_, text) = app.get_text("/metrics").await;
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn a_flapping_alert_is_told_once_and_once_stable() {
    for db in databases().await {
        let k = db.kind;
        let fake = FakeTelegram::start(TOKEN).await;
        let app = TestApp::start(config(&db.url, &fake)).await;
        // Ten changes, 700 ms apart (longer than group_interval): fires and resolves.
        let mut id = 0;
        for i in 0..10 {
            id = send(&app, i % 2 == 1).await;
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        // Flapping now: the API, the filter and the metric say so.
        let (_, a) = app.get_json(&format!("/api/v1/alerts/{id}")).await;
        assert_eq!(a["flapping"], true, "{k}: {a}");
        assert!(a["flapping_since"].is_string(), "{k}: {a}");
        assert_eq!(a["type"], "database", "{k}");
        assert_eq!(a["severity"], "critical", "{k}");
        let c = &a["classification"];
        assert!(
            c["type_reason"]
                .as_str()
                .unwrap_or_default()
                .starts_with("database"),
            "{k}: {a}"
        );
        assert!(
            c["severity_reason"]
                .as_str()
                .unwrap_or_default()
                .contains("'down'"),
            "{k}: {a}"
        );
        let (_, list) = app.get_json("/api/v1/alerts?state=flapping").await;
        let ids: Vec<i64> = list["alerts"]
            .as_array()
            .map(|l| l.iter().filter_map(|a| a["id"].as_i64()).collect())
            .unwrap_or_default();
        assert_eq!(ids, vec![id], "{k}: {list}");
        assert_eq!(metric(&app, "watchpost_alerts_flapping ").await, Some(1.0));

        // Stable after window / 3 = 3 s without a change; then one message more.
        let stable = eventually(Duration::from_secs(20), || async {
            let (_, a) = app.get_json(&format!("/api/v1/alerts/{id}")).await;
            (a["flapping"] == false).then_some(a)
        })
        .await
        .expect("stable again");
        let kinds: Vec<&str> = stable["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["kind"].as_str())
            .collect();
        assert_eq!(
            kinds.iter().filter(|k| **k == "flapping").count(),
            1,
            "{k}: {kinds:?}"
        );
        assert_eq!(kinds.iter().filter(|k| **k == "stable").count(), 1);
        let texts = || -> Vec<String> { fake.delivered().iter().map(|c| c.text()).collect() };
        let done = eventually(Duration::from_secs(10), || async {
            texts()
                .iter()
                .any(|t| t.contains("STABLE AGAIN"))
                .then_some(())
        })
        .await;
        assert!(done.is_some(), "{k}: {:#?}", texts());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let sent = texts();
        assert_eq!(count(&sent, "<b>FLAPPING</b>"), 1, "{k}: {sent:#?}");
        assert_eq!(count(&sent, "STABLE AGAIN"), 1, "{k}: {sent:#?}");
        assert!(sent.len() < 10, "{k}: not one per change: {sent:#?}");
        // The stable message tells the final state: resolved (the last change).
        let last = sent.last().unwrap();
        assert!(
            last.contains("STABLE AGAIN") && last.contains("RESOLVED"),
            "{k}: {last}"
        );
        // Nothing between the flapping and the stable message.
        let fi = sent
            .iter()
            .position(|t| t.contains("<b>FLAPPING</b>"))
            .unwrap();
        assert_eq!(fi + 2, sent.len(), "{k}: {sent:#?}");
        assert_eq!(metric(&app, "watchpost_alerts_flapping ").await, Some(0.0));
        let (_, v) = app.get_json("/api/v1/alerts?flapping=true").await;
        assert_eq!(v["alerts"], json!([]), "{k}");
        let (status, v) = app.get_json("/api/v1/alerts?flapping=maybe").await;
        assert_eq!(status, 400, "{v}");
        assert!(
            v["error"].as_str().unwrap_or_default().contains("flapping"),
            "{v}"
        );
        app.stop().await;
    }
}

/// A restart while an alert flaps, and another once it is stable, tell nothing twice:
/// the flap status comes from the database, the changes from the stored events.
#[tokio::test]
async fn restarts_do_not_repeat_the_flapping_or_stable_message() {
    for db in databases().await {
        let k = db.kind;
        let fake = FakeTelegram::start(TOKEN).await;
        let app = TestApp::start(config_with_window(&db.url, &fake, "15s")).await;
        let mut id = 0;
        for i in 0..6 {
            id = send(&app, i % 2 == 1).await;
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        let texts = || -> Vec<String> { fake.delivered().iter().map(|c| c.text()).collect() };
        let flapping = eventually(Duration::from_secs(10), || async {
            texts()
                .iter()
                .any(|t| t.contains("<b>FLAPPING</b>"))
                .then_some(())
        })
        .await;
        assert!(flapping.is_some(), "{k}: {:#?}", texts());
        app.stop().await;

        // Restarted while flapping (calm needs 5 s): no second FLAPPING, one STABLE.
        let app = TestApp::start(config_with_window(&db.url, &fake, "15s")).await;
        let stable = eventually(Duration::from_secs(20), || async {
            texts()
                .iter()
                .any(|t| t.contains("STABLE AGAIN"))
                .then_some(())
        })
        .await;
        assert!(stable.is_some(), "{k}: {:#?}", texts());
        app.stop().await;

        // Restarted once stable: nothing more, and no new flap events.
        let app = TestApp::start(config_with_window(&db.url, &fake, "15s")).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let sent = texts();
        assert_eq!(count(&sent, "<b>FLAPPING</b>"), 1, "{k}: {sent:#?}");
        assert_eq!(count(&sent, "STABLE AGAIN"), 1, "{k}: {sent:#?}");
        let (_, a) = app.get_json(&format!("/api/v1/alerts/{id}")).await;
        assert_eq!(a["flapping"], false, "{k}: {a}");
        let kinds: Vec<&str> = a["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["kind"].as_str())
            .filter(|k| *k == "flapping" || *k == "stable")
            .collect();
        assert_eq!(kinds, ["flapping", "stable"], "{k}: {a}");
        app.stop().await;
    }
}
