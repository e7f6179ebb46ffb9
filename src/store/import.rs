//! `watchpost migrate --from sqlite://PATH`: copies a single node's SQLite history into
//! the configured PostgreSQL, so that it can grow into a cluster.
//!
//! Alerts (with their acknowledgements), their events, silences, the audit log, the
//! notification log and the notifications still owed (pending outbox rows, unclaimed)
//! are copied with their ids, in chunks. SQLite renders each row as
//! JSON, PostgreSQL reads a chunk with `json_to_recordset`, and rows already present are
//! skipped (`ON CONFLICT DO NOTHING`). Running it twice therefore gives the same
//! contents. An event is copied only when its alert was, with the same fingerprint.
//! The id sequences are moved past the copied ids.

use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AssertSqlSafe, Connection, Row};

use super::{Backend, Db, StoreError, sqlite_file};

/// Rows read and written per statement.
const CHUNK: i64 = 5_000;

/// One table to copy.
struct Table {
    /// Its name (the same in both databases).
    name: &'static str,
    /// Columns and their PostgreSQL types.
    columns: &'static [(&'static str, &'static str)],
    /// The `FROM` of the SQLite query (`t` is the table).
    from: &'static str,
    /// Extra JSON fields read from SQLite (name, expression) that only filter.
    extra: &'static [(&'static str, &'static str, &'static str)],
    /// Condition on the incoming row `x` for it to be copied.
    only_if: &'static str,
    /// Its id sequence, moved past the copied ids.
    serial: bool,
}

const TABLES: &[Table] = &[
    Table {
        name: "alerts",
        columns: &[
            ("id", "bigint"),
            ("fingerprint", "text"),
            ("source", "text"),
            ("alertname", "text"),
            ("message", "text"),
            ("severity", "text"),
            ("type", "text"),
            ("risk_score", "bigint"),
            ("state", "text"),
            ("silenced_by", "text"),
            ("inhibited_by", "text"),
            ("labels", "text"),
            ("annotations", "text"),
            ("generator_url", "text"),
            ("starts_at_ms", "bigint"),
            ("ends_at_ms", "bigint"),
            ("first_seen_ms", "bigint"),
            ("last_seen_ms", "bigint"),
            ("count", "bigint"),
            ("recent_rate", "double precision"),
            ("ack_by", "text"),
            ("ack_at_ms", "bigint"),
            ("ack_comment", "text"),
        ],
        from: "alerts t",
        extra: &[],
        only_if: "",
        serial: true,
    },
    Table {
        name: "alert_events",
        columns: &[
            ("id", "bigint"),
            ("alert_id", "bigint"),
            ("kind", "text"),
            ("at_ms", "bigint"),
            ("detail", "text"),
        ],
        from: "alert_events t JOIN alerts a ON a.id = t.alert_id",
        extra: &[("fp", "a.fingerprint", "text")],
        only_if: "WHERE EXISTS (SELECT 1 FROM alerts a WHERE a.id = x.alert_id AND a.fingerprint = x.fp)",
        serial: true,
    },
    Table {
        name: "silences",
        columns: &[
            ("id", "text"),
            ("matchers", "text"),
            ("starts_at_ms", "bigint"),
            ("ends_at_ms", "bigint"),
            ("created_by", "text"),
            ("comment", "text"),
            ("updated_ms", "bigint"),
        ],
        from: "silences t",
        extra: &[],
        only_if: "",
        serial: false,
    },
    Table {
        name: "audit_log",
        columns: &[
            ("id", "bigint"),
            ("at_ms", "bigint"),
            ("actor", "text"),
            ("action", "text"),
            ("target", "text"),
            ("detail", "text"),
            ("remote_addr", "text"),
            ("identity", "text"),
        ],
        from: "audit_log t",
        extra: &[],
        only_if: "",
        serial: true,
    },
    // Notifications the single node owed but had not delivered: the log above says
    // they were made, so without them they would never be sent.
    Table {
        name: "notification_outbox",
        columns: &[
            ("id", "bigint"),
            ("idempotency_key", "text"),
            ("receiver", "text"),
            ("kind", "text"),
            ("target", "text"),
            ("group_key", "text"),
            ("status", "text"),
            ("part", "bigint"),
            ("parts", "bigint"),
            ("payload", "text"),
            ("alert_ids", "text"),
            ("state", "text"),
            ("attempts", "bigint"),
            ("created_ms", "bigint"),
            ("next_attempt_ms", "bigint"),
            ("updated_ms", "bigint"),
            ("last_error", "text"),
        ],
        from: "notification_outbox t",
        extra: &[],
        only_if: "WHERE x.state = 'pending'",
        serial: true,
    },
    Table {
        name: "notification_log",
        columns: &[
            ("group_key", "text"),
            ("receiver", "text"),
            ("entry", "text"),
            ("updated_ms", "bigint"),
        ],
        from: "notification_log t",
        extra: &[],
        only_if: "",
        serial: false,
    },
];

/// How far the copy of one table is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The table.
    pub table: &'static str,
    /// Rows read from SQLite so far.
    pub read: u64,
    /// Rows in the SQLite table.
    pub total: u64,
    /// Rows written (new) so far.
    pub written: u64,
}

/// Why the import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The target is not PostgreSQL, or the source not a SQLite file.
    #[error("{0}")]
    Usage(String),
    /// The SQLite file could not be read.
    #[error("reading {path}: {source}")]
    Source {
        /// The file.
        path: String,
        /// The error.
        source: sqlx::Error,
    },
    /// Writing to PostgreSQL failed.
    #[error(transparent)]
    Target(#[from] StoreError),
}

/// Copies the history in the SQLite file of `from` (`sqlite://PATH`) into `target`
/// (PostgreSQL, migrated), reporting after each chunk; returns the final progress of
/// every table.
pub async fn import_sqlite(
    target: &Db,
    from: &str,
    mut progress: impl FnMut(&Progress),
) -> Result<Vec<Progress>, ImportError> {
    if target.backend() != Backend::Postgres {
        return Err(ImportError::Usage(
            "migrate --from: database_url must be postgres://… (the database to import into)"
                .into(),
        ));
    }
    let path = sqlite_file(from).ok_or_else(|| {
        ImportError::Usage(format!(
            "migrate --from: expected sqlite://PATH to a watchpost SQLite file, got {from:?}"
        ))
    })?;
    if !path.is_file() {
        return Err(ImportError::Usage(format!(
            "migrate --from: {} does not exist",
            path.display()
        )));
    }
    let shown = path.display().to_string();
    let source_err = |source| ImportError::Source {
        path: shown.clone(),
        source,
    };
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .map_err(source_err)?
        .read_only(true);
    let mut src = SqliteConnection::connect_with(&options)
        .await
        .map_err(source_err)?;
    let mut done = Vec::new();
    for table in TABLES {
        let p = copy_table(target, &mut src, table, &mut progress)
            .await
            .map_err(|e| match e {
                CopyError::Source(s) => source_err(s),
                CopyError::Target(t) => ImportError::Target(t),
            })?;
        done.push(p);
    }
    let _ = src.close().await;
    Ok(done)
}

enum CopyError {
    Source(sqlx::Error),
    Target(StoreError),
}

async fn copy_table(
    target: &Db,
    src: &mut SqliteConnection,
    t: &Table,
    progress: &mut impl FnMut(&Progress),
) -> Result<Progress, CopyError> {
    let total: i64 = sqlx::query(AssertSqlSafe(format!(
        "SELECT COUNT(*) AS n FROM {}",
        t.from
    )))
    .fetch_one(&mut *src)
    .await
    .and_then(|r| r.try_get("n"))
    .map_err(CopyError::Source)?;
    // A file written by an older version lacks the newest columns: those get their
    // defaults in the target.
    let present: Vec<String> = sqlx::query(AssertSqlSafe(format!(
        "SELECT name FROM pragma_table_info('{}')",
        t.name
    )))
    .fetch_all(&mut *src)
    .await
    .map_err(CopyError::Source)?
    .iter()
    .filter_map(|r| r.try_get::<String, _>("name").ok())
    .collect();
    let columns: Vec<(&str, &str)> = t
        .columns
        .iter()
        .copied()
        .filter(|(c, _)| present.iter().any(|p| p == c))
        .collect();
    let fields: Vec<String> = columns
        .iter()
        .map(|(c, _)| format!("'{c}', t.{c}"))
        .chain(t.extra.iter().map(|(n, e, _)| format!("'{n}', {e}")))
        .collect();
    let read_sql = format!(
        "SELECT t.rowid AS k, json_object({}) AS row FROM {} WHERE t.rowid > $1 ORDER BY t.rowid LIMIT $2",
        fields.join(", "),
        t.from
    );
    let names: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
    let types: Vec<String> = columns
        .iter()
        .map(|(c, ty)| format!("{c} {ty}"))
        .chain(t.extra.iter().map(|(n, _, ty)| format!("{n} {ty}")))
        .collect();
    let write_sql = format!(
        "INSERT INTO {name} ({cols}) SELECT {cols} FROM json_to_recordset($1::json) AS x({types}) {only_if} \
         ON CONFLICT DO NOTHING",
        name = t.name,
        cols = names.join(", "),
        types = types.join(", "),
        only_if = t.only_if,
    );
    let mut p = Progress {
        table: t.name,
        read: 0,
        total: total.max(0) as u64,
        written: 0,
    };
    let mut after = 0i64;
    loop {
        let rows = sqlx::query(AssertSqlSafe(read_sql.clone()))
            .bind(after)
            .bind(CHUNK)
            .fetch_all(&mut *src)
            .await
            .map_err(CopyError::Source)?;
        let Some(last) = rows.last() else { break };
        after = last.try_get("k").map_err(CopyError::Source)?;
        let json: Vec<String> = rows
            .iter()
            .map(|r| r.try_get::<String, _>("row"))
            .collect::<Result<_, _>>()
            .map_err(CopyError::Source)?;
        let payload = format!("[{}]", json.join(","));
        let written = target
            .timed("import.write", async {
                sqlx::query(AssertSqlSafe(write_sql.clone()))
                    .bind(payload)
                    .execute(target.pool())
                    .await
                    .map(|r| r.rows_affected())
                    .map_err(StoreError::from)
            })
            .await
            .map_err(CopyError::Target)?;
        p.read += rows.len() as u64;
        p.written += written;
        progress(&p);
    }
    if t.serial {
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence('{0}', 'id'), GREATEST(m, 1), m > 0) \
             FROM (SELECT COALESCE(MAX(id), 0) AS m FROM {0}) s",
            t.name
        );
        target
            .timed("import.sequence", async {
                sqlx::query(AssertSqlSafe(sql))
                    .execute(target.pool())
                    .await
                    .map(|_| ())
                    .map_err(StoreError::from)
            })
            .await
            .map_err(CopyError::Target)?;
    }
    if p.total == 0 {
        progress(&p);
    }
    Ok(p)
}
