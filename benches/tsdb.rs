//! Store benchmarks: bytes per sample at steady state (2,000 series scraped every
//! second, 1 h retention, synthetic timestamps) and append throughput.
//!
//! `cargo bench --bench tsdb` prints the memory report, then runs criterion.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use watchpost::tsdb::{Labels, METRIC_NAME, Tsdb};

/// Counts live heap bytes, to measure the whole store (index and labels included).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SERIES: usize = 2_000;
const RETENTION: Duration = Duration::from_secs(3600);
const T0: i64 = 1_700_000_000_000;

/// How a synthetic series moves from one scrape to the next.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// Histogram buckets and rarely hit counters: +1 on 10 % of scrapes.
    SlowCounter,
    /// Busy counters (requests, bytes): + 0..100 every scrape.
    FastCounter,
    /// Byte gauges (memory, disk): a random walk in 4 KiB pages.
    IntGauge,
    /// Ratios (CPU usage): an arbitrary float every scrape.
    FloatGauge,
}

/// The mix of watchpost's own `/metrics` (mostly histogram buckets and counters).
fn kind_of(i: usize) -> Kind {
    match i % 20 {
        0..=11 => Kind::SlowCounter,
        12..=16 => Kind::FastCounter,
        17 | 18 => Kind::IntGauge,
        _ => Kind::FloatGauge,
    }
}

struct Source {
    labels: Vec<Labels>,
    kinds: Vec<Kind>,
    values: Vec<f64>,
    rng: StdRng,
}

impl Source {
    fn new(n: usize, kind: impl Fn(usize) -> Kind) -> Self {
        let labels = (0..n)
            .map(|i| {
                Labels::new([
                    (METRIC_NAME, format!("bench_metric_{}", i / 20)),
                    ("instance", "localhost:8080".to_string()),
                    ("job", "watchpost".to_string()),
                    ("series", (i % 20).to_string()),
                ])
            })
            .collect();
        let kinds: Vec<Kind> = (0..n).map(kind).collect();
        let mut rng = StdRng::seed_from_u64(42);
        let values = kinds
            .iter()
            .map(|k| match k {
                Kind::IntGauge => f64::from(rng.random_range(100_000u32..4_000_000)) * 4096.0,
                Kind::FloatGauge => rng.random::<f64>(),
                _ => f64::from(rng.random_range(0u32..100_000)),
            })
            .collect();
        Self {
            labels,
            kinds,
            values,
            rng,
        }
    }

    fn scrape(&mut self, db: &Tsdb, t: i64) {
        for i in 0..self.labels.len() {
            let v = &mut self.values[i];
            match self.kinds[i] {
                Kind::SlowCounter => {
                    if self.rng.random_bool(0.1) {
                        *v += 1.0;
                    }
                }
                Kind::FastCounter => *v += f64::from(self.rng.random_range(0u32..100)),
                Kind::IntGauge => {
                    let pages = f64::from(self.rng.random_range(0u32..64)) - 32.0;
                    *v = (*v + pages * 4096.0).max(0.0);
                }
                Kind::FloatGauge => *v = self.rng.random::<f64>(),
            }
            db.append(&self.labels[i], t, *v);
        }
    }
}

struct Report {
    samples: usize,
    chunk_bytes_per_sample: f64,
    heap_bytes_per_sample: f64,
    appends_per_sec: f64,
}

/// Scrapes `SERIES` series every second for 70 minutes with 1 h retention applied
/// every 30 s, as the running service does, then measures what is held.
fn steady_state(kind: impl Fn(usize) -> Kind) -> Report {
    let mut src = Source::new(SERIES, kind);
    let before = LIVE.load(Ordering::Relaxed);
    let db = Tsdb::new(RETENTION);
    let scrapes = 70 * 60;
    let started = Instant::now();
    for s in 0..scrapes {
        let t = T0 + s * 1000;
        src.scrape(&db, t);
        if s % 30 == 0 {
            db.apply_retention(t);
        }
    }
    let elapsed = started.elapsed();
    let heap = LIVE.load(Ordering::Relaxed) - before;
    let stats = db.stats();
    Report {
        samples: stats.samples,
        chunk_bytes_per_sample: stats.chunk_bytes as f64 / stats.samples as f64,
        heap_bytes_per_sample: heap as f64 / stats.samples as f64,
        appends_per_sec: (scrapes as f64 * SERIES as f64) / elapsed.as_secs_f64(),
    }
}

/// A named series mix.
type Case = (&'static str, fn(usize) -> Kind);

fn memory_report() {
    println!("== tsdb steady state: {SERIES} series, 1 s interval, 1 h retention ==");
    let cases: [Case; 4] = [
        (
            "watchpost /metrics mix (60% slow counters, 25% fast counters, 10% int gauges, 5% float gauges)",
            kind_of,
        ),
        ("all fast counters", |_| Kind::FastCounter),
        ("all integer gauges (random walk)", |_| Kind::IntGauge),
        ("all random floats (worst case)", |_| Kind::FloatGauge),
    ];
    for (name, kind) in cases {
        let r = steady_state(kind);
        println!(
            "{name}:\n  samples held {}, chunk bytes/sample {:.3}, whole-store heap bytes/sample {:.3}, appends {:.2} M/s",
            r.samples,
            r.chunk_bytes_per_sample,
            r.heap_bytes_per_sample,
            r.appends_per_sec / 1e6
        );
    }
}

fn bench_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("tsdb");
    group.sample_size(10);
    group.bench_function("append one scrape of 2000 series", |b| {
        let db = Tsdb::new(RETENTION);
        let mut src = Source::new(SERIES, kind_of);
        let mut t = T0;
        b.iter(|| {
            t += 1000;
            src.scrape(&db, t);
        });
    });
    group.bench_function("select + read 2000 series at one instant", |b| {
        b.iter_batched_ref(
            || {
                let db = Tsdb::new(RETENTION);
                let mut src = Source::new(SERIES, kind_of);
                for s in 0..600 {
                    src.scrape(&db, T0 + s * 1000);
                }
                db
            },
            |db| {
                let matchers = [promql_parser::label::Matcher::new(
                    promql_parser::label::MatchOp::NotEqual,
                    "job",
                    "x",
                )];
                let n = db
                    .select(&matchers)
                    .iter()
                    .filter_map(|s| s.sample_at(T0 + 599_000, 300_000))
                    .count();
                assert_eq!(n, SERIES);
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

fn main() {
    memory_report();
    let mut c = Criterion::default().configure_from_args();
    bench_append(&mut c);
    c.final_summary();
}
