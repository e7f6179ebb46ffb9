//! Storage: one sqlx pool (SQLite or PostgreSQL behind sqlx's `Any` driver), migrations,
//! and the single instrumented path every query takes.
//!
//! Queries are written once in the SQL both dialects accept (`$1` placeholders, `ON
//! CONFLICT`, `RETURNING`, timestamps as integer milliseconds, JSON as text); where the
//! dialects differ, a repository branches on [`Db::backend`].

pub mod import;
mod migrate;
pub mod pg_tls;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::config::Config;
use crate::metrics::DbMetrics;
use crate::redact;

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (file, WAL mode).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached within `database.connect_timeout`.
    #[error("database {url} unreachable after {waited:?}: {source}")]
    Unreachable {
        /// The URL with its password redacted.
        url: String,
        /// How long we retried.
        waited: Duration,
        /// The last error.
        source: sqlx::Error,
    },
    /// The URL or the SQLite path is unusable.
    #[error("database_url: {0}")]
    BadUrl(String),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error(transparent)]
    Query(#[from] sqlx::Error),
    /// The alert pipeline's receipt journal could not be written.
    #[error(transparent)]
    Journal(#[from] crate::alerts::journal::JournalError),
    /// Rows changed since they were read (another node wrote them): nothing was
    /// written; read them again and re-apply.
    #[error("{} alert row(s) changed concurrently (another node wrote them)", fingerprints.len())]
    Conflict {
        /// The fingerprints of the rows that changed.
        fingerprints: Vec<String>,
    },
    /// A leader-only write refused: this node does not lead under the current epoch.
    #[error(
        "fenced out: this node acts under leadership epoch {expected:?}, the cluster is at {current:?}"
    )]
    Fenced {
        /// The epoch this node acts under (`None`: it does not lead).
        expected: Option<i64>,
        /// The stored epoch (`None`: not read).
        current: Option<i64>,
    },
}

impl StoreError {
    /// Whether retrying later may help: the database unreachable, restarting, busy,
    /// locked, out of disk or connections — an outage, not a bad query.
    pub fn is_transient(&self) -> bool {
        let StoreError::Query(e) = self else {
            return matches!(
                self,
                StoreError::Unreachable { .. } | StoreError::Journal(_)
            );
        };
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_) => true,
            sqlx::Error::Database(db) => {
                let code = db.code().map(|c| c.to_string()).unwrap_or_default();
                if code.len() == 5 {
                    // PostgreSQL SQLSTATE: connection (08), resources (53), operator
                    // intervention (57P), system errors (58), serialization, deadlock.
                    ["08", "53", "57P", "58", "40001", "40P01"]
                        .iter()
                        .any(|p| code.starts_with(p))
                } else {
                    // SQLite (an extended code keeps the primary one in its low byte):
                    // BUSY, LOCKED, IOERR, FULL, CANTOPEN, PROTOCOL.
                    code.parse::<u32>()
                        .is_ok_and(|n| matches!(n & 0xff, 5 | 6 | 10 | 13 | 14 | 15))
                }
            }
            _ => false,
        }
    }
}

impl StoreError {
    /// Whether the database refused the data itself (PostgreSQL classes 22, data
    /// exception, and 23, integrity constraint; SQLite TOOBIG, CONSTRAINT, MISMATCH):
    /// writing the same rows again fails again, other rows may succeed.
    pub fn is_bad_data(&self) -> bool {
        let StoreError::Query(sqlx::Error::Database(db)) = self else {
            return false;
        };
        let code = db.code().map(|c| c.to_string()).unwrap_or_default();
        if code.len() == 5 {
            code.starts_with("22") || code.starts_with("23")
        } else {
            code.parse::<u32>()
                .is_ok_and(|n| matches!(n & 0xff, 18..=20))
        }
    }
}

/// The database handle: pool, backend and query instrumentation. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    metrics: DbMetrics,
    slow_threshold: Duration,
}

impl Db {
    /// Connects per `config`, retrying with backoff for `database.connect_timeout`.
    /// SQLite files and their folder are created when missing.
    pub async fn connect(config: &Config, metrics: DbMetrics) -> Result<Db, StoreError> {
        sqlx::any::install_default_drivers();
        let url = config.database_url.expose();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let url = match backend {
            Backend::Sqlite => sqlite_url(url)?,
            Backend::Postgres => url.to_string(),
        };
        let options =
            AnyConnectOptions::from_str(&url).map_err(|e| StoreError::BadUrl(redact::error(&e)))?;
        // PostgreSQL: a transaction left open by a node that was paused or cut off (its
        // locks: the leader term row, the change feed's order lock) ends when that
        // node's leadership lease would have lapsed, so it blocks no other node longer.
        let idle_tx_ms = config
            .cluster
            .node_timeout
            .saturating_sub(config.cluster.heartbeat_interval)
            .as_millis()
            .max(1000) as u64;
        let pool_options = AnyPoolOptions::new()
            .max_connections(config.database.max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                        )
                        .await?;
                    } else {
                        let set = format!("SET idle_in_transaction_session_timeout = {idle_tx_ms}");
                        conn.execute(sqlx::AssertSqlSafe(set)).await?;
                    }
                    Ok(())
                })
            });
        let started = Instant::now();
        let mut backoff = Duration::from_millis(100);
        loop {
            match pool_options.clone().connect_with(options.clone()).await {
                Ok(pool) => {
                    return Ok(Db {
                        pool,
                        backend,
                        metrics,
                        slow_threshold: config.database.slow_query_threshold,
                    });
                }
                Err(e) if started.elapsed() + backoff < config.database.connect_timeout => {
                    tracing::warn!(url = %redact::dsn(&url), error = %redact::error(&e), retry_in = ?backoff, "database not reachable yet");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    return Err(StoreError::Unreachable {
                        url: redact::dsn(&url),
                        waited: started.elapsed(),
                        source: e,
                    });
                }
            }
        }
    }

    /// Applies pending migrations for this backend; a no-op when up to date.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = migrate::migrator(self.backend);
        self.timed("migrate", async {
            migrator.run(&self.pool).await.map_err(StoreError::from)
        })
        .await
    }

    /// `SELECT 1`, bounded to two seconds.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let query = self.timed("ping", async {
            sqlx::query("SELECT 1")
                .execute(&self.pool)
                .await
                .map_err(StoreError::from)
        });
        match tokio::time::timeout(Duration::from_secs(2), query).await {
            Ok(r) => r.map(|_| ()),
            Err(_) => Err(StoreError::Query(sqlx::Error::PoolTimedOut)),
        }
    }

    /// Runs one bulk statement whose rows are the JSON array `rows` (bound as `$1`) on
    /// `conn`, timed as `name`.
    pub async fn execute_rows<R: serde::Serialize>(
        &self,
        conn: &mut sqlx::AnyConnection,
        name: &'static str,
        sql: &str,
        rows: &[R],
    ) -> Result<(), StoreError> {
        let payload = serde_json::to_string(rows).unwrap_or_else(|_| "[]".into());
        self.timed(name, async {
            sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .bind(payload)
                .execute(&mut *conn)
                .await
                .map_err(StoreError::from)
        })
        .await?;
        Ok(())
    }

    /// Runs `fut` as the query named `name`: records count by outcome, latency, and
    /// slow queries (logged with their name and duration). Every query goes through here.
    pub async fn timed<T, E, F>(&self, name: &'static str, fut: F) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        let start = Instant::now();
        let result = fut.await;
        let elapsed = start.elapsed();
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.metrics
            .queries
            .with_label_values(&[name, outcome])
            .inc();
        self.metrics
            .duration
            .with_label_values(&[name])
            .observe(elapsed.as_secs_f64());
        let slow = self.metrics.slow.with_label_values(&[name]);
        if elapsed >= self.slow_threshold {
            slow.inc();
            tracing::warn!(
                query = name,
                duration_ms = elapsed.as_millis() as u64,
                "slow query"
            );
        }
        if let Err(e) = &result {
            tracing::debug!(query = name, error = %e, "query failed");
        }
        result
    }

    /// The pool, for building queries to pass to [`Db::timed`].
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Begins a write transaction. On SQLite it is `BEGIN IMMEDIATE`: the write lock is
    /// taken first, waiting up to `busy_timeout`. A deferred transaction that reads and
    /// then writes fails at once with "database is locked" when another connection
    /// committed in between, because SQLite cannot upgrade a stale read snapshot.
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Updates `watchpost_db_pool_connections{state}`.
    pub fn update_pool_gauges(&self) {
        let size = self.pool.size() as i64;
        let idle = self.pool.num_idle() as i64;
        self.metrics.pool.with_label_values(&["idle"]).set(idle);
        self.metrics
            .pool
            .with_label_values(&["active"])
            .set((size - idle).max(0));
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The file of a `sqlite:` URL; `None` for PostgreSQL and in-memory SQLite.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split_once('?').map_or(rest, |(p, _)| p);
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// Normalises a SQLite URL: creates the parent folder and asks sqlx to create the file.
fn sqlite_url(url: &str) -> Result<String, StoreError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() {
        return Err(StoreError::BadUrl("empty SQLite path".into()));
    }
    if path != ":memory:"
        && let Some(parent) = Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)
            .map_err(|e| StoreError::BadUrl(format!("cannot create {}: {e}", parent.display())))?;
    }
    let query = if query.contains("mode=") {
        query.to_string()
    } else if query.is_empty() {
        "mode=rwc".to_string()
    } else {
        format!("{query}&mode=rwc")
    };
    Ok(format!("sqlite://{path}?{query}"))
}

/// Current time as integer milliseconds since the Unix epoch (how timestamps are stored).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_url_creates_with_rwc() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/x.db");
        let url = sqlite_url(&format!("sqlite://{}", p.display())).unwrap();
        assert!(url.ends_with("?mode=rwc"), "{url}");
        assert!(p.parent().unwrap().is_dir());
        assert_eq!(
            sqlite_url("sqlite::memory:").unwrap(),
            "sqlite://:memory:?mode=rwc"
        );
    }
}
