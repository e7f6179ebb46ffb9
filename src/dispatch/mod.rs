//! Dispatch: alert changes in, notifications out.
//!
//! The alert pipeline sends every change of an alert as an [`AlertNotice`] on the channel
//! from [`DispatchHandle::sender`]. The dispatcher routes it through the routing tree
//! ([`route`]) into aggregation groups ([`group`]) and runs Alertmanager's timers:
//! a new group waits `group_wait`, then flushes every `group_interval`; a flush notifies
//! when the group changed, or repeats after `repeat_interval`. Notifications go to a
//! [`NotificationSink`] (the outbox), which also persists what each receiver was told
//! (the notification log) in the same transaction.
//!
//! Nothing the dispatcher holds in memory is needed after a restart: at start it
//! rebuilds its groups from the database ([`AlertSource`]: every firing alert, and the
//! resolved ones a receiver was told are firing) and the notification log, so what is
//! owed — an alert accepted inside `group_wait`, a resolve inside `group_interval` — is
//! notified once, and what was told is not told again. Timers are derived from the
//! same facts: a group that notified before ticks on its `group_interval` grid from the
//! last notification; one that never did flushes `group_wait` after its oldest alert
//! started (at once if that is past).

pub mod changes;
pub mod flap;
pub mod group;
pub mod route;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use group::{AggregationGroup, FlushPlan, GroupAlert, Notification, NotifyLogEntry};
// Routes match with the same matchers as silences and inhibition rules.
pub use crate::silence::MatcherJson;
pub use crate::silence::matcher::{MatchOp, Matcher, MatcherError, Matchers};
pub use route::{GroupBy, Route, RouteOpts};

use crate::config::{Config, FlapConfig};
use flap::{FlapChange, FlapTracker};

/// A duration in ms, saturating.
fn model_ms(d: Duration) -> i64 {
    crate::alerts::model::duration_ms(d)
}

/// How many notices may wait for the dispatcher before senders block.
pub const CHANNEL_CAPACITY: usize = 10_000;
/// Retry delay of a flush whose notification could not be enqueued.
const ENQUEUE_RETRY: Duration = Duration::from_secs(5);
/// Most groups whose notifications are enqueued in one transaction.
const FLUSH_BATCH: usize = 256;

/// Firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Firing.
    Firing,
    /// Resolved.
    Resolved,
}

impl AlertState {
    /// `firing` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// One change of one alert, as the alert pipeline reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertNotice {
    /// The alert's id in the store (links, bot commands, event log).
    pub id: i64,
    /// Identity: source + sorted labels.
    pub fingerprint: String,
    /// Where it came from (`rules`, `alertmanager`, `ntopng`, …).
    #[serde(default)]
    pub source: String,
    /// The alert's message (generic alerts) or summary.
    #[serde(default)]
    pub message: String,
    /// Labels (routing matches these plus `severity`).
    pub labels: BTreeMap<String, String>,
    /// Annotations (`summary`, `description`, `runbook_url`, `value`, …).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// `critical`, `warning` or `info`.
    pub severity: String,
    /// Firing or resolved.
    pub state: AlertState,
    /// When it started firing.
    pub starts_at: DateTime<Utc>,
    /// When it resolved (or will, for alerts sent with a future `endsAt`).
    pub ends_at: Option<DateTime<Utc>>,
    /// The value that triggered it, when known (rules' `$value`).
    #[serde(default)]
    pub value: Option<String>,
    /// Link to the source (Prometheus' `generatorURL`).
    #[serde(default)]
    pub generator_url: Option<String>,
    /// Matched by an active silence.
    #[serde(default)]
    pub silenced: bool,
    /// Inhibited by another firing alert.
    #[serde(default)]
    pub inhibited: bool,
    /// Acknowledged by an operator.
    #[serde(default)]
    pub acknowledged: bool,
    /// Who acknowledged it.
    #[serde(default)]
    pub acknowledged_by: Option<String>,
    /// Severity rose since the acknowledgement (lifts it).
    #[serde(default)]
    pub severity_raised: bool,
    /// Flapping: its notifications are held (set by the dispatcher's flap tracker).
    #[serde(default)]
    pub flapping: bool,
}

impl AlertNotice {
    /// Labels the routing tree and group keys see: the labels plus `severity` (when the
    /// alert carries severity as a field only).
    pub fn routing_labels(&self) -> BTreeMap<String, String> {
        let mut l = self.labels.clone();
        if !self.severity.is_empty() {
            l.entry("severity".into())
                .or_insert_with(|| self.severity.clone());
        }
        l
    }

    /// `alertname` label, if any.
    pub fn alertname(&self) -> Option<&str> {
        self.labels.get("alertname").map(String::as_str)
    }

    /// A firing notice for tests and examples.
    pub fn test(id: i64, fingerprint: &str, alertname: &str) -> AlertNotice {
        AlertNotice {
            id,
            fingerprint: fingerprint.into(),
            source: "test".into(),
            message: format!("{alertname} fired"),
            labels: BTreeMap::from([("alertname".to_string(), alertname.to_string())]),
            annotations: BTreeMap::new(),
            severity: "warning".into(),
            state: AlertState::Firing,
            starts_at: Utc::now(),
            ends_at: None,
            value: None,
            generator_url: None,
            silenced: false,
            inhibited: false,
            acknowledged: false,
            acknowledged_by: None,
            severity_raised: false,
            flapping: false,
        }
    }
}

/// Orders severities: critical > warning > info > anything else.
pub fn severity_rank(s: &str) -> u8 {
    match s.to_ascii_lowercase().as_str() {
        "critical" | "error" | "page" | "high" => 3,
        "warning" | "warn" | "medium" => 2,
        "info" | "low" | "notice" => 1,
        _ => 0,
    }
}

/// Where flushed groups go (the outbox), and where the notification log lives.
#[async_trait::async_trait]
pub trait NotificationSink: Send + Sync + 'static {
    /// The persisted notification log: `(group_key, receiver, entry)`.
    async fn load_log(&self) -> anyhow::Result<Vec<(String, String, NotifyLogEntry)>>;
    /// Durably enqueues `n` and records `entry` for its group and receiver, atomically.
    async fn notify(&self, n: &Notification, entry: &NotifyLogEntry) -> anyhow::Result<()>;
    /// Enqueues several notifications, all or none (default: one by one).
    async fn notify_batch(&self, batch: &[(Notification, NotifyLogEntry)]) -> anyhow::Result<()> {
        for (n, e) in batch {
            self.notify(n, e).await?;
        }
        Ok(())
    }
    /// Records `entry` without a notification.
    async fn save_log(
        &self,
        group_key: &str,
        receiver: &str,
        entry: &NotifyLogEntry,
    ) -> anyhow::Result<()>;
    /// Forgets the log of a group that no longer exists.
    async fn forget(&self, group_key: &str, receiver: &str) -> anyhow::Result<()>;
}

/// Where the dispatcher reads the alerts it rebuilds its groups from at start.
#[async_trait::async_trait]
pub trait AlertSource: Send + Sync + 'static {
    /// Every firing alert.
    async fn firing(&self) -> anyhow::Result<Vec<AlertNotice>>;
    /// The alerts with these fingerprints, in whatever state.
    async fn by_fingerprints(&self, fingerprints: &[String]) -> anyhow::Result<Vec<AlertNotice>>;
    /// State changes since `since_ms`, oldest first: (fingerprint, at_ms, firing).
    async fn transitions(&self, _since_ms: i64) -> anyhow::Result<Vec<(String, i64, bool)>> {
        Ok(Vec::new())
    }
    /// Alerts the database marks flapping, as (fingerprint, id).
    async fn flapping(&self) -> anyhow::Result<Vec<(String, i64)>> {
        Ok(Vec::new())
    }
    /// Records that alert `id` is flapping since `since_ms` (or stable with `None`).
    async fn set_flapping(
        &self,
        _id: i64,
        _since_ms: Option<i64>,
        _at_ms: i64,
        _detail: &serde_json::Value,
    ) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Committed alert changes in commit order, as a cursor over a database feed (several
/// nodes: each node's pipeline appends, the leader's dispatcher reads).
#[async_trait::async_trait]
pub trait AlertFeed: Send + Sync + 'static {
    /// The position after the last change committed so far.
    async fn head(&self) -> anyhow::Result<i64>;
    /// The next changes after `cursor` (as notices with the alert's current state),
    /// and the new cursor.
    async fn since(&self, cursor: i64) -> anyhow::Result<(Vec<AlertNotice>, i64)>;
    /// Resolves when there may be news (a notification, or the polling interval).
    async fn wait(&self);
    /// Periodic clean-up (old feed rows); called by the leader now and then.
    async fn housekeeping(&self) {}
}

/// How often the leader cleans up the change feed.
const FEED_HOUSEKEEPING: Duration = Duration::from_secs(300);

/// The first flush of a group that last notified at `at_ms`: the next tick of its
/// `group_interval` grid at or after `now_ms` (at most one interval away, whatever a
/// clock that stepped back says).
fn next_tick(at_ms: i64, interval: Duration, now_ms: i64) -> i64 {
    let gi = (interval.as_millis() as i64).max(1);
    if at_ms >= now_ms {
        return at_ms.min(now_ms + gi);
    }
    let k = (now_ms - at_ms + gi - 1) / gi;
    at_ms + k * gi
}

/// Wall-clock milliseconds that advance with tokio's clock (so paused-time tests work).
#[derive(Debug, Clone, Copy)]
struct Clock {
    base_ms: i64,
    base: Instant,
}

impl Clock {
    fn new() -> Self {
        Clock {
            base_ms: Utc::now().timestamp_millis(),
            base: Instant::now(),
        }
    }
    fn now_ms(&self) -> i64 {
        self.base_ms + self.base.elapsed().as_millis() as i64
    }
    /// The instant of wall-clock `ms` (now, if it is past).
    fn instant_at(self, ms: i64) -> Instant {
        let now = Instant::now();
        let ahead = ms - self.now_ms();
        if ahead > 0 {
            now + Duration::from_millis(ahead as u64)
        } else {
            now
        }
    }
    fn ms_at(self, at: Instant) -> i64 {
        let now = Instant::now();
        let now_ms = self.now_ms();
        if at >= now {
            now_ms + (at - now).as_millis() as i64
        } else {
            now_ms - (now - at).as_millis() as i64
        }
    }
}

/// Everything the dispatcher knows; shared with the API for `/api/v1/alerts/groups`.
struct State {
    groups: HashMap<String, AggregationGroup>,
    /// Fingerprint → keys of the groups holding it.
    index: HashMap<String, HashSet<String>>,
    /// Notification log loaded at start for groups not recreated yet.
    restored: HashMap<(String, String), NotifyLogEntry>,
    timers: BinaryHeap<Reverse<(Instant, String)>>,
    loaded: bool,
    /// State changes and flap status per fingerprint.
    flaps: FlapTracker,
    /// Flap status changes not yet stored.
    flap_writes: Vec<FlapWrite>,
}

/// A flap status change to store: alert `id` flapping since `since_ms`, or stable.
#[derive(Debug, Clone)]
struct FlapWrite {
    id: i64,
    since_ms: Option<i64>,
    at_ms: i64,
    detail: serde_json::Value,
}

/// Most flap status changes kept while the database does not take them.
const FLAP_WRITES_MAX: usize = 10_000;

/// The dispatcher: owns the channel's receiving end and the groups.
#[derive(Clone)]
pub struct Dispatcher {
    route: Option<Arc<Route>>,
    sink: Arc<dyn NotificationSink>,
    source: Option<Arc<dyn AlertSource>>,
    feed: Option<Arc<dyn AlertFeed>>,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<AlertNotice>>>,
    handle: DispatchHandle,
    clock: Clock,
    flap_window: Duration,
    flapping_gauge: Option<prometheus::IntGauge>,
}

/// The handle the pipeline and the API hold. Cheap to clone.
#[derive(Clone)]
pub struct DispatchHandle {
    tx: mpsc::Sender<AlertNotice>,
    state: Arc<Mutex<State>>,
    clock: Clock,
}

impl Dispatcher {
    /// A dispatcher over the routing tree `route` (`None`: notices are dropped).
    pub fn new(route: Option<Route>, sink: Arc<dyn NotificationSink>) -> Dispatcher {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let clock = Clock::new();
        let state = Arc::new(Mutex::new(State {
            groups: HashMap::new(),
            index: HashMap::new(),
            restored: HashMap::new(),
            timers: BinaryHeap::new(),
            loaded: false,
            flaps: FlapTracker::new(&FlapConfig::default()),
            flap_writes: Vec::new(),
        }));
        Dispatcher {
            route: route.map(Arc::new),
            sink,
            source: None,
            feed: None,
            rx: Arc::new(tokio::sync::Mutex::new(rx)),
            handle: DispatchHandle { tx, state, clock },
            clock,
            flap_window: FlapConfig::default().window,
            flapping_gauge: None,
        }
    }

    /// Flap damping by `cfg` (the default config's otherwise), reported in `gauge`.
    pub fn with_flap(mut self, cfg: &FlapConfig, gauge: prometheus::IntGauge) -> Dispatcher {
        self.lock().flaps = FlapTracker::new(cfg);
        self.flap_window = cfg.window;
        self.flapping_gauge = Some(gauge);
        self
    }

    /// Builds the routing tree from `config` (see [`route::build`]).
    pub fn from_config(
        config: &Config,
        sink: Arc<dyn NotificationSink>,
    ) -> Result<Dispatcher, String> {
        let route = route::build(config).map_err(|p| p.join("\n"))?;
        Ok(Dispatcher::new(route, sink))
    }

    /// Rebuilds the groups from `source` at start (without it, only the notification
    /// log is restored).
    pub fn with_source(mut self, source: Arc<dyn AlertSource>) -> Dispatcher {
        self.source = Some(source);
        self
    }

    /// Reads changes from `feed` (besides the channel): a cluster's leader learns of
    /// every node's changes there. Each run then starts from scratch: the groups are
    /// rebuilt from the database after the feed's head is noted, so no change between
    /// the two is missed (one seen twice is harmless: notices carry state).
    pub fn with_feed(mut self, feed: Arc<dyn AlertFeed>) -> Dispatcher {
        self.feed = Some(feed);
        self
    }

    /// Whether changes come from a feed (see [`Dispatcher::with_feed`]).
    pub fn reads_feed(&self) -> bool {
        self.feed.is_some()
    }

    /// The handle for the pipeline (`sender()`) and the API (`groups()`).
    pub fn handle(&self) -> DispatchHandle {
        self.handle.clone()
    }

    /// Where the alert pipeline sends each alert change.
    pub fn sender(&self) -> mpsc::Sender<AlertNotice> {
        self.handle.tx.clone()
    }

    /// Runs until `shutdown`: receives notices and flushes due groups.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut cursor = match &self.feed {
            Some(feed) => {
                self.reset();
                match self.feed_head(feed, &shutdown).await {
                    Some(c) => Some(c),
                    None => return Ok(()),
                }
            }
            None => None,
        };
        self.restore(&shutdown).await;
        let mut rx = self.rx.lock().await;
        let mut housekeeping = Instant::now();
        loop {
            let next = self.next_timer();
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let news = async {
                match &self.feed {
                    Some(f) => f.wait().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                notice = rx.recv() => match notice {
                    Some(n) => {
                        self.insert(n, false);
                        // Take whatever else is queued before flushing.
                        while let Ok(n) = rx.try_recv() {
                            self.insert(n, false);
                        }
                    }
                    None if self.feed.is_none() => return Ok(()),
                    None => {}
                },
                _ = news => {}
                _ = sleep => {}
            }
            if let (Some(feed), Some(c)) = (&self.feed, cursor.as_mut()) {
                self.read_feed(feed, c).await;
                if housekeeping.elapsed() >= FEED_HOUSEKEEPING {
                    housekeeping = Instant::now();
                    feed.housekeeping().await;
                }
            }
            self.settle();
            self.write_flaps().await;
            self.flush_due().await;
        }
    }

    /// Alerts that stopped flapping: their notices in the groups are released (the
    /// next flush tells their final state once) and the change is queued for storing.
    fn settle(&self) {
        let now_ms = self.clock.now_ms();
        let mut st = self.lock();
        let st = &mut *st;
        for (fp, id) in st.flaps.settle(now_ms) {
            let mut state = None;
            for key in st.index.get(&fp).into_iter().flatten() {
                if let Some(a) = st.groups.get_mut(key).and_then(|g| g.alerts.get_mut(&fp)) {
                    a.notice.flapping = false;
                    state = Some(a.notice.state);
                }
            }
            // Stored stable even when no group holds it (silenced, or left the groups).
            let state = state.map_or("unknown", AlertState::as_str);
            tracing::info!(id, fingerprint = %fp, state, "alert stable again; notifications resume");
            st.flap_writes.push(FlapWrite {
                id,
                since_ms: None,
                at_ms: now_ms,
                detail: serde_json::json!({ "state": state }),
            });
        }
        if let Some(g) = &self.flapping_gauge {
            g.set(st.flaps.flapping() as i64);
        }
    }

    /// Stores queued flap status changes (kept for the next round if that fails).
    async fn write_flaps(&self) {
        let writes = std::mem::take(&mut self.lock().flap_writes);
        let Some(source) = &self.source else {
            return;
        };
        for (i, w) in writes.iter().enumerate() {
            if let Err(e) = source
                .set_flapping(w.id, w.since_ms, w.at_ms, &w.detail)
                .await
            {
                tracing::warn!(id = w.id, error = %format!("{e:#}"), "cannot store the flap status; will retry");
                let mut st = self.lock();
                let mut rest = writes[i..].to_vec();
                rest.append(&mut st.flap_writes);
                rest.truncate(FLAP_WRITES_MAX);
                st.flap_writes = rest;
                return;
            }
        }
    }

    /// Forgets every group (a new leadership term rebuilds them from the database).
    fn reset(&self) {
        let mut st = self.lock();
        st.groups.clear();
        st.index.clear();
        st.restored.clear();
        st.timers.clear();
        st.loaded = false;
        st.flaps.clear();
        st.flap_writes.clear();
    }

    /// The feed's head, retried until the database answers; `None` at shutdown.
    async fn feed_head(
        &self,
        feed: &Arc<dyn AlertFeed>,
        shutdown: &CancellationToken,
    ) -> Option<i64> {
        let mut backoff = Duration::from_millis(200);
        loop {
            match feed.head().await {
                Ok(c) => return Some(c),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), retry_in = ?backoff, "cannot read the alert change feed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Takes in every change after `cursor`, advancing it (a failed read is tried
    /// again at the next wake-up: the cursor stays).
    async fn read_feed(&self, feed: &Arc<dyn AlertFeed>, cursor: &mut i64) {
        loop {
            match feed.since(*cursor).await {
                Ok((notices, next)) => {
                    let more = next > *cursor;
                    *cursor = next;
                    for n in notices {
                        self.insert(n, false);
                    }
                    if !more {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "cannot read the alert change feed; will retry");
                    return;
                }
            }
        }
    }

    /// Restores the notification log and rebuilds the groups from the stored alerts,
    /// retrying until the database answers (or shutdown).
    async fn restore(&self, shutdown: &CancellationToken) {
        if self.lock().loaded {
            return;
        }
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.load_state().await {
                Ok((entries, notices, (transitions, flapping))) => {
                    {
                        let mut st = self.lock();
                        for (gk, rcv, e) in entries {
                            st.restored.insert((gk, rcv), e);
                        }
                        for (fp, at_ms, firing) in transitions {
                            st.flaps.replay(&fp, firing, at_ms);
                        }
                        let now_ms = self.clock.now_ms();
                        for (fp, id) in flapping {
                            st.flaps.restore_flapping(&fp, id, now_ms);
                        }
                    }
                    let alerts = notices.len();
                    for n in notices {
                        self.insert(n, true);
                    }
                    let mut st = self.lock();
                    st.loaded = true;
                    tracing::info!(
                        alerts,
                        groups = st.groups.len(),
                        "notification groups rebuilt from the database"
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), retry_in = ?backoff, "cannot load the notification state; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// The notification log, and the alerts the groups hold: every firing one, plus the
    /// resolved ones some receiver was told are firing (their resolve is owed).
    #[allow(clippy::type_complexity)]
    async fn load_state(
        &self,
    ) -> anyhow::Result<(
        Vec<(String, String, NotifyLogEntry)>,
        Vec<AlertNotice>,
        (Vec<(String, i64, bool)>, Vec<(String, i64)>),
    )> {
        let entries = self.sink.load_log().await?;
        let Some(source) = &self.source else {
            return Ok((entries, Vec::new(), Default::default()));
        };
        let window_ms = model_ms(self.flap_window);
        let transitions = source
            .transitions(self.clock.now_ms().saturating_sub(window_ms))
            .await?;
        let flapping = source.flapping().await?;
        let mut notices = source.firing().await?;
        let firing: HashSet<&str> = notices.iter().map(|n| n.fingerprint.as_str()).collect();
        let told: BTreeSet<String> = entries
            .iter()
            .flat_map(|(_, _, e)| e.firing.keys().chain(&e.flapping))
            .filter(|fp| !firing.contains(fp.as_str()))
            .cloned()
            .collect();
        let told: Vec<String> = told.into_iter().collect();
        let resolved = source.by_fingerprints(&told).await?;
        notices.extend(
            resolved
                .into_iter()
                .filter(|n| n.state == AlertState::Resolved),
        );
        Ok((entries, notices, (transitions, flapping)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.handle
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn next_timer(&self) -> Option<Instant> {
        let settle = self
            .lock()
            .flaps
            .next_settle_ms()
            .map(|ms| self.clock.instant_at(ms));
        match (self.next_flush_timer(), settle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn next_flush_timer(&self) -> Option<Instant> {
        let mut st = self.lock();
        // Drop stale timer entries (groups gone or rescheduled).
        while let Some(Reverse((at, key))) = st.timers.peek() {
            match st.groups.get(key) {
                Some(g) if g.next_flush == *at => return Some(*at),
                _ => {
                    st.timers.pop();
                }
            }
        }
        None
    }

    /// Routes a notice into its groups (creating them), removing it from groups it no
    /// longer belongs to. `restoring`: the notice comes from the database at start.
    fn insert(&self, mut notice: AlertNotice, restoring: bool) {
        let Some(route) = &self.route else {
            tracing::trace!(id = notice.id, "no route configured; notice dropped");
            return;
        };
        let labels = notice.routing_labels();
        let now_ms = self.clock.now_ms();
        let mut st = self.lock();
        let st = &mut *st;
        self.track_flaps(st, &mut notice, restoring, now_ms);
        let mut keys = HashSet::new();
        for r in route.match_labels(&labels) {
            let group_labels = r.opts.group_by.group_labels(&labels);
            let key = format!("{}:{}", r.id, labels_key(&group_labels));
            keys.insert(key.clone());
            let clock = self.clock;
            let group = st.groups.entry(key.clone()).or_insert_with(|| {
                let log = st.restored.remove(&(key.clone(), r.opts.receiver.clone()));
                // A group that notified before keeps its group_interval ticks.
                let (next_flush, has_flushed) = match &log {
                    Some(l) => (
                        clock.instant_at(next_tick(l.at_ms, r.opts.group_interval, now_ms)),
                        true,
                    ),
                    None => (Instant::now() + r.opts.group_wait, false),
                };
                st.timers.push(Reverse((next_flush, key.clone())));
                tracing::debug!(group = %key, receiver = %r.opts.receiver, restored = log.is_some(), "new aggregation group");
                AggregationGroup {
                    key: key.clone(),
                    route_id: r.id.clone(),
                    opts: r.opts.clone(),
                    labels: group_labels,
                    alerts: BTreeMap::new(),
                    created_ms: now_ms,
                    next_flush,
                    has_flushed,
                    log,
                }
            });
            if !group.has_flushed && notice.state == AlertState::Firing {
                let due_ms =
                    notice.starts_at.timestamp_millis() + group.opts.group_wait.as_millis() as i64;
                // An alert older than group_wait need not wait (Alertmanager does the
                // same); rebuilt at start, a group waits what is left of its group_wait.
                let due = if due_ms < now_ms {
                    Some(Instant::now())
                } else if restoring {
                    Some(clock.instant_at(due_ms))
                } else {
                    None
                };
                if let Some(at) = due.filter(|at| *at < group.next_flush) {
                    group.next_flush = at;
                    st.timers.push(Reverse((at, key.clone())));
                }
            }
            group.alerts.insert(
                notice.fingerprint.clone(),
                GroupAlert {
                    notice: notice.clone(),
                    updated_ms: now_ms,
                },
            );
        }
        // Groups the alert was in but no longer routes to (e.g. its severity changed).
        let old = st
            .index
            .insert(notice.fingerprint.clone(), keys.clone())
            .unwrap_or_default();
        for key in old.difference(&keys) {
            if let Some(g) = st.groups.get_mut(key) {
                g.alerts.remove(&notice.fingerprint);
            }
        }
    }

    /// Counts the notice's state change and marks it flapping (queueing the store of a
    /// new flap status). Restored notices bring the stored status along.
    fn track_flaps(&self, st: &mut State, notice: &mut AlertNotice, restoring: bool, now_ms: i64) {
        let fp = notice.fingerprint.as_str();
        let firing = notice.state == AlertState::Firing;
        // Changes are timed when the dispatcher learns them (as the stored events are),
        // never by the sender's timestamps.
        let started = st.flaps.observe(fp, notice.id, firing, now_ms, restoring);
        if restoring && notice.flapping && !st.flaps.is_flapping(fp) {
            st.flaps.restore_flapping(fp, notice.id, now_ms);
        }
        let flapping = st.flaps.is_flapping(fp);
        if let Some(FlapChange::Started(changes)) = started {
            tracing::info!(id = notice.id, fingerprint = %fp, changes, "alert flapping; its notifications are held");
            st.flap_writes.push(FlapWrite {
                id: notice.id,
                since_ms: st.flaps.flapping_since(fp),
                at_ms: now_ms,
                detail: serde_json::json!({
                    "changes": changes,
                    "window": humantime::format_duration(self.flap_window).to_string(),
                }),
            });
        }
        notice.flapping = flapping;
    }

    /// Flushes every group whose timer expired; their notifications are enqueued in
    /// batches (one transaction each), so a burst of groups costs few commits.
    async fn flush_due(&self) {
        let now = Instant::now();
        let due: Vec<String> = {
            let mut st = self.lock();
            let mut due = Vec::new();
            let mut seen = HashSet::new();
            while st.timers.peek().is_some_and(|Reverse((at, _))| *at <= now) {
                let Some(Reverse((at, key))) = st.timers.pop() else {
                    break;
                };
                // Stale entries (rescheduled or removed groups) are skipped.
                if st.groups.get(&key).is_some_and(|g| g.next_flush == at)
                    && seen.insert(key.clone())
                {
                    due.push(key);
                }
            }
            due
        };
        for chunk in due.chunks(FLUSH_BATCH) {
            self.flush(chunk).await;
        }
    }

    async fn flush(&self, keys: &[String]) {
        let now_ms = self.clock.now_ms();
        let plans: Vec<(String, String, FlushPlan)> = {
            let st = self.lock();
            keys.iter()
                .filter_map(|k| {
                    st.groups
                        .get(k)
                        .map(|g| (k.clone(), g.opts.receiver.clone(), g.plan(now_ms)))
                })
                .collect()
        };
        let batch: Vec<(Notification, NotifyLogEntry)> = plans
            .iter()
            .filter_map(|(_, _, p)| p.notify.clone())
            .collect();
        let mut ok = true;
        if !batch.is_empty() {
            match self.sink.notify_batch(&batch).await {
                Ok(()) => {
                    for (n, _) in &batch {
                        tracing::info!(
                            group = %n.group_key,
                            receiver = %n.receiver,
                            status = n.status.as_str(),
                            firing = n.firing.len(),
                            resolved = n.resolved.len(),
                            seq = n.seq,
                            "notification enqueued"
                        );
                    }
                }
                Err(e) => {
                    ok = false;
                    tracing::error!(groups = batch.len(), error = %format!("{e:#}"), "cannot enqueue notifications; will retry");
                }
            }
        }
        for (key, receiver, plan) in &plans {
            if plan.notify.is_none()
                && let Some(pruned) = &plan.pruned_log
                && let Err(e) = self.sink.save_log(key, receiver, pruned).await
            {
                tracing::warn!(group = %key, error = %format!("{e:#}"), "cannot save the notification log");
            }
        }
        let mut emptied = Vec::new();
        {
            let mut st = self.lock();
            let st = &mut *st;
            for (key, receiver, plan) in plans {
                let Some(g) = st.groups.get_mut(&key) else {
                    continue;
                };
                // A failed batch only matters to groups that had something to send.
                if ok || plan.notify.is_none() {
                    if let Some((_, entry)) = plan.notify {
                        g.log = Some(entry);
                    } else if let Some(pruned) = plan.pruned_log {
                        g.log = Some(pruned);
                    }
                    for fp in &plan.drop {
                        // Only drop what the plan saw resolved; a newer firing notice stays.
                        if g.alerts.get(fp).is_some_and(|a| !a.is_firing(now_ms)) {
                            g.alerts.remove(fp);
                            if let Some(keys) = st.index.get_mut(fp) {
                                keys.remove(&key);
                                if keys.is_empty() {
                                    st.index.remove(fp);
                                }
                            }
                        }
                    }
                    g.has_flushed = true;
                    g.next_flush = Instant::now() + g.opts.group_interval;
                } else {
                    g.next_flush = Instant::now() + g.opts.group_interval.min(ENQUEUE_RETRY);
                }
                if g.alerts.is_empty() {
                    st.groups.remove(&key);
                    emptied.push((key, receiver));
                } else {
                    let at = g.next_flush;
                    st.timers.push(Reverse((at, key)));
                }
            }
        }
        for (key, receiver) in emptied {
            tracing::debug!(group = %key, "aggregation group removed");
            if let Err(e) = self.sink.forget(&key, &receiver).await {
                tracing::warn!(group = %key, error = %format!("{e:#}"), "cannot forget the notification log");
            }
        }
    }
}

/// `{a="1",b="2"}` — the group-key rendering of labels.
pub fn labels_key(labels: &BTreeMap<String, String>) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(k);
        s.push('=');
        s.push_str(&crate::silence::matcher::quote(v));
    }
    s.push('}');
    s
}

/// Filters for [`DispatchHandle::groups`] (Alertmanager's `/api/v2/alerts/groups`).
#[derive(Debug, Clone, Default)]
pub struct GroupFilter {
    /// Only alerts matching all of these.
    pub matchers: Matchers,
    /// Receiver name regex (anchored).
    pub receiver: Option<regex::Regex>,
    /// Include active (not suppressed) alerts.
    pub active: bool,
    /// Include silenced alerts.
    pub silenced: bool,
    /// Include inhibited alerts.
    pub inhibited: bool,
}

impl GroupFilter {
    /// Everything.
    pub fn all() -> GroupFilter {
        GroupFilter {
            matchers: Matchers::default(),
            receiver: None,
            active: true,
            silenced: true,
            inhibited: true,
        }
    }
}

/// One group as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupView {
    /// Group labels.
    pub labels: BTreeMap<String, String>,
    /// `{"name": receiver}`.
    pub receiver: ReceiverRef,
    /// The alerts.
    pub alerts: Vec<GroupAlertView>,
    /// The group key.
    pub group_key: String,
    /// The route's id.
    pub route: String,
    /// `pending` before the first flush, then `active`.
    pub state: &'static str,
    /// When the group was created.
    pub created_at: DateTime<Utc>,
    /// When the group flushes next.
    pub next_flush_at: DateTime<Utc>,
    /// When the receiver was last notified.
    pub last_notified_at: Option<DateTime<Utc>>,
    /// Notifications sent so far.
    pub notifications: u64,
    /// `group_wait`, `group_interval`, `repeat_interval` as humantime strings.
    pub timers: TimersView,
}

/// `{"name": "…"}`.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiverRef {
    /// Receiver name.
    pub name: String,
}

/// The group's timer settings.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TimersView {
    /// `group_wait`.
    pub group_wait: String,
    /// `group_interval`.
    pub group_interval: String,
    /// `repeat_interval`.
    pub repeat_interval: String,
}

/// An alert in a group (Alertmanager's gettable alert, plus the watchpost id).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupAlertView {
    /// Alert id.
    pub id: i64,
    /// Fingerprint.
    pub fingerprint: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Severity.
    pub severity: String,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End, if resolved.
    pub ends_at: Option<DateTime<Utc>>,
    /// Last update.
    pub updated_at: DateTime<Utc>,
    /// Source link.
    #[serde(rename = "generatorURL")]
    pub generator_url: Option<String>,
    /// Receivers.
    pub receivers: Vec<ReceiverRef>,
    /// `{"state": active|suppressed|resolved, "silenced", "inhibited", "acknowledged"}`.
    pub status: AlertStatusView,
}

/// Status of an alert in a group.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertStatusView {
    /// `active`, `suppressed` or `resolved`.
    pub state: &'static str,
    /// Silenced.
    pub silenced: bool,
    /// Inhibited.
    pub inhibited: bool,
    /// Acknowledged (not re-notified).
    pub acknowledged: bool,
}

impl DispatchHandle {
    /// Where the alert pipeline sends each alert change.
    pub fn sender(&self) -> mpsc::Sender<AlertNotice> {
        self.tx.clone()
    }

    /// The current aggregation groups, filtered, sorted by group key.
    pub fn groups(&self, filter: &GroupFilter) -> Vec<GroupView> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now_ms = self.clock.now_ms();
        let ms = |v: i64| DateTime::from_timestamp_millis(v).unwrap_or_default();
        let mut out: Vec<GroupView> = st
            .groups
            .values()
            .filter(|g| {
                filter
                    .receiver
                    .as_ref()
                    .is_none_or(|re| re.is_match(&g.opts.receiver))
            })
            .filter_map(|g| {
                let alerts: Vec<GroupAlertView> = g
                    .alerts
                    .values()
                    .filter(|a| {
                        let suppressed = a.is_suppressed();
                        filter.matchers.matches(&a.notice.routing_labels())
                            && (!suppressed && filter.active
                                || a.notice.silenced && filter.silenced
                                || a.notice.inhibited && filter.inhibited)
                    })
                    .map(|a| GroupAlertView {
                        id: a.notice.id,
                        fingerprint: a.notice.fingerprint.clone(),
                        labels: a.notice.labels.clone(),
                        annotations: a.notice.annotations.clone(),
                        severity: a.notice.severity.clone(),
                        starts_at: a.notice.starts_at,
                        ends_at: a.notice.ends_at,
                        updated_at: ms(a.updated_ms),
                        generator_url: a.notice.generator_url.clone(),
                        receivers: vec![ReceiverRef {
                            name: g.opts.receiver.clone(),
                        }],
                        status: AlertStatusView {
                            state: if !a.is_firing(now_ms) {
                                "resolved"
                            } else if a.is_suppressed() {
                                "suppressed"
                            } else {
                                "active"
                            },
                            silenced: a.notice.silenced,
                            inhibited: a.notice.inhibited,
                            acknowledged: a.notice.acknowledged,
                        },
                    })
                    .collect();
                if alerts.is_empty() {
                    return None;
                }
                Some(GroupView {
                    labels: g.labels.clone(),
                    receiver: ReceiverRef {
                        name: g.opts.receiver.clone(),
                    },
                    alerts,
                    group_key: g.key.clone(),
                    route: g.route_id.clone(),
                    state: if g.has_flushed { "active" } else { "pending" },
                    created_at: ms(g.created_ms),
                    next_flush_at: ms(self.clock.ms_at(g.next_flush)),
                    last_notified_at: g.log.as_ref().map(|l| ms(l.at_ms)),
                    notifications: g.log.as_ref().map_or(0, |l| l.seq),
                    timers: TimersView {
                        group_wait: humantime::format_duration(g.opts.group_wait).to_string(),
                        group_interval: humantime::format_duration(g.opts.group_interval)
                            .to_string(),
                        repeat_interval: humantime::format_duration(g.opts.repeat_interval)
                            .to_string(),
                    },
                })
            })
            .collect();
        out.sort_by(|a, b| a.group_key.cmp(&b.group_key));
        out
    }

    /// Number of groups (for `/status`).
    pub fn group_count(&self) -> usize {
        self.state.lock().map(|s| s.groups.len()).unwrap_or(0)
    }
}

/// Config problems of the routing tree, for [`Config::validate`].
pub fn validate(config: &Config) -> Vec<String> {
    match route::build(config) {
        Ok(_) => Vec::new(),
        Err(problems) => problems,
    }
}

#[cfg(test)]
mod tests;
