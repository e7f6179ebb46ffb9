//! Cluster membership and leadership.
//!
//! With PostgreSQL every `watchpost serve` is a node: a `cluster_nodes` row refreshed
//! every `cluster.heartbeat_interval`, and one leader, the holder of a session advisory
//! lock on a dedicated connection ([`postgres`]). Each takeover increments a fencing
//! **epoch** in `cluster_leader`; outbox claims carry it and fail once it moved on.
//! Leadership is also a **lease** on this node's monotonic clock: it lapses
//! `node_timeout − heartbeat_interval` after the last confirmed heartbeat, before any
//! other node may take over, so a leader that was paused (SIGSTOP, a stall, a partition)
//! stops acting before its successor starts.
//!
//! With SQLite there is one node, always leader; a second process on the same file is
//! refused ([`single`]).
//!
//! Leader-only work (dispatch, sending, the bot's long poll, reports, retention) runs
//! through [`each_term`] or checks [`Cluster::is_leader`].

pub mod postgres;
pub mod single;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use sqlx::Row;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::ClusterMetrics;
use crate::store::{Backend, Db, StoreError, now_ms};

/// The advisory lock whose holder leads (`pg_try_advisory_lock`, one `bigint` key).
pub const LEADER_LOCK_KEY: i64 = 0x5741_5443; // "WATC"

/// Checks the `[cluster]` section; every problem names its key.
pub fn validate(config: &Config) -> Vec<String> {
    let c = &config.cluster;
    let mut problems = Vec::new();
    if c.node_id
        .as_deref()
        .is_some_and(|id| id.trim().is_empty() || id.contains(['#', '%', '_', '\\']))
    {
        problems.push("cluster.node_id: must not be empty or contain '#', '%', '_' or '\\'".into());
    }
    if c.heartbeat_interval.is_zero() {
        problems.push("cluster.heartbeat_interval: must be greater than 0".into());
    }
    if c.node_timeout < c.heartbeat_interval * 3 {
        problems.push(format!(
            "cluster.node_timeout: must be at least three times cluster.heartbeat_interval ({:?})",
            c.heartbeat_interval
        ));
    }
    if let Some(url) = &c.advertise_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        problems.push(format!(
            "cluster.advertise_url: {url:?} must start with http:// or https://"
        ));
    }
    problems
}

/// Why this node could not join.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Another process owns the SQLite file.
    #[error("{0}")]
    Locked(String),
    /// The lock file could not be opened.
    #[error("cannot open {path}: {source}")]
    LockFile {
        /// The lock file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The database refused the membership rows.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What this node knows of the current leadership term.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Term {
    /// The fencing epoch (0 before any leader).
    pub epoch: i64,
    /// The leader's node id, when known.
    pub leader: Option<String>,
    /// Whether this node leads (its lease may still have lapsed: see
    /// [`Cluster::is_leader`]).
    pub leading: bool,
    /// When this node leads: the node it took over from, if another one (its last
    /// requests to outside services may still be open).
    pub previous: Option<String>,
}

/// This node's identity, fixed at start.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// `cluster.node_id`.
    pub id: String,
    /// `cluster.advertise_url` (or `external_url`).
    pub address: String,
    /// This build's version.
    pub version: String,
    /// When this process started (unix ms).
    pub started_ms: i64,
}

impl NodeInfo {
    /// This node as configured (after the bound address filled in the defaults).
    pub fn from_config(config: &Config) -> NodeInfo {
        NodeInfo {
            id: config
                .cluster
                .node_id
                .clone()
                .unwrap_or_else(|| "local".into()),
            address: config
                .cluster
                .advertise_url
                .clone()
                .unwrap_or_else(|| config.external_url().to_string()),
            version: env!("CARGO_PKG_VERSION").into(),
            started_ms: now_ms(),
        }
    }
}

struct Inner {
    node: NodeInfo,
    db: Db,
    heartbeat: Duration,
    timeout: Duration,
    term: watch::Sender<Term>,
    /// Until when this node may act as leader (monotonic); `None` when it does not lead.
    lease: Mutex<Option<Instant>>,
    metrics: ClusterMetrics,
    /// The SQLite lock file, held for the life of the process.
    file_lock: Mutex<Option<std::fs::File>>,
    /// Ends the membership loop ([`Cluster::leave`]).
    stop: CancellationToken,
    /// The membership loop.
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Woken by `NOTIFY watchpost_alert_changes` (the change feed has news).
    alert_changes: Arc<tokio::sync::Notify>,
    /// The members last published in `watchpost_cluster_node_alive`.
    members: Mutex<BTreeSet<String>>,
    /// Other nodes' commits to the change feed, as their `NOTIFY`s arrive.
    news: FeedNews,
}

/// Counts other nodes' commits to the alert change feed (their `NOTIFY`s, and every
/// reconnection of the listening connection, which may have missed some), so a writer
/// reads the feed before a batch only when there is news. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct FeedNews(Arc<std::sync::atomic::AtomicU64>);

impl FeedNews {
    /// Grows with every piece of news.
    pub fn count(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }

    fn arrived(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// A handle on this node's membership; cheap to clone.
#[derive(Clone)]
pub struct Cluster(Arc<Inner>);

impl Cluster {
    /// Joins the cluster of `db`: with SQLite (whose file `file_lock` already holds,
    /// see [`single::lock_file`]) leads at once with a new epoch; with PostgreSQL,
    /// starts heartbeats and the election on a dedicated connection, after one first
    /// round so that a lone node leads as soon as it serves. Runs until
    /// [`Cluster::leave`].
    pub async fn join(
        config: &Config,
        db: Db,
        metrics: ClusterMetrics,
        file_lock: Option<std::fs::File>,
    ) -> Result<Cluster, ClusterError> {
        let cluster = Cluster(Arc::new(Inner {
            node: NodeInfo::from_config(config),
            db: db.clone(),
            heartbeat: config.cluster.heartbeat_interval,
            timeout: config.cluster.node_timeout,
            term: watch::Sender::new(Term::default()),
            lease: Mutex::new(None),
            metrics,
            file_lock: Mutex::new(file_lock),
            stop: CancellationToken::new(),
            task: Mutex::new(None),
            alert_changes: Arc::new(tokio::sync::Notify::new()),
            members: Mutex::new(BTreeSet::new()),
            news: FeedNews::default(),
        }));
        let stop = cluster.0.stop.clone();
        let task = match db.backend() {
            Backend::Sqlite => {
                single::lead(&cluster).await?;
                tokio::spawn(single::heartbeats(cluster.clone(), stop))
            }
            Backend::Postgres => {
                let node = postgres::Node::new(cluster.clone(), config.database_url.expose());
                node.start(stop).await
            }
        };
        *lock_mutex(&cluster.0.task) = Some(task);
        Ok(cluster)
    }

    /// Leaves the cluster at the end of shutdown, once sends in flight are recorded:
    /// stops leading, lets go of the lock, leaves the member list, unlocks the SQLite
    /// file.
    pub async fn leave(&self) {
        self.0.stop.cancel();
        let task = lock_mutex(&self.0.task).take();
        if let Some(task) = task
            && tokio::time::timeout(Duration::from_secs(3), task)
                .await
                .is_err()
        {
            tracing::warn!("cluster: leaving took too long");
        }
        self.step_down("shutting down");
        lock_mutex(&self.0.file_lock).take();
    }

    /// Woken when the alert change feed may have news (PostgreSQL `LISTEN` on this
    /// node's cluster connection; also after a reconnect).
    pub fn alert_changes(&self) -> Arc<tokio::sync::Notify> {
        self.0.alert_changes.clone()
    }

    /// Other nodes' commits to the change feed ([`FeedNews`]).
    pub fn feed_news(&self) -> FeedNews {
        self.0.news.clone()
    }

    /// A `NOTIFY watchpost_alert_changes` from `node` (`None`: possibly missed ones).
    fn feed_notified(&self, node: Option<&str>) {
        if node != Some(self.0.node.id.as_str()) {
            self.0.news.arrived();
        }
        self.0.alert_changes.notify_one();
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.0.node.id
    }

    /// This node's identity.
    pub fn node(&self) -> &NodeInfo {
        &self.0.node
    }

    /// Whether this node leads now: it won the term and its lease has not lapsed.
    pub fn is_leader(&self) -> bool {
        self.fence().is_some()
    }

    /// The epoch to act under while this node leads; `None` when it does not (or its
    /// lease lapsed: then it must not send or write as leader).
    pub fn fence(&self) -> Option<i64> {
        let term = self.0.term.borrow();
        let lease = *lock_mutex(&self.0.lease);
        (term.leading && lease.is_some_and(|until| Instant::now() < until)).then_some(term.epoch)
    }

    /// When this node's lease lapses unless renewed (`None`: not leading).
    fn lease_until(&self) -> Option<Instant> {
        *lock_mutex(&self.0.lease)
    }

    /// The current term as this node knows it.
    pub fn term(&self) -> Term {
        self.0.term.borrow().clone()
    }

    /// Follows term changes.
    pub fn subscribe(&self) -> watch::Receiver<Term> {
        self.0.term.subscribe()
    }

    /// The membership timers.
    pub fn timers(&self) -> (Duration, Duration) {
        (self.0.heartbeat, self.0.timeout)
    }

    /// Records a term won (or confirmed) by this node, leading until `lease`;
    /// `previous` is the leader of the term before (on a win).
    fn lead(&self, epoch: i64, lease: Instant, previous: Option<String>) {
        *lock_mutex(&self.0.lease) = Some(lease);
        let node = self.0.node.id.clone();
        let changed = self.0.term.send_if_modified(|t| {
            let previous = if t.epoch == epoch && t.leading {
                t.previous.clone()
            } else {
                previous.clone().filter(|p| *p != node)
            };
            let new = Term {
                epoch,
                leader: Some(node.clone()),
                leading: true,
                previous,
            };
            let changed = *t != new;
            *t = new;
            changed
        });
        if changed {
            self.0.metrics.leader_changes.inc();
            self.0.metrics.leader.set(1);
            self.0.metrics.epoch.set(epoch);
            tracing::info!(node = %node, epoch, "this node leads the cluster");
        }
    }

    /// Records what a follower sees: `leader` holds `epoch`.
    fn follow(&self, epoch: i64, leader: Option<String>) {
        self.step_down("another node leads");
        let seen = self.0.term.borrow().epoch;
        self.0.term.send_if_modified(|t| {
            let new = Term {
                epoch,
                leader: leader.clone(),
                leading: false,
                previous: None,
            };
            let changed = *t != new;
            *t = new;
            changed
        });
        if epoch > seen && seen > 0 {
            self.0.metrics.leader_changes.inc();
        }
        self.0.metrics.epoch.set(epoch);
    }

    /// Stops leading at once (lost connection, lapsed lease, shutdown).
    fn step_down(&self, why: &str) {
        *lock_mutex(&self.0.lease) = None;
        let was = self.0.term.send_if_modified(|t| {
            let was = t.leading;
            t.leading = false;
            was
        });
        if was {
            self.0.metrics.leader.set(0);
            tracing::warn!(node = %self.0.node.id, reason = why, "this node no longer leads");
        }
    }

    /// Publishes the members `(id, alive)`: `watchpost_cluster_nodes{state}` and
    /// `watchpost_cluster_node_alive{node}` (members gone from the list are dropped).
    fn set_members(&self, members: &[(String, bool)]) {
        let m = &self.0.metrics;
        let alive = members.iter().filter(|(_, a)| *a).count() as i64;
        m.nodes.with_label_values(&["alive"]).set(alive);
        m.nodes
            .with_label_values(&["dead"])
            .set(members.len() as i64 - alive);
        let mut known = lock_mutex(&self.0.members);
        for (id, up) in members {
            m.node_alive
                .with_label_values(&[id.as_str()])
                .set(i64::from(*up));
        }
        let now: BTreeSet<String> = members.iter().map(|(id, _)| id.clone()).collect();
        for gone in known.difference(&now) {
            let _ = m.node_alive.remove_label_values(&[gone.as_str()]);
        }
        *known = now;
    }

    /// Members and leadership as stored, for `GET /api/v1/cluster`.
    pub async fn status(&self) -> Result<ClusterStatus, StoreError> {
        let db = &self.0.db;
        let now_sql = match db.backend() {
            Backend::Postgres => "(extract(epoch from clock_timestamp()) * 1000)::bigint",
            Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS BIGINT)",
        };
        let sql = format!(
            "SELECT n.id, n.address, n.version, n.started_ms, n.heartbeat_ms, \
             l.epoch, l.node_id AS leader, {now_sql} AS now_ms \
             FROM cluster_leader l LEFT JOIN cluster_nodes n ON 1 = 1 \
             WHERE l.id = 1 ORDER BY n.id"
        );
        let timeout_ms = self.0.timeout.as_millis() as i64;
        db.timed("cluster.status", async {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(db.pool())
                .await?;
            let mut epoch = 0;
            let mut leader_id: Option<String> = None;
            let mut nodes = Vec::new();
            for r in &rows {
                epoch = r.try_get("epoch")?;
                leader_id = r.try_get("leader")?;
                let Some(id) = r.try_get::<Option<String>, _>("id")? else {
                    continue;
                };
                let now: i64 = r.try_get("now_ms")?;
                let mut heartbeat: i64 = r.try_get("heartbeat_ms")?;
                // SQLite: this process holds the file, so its row is alive as of now
                // (it is written at start only, see `single::heartbeats`).
                if db.backend() == Backend::Sqlite && id == self.0.node.id {
                    heartbeat = now;
                }
                nodes.push(NodeStatus {
                    leader: leader_id.as_deref() == Some(id.as_str()),
                    alive: now - heartbeat <= timeout_ms,
                    id,
                    address: r.try_get("address")?,
                    version: r.try_get("version")?,
                    started_at: ms_to_utc(r.try_get("started_ms")?),
                    last_heartbeat: ms_to_utc(heartbeat),
                });
            }
            // A leader whose heartbeat stopped leads no longer.
            let leader =
                leader_id.filter(|l| nodes.iter().any(|n| n.leader && n.alive && n.id == *l));
            Ok::<_, StoreError>(ClusterStatus {
                self_id: self.0.node.id.clone(),
                leader,
                epoch,
                nodes,
            })
        })
        .await
    }
}

/// `GET /api/v1/cluster`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterStatus {
    /// This node's id.
    #[serde(rename = "self")]
    pub self_id: String,
    /// The leader's id; `null` while no live node leads.
    pub leader: Option<String>,
    /// The current fencing epoch.
    pub epoch: i64,
    /// Every node that ever joined (dead ones until they come back or are removed).
    pub nodes: Vec<NodeStatus>,
}

/// One member.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeStatus {
    /// `cluster.node_id`.
    pub id: String,
    /// `cluster.advertise_url`.
    pub address: String,
    /// Its version.
    pub version: String,
    /// Whether it leads the current term.
    pub leader: bool,
    /// Heartbeat within `cluster.node_timeout`.
    pub alive: bool,
    /// When the process started.
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub last_heartbeat: DateTime<Utc>,
}

fn ms_to_utc(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn lock_mutex<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `make(term)` for every leadership term of this node, until `shutdown`: `term`
/// is cancelled when the term ends (another node took over, the lease lapsed, the
/// connection was lost) or at shutdown. An error ends the loop (for the supervisor to
/// restart it).
pub async fn each_term<F, Fut>(
    cluster: Cluster,
    shutdown: CancellationToken,
    make: F,
) -> anyhow::Result<()>
where
    F: Fn(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut rx = cluster.subscribe();
    let tick = cluster.0.heartbeat.min(Duration::from_millis(250));
    loop {
        // Leading with a live lease (a lapsed one is renewed without any news on the
        // channel, hence the tick).
        let epoch = loop {
            rx.borrow_and_update();
            if let Some(epoch) = cluster.fence() {
                break epoch;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                r = rx.changed() => if r.is_err() { return Ok(()) },
                _ = tokio::time::sleep(tick) => {}
            }
        };
        let term = shutdown.child_token();
        let watcher = tokio::spawn(end_of_term(cluster.clone(), epoch, term.clone()));
        let result = make(term.clone()).await;
        if result.is_ok() {
            // Finished early: nothing more to do in this term.
            term.cancelled().await;
        }
        term.cancel();
        watcher.abort();
        result?;
        if shutdown.is_cancelled() {
            return Ok(());
        }
    }
}

/// Cancels `term` once this node no longer leads under `epoch`: checked on every change
/// and when the lease would lapse, so a lapsed lease ends the term even with no news
/// (a renewed lease only moves the next look; a single node's never lapses).
async fn end_of_term(cluster: Cluster, epoch: i64, term: CancellationToken) {
    let mut rx = cluster.subscribe();
    loop {
        if cluster.fence() != Some(epoch) {
            term.cancel();
            return;
        }
        let lapse = cluster
            .lease_until()
            .map_or(LEASE_LOOK_MAX, |until| {
                until.saturating_duration_since(Instant::now())
            })
            .min(LEASE_LOOK_MAX);
        tokio::select! {
            _ = term.cancelled() => return,
            r = rx.changed() => if r.is_err() { term.cancel(); return },
            _ = tokio::time::sleep(lapse) => {}
        }
    }
}

/// Longest wait between two looks at a lease (a far-off lapse is slept in steps).
const LEASE_LOOK_MAX: Duration = Duration::from_secs(3600);

/// Whether this node may do leader-only work now: a cheap closure for loops that
/// check it themselves (rules, retention). `single_node()` always leads.
#[derive(Clone)]
pub struct LeaderGate(Arc<dyn Fn() -> bool + Send + Sync>);

impl LeaderGate {
    /// A gate asking `f`.
    pub fn new(f: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        LeaderGate(Arc::new(f))
    }

    /// Always leader (one node).
    pub fn single_node() -> Self {
        LeaderGate::new(|| true)
    }

    /// This node's leadership.
    pub fn of(cluster: &Cluster) -> Self {
        let c = cluster.clone();
        LeaderGate::new(move || c.is_leader())
    }

    /// Whether this node leads now.
    pub fn is_leader(&self) -> bool {
        (self.0)()
    }
}

/// What the alert writer needs of this node's membership.
#[derive(Clone, Default)]
pub struct NodeRole {
    /// Whether this node leads now.
    pub leader: LeaderGate,
    /// This node's id.
    pub node: String,
    /// Other nodes' commits to the change feed.
    pub news: FeedNews,
}

impl NodeRole {
    /// One node, always leading.
    pub fn single_node() -> Self {
        NodeRole {
            leader: LeaderGate::single_node(),
            ..Default::default()
        }
    }

    /// This node in `cluster`.
    pub fn of(cluster: &Cluster) -> Self {
        NodeRole {
            leader: LeaderGate::of(cluster),
            node: cluster.node().id.clone(),
            news: cluster.feed_news(),
        }
    }
}

impl Default for LeaderGate {
    fn default() -> Self {
        LeaderGate::single_node()
    }
}

impl std::fmt::Debug for LeaderGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeaderGate")
    }
}

/// The epoch a sender claims under: none (a lone sender, in tests and tools) or this
/// node's term.
#[derive(Clone, Default)]
pub enum Fence {
    /// Claims are not fenced.
    #[default]
    None,
    /// Claims carry this node's epoch; nothing is claimed or sent unless it leads.
    Cluster(Cluster),
}

/// This node does not lead (any more).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("this node does not lead the cluster")]
pub struct NotLeader;

impl Fence {
    /// The epoch to claim under (`None` when unfenced), or [`NotLeader`].
    pub fn epoch(&self) -> Result<Option<i64>, NotLeader> {
        match self {
            Fence::None => Ok(None),
            Fence::Cluster(c) => c.fence().map(Some).ok_or(NotLeader),
        }
    }
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fence::None => f.write_str("Fence::None"),
            Fence::Cluster(c) => write!(f, "Fence::Cluster({})", c.node_id()),
        }
    }
}
