//! Load generator for the Prometheus remote-write receiver (`POST /api/v1/write`):
//! N concurrent clients send snappy-compressed `prometheus.WriteRequest`s for a fixed
//! time and report accepted samples per second, requests per second, request latency
//! percentiles and non-2xx answers as one JSON line.
//!
//! ```text
//! cargo run --release --example remote_write_load -- --url http://127.0.0.1:8080 \
//!     --clients 8 --series 20000 --batch 2000 --seconds 20 [--samples-per-series 1] \
//!     [--name watchpost]
//! cargo run --release --example remote_write_load -- --mode history \
//!     --url http://127.0.0.1:9090 --series 5000 --minutes 60 --step-ms 15000 --end-ms T
//! ```
//!
//! Series look like node_exporter's (`__name__`, `job`, `instance`, plus two to four
//! labels: `node_cpu_seconds_total{cpu,mode,region}`, network and disk counters,
//! filesystem gauges, and one `http_request_duration_seconds` histogram per host), 100
//! per host. Series `i` is always the same label set, so two targets fed with the same
//! flags hold the same data.
//!
//! `--mode write` (default): client `c` owns series `c, c + clients, …` (disjoint sets,
//! one request in flight per client, so every series arrives in time order). A request
//! holds `--batch` samples (Prometheus sends up to 2000): `batch / samples-per-series`
//! of the client's series, taken round-robin, each with its next
//! `--samples-per-series` samples. Sample `k` of a series is at
//! `start + k * step-ms`, with `start` `--start-ago-min` minutes before the run began.
//! Bodies are built as they are sent (only each series' encoded labels are kept).
//!
//! `--mode history`: `--minutes` of history at `--step-ms` ending at `--end-ms`, every
//! series one sample per step, sent one request at a time in global time order (as a
//! Prometheus catching up would), `--batch` samples per request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prost::encoding::{encode_varint, encoded_len_varint};
use serde_json::json;

struct Args {
    url: String,
    name: String,
    mode: String,
    clients: usize,
    series: usize,
    batch: usize,
    samples_per_series: usize,
    seconds: u64,
    warmup: u64,
    step_ms: i64,
    start_ago_min: i64,
    minutes: i64,
    end_ms: Option<i64>,
}

fn args() -> Args {
    let mut a = Args {
        url: "http://127.0.0.1:8080".into(),
        name: "target".into(),
        mode: "write".into(),
        clients: 8,
        series: 20_000,
        batch: 2000,
        samples_per_series: 1,
        seconds: 20,
        warmup: 3,
        step_ms: 1000,
        start_ago_min: 60,
        minutes: 60,
        end_ms: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = val(),
            "--name" => a.name = val(),
            "--mode" => a.mode = val(),
            "--clients" => a.clients = val().parse().expect("--clients"),
            "--series" => a.series = val().parse().expect("--series"),
            "--batch" => a.batch = val().parse().expect("--batch"),
            "--samples-per-series" => {
                a.samples_per_series = val().parse().expect("--samples-per-series")
            }
            "--seconds" => a.seconds = val().parse().expect("--seconds"),
            "--warmup" => a.warmup = val().parse().expect("--warmup"),
            "--step-ms" => a.step_ms = val().parse().expect("--step-ms"),
            "--start-ago-min" => a.start_ago_min = val().parse().expect("--start-ago-min"),
            "--minutes" => a.minutes = val().parse().expect("--minutes"),
            "--end-ms" => a.end_ms = Some(val().parse().expect("--end-ms")),
            other => panic!("unknown flag {other}"),
        }
    }
    a.clients = a.clients.max(1);
    a.series = a.series.max(1);
    a.batch = a.batch.max(1);
    a.samples_per_series = a.samples_per_series.max(1);
    a.step_ms = a.step_ms.max(1);
    a
}

const PER_HOST: usize = 100;
const JOBS: [&str; 4] = ["node", "node-db", "node-edge", "node-batch"];
const REGIONS: [&str; 4] = ["eu-west-1", "eu-central-1", "us-east-1", "ap-south-1"];
const MODES: [&str; 8] = [
    "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
];
const NET: [&str; 6] = [
    "node_network_receive_bytes_total",
    "node_network_transmit_bytes_total",
    "node_network_receive_packets_total",
    "node_network_transmit_packets_total",
    "node_network_receive_errs_total",
    "node_network_transmit_errs_total",
];
const DISK: [&str; 4] = [
    "node_disk_read_bytes_total",
    "node_disk_written_bytes_total",
    "node_disk_reads_completed_total",
    "node_disk_writes_completed_total",
];
const DISKS: [&str; 4] = ["sda", "sdb", "nvme0n1", "nvme1n1"];
const MOUNTS: [(&str, &str, &str); 4] = [
    ("/dev/sda1", "ext4", "/"),
    ("/dev/sda2", "ext4", "/var"),
    ("/dev/nvme0n1p1", "xfs", "/data"),
    ("tmpfs", "tmpfs", "/run"),
];
const LE: [(&str, f64); 12] = [
    ("0.005", 0.02),
    ("0.01", 0.05),
    ("0.025", 0.12),
    ("0.05", 0.25),
    ("0.1", 0.45),
    ("0.25", 0.7),
    ("0.5", 0.85),
    ("1", 0.93),
    ("2.5", 0.98),
    ("5", 0.995),
    ("10", 0.999),
    ("+Inf", 1.0),
];

/// How a series' values move.
#[derive(Clone, Copy)]
enum Kind {
    /// Grows by about `inc` per sample (wobbling, never decreasing).
    Counter,
    /// Wobbles around `inc`.
    Gauge,
}

/// One series: its labels already encoded as `TimeSeries.labels` fields.
struct Series {
    labels: Vec<u8>,
    kind: Kind,
    inc: f64,
    /// Phase of the wobble; shared by a histogram's buckets, `_sum` and `_count` so
    /// that buckets stay cumulative.
    phase: f64,
}

/// A cheap deterministic hash (splitmix64).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A number in [0, 1) from `x`.
fn unit(x: u64) -> f64 {
    (mix(x) >> 11) as f64 / (1u64 << 53) as f64
}

impl Series {
    /// Series `i`: host `i / 100`, template `i % 100`.
    fn new(i: usize) -> Self {
        let host = i / PER_HOST;
        let j = i % PER_HOST;
        let instance = format!("host-{host:05}:9100");
        let job = JOBS[host % JOBS.len()];
        let region = REGIONS[(host / JOBS.len()) % REGIONS.len()];
        let r = unit(i as u64);
        let host_phase = unit(host as u64 ^ 0x5eed) * std::f64::consts::TAU;
        let (name, extra, kind, inc, phase): (String, Vec<(&str, String)>, Kind, f64, f64) = match j
        {
            0..48 => (
                "node_cpu_seconds_total".into(),
                vec![
                    ("cpu", (j / 8).to_string()),
                    ("mode", MODES[j % 8].into()),
                    ("region", region.into()),
                ],
                Kind::Counter,
                0.01 + r,
                r * std::f64::consts::TAU,
            ),
            48..60 => (
                NET[(j - 48) / 2].into(),
                vec![
                    ("device", format!("eth{}", j % 2)),
                    ("region", region.into()),
                ],
                Kind::Counter,
                1.0 + r * 1e6,
                r * std::f64::consts::TAU,
            ),
            60..76 => (
                DISK[(j - 60) / 4].into(),
                vec![("device", DISKS[j % 4].into()), ("region", region.into())],
                Kind::Counter,
                1.0 + r * 1e5,
                r * std::f64::consts::TAU,
            ),
            76..84 => {
                let (device, fstype, mountpoint) = MOUNTS[j % 4];
                let name = if j < 80 {
                    "node_filesystem_avail_bytes"
                } else {
                    "node_filesystem_size_bytes"
                };
                (
                    name.into(),
                    vec![
                        ("device", device.into()),
                        ("fstype", fstype.into()),
                        ("mountpoint", mountpoint.into()),
                        ("region", region.into()),
                    ],
                    Kind::Gauge,
                    1e9 + r * 1e11,
                    r * std::f64::consts::TAU,
                )
            }
            84..96 => {
                let (le, cdf) = LE[j - 84];
                (
                    "http_request_duration_seconds_bucket".into(),
                    vec![
                        ("handler", "/api/v1/query".into()),
                        ("le", le.into()),
                        ("method", "GET".into()),
                    ],
                    Kind::Counter,
                    // Requests per sample on this host, times the share under `le`.
                    (5.0 + 20.0 * unit(host as u64)) * cdf,
                    host_phase,
                )
            }
            96 | 97 => (
                if j == 96 {
                    "http_request_duration_seconds_count"
                } else {
                    "http_request_duration_seconds_sum"
                }
                .into(),
                vec![
                    ("handler", "/api/v1/query".into()),
                    ("method", "GET".into()),
                ],
                Kind::Counter,
                (5.0 + 20.0 * unit(host as u64)) * if j == 96 { 1.0 } else { 0.21 },
                host_phase,
            ),
            98 => (
                "node_load1".into(),
                vec![("env", "prod".into()), ("region", region.into())],
                Kind::Gauge,
                0.5 + 4.0 * r,
                r * std::f64::consts::TAU,
            ),
            _ => (
                "node_memory_MemAvailable_bytes".into(),
                vec![("env", "prod".into()), ("region", region.into())],
                Kind::Gauge,
                1e9 + r * 6e10,
                r * std::f64::consts::TAU,
            ),
        };
        let mut labels: Vec<(&str, &str)> =
            vec![("__name__", &name), ("instance", &instance), ("job", job)];
        labels.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
        // Remote write 1.0: labels sorted by name.
        labels.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut enc = Vec::with_capacity(256);
        for (k, v) in labels {
            let inner = field_len(k.len()) + field_len(v.len());
            enc.push(0x0a); // TimeSeries.labels, length-delimited
            encode_varint(inner as u64, &mut enc);
            enc.push(0x0a); // Label.name
            encode_varint(k.len() as u64, &mut enc);
            enc.extend_from_slice(k.as_bytes());
            enc.push(0x12); // Label.value
            encode_varint(v.len() as u64, &mut enc);
            enc.extend_from_slice(v.as_bytes());
        }
        Series {
            labels: enc,
            kind,
            inc,
            phase,
        }
    }

    /// Value of sample number `k`.
    fn value(&self, k: u64) -> f64 {
        let k = k as f64;
        match self.kind {
            Kind::Counter => self.inc * (1000.0 + k + 0.3 * (k / 10.0 + self.phase).sin()),
            Kind::Gauge => self.inc * (1.0 + 0.2 * (k / 20.0 + self.phase).sin()),
        }
    }

    /// Appends this series with `samples` (timestamp ms, sample number) to a
    /// `WriteRequest` being encoded in `out`.
    fn encode(&self, out: &mut Vec<u8>, samples: impl Iterator<Item = (i64, u64)> + Clone) {
        // Sample: value (fixed64, key 0x09) and timestamp (varint, key 0x10).
        let sample_len = |t: i64| 1 + 8 + 1 + encoded_len_varint(t as u64);
        let body = self.labels.len()
            + samples
                .clone()
                .map(|(t, _)| field_len(sample_len(t)))
                .sum::<usize>();
        out.push(0x0a); // WriteRequest.timeseries
        encode_varint(body as u64, out);
        out.extend_from_slice(&self.labels);
        for (t, k) in samples {
            out.push(0x12); // TimeSeries.samples
            encode_varint(sample_len(t) as u64, out);
            out.push(0x09);
            out.extend_from_slice(&self.value(k).to_le_bytes());
            out.push(0x10);
            encode_varint(t as u64, out);
        }
    }
}

/// Bytes of a length-delimited field (key byte, length, payload) of `len` payload bytes.
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

/// CPU seconds (user + system) this process has used (`/proc`, USER_HZ = 100).
fn own_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(0.0)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// Outcome of one POST: `Ok(status)` or a transport error.
async fn post(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    reported: &AtomicBool,
) -> Result<u16, ()> {
    let res = client
        .post(url)
        .header("content-encoding", "snappy")
        .header("content-type", "application/x-protobuf")
        .header("x-prometheus-remote-write-version", "0.1.0")
        .body(body)
        .send()
        .await;
    match res {
        Ok(r) => {
            let status = r.status();
            let text = r.bytes().await.unwrap_or_default();
            if !status.is_success() && !reported.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "{url}: {status}: {}",
                    String::from_utf8_lossy(&text[..text.len().min(300)]).trim()
                );
            }
            Ok(status.as_u16())
        }
        Err(e) => {
            if !reported.swap(true, Ordering::Relaxed) {
                eprintln!("{url}: {e}");
            }
            Err(())
        }
    }
}

/// What one write client saw while measuring.
#[derive(Default)]
struct Tally {
    samples: u64,
    accepted_total: u64,
    lat: Vec<u64>,
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
    last_ts: i64,
}

async fn write(a: Args) {
    let url = format!("{}/api/v1/write", a.url.trim_end_matches('/'));
    let client = client();
    let start_ms = now_ms() - a.start_ago_min * 60_000;
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let reported = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let clients = a.clients.min(a.series);
    let mut per_request = 0;
    for c in 0..clients {
        let owned = (c..a.series).step_by(clients).count();
        // Series per request and samples per series: `batch` samples in all.
        let per_req = (a.batch / a.samples_per_series).clamp(1, owned);
        let sps = (a.batch / per_req).max(1);
        if c == 0 {
            per_request = per_req * sps;
        }
        let (client, url, measuring, stop, reported) = (
            client.clone(),
            url.clone(),
            measuring.clone(),
            stop.clone(),
            reported.clone(),
        );
        let (series_total, step_ms) = (a.series, a.step_ms);
        tasks.push(tokio::spawn(async move {
            // Only the labels are kept; bodies are encoded as they are sent.
            let series: Vec<Series> = (c..series_total)
                .step_by(clients)
                .map(Series::new)
                .collect();
            let mut next = vec![0u64; series.len()];
            let mut cursor = 0;
            let mut raw = Vec::new();
            let mut snappy = snap::raw::Encoder::new();
            let mut tally = Tally::default();
            while !stop.load(Ordering::Relaxed) {
                raw.clear();
                for _ in 0..per_req {
                    let k0 = next[cursor];
                    series[cursor].encode(
                        &mut raw,
                        (k0..k0 + sps as u64).map(|k| (start_ms + k as i64 * step_ms, k)),
                    );
                    next[cursor] += sps as u64;
                    cursor = (cursor + 1) % series.len();
                }
                let body = snappy.compress_vec(&raw).expect("snappy");
                let t0 = Instant::now();
                let res = post(&client, &url, body, &reported).await;
                let us = t0.elapsed().as_micros() as u64;
                let ok = matches!(res, Ok(s) if (200..300).contains(&s));
                if ok {
                    tally.accepted_total += (per_req * sps) as u64;
                }
                if measuring.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                    tally.lat.push(us);
                    match res {
                        Ok(_) if ok => tally.samples += (per_req * sps) as u64,
                        Ok(s) => *tally.statuses.entry(s).or_default() += 1,
                        Err(()) => tally.transport_errors += 1,
                    }
                }
            }
            let max_k = next.iter().copied().max().unwrap_or(0);
            tally.last_ts = start_ms + (max_k.saturating_sub(1)) as i64 * step_ms;
            tally
        }));
    }
    let cpu0 = own_cpu_seconds();
    tokio::time::sleep(Duration::from_secs(a.warmup)).await;
    measuring.store(true, Ordering::SeqCst);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    stop.store(true, Ordering::SeqCst);
    let elapsed = t0.elapsed().as_secs_f64();
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await.expect("client task");
        all.samples += t.samples;
        all.accepted_total += t.accepted_total;
        all.lat.extend(t.lat);
        for (s, n) in t.statuses {
            *all.statuses.entry(s).or_default() += n;
        }
        all.transport_errors += t.transport_errors;
        all.last_ts = all.last_ts.max(t.last_ts);
    }
    let client_cpu = own_cpu_seconds() - cpu0;
    all.lat.sort_unstable();
    let non_2xx: BTreeMap<String, u64> = all
        .statuses
        .iter()
        .map(|(s, n)| (s.to_string(), *n))
        .collect();
    let out = json!({
        "target": a.name,
        "mode": "write",
        "clients": clients,
        "series": a.series,
        "samples_per_request": per_request,
        "seconds": (elapsed * 100.0).round() / 100.0,
        "requests": all.lat.len(),
        "requests_per_sec": (all.lat.len() as f64 / elapsed * 10.0).round() / 10.0,
        "samples_per_sec": (all.samples as f64 / elapsed).round(),
        // Every sample answered 2xx, warm-up and the last requests included.
        "accepted_total": all.accepted_total,
        "non_2xx": non_2xx,
        "transport_errors": all.transport_errors,
        "p50_ms": percentile(&all.lat, 0.50),
        "p99_ms": percentile(&all.lat, 0.99),
        "max_ms": percentile(&all.lat, 1.0),
        // The load generator's own CPU (it shares the machine with the target).
        "client_cpu_s": (client_cpu * 100.0).round() / 100.0,
        // Newest sample timestamp relative to the wall clock at the end (negative: past).
        "last_ts_vs_now_s": (all.last_ts - now_ms()) / 1000,
    });
    println!("{out}");
}

async fn history(a: Args) {
    let url = format!("{}/api/v1/write", a.url.trim_end_matches('/'));
    let client = client();
    let reported = AtomicBool::new(false);
    let end = a.end_ms.unwrap_or_else(now_ms) / a.step_ms * a.step_ms;
    let steps = (a.minutes * 60_000 / a.step_ms).max(1) as usize;
    let first = end - (steps as i64 - 1) * a.step_ms;
    let series: Vec<Series> = (0..a.series).map(Series::new).collect();
    let total = steps * series.len();
    let (mut requests, mut accepted, mut transport_errors) = (0u64, 0u64, 0u64);
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut lat = Vec::new();
    let mut raw = Vec::new();
    let mut snappy = snap::raw::Encoder::new();
    let t0 = Instant::now();
    // The (step, series) pairs in global time order, `batch` at a time.
    let mut pos = 0;
    while pos < total {
        let n = a.batch.min(total - pos);
        raw.clear();
        for p in pos..pos + n {
            let (step, s) = (p / series.len(), p % series.len());
            let t = first + step as i64 * a.step_ms;
            series[s].encode(&mut raw, std::iter::once((t, step as u64)));
        }
        pos += n;
        let body = snappy.compress_vec(&raw).expect("snappy");
        let r0 = Instant::now();
        let res = post(&client, &url, body, &reported).await;
        lat.push(r0.elapsed().as_micros() as u64);
        requests += 1;
        match res {
            Ok(s) if (200..300).contains(&s) => accepted += n as u64,
            Ok(s) => *statuses.entry(s.to_string()).or_default() += 1,
            Err(()) => transport_errors += 1,
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    lat.sort_unstable();
    let out = json!({
        "target": a.name,
        "mode": "history",
        "series": a.series,
        "first_ms": first,
        "end_ms": end,
        "step_ms": a.step_ms,
        "samples": total,
        "accepted_total": accepted,
        "requests": requests,
        "non_2xx": statuses,
        "transport_errors": transport_errors,
        "seconds": (elapsed * 100.0).round() / 100.0,
        "samples_per_sec": (accepted as f64 / elapsed).round(),
        "p50_ms": percentile(&lat, 0.50),
        "p99_ms": percentile(&lat, 0.99),
    });
    println!("{out}");
}

#[tokio::main]
async fn main() {
    let a = args();
    match a.mode.as_str() {
        "write" => write(a).await,
        "history" => history(a).await,
        other => panic!("unknown --mode {other} (write, history)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use watchpost::remote_write::proto::WriteRequest;

    #[test]
    fn bodies_decode_as_write_requests() {
        let mut raw = Vec::new();
        let series: Vec<Series> = (0..PER_HOST * 2).map(Series::new).collect();
        for s in &series {
            s.encode(
                &mut raw,
                (0..3u64).map(|k| (1_700_000_000_000 + k as i64, k)),
            );
        }
        let req = WriteRequest::decode(raw.as_slice()).expect("decodes");
        assert_eq!(req.timeseries.len(), PER_HOST * 2);
        let mut seen = std::collections::HashSet::new();
        for (i, ts) in req.timeseries.iter().enumerate() {
            let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
            let mut sorted = names.clone();
            sorted.sort_unstable();
            assert_eq!(names, sorted, "labels sorted");
            assert!((5..=7).contains(&names.len()), "{names:?}");
            assert_eq!(names[0], "__name__");
            let pairs: Vec<(String, String)> = ts
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            assert!(seen.insert(pairs), "series {i} distinct");
            assert_eq!(ts.samples.len(), 3);
            assert_eq!(ts.samples[2].timestamp, 1_700_000_000_002);
            assert_eq!(ts.samples[1].value, series[i].value(1));
        }
        // Buckets are cumulative at every sample.
        let b: Vec<f64> = (84..96).map(|j| series[j].value(7)).collect();
        assert!(b.windows(2).all(|w| w[0] <= w[1]), "{b:?}");
    }
}
