//! A real Prometheus (Debian's `prometheus`) uses watchpost as its Alertmanager: a rule
//! `vector(1) > 0` evaluated every second fires into `/api/v2/alerts`, and the alert
//! shows up in `/api/v1/alerts`, on SQLite and PostgreSQL.

mod alerts_support;
mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use alerts_support::*;
use common::{TestApp, databases, eventually, free_port, test_config};

/// A Prometheus child process, killed on drop.
struct Prometheus {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus_binary() -> Option<&'static str> {
    let exe = "/usr/bin/prometheus";
    if Path::new(exe).exists() {
        return Some(exe);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but {exe} is missing: apt-get install prometheus");
    }
    eprintln!("{exe} missing: skipping");
    None
}

fn start_prometheus(exe: &str, alertmanager: &str) -> Prometheus {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("rules.yml"),
        r#"groups:
  - name: watchpost-test
    interval: 1s
    rules:
      - alert: AlwaysFiring
        expr: vector(1) > 0
        labels:
          severity: critical
          team: sre
        annotations:
          summary: "The always-firing test rule fired"
          description: "value {{ $value }}"
"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["rules.yml"]
alerting:
  alertmanagers:
    - api_version: v2
      timeout: 5s
      static_configs:
        - targets: ["{alertmanager}"]
"#
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new(exe)
        .current_dir(dir.path())
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        // Resend every second (default 1m): the first send happens before the
        // notifier has discovered its Alertmanager and is dropped.
        .arg("--rules.alert.resend-delay=1s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn prometheus");
    Prometheus { child, _dir: dir }
}

#[tokio::test]
async fn real_prometheus_fires_into_api_v2() {
    let Some(exe) = prometheus_binary() else {
        return;
    };
    for db in databases().await {
        let app = TestApp::start(test_config(&db.url)).await;
        let k = db.kind;
        let target = app.base.trim_start_matches("http://").to_string();
        let _prom = start_prometheus(exe, &target);
        let alert = eventually(Duration::from_secs(90), || async {
            list_all(&app, "source=prometheus")
                .await
                .into_iter()
                .find(|a| a["alertname"] == "AlwaysFiring")
        })
        .await
        .unwrap_or_else(|| panic!("{k}: Prometheus never delivered AlwaysFiring"));
        assert_eq!(alert["state"], "firing", "{k}: {alert}");
        assert_eq!(alert["severity"], "critical");
        assert_eq!(alert["labels"]["team"], "sre");
        assert_eq!(alert["message"], "The always-firing test rule fired");
        assert_eq!(alert["annotations"]["description"], "value 1");
        assert!(
            alert["ends_at"].is_string(),
            "{k}: Prometheus sends endsAt ahead"
        );
        let url = alert["generator_url"].as_str().unwrap_or_default();
        assert!(url.contains("/graph?g0.expr="), "{k}: {url}");
        // Resends are the same alert, counted.
        let id = alert["id"].as_i64().unwrap();
        let repeated = eventually(Duration::from_secs(60), || async {
            let a = alert_by_id(&app, id).await;
            (a["count"].as_i64() >= Some(2)).then_some(a)
        })
        .await
        .unwrap_or_else(|| panic!("{k}: no resend arrived"));
        assert_eq!(event_kinds(&repeated)[..2], ["fired", "repeated"]);
        assert_eq!(list_all(&app, "source=prometheus").await.len(), 1, "{k}");
        assert_eq!(
            metric(
                &app,
                r#"watchpost_alerts_received_total{source="prometheus"}"#
            )
            .await
            .map(|v| v >= 1.0),
            Some(true)
        );
        app.stop().await;
    }
}
