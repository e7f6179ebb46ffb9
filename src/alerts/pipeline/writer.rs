//! The writer task: applies batches, acks, silence changes, expiry and retention,
//! one at a time, in memory and then in one transaction each.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::checkpoint::{Checkpoint, retry_transient};
use super::plan::{Plan, Throttle, coalesce, feed_rows};
use super::{
    AckJob, CACHE_LIMIT, CONFLICT_ATTEMPTS, Command, IngestJob, JOURNAL_QUEUE, MAX_SOURCE_LABELS,
    Pipeline, PipelineError, QueueMetrics, RETENTION_CHUNK, RETENTION_INTERVAL, TICK, WriterParts,
    lock,
};
use crate::alerts::change::{AlertChange, ChangeKind};
use crate::alerts::journal::Refresh;
use crate::alerts::lifecycle::{self, Event, silence_transition};
use crate::alerts::model::{Ack, Alert, AlertState, EventKind, Labels, Severity};
use crate::alerts::repo::{self, NewEvent, RefreshMode};
use crate::audit;
use crate::events::{AlertEvent, AlertEventKind};
use crate::inhibit::Inhibitor;
use crate::silence::{self, SilenceSet};
use crate::store::{StoreError, now_ms};

/// Runs one attempt (`$attempt`, an expression) again while it finds rows that another
/// node wrote since they were read (the attempt wrote nothing): their cached copies are
/// dropped, so the next attempt applies over the stored state. Gives up after
/// [`CONFLICT_ATTEMPTS`].
macro_rules! over_fresh_rows {
    ($writer:expr, $attempt:expr) => {{
        let mut attempt = 1;
        loop {
            match $attempt {
                Err(StoreError::Conflict { fingerprints }) if attempt < CONFLICT_ATTEMPTS => {
                    tracing::debug!(
                        rows = fingerprints.len(),
                        attempt,
                        "alerts changed on another node; applying again over them"
                    );
                    $writer.reread(&fingerprints).await;
                    attempt += 1;
                }
                other => break other,
            }
        }
    }};
}

mod shared;

/// At most one warning per this long while `alerts.max_firing` refuses requests.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

pub(super) struct Writer {
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
    /// The cache needs a reload from the database (a failed batch, then a failed reload).
    stale: bool,
    /// Every firing alert and recently seen resolved ones, by fingerprint.
    cache: HashMap<String, Alert>,
    /// Repeat logging and announcing, by fingerprint (for cached alerts).
    throttle: HashMap<String, Throttle>,
    /// Several nodes: the change feed read up to here ([`shared`]).
    feed_cursor: i64,
    /// Several nodes: when `watchpost_alerts_active` was last read from the database.
    last_active: Instant,
    /// Several nodes: the other nodes' feed news taken in by the last [`shared`] follow.
    news_seen: u64,
    /// Alerts whose inhibition flags may be stale in the database: the inhibition index
    /// moved, and the write of the flags it implies has not committed yet.
    unsettled: BTreeSet<String>,
    /// When a refusal by `alerts.max_firing` was last logged.
    refusal_logged: Option<Instant>,
    /// Several nodes: whether this node led at the last tick (a new leader settles
    /// silence and inhibition flags the previous one may not have written).
    was_leading: bool,
}

impl Writer {
    /// Loads silences and firing alerts, rebuilds the inhibition index, and fixes
    /// flags that config or silence changes made stale while stopped.
    pub(super) async fn init(
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
            stale: false,
            cache: HashMap::new(),
            throttle: HashMap::new(),
            feed_cursor: 0,
            last_active: Instant::now(),
            news_seen: 0,
            unsettled: BTreeSet::new(),
            was_leading: false,
            refusal_logged: None,
        };
        // Repeats a previous incarnation journaled but did not checkpoint.
        w.checkpoint().await?;
        w.follow_from_head().await?;
        w.settle().await?;
        w.was_leading = w.p.cfg.leader.is_leader();
        tracing::info!(
            firing = w.active.values().sum::<i64>(),
            silences = w.active_silences.len(),
            "alert pipeline started"
        );
        Ok(w)
    }

    /// Derives the silence and inhibition flags of every firing alert from the
    /// database and writes those that changed (at start, and on becoming the leader).
    async fn settle(&mut self) -> Result<(), StoreError> {
        over_fresh_rows!(self, self.try_settle().await)
    }

    async fn try_settle(&mut self) -> Result<(), StoreError> {
        let now = now_ms();
        self.silences = SilenceSet::new(silence::unexpired(&self.p.db, now).await?);
        let firing = repo::firing(&self.p.db).await?;
        let pending = lock(&self.p.pending).clone();
        self.inhibitor.clear();
        self.active.clear();
        let mut plan = Plan::new(now);
        for mut a in firing {
            if let Some(r) = pending.get(&a.id) {
                r.apply_to(&mut a);
            }
            self.inhibitor.update(&a.fingerprint, Some(&a.match_view()));
            *self.active.entry(a.severity).or_default() += 1;
            plan.add_stored(a);
        }
        let all: Vec<String> = plan.order.clone();
        self.resilence(&mut plan, &all, now);
        self.reinhibit(&mut plan, all.into_iter().collect());
        self.publish_active();
        self.commit(&mut plan).await?;
        self.active_silences = self.silences.active_ids(now);
        self.unsettled.clear();
        self.announce(&plan).await;
        self.remember(plan);
        Ok(())
    }

    pub(super) async fn run(
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

    /// Takes the new alerts that would fire beyond `alerts.max_firing` out of their
    /// requests, in arrival order; those requests are answered 503 after the rest of
    /// them (repeats and resolves, which always pass) is committed. Every firing alert
    /// is in the cache, so this needs no database; below the limit it costs one sum.
    fn admit(&mut self, jobs: Vec<IngestJob>) -> Vec<IngestJob> {
        let limit = self.p.cfg.max_firing;
        let firing = self.active.values().sum::<i64>().max(0) as usize;
        let incoming: usize = jobs.iter().map(|j| j.alerts.len()).sum();
        if limit == 0 || firing + incoming <= limit {
            return jobs;
        }
        let now = now_ms();
        let mut added: HashSet<String> = HashSet::new();
        let mut kept = Vec::with_capacity(jobs.len());
        for mut job in jobs {
            let new: HashSet<String> = job
                .alerts
                .iter()
                .filter(|a| a.ends_at_ms.is_none_or(|e| e > now))
                .map(|a| a.fingerprint.as_str())
                .filter(|fp| {
                    !added.contains(*fp)
                        && self
                            .cache
                            .get(*fp)
                            .is_none_or(|a| a.state != AlertState::Firing)
                })
                .map(str::to_string)
                .collect();
            if new.is_empty() || firing + added.len() + new.len() <= limit {
                added.extend(new);
                kept.push(job);
                continue;
            }
            let before = job.alerts.len();
            job.alerts.retain(|a| !new.contains(&a.fingerprint));
            let refused = (before - job.alerts.len()) as u64;
            self.refused(limit, firing, refused);
            if job.alerts.is_empty() && job.audit.is_none() {
                let _ = job.reply.send(Err(PipelineError::TooManyFiring { limit }));
                continue;
            }
            job.refused = Some(limit);
            kept.push(job);
        }
        kept
    }

    /// Counts (and now and then logs) alerts refused by `alerts.max_firing`.
    fn refused(&mut self, limit: usize, firing: usize, alerts: u64) {
        if self
            .refusal_logged
            .is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY)
        {
            self.refusal_logged = Some(Instant::now());
            tracing::warn!(
                limit,
                firing,
                "alerts.max_firing reached; new alerts are refused (503) until some resolve"
            );
        }
        self.p
            .metrics
            .alerting
            .alerts_refused
            .with_label_values(&["max_firing"])
            .inc_by(alerts);
        self.qm.rejected.inc_by(alerts);
    }

    async fn ingest(&mut self, jobs: Vec<IngestJob>) {
        let jobs = self.admit(jobs);
        if jobs.is_empty() {
            self.handle.update_depth();
            return;
        }
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
                    let reply = if let Some(limit) = job.refused {
                        Err(PipelineError::TooManyFiring { limit })
                    } else if durable {
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
            Err(e) if jobs.len() > 1 && e.is_bad_data() => {
                // Something in one request the edge did not catch: the database refuses
                // the whole batch. Each request is tried alone, so only its own fails.
                tracing::warn!(error = %e, requests = jobs.len(), "alert batch refused; committing its requests one by one");
                self.rebuild().await;
                for job in jobs {
                    Box::pin(self.ingest(vec![job])).await;
                }
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
    ///
    /// When another node wrote some of its rows meanwhile, the batch is applied again
    /// over their stored state (the write applied nothing).
    async fn ingest_batch(
        &mut self,
        jobs: &[IngestJob],
    ) -> Result<(Vec<Vec<i64>>, Plan, HashSet<String>), StoreError> {
        over_fresh_rows!(self, self.try_batch(jobs).await)
    }

    /// Drops cached copies (read again from the database when next needed).
    fn forget(&mut self, fps: &[String]) {
        for fp in fps {
            self.cache.remove(fp);
            self.throttle.remove(fp);
        }
    }

    /// After a write found rows another node changed: their stored copies replace the
    /// cached ones, and the inhibition index follows them (the flags it moves are left
    /// to the next write, [`Writer::unsettled`]).
    async fn reread(&mut self, fps: &[String]) {
        self.forget(fps);
        let list: Vec<&str> = fps.iter().map(String::as_str).collect();
        match self.load(&list).await {
            Ok(mut fresh) => {
                for fp in fps {
                    let a = fresh.remove(fp);
                    let view = a.as_ref().map(|a| a.match_view());
                    let labels = a
                        .as_ref()
                        .zip(view.as_ref())
                        .filter(|(a, _)| a.state == AlertState::Firing)
                        .map(|(_, v)| v as &dyn Labels);
                    let moved = self.inhibitor.update(fp, labels);
                    self.unsettled.extend(moved);
                    if let Some(a) = a {
                        self.cache.insert(fp.clone(), a);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read alerts again after a conflict; reloading all");
                self.stale = true;
            }
        }
    }

    /// One attempt of [`Writer::ingest_batch`].
    async fn try_batch(
        &mut self,
        jobs: &[IngestJob],
    ) -> Result<(Vec<Vec<i64>>, Plan, HashSet<String>), StoreError> {
        let now = now_ms();
        let mut all: Vec<&str> = jobs
            .iter()
            .flat_map(|j| j.alerts.iter().map(|a| a.fingerprint.as_str()))
            .collect();
        all.sort_unstable();
        all.dedup();
        // With several writers, first take in what the others committed (the feed holds
        // every state change), so new-versus-repeat is decided over the stored state;
        // a full write is checked against the row's version in any case.
        if self.p.cfg.news.count() != self.news_seen
            && let Err(e) = self.follow().await
        {
            tracing::warn!(error = %e, "cannot read the alert change feed; deciding over this node's copies");
        }
        let fps: Vec<&str> = all
            .into_iter()
            .filter(|fp| !self.cache.contains_key(*fp))
            .collect();
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
        // Inhibition flags an earlier failed write left to do, and this batch's.
        let mut affected = std::mem::take(&mut self.unsettled);
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
        self.unsettled = affected.clone();
        self.load_into(&mut plan, &affected).await?;
        self.reinhibit(&mut plan, affected);
        let undurable = self.commit(&mut plan).await?;
        self.unsettled.clear();
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
        let rows = plan.full_writes();
        let refreshes = plan.refreshes();
        // Without a journal, refreshes are written in the batch's transaction.
        let direct: &[Refresh] = match self.p.journal {
            Some(_) => &[],
            None => &refreshes,
        };
        let feed = self.p.cfg.feed;
        let node = self.p.cfg.node.as_str();
        let in_db = !rows.is_empty()
            || !direct.is_empty()
            || !plan.audit.is_empty()
            || (feed && !plan.changes.is_empty());
        let plan_ref = &*plan;
        let ids: Vec<(i64, String, i64)> = if !in_db {
            Vec::new()
        } else {
            self.retrying(|| {
                let db = db.clone();
                let rows = &rows;
                async move {
                    let mut tx = db.begin().await?;
                    let ids: Vec<i64> = direct.iter().map(|r| r.id).collect();
                    let fps: Vec<&str> =
                        rows.iter().map(|w| w.alert.fingerprint.as_str()).collect();
                    repo::lock_rows(&db, &mut tx, &ids, &fps).await?;
                    let expected: Vec<(&str, Option<i64>)> = plan_ref
                        .expect_ends
                        .iter()
                        .map(|(fp, e)| (fp.as_str(), *e))
                        .collect();
                    let moved = repo::ends_moved(&db, &mut tx, &expected).await?;
                    if !moved.is_empty() {
                        return Err(StoreError::Conflict {
                            fingerprints: moved,
                        });
                    }
                    repo::refresh(&db, &mut tx, direct, RefreshMode::Add).await?;
                    let ids = repo::upsert(&db, &mut tx, rows).await?;
                    let by_fp: HashMap<&str, i64> =
                        ids.iter().map(|(id, fp, _)| (fp.as_str(), *id)).collect();
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
                        repo::append_changes(&db, &mut tx, &changes, node).await?;
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
                Ok(true) => add_pending(&mut pending, &refreshes),
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
                    add_pending(&mut pending, &refreshes);
                }
            }
            self.jm.depth.set(pending.len() as i64);
        }
        for (id, fp, version) in ids {
            if let Some(a) = plan.alerts.get_mut(&fp) {
                a.id = id;
                a.version = version;
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
                let mut tx = db.begin().await?;
                let ids: Vec<i64> = refreshes.iter().map(|r| r.id).collect();
                repo::lock_rows(&db, &mut tx, &ids, &[]).await?;
                repo::refresh(&db, &mut tx, refreshes, RefreshMode::Add).await?;
                tx.commit().await?;
                Ok(())
            }
        })
        .await?;
        Ok(false)
    }

    /// Starts a checkpoint in the background unless one is running: a failed one
    /// again, else one of everything pending.
    fn start_checkpoint(&mut self) -> Result<(), StoreError> {
        let job = Checkpoint {
            db: self.p.db.clone(),
            pending: self.p.pending.clone(),
            journal: self.p.journal.clone(),
            generation: self.p.generation.clone(),
            metrics: self.jm.clone(),
            slot: self.p.checkpoints.clone(),
        };
        let journal = self.p.journal.clone();
        job.start(move || match journal {
            Some(j) => {
                let sealed = j.rotate()?;
                Ok((sealed, j.sealed_names(sealed)))
            }
            None => Ok((0, Vec::new())),
        })
    }

    /// Waits for the running checkpoint, if any (also one a previous incarnation of
    /// the writer started).
    async fn finish_checkpoint(&mut self) -> Result<(), StoreError> {
        Checkpoint::finish(&self.p.checkpoints).await
    }

    /// Writes every journaled repeat to the database and waits until it is committed.
    async fn checkpoint(&mut self) -> Result<(), StoreError> {
        if let Err(e) = self.finish_checkpoint().await {
            tracing::warn!(error = %e, "checkpointing the receipt journal failed; retrying");
        }
        // A failed checkpoint goes again as it was first, then what came since.
        for _ in 0..2 {
            self.start_checkpoint()?;
            self.finish_checkpoint().await?;
        }
        Ok(())
    }

    /// Keeps the plan's alerts as the current copies; drops resolved ones when more
    /// than [`CACHE_LIMIT`] of them are cached (firing ones always stay, so a storm of
    /// firing alerts does not make every batch sweep the whole cache).
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
        let firing = self.active.values().sum::<i64>().max(0) as usize;
        if self.cache.len() > CACHE_LIMIT + firing {
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
        if let Err(e) = self.follow_from_head().await {
            self.stale = true;
            tracing::warn!(error = %e, "cannot reload firing alerts; will retry");
            return;
        }
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

    /// Acknowledges an alert over its stored row (again if another node wrote it
    /// meanwhile).
    async fn ack(&mut self, job: &AckJob) -> Result<Option<Alert>, PipelineError> {
        self.checkpoint()
            .await
            .map_err(|e| PipelineError::store(&e))?;
        over_fresh_rows!(self, self.try_ack(job).await).map_err(|e| PipelineError::store(&e))
    }

    async fn try_ack(&mut self, job: &AckJob) -> Result<Option<Alert>, StoreError> {
        let now = now_ms();
        let db = self.p.db.clone();
        let stored = self.retrying(|| repo::get(&db, job.id)).await?;
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
        self.commit(&mut plan).await?;
        self.announce(&plan).await;
        let acked = plan.alerts.get(&fp).cloned();
        self.remember(plan);
        Ok(acked)
    }

    /// Reloads (when `reload`) and re-applies silences to every firing alert.
    async fn reevaluate_silences(&mut self, reload: bool) -> Result<(), StoreError> {
        over_fresh_rows!(self, self.try_reevaluate_silences(reload).await)
    }

    async fn try_reevaluate_silences(&mut self, reload: bool) -> Result<(), StoreError> {
        self.checkpoint().await?;
        let now = now_ms();
        if reload {
            self.silences = SilenceSet::new(silence::unexpired(&self.p.db, now).await?);
        }
        let firing = repo::firing(&self.p.db).await?;
        let mut plan = Plan::new(now);
        for a in firing {
            plan.add_stored(a);
        }
        let all = plan.order.clone();
        self.resilence(&mut plan, &all, now);
        self.commit(&mut plan).await?;
        // Only once written: a failed write is tried again at the next tick.
        self.active_silences = self.silences.active_ids(now);
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
        self.on_leadership().await;
        if let Err(e) = self.follow().await {
            tracing::warn!(error = %e, "cannot read the alert change feed; will retry");
        }
        if let Err(e) = self.settle_flags().await {
            tracing::warn!(error = %e, "writing inhibition flags failed; will retry");
        }
        if let Err(e) = self.reload_silences(now).await {
            tracing::warn!(error = %e, "cannot read silences; will retry");
        }
        if self.silences.active_ids(now) != self.active_silences {
            if !self.does_timed_work() {
                // The leader writes the transitions.
                self.active_silences = self.silences.active_ids(now);
            } else if let Err(e) = self.reevaluate_silences(true).await {
                tracing::warn!(error = %e, "re-applying silences failed; will retry");
            }
        }
        if self.last_active.elapsed() >= self.p.cfg.checkpoint_interval {
            self.last_active = Instant::now();
            if let Err(e) = self.refresh_active().await {
                tracing::debug!(error = %e, "cannot count firing alerts; will retry");
            }
        }
        match self.expire(now).await {
            Ok(()) => {}
            // Another node wrote them: their stored state decides at the next tick.
            Err(StoreError::Conflict { fingerprints }) => self.reread(&fingerprints).await,
            Err(e) => {
                tracing::warn!(error = %e, "resolving expired alerts failed; will retry");
                self.rebuild().await;
            }
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
        let (due, expected) = self.due_to_expire(now).await?;
        if due.is_empty() {
            return Ok(());
        }
        let mut plan = Plan::new(now);
        plan.expect_ends = expected;
        let mut affected = std::mem::take(&mut self.unsettled);
        for a in due {
            let fp = a.fingerprint.clone();
            let at = a.ends_at_ms.unwrap_or(now);
            plan.add_stored(a);
            if let Some(x) = plan.alerts.get_mut(&fp) {
                x.state = AlertState::Resolved;
            }
            plan.event(
                &fp,
                Event::new(EventKind::Resolved, json!({"reason": "ends_at passed"})).at(at),
                Some(ChangeKind::Resolved),
            );
            affected.extend(self.inhibitor.update(&fp, None));
        }
        self.unsettled = affected.clone();
        self.load_into(&mut plan, &affected).await?;
        self.reinhibit(&mut plan, affected);
        self.commit(&mut plan).await?;
        self.unsettled.clear();
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

/// Adds journaled receipts to the pending set (the increments add up).
fn add_pending(pending: &mut HashMap<i64, Refresh>, refreshes: &[Refresh]) {
    for r in refreshes {
        match pending.get_mut(&r.id) {
            Some(p) => p.absorb(r),
            None => {
                pending.insert(r.id, *r);
            }
        }
    }
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
