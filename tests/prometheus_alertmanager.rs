//! A real Alertmanager (Debian's `prometheus-alertmanager`) notifies watchpost through
//! its webhook receiver, configured as shipped in `deploy/alertmanager/alertmanager.yml`
//! (with the bearer-token block enabled): alerts posted to Alertmanager show up in
//! `/api/v1/alerts` with source `alertmanager` and their labels intact, and resolve when
//! Alertmanager sends them resolved; on SQLite and PostgreSQL.

mod alerts_support;
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alerts_support::{alert_by_id, at, event_kinds, list_all};
use common::peers::{Peer, debian_binary, start_alertmanager};
use common::{TestApp, databases, eventually, test_config};
use serde_json::{Value, json};
use watchpost::config::{Role, Secret, TokenConfig};

/// The operator token Alertmanager presents (from its `credentials_file`).
const TOKEN: &str = "alertmanager-operator-token";
const WAIT: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped Alertmanager config, pointed at `watchpost`, with its commented bearer
/// token block enabled and timers short enough for a test.
fn shipped_config(watchpost: &str, token_file: &Path) -> String {
    let text = std::fs::read_to_string(repo().join("deploy/alertmanager/alertmanager.yml"))
        .expect("deploy/alertmanager/alertmanager.yml");
    let url = "http://127.0.0.1:8080/api/v1/webhooks/alertmanager";
    assert!(text.contains(url), "the shipped config posts to {url}");
    let mut out = Vec::new();
    for line in text.lines() {
        let indent = &line[..line.len() - line.trim_start().len()];
        let body = line.trim_start();
        let key = body.split(':').next().unwrap_or_default();
        out.push(match key {
            "group_wait" => format!("{indent}group_wait: 0s"),
            "group_interval" => format!("{indent}group_interval: 1s"),
            "repeat_interval" => format!("{indent}repeat_interval: 1h"),
            _ if body.starts_with("# http_config:")
                || body.starts_with("#   authorization:")
                || body.starts_with("#     type: Bearer") =>
            {
                format!("{indent}{}", &body[2..])
            }
            _ if body.starts_with("#     credentials_file:") => {
                format!("{indent}    credentials_file: {}", token_file.display())
            }
            _ => line.replace(url, &format!("{watchpost}/api/v1/webhooks/alertmanager")),
        });
    }
    let config = out.join("\n");
    assert!(
        config.contains("credentials_file: /"),
        "the shipped config documents the bearer token block:\n{config}"
    );
    config
}

/// Two alerts as a Prometheus would post them to Alertmanager; `ends` sets endsAt.
fn alerts(ends: &str) -> Value {
    json!([
        {
            "labels": {"alertname": "DiskFull", "severity": "critical",
                       "instance": "db1:9100", "mountpoint": "/var", "team": "storage"},
            "annotations": {"summary": "Disk /var on db1 is full", "runbook_url": "https://runbooks/disk"},
            "startsAt": at(-60),
            "endsAt": ends,
            "generatorURL": "http://prometheus:9090/graph?g0.expr=disk"
        },
        {
            "labels": {"alertname": "QueueSlow", "severity": "warning", "queue": "ingest"},
            "annotations": {"summary": "Queue ingest is slow"},
            "startsAt": at(-30),
            "endsAt": ends,
            "generatorURL": "http://prometheus:9090/graph?g0.expr=queue"
        }
    ])
}

async fn post_to_alertmanager(client: &reqwest::Client, am: &Peer, body: &Value) {
    let r = client
        .post(format!("{}/api/v2/alerts", am.base))
        .json(body)
        .send()
        .await
        .expect("POST to Alertmanager");
    assert_eq!(
        r.status().as_u16(),
        200,
        "{}",
        r.text().await.unwrap_or_default()
    );
}

/// Alertmanager's own count of webhook notifications (`total`, `failed`).
async fn am_notifications(client: &reqwest::Client, am: &Peer) -> (f64, f64) {
    let text = client
        .get(format!("{}/metrics", am.base))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("text");
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{{integration=\"webhook\"}}")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    (
        value("alertmanager_notifications_total"),
        value("alertmanager_notifications_failed_total"),
    )
}

fn labels(a: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(a["labels"].clone()).expect("labels")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_alertmanager_webhook_fires_and_resolves() {
    let Some(exe) = debian_binary(
        "/usr/bin/prometheus-alertmanager",
        "prometheus-alertmanager",
    ) else {
        return;
    };
    for db in databases().await {
        let k = db.kind;
        let mut config = test_config(&db.url);
        config.auth.tokens = vec![TokenConfig {
            token: Secret(TOKEN.into()),
            role: Role::Operator,
            name: Some("alertmanager".into()),
        }];
        let app = TestApp::start(config).await;
        let token_dir = tempfile::tempdir().expect("tempdir");
        let token_file = token_dir.path().join("watchpost.token");
        std::fs::write(&token_file, TOKEN).expect("token file");
        let mut am = start_alertmanager(exe, &shipped_config(&app.base, &token_file));
        am.wait_ready(WAIT).await;
        let client = common::client();
        let sent = alerts(&at(3600));
        post_to_alertmanager(&client, &am, &sent).await;

        let firing = eventually(WAIT, || async {
            let list = list_all(&app, "source=alertmanager&state=firing").await;
            (list.len() == 2).then_some(list)
        })
        .await
        .unwrap_or_else(|| panic!("{k}: Alertmanager's webhook never delivered:\n{}", am.log()));
        for want in sent.as_array().expect("array") {
            let name = want["labels"]["alertname"].as_str().expect("alertname");
            let got = firing
                .iter()
                .find(|a| a["alertname"] == name)
                .unwrap_or_else(|| panic!("{k}: {name} missing: {firing:?}"));
            assert_eq!(got["source"], "alertmanager", "{k}: {got}");
            assert_eq!(got["state"], "firing", "{k}: {got}");
            assert_eq!(got["labels"], want["labels"], "{k}: labels intact");
            assert_eq!(got["severity"], want["labels"]["severity"], "{k}: {got}");
            assert_eq!(got["message"], want["annotations"]["summary"], "{k}: {got}");
            assert_eq!(got["annotations"], want["annotations"], "{k}: {got}");
            assert!(got["ends_at"].is_null(), "{k}: firing has no end: {got}");
        }

        // Resolved: endsAt in the past; Alertmanager sends `resolved` at its next flush.
        post_to_alertmanager(&client, &am, &alerts(&at(-1))).await;
        let resolved = eventually(WAIT, || async {
            let list = list_all(&app, "source=alertmanager").await;
            (list.len() == 2 && list.iter().all(|a| a["state"] == "resolved")).then_some(list)
        })
        .await
        .unwrap_or_else(|| panic!("{k}: never resolved:\n{}", am.log()));
        assert_eq!(
            resolved.len(),
            2,
            "{k}: the same two alerts, resolved: {resolved:?}"
        );
        for a in &resolved {
            assert!(a["ends_at"].is_string(), "{k}: {a}");
            let before = firing
                .iter()
                .find(|f| f["id"] == a["id"])
                .unwrap_or_else(|| panic!("{k}: resolved {a} is not one that fired"));
            assert_eq!(labels(a), labels(before), "{k}");
            let detail = alert_by_id(&app, a["id"].as_i64().expect("id")).await;
            let kinds = event_kinds(&detail);
            assert_eq!(
                kinds.first().map(String::as_str),
                Some("fired"),
                "{k}: {kinds:?}"
            );
            assert!(kinds.iter().any(|e| e == "resolved"), "{k}: {kinds:?}");
        }
        let (total, failed) = am_notifications(&client, &am).await;
        assert!(
            total >= 2.0,
            "{k}: Alertmanager counted {total} webhook notifications"
        );
        assert_eq!(
            failed,
            0.0,
            "{k}: watchpost refused a notification:\n{}",
            am.log()
        );
        drop(am);
        app.stop().await;
    }
}
