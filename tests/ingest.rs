//! Each ingest format end to end on SQLite and PostgreSQL: Alertmanager's webhook,
//! Alertmanager's v2 alert API (plus the read endpoints amtool uses), and ntopng's
//! webhook with a recorded sample, its shared secret and its test button.

mod alerts_support;
mod common;

use alerts_support::*;
use base64::Engine;
use common::{TestApp, databases, test_config};
use serde_json::{Value, json};
use watchpost::config::{Role, Secret, TokenConfig};

fn ntopng_sample() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/ntopng_webhook.json"
    ))
    .expect("fixture");
    serde_json::from_str(&text).expect("fixture is JSON")
}

#[tokio::test]
async fn alertmanager_webhook_v4() {
    for db in databases().await {
        let app = TestApp::start(test_config(&db.url)).await;
        let k = db.kind;
        let payload = |status: &str, ends: &str| {
            json!({
                "version": "4",
                "groupKey": "{}:{alertname=\"InstanceDown\"}",
                "truncatedAlerts": 0,
                "status": status,
                "receiver": "watchpost",
                "groupLabels": {"alertname": "InstanceDown"},
                "commonLabels": {"alertname": "InstanceDown", "job": "node"},
                "commonAnnotations": {},
                "externalURL": "http://alertmanager:9093",
                "alerts": [{
                    "status": status,
                    "labels": {"alertname": "InstanceDown", "instance": "node-1:9100", "job": "node", "severity": "critical"},
                    "annotations": {"summary": "node-1 is down", "description": "node-1:9100 has been down for 5 minutes"},
                    "startsAt": at(-600),
                    "endsAt": ends,
                    "generatorURL": "http://prometheus:9090/graph?g0.expr=up+%3D%3D+0",
                    "fingerprint": "a1b2c3d4e5f60718"
                }, {
                    "status": status,
                    "labels": {"alertname": "InstanceDown", "instance": "node-2:9100", "job": "node", "severity": "critical"},
                    "annotations": {"summary": "node-2 is down"},
                    "startsAt": at(-300),
                    "endsAt": ends,
                    "generatorURL": "http://prometheus:9090/graph",
                    "fingerprint": "b1b2c3d4e5f60718"
                }]
            })
        };
        let r = post(
            &app,
            "/api/v1/webhooks/alertmanager",
            &payload("firing", "0001-01-01T00:00:00Z"),
            None,
        )
        .await;
        assert_eq!(r.status, 202, "{k}: {}", r.text);
        assert_eq!(r.body["accepted"], 2);
        let id = r.body["ids"][0].as_i64().unwrap();
        let a = alert_by_id(&app, id).await;
        assert_eq!(a["source"], "alertmanager", "{k}");
        assert_eq!(a["alertname"], "InstanceDown");
        assert_eq!(a["message"], "node-1 is down");
        assert_eq!(a["severity"], "critical");
        assert_eq!(a["state"], "firing");
        assert_eq!(a["ends_at"], Value::Null);
        assert_eq!(a["labels"]["instance"], "node-1:9100");
        assert_eq!(
            a["annotations"]["description"],
            "node-1:9100 has been down for 5 minutes"
        );

        let r = post(
            &app,
            "/api/v1/webhooks/alertmanager",
            &payload("resolved", &at(-10)),
            None,
        )
        .await;
        assert_eq!(r.status, 202, "{k}: {}", r.text);
        assert_eq!(r.body["ids"][0], id, "{k}: same alert");
        let a = alert_by_id(&app, id).await;
        assert_eq!(a["state"], "resolved", "{k}");
        assert_eq!(event_kinds(&a), ["fired", "resolved"]);

        let r = post(
            &app,
            "/api/v1/webhooks/alertmanager",
            &json!({"version": "2", "alerts": []}),
            None,
        )
        .await;
        assert_eq!(r.status, 400);
        assert!(r.body["error"].as_str().unwrap().contains("version"));
        app.stop().await;
    }
}

#[tokio::test]
async fn alertmanager_v2_api() {
    for db in databases().await {
        let app = TestApp::start(test_config(&db.url)).await;
        let k = db.kind;
        let alerts = json!([
            {
                "labels": {"alertname": "HighLatency", "service": "checkout", "severity": "warning"},
                "annotations": {"summary": "p99 latency above 500ms"},
                "startsAt": at(-120),
                "endsAt": at(240),
                "generatorURL": "http://prometheus:9090/graph?g0.expr=latency"
            },
            {
                "labels": {"alertname": "Watchdog"},
                "annotations": {}
            }
        ]);
        let r = post(&app, "/api/v2/alerts", &alerts, None).await;
        assert_eq!(r.status, 200, "{k}: {}", r.text);
        assert!(
            r.text.is_empty(),
            "{k}: Alertmanager answers an empty body: {:?}",
            r.text
        );
        let list = list_all(&app, "source=prometheus").await;
        assert_eq!(list.len(), 2, "{k}");
        let hl = list
            .iter()
            .find(|a| a["alertname"] == "HighLatency")
            .unwrap();
        assert_eq!(hl["message"], "p99 latency above 500ms");
        assert_eq!(hl["severity"], "warning");
        assert_eq!(hl["type"], "application");
        assert_eq!(hl["state"], "firing");
        assert!(hl["ends_at"].is_string(), "{k}: endsAt kept: {hl}");
        let wd = list.iter().find(|a| a["alertname"] == "Watchdog").unwrap();
        assert!(
            wd["ends_at"].is_string(),
            "{k}: no endsAt → resolve timeout"
        );

        // Prometheus resends; a resolved alert arrives with endsAt in the past.
        assert_eq!(
            post(&app, "/api/v2/alerts", &alerts, None).await.status,
            200
        );
        let resolve = json!([{
            "labels": {"alertname": "HighLatency", "service": "checkout", "severity": "warning"},
            "annotations": {"summary": "p99 latency above 500ms"},
            "startsAt": at(-120),
            "endsAt": at(-1)
        }]);
        assert_eq!(
            post(&app, "/api/v2/alerts", &resolve, None).await.status,
            200
        );
        let hl = alert_by_id(&app, hl["id"].as_i64().unwrap()).await;
        assert_eq!(hl["count"], 2, "{k}");
        assert_eq!(hl["state"], "resolved", "{k}");

        // What amtool and Prometheus read.
        let r = get(&app, "/api/v2/alerts", None).await;
        assert_eq!(r.status, 200);
        let got = r.body.as_array().unwrap();
        assert_eq!(got.len(), 1, "{k}: only firing alerts: {got:?}");
        assert_eq!(got[0]["labels"]["alertname"], "Watchdog");
        assert_eq!(got[0]["status"]["state"], "active");
        assert!(got[0]["fingerprint"].is_string() && got[0]["startsAt"].is_string());
        let r = get(&app, "/api/v2/alerts?filter=alertname%3D%22Nope%22", None).await;
        assert_eq!(r.body, json!([]));
        let r = get(&app, "/api/v2/status", None).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body["cluster"]["status"], "disabled");
        assert!(r.body["versionInfo"]["version"].is_string());

        let r = post(&app, "/api/v2/alerts", &json!([{"labels": {}}]), None).await;
        assert_eq!(r.status, 400, "{k}");
        assert!(
            r.body["error"].as_str().unwrap().contains("[0].labels"),
            "{}",
            r.text
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn ntopng_recorded_sample() {
    for db in databases().await {
        let app = TestApp::start(test_config(&db.url)).await;
        let k = db.kind;
        let r = post(&app, "/api/v1/webhooks/ntopng", &ntopng_sample(), None).await;
        assert_eq!(r.status, 202, "{k}: {}", r.text);
        assert_eq!(r.body["accepted"], 4);
        let list = list_all(&app, "source=ntopng").await;
        assert_eq!(list.len(), 4, "{k}");
        let by = |name: &str| {
            list.iter()
                .find(|a| a["alertname"] == name)
                .unwrap_or_else(|| panic!("{k}: {name} missing: {list:?}"))
                .clone()
        };
        let scan = by("syn_scan");
        assert_eq!(scan["severity"], "critical", "{k}: score 150");
        assert_eq!(scan["type"], "security");
        assert_eq!(scan["state"], "firing");
        assert_eq!(scan["labels"]["instance"], "192.168.1.23");
        assert_eq!(scan["starts_at"], "2024-11-23T08:18:00.000Z");
        assert!(
            scan["message"].as_str().unwrap().contains("192.168.1.23"),
            "{scan}"
        );
        assert_eq!(scan["annotations"]["score"], "150");

        let flow = by("blacklisted");
        assert_eq!(flow["type"], "security", "{k}");
        assert_eq!(flow["state"], "firing");
        assert_eq!(flow["labels"]["srv_ip"], "185.220.101.7");
        assert_eq!(flow["labels"]["srv_port"], "443");
        assert!(
            flow["ends_at"].is_string(),
            "{k}: one-shot flow alerts time out"
        );
        assert!(
            flow["message"]
                .as_str()
                .unwrap()
                .contains("tor-exit.example.org")
        );

        let drops = by("too_many_drops");
        assert_eq!(drops["state"], "resolved", "{k}: released");
        assert_eq!(drops["severity"], "warning");
        assert_eq!(drops["type"], "network", "{k}: {drops}");
        assert_eq!(drops["ends_at"], "2024-11-23T08:17:00.000Z");

        // ntopng itself files its DNS-traffic host check under security.
        let dns = by("dns_traffic");
        assert_eq!(dns["type"], "security", "{k}");
        assert_eq!(dns["severity"], "warning");

        // The same payload again repeats; the test button stores nothing.
        let r = post(&app, "/api/v1/webhooks/ntopng", &ntopng_sample(), None).await;
        assert_eq!(r.status, 202);
        assert_eq!(
            alert_by_id(&app, scan["id"].as_i64().unwrap()).await["count"],
            2
        );
        let test_button = json!({"version": "0.2", "timestamp": 1732349990, "alerts": []});
        let r = post(&app, "/api/v1/webhooks/ntopng", &test_button, None).await;
        assert!((200..300).contains(&r.status), "{k}: {}", r.text);
        assert_eq!(r.body["accepted"], 0);
        assert_eq!(list_all(&app, "").await.len(), 4, "{k}");
        app.stop().await;
    }
}

#[tokio::test]
async fn ntopng_shared_secret_and_basic_auth() {
    let db = common::sqlite_db();
    let mut cfg = test_config(&db.url);
    cfg.alerts.ntopng_shared_secret = Some(Secret("s3cr3t-from-ntopng".into()));
    cfg.auth.tokens = vec![TokenConfig {
        token: Secret("operator-token-1".into()),
        role: Role::Operator,
        name: Some("ops".into()),
    }];
    let app = TestApp::start(cfg).await;
    let mut wrong = ntopng_sample();
    wrong["sharedsecret"] = json!("guess");
    let r = post(&app, "/api/v1/webhooks/ntopng", &wrong, None).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.body["error"].as_str().unwrap().contains("sharedsecret"));
    let mut missing = ntopng_sample();
    missing.as_object_mut().unwrap().remove("sharedsecret");
    assert_eq!(
        post(&app, "/api/v1/webhooks/ntopng", &missing, None)
            .await
            .status,
        401
    );
    assert!(list_all(&app, "").await.is_empty());
    let r = post(&app, "/api/v1/webhooks/ntopng", &ntopng_sample(), None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["accepted"], 4);
    app.stop().await;

    // Without a shared secret, ntopng authenticates with basic auth (password = token).
    let db = common::sqlite_db();
    let mut cfg = test_config(&db.url);
    cfg.auth.tokens = vec![TokenConfig {
        token: Secret("operator-token-1".into()),
        role: Role::Operator,
        name: Some("ntopng-box".into()),
    }];
    let app = TestApp::start(cfg).await;
    assert_eq!(
        post(&app, "/api/v1/webhooks/ntopng", &ntopng_sample(), None)
            .await
            .status,
        401
    );
    let basic = base64::engine::general_purpose::STANDARD.encode("ntopng:operator-token-1");
    let r = app
        .client
        .post(app.url("/api/v1/webhooks/ntopng"))
        .header("authorization", format!("Basic {basic}"))
        .json(&ntopng_sample())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = post(
        &app,
        "/api/v1/webhooks/ntopng",
        &ntopng_sample(),
        Some("operator-token-1"),
    )
    .await;
    assert_eq!(r.status, 202);
    app.stop().await;
}
