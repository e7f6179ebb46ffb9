//! PromQL benchmarks:
//! * `rate(x[5m])` instant query over 10,000 series (1 s samples);
//! * one rule-evaluation cycle: 10,000 distinct threshold expressions `metric_k > N`
//!   over 100,000 series, evaluated one after another on one core;
//! * a Grafana-style range query: `sum by (instance) (rate(x[5m]))` over 1,000 series,
//!   1 h at a 15 s step.
//!
//! `cargo bench --bench promql`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use watchpost::promql::{self, Engine, Value};
use watchpost::tsdb::{Labels, METRIC_NAME, Tsdb};

const T0: i64 = 1_700_000_000_000;

/// `http_requests_total{instance, path}` counters: `n` series, 1 s samples for `secs`.
fn counters(n: usize, secs: i64) -> (Engine, i64) {
    let db = Tsdb::new(Duration::from_secs(3 * 3600));
    let labels: Vec<Labels> = (0..n)
        .map(|i| {
            Labels::new([
                (METRIC_NAME, "http_requests_total".to_string()),
                ("instance", format!("host-{}", i % 100)),
                ("path", format!("/api/{}", i / 100)),
            ])
        })
        .collect();
    for s in 0..secs {
        let t = T0 + s * 1000;
        for (i, l) in labels.iter().enumerate() {
            db.append(l, t, (s * (1 + i as i64 % 7)) as f64);
        }
    }
    (Engine::new(db), T0 + (secs - 1) * 1000)
}

/// 100,000 series: `metric_k{instance="0".."9"}` for k < 10,000, a few recent samples each.
fn threshold_fixture() -> (Engine, i64, Vec<promql_parser::parser::Expr>) {
    let db = Tsdb::new(Duration::from_secs(3600));
    let metrics = 10_000;
    let per_metric = 10;
    for k in 0..metrics {
        for inst in 0..per_metric {
            let l = Labels::new([
                (METRIC_NAME, format!("metric_{k}")),
                ("instance", inst.to_string()),
                ("job", "node".to_string()),
            ]);
            for s in 0..5 {
                db.append(
                    &l,
                    T0 + s * 1000,
                    ((k * 7 + inst * 13 + s as usize) % 100) as f64,
                );
            }
        }
    }
    let exprs = (0..metrics)
        .map(|k| promql::parse(&format!("metric_{k} > {}", 50 + k % 40)).expect("parses"))
        .collect();
    (Engine::new(db), T0 + 4000, exprs)
}

/// Evaluates every expression once; returns how many samples fired.
fn cycle(engine: &Engine, exprs: &[promql_parser::parser::Expr], t: i64) -> usize {
    exprs
        .iter()
        .map(|e| match engine.instant(e, t) {
            Ok(Value::Vector(v)) => v.len(),
            other => panic!("unexpected {other:?}"),
        })
        .sum()
}

fn report_threshold_cycle() {
    let started = Instant::now();
    let (engine, t, exprs) = threshold_fixture();
    println!(
        "== rules: 10,000 threshold expressions over {} series (fixture built in {:?}) ==",
        engine.tsdb().series_count(),
        started.elapsed()
    );
    // Warm up once, then time single-threaded cycles.
    let fired = cycle(&engine, &exprs, t);
    let mut times = Vec::new();
    for _ in 0..10 {
        let s = Instant::now();
        black_box(cycle(&engine, &exprs, t));
        times.push(s.elapsed());
    }
    times.sort();
    println!(
        "one cycle on one core: median {:?}, min {:?}, max {:?} ({fired} samples over threshold)",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("promql");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));

    let (engine, t) = counters(10_000, 10 * 60);
    let rate = promql::parse("rate(http_requests_total[5m])").unwrap();
    group.bench_function("instant rate(x[5m]) over 10k series", |b| {
        b.iter(|| match engine.instant(&rate, t) {
            Ok(Value::Vector(v)) => assert_eq!(v.len(), 10_000),
            other => panic!("{other:?}"),
        })
    });
    let sum_rate = promql::parse("sum(rate(http_requests_total[5m]))").unwrap();
    group.bench_function("instant sum(rate(x[5m])) over 10k series", |b| {
        b.iter(|| black_box(engine.instant(&sum_rate, t).unwrap()))
    });
    drop(engine);

    let (engine, t) = counters(1_000, 65 * 60);
    let panel = promql::parse("sum by (instance) (rate(http_requests_total[5m]))").unwrap();
    group.bench_function(
        "range sum by (instance) (rate(x[5m])) 1k series, 1h, 15s step",
        |b| {
            b.iter(|| match engine.range(&panel, t - 3_600_000, t, 15_000) {
                Ok(Value::Matrix(m)) => assert_eq!(m.len(), 100),
                other => panic!("{other:?}"),
            })
        },
    );
    drop(engine);

    let (engine, t, exprs) = threshold_fixture();
    group.bench_function("rule cycle: 10k `metric_k > N` over 100k series", |b| {
        b.iter(|| black_box(cycle(&engine, &exprs, t)))
    });
    group.finish();
}

fn main() {
    report_threshold_cycle();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
