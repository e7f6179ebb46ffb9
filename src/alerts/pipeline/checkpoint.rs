//! Journaled repeats on their way to the database: the pending set, the checkpoint
//! beside the writer, the replay of a dead process's journal, and retries of transient
//! database errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus::IntCounter;
use rand::Rng;
use tokio::time::Instant;

use super::{MAX_ATTEMPTS, Pending, QueueMetrics, RETRY_BUDGET, lock};
use crate::alerts::journal::{Journal, Refresh};
use crate::alerts::repo;
use crate::store::{Db, StoreError};

pub(super) async fn retry_transient<T, F, Fut>(
    retries: &IntCounter,
    mut f: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut delay = Duration::from_millis(25);
    let mut attempt = 1;
    let started = Instant::now();
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e)
                if attempt < MAX_ATTEMPTS
                    && e.is_transient()
                    && started.elapsed() + delay < RETRY_BUDGET =>
            {
                retries.inc();
                let jitter = rand::rng().random_range(0..=delay.as_millis() as u64);
                let wait = delay + Duration::from_millis(jitter);
                tracing::warn!(error = %e, attempt, retry_in = ?wait, "transient database error; retrying");
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(Duration::from_secs(2));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Writes journaled repeats to the database, beside the writer: the rows change only
/// where the stored count is lower, so it cannot undo a newer full write.
pub(super) struct Checkpoint {
    pub(super) db: Db,
    pub(super) pending: Pending,
    pub(super) journal: Option<Arc<Journal>>,
    pub(super) generation: Arc<AtomicU64>,
    pub(super) metrics: QueueMetrics,
}

impl Checkpoint {
    /// Commits `list`; then deletes the journal segments sealed up to `sealed` (they hold
    /// nothing newer than `list`) and drops
    /// the pending entries it wrote (unless a newer repeat came meanwhile).
    pub(super) async fn run(self, list: Vec<Refresh>, sealed: u64) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let db = self.db.clone();
        let written = retry_transient(&self.metrics.retries, || {
            let db = db.clone();
            let list = &list;
            async move {
                let mut tx = db.pool().begin().await?;
                repo::refresh(&db, &mut tx, list).await?;
                tx.commit().await?;
                Ok(())
            }
        })
        .await;
        self.metrics.flush.observe(started.elapsed().as_secs_f64());
        if let Err(e) = written {
            self.metrics.failed.inc_by(list.len() as u64);
            return Err(e);
        }
        self.metrics.committed.inc_by(list.len() as u64);
        if let Some(j) = &self.journal {
            j.release(sealed);
        }
        // Before `pending` empties: a read that then skips `sync` must not get stats
        // cached before this checkpoint.
        self.generation.fetch_add(1, Ordering::Relaxed);
        let mut pending = lock(&self.pending);
        for r in &list {
            if pending.get(&r.id).is_some_and(|p| p.count <= r.count) {
                pending.remove(&r.id);
            }
        }
        self.metrics.depth.set(pending.len() as i64);
        drop(pending);
        tracing::debug!(alerts = list.len(), took = ?started.elapsed(), "receipt journal checkpointed");
        Ok(())
    }
}

/// Writes the repeats journaled by processes that died; their files are removed once
/// committed. Runs before the service answers reads.
pub async fn replay_orphans(db: &Db, journal: &Journal) -> Result<(), StoreError> {
    let list = journal.orphaned();
    if !list.is_empty() {
        let mut tx = db.pool().begin().await?;
        repo::refresh(db, &mut tx, &list).await?;
        tx.commit().await?;
        tracing::info!(
            alerts = list.len(),
            "replayed repeats from the receipt journal"
        );
    }
    journal.remove_orphans();
    Ok(())
}
