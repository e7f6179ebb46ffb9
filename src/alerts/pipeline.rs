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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use prometheus::{Histogram, IntCounter, IntGauge};
use rand::Rng;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::change::{AlertChange, ChangeKind, ChangeSender};
use super::ingest::Incoming;
use super::journal::{Journal, Refresh};
use super::lifecycle::{self, Event, Receipt, silence_transition};
use super::model::{Ack, Alert, AlertState, EventKind, Labels, Severity};
use super::repo::{self, NewEvent};
use crate::audit::{self, AuditRecord};
use crate::events::{AlertEvent, AlertEventKind, EventBus};
use crate::inhibit::{InhibitRule, Inhibitor};
use crate::metrics::Metrics;
use crate::silence::{self, SilenceSet};
use crate::store::{Db, StoreError, now_ms};

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
    /// Retention runs on the leader only.
    pub leader: crate::cluster::LeaderGate,
    /// Whether committed changes also go to the database's change feed (several nodes
    /// on PostgreSQL: the leader's dispatcher reads them from there).
    pub feed: bool,
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
            transient: e.is_transient(),
        }
    }
}

struct IngestJob {
    alerts: Vec<Incoming>,
    audit: Option<AuditRecord>,
    _permit: OwnedSemaphorePermit,
    reply: oneshot::Sender<Result<Vec<i64>, PipelineError>>,
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

fn lock(p: &Pending) -> std::sync::MutexGuard<'_, HashMap<i64, Refresh>> {
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

/// Runs `f` until it succeeds, retrying transient errors with exponential backoff and
/// jitter (counted in `retries`).
async fn retry_transient<T, F, Fut>(retries: &IntCounter, mut f: F) -> Result<T, StoreError>
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
struct Checkpoint {
    db: Db,
    pending: Pending,
    journal: Option<Arc<Journal>>,
    generation: Arc<AtomicU64>,
    metrics: QueueMetrics,
}

impl Checkpoint {
    /// Commits `list`; then deletes the journal segments sealed up to `sealed` (they hold
    /// nothing newer than `list`) and drops
    /// the pending entries it wrote (unless a newer repeat came meanwhile).
    async fn run(self, list: Vec<Refresh>, sealed: u64) -> Result<(), StoreError> {
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

/// What a batch will write, and what to announce after the commit.
#[derive(Default)]
struct Plan {
    now: i64,
    order: Vec<String>,
    alerts: HashMap<String, Alert>,
    before: HashMap<String, Option<(AlertState, Severity)>>,
    dirty: HashSet<String>,
    /// Alerts whose receipts only refreshed volatile fields (journaled).
    volatile: HashSet<String>,
    events: Vec<(String, Event)>,
    changes: Vec<(String, ChangeKind)>,
    audit: Vec<AuditRecord>,
}

impl Plan {
    fn new(now: i64) -> Self {
        Plan {
            now,
            ..Default::default()
        }
    }

    /// Adds an alert as it is stored (not dirty unless changed later).
    fn add_stored(&mut self, a: Alert) {
        if self.alerts.contains_key(&a.fingerprint) {
            return;
        }
        self.before
            .insert(a.fingerprint.clone(), Some((a.state, a.severity)));
        self.order.push(a.fingerprint.clone());
        self.alerts.insert(a.fingerprint.clone(), a);
    }

    /// Takes the alert of `fp` out of the plan, else out of the writer's cache (its
    /// first touch in this batch records the state it had), else `None` (new).
    fn take(&mut self, fp: &str, cache: &mut HashMap<String, Alert>) -> (String, Option<Alert>) {
        if let Some((key, a)) = self.alerts.remove_entry(fp) {
            return (key, Some(a));
        }
        let (key, alert) = match cache.remove_entry(fp) {
            Some((key, a)) => (key, Some(a)),
            None => (fp.to_string(), None),
        };
        if !self.before.contains_key(fp) {
            let state = alert.as_ref().map(|a| (a.state, a.severity));
            self.before.insert(key.clone(), state);
            self.order.push(key.clone());
        }
        (key, alert)
    }

    /// Puts an alert back after a receipt, with what the receipt did.
    fn put(&mut self, key: String, alert: Alert, r: Receipt, volatile: bool) {
        for e in r.events {
            self.events.push((key.clone(), e));
        }
        for c in r.changes {
            self.changes.push((key.clone(), c));
        }
        if volatile {
            if !self.dirty.contains(&key) {
                self.volatile.insert(key.clone());
            }
        } else if r.dirty {
            self.volatile.remove(&key);
            self.dirty.insert(key.clone());
        }
        self.alerts.insert(key, alert);
    }

    fn event(&mut self, fp: &str, e: Event, change: Option<ChangeKind>) {
        self.events.push((fp.to_string(), e));
        if let Some(c) = change {
            self.changes.push((fp.to_string(), c));
        }
        self.volatile.remove(fp);
        self.dirty.insert(fp.to_string());
    }

    fn is_empty(&self) -> bool {
        self.dirty.is_empty() && self.volatile.is_empty() && self.audit.is_empty()
    }

    /// The refreshes of the alerts that only repeated (and were not written in full).
    fn refreshes(&self) -> Vec<Refresh> {
        self.volatile
            .iter()
            .filter(|fp| !self.dirty.contains(*fp))
            .filter_map(|fp| self.alerts.get(fp))
            .filter(|a| a.id > 0)
            .map(Refresh::of)
            .collect()
    }

    /// The changes to announce: per alert, its distinct kinds in order; an alert that
    /// ends the batch resolved announces only that.
    fn announcements(&self) -> Vec<(&Alert, ChangeKind)> {
        let mut per: HashMap<&str, Vec<ChangeKind>> = HashMap::new();
        let mut order: Vec<&str> = Vec::new();
        for (fp, kind) in &self.changes {
            let list = per.entry(fp.as_str()).or_insert_with(|| {
                order.push(fp.as_str());
                Vec::new()
            });
            if !list.contains(kind) {
                list.push(*kind);
            }
        }
        let mut out = Vec::new();
        for fp in order {
            let Some(alert) = self.alerts.get(fp) else {
                continue;
            };
            let kinds = &per[fp];
            if alert.state == AlertState::Resolved {
                if kinds.contains(&ChangeKind::Resolved) {
                    out.push((alert, ChangeKind::Resolved));
                }
                if kinds.contains(&ChangeKind::Acked) {
                    out.push((alert, ChangeKind::Acked));
                }
                continue;
            }
            for k in kinds {
                if *k != ChangeKind::Resolved {
                    out.push((alert, *k));
                }
            }
        }
        out
    }
}

/// The change-feed rows of `plan` (what [`Plan::announcements`] announces), with the
/// ids new alerts got in this transaction.
fn feed_rows(plan: &Plan, by_fp: &HashMap<&str, i64>) -> Vec<repo::NewChange> {
    plan.announcements()
        .into_iter()
        .filter_map(|(a, kind)| {
            let id = by_fp.get(a.fingerprint.as_str()).copied().unwrap_or(a.id);
            (id > 0).then(|| repo::NewChange {
                alert_id: id,
                kind: kind.as_str(),
                at_ms: plan.now,
            })
        })
        .collect()
}

/// How recently an alert's repeats were logged and announced.
#[derive(Debug, Default, Clone, Copy)]
struct Throttle {
    /// Whether a `repeated` event was logged since it fired (by this process).
    logged: bool,
    /// When it was last announced, and the `ends_at` announced then.
    announced: Option<(i64, Option<i64>)>,
    /// Whether a repeat was announced since its last other change.
    repeat_told: bool,
}

/// Thins out what a receipt logs and announces; returns whether it only refreshed a
/// firing alert (so it can be journaled instead of written).
///
/// A `repeated` event is kept for the first repeat of an incident (the count on the
/// alert says how many followed; a restarted process logs one more). An unchanged repeat is announced when it is the first since
/// another change of the alert, then at most every [`ANNOUNCE_EVERY_MS`], or when the
/// `ends_at` the notifier holds is about to pass.
fn coalesce(c: &mut Throttle, alert: &Alert, applied: &mut Receipt, now: i64) -> bool {
    let repeat_only = applied.changes.iter().all(|k| *k == ChangeKind::Repeated)
        && applied.events.iter().all(|e| e.kind == EventKind::Repeated);
    if !repeat_only {
        if applied.changes.contains(&ChangeKind::Fired) {
            c.logged = false;
        }
        return false;
    }
    if !applied.events.is_empty() {
        if !c.logged {
            c.logged = true;
        } else {
            applied.events.clear();
        }
    }
    let unchanged = applied.refreshed_only;
    if !applied.changes.is_empty() {
        let ends = alert.ends_at_ms;
        let due = match c.announced {
            _ if !c.repeat_told => true,
            None => true,
            Some((at, known)) => {
                now - at >= ANNOUNCE_EVERY_MS
                    || (known != ends && known.is_some_and(|e| e - now < ANNOUNCE_BEFORE_END_MS))
            }
        };
        if due || !unchanged {
            c.announced = Some((now, ends));
            c.repeat_told = true;
        } else {
            applied.changes.clear();
        }
    }
    unchanged && applied.events.is_empty() && alert.id > 0
}

struct Writer {
    p: WriterParts,
    qm: QueueMetrics,
    /// `watchpost_batch_*{queue="journal"}`.
    jm: QueueMetrics,
    handle: Pipeline,
    silences: SilenceSet,
    active_silences: BTreeSet<String>,
    inhibitor: Inhibitor,
    active: HashMap<Severity, i64>,
    sources: HashSet<String>,
    last_retention: Instant,
    last_checkpoint: Instant,
    /// The checkpoint running beside the writer.
    inflight: Option<tokio::task::JoinHandle<Result<(), StoreError>>>,
    /// The cache needs a reload from the database (a failed batch, then a failed reload).
    stale: bool,
    /// Every firing alert and recently seen resolved ones, by fingerprint.
    cache: HashMap<String, Alert>,
    /// Repeat logging and announcing, by fingerprint (for cached alerts).
    throttle: HashMap<String, Throttle>,
}

impl Writer {
    /// Loads silences and firing alerts, rebuilds the inhibition index, and fixes
    /// flags that config or silence changes made stale while stopped.
    async fn init(
        p: WriterParts,
        qm: QueueMetrics,
        handle: Pipeline,
    ) -> Result<Writer, StoreError> {
        let now = now_ms();
        let silences = SilenceSet::new(silence::unexpired(&p.db, now).await?);
        let mut w = Writer {
            jm: QueueMetrics::of(&p.metrics, JOURNAL_QUEUE),
            inhibitor: Inhibitor::new(p.rules.clone()),
            active_silences: silences.active_ids(now),
            silences,
            p,
            qm,
            handle,
            active: HashMap::new(),
            sources: HashSet::new(),
            // First retention shortly after start.
            last_retention: Instant::now() - RETENTION_INTERVAL + Duration::from_secs(60),
            last_checkpoint: Instant::now(),
            inflight: None,
            stale: false,
            cache: HashMap::new(),
            throttle: HashMap::new(),
        };
        // Repeats a previous incarnation journaled but did not checkpoint.
        w.checkpoint().await?;
        let firing = repo::firing(&w.p.db).await?;
        let mut plan = Plan::new(now);
        for a in firing {
            w.inhibitor.update(&a.fingerprint, Some(&a.match_view()));
            *w.active.entry(a.severity).or_default() += 1;
            plan.add_stored(a);
        }
        let all: Vec<String> = plan.order.clone();
        w.resilence(&mut plan, &all, now);
        w.reinhibit(&mut plan, all.into_iter().collect());
        w.publish_active();
        if !plan.is_empty() {
            w.commit(&mut plan).await?;
            w.announce(&plan).await;
        }
        w.remember(plan);
        tracing::info!(
            firing = w.active.values().sum::<i64>(),
            silences = w.active_silences.len(),
            "alert pipeline started"
        );
        Ok(w)
    }

    async fn run(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Command>,
        token: &CancellationToken,
    ) -> Result<(), StoreError> {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut deferred: Option<Command> = None;
        loop {
            let cmd = match deferred.take() {
                Some(c) => c,
                None => tokio::select! {
                    biased;
                    _ = tick.tick() => {
                        self.housekeeping().await;
                        continue;
                    }
                    c = rx.recv() => match c {
                        Some(c) => c,
                        None => return Ok(()),
                    },
                    _ = token.cancelled() => {
                        self.drain(rx).await;
                        return Ok(());
                    }
                },
            };
            deferred = self.handle_command(cmd, rx).await;
        }
    }

    /// Processes everything still queued, then stops.
    async fn drain(&mut self, rx: &mut mpsc::UnboundedReceiver<Command>) {
        rx.close();
        let mut deferred = None;
        loop {
            let cmd = match deferred.take() {
                Some(c) => c,
                None => match rx.try_recv() {
                    Ok(c) => c,
                    Err(_) => break,
                },
            };
            deferred = self.handle_command(cmd, rx).await;
        }
        match self.checkpoint().await {
            Ok(()) => {
                if let Some(j) = &self.p.journal {
                    j.close();
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "final checkpoint failed; the receipt journal is replayed at the next start")
            }
        }
        tracing::info!("alert pipeline drained");
    }

    async fn handle_command(
        &mut self,
        cmd: Command,
        rx: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Option<Command> {
        match cmd {
            Command::Ingest(job) => {
                if self.stale {
                    self.rebuild().await;
                }
                let (jobs, next) = self.gather(job, rx).await;
                self.ingest(jobs).await;
                next
            }
            Command::Ack(job) => {
                let r = self.ack(&job).await;
                let _ = job.reply.send(r);
                None
            }
            Command::Sync(reply) => {
                let r = self.checkpoint().await;
                let _ = reply.send(r.map_err(|e| PipelineError::store(&e)));
                None
            }
            Command::SilencesChanged(reply) => {
                let r = self.reevaluate_silences(true).await;
                let _ = reply.send(r.map_err(|e| PipelineError::store(&e)));
                None
            }
            Command::Retention(reply) => {
                let r = self.retention().await;
                let _ = reply.send(r.map_err(|e| PipelineError::store(&e)));
                None
            }
        }
    }

    /// Takes more ingest jobs until the batch is full or the delay has passed.
    async fn gather(
        &self,
        first: IngestJob,
        rx: &mut mpsc::UnboundedReceiver<Command>,
    ) -> (Vec<IngestJob>, Option<Command>) {
        let max = self.p.cfg.batch_max_size.max(1);
        let deadline = Instant::now() + self.p.cfg.batch_max_delay;
        let mut n = first.alerts.len();
        let mut jobs = vec![first];
        while n < max {
            let next = match rx.try_recv() {
                Ok(c) => Some(c),
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(c)) => Some(c),
                        _ => None,
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            };
            match next {
                Some(Command::Ingest(j)) => {
                    if n + j.alerts.len() > max {
                        return (jobs, Some(Command::Ingest(j)));
                    }
                    n += j.alerts.len();
                    jobs.push(j);
                }
                Some(other) => return (jobs, Some(other)),
                None => break,
            }
        }
        (jobs, None)
    }

    async fn ingest(&mut self, jobs: Vec<IngestJob>) {
        let started = std::time::Instant::now();
        let n: usize = jobs.iter().map(|j| j.alerts.len()).sum();
        let result = self.ingest_batch(&jobs).await;
        self.qm.flush.observe(started.elapsed().as_secs_f64());
        match result {
            Ok((ids, plan, undurable)) => {
                self.qm.committed.inc_by(n as u64);
                let mut per_source: HashMap<&str, u64> = HashMap::new();
                for job in &jobs {
                    for a in &job.alerts {
                        *per_source.entry(a.source.as_str()).or_default() += 1;
                    }
                }
                for (source, count) in per_source {
                    let label = self.source_label(source);
                    self.p
                        .metrics
                        .alerting
                        .alerts_received
                        .with_label_values(&[label.as_str()])
                        .inc_by(count);
                }
                for (job, ids) in jobs.into_iter().zip(ids) {
                    // A request is answered 202 only when every receipt in it is durable;
                    // the rest of the batch is not held back by it.
                    let durable = undurable.is_empty()
                        || !job
                            .alerts
                            .iter()
                            .any(|a| undurable.contains(&a.fingerprint));
                    let reply = if durable {
                        Ok(ids)
                    } else {
                        Err(PipelineError::Store {
                            message: "repeats could not be made durable (receipt journal and database failed)".into(),
                            transient: true,
                        })
                    };
                    let _ = job.reply.send(reply);
                }
                self.handle.update_depth();
                self.announce(&plan).await;
                self.remember(plan);
            }
            Err(e) => {
                tracing::error!(error = %e, alerts = n, "alert batch failed");
                self.qm.failed.inc_by(n as u64);
                let err = PipelineError::store(&e);
                for job in jobs {
                    let _ = job.reply.send(Err(err.clone()));
                }
                self.handle.update_depth();
                self.rebuild().await;
            }
        }
    }

    /// Applies a batch in memory and commits it.
    async fn ingest_batch(
        &mut self,
        jobs: &[IngestJob],
    ) -> Result<(Vec<Vec<i64>>, Plan, HashSet<String>), StoreError> {
        let now = now_ms();
        let mut fps: Vec<&str> = jobs
            .iter()
            .flat_map(|j| j.alerts.iter().map(|a| a.fingerprint.as_str()))
            .filter(|fp| !self.cache.contains_key(*fp))
            .collect();
        fps.sort_unstable();
        fps.dedup();
        for (fp, a) in self.load(&fps).await? {
            self.cache.insert(fp, a);
        }
        let mut plan = Plan::new(now);
        for job in jobs {
            for inc in &job.alerts {
                let fp = inc.fingerprint.as_str();
                // Applied in place: the alert moves from the cache into the plan, and
                // back into the cache once committed (`remember`).
                let (key, mut slot) = plan.take(fp, &mut self.cache);
                let mut receipt = lifecycle::receive(&mut slot, inc, now, &self.silences);
                let Some(alert) = slot else { continue };
                let throttle = match self.throttle.get_mut(fp) {
                    Some(t) => t,
                    None => self.throttle.entry(fp.to_string()).or_default(),
                };
                // With a change feed, a repeat that is announced is written (and fed):
                // the leader learns of it only through the database.
                let journaled = coalesce(throttle, &alert, &mut receipt, now);
                let volatile = journaled && (!self.p.cfg.feed || receipt.changes.is_empty());
                plan.put(key, alert, receipt, volatile);
            }
            if let Some(a) = &job.audit {
                plan.audit.push(a.clone());
            }
        }
        let mut affected = BTreeSet::new();
        // A refresh changes neither labels nor state: inhibition stays as it is.
        let touched: Vec<String> = plan
            .order
            .iter()
            .filter(|fp| !plan.volatile.contains(*fp))
            .cloned()
            .collect();
        for fp in &touched {
            let a = &plan.alerts[fp];
            let view = a.match_view();
            let labels = (a.state == AlertState::Firing).then_some(&view as &dyn Labels);
            affected.extend(self.inhibitor.update(fp, labels));
        }
        self.load_into(&mut plan, &affected).await?;
        self.reinhibit(&mut plan, affected);
        let undurable = self.commit(&mut plan).await?;
        let ids = jobs
            .iter()
            .map(|j| {
                j.alerts
                    .iter()
                    .map(|a| plan.alerts.get(&a.fingerprint).map(|x| x.id).unwrap_or(0))
                    .collect()
            })
            .collect();
        self.account(&plan);
        Ok((ids, plan, undurable))
    }

    /// Stored alerts by fingerprint (with retries).
    async fn load(&self, fps: &[&str]) -> Result<HashMap<String, Alert>, StoreError> {
        let db = self.p.db.clone();
        let list = self
            .retrying(|| {
                let db = db.clone();
                async move {
                    let mut conn = db.pool().acquire().await?;
                    repo::by_fingerprints(&db, &mut conn, fps).await
                }
            })
            .await?;
        // Journaled repeats not yet checkpointed are newer than the rows.
        let pending = lock(&self.p.pending);
        Ok(list
            .into_iter()
            .map(|mut a| {
                if let Some(r) = pending.get(&a.id) {
                    r.apply_to(&mut a);
                }
                (a.fingerprint.clone(), a)
            })
            .collect())
    }

    /// Adds the stored alerts among `fps` that the plan does not hold yet.
    async fn load_into(&self, plan: &mut Plan, fps: &BTreeSet<String>) -> Result<(), StoreError> {
        let mut missing: Vec<&str> = Vec::new();
        for fp in fps {
            if plan.alerts.contains_key(fp) {
                continue;
            }
            match self.cache.get(fp) {
                Some(a) => plan.add_stored(a.clone()),
                None => missing.push(fp),
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        for (_, a) in self.load(&missing).await? {
            plan.add_stored(a);
        }
        Ok(())
    }

    /// Re-derives the inhibition flag of the firing alerts among `fps`.
    fn reinhibit(&self, plan: &mut Plan, fps: BTreeSet<String>) {
        for fp in fps {
            let Some(a) = plan.alerts.get_mut(&fp) else {
                continue;
            };
            if a.state != AlertState::Firing {
                continue;
            }
            let now = self.inhibitor.inhibitor_of(&fp);
            if now == a.inhibited_by {
                continue;
            }
            let was = a.inhibited_by.take();
            a.inhibited_by = now.clone();
            let (event, change) = match (&was, &now) {
                (None, Some(by)) => (
                    Event::new(
                        EventKind::Silenced,
                        json!({"reason": "inhibited", "by": by}),
                    ),
                    Some(ChangeKind::Silenced),
                ),
                (Some(by), None) => (
                    Event::new(
                        EventKind::Unsilenced,
                        json!({"reason": "inhibition ended", "by": by}),
                    ),
                    Some(ChangeKind::Unsilenced),
                ),
                (_, by) => (
                    Event::new(
                        EventKind::Silenced,
                        json!({"reason": "inhibited", "by": by}),
                    ),
                    None,
                ),
            };
            plan.event(&fp, event, change);
        }
    }

    /// Re-applies the silences to the firing alerts among `fps`.
    fn resilence(&self, plan: &mut Plan, fps: &[String], now: i64) {
        for fp in fps {
            let Some(a) = plan.alerts.get_mut(fp) else {
                continue;
            };
            if a.state != AlertState::Firing {
                continue;
            }
            let muting = self.silences.muting(&a.match_view(), now);
            if muting == a.silenced_by {
                continue;
            }
            let mut events = Vec::new();
            let mut changes = Vec::new();
            silence_transition(&a.silenced_by, &muting, &mut events, &mut changes);
            a.silenced_by = muting;
            plan.volatile.remove(fp);
            plan.dirty.insert(fp.clone());
            for e in events {
                plan.events.push((fp.clone(), e));
            }
            for c in changes {
                plan.changes.push((fp.clone(), c));
            }
        }
    }

    /// Writes a plan in one transaction (with retries) and fills in new ids.
    ///
    /// Returns the fingerprints whose repeats could be made durable neither in the
    /// journal nor in the database (normally none): the rows are committed, those
    /// receipts are not, and a checkpoint retries them.
    async fn commit(&mut self, plan: &mut Plan) -> Result<HashSet<String>, StoreError> {
        if plan.is_empty() {
            return Ok(HashSet::new());
        }
        let db = self.p.db.clone();
        let rows: Vec<&Alert> = plan
            .order
            .iter()
            .filter(|fp| plan.dirty.contains(*fp))
            .map(|fp| &plan.alerts[fp])
            .collect();
        let refreshes = plan.refreshes();
        // Without a journal, refreshes are written in the batch's transaction.
        let direct: &[Refresh] = match self.p.journal {
            Some(_) => &[],
            None => &refreshes,
        };
        let feed = self.p.cfg.feed;
        let in_db = !rows.is_empty()
            || !direct.is_empty()
            || !plan.audit.is_empty()
            || (feed && !plan.changes.is_empty());
        let plan_ref = &*plan;
        let ids: Vec<(i64, String)> = if !in_db {
            Vec::new()
        } else {
            self.retrying(|| {
                let db = db.clone();
                let rows = &rows;
                async move {
                    let mut tx = db.pool().begin().await?;
                    repo::refresh(&db, &mut tx, direct).await?;
                    let ids = repo::upsert(&db, &mut tx, rows).await?;
                    let by_fp: HashMap<&str, i64> =
                        ids.iter().map(|(id, fp)| (fp.as_str(), *id)).collect();
                    let events: Vec<NewEvent> = plan_ref
                        .events
                        .iter()
                        .filter_map(|(fp, e)| {
                            let id = by_fp
                                .get(fp.as_str())
                                .copied()
                                .or_else(|| plan_ref.alerts.get(fp).map(|a| a.id))
                                .filter(|id| *id > 0)?;
                            Some(NewEvent {
                                alert_id: id,
                                kind: e.kind.as_str(),
                                at_ms: e.at_ms.unwrap_or(plan_ref.now),
                                detail: e.detail.to_string(),
                            })
                        })
                        .collect();
                    repo::insert_events(&db, &mut tx, &events).await?;
                    if feed {
                        let changes = feed_rows(plan_ref, &by_fp);
                        repo::append_changes(&db, &mut tx, &changes).await?;
                    }
                    audit::insert_many(&db, &mut tx, &plan_ref.audit).await?;
                    tx.commit().await?;
                    Ok(ids)
                }
            })
            .await?
        };
        drop(rows);
        let mut undurable = HashSet::new();
        if self.p.journal.is_some() && !refreshes.is_empty() {
            let stored = self.journal_refreshes(&refreshes).await;
            let mut pending = lock(&self.p.pending);
            match stored {
                // In the database already: nothing to checkpoint.
                Ok(false) => {}
                Ok(true) => pending.extend(refreshes.iter().map(|r| (r.id, *r))),
                Err(e) => {
                    tracing::error!(error = %e, repeats = refreshes.len(), "repeats could be written neither to the receipt journal nor to the database; their requests are answered 503");
                    let ids: HashSet<i64> = refreshes.iter().map(|r| r.id).collect();
                    undurable.extend(
                        plan.volatile
                            .iter()
                            .filter(|fp| plan.alerts.get(*fp).is_some_and(|a| ids.contains(&a.id)))
                            .cloned(),
                    );
                    // The next checkpoint writes them when the database is back.
                    pending.extend(refreshes.iter().map(|r| (r.id, *r)));
                }
            }
            self.jm.depth.set(pending.len() as i64);
        }
        if in_db {
            // Full rows carry their refreshed fields: nothing left to checkpoint.
            let mut pending = lock(&self.p.pending);
            if !pending.is_empty() {
                for fp in &plan.dirty {
                    if let Some(a) = plan.alerts.get(fp) {
                        pending.remove(&a.id);
                    }
                }
            }
        }
        for (id, fp) in ids {
            if let Some(a) = plan.alerts.get_mut(&fp) {
                a.id = id;
            }
        }
        if in_db {
            self.p.generation.fetch_add(1, Ordering::Relaxed);
        }
        Ok(undurable)
    }

    /// Makes repeats durable after their batch committed: in the journal (`Ok(true)`:
    /// pending a checkpoint), or, when the journal cannot be written (disk full, I/O
    /// error), in the database at once (`Ok(false)`).
    async fn journal_refreshes(&self, refreshes: &[Refresh]) -> Result<bool, StoreError> {
        let Some(journal) = &self.p.journal else {
            return Ok(false);
        };
        let Err(e) = journal.append(refreshes).await else {
            return Ok(true);
        };
        tracing::error!(error = %e, "cannot append to the receipt journal; writing the repeats to the database instead");
        let db = self.p.db.clone();
        self.retrying(|| {
            let db = db.clone();
            async move {
                let mut tx = db.pool().begin().await?;
                repo::refresh(&db, &mut tx, refreshes).await?;
                tx.commit().await?;
                Ok(())
            }
        })
        .await?;
        Ok(false)
    }

    /// Starts a checkpoint of everything pending, in the background, unless one is
    /// running or nothing is pending.
    fn start_checkpoint(&mut self) -> Result<(), StoreError> {
        if self.inflight.as_ref().is_some_and(|h| !h.is_finished()) {
            return Ok(());
        }
        if let Some(done) = self.inflight.take()
            && let Some(Ok(Err(e))) = done.now_or_never()
        {
            tracing::warn!(error = %e, "checkpointing the receipt journal failed; will retry");
        }
        let list: Vec<Refresh> = lock(&self.p.pending).values().copied().collect();
        if list.is_empty() {
            return Ok(());
        }
        let sealed = match &self.p.journal {
            Some(j) => j.rotate()?,
            None => 0,
        };
        let job = Checkpoint {
            db: self.p.db.clone(),
            pending: self.p.pending.clone(),
            journal: self.p.journal.clone(),
            generation: self.p.generation.clone(),
            metrics: self.jm.clone(),
        };
        self.inflight = Some(tokio::spawn(job.run(list, sealed)));
        Ok(())
    }

    /// Waits for the running checkpoint, if any.
    async fn finish_checkpoint(&mut self) -> Result<(), StoreError> {
        match self.inflight.take() {
            Some(h) => h
                .await
                .unwrap_or(Err(StoreError::Query(sqlx::Error::WorkerCrashed))),
            None => Ok(()),
        }
    }

    /// Writes every journaled repeat to the database and waits until it is committed.
    async fn checkpoint(&mut self) -> Result<(), StoreError> {
        if let Err(e) = self.finish_checkpoint().await {
            tracing::warn!(error = %e, "checkpointing the receipt journal failed; retrying");
        }
        self.start_checkpoint()?;
        self.finish_checkpoint().await
    }

    /// Keeps the plan's alerts as the current copies; drops resolved ones when the
    /// cache is over its limit.
    fn remember(&mut self, plan: Plan) {
        for (fp, kind) in &plan.changes {
            if *kind == ChangeKind::Repeated {
                continue;
            }
            let ends = plan.alerts.get(fp).and_then(|a| a.ends_at_ms);
            let t = self.throttle.entry(fp.clone()).or_default();
            t.announced = Some((plan.now, ends));
            t.repeat_told = false;
        }
        for (fp, a) in plan.alerts {
            self.cache.insert(fp, a);
        }
        if self.cache.len() > CACHE_LIMIT {
            self.cache.retain(|_, a| a.state == AlertState::Firing);
            let cache = &self.cache;
            self.throttle.retain(|fp, _| cache.contains_key(fp));
            tracing::debug!(
                kept = self.cache.len(),
                "dropped resolved alerts from the writer cache"
            );
        }
    }

    /// Runs `f` until it succeeds, retrying transient errors with exponential backoff
    /// and jitter.
    async fn retrying<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        retry_transient(&self.qm.retries, f).await
    }

    /// Updates `watchpost_alerts_active` from the plan's before/after states, and counts
    /// alerts that started firing in `watchpost_alerts_fired_total`.
    fn account(&mut self, plan: &Plan) {
        let mut changed = false;
        for fp in &plan.order {
            let before = plan.before.get(fp).copied().flatten();
            let after = plan.alerts.get(fp).map(|a| (a.state, a.severity));
            if before == after {
                continue;
            }
            let was_firing = matches!(before, Some((AlertState::Firing, _)));
            if let Some((AlertState::Firing, s)) = before {
                *self.active.entry(s).or_default() -= 1;
                changed = true;
            }
            if let Some((AlertState::Firing, s)) = after {
                *self.active.entry(s).or_default() += 1;
                changed = true;
                if !was_firing && let Some(alert) = plan.alerts.get(fp) {
                    let source = self.source_label(&alert.source);
                    self.p
                        .metrics
                        .alerting
                        .alerts_fired
                        .with_label_values(&[s.as_str(), source.as_str()])
                        .inc();
                }
            }
        }
        if changed {
            self.publish_active();
        }
    }

    fn publish_active(&self) {
        for s in Severity::ALL {
            self.p
                .metrics
                .alerting
                .alerts_active
                .with_label_values(&[s.as_str()])
                .set(self.active.get(&s).copied().unwrap_or(0).max(0));
        }
    }

    /// Sends the plan's changes to the notifier and the event bus.
    async fn announce(&self, plan: &Plan) {
        let list = plan.announcements();
        if list.is_empty() {
            return;
        }
        let to_stream = self.p.events.alert_subscribers() > 0;
        for (alert, kind) in list {
            if to_stream {
                self.p.events.publish_alert(AlertEvent {
                    kind: stream_kind(kind),
                    alert: alert.to_json(),
                });
            }
            if self
                .p
                .changes
                .send(AlertChange::new(kind, alert))
                .await
                .is_err()
            {
                tracing::debug!("no notifier listening for alert changes");
            }
        }
    }

    /// After a failed batch: the in-memory index may hold uncommitted changes, so
    /// reload it from the database.
    async fn rebuild(&mut self) {
        let now = now_ms();
        match repo::firing(&self.p.db).await {
            Ok(firing) => {
                self.inhibitor.clear();
                self.active.clear();
                self.cache.clear();
                self.throttle.clear();
                let pending = lock(&self.p.pending).clone();
                for mut a in firing {
                    self.inhibitor.update(&a.fingerprint, Some(&a.match_view()));
                    *self.active.entry(a.severity).or_default() += 1;
                    if let Some(r) = pending.get(&a.id) {
                        r.apply_to(&mut a);
                    }
                    self.cache.insert(a.fingerprint.clone(), a);
                }
                self.publish_active();
                self.stale = false;
            }
            Err(e) => {
                // Firing alerts may be missing from the cache (expiry would not see
                // them): retried before the next batch and on every tick.
                self.stale = true;
                tracing::warn!(error = %e, "cannot reload firing alerts; will retry");
            }
        }
        if let Ok(s) = silence::unexpired(&self.p.db, now).await {
            self.silences = SilenceSet::new(s);
        }
    }

    async fn ack(&mut self, job: &AckJob) -> Result<Option<Alert>, PipelineError> {
        self.checkpoint()
            .await
            .map_err(|e| PipelineError::store(&e))?;
        let now = now_ms();
        let db = self.p.db.clone();
        let stored = self
            .retrying(|| repo::get(&db, job.id))
            .await
            .map_err(|e| PipelineError::store(&e))?;
        let Some(mut alert) = stored else {
            return Ok(None);
        };
        if let Some(r) = lock(&self.p.pending).get(&alert.id) {
            r.apply_to(&mut alert);
        }
        alert.ack = Some(Ack {
            by: job.by.clone(),
            at_ms: now,
            comment: job.comment.clone(),
        });
        let fp = alert.fingerprint.clone();
        let mut plan = Plan::new(now);
        plan.add_stored(alert);
        plan.event(
            &fp,
            Event::new(
                EventKind::Acknowledged,
                json!({"by": job.by, "comment": job.comment}),
            ),
            Some(ChangeKind::Acked),
        );
        plan.audit.push(job.audit.clone());
        self.commit(&mut plan)
            .await
            .map_err(|e| PipelineError::store(&e))?;
        self.announce(&plan).await;
        let acked = plan.alerts.get(&fp).cloned();
        self.remember(plan);
        Ok(acked)
    }

    /// Reloads (when `reload`) and re-applies silences to every firing alert.
    async fn reevaluate_silences(&mut self, reload: bool) -> Result<(), StoreError> {
        self.checkpoint().await?;
        let now = now_ms();
        if reload {
            self.silences = SilenceSet::new(silence::unexpired(&self.p.db, now).await?);
        }
        self.active_silences = self.silences.active_ids(now);
        let firing = repo::firing(&self.p.db).await?;
        let mut plan = Plan::new(now);
        for a in firing {
            plan.add_stored(a);
        }
        let all = plan.order.clone();
        self.resilence(&mut plan, &all, now);
        self.commit(&mut plan).await?;
        self.announce(&plan).await;
        self.remember(plan);
        Ok(())
    }

    /// Expiry of `ends_at`, silence transitions, retention.
    async fn housekeeping(&mut self) {
        if self.stale {
            self.rebuild().await;
        }
        if self.last_checkpoint.elapsed() >= self.p.cfg.checkpoint_interval {
            self.last_checkpoint = Instant::now();
            if let Err(e) = self.start_checkpoint() {
                tracing::warn!(error = %e, "cannot start a checkpoint of the receipt journal; will retry");
            }
        }
        let now = now_ms();
        if self.silences.active_ids(now) != self.active_silences
            && let Err(e) = self.reevaluate_silences(true).await
        {
            tracing::warn!(error = %e, "re-applying silences failed; will retry");
        }
        if let Err(e) = self.expire(now).await {
            tracing::warn!(error = %e, "resolving expired alerts failed; will retry");
            self.rebuild().await;
        }
        if self.last_retention.elapsed() >= RETENTION_INTERVAL && self.p.cfg.leader.is_leader() {
            self.last_retention = Instant::now();
            match self.retention().await {
                Ok((0, 0)) => {}
                Ok((alerts, events)) => {
                    tracing::info!(alerts, events, "retention deleted old alerts and events")
                }
                Err(e) => tracing::warn!(error = %e, "retention failed; will retry"),
            }
        }
    }

    /// Resolves firing alerts whose `ends_at` has passed (Alertmanager's timeout).
    async fn expire(&mut self, now: i64) -> Result<(), StoreError> {
        // The cache holds every firing alert, with `ends_at` as last received.
        let mut due: Vec<Alert> = self
            .cache
            .values()
            .filter(|a| a.state == AlertState::Firing && a.ends_at_ms.is_some_and(|e| e <= now))
            .cloned()
            .collect();
        due.sort_by_key(|a| (a.ends_at_ms, a.id));
        due.truncate(EXPIRE_CHUNK);
        if due.is_empty() {
            return Ok(());
        }
        let mut plan = Plan::new(now);
        let mut affected = BTreeSet::new();
        for mut a in due {
            let fp = a.fingerprint.clone();
            let before = Some((a.state, a.severity));
            a.state = AlertState::Resolved;
            let at = a.ends_at_ms.unwrap_or(now);
            plan.before.insert(fp.clone(), before);
            plan.order.push(fp.clone());
            plan.alerts.insert(fp.clone(), a);
            plan.event(
                &fp,
                Event::new(EventKind::Resolved, json!({"reason": "ends_at passed"})).at(at),
                Some(ChangeKind::Resolved),
            );
            affected.extend(self.inhibitor.update(&fp, None));
        }
        self.load_into(&mut plan, &affected).await?;
        self.reinhibit(&mut plan, affected);
        self.commit(&mut plan).await?;
        self.account(&plan);
        self.announce(&plan).await;
        self.remember(plan);
        Ok(())
    }

    /// Deletes resolved alerts and events older than the retention, in chunks.
    async fn retention(&mut self) -> Result<(u64, u64), StoreError> {
        let cutoff = now_ms() - self.p.cfg.retention.as_millis() as i64;
        let (mut alerts, mut events) = (0, 0);
        loop {
            let (a, e) = repo::delete_older_than(&self.p.db, cutoff, RETENTION_CHUNK).await?;
            alerts += a;
            events += e;
            if (a as i64) < RETENTION_CHUNK {
                break;
            }
        }
        silence::delete_ended_before(&self.p.db, cutoff).await?;
        if alerts > 0 {
            // Deleted alerts were resolved: forget resolved copies (reloaded on demand).
            self.cache.retain(|_, a| a.state == AlertState::Firing);
            let cache = &self.cache;
            self.throttle.retain(|fp, _| cache.contains_key(fp));
        }
        if alerts + events > 0 {
            self.p.generation.fetch_add(1, Ordering::Relaxed);
        }
        Ok((alerts, events))
    }

    fn source_label(&mut self, source: &str) -> String {
        if self.sources.contains(source) {
            return source.to_string();
        }
        if self.sources.len() < MAX_SOURCE_LABELS {
            self.sources.insert(source.to_string());
            return source.to_string();
        }
        "other".into()
    }
}

/// Writes the repeats journaled by processes that died; their files are removed once
/// committed. Runs before the service answers reads.
pub(crate) async fn replay_orphans(db: &Db, journal: &Journal) -> Result<(), StoreError> {
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

fn stream_kind(k: ChangeKind) -> AlertEventKind {
    match k {
        ChangeKind::Fired => AlertEventKind::Fired,
        ChangeKind::Repeated | ChangeKind::SeverityRaised => AlertEventKind::Repeated,
        ChangeKind::Resolved => AlertEventKind::Resolved,
        ChangeKind::Acked => AlertEventKind::Acked,
        ChangeKind::Silenced => AlertEventKind::Silenced,
        ChangeKind::Unsilenced => AlertEventKind::Unsilenced,
    }
}
