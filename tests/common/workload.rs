//! A workload that makes every metric family of `/metrics` exist: the shipped rules
//! plus an always-firing one, a webhook receiver, alerts through every ingest endpoint
//! and of every severity, cache hits and misses, a 404.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::json;
use watchpost::config::Config;

use super::{TestApp, test_config};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A webhook receiver answering 200 and counting requests.
pub async fn start_hook() -> (String, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let app = Router::new().route(
        "/hook",
        post(move || {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind hook");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, count)
}

/// watchpost with the shipped rules, an always-firing test rule and a webhook route.
pub fn workload_config(db_url: &str, rules_dir: &Path, hook: &str) -> Config {
    std::fs::write(
        rules_dir.join("test.yml"),
        r#"groups:
  - name: dashboard-test
    interval: 1s
    rules:
      - alert: DashboardTestAlert
        expr: vector(1) > 0
        labels:
          severity: warning
        annotations:
          summary: "always firing"
"#,
    )
    .expect("write rule file");
    let mut c = Config::from_toml(&format!(
        r#"
[route]
receiver = "hook"
group_wait = "100ms"
group_interval = "1s"
[[receivers]]
name = "hook"
webhook = {{ url = "{hook}" }}
"#
    ))
    .expect("config");
    let base = test_config(db_url);
    c.listen = base.listen;
    c.database_url = base.database_url;
    c.database = base.database;
    c.collect.interval = Duration::from_secs(1);
    c.rules.files = vec![
        repo().join("alerts/*.yml").display().to_string(),
        rules_dir.join("test.yml").display().to_string(),
    ];
    c
}

/// Requests that make every route, status and metric family of the dashboards exist.
/// Writes carry `token` as a bearer token when given.
pub async fn traffic(app: &TestApp, token: Option<&str>) {
    let now = chrono::Utc::now();
    let ingest = [
        (
            "/api/v1/alerts",
            json!([
                {"message": "disk almost full", "severity": "critical", "source": "dash", "labels": {"host": "a"}},
                {"message": "queue slow", "severity": "warning", "source": "dash", "labels": {"host": "b"}},
                {"message": "deploy done", "severity": "info", "source": "dash", "labels": {"host": "c"}}
            ]),
        ),
        (
            "/api/v2/alerts",
            json!([{"labels": {"alertname": "FromProm", "severity": "warning"},
                    "annotations": {"summary": "prom"}, "startsAt": now.to_rfc3339()}]),
        ),
        (
            "/api/v1/webhooks/alertmanager",
            json!({"version": "4", "groupKey": "{}:{}", "status": "firing", "receiver": "wp",
                   "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
                   "externalURL": "http://am", "truncatedAlerts": 0,
                   "alerts": [{"status": "firing", "labels": {"alertname": "FromAM", "severity": "critical"},
                               "annotations": {}, "startsAt": now.to_rfc3339(),
                               "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": "x"}]}),
        ),
    ];
    for (path, body) in &ingest {
        let mut req = app.client.post(app.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("POST");
        let status = resp.status().as_u16();
        let reply = resp.text().await.unwrap_or_default();
        assert!(status < 300, "POST {path}: {status} {reply}");
    }
    let end = chrono::Utc::now().timestamp();
    let range = format!(
        "/api/v1/query_range?query=up&start={}&end={}&step=15",
        end - 600,
        end - 300
    );
    let gets = [
        "/health",
        "/ready",
        "/metrics",
        "/api/v1/alerts",
        "/api/v1/alerts/stats?window=1h",
        "/api/v1/alerts/stats?window=1h",
        "/api/v1/rules",
        "/api/v1/query?query=vector(1)",
        range.as_str(),
        range.as_str(),
        "/no/such/page",
    ];
    for path in gets {
        let (status, _) = app.get_text(path).await;
        let want = if path == "/no/such/page" { 404 } else { 200 };
        assert_eq!(status, want, "GET {path}");
    }
}
