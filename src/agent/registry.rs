//! The server side: which agents exist and which are connected here, admission of new
//! connections, and the checker that raises `AgentDown` for agents silent longer than
//! `agents.grace` (and resolves it when they come back).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge, Opts};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::protocol::{self, Hello};
use super::store::{self, AgentRow, Claim};
use crate::alerts::AlertService;
use crate::alerts::ingest::RawAlert;
use crate::alerts::model::Severity;
use crate::alerts::raise::{Raised, Raiser};
use crate::config::AgentsConfig;
use crate::metrics::Metrics;
use crate::remote_write::Limits;
use crate::store::{Db, StoreError, now_ms};
use crate::tsdb::{Labels, Tsdb};

/// Database claims at once; more wait up to [`ADMIT_WAIT`], then get a 503.
const ADMITTING: usize = 8;
/// How long an admission waits for its turn.
const ADMIT_WAIT: Duration = Duration::from_secs(5);
/// Batches decoded at once over all agents (each up to the agents' decode limit).
const DECODING: usize = 4;
/// How often remembered series are checked against the store.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Time for an agent's connection attempt after its backoff.
const CONNECT_ALLOWANCE: Duration = Duration::from_secs(5);

/// The `job` label of every agent series.
pub const JOB: &str = "agent";

/// Why a connection was refused before the upgrade.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Another process with the same name is connected (409).
    #[error(
        "agent name {name:?} is already connected from {address} (host {host:?}); give each agent its own --name"
    )]
    Duplicate {
        /// The name.
        name: String,
        /// Where the other one connects from.
        address: String,
        /// Its host.
        host: String,
    },
    /// `agents.max_connected` agents are connected here (503).
    #[error(
        "this server already holds {0} agent connections (agents.max_connected); try another node or later"
    )]
    Full(usize),
    /// Too many agents are being admitted at once (503).
    #[error("too many agents are connecting at once; retry in a few seconds")]
    Busy,
    /// The database failed (503).
    #[error("cannot register the agent: {0}")]
    Store(#[from] StoreError),
}

/// One connected agent on this node.
pub struct Connection {
    /// This connection's id (what the stored row names while it holds the agent).
    pub id: String,
    /// Its handshake.
    pub hello: Hello,
    /// Its address.
    pub address: String,
    /// When it connected (Unix ms).
    pub since_ms: i64,
    /// Samples received from it in all (stored count + this connection's).
    pub samples: AtomicI64,
    /// Last time anything came from it (Unix ms).
    pub last_seen_ms: AtomicI64,
    /// Cancelled to close it (replaced by a reconnect of the same process, shutdown).
    pub close: CancellationToken,
}

/// What the server remembers of an agent across its reconnects.
#[derive(Default)]
pub struct AgentState {
    /// The series it created, for `agents.max_series`.
    pub series: HashSet<Labels>,
    /// The process (session) whose batches were applied last, and the last one's
    /// sequence number: a batch resent after a lost ack is acked, not applied again.
    pub applied: Option<(String, u64)>,
}

type SharedState = Arc<Mutex<AgentState>>;

/// Agents known to this node. Cheap to clone.
#[derive(Clone)]
pub struct Agents {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    node: String,
    config: AgentsConfig,
    tsdb: Tsdb,
    limits: Limits,
    raiser: Raiser,
    /// When this node started, or woke from a pause (SIGSTOP, a frozen VM): agents
    /// silent since before it get time to reconnect first.
    awake_since_ms: AtomicI64,
    local: Mutex<HashMap<String, Arc<Connection>>>,
    /// Connections being admitted (counted against `agents.max_connected`).
    admitting: Arc<AtomicUsize>,
    /// Database claims at once.
    admissions: Arc<tokio::sync::Semaphore>,
    /// Batches decoded at once (over all agents).
    decoding: Arc<tokio::sync::Semaphore>,
    states: Mutex<HashMap<String, SharedState>>,
    connected: IntGauge,
    samples: IntCounterVec,
    refused: IntCounterVec,
}

/// What `GET /api/v1/agents` shows of one agent.
#[derive(Debug, Clone, Serialize)]
pub struct AgentView {
    /// Its name (`instance`).
    pub name: String,
    /// Its host name.
    pub host: String,
    /// Its version.
    pub version: String,
    /// Its address as seen by the server.
    pub address: String,
    /// Whether it is connected (to any node).
    pub connected: bool,
    /// When its connection began (RFC 3339), if connected.
    pub connected_since: Option<String>,
    /// Last time it was heard from (RFC 3339).
    pub last_seen: Option<String>,
    /// Samples received from it in all.
    pub samples_received: i64,
    /// Whether `AgentDown` is firing for it.
    pub down: bool,
    /// The node holding its connection.
    pub node: Option<String>,
}

impl Agents {
    /// The registry of node `node`, appending agents' samples to `tsdb`.
    pub fn new(
        db: Db,
        node: String,
        config: AgentsConfig,
        tsdb: Tsdb,
        limits: Limits,
        alerts: AlertService,
        metrics: &Metrics,
    ) -> Result<Self, prometheus::Error> {
        let connected = IntGauge::new(
            "watchpost_agents_connected",
            "Agents (watchpost agent) connected to this node.",
        )?;
        let samples = IntCounterVec::new(
            Opts::new(
                "watchpost_agents_received_samples_total",
                "Samples received from agents, by outcome (as remote write's).",
            ),
            &["outcome"],
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                "watchpost_agents_refused_total",
                "Agent connections refused or closed by the server, by reason.",
            ),
            &["reason"],
        )?;
        metrics.register_all(
            "agents",
            vec![
                Box::new(connected.clone()),
                Box::new(samples.clone()),
                Box::new(refused.clone()),
            ],
        );
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                node,
                config,
                tsdb,
                limits,
                raiser: Raiser::new(alerts, "agent"),
                awake_since_ms: AtomicI64::new(now_ms()),
                local: Mutex::new(HashMap::new()),
                admitting: Arc::new(AtomicUsize::new(0)),
                admissions: Arc::new(tokio::sync::Semaphore::new(ADMITTING)),
                decoding: Arc::new(tokio::sync::Semaphore::new(DECODING)),
                states: Mutex::new(HashMap::new()),
                connected,
                samples,
                refused,
            }),
        })
    }

    /// The configuration (`[agents]`).
    pub fn config(&self) -> &AgentsConfig {
        &self.inner.config
    }

    /// A turn to decode and apply one batch.
    pub async fn decode_turn(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.inner.decoding.clone().acquire_owned().await.ok()
    }

    /// The store agents append to, and its limits.
    pub fn tsdb(&self) -> (&Tsdb, &Limits) {
        (&self.inner.tsdb, &self.inner.limits)
    }

    /// Counts a refusal or a forced close.
    pub fn count_refused(&self, reason: &str) {
        self.inner.refused.with_label_values(&[reason]).inc();
    }

    /// Counts samples received, by outcome.
    pub fn count_samples(&self, outcome: &str, n: usize) {
        if n > 0 {
            self.inner
                .samples
                .with_label_values(&[outcome])
                .inc_by(n as u64);
        }
    }

    /// What is remembered of agent `name`.
    pub fn state_of(&self, name: &str) -> SharedState {
        let mut all = lock(&self.inner.states);
        all.entry(name.to_string()).or_default().clone()
    }

    /// How often connected agents' `last_seen` is stored: well within the grace.
    fn refresh_every(&self) -> Duration {
        (self.inner.config.grace / 3).clamp(Duration::from_millis(500), Duration::from_secs(5))
    }

    /// Admits a connection before the upgrade: not over `agents.max_connected`, at
    /// most [`ADMITTING`] database claims at once (others wait, then 503), and the
    /// name free or held by the same process. Nothing is live until
    /// [`Agents::activate`]: a handshake cut short leaves no connection behind.
    pub async fn admit(&self, hello: Hello, address: String) -> Result<Admission, Refusal> {
        // A slot is taken under the lock before the database is asked, so agents
        // connecting at once cannot all pass the check.
        let slot = {
            let local = lock(&self.inner.local);
            let replacing = local
                .get(&hello.name)
                .is_some_and(|c| c.hello.session == hello.session);
            let used = local.len() + self.inner.admitting.load(Ordering::Relaxed);
            if used >= self.inner.config.max_connected && !replacing {
                drop(local);
                self.count_refused("full");
                return Err(Refusal::Full(self.inner.config.max_connected));
            }
            Slot::take(self.inner.admitting.clone())
        };
        let Ok(Ok(_permit)) =
            tokio::time::timeout(ADMIT_WAIT, self.inner.admissions.clone().acquire_owned()).await
        else {
            self.count_refused("busy");
            return Err(Refusal::Busy);
        };
        let now = now_ms();
        let stale = now.saturating_sub(ms(self.refresh_every() * 3));
        let id = format!("{:032x}", rand::random::<u128>());
        let claim = store::claim(
            &self.inner.db,
            &hello,
            &address,
            (&self.inner.node, &id),
            now,
            stale,
        )
        .await?;
        let samples_received = match claim {
            Claim::Claimed { samples_received } => samples_received,
            Claim::Taken(row) => {
                self.count_refused("duplicate");
                return Err(Refusal::Duplicate {
                    name: row.name,
                    address: row.address,
                    host: row.host,
                });
            }
        };
        Ok(Admission {
            conn: Arc::new(Connection {
                id,
                hello,
                address,
                since_ms: now,
                samples: AtomicI64::new(samples_received),
                last_seen_ms: AtomicI64::new(now),
                close: CancellationToken::new(),
            }),
            _slot: slot,
        })
    }

    /// Makes an admitted connection live (after the upgrade): replaces an older
    /// connection of the same process, and resolves the agent's AgentDown (in the
    /// background: the agent's batches do not wait for the alert pipeline).
    pub fn activate(&self, admission: Admission) -> Arc<Connection> {
        let conn = admission.conn;
        {
            let mut local = lock(&self.inner.local);
            if let Some(old) = local.insert(conn.hello.name.clone(), conn.clone()) {
                old.close.cancel();
            }
            self.inner.connected.set(local.len() as i64);
        }
        tracing::info!(agent = %conn.hello.name, host = %conn.hello.host, address = %conn.address, "agent connected");
        let this = self.clone();
        let name = conn.hello.name.clone();
        tokio::spawn(async move { this.resolve_if_down(&name).await });
        conn
    }

    /// Clears the agent's `down` mark and resolves its AgentDown, if this call cleared it.
    async fn resolve_if_down(&self, name: &str) {
        match store::clear_down(&self.inner.db, name).await {
            Ok(true) => {
                let row = lock(&self.inner.local).get(name).map(|c| self.row_of(c));
                if let Some(row) = row {
                    let alert = agent_down(&row, false, now_ms(), self.inner.config.grace);
                    self.inner.raiser.raise(alert).await;
                }
            }
            Ok(false) => {}
            Err(e) => {
                // The next reconciliation (run loop) resolves it.
                tracing::warn!(agent = %name, error = %e, "cannot clear the agent's down mark yet");
            }
        }
    }

    /// Marks `conn` disconnected since it was last heard from (unless a newer
    /// connection of the agent replaced it: the stored row is then the new one's).
    pub async fn release(&self, conn: &Connection) {
        {
            let mut local = lock(&self.inner.local);
            if local
                .get(&conn.hello.name)
                .is_some_and(|c| std::ptr::eq(c.as_ref(), conn))
            {
                local.remove(&conn.hello.name);
            }
            self.inner.connected.set(local.len() as i64);
        }
        let seen = conn.last_seen_ms.load(Ordering::Relaxed);
        let samples = conn.samples.load(Ordering::Relaxed);
        if let Err(e) =
            store::release(&self.inner.db, &conn.hello.name, &conn.id, seen, samples).await
        {
            tracing::warn!(agent = %conn.hello.name, error = %e, "cannot store the agent's disconnection");
        }
        tracing::info!(agent = %conn.hello.name, address = %conn.address, "agent disconnected");
    }

    /// Forgets a disconnected agent (decommissioned host): its row goes, its AgentDown
    /// resolves. `Ok(false)`: no such agent; [`Refusal::Duplicate`]: it is connected.
    pub async fn forget(&self, name: &str) -> Result<bool, Refusal> {
        let stale = now_ms().saturating_sub(ms(self.refresh_every() * 3));
        if let Some(row) = store::delete_disconnected(&self.inner.db, name, stale).await? {
            lock(&self.inner.states).remove(name);
            if row.down {
                self.inner
                    .raiser
                    .raise(agent_down(&row, false, now_ms(), self.inner.config.grace))
                    .await;
            }
            tracing::info!(agent = %name, "agent forgotten");
            return Ok(true);
        }
        match store::get(&self.inner.db, name).await? {
            Some(row) => Err(Refusal::Duplicate {
                name: row.name,
                address: row.address,
                host: row.host,
            }),
            None => Ok(false),
        }
    }

    /// Every agent, stored state overlaid with this node's live counts.
    pub async fn list(&self) -> Result<Vec<AgentView>, StoreError> {
        let rows = store::list(&self.inner.db).await?;
        let now = now_ms();
        let stale = now.saturating_sub(ms(self.refresh_every() * 3));
        let local = lock(&self.inner.local);
        Ok(rows
            .into_iter()
            .map(|mut row| {
                if let Some(c) = local.get(&row.name) {
                    row.samples_received = c.samples.load(Ordering::Relaxed);
                    row.last_seen_ms = c.last_seen_ms.load(Ordering::Relaxed);
                }
                let connected = row.node.is_some() && row.last_seen_ms >= stale;
                AgentView {
                    connected,
                    connected_since: row
                        .connected_since_ms
                        .filter(|_| connected)
                        .map(crate::alerts::model::rfc3339),
                    last_seen: Some(crate::alerts::model::rfc3339(row.last_seen_ms)),
                    samples_received: row.samples_received,
                    down: row.down,
                    node: row.node.filter(|_| connected),
                    name: row.name,
                    host: row.host,
                    version: row.version,
                    address: row.address,
                }
            })
            .collect())
    }

    /// Stores connected agents' `last_seen` (its own task: a slow alert pipeline never
    /// delays it), raises `AgentDown` for silent ones, resolves it for the ones held
    /// here, and forgets the series of agents the store no longer has, until `token`.
    pub async fn run(self, token: CancellationToken) {
        let toucher = {
            let this = self.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(this.refresh_every());
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                while !token.is_cancelled() {
                    tokio::select! {
                        _ = token.cancelled() => break,
                        _ = every.tick() => this.touch_all().await,
                    }
                }
            })
        };
        let mut every = tokio::time::interval(self.refresh_every());
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last_prune = tokio::time::Instant::now();
        let mut last_tick = now_ms();
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                _ = every.tick() => {}
            }
            // A loop that did not run for several periods means this process was
            // paused: the agents were not silent, this node was.
            let now = now_ms();
            let gap = now.saturating_sub(last_tick);
            last_tick = now;
            if gap > ms(self.refresh_every() * 4) {
                tracing::warn!(
                    paused_ms = gap,
                    "agent checks were paused; agents get time to reconnect before AgentDown"
                );
                self.inner.awake_since_ms.store(now, Ordering::Relaxed);
            }
            self.inner.raiser.retry().await;
            if let Err(e) = self.check().await {
                tracing::warn!(error = %e, "agent check failed");
            }
            self.reconcile().await;
            if last_prune.elapsed() >= PRUNE_EVERY {
                last_prune = tokio::time::Instant::now();
                self.prune();
            }
        }
        self.close_all();
        let _ = toucher.await;
    }

    /// Closes every connection (shutdown).
    fn close_all(&self) {
        for c in lock(&self.inner.local).values() {
            c.close.cancel();
        }
    }

    /// Stores `last_seen` and the sample count of every agent held here; one failure
    /// does not stop the others.
    async fn touch_all(&self) {
        let conns: Vec<Arc<Connection>> = lock(&self.inner.local).values().cloned().collect();
        for c in conns {
            let seen = c.last_seen_ms.load(Ordering::Relaxed);
            let samples = c.samples.load(Ordering::Relaxed);
            if let Err(e) = store::touch(&self.inner.db, &c.hello.name, &c.id, seen, samples).await
            {
                tracing::warn!(agent = %c.hello.name, error = %e, "cannot store the agent's last_seen");
            }
        }
    }

    /// Resolves AgentDown of agents held here that are still marked down (a resolve
    /// that failed at connect, or another node's late firing).
    async fn reconcile(&self) {
        let names = match store::down_held_by(&self.inner.db, &self.inner.node).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "agent reconciliation failed");
                return;
            }
        };
        for name in names {
            if lock(&self.inner.local).contains_key(&name) {
                self.resolve_if_down(&name).await;
            }
        }
    }

    /// Drops remembered series the store no longer has (retention, churn), and the
    /// memory of agents with none left that are not connected here.
    fn prune(&self) {
        let states: Vec<(String, SharedState)> = lock(&self.inner.states)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, state) in states {
            let empty = {
                let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                st.series.retain(|l| self.inner.tsdb.get(l).is_some());
                st.series.is_empty()
            };
            if empty && !lock(&self.inner.local).contains_key(&name) {
                lock(&self.inner.states).remove(&name);
            }
        }
    }

    /// Raises `AgentDown` for agents silent for longer than the grace. An agent last
    /// heard from before this node started (or woke from a pause) is given the time to
    /// reconnect first (its longest backoff and a connection attempt, then the grace):
    /// the server was away, not the agent.
    async fn check(&self) -> Result<(), StoreError> {
        let now = now_ms();
        let grace = ms(self.inner.config.grace);
        let settle = ms(protocol::MAX_BACKOFF + CONNECT_ALLOWANCE) + grace;
        let awake_since = self.inner.awake_since_ms.load(Ordering::Relaxed);
        let settled = now.saturating_sub(awake_since) >= settle;
        let cutoff = now - grace;
        for row in store::silent_since(&self.inner.db, cutoff).await? {
            if lock(&self.inner.local).contains_key(&row.name) {
                continue; // connected here; its stored last_seen lags
            }
            if row.last_seen_ms < awake_since && !settled {
                continue;
            }
            if store::mark_down(&self.inner.db, &row.name, cutoff).await? {
                tracing::warn!(agent = %row.name, "agent down: disconnected longer than agents.grace");
                self.inner
                    .raiser
                    .raise(agent_down(&row, true, now, self.inner.config.grace))
                    .await;
            }
        }
        Ok(())
    }

    fn row_of(&self, c: &Connection) -> AgentRow {
        AgentRow {
            name: c.hello.name.clone(),
            host: c.hello.host.clone(),
            version: c.hello.version.clone(),
            address: c.address.clone(),
            node: Some(self.inner.node.clone()),
            session: Some(c.hello.session.clone()),
            connection: Some(c.id.clone()),
            connected_since_ms: Some(c.since_ms),
            last_seen_ms: c.since_ms,
            samples_received: 0,
            down: false,
        }
    }
}

/// One admission in progress, counted against `agents.max_connected` until the
/// connection is live or refused.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(counter: Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Slot(counter)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An admitted connection, not live yet (see [`Agents::activate`]).
pub struct Admission {
    conn: Arc<Connection>,
    _slot: Slot,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `AgentDown{instance, job="agent"}`, firing or resolved at `at_ms`.
fn agent_down(row: &AgentRow, firing: bool, at_ms: i64, grace: Duration) -> RawAlert {
    let labels: BTreeMap<String, String> = [
        ("alertname", "AgentDown"),
        ("instance", row.name.as_str()),
        ("job", JOB),
        ("severity", "critical"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let last = crate::alerts::model::rfc3339(row.last_seen_ms);
    let summary = format!("Agent {} is down", row.name);
    let description = format!(
        "watchpost agent {} (host {}, {}) has been disconnected since {last}, longer than agents.grace ({}): the host's metrics are not coming in, and its own rules cannot fire.",
        row.name,
        row.host,
        row.address,
        humantime::format_duration(grace)
    );
    Raised {
        labels,
        severity: Some(Severity::Critical),
        type_fallback: "system",
        summary,
        description,
    }
    .at(firing, at_ms)
}
