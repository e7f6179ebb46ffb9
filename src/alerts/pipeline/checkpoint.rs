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

/// How long `journal_applied` keeps a segment whose files were never deleted.
const APPLIED_KEPT_MS: i64 = 30 * 86_400_000;

/// Writes journaled repeats to the database, beside the writer: each adds its receipts
/// to the count and refreshes the fields only where it is the newest news of a firing
/// alert, so it cannot undo a newer full write of this or another node.
pub(super) struct Checkpoint {
    pub(super) db: Db,
    pub(super) pending: Pending,
    pub(super) journal: Option<Arc<Journal>>,
    pub(super) generation: Arc<AtomicU64>,
    pub(super) metrics: QueueMetrics,
}

impl Checkpoint {
    /// Commits `list` and marks the journal segments sealed up to `sealed` (`names`)
    /// applied in the same transaction; then deletes those segments (they hold nothing
    /// `list` does not) and takes the committed increments off the pending entries.
    pub(super) async fn run(
        self,
        list: Vec<Refresh>,
        sealed: u64,
        names: Vec<String>,
    ) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let db = self.db.clone();
        let written = retry_transient(&self.metrics.retries, || {
            let db = db.clone();
            let (list, names) = (&list, &names);
            async move {
                let mut tx = db.pool().begin().await?;
                // A retry after a commit whose answer was lost: already applied.
                let applied = repo::applied_segments(&db, &mut tx, names).await?;
                if !names.is_empty() && applied.len() == names.len() {
                    tracing::info!(segments = names.len(), "checkpoint already committed");
                    return Ok(());
                }
                repo::refresh(&db, &mut tx, list, RefreshMode::Add).await?;
                repo::mark_applied(&db, &mut tx, names, now_ms()).await?;
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
        {
            let mut pending = lock(&self.pending);
            for r in &list {
                if let Some(p) = pending.get_mut(&r.id) {
                    p.added -= r.added;
                    if p.added <= 0 {
                        pending.remove(&r.id);
                    }
                }
            }
            self.metrics.depth.set(pending.len() as i64);
        }
        forget(&self.db, &names).await;
        tracing::debug!(alerts = list.len(), took = ?started.elapsed(), "receipt journal checkpointed");
        Ok(())
    }
}

/// Drops the `journal_applied` entries of deleted segments (and very old ones).
async fn forget(db: &Db, names: &[String]) {
    if let Err(e) = repo::forget_applied(db, names, now_ms() - APPLIED_KEPT_MS).await {
        tracing::debug!(error = %e, "cannot forget applied journal segments; retried later");
    }
}

/// Writes the repeats journaled by processes that died, each segment once (those
/// `journal_applied` lists are skipped); their files are removed once committed.
/// Runs before the service answers reads.
pub async fn replay_orphans(db: &Db, journal: &Journal) -> Result<(), StoreError> {
    let orphans = journal.orphaned();
    let names: Vec<String> = orphans.segments.iter().map(|(n, _)| n.clone()).collect();
    let mut tx = db.pool().begin().await?;
    let applied = repo::applied_segments(db, &mut tx, &names).await?;
    let list = merge(
        orphans
            .segments
            .into_iter()
            .filter(|(name, _)| !applied.contains(name))
            .flat_map(|(_, records)| records),
    );
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
    journal.remove_orphans();
    forget(db, &names).await;
    Ok(())
}
