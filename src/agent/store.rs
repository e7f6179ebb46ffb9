//! Agents in the database (`agents` table), every query through [`Db::timed`]. Which
//! node holds an agent, and whether AgentDown fired, change only by conditional
//! updates, so nodes of a cluster never both claim an agent or both raise its alert.

use sqlx::Row;

use super::protocol::Hello;
use crate::store::{Db, StoreError};

/// One stored agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRow {
    /// Its name (`instance`).
    pub name: String,
    /// Its machine's host name.
    pub host: String,
    /// Its version.
    pub version: String,
    /// Its address as the server saw it.
    pub address: String,
    /// The node holding its connection (`None`: disconnected).
    pub node: Option<String>,
    /// Its process' session.
    pub session: Option<String>,
    /// The connection holding it.
    pub connection: Option<String>,
    /// When its current connection began.
    pub connected_since_ms: Option<i64>,
    /// Last time it was heard from (refreshed by the holder every few seconds).
    pub last_seen_ms: i64,
    /// Samples received from it, in all.
    pub samples_received: i64,
    /// Whether AgentDown is firing for it.
    pub down: bool,
}

const COLUMNS: &str = "name, host, version, address, node, session, connection, \
                       connected_since_ms, last_seen_ms, samples_received, down";

fn from_row(row: &sqlx::any::AnyRow) -> Result<AgentRow, StoreError> {
    Ok(AgentRow {
        name: row.try_get("name")?,
        host: row.try_get("host")?,
        version: row.try_get("version")?,
        address: row.try_get("address")?,
        node: row.try_get("node")?,
        session: row.try_get("session")?,
        connection: row.try_get("connection")?,
        connected_since_ms: row.try_get("connected_since_ms")?,
        last_seen_ms: row.try_get("last_seen_ms")?,
        samples_received: row.try_get("samples_received")?,
        down: row.try_get::<i64, _>("down")? != 0,
    })
}

async fn select(
    db: &Db,
    label: &'static str,
    filter: &str,
    arg: Option<i64>,
) -> Result<Vec<AgentRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM agents {filter} ORDER BY name");
    let rows = db
        .timed(label, async {
            let q = sqlx::query(sqlx::AssertSqlSafe(sql));
            let q = match arg {
                Some(a) => q.bind(a),
                None => q,
            };
            q.fetch_all(db.pool()).await.map_err(StoreError::from)
        })
        .await?;
    rows.iter().map(from_row).collect()
}

/// Every agent, by name.
pub async fn list(db: &Db) -> Result<Vec<AgentRow>, StoreError> {
    select(db, "agents.list", "", None).await
}

/// Agents not down and not heard from since `cutoff_ms`.
pub async fn silent_since(db: &Db, cutoff_ms: i64) -> Result<Vec<AgentRow>, StoreError> {
    select(
        db,
        "agents.silent",
        "WHERE down = 0 AND last_seen_ms < $1",
        Some(cutoff_ms),
    )
    .await
}

/// Agent `name`, if stored.
pub async fn get(db: &Db, name: &str) -> Result<Option<AgentRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM agents WHERE name = $1");
    let row = db
        .timed("agents.get", async {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(name)
                .fetch_optional(db.pool())
                .await
                .map_err(StoreError::from)
        })
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Names of the agents `node` holds whose AgentDown is marked firing.
pub async fn down_held_by(db: &Db, node: &str) -> Result<Vec<String>, StoreError> {
    let rows = db
        .timed("agents.down_held", async {
            sqlx::query("SELECT name FROM agents WHERE down = 1 AND node = $1")
                .bind(node)
                .fetch_all(db.pool())
                .await
                .map_err(StoreError::from)
        })
        .await?;
    rows.iter()
        .map(|r| r.try_get::<String, _>("name").map_err(StoreError::from))
        .collect()
}

/// The outcome of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This node holds the agent now; its stored sample count.
    Claimed {
        /// Samples received before this connection.
        samples_received: i64,
    },
    /// Another live connection (another process with the same name) holds it.
    Taken(AgentRow),
}

/// Claims agent `hello.name` for `node`: it is free, or held by the same process
/// (`session`: a reconnect), or its holder went silent before `stale_before_ms`.
pub async fn claim(
    db: &Db,
    hello: &Hello,
    address: &str,
    (node, connection): (&str, &str),
    now_ms: i64,
    stale_before_ms: i64,
) -> Result<Claim, StoreError> {
    db.timed("agents.insert", async {
        sqlx::query(
            "INSERT INTO agents (name, host, version, address, node, session, connection, \
             connected_since_ms, last_seen_ms, samples_received, down, created_ms) \
             VALUES ($1, $2, $3, $4, NULL, NULL, NULL, NULL, $5, 0, 0, $5) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&hello.name)
        .bind(&hello.host)
        .bind(&hello.version)
        .bind(address)
        .bind(now_ms)
        .execute(db.pool())
        .await
        .map_err(StoreError::from)
    })
    .await?;
    let claimed = db
        .timed("agents.claim", async {
            sqlx::query(
                "UPDATE agents SET host = $2, version = $3, address = $4, node = $5, session = $6, \
                 connection = $9, connected_since_ms = $7, last_seen_ms = $7 \
                 WHERE name = $1 AND (node IS NULL OR session = $6 OR last_seen_ms < $8)",
            )
            .bind(&hello.name)
            .bind(&hello.host)
            .bind(&hello.version)
            .bind(address)
            .bind(node)
            .bind(&hello.session)
            .bind(now_ms)
            .bind(stale_before_ms)
            .bind(connection)
            .execute(db.pool())
            .await
            .map_err(StoreError::from)
        })
        .await?
        .rows_affected()
        == 1;
    let row = get(db, &hello.name)
        .await?
        .ok_or(StoreError::Query(sqlx::Error::RowNotFound))?;
    Ok(if claimed {
        Claim::Claimed {
            samples_received: row.samples_received,
        }
    } else {
        Claim::Taken(row)
    })
}

/// Clears `down` of agent `name`; `true` when this call cleared it (so resolves AgentDown).
pub async fn clear_down(db: &Db, name: &str) -> Result<bool, StoreError> {
    conditional(
        db,
        "agents.up",
        "UPDATE agents SET down = 0 WHERE name = $1 AND down = 1",
        name,
        None,
    )
    .await
}

/// Sets `down` of agent `name` if it is still silent since `cutoff_ms`; `true` when
/// this call set it (so raises AgentDown).
pub async fn mark_down(db: &Db, name: &str, cutoff_ms: i64) -> Result<bool, StoreError> {
    conditional(
        db,
        "agents.down",
        "UPDATE agents SET down = 1 WHERE name = $1 AND down = 0 AND last_seen_ms < $2",
        name,
        Some(cutoff_ms),
    )
    .await
}

async fn conditional(
    db: &Db,
    label: &'static str,
    sql: &'static str,
    name: &str,
    arg: Option<i64>,
) -> Result<bool, StoreError> {
    let r = db
        .timed(label, async {
            let q = sqlx::query(sql).bind(name);
            let q = match arg {
                Some(a) => q.bind(a),
                None => q,
            };
            q.execute(db.pool()).await.map_err(StoreError::from)
        })
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Refreshes `last_seen_ms` and the sample count of an agent `connection` holds.
pub async fn touch(
    db: &Db,
    name: &str,
    connection: &str,
    now_ms: i64,
    samples_received: i64,
) -> Result<(), StoreError> {
    db.timed("agents.touch", async {
        sqlx::query(
            "UPDATE agents SET last_seen_ms = $3, samples_received = $4 \
             WHERE name = $1 AND connection = $2",
        )
        .bind(name)
        .bind(connection)
        .bind(now_ms)
        .bind(samples_received)
        .execute(db.pool())
        .await
        .map_err(StoreError::from)
    })
    .await?;
    Ok(())
}

/// Marks an agent `connection` held as disconnected since `last_seen_ms`.
pub async fn release(
    db: &Db,
    name: &str,
    connection: &str,
    last_seen_ms: i64,
    samples_received: i64,
) -> Result<(), StoreError> {
    db.timed("agents.release", async {
        sqlx::query(
            "UPDATE agents SET node = NULL, session = NULL, connection = NULL, \
             connected_since_ms = NULL, last_seen_ms = $3, samples_received = $4 \
             WHERE name = $1 AND connection = $2",
        )
        .bind(name)
        .bind(connection)
        .bind(last_seen_ms)
        .bind(samples_received)
        .execute(db.pool())
        .await
        .map_err(StoreError::from)
    })
    .await?;
    Ok(())
}

/// Deletes agent `name` unless a live connection holds it (its holder heard from it
/// since `stale_before_ms`); the deleted row, if one was.
pub async fn delete_disconnected(
    db: &Db,
    name: &str,
    stale_before_ms: i64,
) -> Result<Option<AgentRow>, StoreError> {
    let Some(row) = get(db, name).await? else {
        return Ok(None);
    };
    let deleted = db
        .timed("agents.delete", async {
            sqlx::query(
                "DELETE FROM agents WHERE name = $1 AND (node IS NULL OR last_seen_ms < $2)",
            )
            .bind(name)
            .bind(stale_before_ms)
            .execute(db.pool())
            .await
            .map_err(StoreError::from)
        })
        .await?
        .rows_affected()
        == 1;
    Ok(deleted.then_some(row))
}
