//! SQLite: one node, always leader. The database file is locked (`flock` on
//! `<file>.lock`) for the life of the process, so a second process on the same file is
//! refused at start instead of corrupting dispatch state.

use std::io::{Read, Seek, Write};
use std::time::Duration;

use sqlx::Row;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Cluster, ClusterError};
use crate::store::{StoreError, now_ms, sqlite_file};

/// A lease long enough never to lapse: the process owns the file.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 86400);

/// Locks `<file>.lock` beside the SQLite file of `url` (nothing for in-memory SQLite);
/// refused when another process holds it, naming that process.
pub fn lock_file(url: &str) -> Result<Option<std::fs::File>, ClusterError> {
    let Some(db) = sqlite_file(url) else {
        return Ok(None);
    };
    let mut path = db.clone().into_os_string();
    path.push(".lock");
    let path = std::path::PathBuf::from(path);
    let open_err = |source| ClusterError::LockFile {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(open_err)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another process".to_string()
            } else {
                format!("another process (pid {holder})")
            };
            return Err(ClusterError::Locked(format!(
                "database_url: {} is in use by {who}; one SQLite file serves one watchpost \
                 process (stop the other one, or use PostgreSQL to run several nodes)",
                db.display()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(open_err(e)),
    }
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    let _ = file.flush();
    Ok(Some(file))
}

/// Starts a new term (every start is a takeover: claims of the previous process are
/// stale) and records this node.
pub async fn lead(cluster: &Cluster) -> Result<(), ClusterError> {
    let db = &cluster.0.db;
    let node = &cluster.0.node;
    let now = now_ms();
    let epoch = db
        .timed("cluster.lead", async {
            let mut tx = db.begin().await?;
            let row = sqlx::query(
                "UPDATE cluster_leader SET epoch = epoch + 1, node_id = $1, since_ms = $2 \
                 WHERE id = 1 RETURNING epoch",
            )
            .bind(&node.id)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            let epoch: i64 = row.try_get("epoch")?;
            sqlx::query("DELETE FROM cluster_nodes WHERE id <> $1")
                .bind(&node.id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, StoreError>(epoch)
        })
        .await?;
    heartbeat(cluster).await?;
    cluster.lead(epoch, Instant::now() + FOREVER, None);
    cluster.set_members(&[(cluster.node().id.clone(), true)]);
    Ok(())
}

/// Refreshes this node's row.
async fn heartbeat(cluster: &Cluster) -> Result<(), StoreError> {
    let db = &cluster.0.db;
    let node = &cluster.0.node;
    db.timed("cluster.heartbeat", async {
        sqlx::query(
            "INSERT INTO cluster_nodes (id, address, version, started_ms, heartbeat_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET address = excluded.address, \
             version = excluded.version, started_ms = excluded.started_ms, \
             heartbeat_ms = excluded.heartbeat_ms",
        )
        .bind(&node.id)
        .bind(&node.address)
        .bind(&node.version)
        .bind(node.started_ms)
        .bind(now_ms())
        .execute(db.pool())
        .await
        .map(|_| ())
        .map_err(StoreError::from)
    })
    .await
}

/// Holds the node until `shutdown`. Nothing is written meanwhile: the file lock proves
/// this process alive, so `/api/v1/cluster` reports its own row as heard from now
/// ([`Cluster::status`]) instead of an fsync'd write every `heartbeat_interval` of an
/// idle service.
pub async fn heartbeats(_cluster: Cluster, shutdown: CancellationToken) {
    shutdown.cancelled().await;
}
