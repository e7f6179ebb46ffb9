//! Drains the outbox: one worker per target (chat or URL) sends that target's rows in
//! order; outcomes are recorded in the row, counted, and broadcast as
//! [`DeliveryReport`]s (for the alert event log).
//!
//! Retry policy: a 429 waits the time the receiver asked for (at least); 5xx and network
//! errors back off exponentially with jitter; other 4xx fail at once. Nothing is retried
//! past `max_retry` after the row was written.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::Serialize;
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::outbox::{Outbox, OutboxRow};
use crate::metrics::AlertingMetrics;
use crate::store::now_ms;

/// The outcome of one send attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// Accepted; what the receiver answered (e.g. a message id).
    Delivered(Option<String>),
    /// Rate limited: wait at least this long.
    RetryAfter(Duration, String),
    /// Server or network error: back off and retry.
    Transient(String),
    /// Rejected (400, 403, …): do not retry.
    Permanent(String),
}

/// Sends one row of a kind (`telegram`, `webhook`).
#[async_trait::async_trait]
pub trait OutboxTransport: Send + Sync {
    /// One attempt.
    async fn send(&self, row: &OutboxRow) -> Attempt;
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
    /// Give up this long after a row was written (`telegram.max_retry`).
    pub max_retry: Duration,
    /// First backoff step.
    pub backoff_base: Duration,
    /// Largest backoff step.
    pub backoff_max: Duration,
    /// How often the outbox is polled when nothing wakes the sender.
    pub poll_interval: Duration,
    /// Delivered and failed rows are deleted after this long.
    pub retention: Duration,
}

impl Default for SenderOptions {
    fn default() -> Self {
        SenderOptions {
            max_retry: Duration::from_secs(3600),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            poll_interval: Duration::from_secs(2),
            retention: Duration::from_secs(30 * 86400),
        }
    }
}

/// Exponential backoff with equal jitter: `d/2 + rand(0..=d/2)`, `d = base·2^attempt`.
pub fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let d = base
        .checked_mul(1u32 << attempt.min(20))
        .unwrap_or(max)
        .min(max);
    let half = d / 2;
    half + Duration::from_millis(rand::rng().random_range(0..=half.as_millis() as u64))
}

/// Marks a target as having a worker; unmarks it when dropped.
struct ActiveTarget {
    set: Arc<Mutex<HashSet<String>>>,
    target: String,
}

impl Drop for ActiveTarget {
    fn drop(&mut self) {
        if let Ok(mut a) = self.set.lock() {
            a.remove(&self.target);
        }
    }
}

/// The outbox sender.
#[derive(Clone)]
pub struct OutboxSender {
    outbox: Outbox,
    transports: Arc<HashMap<String, Arc<dyn OutboxTransport>>>,
    options: SenderOptions,
    metrics: AlertingMetrics,
    wake: Arc<Notify>,
    reports: broadcast::Sender<DeliveryReport>,
    receivers: Arc<Vec<String>>,
    active: Arc<Mutex<HashSet<String>>>,
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
        OutboxSender {
            outbox,
            transports: Arc::new(transports),
            options,
            metrics,
            wake,
            reports,
            receivers: Arc::new(receivers),
            active: Arc::new(Mutex::new(HashSet::new())),
            depth_at: Arc::new(std::sync::atomic::AtomicI64::new(0)),
        }
    }

    /// Runs until `shutdown`; sends in flight are finished, not cut.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut workers = JoinSet::new();
        let mut last_prune = tokio::time::Instant::now() - Duration::from_secs(3600);
        loop {
            while let Some(done) = workers.try_join_next() {
                if let Err(e) = done {
                    tracing::error!(error = %e, "outbox worker panicked");
                }
            }
            match self.outbox.pending_targets().await {
                Ok(targets) => {
                    for target in targets {
                        let fresh = self
                            .active
                            .lock()
                            .map(|mut a| a.insert(target.clone()))
                            .unwrap_or(false);
                        if fresh {
                            let me = self.clone();
                            let token = shutdown.clone();
                            workers.spawn(async move {
                                // Frees the target even if the worker panics.
                                let _active = ActiveTarget {
                                    set: me.active.clone(),
                                    target: target.clone(),
                                };
                                me.worker(&target, token).await;
                            });
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the outbox"),
            }
            self.update_depth().await;
            if last_prune.elapsed() >= Duration::from_secs(3600) {
                last_prune = tokio::time::Instant::now();
                let cutoff = now_ms() - self.options.retention.as_millis() as i64;
                match self.outbox.prune(cutoff).await {
                    Ok(n) if n > 0 => tracing::info!(rows = n, "old outbox rows deleted"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot prune the outbox"),
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.options.poll_interval) => {}
            }
        }
        // Let sends in flight finish so they are recorded (a cut send could be resent).
        let drain = async { while workers.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(4), drain)
            .await
            .is_err()
        {
            tracing::warn!(
                "outbox workers still busy at shutdown; pending rows resume at next start"
            );
        }
        Ok(())
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
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let row = match self.outbox.next_for_target(target).await {
                Ok(Some(row)) => row,
                Ok(None) => {
                    self.update_depth().await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(target = %target, error = %e, "cannot read the outbox");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            let wait = row.next_attempt_ms - now_ms();
            if wait > 0 {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => continue,
                }
            }
            self.attempt(&row).await;
            if self.depth_due() {
                self.update_depth().await;
            }
        }
    }

    async fn attempt(&self, row: &OutboxRow) {
        let outcome = match self.transports.get(&row.kind) {
            Some(t) => t.send(row).await,
            None => Attempt::Permanent(format!("{} delivery is not configured", row.kind)),
        };
        let counter = |outcome: &str| {
            self.metrics
                .notifications
                .with_label_values(&[row.receiver.as_str(), outcome])
                .inc();
        };
        let deadline = row.created_ms + self.options.max_retry.as_millis() as i64;
        let (retry_in, reason) = match outcome {
            Attempt::Delivered(response) => {
                if let Err(e) = self
                    .outbox
                    .mark_delivered(row.id, response.as_deref())
                    .await
                {
                    tracing::error!(id = row.id, error = %e, "delivered, but cannot record it; it may be sent again");
                    return;
                }
                counter("sent");
                tracing::info!(id = row.id, receiver = %row.receiver, target = %row.target, part = row.part, parts = row.parts, "notification delivered");
                self.report(row, DeliveryOutcome::Delivered);
                return;
            }
            Attempt::Permanent(reason) => {
                self.fail(row, &reason).await;
                counter("failed");
                return;
            }
            Attempt::RetryAfter(d, reason) => (d, reason),
            Attempt::Transient(reason) => (
                backoff(
                    self.options.backoff_base,
                    self.options.backoff_max,
                    row.attempts as u32,
                ),
                reason,
            ),
        };
        let retry_in_ms = retry_in.as_millis().min(i64::MAX as u128) as i64;
        // Round up so that "retry after N seconds" is never early.
        let next = now_ms() + retry_in_ms + 1;
        if next > deadline {
            let reason = format!(
                "gave up after {} attempts (max_retry {}): {reason}",
                row.attempts + 1,
                humantime::format_duration(self.options.max_retry)
            );
            self.fail(row, &reason).await;
            counter("failed");
            return;
        }
        counter("retry");
        tracing::warn!(id = row.id, receiver = %row.receiver, target = %row.target, retry_in = ?retry_in, reason = %reason, "notification not delivered; will retry");
        if let Err(e) = self.outbox.mark_retry(row.id, next, &reason).await {
            tracing::error!(id = row.id, error = %e, "cannot record the retry");
        }
    }

    async fn fail(&self, row: &OutboxRow, reason: &str) {
        tracing::error!(id = row.id, receiver = %row.receiver, target = %row.target, reason = %reason, "notification failed; not retrying");
        if let Err(e) = self.outbox.mark_failed(row.id, reason).await {
            tracing::error!(id = row.id, error = %e, "cannot record the failure");
        }
        self.report(
            row,
            DeliveryOutcome::Failed {
                reason: reason.to_string(),
            },
        );
    }

    fn report(&self, row: &OutboxRow, outcome: DeliveryOutcome) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        for attempt in 0..10 {
            let d = backoff(base, max, attempt);
            let full = (base * (1 << attempt)).min(max);
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
        assert!(backoff(base, max, 40) <= max);
    }
}
