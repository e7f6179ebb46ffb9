//! HTTP surface of the foundation: /health, /ready, /metrics, 404s, route labels.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{TestApp, databases, test_config};

/// Every metric name of INTERFACE.md's HTTP, DB, system and log groups.
const CONTRACT_METRICS: &[&str] = &[
    "watchpost_http_requests_total",
    "watchpost_http_request_duration_seconds",
    "watchpost_db_queries_total",
    "watchpost_db_query_duration_seconds",
    "watchpost_db_pool_connections",
    "watchpost_db_slow_queries_total",
    "system_cpu_usage_ratio",
    "system_cpu_core_usage_ratio",
    "system_load1",
    "system_load5",
    "system_load15",
    "system_memory_total_bytes",
    "system_memory_used_bytes",
    "system_swap_used_bytes",
    "system_network_received_bytes_total",
    "system_network_transmitted_bytes_total",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "watchpost_log_events_total",
];

fn has_sample(text: &str, name: &str) -> bool {
    text.lines().any(|l| {
        !l.starts_with('#')
            && l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ', '_']))
    })
}

#[tokio::test]
async fn health_ready_and_metrics_on_every_database() {
    for db in databases().await {
        let app = TestApp::start(test_config(&db.url)).await;
        let (status, body) = app.get_json("/health").await;
        assert_eq!(status, 200, "{}", db.kind);
        assert_eq!(body["status"], "ok");
        assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));

        let (status, body) = app.get_json("/ready").await;
        assert_eq!(status, 200, "{}: {body}", db.kind);
        assert_eq!(
            body,
            serde_json::json!({"status": "ready", "database": "up"})
        );

        let resp = app.client.get(app.url("/metrics")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
        let text = resp.text().await.unwrap();
        for name in CONTRACT_METRICS {
            assert!(
                has_sample(&text, name),
                "{}: {name} missing from /metrics",
                db.kind
            );
        }
        assert!(text.contains("watchpost_db_pool_connections{state=\"idle\"}"));
        assert!(text.contains("watchpost_db_pool_connections{state=\"active\"}"));
        app.stop().await;
    }
}

#[tokio::test]
async fn openmetrics_is_negotiated() {
    let db = common::sqlite_db();
    let app = TestApp::start(test_config(&db.url)).await;
    app.get_text("/health").await;
    let resp = app
        .client
        .get(app.url("/metrics"))
        .header(
            "accept",
            "application/openmetrics-text; version=1.0.0,text/plain;q=0.5",
        )
        .send()
        .await
        .unwrap();
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        ctype.starts_with("application/openmetrics-text; version=1.0.0"),
        "{ctype}"
    );
    let text = resp.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "OpenMetrics must end with # EOF");
    assert!(
        text.contains("# TYPE watchpost_http_requests counter"),
        "{text}"
    );
    assert!(text.contains("watchpost_http_requests_total{"));
    app.stop().await;
}

/// promtool must have no findings on the live output.
#[tokio::test]
async fn promtool_check_metrics_is_silent() {
    let Some(promtool) = which("promtool") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "promtool missing under CI"
        );
        eprintln!("promtool not installed: skipping");
        return;
    };
    let db = common::sqlite_db();
    let app = TestApp::start(test_config(&db.url)).await;
    // Exercise routes so every family has samples.
    app.get_text("/health").await;
    app.get_text("/ready").await;
    app.get_text("/nope/42").await;
    let (_, text) = app.get_text("/metrics").await;
    let out = run_with_stdin(&promtool, &["check", "metrics"], &text);
    assert!(
        out.status.success(),
        "promtool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(findings.trim().is_empty(), "promtool findings:\n{findings}");
    app.stop().await;
}

#[tokio::test]
async fn unknown_paths_get_json_404_and_share_one_route_label() {
    let db = common::sqlite_db();
    let app = TestApp::start(test_config(&db.url)).await;
    for id in ["123", "456", "789"] {
        let (status, body) = app
            .get_json(&format!("/api/v1/alerts/{id}/nothing-here"))
            .await;
        assert_eq!(status, 404);
        assert!(
            body["error"].as_str().unwrap().contains("no route"),
            "{body}"
        );
    }
    let resp = app.client.delete(app.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("DELETE"));

    let (_, text) = app.get_text("/metrics").await;
    let http: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("watchpost_http_requests_total"))
        .collect();
    for l in &http {
        for id in ["123", "456", "789"] {
            assert!(!l.contains(id), "raw path in a label: {l}");
        }
    }
    assert!(
        text.contains(
            r#"watchpost_http_requests_total{method="GET",route="unmatched",status="404"} 3"#
        ),
        "{}",
        http.join("\n")
    );
    assert!(text.contains(
        r#"watchpost_http_requests_total{method="DELETE",route="/health",status="405"} 1"#
    ));
    app.stop().await;
}

#[tokio::test]
async fn db_query_metrics_count_per_query_name() {
    for db in databases().await {
        let app = TestApp::start(test_config(&db.url)).await;
        let count = |text: &str| -> u64 {
            text.lines()
                .find(|l| l.starts_with(r#"watchpost_db_queries_total{outcome="ok",query="ping"}"#))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let (_, before) = app.get_text("/metrics").await;
        for _ in 0..3 {
            assert_eq!(app.get_json("/ready").await.0, 200);
        }
        let (_, after) = app.get_text("/metrics").await;
        assert_eq!(count(&after), count(&before) + 3, "{}", db.kind);
        assert!(after.contains(r#"watchpost_db_query_duration_seconds_count{query="ping"}"#));
        assert!(after.contains(r#"watchpost_db_slow_queries_total{query="ping"} 0"#));
        assert!(after.contains(r#"watchpost_db_queries_total{outcome="ok",query="migrate"} 1"#));
        app.stop().await;
    }
}

#[tokio::test]
async fn ready_follows_postgres_down_and_up_without_restart() {
    let Some(cluster) = common::PgCluster::start() else {
        return;
    };
    let db = common::create_pg_database(&cluster.url()).await;
    let app = TestApp::start(test_config(&db.url)).await;
    assert_eq!(app.get_json("/ready").await.0, 200);

    cluster.stop_server();
    let (status, body) = app.get_json("/ready").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["database"], "down");
    assert_eq!(
        app.get_json("/health").await.0,
        200,
        "health stays up while the DB is down"
    );

    cluster.start_server();
    let back = common::eventually(Duration::from_secs(20), || async {
        (app.get_json("/ready").await.0 == 200).then_some(())
    })
    .await;
    assert!(
        back.is_some(),
        "/ready did not return to 200 after PostgreSQL came back"
    );
    app.stop().await;
}

fn which(name: &str) -> Option<String> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!path.is_empty()).then_some(path)
}

fn run_with_stdin(program: &str, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}
