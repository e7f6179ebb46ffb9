//! Remote write in (`POST /api/v1/write`): samples stored with their timestamps and
//! queryable, refusals answered as Prometheus' receiver answers them (400, after the
//! acceptable series were stored), limits, roles; and a real Prometheus scraping a real
//! node_exporter with `remote_write` to watchpost.

mod common;

use std::time::Duration;

use prost::Message;
use serde_json::Value;
use watchpost::remote_write::proto::{Label, Sample, TimeSeries, WriteRequest};

use common::peers::{debian_binary, start_prometheus};
use common::prom::{query_at, raw_matrix};
use common::{TestApp, eventually, free_port, sqlite_db, test_config};

const STALE: f64 = f64::from_bits(0x7ff0_0000_0000_0002);

fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
        ..TimeSeries::default()
    }
}

fn body(timeseries: Vec<TimeSeries>) -> Vec<u8> {
    let raw = WriteRequest {
        timeseries,
        metadata: vec![],
    }
    .encode_to_vec();
    snap::raw::Encoder::new().compress_vec(&raw).unwrap()
}

/// POSTs a remote-write body; returns the status and the JSON error (or `null`).
async fn push(app: &TestApp, body: Vec<u8>, token: Option<&str>) -> (u16, Value) {
    let mut req = app
        .client
        .post(app.url("/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn error(v: &Value) -> &str {
    v["error"].as_str().unwrap_or_default()
}

/// `(t ms, value)` of a range query's only series.
async fn range(app: &TestApp, q: &str, start: i64, end: i64, step: &str) -> Vec<(i64, f64)> {
    let (status, body) = app
        .get_json(&format!(
            "/api/v1/query_range?query={}&start={}&end={}&step={step}",
            urlencode(q),
            start as f64 / 1000.0,
            end as f64 / 1000.0
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    let result = body["data"]["result"].as_array().unwrap();
    assert!(result.len() <= 1, "{body}");
    result
        .first()
        .map(|s| {
            s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                    (t, p[1].as_str().unwrap().parse().unwrap())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The instant vector of `q` at `t` ms as `(labels, value)`.
async fn instant(app: &TestApp, q: &str, t: i64) -> Vec<(Value, f64)> {
    let (status, body) = app
        .get_json(&format!(
            "/api/v1/query?query={}&time={}",
            urlencode(q),
            t as f64 / 1000.0
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["metric"].clone(),
                s["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or_else(|| panic!("{line_start} not in /metrics"))
}

fn now_s() -> i64 {
    watchpost::store::now_ms() / 1000 * 1000
}

#[tokio::test]
async fn samples_keep_their_timestamps_and_refusals_spare_the_rest() {
    let db = sqlite_db();
    let app = TestApp::start(test_config(&db.url)).await;
    let now = now_s();
    let start = now - 30 * 60_000;
    // Half an hour of history at 15 s: 121 samples valued 0..=120.
    let history: Vec<(i64, f64)> = (0..=120).map(|i| (start + i * 15_000, i as f64)).collect();
    let labels = [
        ("__name__", "rw_test_total"),
        ("job", "push"),
        ("instance", "a"),
    ];
    let (status, body) = push(&app, self::body(vec![series(&labels, &history)]), None).await;
    assert_eq!(status, 204, "{body}");
    let got = range(&app, "rw_test_total", start, now, "15").await;
    assert_eq!(got, history, "every sample at its own timestamp");
    let (_, s) = app.get_json("/api/v1/series?match[]=rw_test_total").await;
    assert_eq!(s["data"][0]["job"], "push", "{s}");
    let (_, l) = app.get_json("/api/v1/label/job/values").await;
    assert!(
        l["data"].as_array().unwrap().contains(&"push".into()),
        "{l}"
    );

    // A resend of the same request (a sender retrying after a lost answer) is fine.
    let (status, body) = push(&app, self::body(vec![series(&labels, &history)]), None).await;
    assert_eq!(status, 204, "{body}");

    // One request with good and bad series: the good ones are stored, the answer is a
    // 400 (never retried) naming each refusal.
    let fresh = [("__name__", "rw_fresh"), ("job", "push")];
    let mixed = vec![
        series(&fresh, &[(now - 5_000, 1.0), (now, 2.0)]),
        series(&labels, &[(start + 1_000, 9.0)]),
        series(&[("__name__", "rw_bad"), ("1bad", "x")], &[(now, 1.0)]),
        series(&[("__name__", "rw_old")], &[(now - 2 * 3_600_000, 1.0)]),
        series(&labels, &[(now + 1_000, 7.0), (now + 1_000, 8.0)]),
    ];
    let (status, body) = push(&app, self::body(mixed), None).await;
    assert_eq!(status, 400, "{body}");
    let e = error(&body);
    for needle in [
        "timeseries[1]",
        "out of order",
        "timeseries[2].labels",
        "\"1bad\"",
        "timeseries[3]",
        "tsdb.retention",
        "timeseries[4]",
    ] {
        assert!(e.contains(needle), "{needle:?} not in {e:?}");
    }
    assert_eq!(
        range(&app, "rw_fresh", now - 5_000, now, "5").await,
        vec![(now - 5_000, 1.0), (now, 2.0)]
    );
    assert_eq!(instant(&app, "rw_test_total", now + 1_000).await[0].1, 7.0);
    assert!(instant(&app, "rw_bad", now).await.is_empty());
    assert!(instant(&app, "rw_old", now).await.is_empty());

    // A stale marker ends the series at once, as in Prometheus.
    let gauge = [("__name__", "rw_gauge")];
    let samples = [
        (now - 60_000, 1.0),
        (now - 45_000, 2.0),
        (now - 30_000, STALE),
    ];
    assert_eq!(
        push(&app, self::body(vec![series(&gauge, &samples)]), None)
            .await
            .0,
        204
    );
    assert_eq!(instant(&app, "rw_gauge", now - 40_000).await[0].1, 2.0);
    assert!(instant(&app, "rw_gauge", now - 20_000).await.is_empty());

    // Not snappy, not protobuf: 400 saying so.
    let (status, body) = push(&app, b"not snappy at all".to_vec(), None).await;
    assert_eq!(status, 400, "{body}");
    assert!(error(&body).contains("snappy"), "{body}");
    let junk = snap::raw::Encoder::new().compress_vec(&[0xff; 32]).unwrap();
    let (status, body) = push(&app, junk, None).await;
    assert_eq!(status, 400, "{body}");
    assert!(error(&body).contains("protobuf"), "{body}");

    let (_, text) = app.get_text("/metrics").await;
    let outcome = |o: &str| {
        metric(
            &text,
            &format!("watchpost_remote_write_received_samples_total{{outcome=\"{o}\"}}"),
        )
    };
    // 121 + 2 (fresh) + 1 (the 7) + 3 (gauge).
    assert_eq!(outcome("appended"), 127.0);
    assert_eq!(outcome("repeated"), 121.0);
    assert_eq!(outcome("out_of_order"), 2.0);
    assert_eq!(outcome("invalid"), 1.0);
    assert_eq!(outcome("too_old"), 1.0);
    assert_eq!(
        metric(&text, "watchpost_remote_write_series_created_total"),
        3.0
    );
    app.stop().await;
}

#[tokio::test]
async fn limits_and_roles() {
    let db = sqlite_db();
    let mut cfg = test_config(&db.url);
    cfg.tsdb.max_write_bytes = 4096;
    cfg.tsdb.max_labels_per_series = 4;
    cfg.tsdb.max_label_length = 32;
    cfg.auth.tokens = common::role_tokens();
    let app = TestApp::start(cfg).await;
    let now = now_s();
    let one = || body(vec![series(&[("__name__", "rw_role")], &[(now, 1.0)])]);
    assert_eq!(push(&app, one(), None).await.0, 401);
    assert_eq!(push(&app, one(), Some("viewer-token-1")).await.0, 403);
    assert_eq!(push(&app, one(), Some("operator-token-1")).await.0, 204);

    let op = Some("operator-token-1");
    let many = [
        ("__name__", "rw_many"),
        ("a", "1"),
        ("b", "2"),
        ("c", "3"),
        ("d", "4"),
    ];
    let long = "x".repeat(33);
    let (status, body) = push(
        &app,
        self::body(vec![
            series(&many, &[(now, 1.0)]),
            series(&[("__name__", "rw_long"), ("l", &long)], &[(now, 1.0)]),
            series(&[("__name__", "rw_ok")], &[(now, 1.0)]),
        ]),
        op,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        error(&body).contains("tsdb.max_labels_per_series"),
        "{body}"
    );
    assert!(error(&body).contains("tsdb.max_label_length"), "{body}");
    assert_eq!(instant(&app, "rw_ok", now).await.len(), 1);

    // Over the body limit: 413 naming the key, whether declared or decompressed.
    let big: Vec<TimeSeries> = (0..200)
        .map(|i| {
            series(
                &[("__name__", "rw_big"), ("i", &i.to_string())],
                &[(now, 1.0)],
            )
        })
        .collect();
    let (status, body) = push(&app, self::body(big), op).await;
    assert_eq!(status, 413, "{body}");
    assert!(error(&body).contains("tsdb.max_write_bytes"), "{body}");
    // A small body that decompresses past the limit (a snappy bomb) is refused too.
    let raw = vec![0u8; 64 * 1024];
    let bomb = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
    assert!(bomb.len() < 4096);
    let (status, body) = push(&app, bomb, op).await;
    assert_eq!(status, 413, "{body}");
    assert!(error(&body).contains("tsdb.max_write_bytes"), "{body}");
    app.stop().await;

    // tsdb.max_series: new series refused and counted, existing ones keep taking samples.
    let db = sqlite_db();
    let mut cfg = test_config(&db.url);
    cfg.tsdb.max_series = 1;
    cfg.collect.interval = Duration::from_secs(3600);
    let app = TestApp::start(cfg).await;
    let (status, body) = push(
        &app,
        self::body(vec![series(&[("__name__", "rw_over")], &[(now, 1.0)])]),
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(error(&body).contains("tsdb.max_series"), "{body}");
    let (_, text) = app.get_text("/metrics").await;
    assert_eq!(
        metric(
            &text,
            "watchpost_remote_write_received_samples_total{outcome=\"series_limit\"}"
        ),
        1.0
    );
    assert_eq!(metric(&text, "watchpost_tsdb_max_series"), 1.0);
    assert_eq!(metric(&text, "watchpost_tsdb_series"), 1.0);
    assert!(metric(&text, "watchpost_tsdb_series_limit_refused_samples_total") >= 1.0);
    app.stop().await;
}

/// Debian's node_exporter on a free port, a few collectors only.
fn start_node_exporter(exe: &str) -> (common::peers::Peer, String) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let peer = common::peers::start_plain(
        "node_exporter",
        exe,
        port,
        &[
            format!("--web.listen-address={addr}"),
            "--collector.disable-defaults".into(),
            "--collector.cpu".into(),
            "--collector.meminfo".into(),
            "--collector.loadavg".into(),
            "--collector.filesystem".into(),
        ],
    );
    (peer, addr)
}

#[tokio::test]
async fn prometheus_remote_writes_node_exporter_series_with_the_same_values() {
    let Some(prom) = debian_binary("/usr/bin/prometheus", "prometheus") else {
        return;
    };
    let Some(ne) = debian_binary(
        "/usr/bin/prometheus-node-exporter",
        "prometheus-node-exporter",
    ) else {
        return;
    };
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(
        rules.path().join("node.yml"),
        r#"groups:
  - name: node
    rules:
      - alert: HostMemoryVisible
        expr: node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes * 100 < 101
        labels:
          severity: info
        annotations:
          summary: "{{ $labels.instance }} has {{ $value | humanize }}% memory available"
"#,
    )
    .unwrap();
    let db = sqlite_db();
    let mut cfg = test_config(&db.url);
    cfg.rules.files = vec![format!("{}/*.yml", rules.path().display())];
    cfg.rules.evaluation_interval = Duration::from_millis(500);
    let app = TestApp::start(cfg).await;
    let (_node, target) = start_node_exporter(ne);
    let config = format!(
        r#"global:
  scrape_interval: 1s
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ["{target}"]
remote_write:
  - url: {}/api/v1/write
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
"#,
        app.base
    );
    let mut prometheus = start_prometheus(prom, &[("prometheus.yml", &config)], &[]);
    prometheus.wait_ready(Duration::from_secs(60)).await;

    // Wait for a few seconds of samples in watchpost; then take the latest `up` time
    // watchpost has (Prometheus sent it, so Prometheus has it too).
    let client = common::client();
    let latest = eventually(Duration::from_secs(60), || async {
        let v = instant(&app, "count_over_time(up{job=\"node\"}[1m]) >= 5", now_s()).await;
        if v.is_empty() {
            return None;
        }
        let t = instant(&app, "timestamp(up{job=\"node\"})", now_s()).await;
        t.first().map(|(_, secs)| (secs * 1000.0).round() as i64)
    })
    .await
    .unwrap_or_else(|| panic!("no node series in watchpost:\n{}", prometheus.log()));

    for q in [
        "node_cpu_seconds_total[4s]",
        "node_memory_MemTotal_bytes[4s]",
        "node_load1[4s]",
        "node_filesystem_avail_bytes[4s]",
        "up[4s]",
    ] {
        let ours = raw_matrix(&query_at(&client, &app.base, q, latest).await);
        let theirs = raw_matrix(&query_at(&client, &prometheus.base, q, latest).await);
        assert!(!ours.is_empty(), "{q}: nothing in watchpost");
        assert_eq!(ours, theirs, "{q} at {latest}");
    }

    // A rule over the remote-written series fires, labelled as the series are.
    let found = eventually(Duration::from_secs(30), || async {
        let (_, body) = app.get_json("/api/v1/alerts").await;
        let text = body.to_string();
        (text.contains("HostMemoryVisible") && text.contains(&target)).then_some(())
    })
    .await;
    assert!(found.is_some(), "HostMemoryVisible did not fire");
    drop(prometheus);
    app.stop().await;
}
