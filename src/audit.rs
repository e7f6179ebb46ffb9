//! The audit log: every mutation — who (token name), what (action and target), when,
//! from where, and a detail object — appended to `audit_log`, read back by admins at
//! `GET /api/v1/audit`.

use serde::Serialize;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::alerts::model::rfc3339;
use std::sync::Arc;

use crate::api::auth::{Identity, Principal};
use crate::store::{Backend, Db, StoreError, now_ms};

/// One mutation to record.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// When (Unix ms).
    pub at_ms: i64,
    /// Who: the token's name, or `anonymous`.
    pub actor: String,
    /// What, e.g. `alerts.ingest`, `alert.ack`, `silence.create`.
    pub action: String,
    /// On what, e.g. an alert id or a silence id.
    pub target: String,
    /// Action-specific details.
    pub detail: serde_json::Value,
    /// The caller's address.
    pub remote_addr: String,
    /// The JWT identity of the caller, when it signed in with one.
    pub identity: Option<Arc<Identity>>,
}

impl AuditRecord {
    /// A record of `action` on `target` by `who`, now.
    pub fn new(
        who: &Principal,
        action: &str,
        target: impl Into<String>,
        detail: serde_json::Value,
    ) -> Self {
        AuditRecord {
            at_ms: now_ms(),
            actor: who.name.clone(),
            action: action.to_string(),
            target: target.into(),
            detail,
            remote_addr: who.remote_addr.map(|a| a.to_string()).unwrap_or_default(),
            identity: who.identity.clone(),
        }
    }
}

#[derive(Serialize)]
struct RecordJson<'a> {
    t: i64,
    u: &'a str,
    a: &'a str,
    g: &'a str,
    d: String,
    r: &'a str,
    i: String,
}

/// Appends `records` on `conn` (inside the caller's transaction).
pub async fn insert_many(
    db: &Db,
    conn: &mut AnyConnection,
    records: &[AuditRecord],
) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let rows: Vec<RecordJson<'_>> = records
        .iter()
        .map(|r| RecordJson {
            t: r.at_ms,
            u: &r.actor,
            a: &r.action,
            g: &r.target,
            d: r.detail.to_string(),
            r: &r.remote_addr,
            i: match &r.identity {
                Some(id) => serde_json::to_string(id.as_ref()).unwrap_or_else(|_| "{}".into()),
                None => "{}".into(),
            },
        })
        .collect();
    let sql = match db.backend() {
        Backend::Sqlite => {
            "INSERT INTO audit_log (at_ms, actor, action, target, detail, remote_addr, identity) \
            SELECT json_extract(value, '$.t'), json_extract(value, '$.u'), json_extract(value, '$.a'), \
            json_extract(value, '$.g'), json_extract(value, '$.d'), json_extract(value, '$.r'), \
            json_extract(value, '$.i') FROM json_each($1)"
        }
        Backend::Postgres => {
            "INSERT INTO audit_log (at_ms, actor, action, target, detail, remote_addr, identity) \
            SELECT t, u, a, g, d, r, i FROM json_to_recordset($1::json) \
            AS x(t bigint, u text, a text, g text, d text, r text, i text)"
        }
    };
    db.execute_rows(conn, "audit.insert", sql, &rows).await
}

/// Appends one record.
pub async fn record(db: &Db, rec: &AuditRecord) -> Result<(), StoreError> {
    let mut conn = db.pool().acquire().await?;
    insert_many(db, &mut conn, std::slice::from_ref(rec)).await
}

/// A stored record.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    /// Id (cursor).
    pub id: i64,
    /// When (RFC 3339).
    pub at: String,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// On what.
    pub target: String,
    /// Details.
    pub detail: serde_json::Value,
    /// From where.
    pub remote_addr: String,
    /// The JWT claims naming the caller (`sub`, `preferred_username`, `email`, `iss`);
    /// null for static tokens.
    pub identity: Option<serde_json::Value>,
}

/// Filters of `GET /api/v1/audit`.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Exact action.
    pub action: Option<String>,
    /// Exact actor.
    pub actor: Option<String>,
    /// Ids below this.
    pub before_id: Option<i64>,
    /// Page size.
    pub limit: i64,
}

/// Records matching `f`, newest first.
pub async fn list(db: &Db, f: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
    let mut sql = String::from(
        "SELECT id, at_ms, actor, action, target, detail, remote_addr, identity FROM audit_log WHERE 1 = 1",
    );
    let mut texts: Vec<String> = Vec::new();
    let mut n = 0;
    if let Some(a) = &f.action {
        n += 1;
        sql.push_str(&format!(" AND action = ${n}"));
        texts.push(a.clone());
    }
    if let Some(a) = &f.actor {
        n += 1;
        sql.push_str(&format!(" AND actor = ${n}"));
        texts.push(a.clone());
    }
    if f.before_id.is_some() {
        sql.push_str(&format!(" AND id < ${}", n + 1));
    }
    sql.push_str(&format!(
        " ORDER BY id DESC LIMIT ${}",
        n + 1 + usize::from(f.before_id.is_some())
    ));
    let rows = db
        .timed("audit.list", async {
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for t in texts {
                q = q.bind(t);
            }
            if let Some(id) = f.before_id {
                q = q.bind(id);
            }
            q.bind(f.limit)
                .fetch_all(db.pool())
                .await
                .map_err(StoreError::from)
        })
        .await?;
    rows.iter()
        .map(|r| {
            let detail: String = r.try_get("detail")?;
            let identity: String = r.try_get("identity")?;
            Ok(AuditEntry {
                id: r.try_get("id")?,
                at: rfc3339(r.try_get("at_ms")?),
                actor: r.try_get("actor")?,
                action: r.try_get("action")?,
                target: r.try_get("target")?,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                remote_addr: r.try_get("remote_addr")?,
                identity: serde_json::from_str::<serde_json::Value>(&identity)
                    .ok()
                    .filter(|v| v.as_object().is_some_and(|o| !o.is_empty())),
            })
        })
        .collect()
}
