//! `/metrics` and the shipped files against the real tools: `promtool check metrics` on
//! the live text exposition after a workload that makes every family exist, a real
//! Prometheus scraping the OpenMetrics exposition (its strict parser), `promtool check
//! rules` on every shipped rule file, `promtool check config` on the shipped Prometheus
//! config and `amtool check-config` on the shipped Alertmanager config.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use common::peers::{debian_binary, start_prometheus};
use common::workload::{start_hook, traffic, workload_config};
use common::{TestApp, eventually, sqlite_db};
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `promtool check metrics` with `text` on stdin.
fn promtool_check_metrics(promtool: &str, text: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    let mut stdin = child.stdin.take().expect("stdin");
    let body = text.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(body.as_bytes()));
    let out = child.wait_with_output().expect("promtool output");
    writer.join().expect("writer").expect("write stdin");
    out
}

/// watchpost with the full workload applied and a notification delivered.
async fn busy_app(db_url: &str, rules: &std::path::Path) -> TestApp {
    let (hook, count) = start_hook().await;
    let app = TestApp::start(workload_config(db_url, rules, &hook)).await;
    traffic(&app, None).await;
    let notified = eventually(Duration::from_secs(30), || async {
        (count.load(std::sync::atomic::Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    assert!(notified.is_some(), "no notification reached the webhook");
    app
}

/// Families that must be in the exposition for the check to mean anything.
const FAMILIES: &[&str] = &[
    "watchpost_http_requests_total",
    "watchpost_http_request_duration_seconds",
    "watchpost_db_queries_total",
    "watchpost_db_query_duration_seconds",
    "watchpost_db_slow_queries_total",
    "watchpost_db_pool_connections",
    "watchpost_cache_requests_total",
    "watchpost_cache_entries",
    "watchpost_cache_evictions_total",
    "watchpost_batch_queue_depth",
    "watchpost_batch_queue_capacity",
    "watchpost_batch_flush_duration_seconds",
    "watchpost_batch_items_total",
    "watchpost_batch_retries_total",
    "system_cpu_usage_ratio",
    "system_cpu_core_usage_ratio",
    "system_load1",
    "system_memory_used_bytes",
    "system_disk_used_bytes",
    "system_network_received_bytes_total",
    "process_cpu_seconds_total",
    "watchpost_alerts_active",
    "watchpost_alerts_received_total",
    "watchpost_alerts_fired_total",
    "watchpost_rule_evaluations_total",
    "watchpost_rule_evaluation_failures_total",
    "watchpost_rule_evaluation_duration_seconds",
    "watchpost_notifications_total",
    "watchpost_notification_queue_depth",
    "watchpost_log_events_total",
];

#[tokio::test]
async fn promtool_finds_nothing_in_the_live_text_exposition() {
    let Some(promtool) = debian_binary("/usr/bin/promtool", "prometheus") else {
        return;
    };
    let db = sqlite_db();
    let rules = tempfile::tempdir().expect("tempdir");
    let app = busy_app(&db.url, rules.path()).await;
    let (status, text) = app.get_text("/metrics").await;
    assert_eq!(status, 200);
    for family in FAMILIES {
        assert!(
            text.contains(&format!("\n{family}")) || text.contains(&format!("\n{family}_")),
            "{family} missing from /metrics"
        );
    }
    // Each of the workload's three generic alerts started firing once.
    for severity in ["critical", "warning", "info"] {
        let line =
            format!("watchpost_alerts_fired_total{{severity=\"{severity}\",source=\"dash\"}} 1");
        assert!(text.contains(&line), "{line} missing from /metrics");
    }
    let out = promtool_check_metrics(promtool, &text);
    let findings = output_text(&out);
    assert!(
        out.status.success() && findings.trim().is_empty(),
        "promtool check metrics ({}):\n{findings}",
        out.status
    );

    // promtool reads stdin as text 0.0.4 only, so an OpenMetrics counter family `x`
    // (spec: no `_total` in the family name) looks like a help-less `x_total` to it.
    // That is its only allowed finding; anything else is a real lint problem.
    let resp = app
        .client
        .get(app.url("/metrics"))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .expect("GET");
    let om = resp.text().await.expect("body");
    assert!(om.ends_with("# EOF\n"), "OpenMetrics must end with # EOF");
    let counters: Vec<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    assert!(
        counters.contains(&"watchpost_http_requests"),
        "{counters:?}"
    );
    let out = promtool_check_metrics(promtool, &om);
    for line in output_text(&out).lines().filter(|l| !l.trim().is_empty()) {
        let artefact = line
            .strip_suffix(" no help text")
            .and_then(|name| name.strip_suffix("_total"))
            .is_some_and(|family| counters.contains(&family));
        assert!(artefact, "promtool on OpenMetrics: {line}");
    }
    app.stop().await;
}

/// What the proxy saw of each scrape: the response content type and sample count.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, usize)>>>);

struct Proxy {
    upstream: String,
    client: reqwest::Client,
    seen: Seen,
}

/// Forwards `GET /metrics` with the scraper's `Accept` and records what came back.
async fn forward(State(p): State<Arc<Proxy>>, headers: HeaderMap) -> impl IntoResponse {
    let mut req = p.client.get(format!("{}/metrics", p.upstream));
    if let Some(accept) = headers.get(header::ACCEPT) {
        req = req.header(header::ACCEPT, accept.as_bytes());
    }
    let Ok(resp) = req.send().await else {
        return (StatusCode::BAD_GATEWAY, HeaderMap::new(), String::new());
    };
    let mut out = HeaderMap::new();
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(header::HeaderValue::from_static(""));
    out.insert(header::CONTENT_TYPE, ctype.clone());
    let body = resp.text().await.unwrap_or_default();
    let samples = body
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    let ctype = ctype.to_str().unwrap_or_default().to_string();
    p.seen.0.lock().expect("lock").push((ctype, samples));
    (StatusCode::OK, out, body)
}

async fn start_proxy(upstream: &str) -> (String, Seen) {
    let seen = Seen::default();
    let proxy = Arc::new(Proxy {
        upstream: upstream.to_string(),
        client: common::client(),
        seen: seen.clone(),
    });
    let app = Router::new()
        .route("/metrics", get(forward))
        .with_state(proxy);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, seen)
}

/// The watchpost target of Prometheus' `/api/v1/targets` once it was scraped.
async fn scraped_target(client: &reqwest::Client, prom: &str) -> Option<Value> {
    let body: Value = client
        .get(format!("{prom}/api/v1/targets"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    body["data"]["activeTargets"]
        .as_array()?
        .iter()
        .find(|t| t["labels"]["job"] == "watchpost" && t["lastScrape"] != "0001-01-01T00:00:00Z")
        .filter(|t| t["health"] != "unknown")
        .cloned()
}

/// Prometheus asks for OpenMetrics first; its parser is strict (`# EOF`, `_total`
/// counters, `TYPE`/`HELP` per family) and fails the scrape on any error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_scrapes_the_openmetrics_exposition() {
    let Some(exe) = debian_binary("/usr/bin/prometheus", "prometheus") else {
        return;
    };
    let db = sqlite_db();
    let rules = tempfile::tempdir().expect("tempdir");
    let app = busy_app(&db.url, rules.path()).await;
    let (proxy, seen) = start_proxy(&app.base).await;
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: watchpost\n    static_configs:\n      - targets: [\"{proxy}\"]\n"
    );
    let mut prom = start_prometheus(exe, &[("prometheus.yml", &config)], &[]);
    prom.wait_ready(Duration::from_secs(60)).await;
    let client = common::client();
    // Three scrapes, so the one the sample count below refers to was recorded.
    let target = eventually(Duration::from_secs(60), || async {
        let t = scraped_target(&client, &prom.base).await?;
        (seen.0.lock().expect("lock").len() >= 3).then_some(t)
    })
    .await
    .unwrap_or_else(|| panic!("Prometheus never scraped:\n{}", prom.log()));
    assert_eq!(target["health"], "up", "{target}\n{}", prom.log());
    assert_eq!(target["lastError"], "", "{target}");
    let seen = seen.0.lock().expect("lock").clone();
    for (ctype, _) in &seen {
        assert!(
            ctype.starts_with("application/openmetrics-text; version=1.0.0"),
            "Prometheus got {ctype}"
        );
    }
    // Every sample line was ingested: scrape_samples_scraped of some scrape equals the
    // sample count of one of the bodies seen.
    let now = chrono::Utc::now().timestamp().to_string();
    let r: Value = client
        .get(format!("{}/api/v1/query", prom.base))
        .query(&[("query", "scrape_samples_scraped"), ("time", now.as_str())])
        .send()
        .await
        .expect("query")
        .json()
        .await
        .expect("JSON");
    let ingested: usize = r["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no scrape_samples_scraped: {r}"));
    assert!(
        seen.iter().any(|(_, n)| *n == ingested),
        "Prometheus ingested {ingested} samples; bodies had {:?}",
        seen.iter().map(|s| s.1).collect::<Vec<_>>()
    );
    drop(prom);
    app.stop().await;
}

/// `alerts/*.yml` and `alerts/optional/*.yml`.
fn shipped_rule_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["alerts", "alerts/optional"] {
        for entry in std::fs::read_dir(repo().join(dir)).expect("rules folder") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|x| x == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn shipped_rules_and_configs_pass_promtool_and_amtool() {
    let Some(promtool) = debian_binary("/usr/bin/promtool", "prometheus") else {
        return;
    };
    let files = shipped_rule_files();
    assert!(
        files.iter().any(|f| f.ends_with("optional/watchdog.yml")) && files.len() >= 9,
        "{files:?}"
    );
    let out = Command::new(promtool)
        .args(["check", "rules"])
        .args(&files)
        .output()
        .expect("promtool check rules");
    let text = output_text(&out);
    assert!(out.status.success(), "promtool check rules:\n{text}");
    assert_eq!(
        text.matches("SUCCESS").count(),
        files.len(),
        "one SUCCESS per file:\n{text}"
    );

    let out = Command::new(promtool)
        .args(["check", "config", "--syntax-only"])
        .arg(repo().join("deploy/prometheus/prometheus.yml"))
        .output()
        .expect("promtool check config");
    assert!(out.status.success(), "{}", output_text(&out));

    let Some(amtool) = debian_binary("/usr/bin/amtool", "prometheus-alertmanager") else {
        return;
    };
    let out = Command::new(amtool)
        .arg("check-config")
        .arg(repo().join("deploy/alertmanager/alertmanager.yml"))
        .output()
        .expect("amtool check-config");
    let text = output_text(&out);
    assert!(out.status.success(), "amtool check-config:\n{text}");
    assert!(text.contains("SUCCESS"), "{text}");
}
