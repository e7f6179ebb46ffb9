//! PostgreSQL: heartbeats and leader election on one dedicated `tokio-postgres`
//! connection per node.
//!
//! Every `heartbeat_interval` a round refreshes this node's row (the database's clock),
//! then either confirms the term (leader) or tries `pg_try_advisory_lock` (follower).
//! The winner increments the epoch in `cluster_leader`. The lock is a *session* lock:
//! it goes when the connection goes, and the connection's end is noticed at once (the
//! driver's connection task returns), so losing it is losing leadership immediately. A
//! holder that is paused keeps its session open; a follower that sees the leader's
//! heartbeat older than `node_timeout` terminates that session
//! (`pg_terminate_backend`) and takes over. The paused node's lease lapsed before that,
//! and the epoch fences whatever it still tries.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_postgres::{AsyncMessage, Client, NoTls};
use tokio_util::sync::CancellationToken;

use super::{Cluster, LEADER_LOCK_KEY};

/// The database's clock, in unix ms.
const DB_NOW: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// One node's membership loop.
pub struct Node {
    cluster: Cluster,
    url: String,
}

impl Node {
    /// A node of `cluster` on the database at `url`.
    pub fn new(cluster: Cluster, url: &str) -> Node {
        Node {
            cluster,
            url: url.to_string(),
        }
    }

    /// Runs the first round now (bounded by `node_timeout`), then the loop in the
    /// background until `shutdown`.
    pub async fn start(self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let node = Arc::new(self);
        let first = node.connect().await;
        let session = match first {
            Ok(s) => {
                let timeout = node.cluster.0.timeout;
                match tokio::time::timeout(timeout, node.round(&s)).await {
                    Ok(Ok(())) => Some(s),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cluster: first heartbeat failed; retrying");
                        None
                    }
                    Err(_) => {
                        tracing::warn!("cluster: first heartbeat timed out; retrying");
                        None
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cluster: cannot connect for heartbeats yet; retrying");
                None
            }
        };
        tokio::spawn(node.run(session, shutdown))
    }

    async fn run(self: Arc<Self>, mut session: Option<Session>, shutdown: CancellationToken) {
        let (every, timeout) = self.cluster.timers();
        loop {
            let s = match session.take() {
                Some(s) => s,
                None => match self.connect().await {
                    Ok(s) => s,
                    Err(e) => {
                        self.cluster.step_down("cannot reach the database");
                        tracing::warn!(error = %e, retry_in = ?every, "cluster: cannot connect for heartbeats");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(every) => continue,
                        }
                    }
                },
            };
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        self.leave(&s).await;
                        return;
                    }
                    _ = s.lost.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
                match tokio::time::timeout(timeout, self.round(&s)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cluster: heartbeat failed; reconnecting");
                        break;
                    }
                    Err(_) => {
                        tracing::warn!(?timeout, "cluster: heartbeat timed out; reconnecting");
                        break;
                    }
                }
            }
            // Dropping the client closes the session: the lock (if any) goes with it.
            self.cluster.step_down("lost the cluster connection");
            s.lost.cancel();
        }
    }

    /// Opens the dedicated session; its end steps this node down at once.
    async fn connect(&self) -> anyhow::Result<Session> {
        let (_, timeout) = self.cluster.timers();
        let plan = crate::store::pg_tls::plan(&self.url)?;
        let lost = CancellationToken::new();
        let client = match plan.tls {
            None => {
                let (client, connection) = self.open(&plan.url, NoTls, timeout).await?;
                tokio::spawn(drive(connection, self.cluster.clone(), lost.clone()));
                client
            }
            Some(tls) => {
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
                let (client, connection) = self.open(&plan.url, tls, timeout).await?;
                tokio::spawn(drive(connection, self.cluster.clone(), lost.clone()));
                client
            }
        };
        client
            .batch_execute("LISTEN watchpost_alert_changes")
            .await?;
        // Changes committed while this node was not listening: look once.
        self.cluster.feed_notified(None);
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .get(0);
        Ok(Session {
            client,
            pid,
            lost,
            holds_lock: AtomicBool::new(false),
        })
    }

    /// Connects to `url` with `tls`, within `timeout`.
    async fn open<T>(
        &self,
        url: &str,
        tls: T,
        timeout: Duration,
    ) -> anyhow::Result<(
        Client,
        tokio_postgres::Connection<tokio_postgres::Socket, T::Stream>,
    )>
    where
        T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    {
        let shown = crate::redact::dsn(&self.url);
        tokio::time::timeout(timeout, tokio_postgres::connect(url, tls))
            .await
            .map_err(|_| anyhow::anyhow!("connecting to {shown} timed out"))?
            .map_err(|e| anyhow::anyhow!("connecting to {shown}: {e}"))
    }

    /// Heartbeat, then confirm the term (leader) or try to take it (follower).
    async fn round(&self, s: &Session) -> anyhow::Result<()> {
        let started = Instant::now();
        let (every, timeout) = self.cluster.timers();
        let node = self.cluster.node();
        s.client
            .execute(
                &format!(
                    "INSERT INTO cluster_nodes (id, address, version, started_ms, heartbeat_ms, backend_pid) \
                     VALUES ($1, $2, $3, $4, {DB_NOW}, $5) ON CONFLICT (id) DO UPDATE SET \
                     address = excluded.address, version = excluded.version, \
                     started_ms = excluded.started_ms, heartbeat_ms = excluded.heartbeat_ms, \
                     backend_pid = excluded.backend_pid"
                ),
                &[
                    &node.id,
                    &node.address,
                    &node.version,
                    &node.started_ms,
                    &i64::from(s.pid),
                ],
            )
            .await?;
        // Leading until just before any follower may take over.
        let lease = started + timeout.saturating_sub(every);
        if s.holds_lock.load(Ordering::SeqCst) {
            let row = s
                .client
                .query_one(
                    "SELECT epoch, node_id FROM cluster_leader WHERE id = 1",
                    &[],
                )
                .await?;
            let (epoch, leader): (i64, Option<String>) = (row.get(0), row.get(1));
            if leader.as_deref() == Some(node.id.as_str()) && self.cluster.term().epoch == epoch {
                self.cluster.lead(epoch, lease, None);
            } else {
                // Someone else took the term (this session was fenced out): let go.
                s.holds_lock.store(false, Ordering::SeqCst);
                s.client
                    .execute("SELECT pg_advisory_unlock($1)", &[&LEADER_LOCK_KEY])
                    .await?;
                self.cluster.follow(epoch, leader);
            }
        } else {
            self.elect(s, lease, timeout).await?;
        }
        self.count_nodes(s, timeout).await?;
        Ok(())
    }

    /// Tries to lead; else follows, terminating the session of a leader that stopped
    /// heartbeating but still holds the lock (paused, partitioned).
    async fn elect(&self, s: &Session, lease: Instant, timeout: Duration) -> anyhow::Result<()> {
        let got: bool = s
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK_KEY])
            .await?
            .get(0);
        if got {
            s.holds_lock.store(true, Ordering::SeqCst);
            let row = s
                .client
                .query_one(
                    &format!(
                        "UPDATE cluster_leader l SET epoch = l.epoch + 1, node_id = $1, since_ms = {DB_NOW} \
                         FROM (SELECT node_id AS prev FROM cluster_leader WHERE id = 1) p \
                         WHERE l.id = 1 RETURNING l.epoch, p.prev"
                    ),
                    &[&self.cluster.node().id],
                )
                .await?;
            self.cluster.lead(row.get(0), lease, row.get(1));
            return Ok(());
        }
        // The lock's holder, and the node whose session it is (the freshest row with
        // that backend pid, should a dead node's row carry a reused pid).
        let row = s
            .client
            .query_one(
                &format!(
                    "SELECT l.epoch, l.node_id, h.pid, n.id, n.heartbeat_ms, {DB_NOW} AS now \
                     FROM cluster_leader l \
                     LEFT JOIN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
                       AND classid = 0 AND objid = $1 AND objsubid = 1 \
                       AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                       LIMIT 1) h ON true \
                     LEFT JOIN LATERAL (SELECT id, heartbeat_ms FROM cluster_nodes \
                       WHERE backend_pid = h.pid ORDER BY heartbeat_ms DESC LIMIT 1) n ON true \
                     WHERE l.id = 1"
                ),
                &[&(LEADER_LOCK_KEY as u32)],
            )
            .await?;
        let epoch: i64 = row.get(0);
        let leader: Option<String> = row.get(1);
        let holder: Option<i32> = row.get(2);
        let holder_node: Option<String> = row.get(3);
        let heartbeat: Option<i64> = row.get(4);
        let now: i64 = row.get(5);
        self.cluster.follow(epoch, leader.clone());
        // A holder that stopped heartbeating (paused, cut off) — the leader, or a node
        // that got the lock and stalled before taking the term — is let go of; so is
        // a session no live node calls its own (a node reconnected while its old
        // session lingers: every node records its session before it tries the lock).
        let stale = heartbeat.is_some_and(|h| now - h > timeout.as_millis() as i64);
        if let Some(pid) = holder
            && (stale || holder_node.is_none())
        {
            tracing::warn!(holder = ?holder_node, leader = ?leader, pid, "cluster: the lock holder stopped heartbeating or is no node's session; terminating it");
            s.client
                .execute("SELECT pg_terminate_backend($1)", &[&pid])
                .await?;
        }
        Ok(())
    }

    async fn count_nodes(&self, s: &Session, timeout: Duration) -> anyhow::Result<()> {
        let rows = s
            .client
            .query(
                &format!("SELECT id, {DB_NOW} - heartbeat_ms <= $1 FROM cluster_nodes"),
                &[&(timeout.as_millis() as i64)],
            )
            .await?;
        let members: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        self.cluster.set_members(&members);
        Ok(())
    }

    /// At shutdown: let go of the lock and leave the member list.
    async fn leave(&self, s: &Session) {
        self.cluster.step_down("shutting down");
        let id = &self.cluster.node().id;
        let left = tokio::time::timeout(Duration::from_secs(2), async {
            if s.holds_lock.load(Ordering::SeqCst) {
                s.client
                    .execute("SELECT pg_advisory_unlock($1)", &[&LEADER_LOCK_KEY])
                    .await?;
            }
            s.client
                .execute("DELETE FROM cluster_nodes WHERE id = $1", &[id])
                .await
        })
        .await;
        match left {
            Ok(Ok(_)) => tracing::info!(node = %id, "left the cluster"),
            Ok(Err(e)) => tracing::warn!(error = %e, "cluster: cannot leave cleanly"),
            Err(_) => tracing::warn!("cluster: leaving timed out"),
        }
        s.lost.cancel();
    }
}

/// Drives the connection: passes feed notifications on, and steps this node down the
/// moment the connection ends.
async fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    cluster: Cluster,
    lost: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let message = tokio::select! {
            m = std::future::poll_fn(|cx| connection.poll_message(cx)) => m,
            _ = lost.cancelled() => return,
        };
        match message {
            Some(Ok(AsyncMessage::Notification(n))) => cluster.feed_notified(Some(n.payload())),
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::warn!(error = %e, "cluster: connection lost");
                break;
            }
            None => break,
        }
    }
    cluster.step_down("the cluster connection closed");
    lost.cancel();
}

/// The dedicated connection.
struct Session {
    client: Client,
    /// This session's backend pid (stored, so a successor can terminate it).
    pid: i32,
    /// Cancelled when the connection ends (or is given up).
    lost: CancellationToken,
    /// Whether this session holds the leader lock.
    holds_lock: AtomicBool,
}
