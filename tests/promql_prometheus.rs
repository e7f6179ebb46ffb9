//! PromQL side by side with a real Prometheus (Debian's 2.42): the same samples are
//! remote-written into both (history of 90 minutes: counters with a reset, gauges,
//! classic histograms, a gap, a stale marker, series on and off the query grid), then
//! a few hundred range queries must give the same label sets, the same timestamps and
//! values within a relative 1e-5; queries Prometheus refuses must be refused too.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message;
use serde_json::Value;
use watchpost::remote_write::proto::{Label, Sample, TimeSeries, WriteRequest};

use common::peers::{debian_binary, start_prometheus};
use common::prom::{api_get, query_at, secs};
use common::{TestApp, sqlite_db, test_config};

const STALE: f64 = f64::from_bits(0x7ff0_0000_0000_0002);
const MIN: i64 = 60_000;
const STEP: i64 = 15_000;

/// A deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One synthetic series: labels and samples.
struct Synth {
    labels: Vec<(String, String)>,
    samples: Vec<(i64, f64)>,
}

fn synth(name: &str, labels: &[(&str, &str)]) -> Synth {
    let mut all = vec![("__name__".to_string(), name.to_string())];
    all.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Synth {
        labels: all,
        samples: Vec::new(),
    }
}

/// The data set, from `start` for 90 minutes.
fn data(start: i64) -> Vec<Synth> {
    let mut rng = Rng(0x5eed_1234_abcd_0042);
    let end = start + 90 * MIN;
    let mut out = Vec::new();
    // Counters, on the grid and off it (7.333 s late), one with a reset at 40 m.
    for (i, (instance, method, code)) in [
        ("i1", "get", "200"),
        ("i1", "get", "500"),
        ("i1", "post", "200"),
        ("i2", "get", "200"),
        ("i2", "post", "500"),
        ("i3", "get", "200"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut s = synth(
            "http_requests_total",
            &[
                ("job", "api"),
                ("instance", instance),
                ("method", method),
                ("code", code),
            ],
        );
        let offset = if i % 2 == 0 { 0 } else { 7_333 };
        let mut v = 0.0;
        let mut t = start + offset;
        while t <= end {
            v += (rng.next() * 10.0).floor();
            if i == 2 && t >= start + 40 * MIN && t < start + 40 * MIN + STEP {
                v = 1.0;
            }
            s.samples.push((t, v));
            t += STEP;
        }
        out.push(s);
    }
    // Gauges: a random walk per instance; one stops at 60 m (stale marker), one has a
    // 10-minute gap and comes back.
    for instance in ["i1", "i2", "i3"] {
        let mut s = synth(
            "node_memory_bytes",
            &[("job", "node"), ("instance", instance)],
        );
        let mut v = 1e9 * (1.0 + rng.next());
        let mut t = start;
        while t <= end {
            v += (rng.next() - 0.5) * 1e7;
            let gap = instance == "i2" && t >= start + 30 * MIN && t < start + 40 * MIN;
            if instance == "i3" && t == start + 60 * MIN {
                s.samples.push((t, STALE));
                break;
            }
            if !gap {
                s.samples.push((t, v.round()));
            }
            t += STEP;
        }
        out.push(s);
        let mut up = synth("up", &[("job", "node"), ("instance", instance)]);
        let mut t = start;
        while t <= end {
            let v = if instance == "i2" && rng.next() < 0.2 {
                0.0
            } else {
                1.0
            };
            up.samples.push((t, v));
            t += STEP;
        }
        out.push(up);
    }
    // A classic histogram per job: cumulative buckets, _sum and _count.
    for job in ["api", "web"] {
        let les = ["0.1", "0.5", "1", "+Inf"];
        let mut counts = [0.0; 4];
        let mut sum = 0.0;
        let mut series: Vec<Synth> = les
            .iter()
            .map(|le| {
                synth(
                    "request_duration_seconds_bucket",
                    &[("job", job), ("le", le)],
                )
            })
            .collect();
        let mut sum_s = synth("request_duration_seconds_sum", &[("job", job)]);
        let mut count_s = synth("request_duration_seconds_count", &[("job", job)]);
        let mut t = start;
        while t <= end {
            for _ in 0..20 {
                let d = rng.next() * 1.5;
                sum += d;
                for (i, le) in [0.1, 0.5, 1.0, f64::INFINITY].iter().enumerate() {
                    if d <= *le {
                        counts[i] += 1.0;
                    }
                }
            }
            for (i, s) in series.iter_mut().enumerate() {
                s.samples.push((t, counts[i]));
            }
            sum_s.samples.push((t, sum));
            count_s.samples.push((t, counts[3]));
            t += STEP;
        }
        out.extend(series);
        out.push(sum_s);
        out.push(count_s);
    }
    out
}

/// Remote-write bodies in time order: each holds every series' samples of 5 minutes.
fn bodies(data: &[Synth], start: i64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut from = start;
    let last = data
        .iter()
        .filter_map(|s| s.samples.last())
        .map(|s| s.0)
        .max()
        .unwrap_or(start);
    while from <= last {
        let to = from + 5 * MIN;
        let timeseries = data
            .iter()
            .map(|s| TimeSeries {
                labels: s
                    .labels
                    .iter()
                    .map(|(name, value)| Label {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                samples: s
                    .samples
                    .iter()
                    .filter(|(t, _)| *t >= from && *t < to)
                    .map(|&(timestamp, value)| Sample { value, timestamp })
                    .collect(),
                ..TimeSeries::default()
            })
            .filter(|ts| !ts.samples.is_empty())
            .collect();
        let raw = WriteRequest {
            timeseries,
            metadata: vec![],
        }
        .encode_to_vec();
        out.push(snap::raw::Encoder::new().compress_vec(&raw).unwrap());
        from = to;
    }
    out
}

async fn push(client: &reqwest::Client, base: &str, body: &[u8]) {
    let r = client
        .post(format!("{base}/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert!(
        status.is_success(),
        "{base}: {status} {}",
        r.text().await.unwrap_or_default()
    );
}

/// The queries: every function and operator a user can tell apart.
fn queries() -> Vec<String> {
    let mut q: Vec<String> = Vec::new();
    let counters = ["http_requests_total", "http_requests_total{code=\"500\"}"];
    let gauges = ["node_memory_bytes", "up"];
    for c in counters {
        for r in ["1m", "90s", "5m"] {
            for f in ["rate", "irate", "increase", "resets", "changes"] {
                q.push(format!("{f}({c}[{r}])"));
            }
        }
        q.push(format!("sum by (instance) (rate({c}[5m]))"));
        q.push(format!("sum without (method, code) (increase({c}[2m]))"));
    }
    for g in gauges {
        for r in ["1m", "5m", "10m"] {
            for f in [
                "delta",
                "idelta",
                "deriv",
                "avg_over_time",
                "min_over_time",
                "max_over_time",
                "sum_over_time",
                "count_over_time",
                "last_over_time",
                "stddev_over_time",
                "stdvar_over_time",
                "present_over_time",
                "changes",
            ] {
                q.push(format!("{f}({g}[{r}])"));
            }
            q.push(format!("quantile_over_time(0.9, {g}[{r}])"));
            q.push(format!("predict_linear({g}[{r}], 600)"));
            q.push(format!("holt_winters({g}[{r}], 0.5, 0.5)"));
            q.push(format!("absent_over_time({g}{{instance=\"i3\"}}[{r}])"));
        }
        q.push(g.to_string());
        q.push(format!("{g} offset 5m"));
        q.push(format!("{g} offset -2m"));
        q.push(format!("{g} @ end()"));
        q.push(format!("{g} @ start()"));
        q.push(format!("timestamp({g})"));
        for agg in [
            "sum", "avg", "min", "max", "count", "stddev", "stdvar", "group",
        ] {
            q.push(format!("{agg}({g})"));
            q.push(format!("{agg} by (instance) ({g})"));
            q.push(format!("{agg} without (instance) ({g})"));
        }
        q.push(format!("topk(2, {g})"));
        q.push(format!("bottomk(1, {g})"));
        q.push(format!("quantile(0.5, {g})"));
        q.push(format!("quantile by (job) (0.9, {g})"));
        for f in [
            "abs", "ceil", "floor", "sqrt", "exp", "ln", "log2", "log10", "sgn", "round",
        ] {
            q.push(format!("{f}({g} / 1e9)"));
        }
        q.push(format!("round({g} / 1e6, 0.5)"));
        q.push(format!("clamp({g} / 1e9, 1.2, 1.6)"));
        q.push(format!("clamp_min({g} / 1e9, 1.5)"));
        q.push(format!("clamp_max({g} / 1e9, 1.5)"));
        q.push(format!("sort({g})"));
        q.push(format!("sort_desc({g})"));
        q.push(format!("max_over_time({g}[10m:1m])"));
        q.push(format!("avg_over_time({g}[5m:30s] offset 1m)"));
    }
    q.extend(
        [
            "node_memory_bytes > 1.5e9",
            "node_memory_bytes > bool 1.5e9",
            "1.5e9 < node_memory_bytes",
            "node_memory_bytes == bool on(instance) group_left node_memory_bytes",
            "node_memory_bytes / on(instance) group_left up",
            "node_memory_bytes * ignoring(job) up",
            "up * on(instance) group_right() node_memory_bytes",
            "node_memory_bytes and up == 1",
            "node_memory_bytes unless up == 0",
            "node_memory_bytes or up",
            "up or vector(0)",
            "sum(up) / count(up)",
            "sum by (instance) (rate(http_requests_total[5m])) / on(instance) group_left up",
            "rate(http_requests_total[5m]) / ignoring(code) group_left sum without (code) (rate(http_requests_total[5m]))",
            "-node_memory_bytes",
            "node_memory_bytes % 7",
            "node_memory_bytes ^ 0.5",
            "2 ^ 3 ^ 2",
            "0x3d + node_memory_bytes * 1e-3",
            "Inf * up",
            "NaN * up",
            "-Inf",
            "node_memory_bytes atan2 up",
            "count_values(\"value\", up)",
            "count_values by (instance) (\"v\", up)",
            "topk by (job) (1, rate(http_requests_total[5m]))",
            "bottomk without (instance) (1, node_memory_bytes)",
            "histogram_quantile(0.9, sum by (le, job) (rate(request_duration_seconds_bucket[5m])))",
            "histogram_quantile(0.5, rate(request_duration_seconds_bucket[1m]))",
            "histogram_quantile(0.99, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
            "rate(request_duration_seconds_sum[5m]) / rate(request_duration_seconds_count[5m])",
            "label_replace(up, \"host\", \"$1\", \"instance\", \"i(.*)\")",
            "label_replace(up, \"instance\", \"\", \"instance\", \"i1\")",
            "label_join(up, \"both\", \"-\", \"job\", \"instance\")",
            "vector(1)",
            "vector(time())",
            "scalar(sum(up))",
            "scalar(up)",
            "time()",
            "minute()",
            "hour()",
            "day_of_week()",
            "day_of_month()",
            "day_of_year()",
            "days_in_month()",
            "month()",
            "year()",
            "hour(timestamp(up))",
            "absent(nonexistent_metric)",
            "absent(up{instance=\"zzz\", job=\"x\"})",
            "absent(up)",
            "max_over_time(rate(http_requests_total[1m])[10m:30s])",
            "rate(http_requests_total[5m] offset 10m)",
            "rate(http_requests_total[5m] @ end())",
            "increase(http_requests_total[10m:1m])",
            "deriv(node_memory_bytes[5m:1m])",
            "sum(rate(http_requests_total[5m])) by (instance) > 1",
            "count(up == 1) by (job)",
            "avg(node_memory_bytes) by (job) - min(node_memory_bytes) by (job)",
            "{__name__=~\"node_.*|up\", instance=\"i1\"}",
            "{job=\"node\"}",
            "up{instance=~\"i[12]\"}",
            "up{instance!~\"i[12]\"}",
            "up{instance!=\"i1\"}",
            "sgn(delta(node_memory_bytes[5m]))",
            "last_over_time(node_memory_bytes[20m])",
            // Matching, grouping and label copying.
            "node_memory_bytes * on(instance) group_left(job) up",
            "up * on(instance) group_left() (node_memory_bytes > 0)",
            "node_memory_bytes unless on(instance) up == 0",
            "node_memory_bytes and on() vector(1)",
            "up and on(instance) node_memory_bytes > 1.4e9",
            "sum by (instance) (http_requests_total) * on(instance) group_left up",
            "http_requests_total / ignoring(code, method) group_left sum by (job, instance) (http_requests_total)",
            "up == bool 1",
            "up != 1",
            "1 > bool 2",
            "time() - timestamp(up)",
            "timestamp(up offset 1m)",
            "-up",
            "- - up",
            "+up",
            "(up + 1) * 2 - 1",
            "up / 0",
            "-up / 0",
            "0 / up",
            "(up - 1) / (up - 1)",
            "node_memory_bytes % 1e6 > 5e5",
            "vector(1) + on() group_left sum(up)",
            // Nested and parameterised aggregations.
            "max(sum by (instance) (rate(http_requests_total[5m])))",
            "count(count by (instance) (up))",
            "sum(sum_over_time(up[5m]))",
            "quantile(0, node_memory_bytes)",
            "quantile(1, node_memory_bytes)",
            "quantile(1.5, node_memory_bytes)",
            "quantile(-0.5, node_memory_bytes)",
            "topk(0, up)",
            "topk(10, up)",
            "bottomk(2, rate(http_requests_total[5m]))",
            "topk(scalar(count(up)) - 1, node_memory_bytes)",
            "count_values without (instance) (\"v\", up)",
            "count_values(\"le\", request_duration_seconds_count > 0)",
            "stddev by (code) (rate(http_requests_total[5m]))",
            "avg without (le) (request_duration_seconds_bucket)",
            "group by (job) (http_requests_total)",
            "sum by (__name__) ({job=\"node\"})",
            "count by (__name__) ({__name__=~\"request_duration_seconds_.*\"})",
            // Histograms, edge quantiles.
            "histogram_quantile(0, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
            "histogram_quantile(1, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
            "histogram_quantile(1.5, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
            "histogram_quantile(-1, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
            "histogram_quantile(0.75, request_duration_seconds_bucket)",
            "histogram_quantile(0.9, sum by (le, job) (increase(request_duration_seconds_bucket[10m])))",
            // Labels.
            "label_replace(rate(http_requests_total[5m]), \"status\", \"${1}xx\", \"code\", \"(.).*\")",
            "label_replace(up, \"job\", \"new\", \"nonexistent\", \"\")",
            "label_replace(up, \"x\", \"$2\", \"instance\", \"(i)(.)\")",
            "label_join(http_requests_total, \"id\", \"/\", \"instance\", \"method\", \"code\")",
            "label_join(up, \"job\", \"\")",
            // Time modifiers and subqueries.
            "up @ start() offset 1m",
            "sum_over_time(up[10m] @ end())",
            "rate(http_requests_total[5m] offset -1m)",
            "max_over_time(node_memory_bytes[5m:15s])",
            "min_over_time(rate(http_requests_total[2m])[15m:1m] offset 2m)",
            "avg_over_time(sum by (job) (up)[10m:])",
            "rate(sum by (instance) (http_requests_total)[5m:30s])",
            "last_over_time(up[5m:1m] @ end())",
            "count_over_time(up[5m:7s])",
            // Functions over edge inputs.
            "clamp(up, 2, 1)",
            "clamp_min(-up, -0.5)",
            "round(node_memory_bytes / 1e9, 0.25)",
            "changes(up[30m])",
            "resets(request_duration_seconds_bucket[30m])",
            "irate(http_requests_total[30s])",
            "idelta(up[30s])",
            "deriv(http_requests_total[10m])",
            "predict_linear(http_requests_total[10m], -300)",
            "holt_winters(node_memory_bytes[10m], 0.1, 0.9)",
            "quantile_over_time(0.5, http_requests_total[5m])",
            "quantile_over_time(2, up[5m])",
            "absent_over_time(nonexistent[5m])",
            "absent(sum(nonexistent))",
            "absent(nonexistent{job=\"a\", instance=~\"x\"})",
            "present_over_time(up{instance=\"i3\"}[1m])",
            "scalar(vector(5)) * up",
            "vector(scalar(up{instance=\"i1\"}))",
            "sort(rate(http_requests_total[5m]))",
            "sort_desc(sum by (instance) (rate(http_requests_total[5m])))",
            "exp(up * 1000)",
            "ln(up - 1)",
            "sqrt(-up)",
            "acos(up)",
            "sin(up)",
            "deg(pi() * up)",
            "rad(180 * up)",
            "sgn(up - 0.5)",
            "minute(timestamp(up))",
            "days_in_month(vector(1709251200))",
            "day_of_week(vector(1e9))",
        ]
        .map(String::from),
    );
    q
}

/// Queries both must refuse.
const ERRORS: &[&str] = &[
    "{__name__=~\".*\"}",
    "rate(up)",
    "sum(up) by",
    "histogram_quantile(0.9)",
    "label_replace(up, \"1x\", \"$1\", \"instance\", \"(.*)\")",
    "up == on(job) node_memory_bytes",
];

/// Instant queries compared as whole answers (`resultType` and `result`).
const INSTANT: &[&str] = &[
    "up",
    "up[2m]",
    "node_memory_bytes[1m] offset 1m",
    "rate(http_requests_total[5m])",
    "sum by (job) (rate(http_requests_total[5m]))",
    "time()",
    "1 + 1",
    "\"a string\"",
    "scalar(sum(up))",
    "max_over_time(node_memory_bytes[10m:1m])",
    "node_memory_bytes[10m:1m]",
    "sort_desc(node_memory_bytes)",
    "topk(2, node_memory_bytes)",
    "histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
];

/// A JSON value with every array sorted (metadata answers are sets).
fn sorted(v: Value) -> Value {
    match v {
        Value::Array(a) => {
            let mut items: Vec<Value> = a.into_iter().map(sorted).collect();
            items.sort_by_key(|x| x.to_string());
            Value::Array(items)
        }
        other => other,
    }
}

/// An instant query's `data` (`resultType` and `result`, series in label order).
async fn instant(client: &reqwest::Client, base: &str, q: &str, t: i64) -> Value {
    let body = query_at(client, base, q, t).await;
    if body["status"] != "success" {
        return Value::String(format!("error {}", body["errorType"]));
    }
    let mut data = body["data"].clone();
    if let Some(result) = data["result"].as_array_mut() {
        result.sort_by_key(|s| s["metric"].to_string());
    }
    data
}

type Result_ = Result<BTreeMap<String, Vec<(i64, f64)>>, String>;

async fn range(
    client: &reqwest::Client,
    base: &str,
    q: &str,
    start: i64,
    end: i64,
    step: i64,
) -> Result_ {
    let params = [
        ("query", q.to_string()),
        ("start", secs(start)),
        ("end", secs(end)),
        ("step", secs(step)),
    ];
    let body = api_get(client, base, "/api/v1/query_range", &params).await;
    if body["status"] != "success" {
        return Err(body["error"].as_str().unwrap_or_default().to_string());
    }
    let mut out = BTreeMap::new();
    for s in body["data"]["result"].as_array().into_iter().flatten() {
        let points = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                let v = match p[1].as_str().unwrap() {
                    "NaN" => f64::NAN,
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    v => v.parse().unwrap(),
                };
                (t, v)
            })
            .collect();
        out.insert(s["metric"].to_string(), points);
    }
    Ok(out)
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || ((a - b).abs() <= 1e-5 * a.abs().max(b.abs()))
}

/// Why two answers differ, if they do.
fn differ(ours: &Result_, theirs: &Result_) -> Option<String> {
    match (ours, theirs) {
        (Err(_), Err(_)) => None,
        (Ok(_), Err(e)) => Some(format!("Prometheus refuses ({e}), watchpost answers")),
        (Err(e), Ok(_)) => Some(format!("watchpost refuses ({e}), Prometheus answers")),
        (Ok(a), Ok(b)) => {
            if a.keys().ne(b.keys()) {
                return Some(format!(
                    "label sets differ:\n  watchpost:  {:?}\n  Prometheus: {:?}",
                    a.keys().collect::<Vec<_>>(),
                    b.keys().collect::<Vec<_>>()
                ));
            }
            for (k, pa) in a {
                let pb = &b[k];
                let ta: Vec<i64> = pa.iter().map(|p| p.0).collect();
                let tb: Vec<i64> = pb.iter().map(|p| p.0).collect();
                if ta != tb {
                    return Some(format!(
                        "{k}: timestamps differ\n  watchpost:  {ta:?}\n  Prometheus: {tb:?}"
                    ));
                }
                if let Some((x, y)) = pa.iter().zip(pb).find(|(x, y)| !close(x.1, y.1)) {
                    return Some(format!(
                        "{k} at {}: watchpost {} Prometheus {}",
                        x.0, x.1, y.1
                    ));
                }
            }
            None
        }
    }
}

#[tokio::test]
async fn range_queries_answer_as_prometheus_does() {
    let Some(exe) = debian_binary("/usr/bin/prometheus", "prometheus") else {
        return;
    };
    let mut prometheus = start_prometheus(
        exe,
        &[("prometheus.yml", "global:\n  scrape_interval: 1h\n")],
        &["--web.enable-remote-write-receiver"],
    );
    prometheus.wait_ready(Duration::from_secs(60)).await;
    let db = sqlite_db();
    let mut cfg = test_config(&db.url);
    cfg.tsdb.retention = Duration::from_secs(3 * 3600);
    let app = TestApp::start(cfg).await;
    let client = common::client();

    let now = watchpost::store::now_ms();
    let start = (now - 95 * MIN) / MIN * MIN;
    let data = data(start);
    for body in bodies(&data, start) {
        push(&client, &prometheus.base, &body).await;
        push(&client, &app.base, &body).await;
    }

    let end = start + 90 * MIN;
    let mut failures = Vec::new();
    let mut compared = 0;
    let windows = [
        (start + 20 * MIN, end, 60_000),
        (start + 25 * MIN, start + 65 * MIN, 15_000),
        (start + 30 * MIN + 1_234, start + 50 * MIN, 17_000),
    ];
    for q in queries() {
        for &(from, to, step) in &windows {
            let ours = range(&client, &app.base, &q, from, to, step).await;
            let theirs = range(&client, &prometheus.base, &q, from, to, step).await;
            assert!(
                theirs.is_ok(),
                "Prometheus refused {q}: {theirs:?} (a broken test query)"
            );
            compared += 1;
            if let Some(why) = differ(&ours, &theirs) {
                failures.push(format!("{q} [{from}..{to} step {step}]: {why}"));
            }
        }
    }
    for q in ERRORS {
        let ours = range(&client, &app.base, q, start + 20 * MIN, end, 60_000).await;
        let theirs = range(&client, &prometheus.base, q, start + 20 * MIN, end, 60_000).await;
        assert!(theirs.is_err(), "Prometheus answers {q}");
        if ours.is_ok() {
            failures.push(format!(
                "{q}: Prometheus refuses ({theirs:?}), watchpost answers"
            ));
        }
    }
    // Instant queries: vectors, raw range vectors, scalars and strings, at times on and
    // off the samples' grid.
    for t in [start + 30 * MIN, start + 45 * MIN + 7_333, end] {
        for q in INSTANT {
            let ours = instant(&client, &app.base, q, t).await;
            let theirs = instant(&client, &prometheus.base, q, t).await;
            compared += 1;
            if ours != theirs {
                failures.push(format!(
                    "{q} at {t}:\n  watchpost:  {ours}\n  Prometheus: {theirs}"
                ));
            }
        }
    }
    // Metadata: series, label names and values, restricted to the pushed series.
    for path in [
        "/api/v1/series?match[]=up&match[]=node_memory_bytes",
        "/api/v1/labels?match[]={job=~\"node|api\"}",
        "/api/v1/label/instance/values?match[]=http_requests_total",
        "/api/v1/label/le/values?match[]={__name__=~\"request_.*\"}",
    ] {
        let get = |base: String| {
            let client = client.clone();
            async move {
                let v: Value = client
                    .get(format!("{base}{path}"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                sorted(v["data"].clone())
            }
        };
        let (ours, theirs) = (
            get(app.base.clone()).await,
            get(prometheus.base.clone()).await,
        );
        compared += 1;
        if ours != theirs {
            failures.push(format!(
                "{path}:\n  watchpost:  {ours}\n  Prometheus: {theirs}"
            ));
        }
    }
    app.stop().await;
    assert!(
        failures.is_empty(),
        "{} of {} range queries differ from Prometheus:\n{}",
        failures.len(),
        compared + ERRORS.len(),
        failures.join("\n")
    );
    eprintln!("{compared} range queries answered as Prometheus does");
}
