//! Remote write out (`[[remote_write]]`): watchpost's own series arrive in a real
//! Prometheus receiver (`--web.enable-remote-write-receiver`) with identical samples;
//! a receiver killed for a while loses nothing within `queue_capacity` (back-filled in
//! order once it is back); past the capacity the oldest samples are dropped and
//! counted, memory bounded; a graceful stop flushes the queue.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use watchpost::config::RemoteWriteConfig;

use common::peers::{Peer, debian_binary, start_prometheus};
use common::prom::{query_at, raw_matrix};
use common::{TestApp, eventually, sqlite_db, test_config};

const SERIES: &str = r#"{__name__=~"system_cpu_usage_ratio|system_memory_used_bytes|watchpost_build_info|watchpost_http_requests_total"}"#;

async fn receiver() -> Option<Peer> {
    let exe = debian_binary("/usr/bin/prometheus", "prometheus")?;
    let mut p = start_prometheus(
        exe,
        &[("prometheus.yml", "global:\n  scrape_interval: 1h\n")],
        &["--web.enable-remote-write-receiver"],
    );
    p.wait_ready(Duration::from_secs(60)).await;
    Some(p)
}

fn endpoint(prometheus: &Peer) -> RemoteWriteConfig {
    let mut rw = RemoteWriteConfig::new(&format!("{}/api/v1/write", prometheus.base));
    rw.batch_send_deadline = Duration::from_millis(200);
    rw.min_backoff = Duration::from_millis(50);
    rw.max_backoff = Duration::from_millis(500);
    rw.keep_metrics = Some("system_.*|watchpost_.*".into());
    rw
}

/// Raw samples of `SERIES` over the last hour at `t` ms, by label set.
async fn samples(base: &str, t: i64) -> BTreeMap<String, Vec<(String, String)>> {
    raw_matrix(&query_at(&common::client(), base, &format!("{SERIES}[1h]"), t).await)
}

/// The value of `name{labels…}` in an exposition (labels in any order).
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{name}{labels:?} not in /metrics"))
}

async fn has_build_info(prometheus: &Peer) -> bool {
    samples(&prometheus.base, watchpost::store::now_ms())
        .await
        .keys()
        .any(|k| k.contains("watchpost_build_info"))
}

#[tokio::test]
async fn samples_arrive_identically_and_an_outage_is_back_filled() {
    let Some(mut prometheus) = receiver().await else {
        return;
    };
    let db = sqlite_db();
    let mut cfg = test_config(&db.url);
    let rw = endpoint(&prometheus);
    let url = format!("{}/api/v1/write", prometheus.base);
    cfg.remote_write = vec![rw];
    let app = TestApp::start(cfg).await;
    let arrived = eventually(Duration::from_secs(30), || async {
        has_build_info(&prometheus).await.then_some(())
    })
    .await;
    assert!(arrived.is_some(), "nothing arrived:\n{}", prometheus.log());

    // The receiver is down for 8 s (40 self-scrapes), then back on the same port.
    prometheus.kill();
    tokio::time::sleep(Duration::from_secs(8)).await;
    prometheus.restart();
    prometheus.wait_ready(Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (_, text) = app.get_text("/metrics").await;
    let retried = metric(
        &text,
        "watchpost_remote_write_retried_samples_total",
        &[("url", &url)],
    );
    assert!(retried > 0.0, "the outage caused retries");
    let at = watchpost::store::now_ms();
    let ours = samples(&app.base, at).await;
    // A graceful stop flushes what is still queued.
    app.stop().await;
    let theirs = samples(&prometheus.base, at).await;
    assert!(ours.len() >= 4, "{ours:?}");
    let points: usize = ours.values().map(Vec::len).sum();
    assert!(points > 100, "{points} samples");
    assert_eq!(
        ours, theirs,
        "every sample, at its timestamp, across the outage"
    );
    let dropped = metric(
        &text,
        "watchpost_remote_write_sent_samples_total",
        &[("url", &url), ("outcome", "dropped")],
    );
    assert_eq!(dropped, 0.0);
}

#[tokio::test]
async fn over_capacity_the_oldest_are_dropped_and_counted() {
    let Some(mut prometheus) = receiver().await else {
        return;
    };
    prometheus.kill();
    let db = sqlite_db();
    let mut cfg = test_config(&db.url);
    let mut rw = endpoint(&prometheus);
    rw.queue_capacity = 100;
    rw.max_samples_per_send = 20;
    rw.keep_metrics = Some("watchpost_build_info|system_cpu_usage_ratio".into());
    let url = format!("{}/api/v1/write", prometheus.base);
    cfg.remote_write = vec![rw];
    let app = TestApp::start(cfg).await;
    let first = watchpost::store::now_ms();
    // Two series at 5 samples/s fill the queue in 10 s.
    let dropped = eventually(Duration::from_secs(60), || async {
        let (_, text) = app.get_text("/metrics").await;
        let pending = metric(
            &text,
            "watchpost_remote_write_pending_samples",
            &[("url", &url)],
        );
        assert!(pending <= 100.0, "pending {pending}: memory is bounded");
        let dropped = metric(
            &text,
            "watchpost_remote_write_sent_samples_total",
            &[("url", &url), ("outcome", "dropped")],
        );
        (dropped > 0.0).then_some(dropped)
    })
    .await
    .expect("samples dropped once the queue is full");
    assert!(dropped > 0.0);
    prometheus.restart();
    prometheus.wait_ready(Duration::from_secs(60)).await;
    let at = watchpost::store::now_ms();
    let ours = samples(&app.base, at).await;
    app.stop().await;
    let theirs = samples(&prometheus.base, at).await;
    let key = ours
        .keys()
        .find(|k| k.contains("watchpost_build_info"))
        .unwrap()
        .clone();
    let (ours, theirs) = (&ours[&key], &theirs[&key]);
    // What arrived is watchpost's samples minus a run of old ones (the request in
    // flight during the outage is kept and retried, the queue behind it dropped its
    // oldest); the newest all arrived.
    assert!(
        theirs.len() < ours.len(),
        "{} of {}",
        theirs.len(),
        ours.len()
    );
    assert!(
        theirs.iter().all(|p| ours.contains(p)),
        "nothing but watchpost's samples"
    );
    let newest = &ours[ours.len() - 20..];
    assert!(
        newest.iter().all(|p| theirs.contains(p)),
        "the newest arrived"
    );
    let missing: Vec<_> = ours.iter().filter(|p| !theirs.contains(p)).collect();
    let first_missing: f64 = missing[0].0.parse().unwrap();
    assert!(first_missing * 1000.0 >= first as f64, "{missing:?}");
}
