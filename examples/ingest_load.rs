//! Load generator for alert ingest: N concurrent clients POST batches of Alertmanager
//! v2 postable alerts (what Prometheus sends) to `/api/v2/alerts` for a fixed time and
//! report accepted alerts per second and request latency percentiles as one JSON line.
//!
//! ```text
//! cargo run --release --example ingest_load -- --url http://127.0.0.1:8080 \
//!     --clients 64 --batch 100 --seconds 20 --distinct 20000 [--name watchpost-sqlite] [--storm]
//! ```
//!
//! Alerts cycle through `--distinct` label sets (like Prometheus resending its firing
//! alerts), so a run exercises both first receipts and repeats; with `--storm` every
//! alert is new (an alert storm). Bodies are built as they are sent. `--url` may list several
//! nodes (comma-separated): client `i` sends to node `i mod n`, and the label sets are
//! split between the nodes (each alert source talks to one node, as docs/cluster.md
//! advises).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

struct Args {
    url: String,
    name: String,
    clients: usize,
    batch: usize,
    seconds: u64,
    warmup: u64,
    distinct: usize,
    token: Option<String>,
    /// With several URLs: every node gets every label set (as from a Prometheus that
    /// sends to all of them), instead of its own share.
    same: bool,
    /// Every alert new (an alert storm) instead of cycling through `distinct`.
    storm: bool,
}

fn args() -> Args {
    let mut a = Args {
        url: "http://127.0.0.1:8080".into(),
        name: "target".into(),
        clients: 64,
        batch: 100,
        seconds: 20,
        warmup: 3,
        distinct: 20_000,
        token: None,
        same: false,
        storm: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = val(),
            "--name" => a.name = val(),
            "--clients" => a.clients = val().parse().expect("--clients"),
            "--batch" => a.batch = val().parse().expect("--batch"),
            "--seconds" => a.seconds = val().parse().expect("--seconds"),
            "--warmup" => a.warmup = val().parse().expect("--warmup"),
            "--distinct" => a.distinct = val().parse().expect("--distinct"),
            "--token" => a.token = Some(val()),
            "--same" => a.same = true,
            "--storm" => a.storm = true,
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// Request bodies, built when sent (a billion distinct alerts need no memory).
///
/// Repeats (`--distinct N`): body `b` holds label sets `b*batch … b*batch+batch-1`
/// (mod N), the same on every send. Storm (`--storm`): every body holds label sets
/// never sent before, numbered from one shared counter and tagged with the run's start,
/// so a second run against the same target is new too.
struct Bodies {
    per_body: usize,
    distinct: usize,
    storm: bool,
    run: u128,
    next: AtomicU64,
    starts: String,
    ends: String,
}

impl Bodies {
    fn new(a: &Args) -> Self {
        let now = chrono::Utc::now();
        Bodies {
            per_body: a.batch.max(1),
            distinct: a.distinct.max(1),
            storm: a.storm,
            run: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis()),
            next: AtomicU64::new(0),
            starts: (now - chrono::Duration::minutes(1)).to_rfc3339(),
            ends: (now + chrono::Duration::hours(2)).to_rfc3339(),
        }
    }

    /// How many different bodies repeats cycle through.
    fn count(&self) -> usize {
        self.distinct.div_ceil(self.per_body).max(1)
    }

    /// Body `b` of the repeats, or the next body of the storm.
    fn body(&self, b: usize) -> bytes::Bytes {
        let mut out = String::with_capacity(self.per_body * 420);
        out.push('[');
        let first = if self.storm {
            self.next.fetch_add(self.per_body as u64, Ordering::Relaxed)
        } else {
            (b * self.per_body) as u64
        };
        for i in 0..self.per_body as u64 {
            if i > 0 {
                out.push(',');
            }
            let n = if self.storm {
                first + i
            } else {
                (first + i) % self.distinct as u64
            };
            self.alert(&mut out, n);
        }
        out.push(']');
        bytes::Bytes::from(out)
    }

    fn alert(&self, out: &mut String, n: u64) {
        use std::fmt::Write;
        let severity = ["warning", "critical", "info"][(n % 3) as usize];
        let instance = if self.storm {
            format!("storm-{}-{n}:9100", self.run)
        } else {
            format!("host-{n}:9100")
        };
        let _ = write!(
            out,
            r#"{{"labels":{{"alertname":"BenchAlert{}","instance":"{instance}","job":"bench","severity":"{severity}"}},"annotations":{{"summary":"bench alert {n} fired","description":"synthetic load from examples/ingest_load.rs"}},"startsAt":"{}","endsAt":"{}","generatorURL":"http://prometheus:9090/graph?g0.expr=bench"}}"#,
            n % 50,
            self.starts,
            self.ends
        );
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let a = args();
    let bodies = Arc::new(Bodies::new(&a));
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(a.clients * 2)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let urls: Vec<String> = a
        .url
        .split(',')
        .map(|u| format!("{}/api/v2/alerts", u.trim().trim_end_matches('/')))
        .collect();
    let nodes = urls.len();
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..a.clients {
        let (client, url, bodies, measuring, stop, errors) = (
            client.clone(),
            urls[c % nodes].clone(),
            bodies.clone(),
            measuring.clone(),
            stop.clone(),
            errors.clone(),
        );
        let token = a.token.clone();
        let batch = a.batch as u64;
        let same = a.same;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 14);
            let mut ok_alerts = 0u64;
            let mut all_ok = 0u64;
            // With several nodes, node k gets bodies k, k+n, k+2n, …: disjoint label sets.
            // With --same, every node gets every body.
            let (node, nodes) = if same { (0, 1) } else { (c % nodes, nodes) };
            let count = bodies.count();
            let per_node = (count / nodes).max(1);
            let mut i = c * 7919;
            while !stop.load(Ordering::Relaxed) {
                let body = bodies.body(((i % per_node) * nodes + node) % count);
                i += 1;
                let mut req = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body);
                if let Some(t) = &token {
                    req = req.bearer_auth(t);
                }
                let t0 = Instant::now();
                let res = req.send().await;
                let ok = match res {
                    Ok(r) => {
                        let good = r.status().is_success();
                        let _ = r.bytes().await;
                        good
                    }
                    Err(_) => false,
                };
                let us = t0.elapsed().as_micros() as u64;
                if ok {
                    all_ok += batch;
                }
                if measuring.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                    if ok {
                        ok_alerts += batch;
                        lat.push(us);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            (ok_alerts, lat, all_ok)
        }));
    }
    tokio::time::sleep(Duration::from_secs(a.warmup)).await;
    measuring.store(true, Ordering::SeqCst);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    stop.store(true, Ordering::SeqCst);
    let elapsed = t0.elapsed().as_secs_f64();
    let mut total = 0u64;
    let mut accepted = 0u64;
    let mut lat = Vec::new();
    for t in tasks {
        let (n, l, all) = t.await.expect("client task");
        total += n;
        accepted += all;
        lat.extend(l);
    }
    lat.sort_unstable();
    let out = json!({
        "target": a.name,
        "clients": a.clients,
        "batch": a.batch,
        "workload": if a.storm { "storm" } else { "repeats" },
        "seconds": (elapsed * 100.0).round() / 100.0,
        "requests": lat.len(),
        "errors": errors.load(Ordering::Relaxed),
        "alerts_per_sec": (total as f64 / elapsed).round(),
        // Every alert answered 2xx, warm-up and the last requests included.
        "accepted_total": accepted,
        "p50_ms": percentile(&lat, 0.50),
        "p99_ms": percentile(&lat, 0.99),
        "max_ms": percentile(&lat, 1.0),
    });
    println!("{out}");
}
