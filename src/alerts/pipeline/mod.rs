//! The alert pipeline: a bounded queue in front of one writer task that owns every
//! write to `alerts` and `alert_events`.
//!
//! * **Admission**: a request takes one permit per alert from a semaphore of
//!   `alerts.queue_capacity`; when there are not enough, it is answered 503 at once.
//!   Permits are returned when the batch holding the request has committed, so
//!   memory is bounded by the capacity.
//! * **Group commit**: the writer takes whole requests from the queue until it holds
//!   `alerts.batch_max_size` alerts or `alerts.batch_max_delay` has passed since the
//!   first, then applies the lifecycle in memory and commits the batch in one
//!   transaction (one bulk upsert, one bulk event insert, the audit records). Every
//!   request of the batch is answered only after the commit; a transient database
//!   error is retried with exponential backoff and jitter.
//! * **One writer** means the lifecycle decisions (repeat or refire, silence and
//!   inhibition flags, acknowledgements) never race. Acks, silence changes, expiry of
//!   `ends_at`, and retention go through the same task.
//! * The writer keeps every firing alert (and recently seen resolved ones) in memory,
//!   so a batch reads the database only for fingerprints it has not seen.
//! * **Repeats** (a receipt that only refreshes count, last seen, `ends_at`, rate and
//!   risk of a firing alert) go to the [`Journal`] instead of the database: one record
//!   each, one `fdatasync` per batch. A checkpoint writes their latest state to the
//!   database every `alerts.checkpoint_interval`, before reads that need it
//!   ([`Pipeline::sync`]) and at shutdown. Their `repeated` event is logged for the first repeat of an incident
//!   only (the alert's count has the rest), and they are announced to the notifier when their
//!   content changed, or at most every 30 s (so its copy of `ends_at` stays fresh).
//! * After each commit the changes go to the notifier channel ([`AlertChange`]) and to
//!   the dashboard's event bus.

mod checkpoint;
mod plan;
mod writer;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use futures_util::FutureExt;
use prometheus::{Histogram, IntCounter, IntGauge};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::change::ChangeSender;
use super::ingest::Incoming;
use super::journal::{Journal, Refresh};
use super::model::Alert;
use crate::audit::AuditRecord;
use crate::events::EventBus;
use crate::inhibit::InhibitRule;
use crate::metrics::Metrics;
use crate::store::{Db, StoreError};
use writer::Writer;

pub(crate) use checkpoint::replay_orphans;

/// The `queue` label of this pipeline's `watchpost_batch_*` metrics.
pub const QUEUE: &str = "alerts";
/// The `queue` label of the receipt journal's checkpoints: depth is the alerts with
/// journaled repeats not yet in the database, a flush is one checkpoint.
pub const JOURNAL_QUEUE: &str = "journal";
/// How often expiry and silence transitions are checked.
const TICK: Duration = Duration::from_secs(1);
/// How often retention runs.
const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);
/// Most alerts deleted by retention in one transaction.
const RETENTION_CHUNK: i64 = 5_000;
/// Most expired alerts resolved per tick.
const EXPIRE_CHUNK: usize = 2_000;
/// Attempts of a commit before giving up.
const MAX_ATTEMPTS: u32 = 6;
/// Attempts of a batch whose rows other nodes keep writing meanwhile.
const CONFLICT_ATTEMPTS: u32 = 5;
/// Longest a batch keeps retrying transient database errors before it is answered 503.
const RETRY_BUDGET: Duration = Duration::from_secs(4);
/// Distinct `source` label values of `watchpost_alerts_received_total` (then `other`).
const MAX_SOURCE_LABELS: usize = 64;
/// Cached alerts beyond which resolved ones are dropped from the writer's memory.
const CACHE_LIMIT: usize = 50_000;
/// An unchanged repeat is announced to the notifier at most this often per alert (ms).
const ANNOUNCE_EVERY_MS: i64 = 30_000;
/// ... or sooner when the `ends_at` the notifier knows is this close (ms).
const ANNOUNCE_BEFORE_END_MS: i64 = 60_000;

/// Batching and retention settings (from `[alerts]`).
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Most alerts in one transaction.
    pub batch_max_size: usize,
    /// Longest wait for more requests before committing a partial batch.
    pub batch_max_delay: Duration,
    /// Queue capacity in alerts.
    pub queue_capacity: usize,
    /// How long resolved alerts and old events are kept.
    pub retention: Duration,
    /// How often journaled repeats are written to the database.
    pub checkpoint_interval: Duration,
    /// `alerts.max_firing` (0: no limit).
    pub max_firing: usize,
    /// Retention runs on the leader only.
    pub leader: crate::cluster::LeaderGate,
    /// Whether committed changes also go to the database's change feed (several nodes
    /// on PostgreSQL: the leader's dispatcher reads them from there).
    pub feed: bool,
    /// This node's id (on its feed rows).
    pub node: String,
    /// Other nodes' commits to the feed: a batch reads the feed first when there is news.
    pub news: crate::cluster::FeedNews,
}

/// Why the pipeline did not take or commit something.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PipelineError {
    /// The queue has no room (answer 503 + `Retry-After`).
    #[error("alert queue is full ({capacity} alerts queued); retry later")]
    Full {
        /// The queue capacity.
        capacity: usize,
    },
    /// `alerts.max_firing` alerts are firing: the request would fire new ones (503 +
    /// `Retry-After`). Its new alerts were not stored; its repeats and resolves were, so
    /// alerts that still fire stay fresh while the sender retries.
    #[error(
        "{limit} alerts are firing (alerts.max_firing); new alerts are refused until some resolve; retry later"
    )]
    TooManyFiring {
        /// The limit.
        limit: usize,
    },
    /// The database failed, after retries for transient errors.
    #[error("could not store alerts: {message}")]
    Store {
        /// What failed.
        message: String,
        /// Whether retrying later may help (503) or not (500).
        transient: bool,
    },
    /// The pipeline is stopping.
    #[error("the alert pipeline is shutting down")]
    Stopped,
    /// The batch did not commit in time (the database is slow or unreachable); the
    /// request may still be stored, and a retry is harmless.
    #[error("alerts not confirmed stored within {0:?} (database slow or unreachable); retry later")]
    Timeout(Duration),
}

impl PipelineError {
    fn store(e: &StoreError) -> Self {
        PipelineError::Store {
            message: e.to_string(),
            // Rows other nodes kept writing: a retry applies over them.
            transient: e.is_transient() || matches!(e, StoreError::Conflict { .. }),
        }
    }
}

struct IngestJob {
    alerts: Vec<Incoming>,
    audit: Option<AuditRecord>,
    _permit: OwnedSemaphorePermit,
    reply: oneshot::Sender<Result<Vec<i64>, PipelineError>>,
    /// Its new alerts were taken out by `alerts.max_firing` (this limit): the rest is
    /// committed, and the answer is [`PipelineError::TooManyFiring`].
    refused: Option<usize>,
}

struct AckJob {
    id: i64,
    by: String,
    comment: String,
    audit: AuditRecord,
    reply: oneshot::Sender<Result<Option<Alert>, PipelineError>>,
}

enum Command {
    Ingest(IngestJob),
    Ack(AckJob),
    Sync(oneshot::Sender<Result<(), PipelineError>>),
    SilencesChanged(oneshot::Sender<Result<(), PipelineError>>),
    Retention(oneshot::Sender<Result<(u64, u64), PipelineError>>),
}

/// The `watchpost_batch_*{queue="alerts"}` children.
#[derive(Clone)]
struct QueueMetrics {
    depth: IntGauge,
    flush: Histogram,
    committed: IntCounter,
    failed: IntCounter,
    rejected: IntCounter,
    retries: IntCounter,
}

impl QueueMetrics {
    fn new(m: &Metrics, capacity: usize) -> Self {
        m.batch
            .capacity
            .with_label_values(&[QUEUE])
            .set(capacity as i64);
        Self::of(m, QUEUE)
    }

    fn of(m: &Metrics, queue: &str) -> Self {
        QueueMetrics {
            depth: m.batch.depth.with_label_values(&[queue]),
            flush: m.batch.flush_duration.with_label_values(&[queue]),
            committed: m.batch.items.with_label_values(&[queue, "committed"]),
            failed: m.batch.items.with_label_values(&[queue, "failed"]),
            rejected: m.batch.items.with_label_values(&[queue, "rejected"]),
            retries: m.batch.retries.with_label_values(&[queue]),
        }
    }
}

/// Repeats journaled but not yet checkpointed into the database, by alert id.
pub(crate) type Pending = Arc<std::sync::Mutex<HashMap<i64, Refresh>>>;

pub(super) fn lock(p: &Pending) -> std::sync::MutexGuard<'_, HashMap<i64, Refresh>> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// Handle to the pipeline: submit alerts, acknowledge, announce silence changes.
#[derive(Clone)]
pub struct Pipeline {
    tx: mpsc::UnboundedSender<Command>,
    permits: Arc<Semaphore>,
    capacity: usize,
    metrics: QueueMetrics,
    pending: Pending,
}

impl Pipeline {
    /// Queues `alerts` (and the audit record of the request) and waits until the batch
    /// holding them has committed; returns their ids in order.
    pub async fn submit(
        &self,
        alerts: Vec<Incoming>,
        audit: Option<AuditRecord>,
    ) -> Result<Vec<i64>, PipelineError> {
        if alerts.is_empty() && audit.is_none() {
            return Ok(Vec::new());
        }
        let want = alerts.len().clamp(1, self.capacity) as u32;
        let permit = match self.permits.clone().try_acquire_many_owned(want) {
            Ok(p) => p,
            Err(_) => {
                self.metrics.rejected.inc_by(alerts.len() as u64);
                return Err(PipelineError::Full {
                    capacity: self.capacity,
                });
            }
        };
        self.update_depth();
        let (reply, rx) = oneshot::channel();
        let job = IngestJob {
            alerts,
            audit,
            _permit: permit,
            reply,
            refused: None,
        };
        self.tx
            .send(Command::Ingest(job))
            .map_err(|_| PipelineError::Stopped)?;
        rx.await.unwrap_or_else(|_| {
            Err(PipelineError::Store {
                message: "the alert writer restarted while storing this batch".into(),
                transient: true,
            })
        })
    }

    /// Acknowledges alert `id`; `None` when there is no such alert.
    pub async fn ack(
        &self,
        id: i64,
        by: String,
        comment: String,
        audit: AuditRecord,
    ) -> Result<Option<Alert>, PipelineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Ack(AckJob {
                id,
                by,
                comment,
                audit,
                reply,
            }))
            .map_err(|_| PipelineError::Stopped)?;
        rx.await.unwrap_or(Err(PipelineError::Stopped))
    }

    /// Makes the database current: when journaled repeats are waiting, checkpoints them
    /// (after everything queued before). Reads call this first, so what was accepted is
    /// what they see.
    pub async fn sync(&self) -> Result<(), PipelineError> {
        if lock(&self.pending).is_empty() {
            return Ok(());
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Sync(reply))
            .map_err(|_| PipelineError::Stopped)?;
        rx.await.unwrap_or(Err(PipelineError::Stopped))
    }

    /// Re-reads the silences and re-applies them to every firing alert; returns when
    /// the flags are committed.
    pub async fn silences_changed(&self) -> Result<(), PipelineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::SilencesChanged(reply))
            .map_err(|_| PipelineError::Stopped)?;
        rx.await.unwrap_or(Err(PipelineError::Stopped))
    }

    /// Runs retention now; returns `(alerts, events)` deleted.
    pub async fn run_retention(&self) -> Result<(u64, u64), PipelineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Retention(reply))
            .map_err(|_| PipelineError::Stopped)?;
        rx.await.unwrap_or(Err(PipelineError::Stopped))
    }

    /// Alerts queued or being written.
    pub fn queued(&self) -> usize {
        self.capacity - self.permits.available_permits().min(self.capacity)
    }

    fn update_depth(&self) {
        self.metrics.depth.set(self.queued() as i64);
    }
}

/// Everything a writer incarnation needs; cloned on restart.
#[derive(Clone)]
pub(crate) struct WriterParts {
    pub db: Db,
    pub cfg: PipelineConfig,
    pub rules: Vec<InhibitRule>,
    pub changes: ChangeSender,
    pub events: EventBus,
    pub metrics: Metrics,
    pub generation: Arc<AtomicU64>,
    /// Where repeats go; `None` writes them to the database in their batch.
    pub journal: Option<Arc<Journal>>,
    pub pending: Pending,
    /// The checkpoint beside the writer, across its restarts.
    pub checkpoints: checkpoint::SharedSlot,
}

/// The running writer task; stop it after the HTTP server has drained.
pub struct PipelineTask {
    token: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl PipelineTask {
    /// Lets the writer commit what is queued, then waits for it (at most `timeout`).
    pub async fn shutdown(self, timeout: Duration) {
        self.token.cancel();
        let abort = self.handle.abort_handle();
        if tokio::time::timeout(timeout, self.handle).await.is_err() {
            tracing::warn!("alert writer did not stop in time; aborting it");
            abort.abort();
        }
    }
}

/// Starts the writer; returns the handle and the task.
pub(crate) fn start(parts: WriterParts) -> (Pipeline, PipelineTask) {
    let capacity = parts.cfg.queue_capacity.max(1);
    let (tx, rx) = mpsc::unbounded_channel();
    let permits = Arc::new(Semaphore::new(capacity));
    let metrics = QueueMetrics::new(&parts.metrics, capacity);
    metrics.depth.set(0);
    let pipeline = Pipeline {
        tx,
        permits,
        capacity,
        metrics: metrics.clone(),
        pending: parts.pending.clone(),
    };
    let token = CancellationToken::new();
    let handle = tokio::spawn(supervise(
        parts,
        metrics,
        pipeline.clone(),
        rx,
        token.clone(),
    ));
    (pipeline, PipelineTask { token, handle })
}

/// Runs writer incarnations until stopped, restarting after an error or a panic.
async fn supervise(
    parts: WriterParts,
    qm: QueueMetrics,
    handle: Pipeline,
    mut rx: mpsc::UnboundedReceiver<Command>,
    token: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let run = async {
            let mut w = Writer::init(parts.clone(), qm.clone(), handle.clone()).await?;
            w.run(&mut rx, &token).await
        };
        match AssertUnwindSafe(run).catch_unwind().await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => {
                tracing::error!(error = %e, retry_in = ?backoff, "alert writer failed; restarting")
            }
            Err(_) => tracing::error!(retry_in = ?backoff, "alert writer panicked; restarting"),
        }
        if token.is_cancelled() {
            rx.close();
            while let Ok(cmd) = rx.try_recv() {
                reject(cmd, PipelineError::Stopped);
            }
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = token.cancelled() => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn reject(cmd: Command, e: PipelineError) {
    match cmd {
        Command::Ingest(j) => {
            let _ = j.reply.send(Err(e));
        }
        Command::Ack(j) => {
            let _ = j.reply.send(Err(e));
        }
        Command::Sync(r) | Command::SilencesChanged(r) => {
            let _ = r.send(Err(e));
        }
        Command::Retention(r) => {
            let _ = r.send(Err(e));
        }
    }
}
