//! The collection loop: every `collect.interval` it samples the host, refreshes gauges
//! read from live objects (the DB pool), and announces the tick so the tsdb can scrape
//! the registry at the same instant.

pub mod host;
pub mod postgres;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use host::HostCollector;

use crate::store::Db;

/// Samples host and self metrics at a fixed interval.
#[derive(Clone)]
pub struct CollectLoop {
    host: Arc<Mutex<HostCollector>>,
    db: Db,
    interval: Duration,
    ticks: watch::Sender<i64>,
}

impl CollectLoop {
    /// A loop over `host` and `db` at `interval`.
    pub fn new(host: HostCollector, db: Db, interval: Duration) -> Self {
        Self {
            host: Arc::new(Mutex::new(host)),
            db,
            interval,
            ticks: watch::channel(0).0,
        }
    }

    /// Receives the timestamp (Unix ms) of every completed collection.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.ticks.subscribe()
    }

    /// Takes one sample now (sysinfo reads /proc and statvfs, so off the async workers).
    pub async fn collect_once(&self) {
        let host = self.host.clone();
        let sampled = tokio::task::spawn_blocking(move || {
            if let Ok(mut h) = host.lock() {
                h.collect();
            }
        })
        .await;
        if let Err(e) = sampled {
            tracing::error!(error = %e, "host collection panicked");
        }
        self.db.update_pool_gauges();
        self.ticks.send_replace(crate::store::now_ms());
    }

    /// Runs until `shutdown`, skipping ticks it could not keep up with.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = ticker.tick() => self.collect_once().await,
            }
        }
    }
}
