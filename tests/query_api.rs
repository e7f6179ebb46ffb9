//! The Prometheus-compatible query API through the real router: response shapes,
//! GET and POST form requests, errors, and self-scraped `/metrics` families becoming
//! queryable.

mod common;

use std::time::Duration;

use common::{TestApp, eventually, sqlite_db, test_config};
use serde_json::Value;

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn post_form(app: &TestApp, path: &str, body: &str) -> (u16, Value) {
    let r = app
        .client
        .post(app.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn start() -> (TestApp, common::TestDb) {
    let db = sqlite_db();
    let app = TestApp::start(test_config(&db.url)).await;
    (app, db)
}

/// Waits until `query` returns a non-empty vector; returns it.
async fn wait_for_vector(app: &TestApp, query: &str) -> Vec<Value> {
    let path = format!("/api/v1/query?query={}", enc(query));
    eventually(Duration::from_secs(10), || async {
        let (status, body) = app.get_json(&path).await;
        let result = body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (status == 200 && !result.is_empty()).then_some(result)
    })
    .await
    .unwrap_or_else(|| panic!("{query} never returned samples"))
}

#[tokio::test]
async fn self_scraped_metrics_become_queryable() {
    let (app, _db) = start().await;
    for _ in 0..3 {
        app.get_json("/health").await;
    }
    // After a couple of collect ticks the HTTP counter is in the store, with /metrics' labels.
    let result = wait_for_vector(
        &app,
        r#"watchpost_http_requests_total{route="/health",method="GET",status="200"} >= 3"#,
    )
    .await;
    assert_eq!(result.len(), 1);
    let metric = &result[0]["metric"];
    assert_eq!(metric["__name__"], "watchpost_http_requests_total");
    assert_eq!(metric["route"], "/health");
    let value: f64 = result[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(value >= 3.0, "{value}");
    assert!(result[0]["value"][0].is_number());

    // Histograms are stored as _bucket{le}, _sum and _count: a quantile works.
    let q = r#"histogram_quantile(0.5, sum by (le) (watchpost_http_request_duration_seconds_bucket{route="/health"}))"#;
    let result = wait_for_vector(&app, q).await;
    let p50: f64 = result[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(p50 > 0.0 && p50 <= 10.0, "{p50}");
    wait_for_vector(
        &app,
        r#"watchpost_http_request_duration_seconds_count{route="/health"}"#,
    )
    .await;
    // Gauges from the host collector, too.
    wait_for_vector(&app, "system_memory_total_bytes > 0").await;
    app.stop().await;
}

#[tokio::test]
async fn instant_query_shapes_get_and_post() {
    let (app, _db) = start().await;
    let (status, body) = app
        .get_json("/api/v1/query?query=1%2B1&time=1700000000")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "success");
    assert_eq!(body["data"]["resultType"], "scalar");
    // Whole seconds are written as integers, as Prometheus writes them.
    assert_eq!(body["data"]["result"], serde_json::json!([1700000000, "2"]));

    // Grafana's default: POST with a form body.
    let (status, body) = post_form(
        &app,
        "/api/v1/query",
        &format!(
            "query={}&time=2023-11-14T22:13:20Z",
            enc(r#"vector(3) * 2"#)
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["resultType"], "vector");
    assert_eq!(
        body["data"]["result"],
        serde_json::json!([{"metric": {}, "value": [1700000000, "6"]}])
    );

    let (_, body) = app
        .get_json(&format!("/api/v1/query?query={}", enc(r#""hello""#)))
        .await;
    assert_eq!(body["data"]["resultType"], "string");
    assert_eq!(body["data"]["result"][1], "hello");

    let (_, body) = app
        .get_json(&format!("/api/v1/query?query={}", enc("vector(1) / 0")))
        .await;
    assert_eq!(body["data"]["result"][0]["value"][1], "+Inf");

    // A range vector in an instant query is a matrix.
    wait_for_vector(&app, "watchpost_build_info").await;
    let (_, body) = app
        .get_json(&format!(
            "/api/v1/query?query={}",
            enc("watchpost_build_info[1m]")
        ))
        .await;
    assert_eq!(body["data"]["resultType"], "matrix");
    assert!(
        !body["data"]["result"][0]["values"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    app.stop().await;
}

#[tokio::test]
async fn errors_are_prometheus_shaped() {
    let (app, _db) = start().await;
    let bad = "sum(rate(x[5m])";
    let (status, body) = app
        .get_json(&format!("/api/v1/query?query={}", enc(bad)))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["status"], "error");
    assert_eq!(body["errorType"], "bad_data");
    let parser_message = watchpost::promql::parse(bad).unwrap_err();
    assert_eq!(body["error"], parser_message);

    let (status, body) = post_form(&app, "/api/v1/query", &format!("query={}", enc("1 +"))).await;
    assert_eq!(
        (status, body["errorType"].as_str()),
        (400, Some("bad_data")),
        "{body}"
    );

    for (path, needle) in [
        ("/api/v1/query", "query"),
        ("/api/v1/query?query=up&time=yesterday", "time"),
        ("/api/v1/query_range?query=up&start=0&end=10", "step"),
        ("/api/v1/query_range?query=up&start=10&end=0&step=1", "end"),
        (
            "/api/v1/query_range?query=up&start=0&end=10&step=0",
            "zero or negative",
        ),
        (
            "/api/v1/query_range?query=up&start=0&end=100000&step=1",
            "11,000 points",
        ),
        (
            "/api/v1/query_range?query=up%5B5m%5D&start=0&end=10&step=1",
            "range vector",
        ),
        ("/api/v1/query?query=histogram_count(up)", "histogram_count"),
        ("/api/v1/series", "match[]"),
        ("/api/v1/series?match[]=sum(up)", "match[]"),
        ("/api/v1/label/a-b/values", "invalid label name"),
    ] {
        let (status, body) = app.get_json(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["errorType"], "bad_data", "{path}");
        let msg = body["error"].as_str().unwrap();
        assert!(msg.contains(needle), "{path}: {msg}");
    }

    // Valid but not evaluable on the data: 422 execution.
    let q = r#"(vector(1) or label_replace(vector(2), "x", "y", "", "")) * on() vector(1)"#;
    let (status, body) = app
        .get_json(&format!("/api/v1/query?query={}", enc(q)))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errorType"], "execution");
    assert!(body["error"].as_str().unwrap().contains("multiple matches"));
    app.stop().await;
}

#[tokio::test]
async fn range_queries_series_labels_and_cache() {
    let (app, _db) = start().await;
    wait_for_vector(&app, "watchpost_build_info").await;
    // End a second in the future (fractional seconds are fine) so the samples are in range.
    let end = (chrono::Utc::now().timestamp_millis() + 1000) as f64 / 1000.0;
    let start = end - 30.0;
    let path = format!(
        "/api/v1/query_range?query={}&start={start}&end={end}&step=5s",
        enc("watchpost_build_info * 2")
    );
    let (status, body) = app.get_json(&path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["resultType"], "matrix");
    let series = body["data"]["result"].as_array().unwrap();
    assert_eq!(series.len(), 1);
    assert!(series[0]["metric"].get("__name__").is_none());
    assert!(series[0]["metric"]["version"].is_string());
    let values = series[0]["values"].as_array().unwrap();
    assert!(!values.is_empty());
    let last_t = values.last().unwrap()[0].as_f64().unwrap();
    assert!((last_t - end).abs() < 1e-6, "{last_t} vs {end}");
    assert!(values.iter().all(|p| p[1] == "2"));

    // A settled range (long past) is cached: the same query again is a hit, and a POST
    // form with the same parameters shares the entry.
    let cached = format!(
        "/api/v1/query_range?query={}&start=1700000000&end=1700000060&step=15",
        enc("vector(1) + 1")
    );
    let (status, first) = app.get_json(&cached).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        first["data"]["result"][0]["values"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    let (_, again) = app.get_json(&cached).await;
    assert_eq!(again, first);
    let (_, posted) = post_form(
        &app,
        "/api/v1/query_range",
        &format!(
            "query={}&start=1700000000&end=1700000060&step=15s",
            enc("vector(1) + 1")
        ),
    )
    .await;
    assert_eq!(posted, first);
    let (_, metrics) = app.get_text("/metrics").await;
    let counter = |result: &str| -> f64 {
        let prefix =
            format!(r#"watchpost_cache_requests_total{{cache="query_range",result="{result}"}}"#);
        metrics
            .lines()
            .find(|l| l.starts_with(&prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{prefix} missing"))
    };
    assert_eq!(counter("hit"), 2.0);
    assert_eq!(counter("miss"), 2.0);
    assert!(
        metrics.contains(r#"watchpost_cache_entries{cache="query_range"} 2"#),
        "two entries"
    );
    assert!(metrics.contains(r#"watchpost_cache_evictions_total{cache="query_range"}"#));

    // series, labels, label values (GET and POST).
    let (status, body) = app
        .get_json(&format!(
            "/api/v1/series?match[]={}",
            enc("watchpost_build_info")
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"][0]["__name__"], "watchpost_build_info");
    let (status, body) = post_form(
        &app,
        "/api/v1/series",
        &format!(
            "match[]={}&match[]={}&start={start}&end={end}",
            enc("watchpost_build_info"),
            enc(r#"{__name__="system_memory_total_bytes"}"#),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    // HTTP series exist once a scrape has seen a request.
    wait_for_vector(&app, "watchpost_http_requests_total").await;
    let (_, body) = app.get_json("/api/v1/labels").await;
    let names: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        names.contains(&"__name__") && names.contains(&"route"),
        "{names:?}"
    );
    let (_, body) = app
        .get_json(&format!(
            "/api/v1/labels?match[]={}",
            enc("watchpost_build_info")
        ))
        .await;
    assert_eq!(body["data"], serde_json::json!(["__name__", "version"]));
    let (_, body) = app.get_json("/api/v1/label/__name__/values").await;
    let values: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(values.contains(&"watchpost_http_requests_total"));
    assert!(values.windows(2).all(|w| w[0] <= w[1]), "sorted");
    let (_, body) = app
        .get_json(&format!(
            "/api/v1/label/version/values?match[]={}",
            enc("watchpost_build_info")
        ))
        .await;
    assert_eq!(body["data"], serde_json::json!([env!("CARGO_PKG_VERSION")]));
    app.stop().await;
}

#[tokio::test]
async fn status_endpoints_grafana_probes() {
    let (app, _db) = start().await;
    let (status, body) = app.get_json("/api/v1/status/buildinfo").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "success");
    assert!(body["data"]["version"].is_string());
    assert_eq!(body["data"]["watchpostVersion"], env!("CARGO_PKG_VERSION"));
    let (status, body) = app.get_json("/api/v1/status/runtimeinfo").await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["storageRetention"], "1h");
    let (status, body) = app
        .get_json("/api/v1/metadata?metric=watchpost_http_requests_total")
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["data"]["watchpost_http_requests_total"][0]["type"],
        "counter"
    );
    let (status, body) = app.get_json("/api/v1/status/tsdb").await;
    assert_eq!(status, 200);
    assert!(body["data"]["headStats"]["numSeries"].as_u64().unwrap() > 0);
    let (status, body) = app.get_json("/api/v1/query_exemplars?query=up").await;
    assert_eq!((status, body["data"].clone()), (200, serde_json::json!([])));
    app.stop().await;
}
