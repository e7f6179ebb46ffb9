//! Drains the outbox: one worker per target (chat or URL) sends that target's rows in
//! order. Each row is **claimed** (claimer id, lease) before it is sent, so two senders
//! never send the same row; the outcome is recorded only while the claim is held.
//!
//! * A failed bookkeeping write never causes a resend: the worker keeps the verdict and
//!   retries the *write* with backoff, sending nothing else to that target meanwhile.
//!   While the database is unreachable nothing can be claimed, so nothing is sent.
//! * A row found claimed by a sender that died (a crash, kill -9, or a shutdown that cut
//!   the send) is taken over as an ambiguous send, per `notify.ambiguous`.
//! * At shutdown, sends in flight may finish until `shutdown_timeout`; the ones still
//!   running then are cut and recorded as ambiguous.
//!
//! What each attempt's outcome means is [`super::policy`]'s business.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::outbox::{Outbox, OutboxRow, Verdict};
pub use super::policy::Attempt;
use super::policy::RetryPolicy;
use crate::metrics::AlertingMetrics;
use crate::redact;
use crate::store::now_ms;

/// Sends one row of a kind (`telegram`, `webhook`): formats and sends, nothing else.
#[async_trait::async_trait]
pub trait OutboxTransport: Send + Sync {
    /// One attempt; `started` is marked right before the request goes out (after any
    /// rate-limit wait).
    async fn send(&self, row: &OutboxRow, started: &Started) -> Attempt;
}

/// Whether a send's request went out: a send cut before that (say, while it waited for
/// the rate limiter) is simply retried; after it, its outcome is unknown (ambiguous).
///
/// It is also the last gate before the request: a node that stopped leading (its lease
/// lapsed while it waited for the rate limiter, or it was paused) does not send.
#[derive(Debug, Default)]
pub struct Started {
    sent: AtomicBool,
    fence: crate::cluster::Fence,
}

impl Started {
    /// A marker for a send by a sender claiming under `fence`.
    pub fn new(fence: crate::cluster::Fence) -> Self {
        Started {
            sent: AtomicBool::new(false),
            fence,
        }
    }

    /// The request is going out now; `false` (and nothing marked) when this node no
    /// longer leads: then it must not go out.
    #[must_use]
    pub fn mark(&self) -> bool {
        if self.fence.epoch().is_err() {
            return false;
        }
        self.sent.store(true, Ordering::Release);
        true
    }

    /// Whether it went out.
    pub fn is_set(&self) -> bool {
        self.sent.load(Ordering::Acquire)
    }
}

/// What a transport answers when [`Started::mark`] refused: retried (by the next
/// leader), never ambiguous.
pub fn not_leading() -> Attempt {
    Attempt::Transient("not sent: this node stopped leading the cluster".into())
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum DeliveryOutcome {
    /// Delivered.
    Delivered,
    /// Given up.
    Failed {
        /// Why.
        reason: String,
    },
}

/// A finished delivery, for the alert event log (`notified` events).
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryReport {
    /// Outbox row id.
    pub outbox_id: i64,
    /// Receiver name.
    pub receiver: String,
    /// Target (`telegram:CHAT`, `webhook:URL`).
    pub target: String,
    /// Group key.
    pub group_key: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// Part of a split message.
    pub part: i64,
    /// Parts.
    pub parts: i64,
    /// The alerts the notification was about.
    pub alert_ids: Vec<i64>,
    /// Delivered or failed.
    #[serde(flatten)]
    pub outcome: DeliveryOutcome,
    /// Attempts made.
    pub attempts: i64,
    /// When.
    pub at: DateTime<Utc>,
}

/// Sender settings.
#[derive(Debug, Clone)]
pub struct SenderOptions {
    /// Retries, backoff and the ambiguous-send policy.
    pub retry: RetryPolicy,
    /// How often the outbox is polled when nothing wakes the sender.
    pub poll_interval: Duration,
    /// Delivered and failed rows are deleted after this long.
    pub retention: Duration,
    /// How long a claim holds before another sender may take the row over; renewed
    /// while the send is in flight.
    pub lease: Duration,
    /// This sender's claimer id, `node#instance`.
    pub claimer: String,
    /// `LIKE` pattern of claimers known to be dead: earlier instances of this node (any
    /// claimer on SQLite, where one process owns the file).
    pub stale_claims: String,
    /// At shutdown, how long sends in flight may take before they are cut.
    pub drain_timeout: Duration,
    /// The leadership epoch claims carry (a cluster's leader only claims and sends).
    pub fence: crate::cluster::Fence,
}

impl Default for SenderOptions {
    fn default() -> Self {
        let node = "local";
        SenderOptions {
            retry: RetryPolicy::default(),
            poll_interval: Duration::from_secs(2),
            retention: Duration::from_secs(30 * 86400),
            lease: Duration::from_secs(15),
            claimer: claimer_id(node),
            stale_claims: format!("{node}#%"),
            drain_timeout: Duration::from_secs(10),
            fence: crate::cluster::Fence::None,
        }
    }
}

/// A claimer id for a new process of `node`: `node#<random>`.
pub fn claimer_id(node: &str) -> String {
    format!("{node}#{:016x}", rand::random::<u64>())
}

/// A row this sender claimed, whether its request went out, and its verdict once the
/// send has ended.
type Claimed = (OutboxRow, Arc<Started>, Option<Verdict>);

/// Longest pause between retries of a bookkeeping write or an outbox read.
const DB_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Longest wait between two looks at an outbox with nothing pending.
const IDLE_POLL: Duration = Duration::from_secs(30);
/// Pause after a claim lost to another sender (or a row that changed meanwhile).
const CLAIM_LOST_PAUSE: Duration = Duration::from_millis(250);
/// Longest a worker waits for another sender's lease before looking again.
const LEASE_POLL_MAX: Duration = Duration::from_secs(5);

/// Marks a target as having a worker; unmarks it when dropped and wakes the sender,
/// which looks again for rows enqueued while the worker was ending.
struct ActiveTarget {
    set: Arc<Mutex<HashSet<String>>>,
    target: String,
    wake: Arc<Notify>,
}

impl Drop for ActiveTarget {
    fn drop(&mut self) {
        if let Ok(mut a) = self.set.lock() {
            a.remove(&self.target);
        }
        self.wake.notify_one();
    }
}

/// The outbox sender.
#[derive(Clone)]
pub struct OutboxSender {
    outbox: Outbox,
    transports: Arc<HashMap<String, Arc<dyn OutboxTransport>>>,
    options: Arc<SenderOptions>,
    metrics: AlertingMetrics,
    wake: Arc<Notify>,
    reports: broadcast::Sender<DeliveryReport>,
    receivers: Arc<Vec<String>>,
    active: Arc<Mutex<HashSet<String>>>,
    /// Rows claimed by this sender and not recorded yet, with their verdict once the
    /// send has ended.
    in_flight: Arc<Mutex<HashMap<i64, Claimed>>>,
    depth_at: Arc<std::sync::atomic::AtomicI64>,
}

impl OutboxSender {
    /// A sender for `outbox`, with a transport per row kind.
    pub fn new(
        outbox: Outbox,
        transports: HashMap<String, Arc<dyn OutboxTransport>>,
        options: SenderOptions,
        metrics: AlertingMetrics,
        wake: Arc<Notify>,
        reports: broadcast::Sender<DeliveryReport>,
        receivers: Vec<String>,
    ) -> Self {
        // Known from the config: every receiver's counters and queue depth exist (at 0)
        // from the first scrape, so dashboards show 0 rather than "No data".
        for r in &receivers {
            for outcome in super::policy::OUTCOMES {
                metrics
                    .notifications
                    .with_label_values(&[r.as_str(), outcome]);
            }
            metrics
                .notification_queue_depth
                .with_label_values(&[r.as_str()])
                .set(0);
        }
        OutboxSender {
            outbox,
            transports: Arc::new(transports),
            options: Arc::new(options),
            metrics,
            wake,
            reports,
            receivers: Arc::new(receivers),
            active: Arc::new(Mutex::new(HashSet::new())),
            in_flight: Arc::new(Mutex::new(HashMap::new())),
            depth_at: Arc::new(std::sync::atomic::AtomicI64::new(0)),
        }
    }

    /// Runs until `shutdown`; then lets sends in flight finish for `drain_timeout` and
    /// records the ones still running as ambiguous.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.run_term(shutdown.clone(), shutdown).await
    }

    /// Claims and sends until `term` ends (this node stopped leading, or shutdown);
    /// then lets sends in flight finish and record their outcome. Only when `cut`
    /// (the process shutdown) fires are they given `drain_timeout` and cut: a term that
    /// ends with the database down waits for it, so an outcome is recorded, never
    /// answered by a resend.
    pub async fn run_term(
        self,
        shutdown: CancellationToken,
        cut: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut workers = JoinSet::new();
        let mut last_prune = tokio::time::Instant::now() - Duration::from_secs(3600);
        loop {
            while let Some(done) = workers.try_join_next() {
                if let Err(e) = done {
                    tracing::error!(error = %e, "outbox worker panicked");
                }
            }
            let mut idle = false;
            match self.outbox.pending_targets().await {
                Ok(targets) => {
                    idle = targets.is_empty() && workers.is_empty();
                    for target in targets {
                        self.start_worker(&mut workers, target, &shutdown);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the outbox; nothing is sent until it can be read")
                }
            }
            self.update_depth().await;
            if last_prune.elapsed() >= Duration::from_secs(3600) {
                last_prune = tokio::time::Instant::now();
                self.prune().await;
            }
            // Every row is enqueued with a wake, and every worker wakes the loop as it
            // ends: with nothing pending, polling is only a safety net.
            let poll = if idle {
                self.options.poll_interval.max(IDLE_POLL)
            } else {
                self.options.poll_interval
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
        if !cut.is_cancelled() {
            let all = async { while workers.join_next().await.is_some() {} };
            tokio::select! {
                _ = all => return Ok(()),
                _ = cut.cancelled() => {}
            }
        }
        self.drain(workers).await;
        Ok(())
    }

    fn start_worker(&self, workers: &mut JoinSet<()>, target: String, token: &CancellationToken) {
        let fresh = self
            .active
            .lock()
            .map(|mut a| a.insert(target.clone()))
            .unwrap_or(false);
        if !fresh {
            return;
        }
        let me = self.clone();
        let token = token.clone();
        workers.spawn(async move {
            // Frees the target even if the worker panics.
            let _active = ActiveTarget {
                set: me.active.clone(),
                target: target.clone(),
                wake: me.wake.clone(),
            };
            me.worker(&target, token).await;
        });
    }

    async fn prune(&self) {
        let cutoff = now_ms() - self.options.retention.as_millis() as i64;
        match self.outbox.prune(cutoff).await {
            Ok(n) if n > 0 => tracing::info!(rows = n, "old outbox rows deleted"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot prune the outbox"),
        }
    }

    /// Waits for sends in flight until `drain_timeout`, then cuts the rest and records
    /// them as ambiguous (best effort: a row left claimed is taken over at the next start).
    async fn drain(&self, mut workers: JoinSet<()>) {
        let all = async { while workers.join_next().await.is_some() {} };
        if tokio::time::timeout(self.options.drain_timeout, all)
            .await
            .is_ok()
        {
            return;
        }
        workers.abort_all();
        while workers.join_next().await.is_some() {}
        let cut: Vec<Claimed> = self
            .in_flight
            .lock()
            .map(|mut m| m.drain().map(|(_, v)| v).collect())
            .unwrap_or_default();
        for (row, started, known) in cut {
            // A send that ended is recorded as it ended; one cut mid-request is
            // ambiguous; one cut before its request went out is simply retried.
            let verdict = known.unwrap_or_else(|| self.cut(&row, started.is_set()));
            let write = self.outbox.record(row.id, &self.options.claimer, &verdict);
            match tokio::time::timeout(Duration::from_secs(2), write).await {
                Ok(Ok(true)) => self.finish(&row, &verdict),
                Ok(Ok(false)) => {}
                _ => tracing::warn!(
                    id = row.id,
                    "cannot record the outcome of a send at shutdown; the next start takes it over as ambiguous"
                ),
            }
        }
    }

    /// The verdict on a send cut by the shutdown deadline.
    fn cut(&self, row: &OutboxRow, request_out: bool) -> Verdict {
        if !request_out {
            return Verdict::Retry {
                at_ms: now_ms(),
                error: "stopped before the request went out (shutdown)".into(),
                ambiguous: false,
            };
        }
        tracing::warn!(id = row.id, receiver = %row.receiver, target = %redact::target(&row.target), "send cut by the shutdown deadline; recorded as ambiguous");
        let attempt = Attempt::Ambiguous("cut by the shutdown deadline".into());
        let (verdict, outcome) = self.options.retry.decide(row, attempt, now_ms());
        self.count(row, outcome);
        verdict
    }

    /// Wakes the sender (new rows were written).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Whether the queue-depth gauges are due for a refresh (at most every 250 ms, so
    /// a large backlog is not counted once per message).
    fn depth_due(&self) -> bool {
        let now = now_ms();
        let last = self.depth_at.load(std::sync::atomic::Ordering::Relaxed);
        now - last >= 250
            && self
                .depth_at
                .compare_exchange(
                    last,
                    now,
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                )
                .is_ok()
    }

    async fn update_depth(&self) {
        match self.outbox.depth_by_receiver().await {
            Ok(depths) => {
                let gauge = &self.metrics.notification_queue_depth;
                for r in self.receivers.iter() {
                    gauge.with_label_values(&[r.as_str()]).set(0);
                }
                for (r, n) in depths {
                    gauge.with_label_values(&[r.as_str()]).set(n);
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot count the outbox"),
        }
    }

    /// Sends the rows of one target in order until none is pending.
    async fn worker(&self, target: &str, shutdown: CancellationToken) {
        let mut db_backoff = Duration::from_millis(250);
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let head = match self.outbox.head(target).await {
                Ok(Some(row)) => row,
                Ok(None) => {
                    self.update_depth().await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(target = %redact::target(target), error = %e, retry_in = ?db_backoff, "cannot read the outbox; not sending");
                    if !backoff_pause(&shutdown, &mut db_backoff).await {
                        return;
                    }
                    continue;
                }
            };
            let now = now_ms();
            let wait_ms = self.not_before(&head) - now;
            if wait_ms > 0 {
                let wait = Duration::from_millis(wait_ms as u64);
                if !pause(&shutdown, wait).await {
                    return;
                }
                continue;
            }
            // Nothing new is claimed once shutdown began, or by a node that stopped
            // leading.
            if shutdown.is_cancelled() {
                return;
            }
            let Ok(epoch) = self.options.fence.epoch() else {
                tracing::debug!(target = %redact::target(target), "not the leader: not sending");
                return;
            };
            let lease_until = now + self.options.lease.as_millis() as i64;
            let claimed = self
                .outbox
                .claim(
                    head.id,
                    &self.options.claimer,
                    lease_until,
                    &self.options.stale_claims,
                    epoch,
                )
                .await;
            let row = match claimed {
                Ok(Some(row)) => row,
                // Taken, delivered or rescheduled meanwhile: look again shortly.
                Ok(None) => {
                    if !pause(&shutdown, CLAIM_LOST_PAUSE).await {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(target = %redact::target(target), error = %e, retry_in = ?db_backoff, "cannot claim an outbox row; not sending");
                    if !backoff_pause(&shutdown, &mut db_backoff).await {
                        return;
                    }
                    continue;
                }
            };
            db_backoff = Duration::from_millis(250);
            // Taking over another sender's claim counted the row's send as ambiguous.
            let takeover = row.ambiguous > head.ambiguous;
            self.deliver(row, takeover).await;
            if self.depth_due() {
                self.update_depth().await;
            }
        }
    }

    /// When the head row may be claimed: its next attempt, or the end of another
    /// sender's live lease (looked at again at least every few seconds).
    fn not_before(&self, head: &OutboxRow) -> i64 {
        let mut at = head.next_attempt_ms;
        let current = self.options.fence.epoch().ok().flatten();
        let earlier_term = current.is_some() && head.claim_epoch.is_none_or(|e| Some(e) < current);
        if let (Some(by), Some(until)) = (&head.claimed_by, head.lease_until_ms)
            && *by != self.options.claimer
            && !like(&self.options.stale_claims, by)
            && !earlier_term
        {
            at = at.max(until.min(now_ms() + LEASE_POLL_MAX.as_millis() as i64));
        }
        at
    }

    /// Sends a claimed row (unless it was `taken_over` from a sender that stopped
    /// mid-send and the policy says not again) and records the verdict.
    async fn deliver(&self, row: OutboxRow, taken_over: bool) {
        let decided = taken_over
            .then(|| self.options.retry.takeover(&row))
            .flatten();
        let (verdict, outcome) = match decided {
            Some(v) => (v, "ambiguous"),
            None => {
                if self.options.fence.epoch().is_err() {
                    // Stopped leading since the claim: leave the row to the next leader.
                    self.release(&row).await;
                    return;
                }
                if taken_over {
                    self.count(&row, "ambiguous");
                    tracing::warn!(id = row.id, receiver = %row.receiver, target = %redact::target(&row.target), "a previous sender stopped while sending this notification; sending it once more (notify.ambiguous = \"retry\")");
                }
                let started = Arc::new(Started::new(self.options.fence.clone()));
                self.in_flight_set(&row, &started, None);
                let attempt = self.send_holding_claim(&row, &started).await.redacted();
                self.log_attempt(&row, &attempt);
                self.options.retry.decide(&row, attempt, now_ms())
            }
        };
        self.count(&row, outcome);
        self.in_flight_set(&row, &Arc::new(Started::default()), Some(verdict.clone()));
        let ours = self.record(&row, &verdict).await;
        self.in_flight_done(row.id);
        if ours {
            self.finish(&row, &verdict);
        }
    }

    /// Gives up the claim on `row` unsent (best effort: if this fails the claim is
    /// taken over as one from an earlier term).
    async fn release(&self, row: &OutboxRow) {
        match self.outbox.release(row.id, &self.options.claimer).await {
            Ok(_) => tracing::info!(
                id = row.id,
                "stopped leading: notification left to the next leader"
            ),
            Err(e) => {
                tracing::warn!(id = row.id, error = %e, "stopped leading; cannot release the claim (the next leader takes it over)")
            }
        }
    }

    /// Sends `row`, renewing its lease every third of it while the send is in flight
    /// (rate-limit waits included), so a live sender keeps its claim and a dead one
    /// loses it within one lease.
    async fn send_holding_claim(&self, row: &OutboxRow, started: &Started) -> Attempt {
        let Some(transport) = self.transports.get(&row.kind) else {
            return Attempt::Rejected(format!("{} delivery is not configured", row.kind));
        };
        let send = transport.send(row, started);
        tokio::pin!(send);
        let every = self.options.lease / 3;
        loop {
            tokio::select! {
                attempt = &mut send => return attempt,
                _ = tokio::time::sleep(every) => {
                    let until = now_ms() + self.options.lease.as_millis() as i64;
                    match self.outbox.renew(row.id, &self.options.claimer, until).await {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(id = row.id, "lost the claim on a notification being sent"),
                        Err(e) => tracing::warn!(id = row.id, error = %e, "cannot renew the claim on a notification being sent"),
                    }
                }
            }
        }
    }

    /// Notes `row` as claimed by this sender, with its verdict once known.
    fn in_flight_set(&self, row: &OutboxRow, started: &Arc<Started>, verdict: Option<Verdict>) {
        if let Ok(mut m) = self.in_flight.lock() {
            m.insert(row.id, (row.clone(), started.clone(), verdict));
        }
    }

    /// The row's verdict is recorded.
    fn in_flight_done(&self, id: i64) {
        if let Ok(mut m) = self.in_flight.lock() {
            m.remove(&id);
        }
    }

    /// Writes `verdict` until it is written: a failed write is retried with backoff,
    /// never answered by sending again (also during shutdown, until the drain deadline
    /// cuts the worker; the row then stays claimed and is taken over as ambiguous at the
    /// next start). `false` when another sender had taken the row over.
    async fn record(&self, row: &OutboxRow, verdict: &Verdict) -> bool {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self
                .outbox
                .record(row.id, &self.options.claimer, verdict)
                .await
            {
                Ok(true) => return true,
                Ok(false) => {
                    tracing::warn!(
                        id = row.id,
                        "another sender took this notification over (our lease ran out); its outcome is theirs"
                    );
                    return false;
                }
                Err(e) => {
                    tracing::error!(id = row.id, error = %e, retry_in = ?backoff, "cannot record the outcome of a send; retrying the write (not the send)");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(DB_BACKOFF_MAX);
        }
    }

    fn log_attempt(&self, row: &OutboxRow, attempt: &Attempt) {
        match attempt {
            Attempt::Delivered(_) => {
                tracing::info!(id = row.id, receiver = %row.receiver, target = %redact::target(&row.target), part = row.part, parts = row.parts, "notification delivered")
            }
            Attempt::Rejected(why) => {
                tracing::error!(id = row.id, receiver = %row.receiver, target = %redact::target(&row.target), reason = %why, "notification rejected; not retrying")
            }
            Attempt::Ambiguous(why) => {
                tracing::warn!(id = row.id, receiver = %row.receiver, target = %redact::target(&row.target), reason = %why, "notification outcome unknown (ambiguous)")
            }
            Attempt::RetryAfter(d, why) => {
                tracing::warn!(id = row.id, receiver = %row.receiver, target = %redact::target(&row.target), retry_in = ?d, reason = %why, "notification rate limited; will retry")
            }
            Attempt::Transient(why) => {
                tracing::warn!(id = row.id, receiver = %row.receiver, target = %redact::target(&row.target), reason = %why, "notification not delivered; will retry")
            }
        }
    }

    fn count(&self, row: &OutboxRow, outcome: &str) {
        self.metrics
            .notifications
            .with_label_values(&[row.receiver.as_str(), outcome])
            .inc();
    }

    /// Announces a final verdict (for `notified` events).
    fn finish(&self, row: &OutboxRow, verdict: &Verdict) {
        let outcome = match verdict {
            Verdict::Delivered { .. } => DeliveryOutcome::Delivered,
            Verdict::Failed { error, .. } => {
                tracing::error!(id = row.id, receiver = %row.receiver, target = %redact::target(&row.target), reason = %error, "notification failed; not retrying");
                DeliveryOutcome::Failed {
                    reason: error.clone(),
                }
            }
            Verdict::Retry { .. } => return,
        };
        let _ = self.reports.send(DeliveryReport {
            outbox_id: row.id,
            receiver: row.receiver.clone(),
            target: row.target.clone(),
            group_key: row.group_key.clone(),
            status: row.status.clone(),
            part: row.part,
            parts: row.parts,
            alert_ids: row.alert_ids.clone(),
            outcome,
            attempts: row.attempts + 1,
            at: Utc::now(),
        });
    }
}

/// Sleeps `d` unless `shutdown` comes first (then `false`).
async fn pause(shutdown: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Sleeps `backoff` (then doubles it, up to [`DB_BACKOFF_MAX`]) unless `shutdown` comes
/// first (then `false`).
async fn backoff_pause(shutdown: &CancellationToken, backoff: &mut Duration) -> bool {
    let go_on = pause(shutdown, *backoff).await;
    *backoff = (*backoff * 2).min(DB_BACKOFF_MAX);
    go_on
}

/// SQL `LIKE` for the patterns this sender builds: an exact id, or a prefix then `%`.
fn like(pattern: &str, s: &str) -> bool {
    match pattern.strip_suffix('%') {
        Some(prefix) => s.starts_with(prefix),
        None => pattern == s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_claim_patterns() {
        assert!(like("%", "node-a:8080#12"));
        assert!(like("node-a:8080#%", "node-a:8080#12"));
        assert!(!like("node-a:8080#%", "node-b:8080#12"));
        assert!(!like("node-a:8080#%", "node-a:80800#12"));
        assert!(like("x#1", "x#1"));
    }
}
