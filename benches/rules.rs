//! One evaluation cycle of 10,000 threshold rules over 100,000 series, on one core.
//!
//! 10,000 metrics × 10 instances = 100,000 series with two samples each; rule `i` is
//! `bench_metric_i{job="bench"} > 0.9` with `for: 5m` and templated annotations, so about
//! 10% of series hold a pending alert (and write `ALERTS`/`ALERTS_FOR_STATE`). Every
//! iteration evaluates all 100 groups of 100 rules in order on this thread, 1 ms later
//! than the previous one.
//!
//! Run: `cargo bench --bench rules`

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use watchpost::promql::Engine;
use watchpost::rules::group::Group;
use watchpost::rules::{EngineQuerier, EvalDeps, LeaderGate, Notifier, TsdbSink, parse_rule_file};
use watchpost::tsdb::{Labels, Tsdb};

const RULES: usize = 10_000;
const INSTANCES: usize = 10;
const GROUPS: usize = 100;
const T0: i64 = 1_700_000_000_000;

/// Deterministic values in [0, 1): a cheap xorshift.
fn values() -> impl FnMut() -> f64 {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn store() -> Tsdb {
    let tsdb = Tsdb::new(Duration::from_secs(3600));
    let mut next = values();
    for i in 0..RULES {
        let name = format!("bench_metric_{i}");
        for inst in 0..INSTANCES {
            let labels = Labels::new([
                ("__name__", name.as_str()),
                ("instance", &format!("host-{inst}:9100")),
                ("job", "bench"),
            ]);
            tsdb.append(&labels, T0 - 15_000, next());
            tsdb.append(&labels, T0, next());
        }
    }
    tsdb
}

/// The rules; `selector` is the series selector of rule `i` (`{i}` replaced).
fn rule_file(prefix: &str, selector: &str) -> String {
    let mut y = String::from("groups:\n");
    for g in 0..GROUPS {
        y.push_str(&format!("- name: {prefix}-{g}\n  rules:\n"));
        for r in 0..RULES / GROUPS {
            let i = g * (RULES / GROUPS) + r;
            let sel = selector.replace("{i}", &i.to_string());
            y.push_str(&format!(
                "  - alert: {prefix}{i}\n    expr: {sel} > 0.9\n    for: 5m\n    labels:\n      severity: warning\n    annotations:\n      summary: \"{{{{ $labels.instance }}}} at {{{{ $value | humanizePercentage }}}}\"\n"
            ));
        }
    }
    y
}

fn bench(c: &mut Criterion) {
    let built = Instant::now();
    let tsdb = store();
    eprintln!(
        "store: {} series in {:?}",
        tsdb.series_count(),
        built.elapsed()
    );
    let metrics = watchpost::metrics::Metrics::new().expect("metrics");
    let (tx, mut rx) = tokio::sync::mpsc::channel(100_000);
    let deps = EvalDeps {
        querier: Arc::new(EngineQuerier(Engine::new(tsdb.clone()))),
        sink: Arc::new(TsdbSink(tsdb.clone())),
        notifier: Notifier::new(tx, Duration::from_secs(60)),
        metrics: metrics.alerting.clone(),
        external_labels: Arc::new(Default::default()),
        external_url: "http://127.0.0.1:8080".into(),
        leader: LeaderGate::single_node(),
    };
    let variants = [
        (
            "eval_cycle_10k_rules_100k_series",
            "BenchHigh",
            "bench_metric_{i}",
        ),
        (
            "eval_cycle_10k_rules_100k_series_name_and_label_matcher",
            "BenchJob",
            "bench_metric_{i}{job=\"bench\"}",
        ),
    ];
    let mut g = c.benchmark_group("rules");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    for (bench_name, prefix, selector) in variants {
        let text = rule_file(prefix, selector);
        let parsed = Instant::now();
        let file = parse_rule_file("bench.yml", &text).expect("valid bench rules");
        eprintln!(
            "{bench_name}: {} rules parsed and checked in {:?}",
            file.rule_count(),
            parsed.elapsed()
        );
        let groups: Vec<Group> = file
            .groups
            .into_iter()
            .map(|g| Group::new(g, "bench.yml", Duration::from_secs(5)))
            .collect();
        let mut ts = T0;
        let mut cycle = || {
            ts += 1;
            for g in &groups {
                g.eval(&deps, ts);
            }
            while rx.try_recv().is_ok() {}
        };
        let first = Instant::now();
        cycle();
        eprintln!(
            "{bench_name}: first cycle (alerts created): {:?}",
            first.elapsed()
        );
        let alerts: usize = groups
            .iter()
            .flat_map(|g| &g.rules)
            .map(|r| match r {
                watchpost::rules::group::Rule::Alerting(a) => a.snapshot().alerts.len(),
                _ => 0,
            })
            .sum();
        eprintln!("{bench_name}: pending alerts: {alerts}");
        assert_eq!(metrics.alerting.rule_evaluation_failures.get(), 0);
        g.bench_function(bench_name, |b| b.iter(&mut cycle));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
