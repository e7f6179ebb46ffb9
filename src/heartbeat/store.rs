//! Heartbeats in the database (`heartbeats` table): every query through [`Db::timed`].

use std::collections::BTreeMap;

use sqlx::Row;

use super::{Heartbeat, Status};
use crate::store::{Db, StoreError};

const COLUMNS: &str = "name, ping_key, period_ms, grace_ms, severity, labels, configured, status, \
                       created_ms, last_ping_ms, last_start_ms, last_duration_ms, next_due_ms, changed_ms";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Heartbeat, StoreError> {
    let labels: String = row.try_get("labels")?;
    let status: String = row.try_get("status")?;
    Ok(Heartbeat {
        name: row.try_get("name")?,
        ping_key: row.try_get("ping_key")?,
        period_ms: row.try_get("period_ms")?,
        grace_ms: row.try_get("grace_ms")?,
        severity: row.try_get("severity")?,
        labels: serde_json::from_str::<BTreeMap<String, String>>(&labels).unwrap_or_default(),
        configured: row.try_get::<i64, _>("configured")? != 0,
        status: Status::parse(&status),
        created_ms: row.try_get("created_ms")?,
        last_ping_ms: row.try_get("last_ping_ms")?,
        last_start_ms: row.try_get("last_start_ms")?,
        last_duration_ms: row.try_get("last_duration_ms")?,
        next_due_ms: row.try_get("next_due_ms")?,
        changed_ms: row.try_get("changed_ms")?,
    })
}

/// Every heartbeat, by name.
pub async fn list(db: &Db) -> Result<Vec<Heartbeat>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM heartbeats ORDER BY name");
    let rows = db
        .timed("heartbeats.list", async {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(db.pool())
                .await
                .map_err(StoreError::from)
        })
        .await?;
    rows.iter().map(from_row).collect()
}

/// The heartbeat named `name`, or the one whose ping key is `key`.
pub async fn find(
    db: &Db,
    name: Option<&str>,
    key: Option<&str>,
) -> Result<Option<Heartbeat>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM heartbeats WHERE name = $1 OR ping_key = $2");
    let row = db
        .timed("heartbeats.get", async {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(name.unwrap_or(""))
                .bind(key.unwrap_or(""))
                .fetch_optional(db.pool())
                .await
                .map_err(StoreError::from)
        })
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Inserts `h` unless its name exists; `true` when inserted.
pub async fn insert(db: &Db, h: &Heartbeat) -> Result<bool, StoreError> {
    let sql = format!(
        "INSERT INTO heartbeats ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT (name) DO NOTHING"
    );
    let labels = serde_json::to_string(&h.labels).unwrap_or_else(|_| "{}".into());
    let r = db
        .timed("heartbeats.insert", async {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&h.name)
                .bind(&h.ping_key)
                .bind(h.period_ms)
                .bind(h.grace_ms)
                .bind(&h.severity)
                .bind(labels)
                .bind(i64::from(h.configured))
                .bind(h.status.as_str())
                .bind(h.created_ms)
                .bind(h.last_ping_ms)
                .bind(h.last_start_ms)
                .bind(h.last_duration_ms)
                .bind(h.next_due_ms)
                .bind(h.changed_ms)
                .execute(db.pool())
                .await
                .map_err(StoreError::from)
        })
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Writes everything but the name, key and creation time of `h` — only if the row
/// still has the status and due time it had when read (`read`; `None`: in any case).
/// `false` when another writer changed it first.
pub async fn save(db: &Db, h: &Heartbeat, read: Option<&Heartbeat>) -> Result<bool, StoreError> {
    let labels = serde_json::to_string(&h.labels).unwrap_or_else(|_| "{}".into());
    let (status, due) = match read {
        Some(r) => (r.status.as_str(), r.next_due_ms.unwrap_or(-1)),
        None => ("", 0),
    };
    let r = db
        .timed("heartbeats.save", async {
            sqlx::query(
                "UPDATE heartbeats SET period_ms = $2, grace_ms = $3, severity = $4, labels = $5, \
             configured = $6, status = $7, last_ping_ms = $8, last_start_ms = $9, \
             last_duration_ms = $10, next_due_ms = $11, changed_ms = $12 \
             WHERE name = $1 AND ($13 = '' OR (status = $13 AND COALESCE(next_due_ms, -1) = $14))",
            )
            .bind(&h.name)
            .bind(h.period_ms)
            .bind(h.grace_ms)
            .bind(&h.severity)
            .bind(labels)
            .bind(i64::from(h.configured))
            .bind(h.status.as_str())
            .bind(h.last_ping_ms)
            .bind(h.last_start_ms)
            .bind(h.last_duration_ms)
            .bind(h.next_due_ms)
            .bind(h.changed_ms)
            .bind(status)
            .bind(due)
            .execute(db.pool())
            .await
            .map_err(StoreError::from)
        })
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Moves `h` from its stored status to `to` unless something changed it since it was
/// read (a ping, another node); `true` when this call made the change.
pub async fn set_status_if(
    db: &Db,
    h: &Heartbeat,
    to: Status,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let r = db
        .timed("heartbeats.status", async {
            sqlx::query(
                "UPDATE heartbeats SET status = $3, changed_ms = $4 \
                 WHERE name = $1 AND status = $2 AND COALESCE(next_due_ms, -1) = $5",
            )
            .bind(&h.name)
            .bind(h.status.as_str())
            .bind(to.as_str())
            .bind(now_ms)
            .bind(h.next_due_ms.unwrap_or(-1))
            .execute(db.pool())
            .await
            .map_err(StoreError::from)
        })
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Deletes `name`.
pub async fn delete(db: &Db, name: &str) -> Result<(), StoreError> {
    db.timed("heartbeats.delete", async {
        sqlx::query("DELETE FROM heartbeats WHERE name = $1")
            .bind(name)
            .execute(db.pool())
            .await
            .map_err(StoreError::from)
    })
    .await?;
    Ok(())
}
