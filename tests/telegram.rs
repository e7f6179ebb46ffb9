//! Telegram delivery end to end against a fake Bot API, with the service in-process
//! (alert notices are fed to the dispatcher directly until the alert pipeline lands):
//! one message per group, resolved messages, 429 / 403 / 5xx handling, splitting,
//! per-chat rate, the groups and notifications API — on SQLite and PostgreSQL.

mod common;
#[path = "support/fake_telegram.rs"]
mod fake_telegram;

use std::time::Duration;

use chrono::Utc;
use common::{TestApp, databases, test_config_with};
use fake_telegram::{Call, FakeTelegram, Fault};
use serde_json::Value;
use watchpost::config::Config;
use watchpost::dispatch::{AlertNotice, AlertState};

const TOKEN: &str = "123456:TEST-token";
const CHAT: i64 = 100;

/// A config sending everything to the fake Telegram, with short timers.
fn config(db_url: &str, fake: &FakeTelegram, group_by: &str) -> Config {
    test_config_with(
        db_url,
        &format!(
            r#"
external_url = "https://watchpost.example"
[telegram]
bot_token = "{TOKEN}"
api_url = "{}"
chat_ids = [{CHAT}]
[route]
receiver = "telegram"
group_by = {group_by}
group_wait = "200ms"
group_interval = "500ms"
repeat_interval = "1h"
"#,
            fake.url
        ),
    )
}

fn notice(id: i64, alertname: &str) -> AlertNotice {
    let mut n = AlertNotice::test(id, &format!("fp-{id}"), alertname);
    n.severity = "critical".into();
    n.labels.insert("instance".into(), "web-1".into());
    n.annotations
        .insert("summary".into(), "CPU at 97% on <web-1> & friends".into());
    n.value = Some("97.1".into());
    n.starts_at = Utc::now();
    n
}

async fn metric(app: &TestApp, needle: &str) -> Option<f64> {
    let (_, text) = app.get_text("/metrics").await;
    text.lines()
        .find(|l| l.starts_with(needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The newest outbox row once it left `pending`.
async fn settled_row(app: &TestApp) -> Value {
    common::eventually(Duration::from_secs(10), || async {
        let (_, body) = app.get_json("/api/v1/notifications").await;
        let row = body["notifications"][0].clone();
        (!row.is_null() && row["state"] != "pending").then_some(row)
    })
    .await
    .expect("the notification settles")
}

/// Balanced tags and whole entities.
fn assert_valid_html(part: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = part;
    while let Some(start) = rest.find(['<', '&']) {
        if rest[start..].starts_with('&') {
            let end = rest[start..].find(';').expect("entity cut");
            let ent = &rest[start..start + end + 1];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;"].contains(&ent),
                "bad entity {ent:?}"
            );
            rest = &rest[start + end + 1..];
            continue;
        }
        let end = rest[start..].find('>').expect("tag cut");
        let tag = &rest[start + 1..start + end];
        assert!(!tag.contains('<'), "tag cut: {tag:?}");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "unbalanced: {part}");
        } else {
            stack.push(tag.split_whitespace().next().unwrap().to_string());
        }
        rest = &rest[start + end + 1..];
    }
    assert!(stack.is_empty(), "unclosed {stack:?} in {part}");
}

#[tokio::test]
async fn a_notice_makes_one_message_and_resolution_a_resolved_one() {
    for db in databases().await {
        let fake = FakeTelegram::start(TOKEN).await;
        let app = TestApp::start(config(&db.url, &fake, r#"["alertname"]"#)).await;
        let tx = app.app.alert_notices();
        let mut n = notice(41, "HighCpu");
        tx.send(n.clone()).await.unwrap();

        let sent = fake.wait_delivered(1, Duration::from_secs(15)).await;
        let m = &sent[0];
        assert_eq!(m.chat_id(), Some(CHAT), "{}", db.kind);
        assert_eq!(m.params["parse_mode"], "HTML");
        let text = m.text();
        assert!(
            text.starts_with("🔴 <b>FIRING</b> · <b>HighCpu</b>"),
            "{text}"
        );
        assert!(
            text.contains("CPU at 97% on &lt;web-1&gt; &amp; friends"),
            "{text}"
        );
        assert!(text.contains("instance=<code>web-1</code>"), "{text}");
        assert!(text.contains("<code>97.1</code>"), "{text}");
        assert!(
            text.contains("https://watchpost.example/alerts/41"),
            "{text}"
        );
        let data = m.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
            .as_str()
            .unwrap_or_default();
        assert!(data.starts_with("ack:"), "Ack button: {}", m.params);

        // Several group intervals later: still exactly one message (no re-notification).
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(fake.delivered().len(), 1, "{}", db.kind);

        n.state = AlertState::Resolved;
        n.ends_at = Some(Utc::now());
        tx.send(n).await.unwrap();
        let sent = fake.wait_delivered(2, Duration::from_secs(15)).await;
        let text = sent[1].text();
        assert!(
            text.starts_with("✅ <b>RESOLVED</b> · <b>HighCpu</b>"),
            "{text}"
        );
        assert!(
            sent[1].params.get("reply_markup").is_none(),
            "no buttons on resolved"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(fake.delivered().len(), 2, "{}", db.kind);

        // Both are in the outbox, delivered, with their alert.
        let (status, body) = app.get_json("/api/v1/notifications?alert_id=41").await;
        assert_eq!(status, 200, "{body}");
        let rows = body["notifications"].as_array().unwrap();
        assert_eq!(rows.len(), 2, "{body}");
        for r in rows {
            assert_eq!(r["state"], "delivered", "{body}");
            assert_eq!(r["alert_ids"], serde_json::json!([41]));
            assert_eq!(r["receiver"], "telegram");
        }
        assert_eq!(rows[0]["status"], "resolved");
        assert_eq!(
            metric(
                &app,
                "watchpost_notifications_total{outcome=\"delivered\",receiver=\"telegram\"}"
            )
            .await,
            Some(2.0)
        );
        assert_eq!(
            metric(
                &app,
                "watchpost_notification_queue_depth{receiver=\"telegram\"}"
            )
            .await,
            Some(0.0)
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn retry_after_is_waited_for() {
    let db = common::sqlite_db();
    let fake = FakeTelegram::start(TOKEN).await;
    fake.fail_next("sendMessage", Fault::RetryAfter(2));
    let app = TestApp::start(config(&db.url, &fake, r#"["alertname"]"#)).await;
    app.app
        .alert_notices()
        .send(notice(1, "Disk"))
        .await
        .unwrap();
    let calls = fake
        .wait_until(Duration::from_secs(20), |c| {
            c.iter()
                .filter(|c| c.method == "sendmessage" && c.status == 200)
                .count()
                == 1
        })
        .await;
    let sends: Vec<&Call> = calls.iter().filter(|c| c.method == "sendmessage").collect();
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[0].status, 429);
    let gap = sends[1].at - sends[0].at;
    assert!(gap >= Duration::from_secs(2), "retried after {gap:?}");
    let row = settled_row(&app).await;
    assert_eq!(row["state"], "delivered");
    assert_eq!(row["attempts"], 2);
    assert_eq!(
        metric(
            &app,
            "watchpost_notifications_total{outcome=\"transient\",receiver=\"telegram\"}"
        )
        .await,
        Some(1.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn forbidden_is_failed_at_once_and_reported() {
    for db in databases().await {
        let fake = FakeTelegram::start(TOKEN).await;
        fake.fail_chat(
            CHAT,
            Fault::Error(403, "Forbidden: bot was blocked by the user".into()),
        );
        let app = TestApp::start(config(&db.url, &fake, r#"["alertname"]"#)).await;
        let mut reports = app.app.notifications().subscribe();
        app.app
            .alert_notices()
            .send(notice(9, "Disk"))
            .await
            .unwrap();
        fake.wait_until(Duration::from_secs(15), |c| {
            c.iter().any(|c| c.method == "sendmessage")
        })
        .await;
        let report = tokio::time::timeout(Duration::from_secs(10), reports.recv())
            .await
            .expect("a delivery report")
            .unwrap();
        assert_eq!(report.alert_ids, vec![9]);
        assert!(
            matches!(&report.outcome, watchpost::notify::DeliveryOutcome::Failed { reason } if reason.contains("blocked")),
            "{report:?}"
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            fake.calls_of("sendMessage").len(),
            1,
            "{}: not retried",
            db.kind
        );
        let (_, body) = app.get_json("/api/v1/notifications?state=failed").await;
        let rows = body["notifications"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{body}");
        assert!(
            rows[0]["last_error"]
                .as_str()
                .unwrap()
                .contains("bot was blocked")
        );
        assert_eq!(rows[0]["attempts"], 1);
        assert_eq!(
            metric(
                &app,
                "watchpost_notifications_total{outcome=\"rejected\",receiver=\"telegram\"}"
            )
            .await,
            Some(1.0)
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff() {
    let db = common::sqlite_db();
    let fake = FakeTelegram::start(TOKEN).await;
    fake.fail_next(
        "sendMessage",
        Fault::Error(500, "Internal Server Error".into()),
    );
    let app = TestApp::start(config(&db.url, &fake, r#"["alertname"]"#)).await;
    app.app
        .alert_notices()
        .send(notice(2, "Disk"))
        .await
        .unwrap();
    // teloxide itself pauses 10 s after a 5xx before returning the error.
    let sent = fake.wait_delivered(1, Duration::from_secs(40)).await;
    assert_eq!(sent.len(), 1);
    let sends = fake.calls_of("sendMessage");
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[0].status, 500);
    let row = settled_row(&app).await;
    assert_eq!(row["attempts"], 2);
    assert_eq!(row["state"], "delivered");
    app.stop().await;
}

#[tokio::test]
async fn a_ten_thousand_character_group_is_split_into_valid_parts() {
    let db = common::sqlite_db();
    let fake = FakeTelegram::start(TOKEN).await;
    let app = TestApp::start(config(&db.url, &fake, r#"["alertname"]"#)).await;
    let tx = app.app.alert_notices();
    for i in 1..=80 {
        let mut n = notice(i, "Flapping");
        n.labels
            .insert("instance".into(), format!("host-{i:03}.example.com:9100"));
        n.annotations.insert(
            "summary".into(),
            format!("interface <eth{i}> dropped 5% of packets & more on host {i}"),
        );
        tx.send(n).await.unwrap();
    }
    let calls = fake
        .wait_until(Duration::from_secs(60), |c| {
            c.iter().any(|c| {
                let t = c.params["text"].as_str().unwrap_or("");
                c.status == 200 && t.starts_with('(') && {
                    let head = t.split(')').next().unwrap_or("");
                    let mut it = head.trim_start_matches('(').split('/');
                    it.next() == it.next()
                }
            })
        })
        .await;
    let parts: Vec<String> = calls
        .iter()
        .filter(|c| c.method == "sendmessage" && c.status == 200)
        .map(Call::text)
        .collect();
    let total: usize = parts.iter().map(|p| p.encode_utf16().count()).sum();
    assert!(total > 10_000, "{total}");
    assert!(parts.len() >= 3, "{}", parts.len());
    let n = parts.len();
    for (i, p) in parts.iter().enumerate() {
        assert!(p.encode_utf16().count() < 4096);
        assert!(p.starts_with(&format!("({}/{n}) ", i + 1)), "{p:.60}");
        assert_valid_html(p);
    }
    let all = parts.join("\n");
    for i in 1..=80 {
        assert_eq!(
            all.matches(&format!("/alerts/{i}\"")).count(),
            1,
            "alert {i} appears exactly once"
        );
    }
    // Parts to one chat are spaced by the per-chat limit too.
    let sends = fake.delivered();
    for w in sends.windows(2) {
        assert!(w[1].at - w[0].at >= Duration::from_secs(1));
    }
    app.stop().await;
}

#[tokio::test]
async fn twenty_alerts_to_one_chat_are_spaced_a_second_apart() {
    let db = common::sqlite_db();
    let fake = FakeTelegram::start(TOKEN).await;
    let app = TestApp::start(config(&db.url, &fake, r#"["alertname"]"#)).await;
    let tx = app.app.alert_notices();
    for i in 1..=20 {
        tx.send(notice(i, &format!("Alert{i}"))).await.unwrap();
    }
    let sent = fake.wait_delivered(20, Duration::from_secs(90)).await;
    assert_eq!(sent.len(), 20);
    for w in sent.windows(2) {
        let gap = w[1].at - w[0].at;
        assert!(gap >= Duration::from_secs(1), "two messages {gap:?} apart");
    }
    let mut names: Vec<String> = sent
        .iter()
        .map(|c| {
            let t = c.text();
            t.split("<b>")
                .nth(2)
                .unwrap_or("")
                .split("</b>")
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 20, "one message per group: {names:?}");
    app.stop().await;
}

#[tokio::test]
async fn groups_api_shows_pending_and_active_groups() {
    for db in databases().await {
        let fake = FakeTelegram::start(TOKEN).await;
        let mut c = config(&db.url, &fake, r#"["alertname"]"#);
        c.route.as_mut().unwrap().group_wait = Some(Duration::from_secs(3600));
        let app = TestApp::start(c).await;
        let tx = app.app.alert_notices();
        let a = notice(1, "Disk");
        let mut b = notice(2, "Disk");
        b.labels.insert("instance".into(), "web-2".into());
        b.silenced = true;
        tx.send(a).await.unwrap();
        tx.send(b).await.unwrap();
        let body = common::eventually(Duration::from_secs(5), || async {
            let (_, body) = app.get_json("/api/v1/alerts/groups").await;
            (body.as_array().is_some_and(|g| !g.is_empty())).then_some(body)
        })
        .await
        .expect("group appears");
        let g = &body[0];
        assert_eq!(
            g["labels"],
            serde_json::json!({"alertname": "Disk"}),
            "{}",
            db.kind
        );
        assert_eq!(g["receiver"]["name"], "telegram");
        assert_eq!(g["state"], "pending");
        assert_eq!(g["timers"]["groupWait"], "1h");
        let alerts = g["alerts"].as_array().unwrap();
        assert_eq!(alerts.len(), 2);
        let silenced: Vec<&Value> = alerts
            .iter()
            .filter(|a| a["status"]["silenced"] == true)
            .collect();
        assert_eq!(silenced.len(), 1);
        assert_eq!(silenced[0]["status"]["state"], "suppressed");

        let (_, body) = app.get_json("/api/v1/alerts/groups?silenced=false").await;
        assert_eq!(body[0]["alerts"].as_array().unwrap().len(), 1);
        let (_, body) = app
            .get_json("/api/v1/alerts/groups?filter=instance%3D%22web-2%22")
            .await;
        assert_eq!(body[0]["alerts"][0]["id"], 2);
        let (_, body) = app.get_json("/api/v1/alerts/groups?receiver=nope").await;
        assert_eq!(body, serde_json::json!([]));
        let (status, body) = app.get_json("/api/v1/alerts/groups?filter=%3Dx").await;
        assert_eq!(status, 400);
        assert!(body["error"].as_str().unwrap().contains("filter"), "{body}");
        let (status, body) = app.get_json("/api/v1/notifications?limit=0").await;
        assert_eq!(status, 400);
        assert!(body["error"].as_str().unwrap().contains("limit"), "{body}");
        let (status, _) = app.get_json("/api/v1/notifications?state=lost").await;
        assert_eq!(status, 400);
        assert!(
            fake.calls_of("sendMessage").is_empty(),
            "nothing sent while pending"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn notifications_paginate_with_a_cursor() {
    let db = common::sqlite_db();
    let fake = FakeTelegram::start(TOKEN).await;
    let app = TestApp::start(config(&db.url, &fake, r#"["..."]"#)).await;
    let tx = app.app.alert_notices();
    for i in 1..=3 {
        tx.send(notice(i, &format!("A{i}"))).await.unwrap();
    }
    fake.wait_delivered(3, Duration::from_secs(20)).await;
    let (_, page1) = app.get_json("/api/v1/notifications?limit=2").await;
    assert_eq!(page1["notifications"].as_array().unwrap().len(), 2);
    let cursor = page1["next_cursor"]
        .as_str()
        .expect("next cursor")
        .to_string();
    let (_, page2) = app
        .get_json(&format!("/api/v1/notifications?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(page2["notifications"].as_array().unwrap().len(), 1);
    assert!(page2["next_cursor"].is_null());
    app.stop().await;
}

#[tokio::test]
async fn receivers_route_by_severity_with_topic_and_silent_options() {
    let db = common::sqlite_db();
    let fake = FakeTelegram::start(TOKEN).await;
    let toml = format!(
        r#"
[telegram]
bot_token = "{TOKEN}"
api_url = "{}"
chat_ids = [{CHAT}]
[route]
receiver = "telegram"
group_wait = "200ms"
group_interval = "500ms"
[[route.routes]]
matchers = ["severity=\"warning\""]
receiver = "quiet"
[[route.routes]]
matchers = ["severity=\"critical\""]
receiver = "oncall"
continue = true
[[route.routes]]
matchers = ["team=\"db\""]
receiver = "dba"
[[receivers]]
name = "quiet"
telegram = {{ chat_ids = [-100200], message_thread_id = 12, disable_notification = true }}
[[receivers]]
name = "oncall"
telegram = {{ chat_ids = [300] }}
[[receivers]]
name = "dba"
telegram = {{ chat_ids = [400] }}
"#,
        fake.url
    );
    let app = TestApp::start(test_config_with(&db.url, &toml)).await;
    let tx = app.app.alert_notices();
    let mut w = notice(1, "Warn");
    w.severity = "warning".into();
    tx.send(w).await.unwrap();
    let mut crit = notice(2, "Crit");
    crit.labels.insert("team".into(), "db".into());
    tx.send(crit).await.unwrap();
    let sent = fake.wait_delivered(3, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        fake.delivered().len(),
        3,
        "warning → quiet; critical → oncall and (continue) dba"
    );
    let by_chat = |chat: i64| sent.iter().find(|c| c.chat_id() == Some(chat)).cloned();
    let quiet = by_chat(-100200).expect("warning to the quiet topic");
    assert_eq!(quiet.params["message_thread_id"], 12);
    assert_eq!(quiet.params["disable_notification"], true);
    assert!(quiet.text().contains("<b>Warn</b>"));
    assert!(by_chat(300).expect("oncall").text().contains("<b>Crit</b>"));
    assert!(
        by_chat(400)
            .expect("dba via continue")
            .text()
            .contains("<b>Crit</b>")
    );
    assert!(by_chat(CHAT).is_none(), "nothing fell through to the root");
    app.stop().await;
}
