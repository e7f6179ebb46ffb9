//! Notification charts: drawing and encoding a 1-hour, 10-series, 240-point chart at
//! 800×450 (the Telegram default), and the same chart from the store (range query of
//! the rule's plotted side, then drawing).
//!
//! `cargo bench --bench chart`

use std::collections::BTreeMap;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use watchpost::notify::chart::source::{ChartRef, RuleCharts};
use watchpost::notify::chart::{ChartSeries, ChartSize, ChartSpec, render_png};
use watchpost::promql::Engine;
use watchpost::tsdb::{Labels, Tsdb};

const HOUR_MS: i64 = 3_600_000;
const STEP_MS: i64 = 15_000;

fn value(series: usize, k: i64) -> f64 {
    50.0 + 10.0 * ((k as f64 / 20.0) + series as f64).sin() + series as f64
}

/// The chart a `node_load1 > 55` alert on `host-0` shows: 10 hosts, 240 points each.
fn spec(end: i64) -> ChartSpec {
    let start = end - HOUR_MS;
    let series = (0..10)
        .map(|i| ChartSeries {
            label: format!("node_load1{{instance=\"host-{i}:9100\", job=\"node\"}}"),
            points: (0..240)
                .map(|k| (start + k * STEP_MS, value(i, k)))
                .collect(),
            highlight: i == 0,
        })
        .collect();
    ChartSpec {
        title: "HighLoad: node_load1 > 55".into(),
        series,
        threshold: Some(55.0),
        firing: vec![(end - 15 * 60_000, end)],
        start_ms: start,
        end_ms: end,
        size: ChartSize::default(),
        tz: chrono_tz::Europe::Berlin,
    }
}

fn bench(c: &mut Criterion) {
    let end = chrono::Utc::now().timestamp_millis();
    let s = spec(end);
    let png = render_png(&s).expect("chart renders");
    println!("chart PNG: {} bytes", png.len());
    c.bench_function("chart render 800x450, 10 series x 240 points", |b| {
        b.iter(|| render_png(std::hint::black_box(&s)))
    });

    let tsdb = Tsdb::new(Duration::from_secs(2 * 3600));
    for i in 0..10usize {
        let l = Labels::new([
            ("__name__", "node_load1".to_string()),
            ("instance", format!("host-{i}:9100")),
            ("job", "node".to_string()),
        ]);
        for k in 0..240 {
            tsdb.append(&l, end - HOUR_MS + k * STEP_MS, value(i, k));
        }
    }
    let charts = RuleCharts::new(
        Engine::new(tsdb),
        chrono_tz::Europe::Berlin,
        Duration::from_secs(3600),
        ChartSize::default(),
    );
    let r = ChartRef {
        alert_id: 1,
        alertname: "HighLoad".into(),
        expr: "node_load1 > 55".into(),
        labels: BTreeMap::from([("instance".to_string(), "host-0:9100".to_string())]),
        starts_at_ms: end - 15 * 60_000,
        resolved_at_ms: None,
        end_ms: end,
    };
    c.bench_function("chart query + render (RuleCharts), 10 series", |b| {
        b.iter(|| charts.png(std::hint::black_box(&r), charts.window(), charts.size()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
