//! Notification hot paths: routing, the dispatcher's intake, message rendering and
//! splitting (criterion), then outbox throughput on SQLite and PostgreSQL (enqueue
//! through the notifier; drain through the sender to a local webhook) printed once.
//!
//! `cargo bench --bench notify` (PostgreSQL when `WATCHPOST_TEST_DATABASE_URL` is set).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use watchpost::config::{Config, Secret};
use watchpost::dispatch::{
    AlertNotice, AlertState, CHANNEL_CAPACITY, Dispatcher, Notification, NotificationSink,
    NotifyLogEntry, route,
};
use watchpost::notify::MessageBuilder;
use watchpost::notify::split::{TELEGRAM_LIMIT, split_html};

fn notice(i: usize, alertname: &str) -> AlertNotice {
    let mut n = AlertNotice::test(i as i64, &format!("fp-{i}"), alertname);
    n.severity = ["critical", "warning", "info"][i % 3].into();
    n.labels
        .insert("instance".into(), format!("host-{i:04}.example.com:9100"));
    n.labels.insert("job".into(), "node".into());
    n.annotations.insert(
        "summary".into(),
        format!("filesystem /var on host-{i:04} is 93% full & <growing>"),
    );
    n.value = Some("0.93".into());
    n
}

fn group(n: usize) -> Notification {
    Notification {
        group_key: "{}:{alertname=\"DiskFull\"}".into(),
        receiver: "telegram".into(),
        group_labels: BTreeMap::from([("alertname".into(), "DiskFull".into())]),
        status: AlertState::Firing,
        firing: (0..n).map(|i| notice(i, "DiskFull")).collect(),
        resolved: vec![],
        flapping: vec![],
        stable: Default::default(),
        seq: 1,
        at_ms: 0,
        episode_ms: 0,
    }
}

fn tree() -> route::Route {
    let mut toml = String::from(
        "[telegram]\nbot_token = \"1:x\"\nchat_ids = [1]\n[route]\nreceiver = \"telegram\"\n",
    );
    for i in 0..50 {
        toml.push_str(&format!(
            "[[route.routes]]\nmatchers = [\"team=\\\"t{i}\\\"\", \"severity=~\\\"critical|warning\\\"\"]\n"
        ));
    }
    let c = Config::from_toml(&toml).unwrap();
    route::build(&c).unwrap().unwrap()
}

struct NullSink;

#[async_trait::async_trait]
impl NotificationSink for NullSink {
    async fn load_log(&self) -> anyhow::Result<Vec<(String, String, NotifyLogEntry)>> {
        Ok(vec![])
    }
    async fn notify(&self, _: &Notification, _: &NotifyLogEntry) -> anyhow::Result<()> {
        Ok(())
    }
    async fn save_log(&self, _: &str, _: &str, _: &NotifyLogEntry) -> anyhow::Result<()> {
        Ok(())
    }
    async fn forget(&self, _: &str, _: &str) -> anyhow::Result<()> {
        Ok(())
    }
}

fn cpu(c: &mut Criterion) {
    let t = tree();
    let mut labels = notice(1, "X").routing_labels();
    labels.insert("team".into(), "t49".into());
    c.bench_function("route_match_50_children", |b| {
        b.iter(|| t.match_labels(std::hint::black_box(&labels)).len())
    });

    let builder = MessageBuilder::new("https://wp.example", None);
    let g = group(100);
    let now = chrono::Utc::now();
    c.bench_function("render_group_100_alerts", |b| {
        b.iter(|| builder.default_message(std::hint::black_box(&g), now).len())
    });

    let text = builder.default_message(&group(60), now);
    let mut sg = c.benchmark_group("split_html");
    sg.throughput(Throughput::Bytes(text.len() as u64));
    sg.bench_function(format!("{}_chars", text.chars().count()), |b| {
        b.iter(|| split_html(std::hint::black_box(&text), TELEGRAM_LIMIT).len())
    });
    sg.finish();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut dg = c.benchmark_group("dispatcher");
    const N: usize = 5000;
    dg.throughput(Throughput::Elements(N as u64));
    dg.sample_size(20);
    dg.bench_function("intake_5000_notices_500_groups", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let d = Dispatcher::new(Some(tree()), Arc::new(NullSink));
                    let tx = d.sender();
                    let token = tokio_util::sync::CancellationToken::new();
                    let task = tokio::spawn(d.run(token.clone()));
                    let notices: Vec<AlertNotice> = (0..N)
                        .map(|i| notice(i, &format!("Alert{}", i % 500)))
                        .collect();
                    let start = Instant::now();
                    for n in notices {
                        tx.send(n).await.unwrap();
                    }
                    while tx.capacity() < CHANNEL_CAPACITY {
                        tokio::task::yield_now().await;
                    }
                    total += start.elapsed();
                    token.cancel();
                    let _ = task.await;
                }
                total
            })
        })
    });
    dg.finish();
}

criterion_group!(benches, cpu);

/// Outbox throughput: notifications enqueued through the notifier (render, split,
/// insert rows + notification log in one transaction), then drained to a webhook.
fn outbox(db_url: &str, kind: &str) {
    use watchpost::metrics::Metrics;
    use watchpost::notify::{Notifications, NotifyOptions};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // A webhook that answers 200 at once.
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let h = hits.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let h = h.clone();
                async move {
                    h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let mut config = Config::from_toml(&format!(
            "[route]\nreceiver = \"hook\"\ngroup_wait = \"1h\"\n[[receivers]]\nname = \"hook\"\nwebhook = {{ url = \"{url}\" }}\n"
        ))
        .unwrap();
        config.database_url = Secret(db_url.into());
        let metrics = Metrics::new().unwrap();
        let db = watchpost::store::Db::connect(&config, metrics.db.clone())
            .await
            .unwrap();
        db.migrate().await.unwrap();
        let n = Notifications::new(
            &config,
            db.clone(),
            metrics.alerting.clone(),
            None,
            NotifyOptions::default(),
        )
        .unwrap();
        // Enqueue: the notifier is the dispatcher's sink.
        let notifier = watchpost::notify::Notifier::new(
            watchpost::notify::Outbox::new(db.clone()),
            watchpost::notify::receivers(&config).unwrap(),
            MessageBuilder::new("http://wp", None),
            "http://wp".into(),
            Arc::new(tokio::sync::Notify::new()),
        );
        const GROUPS: usize = 2000;
        let make = |i: usize, seq: u64| {
            let mut g = group(5);
            g.group_key = format!("{{}}:{{alertname=\"A{i}\"}}");
            g.receiver = "hook".into();
            g.seq = seq;
            let entry = NotifyLogEntry {
                seq,
                at_ms: 0,
                ..Default::default()
            };
            (g, entry)
        };
        // One transaction per notification (groups flushing one at a time).
        let start = Instant::now();
        for i in 0..GROUPS {
            let (g, entry) = make(i, 1);
            notifier.notify(&g, &entry).await.unwrap();
        }
        let enqueue = start.elapsed();
        // A burst: the dispatcher enqueues groups due together in batches of 256.
        let burst: Vec<_> = (0..GROUPS).map(|i| make(i, 2)).collect();
        let start = Instant::now();
        for chunk in burst.chunks(256) {
            notifier.notify_batch(chunk).await.unwrap();
        }
        let enqueue_burst = start.elapsed();
        // Drain.
        let token = tokio_util::sync::CancellationToken::new();
        let sender = n.sender.clone();
        let start = Instant::now();
        let task = tokio::spawn(sender.run(token.clone()));
        loop {
            let depth = n.handle.queue_depths().await.unwrap();
            if depth.iter().all(|(_, d)| *d == 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let drain = start.elapsed();
        token.cancel();
        let _ = task.await;
        let calls = hits.load(std::sync::atomic::Ordering::SeqCst);
        println!(
            "outbox/{kind}: enqueue {GROUPS} notifications one per transaction in {:.2?} ({:.0}/s); \
             {GROUPS} as a burst (batches of 256) in {:.2?} ({:.0}/s); \
             drain {calls} webhook calls to one URL in {:.2?} ({:.0}/s, in order)",
            enqueue,
            GROUPS as f64 / enqueue.as_secs_f64(),
            enqueue_burst,
            GROUPS as f64 / enqueue_burst.as_secs_f64(),
            drain,
            calls as f64 / drain.as_secs_f64(),
        );
        db.close().await;
    });
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    let dir = tempfile::tempdir().unwrap();
    outbox(
        &format!("sqlite://{}/bench.db", dir.path().display()),
        "sqlite",
    );
    if let Ok(admin) = std::env::var("WATCHPOST_TEST_DATABASE_URL") {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let url = rt.block_on(async {
            use sqlx::Connection;
            sqlx::any::install_default_drivers();
            let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap();
            let name = format!("wp_bench_notify_{}", std::process::id());
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .unwrap();
            format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
        });
        outbox(&url, "postgres");
    }
}
