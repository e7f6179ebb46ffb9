//! Classification of one alert (it runs on every receipt): a Prometheus alert with
//! name, summary, description and labels, and a bare ntopng-style title, as repeats
//! (answered from the cache) and as new text (the vocabulary scan).
//!
//! Run: `cargo bench --bench classify`

use criterion::{Criterion, criterion_group, criterion_main};
use watchpost::alerts::classify::{Texts, classify};
use watchpost::alerts::model::LabelSet;

fn bench(c: &mut Criterion) {
    let labels: LabelSet = [
        ("alertname", "PostgresqlTooManyConnections"),
        ("instance", "db-1:9187"),
        ("job", "postgres"),
        ("severity", "warning"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let prometheus = Texts {
        alertname: Some("PostgresqlTooManyConnections"),
        summary: "Postgresql too many connections (instance db-1:9187)",
        description: "PostgreSQL instance has too many connections (> 80%).\n  VALUE = 85\n  LABELS = {instance=db-1:9187}",
        labels: &labels,
    };
    let none = LabelSet::new();
    let ntopng = Texts {
        alertname: None,
        summary: "HTTP Susp. User-Agent",
        description: "",
        labels: &none,
    };
    c.bench_function("classify prometheus alert", |b| {
        b.iter(|| classify(None, None, std::hint::black_box(&prometheus)))
    });
    c.bench_function("classify ntopng title", |b| {
        b.iter(|| classify(None, None, std::hint::black_box(&ntopng)))
    });
    // First sight of a text (a new alert): the vocabulary scan, not the cache.
    let mut n = 0u64;
    c.bench_function("classify new prometheus alert", |b| {
        b.iter_batched(
            || {
                n += 1;
                format!("Postgresql too many connections (instance db-{n}:9187)")
            },
            |summary| {
                let t = Texts {
                    summary: &summary,
                    ..prometheus
                };
                classify(None, None, std::hint::black_box(&t))
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
