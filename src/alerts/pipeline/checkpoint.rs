//! Journaled repeats on their way to the database: the pending set, the checkpoint
//! beside the writer, the replay of a dead process's journal, and retries of transient
//! database errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use prometheus::IntCounter;
use rand::Rng;
use tokio::time::Instant;

use super::{MAX_ATTEMPTS, Pending, QueueMetrics, RETRY_BUDGET, lock};
use crate::alerts::journal::{Journal, Refresh, merge};
use crate::alerts::repo::{self, RefreshMode};
use crate::store::{Db, StoreError, now_ms};

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

/// One checkpoint's work: the increments it adds, and the journal segments (sealed up
/// to number `sealed`, named `names`) that hold them.
#[derive(Debug, Clone)]
pub(super) struct CheckpointJob {
    pub(super) list: Vec<Refresh>,
    pub(super) sealed: u64,
    pub(super) names: Vec<String>,
}

/// The checkpoint running beside the writer, kept across the writer's restarts: a new
/// incarnation waits for a checkpoint still running, and a failed checkpoint is retried
/// exactly as it was (its commit may have landed with its answer lost: then every one
/// of its segments is listed as applied, and the retry adds nothing).
#[derive(Default)]
pub(crate) struct CheckpointSlot {
    running: Option<tokio::task::JoinHandle<Result<(), StoreError>>>,
    failed: Option<CheckpointJob>,
}

/// [`CheckpointSlot`] shared by the writer's incarnations.
pub(crate) type SharedSlot = Arc<std::sync::Mutex<CheckpointSlot>>;

fn slot(s: &SharedSlot) -> std::sync::MutexGuard<'_, CheckpointSlot> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes journaled repeats to the database, beside the writer: each adds its receipts
/// to the count and refreshes the fields only where it is the newest news of a firing
/// alert, so it cannot undo a newer full write of this or another node.
pub(super) struct Checkpoint {
    pub(super) db: Db,
    pub(super) pending: Pending,
    pub(super) journal: Option<Arc<Journal>>,
    pub(super) generation: Arc<AtomicU64>,
    pub(super) metrics: QueueMetrics,
    pub(super) slot: SharedSlot,
}

impl Checkpoint {
    /// Starts the next checkpoint unless one is running: the failed one again, else one
    /// of everything pending (`seal` rotates the journal and names the sealed segments).
    pub(super) fn start(
        self,
        seal: impl FnOnce() -> Result<(u64, Vec<String>), StoreError>,
    ) -> Result<(), StoreError> {
        let shared = self.slot.clone();
        let mut s = slot(&shared);
        if s.running.as_ref().is_some_and(|h| !h.is_finished()) {
            return Ok(());
        }
        if let Some(done) = s.running.take()
            && let Some(Ok(Err(e))) = done.now_or_never()
        {
            tracing::warn!(error = %e, "checkpointing the receipt journal failed; retrying it");
        }
        let job = match s.failed.take() {
            Some(job) => job,
            None => {
                let list: Vec<Refresh> = lock(&self.pending).values().copied().collect();
                if list.is_empty() {
                    return Ok(());
                }
                let (sealed, names) = seal()?;
                CheckpointJob {
                    list,
                    sealed,
                    names,
                }
            }
        };
        s.running = Some(tokio::spawn(self.run(job)));
        Ok(())
    }

    /// Waits for the running checkpoint, if any.
    pub(super) async fn finish(shared: &SharedSlot) -> Result<(), StoreError> {
        let running = slot(shared).running.take();
        match running {
            Some(h) => h
                .await
                .unwrap_or(Err(StoreError::Query(sqlx::Error::WorkerCrashed))),
            None => Ok(()),
        }
    }

    /// Commits `job` and marks its journal segments applied in the same transaction;
    /// then deletes those segments and takes the committed increments off the pending
    /// entries. A failure leaves `job` in the slot for the next start.
    async fn run(self, job: CheckpointJob) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let db = self.db.clone();
        let written = retry_transient(&self.metrics.retries, || {
            let db = db.clone();
            let job = &job;
            async move {
                let mut tx = db.begin().await?;
                // A retry after a commit whose answer was lost: already applied.
                let applied = repo::applied_segments(&db, &mut tx, &job.names).await?;
                if !job.names.is_empty() && applied.len() == job.names.len() {
                    tracing::info!(segments = job.names.len(), "checkpoint already committed");
                    return Ok(());
                }
                let ids: Vec<i64> = job.list.iter().map(|r| r.id).collect();
                repo::lock_rows(&db, &mut tx, &ids, &[]).await?;
                repo::refresh(&db, &mut tx, &job.list, RefreshMode::Add).await?;
                repo::mark_applied(&db, &mut tx, &job.names, now_ms()).await?;
                tx.commit().await?;
                Ok(())
            }
        })
        .await;
        self.metrics.flush.observe(started.elapsed().as_secs_f64());
        let n = job.list.len() as u64;
        if let Err(e) = written {
            self.metrics.failed.inc_by(n);
            slot(&self.slot).failed = Some(job);
            return Err(e);
        }
        self.metrics.committed.inc_by(n);
        let removed = match &self.journal {
            Some(j) => j.release(job.sealed),
            None => Vec::new(),
        };
        // Before `pending` empties: a read that then skips `sync` must not get stats
        // cached before this checkpoint.
        self.generation.fetch_add(1, Ordering::Relaxed);
        {
            let mut pending = lock(&self.pending);
            for r in &job.list {
                if let Some(p) = pending.get_mut(&r.id) {
                    p.added -= r.added;
                    if p.added <= 0 {
                        pending.remove(&r.id);
                    }
                }
            }
            self.metrics.depth.set(pending.len() as i64);
        }
        forget(&self.db, &removed).await;
        tracing::debug!(alerts = n, took = ?started.elapsed(), "receipt journal checkpointed");
        Ok(())
    }
}

/// Drops the `journal_applied` entries of segments whose files are deleted (an entry
/// whose file could not be deleted stays, so the file is never replayed).
async fn forget(db: &Db, removed: &[String]) {
    if removed.is_empty() {
        return;
    }
    if let Err(e) = repo::forget_applied(db, removed).await {
        tracing::debug!(error = %e, "cannot forget applied journal segments");
    }
}

/// Writes the repeats journaled by processes that died, each segment once (those
/// `journal_applied` lists are skipped); their files are removed once committed.
/// Runs before the service answers reads.
pub async fn replay_orphans(db: &Db, journal: &Journal) -> Result<(), StoreError> {
    let orphans = journal.orphaned();
    let names: Vec<String> = orphans.segments.iter().map(|(n, _)| n.clone()).collect();
    let mut tx = db.begin().await?;
    let applied = repo::applied_segments(db, &mut tx, &names).await?;
    let list = merge(
        orphans
            .segments
            .into_iter()
            .filter(|(name, _)| !applied.contains(name))
            .flat_map(|(_, records)| records),
    );
    let mut ids: Vec<i64> = list.iter().chain(&orphans.totals).map(|r| r.id).collect();
    ids.sort_unstable();
    ids.dedup();
    repo::lock_rows(db, &mut tx, &ids, &[]).await?;
    repo::refresh(db, &mut tx, &list, RefreshMode::Add).await?;
    repo::mark_applied(db, &mut tx, &names, now_ms()).await?;
    repo::refresh(db, &mut tx, &orphans.totals, RefreshMode::Total).await?;
    tx.commit().await?;
    if !list.is_empty() || !orphans.totals.is_empty() {
        tracing::info!(
            alerts = list.len() + orphans.totals.len(),
            skipped_segments = applied.len(),
            "replayed repeats from the receipt journal"
        );
    }
    let removed = journal.remove_orphans();
    forget(db, &removed).await;
    Ok(())
}
