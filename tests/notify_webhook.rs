//! The generic webhook receiver: Alertmanager's v4 payload, through the outbox, with
//! retries on 5xx and no retry on 4xx (SQLite and PostgreSQL).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use chrono::Utc;
use common::{TestApp, databases, test_config};
use serde_json::Value;
use watchpost::config::{Config, Secret};
use watchpost::dispatch::{AlertNotice, AlertState};

#[derive(Clone, Default)]
struct Hook {
    /// (arrival, body) of each request.
    received: Arc<Mutex<Vec<(Instant, Value)>>>,
    /// Statuses to answer, in order; 200 when exhausted.
    script: Arc<Mutex<Vec<u16>>>,
}

async fn receive(State(h): State<Hook>, body: axum::body::Bytes) -> StatusCode {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    h.received.lock().unwrap().push((Instant::now(), v));
    let mut script = h.script.lock().unwrap();
    let status = if script.is_empty() {
        200
    } else {
        script.remove(0)
    };
    StatusCode::from_u16(status).unwrap()
}

async fn start_hook(script: Vec<u16>) -> (String, Hook) {
    let hook = Hook {
        script: Arc::new(Mutex::new(script)),
        ..Default::default()
    };
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(hook.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, hook)
}

fn config(db_url: &str, url: &str) -> Config {
    let mut c = Config::from_toml(&format!(
        r#"
external_url = "https://wp.example"
[route]
receiver = "hook"
group_by = ["alertname"]
group_wait = "200ms"
group_interval = "500ms"
[[receivers]]
name = "hook"
webhook = {{ url = "{url}" }}
"#
    ))
    .unwrap();
    let base = test_config(db_url);
    c.listen = base.listen;
    c.database_url = Secret(db_url.into());
    c.rules = base.rules;
    c
}

async fn wait_for(hook: &Hook, n: usize) -> Vec<(Instant, Value)> {
    common::eventually(Duration::from_secs(20), || async {
        let r = hook.received.lock().unwrap().clone();
        (r.len() >= n).then_some(r)
    })
    .await
    .unwrap_or_else(|| panic!("webhook did not get {n} requests"))
}

#[tokio::test]
async fn webhook_gets_the_alertmanager_payload_and_retries_server_errors() {
    for db in databases().await {
        let (url, hook) = start_hook(vec![503]).await;
        let app = TestApp::start(config(&db.url, &url)).await;
        let mut n = AlertNotice::test(5, "fp5", "DiskFull");
        n.labels.insert("instance".into(), "db-1".into());
        n.annotations
            .insert("summary".into(), "disk 95% full".into());
        app.app.alert_notices().send(n.clone()).await.unwrap();

        let got = wait_for(&hook, 2).await;
        assert_eq!(
            got[0].1, got[1].1,
            "{}: the retry sends the same payload",
            db.kind
        );
        let p = &got[1].1;
        assert_eq!(p["version"], "4");
        assert_eq!(p["status"], "firing");
        assert_eq!(p["receiver"], "hook");
        assert_eq!(p["groupLabels"]["alertname"], "DiskFull");
        assert_eq!(p["externalURL"], "https://wp.example");
        assert!(
            p["groupKey"]
                .as_str()
                .unwrap()
                .contains("alertname=\"DiskFull\"")
        );
        let a = &p["alerts"][0];
        assert_eq!(a["status"], "firing");
        assert_eq!(a["labels"]["instance"], "db-1");
        assert_eq!(a["annotations"]["summary"], "disk 95% full");
        assert_eq!(a["fingerprint"], "fp5");
        assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(a["url"], "https://wp.example/alerts/5");

        let row = common::eventually(Duration::from_secs(10), || async {
            let (_, body) = app.get_json("/api/v1/notifications?receiver=hook").await;
            let row = body["notifications"][0].clone();
            (row["state"] == "delivered").then_some(row)
        })
        .await
        .expect("delivered");
        assert_eq!(row["attempts"], 2);
        assert_eq!(row["kind"], "webhook");

        n.state = AlertState::Resolved;
        n.ends_at = Some(Utc::now());
        app.app.alert_notices().send(n).await.unwrap();
        let got = wait_for(&hook, 3).await;
        assert_eq!(got[2].1["status"], "resolved", "{}", db.kind);
        assert_ne!(got[2].1["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
        app.stop().await;
    }
}

#[tokio::test]
async fn webhook_client_errors_are_not_retried() {
    let db = common::sqlite_db();
    let (url, hook) = start_hook(vec![400]).await;
    let app = TestApp::start(config(&db.url, &url)).await;
    app.app
        .alert_notices()
        .send(AlertNotice::test(1, "fp1", "X"))
        .await
        .unwrap();
    wait_for(&hook, 1).await;
    let row = common::eventually(Duration::from_secs(10), || async {
        let (_, body) = app.get_json("/api/v1/notifications?state=failed").await;
        let row = body["notifications"][0].clone();
        (!row.is_null()).then_some(row)
    })
    .await
    .expect("failed row");
    assert!(
        row["last_error"].as_str().unwrap().contains("HTTP 400"),
        "{row}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(hook.received.lock().unwrap().len(), 1);
    app.stop().await;
}
