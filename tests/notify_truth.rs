//! Messages that tell the truth (SQLite and PostgreSQL, the real service, a fake Bot
//! API): a rule alert's resolve carries the value when it resolved, not when it fired,
//! how long it fired and who acknowledged it; `notify.timezone` changes every time shown.

mod common;
#[path = "support/fake_telegram.rs"]
mod fake_telegram;

use std::time::Duration;

use common::{TestApp, databases, eventually, test_config_with};
use fake_telegram::FakeTelegram;
use prost::Message;
use serde_json::json;
use watchpost::remote_write::proto::{Label, Sample, TimeSeries, WriteRequest};

const TOKEN: &str = "123456:TEST-token";
const CHAT: i64 = 100;

const RULES: &str = r#"groups:
- name: truth
  interval: 200ms
  rules:
  - alert: Hot
    expr: demo_temp > 90
    labels:
      severity: critical
    annotations:
      summary: "demo_temp is hot"
"#;

/// Pushes `demo_temp{instance="box"} = value` at now by remote write.
async fn push(app: &TestApp, value: f64) {
    let raw = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: [("__name__", "demo_temp"), ("instance", "box")]
                .iter()
                .map(|(n, v)| Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            samples: vec![Sample {
                value,
                timestamp: chrono::Utc::now().timestamp_millis(),
            }],
            ..TimeSeries::default()
        }],
        metadata: vec![],
    }
    .encode_to_vec();
    let r = app
        .client
        .post(app.url("/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(snap::raw::Encoder::new().compress_vec(&raw).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204, "{:?}", r.text().await);
}

/// The text of the first message sent that contains `marker`.
async fn message_with(fake: &FakeTelegram, marker: &str) -> String {
    eventually(Duration::from_secs(20), || async {
        fake.calls_of("sendmessage")
            .iter()
            .map(|c| c.text())
            .find(|t| t.contains(marker))
    })
    .await
    .unwrap_or_else(|| panic!("no message with {marker:?}: {:?}", fake.calls()))
}

#[tokio::test]
async fn a_resolve_tells_the_value_at_resolve_who_acked_and_local_times() {
    for db in databases().await {
        let fake = FakeTelegram::start(TOKEN).await;
        let rules = tempfile::tempdir().unwrap();
        std::fs::write(rules.path().join("truth.yml"), RULES).unwrap();
        let mut config = test_config_with(
            &db.url,
            &format!(
                r#"
[notify]
timezone = "Asia/Tokyo"
[telegram]
bot_token = "{TOKEN}"
api_url = "{}"
chat_ids = [{CHAT}]
charts = false
[route]
receiver = "telegram"
group_by = ["alertname"]
group_wait = "200ms"
group_interval = "500ms"
"#,
                fake.url
            ),
        );
        config.rules.files = vec![format!("{}/*.yml", rules.path().display())];
        let app = TestApp::start(config).await;

        push(&app, 95.0).await;
        let fired = message_with(&fake, "FIRING").await;
        assert!(fired.contains("<code>95</code>"), "{}: {fired}", db.kind);
        assert!(
            fired.contains(" JST"),
            "{}: times in Tokyo: {fired}",
            db.kind
        );
        assert!(!fired.contains("UTC"), "{}: {fired}", db.kind);

        let (_, list) = app.get_json("/api/v1/alerts?state=firing").await;
        let id = list["alerts"][0]["id"].as_i64().expect("the firing alert");
        let r = app
            .client
            .post(app.url(&format!("/api/v1/alerts/{id}/ack")))
            .json(&json!({"by": "alice", "comment": "looking"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);

        tokio::time::sleep(Duration::from_millis(300)).await;
        push(&app, 42.5).await;
        let resolved = message_with(&fake, "RESOLVED").await;
        assert!(
            resolved.contains("<b>Value:</b> <code>42.5</code>"),
            "{}: the value when it resolved: {resolved}",
            db.kind
        );
        assert!(
            !resolved.contains("<code>95</code>"),
            "{}: {resolved}",
            db.kind
        );
        assert!(resolved.contains("<b>Resolved after</b>"), "{resolved}");
        assert!(
            resolved.contains("<b>Acknowledged by</b> alice"),
            "{}: {resolved}",
            db.kind
        );
        assert!(resolved.contains(" JST"), "{}: {resolved}", db.kind);
        assert!(!resolved.contains("UTC"), "{}: {resolved}", db.kind);
        app.stop().await;
    }
}
