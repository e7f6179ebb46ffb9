//! SQL for alerts and their events. Bulk writes on PostgreSQL pass all rows as one JSON
//! text parameter (`json_to_recordset`), so a batch of any size is one fixed, prepared
//! statement and one round trip. SQLite's `json_each` would parse each row's JSON
//! once per column, so the alert upsert there binds every value instead, in multi-row
//! `VALUES` statements of a few fixed sizes ([`SQLITE_CHUNKS`]).

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use super::journal::Refresh;
use super::model::{Ack, Alert, AlertState, EventKind, LabelSet, Severity, StoredEvent};
use crate::store::{Backend, Db, StoreError};

/// Every column of `alerts`, in [`from_row`]'s order.
pub const COLUMNS: &str = "id, fingerprint, source, alertname, message, severity, type, risk_score, \
    state, silenced_by, inhibited_by, labels, annotations, generator_url, starts_at_ms, ends_at_ms, \
    first_seen_ms, last_seen_ms, count, recent_rate, ack_by, ack_at_ms, ack_comment, version, \
    flapping_since_ms";

/// An alert from a row selected with [`COLUMNS`].
pub fn from_row(row: &AnyRow) -> Result<Alert, StoreError> {
    let severity: String = row.try_get("severity")?;
    let state: String = row.try_get("state")?;
    let silenced_by: String = row.try_get("silenced_by")?;
    let labels: String = row.try_get("labels")?;
    let annotations: String = row.try_get("annotations")?;
    let ack_by: Option<String> = row.try_get("ack_by")?;
    let ack_at: Option<i64> = row.try_get("ack_at_ms")?;
    let ack_comment: Option<String> = row.try_get("ack_comment")?;
    Ok(Alert {
        id: row.try_get("id")?,
        fingerprint: row.try_get("fingerprint")?,
        source: row.try_get("source")?,
        alertname: row.try_get("alertname")?,
        message: row.try_get("message")?,
        severity: Severity::parse_strict(&severity).unwrap_or(Severity::Info),
        alert_type: row.try_get("type")?,
        risk_score: row.try_get("risk_score")?,
        state: AlertState::parse(&state).unwrap_or(AlertState::Firing),
        silenced_by: serde_json::from_str(&silenced_by).unwrap_or_default(),
        inhibited_by: row.try_get("inhibited_by")?,
        labels: serde_json::from_str::<LabelSet>(&labels).unwrap_or_default(),
        annotations: serde_json::from_str::<LabelSet>(&annotations).unwrap_or_default(),
        generator_url: row.try_get("generator_url")?,
        starts_at_ms: row.try_get("starts_at_ms")?,
        ends_at_ms: row.try_get("ends_at_ms")?,
        first_seen_ms: row.try_get("first_seen_ms")?,
        last_seen_ms: row.try_get("last_seen_ms")?,
        count: row.try_get("count")?,
        recent_rate: row.try_get("recent_rate")?,
        ack: match (ack_by, ack_at) {
            (Some(by), Some(at_ms)) => Some(Ack {
                by,
                at_ms,
                comment: ack_comment.unwrap_or_default(),
            }),
            _ => None,
        },
        version: row.try_get("version")?,
        flapping_since_ms: row.try_get("flapping_since_ms")?,
    })
}

/// A JSON array of strings, the bulk parameter for `IN` lists.
fn json_list<T: Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

/// The alerts with these fingerprints.
pub async fn by_fingerprints(
    db: &Db,
    conn: &mut AnyConnection,
    fingerprints: &[&str],
) -> Result<Vec<Alert>, StoreError> {
    if fingerprints.is_empty() {
        return Ok(Vec::new());
    }
    let sql = match db.backend() {
        Backend::Sqlite => format!(
            "SELECT {COLUMNS} FROM alerts WHERE fingerprint IN (SELECT value FROM json_each($1))"
        ),
        Backend::Postgres => format!(
            "SELECT {COLUMNS} FROM alerts WHERE fingerprint IN (SELECT json_array_elements_text($1::json))"
        ),
    };
    let rows = db
        .timed("alerts.by_fingerprints", async {
            sqlx::query(AssertSqlSafe(sql))
                .bind(json_list(fingerprints))
                .fetch_all(&mut *conn)
                .await
                .map_err(StoreError::from)
        })
        .await?;
    rows.iter().map(from_row).collect()
}

/// The alerts with these ids.
pub async fn by_ids(db: &Db, ids: &[i64]) -> Result<Vec<Alert>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = match db.backend() {
        Backend::Sqlite => {
            format!("SELECT {COLUMNS} FROM alerts WHERE id IN (SELECT value FROM json_each($1))")
        }
        Backend::Postgres => format!(
            "SELECT {COLUMNS} FROM alerts WHERE id IN (SELECT CAST(json_array_elements_text($1::json) AS BIGINT))"
        ),
    };
    let rows = db
        .timed("alerts.by_ids", async {
            sqlx::query(AssertSqlSafe(sql))
                .bind(json_list(ids))
                .fetch_all(db.pool())
                .await
                .map_err(StoreError::from)
        })
        .await?;
    rows.iter().map(from_row).collect()
}

/// One alert.
pub async fn get(db: &Db, id: i64) -> Result<Option<Alert>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM alerts WHERE id = $1");
    let row = db
        .timed("alerts.get", async {
            sqlx::query(AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(db.pool())
                .await
                .map_err(StoreError::from)
        })
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every firing alert (start-up, silence and inhibition re-evaluation).
pub async fn firing(db: &Db) -> Result<Vec<Alert>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM alerts WHERE state = 'firing' ORDER BY id");
    let rows = db
        .timed("alerts.firing", async {
            sqlx::query(AssertSqlSafe(sql))
                .fetch_all(db.pool())
                .await
                .map_err(StoreError::from)
        })
        .await?;
    rows.iter().map(from_row).collect()
}

/// Firing alerts whose `ends_at` is at or before `before_ms`, soonest first.
pub async fn expired(db: &Db, before_ms: i64, limit: i64) -> Result<Vec<Alert>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM alerts WHERE state = 'firing' AND ends_at_ms <= $1 \
         ORDER BY ends_at_ms, id LIMIT $2"
    );
    let rows = db
        .timed("alerts.expired", async {
            sqlx::query(AssertSqlSafe(sql))
                .bind(before_ms)
                .bind(limit)
                .fetch_all(db.pool())
                .await
                .map_err(StoreError::from)
        })
        .await?;
    rows.iter().map(from_row).collect()
}

/// Firing alerts by severity.
pub async fn firing_counts(db: &Db) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = db
        .timed("alerts.firing_counts", async {
            sqlx::query(
                "SELECT severity, count(*) AS n FROM alerts WHERE state = 'firing' GROUP BY severity",
            )
            .fetch_all(db.pool())
            .await
            .map_err(StoreError::from)
        })
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("severity")?, r.try_get("n")?)))
        .collect()
}

#[derive(Serialize)]
struct RowJson<'a> {
    f: &'a str,
    s: &'a str,
    n: Option<&'a str>,
    m: &'a str,
    sv: &'a str,
    t: &'a str,
    r: i64,
    st: &'a str,
    sb: String,
    ib: Option<&'a str>,
    l: String,
    a: String,
    g: Option<&'a str>,
    sa: i64,
    ea: Option<i64>,
    fs: i64,
    ls: i64,
    c: i64,
    rr: f64,
    kb: Option<&'a str>,
    ka: Option<i64>,
    kc: Option<&'a str>,
    v: i64,
}

impl<'a> RowJson<'a> {
    fn of(a: &'a Alert, base_count: i64) -> Self {
        RowJson {
            f: &a.fingerprint,
            s: &a.source,
            n: a.alertname.as_deref(),
            m: &a.message,
            sv: a.severity.as_str(),
            t: &a.alert_type,
            r: a.risk_score,
            st: a.state.as_str(),
            sb: json_list(&a.silenced_by),
            ib: a.inhibited_by.as_deref(),
            l: serde_json::to_string(&a.labels).unwrap_or_else(|_| "{}".into()),
            a: serde_json::to_string(&a.annotations).unwrap_or_else(|_| "{}".into()),
            g: a.generator_url.as_deref(),
            sa: a.starts_at_ms,
            ea: a.ends_at_ms,
            fs: a.first_seen_ms,
            ls: a.last_seen_ms,
            c: a.count - base_count,
            rr: a.storable_rate(),
            kb: a.ack.as_ref().map(|k| k.by.as_str()),
            ka: a.ack.as_ref().map(|k| k.at_ms),
            kc: a.ack.as_ref().map(|k| k.comment.as_str()),
            v: a.version + 1,
        }
    }
}

/// When a full write's volatile fields (last seen, `ends_at`, start, risk, rate) win:
/// it changes the state, or it is at least as recent as the row (a journaled repeat of
/// another node, checkpointed since this writer read the row, is not rolled back).
const NEWER: &str =
    "(excluded.state <> alerts.state OR excluded.last_seen_ms >= alerts.last_seen_ms)";

/// A full write: the row's count goes up by the receipts counted since it was read
/// (never set to a total another node may have moved), and the update applies only
/// over the version its writer read; `RETURNING` omits the rows that changed meanwhile.
const UPSERT_TAIL: &str = " ON CONFLICT (fingerprint) DO UPDATE SET source = excluded.source, \
    alertname = excluded.alertname, message = excluded.message, severity = excluded.severity, \
    type = excluded.type, \
    risk_score = CASE WHEN {NEWER} THEN excluded.risk_score ELSE alerts.risk_score END, \
    state = excluded.state, \
    silenced_by = excluded.silenced_by, inhibited_by = excluded.inhibited_by, labels = excluded.labels, \
    annotations = excluded.annotations, generator_url = excluded.generator_url, \
    starts_at_ms = CASE WHEN {NEWER} THEN excluded.starts_at_ms ELSE alerts.starts_at_ms END, \
    ends_at_ms = CASE WHEN {NEWER} THEN excluded.ends_at_ms ELSE alerts.ends_at_ms END, \
    first_seen_ms = excluded.first_seen_ms, \
    last_seen_ms = CASE WHEN {NEWER} THEN excluded.last_seen_ms ELSE alerts.last_seen_ms END, \
    count = alerts.count + excluded.count, \
    recent_rate = CASE WHEN {NEWER} THEN excluded.recent_rate ELSE alerts.recent_rate END, \
    ack_by = excluded.ack_by, ack_at_ms = excluded.ack_at_ms, \
    ack_comment = excluded.ack_comment, version = excluded.version \
    WHERE alerts.version = excluded.version - 1 \
    RETURNING id, fingerprint, version";

const INSERT_HEAD: &str = "INSERT INTO alerts (fingerprint, source, alertname, message, severity, type, \
    risk_score, state, silenced_by, inhibited_by, labels, annotations, generator_url, starts_at_ms, \
    ends_at_ms, first_seen_ms, last_seen_ms, count, recent_rate, ack_by, ack_at_ms, ack_comment, version) ";

fn upsert_tail() -> String {
    UPSERT_TAIL.replace("{NEWER}", NEWER)
}

/// SQLite: rows per multi-row statement. A batch is cut into chunks of these sizes
/// (largest first), so only these few statement texts are ever prepared; 64 rows of 23
/// columns stay far below SQLite's parameter limit.
const SQLITE_CHUNKS: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];

/// Columns the upsert writes (in [`INSERT_HEAD`]'s order).
const UPSERT_COLUMNS: usize = 23;

/// The SQLite upsert of `SQLITE_CHUNKS[i]` rows, built once.
fn sqlite_upsert_sql(i: usize) -> &'static str {
    static SQL: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        SQLITE_CHUNKS
            .iter()
            .map(|&rows| {
                let values = (0..rows)
                    .map(|_| {
                        // Anonymous `?`: SQLite looks a `$N` name up by a linear scan
                        // per bound value, quadratic in a statement this wide.
                        format!("({})", vec!["?"; UPSERT_COLUMNS].join(", "))
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("{INSERT_HEAD}VALUES {values}{}", upsert_tail())
            })
            .collect()
    });
    &SQL[i]
}

/// Splits `n` rows into `(index into SQLITE_CHUNKS, rows)` pieces, largest first.
fn sqlite_chunks(mut n: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (i, &size) in SQLITE_CHUNKS.iter().enumerate() {
        while n >= size {
            out.push((i, size));
            n -= size;
        }
    }
    out
}

/// Binds one row of the upsert, in [`INSERT_HEAD`]'s column order.
fn bind_row<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    r: RowJson<'q>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    q.bind(r.f)
        .bind(r.s)
        .bind(r.n)
        .bind(r.m)
        .bind(r.sv)
        .bind(r.t)
        .bind(r.r)
        .bind(r.st)
        .bind(r.sb)
        .bind(r.ib)
        .bind(r.l)
        .bind(r.a)
        .bind(r.g)
        .bind(r.sa)
        .bind(r.ea)
        .bind(r.fs)
        .bind(r.ls)
        .bind(r.c)
        .bind(r.rr)
        .bind(r.kb)
        .bind(r.ka)
        .bind(r.kc)
        .bind(r.v)
}

/// The SQLite upsert: each chunk one statement with every value bound.
async fn sqlite_upsert(
    db: &Db,
    conn: &mut AnyConnection,
    writes: &[FullWrite<'_>],
) -> Result<Vec<AnyRow>, StoreError> {
    let mut rows = Vec::with_capacity(writes.len());
    let mut rest = writes;
    for (i, size) in sqlite_chunks(writes.len()) {
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        let mut q = sqlx::query(sqlite_upsert_sql(i));
        for w in chunk {
            q = bind_row(q, RowJson::of(w.alert, w.base_count));
        }
        let got = db
            .timed("alerts.upsert", async {
                q.fetch_all(&mut *conn).await.map_err(StoreError::from)
            })
            .await?;
        rows.extend(got);
    }
    Ok(rows)
}

/// The PostgreSQL upsert: every row in one JSON parameter.
fn postgres_upsert_sql() -> String {
    format!(
        "{INSERT_HEAD}SELECT f, s, n, m, sv, t, r, st, sb, ib, l, a, g, sa, ea, fs, ls, c, rr, kb, ka, kc, v \
         FROM json_to_recordset($1::json) AS x(f text, s text, n text, m text, sv text, t text, \
         r bigint, st text, sb text, ib text, l text, a text, g text, sa bigint, ea bigint, fs bigint, \
         ls bigint, c bigint, rr double precision, kb text, ka bigint, kc text, v bigint){}",
        upsert_tail()
    )
}

/// Locks the existing rows with these ids or fingerprints, in id order (PostgreSQL;
/// SQLite has one writer). Every writer of several rows — a batch, a checkpoint, on any
/// node — takes all its row locks this way first, so two of them never wait for each
/// other in a cycle.
pub async fn lock_rows(
    db: &Db,
    conn: &mut AnyConnection,
    ids: &[i64],
    fingerprints: &[&str],
) -> Result<(), StoreError> {
    if db.backend() != Backend::Postgres || (ids.is_empty() && fingerprints.is_empty()) {
        return Ok(());
    }
    db.timed("alerts.lock", async {
        sqlx::query(
            // `= ANY(ARRAY(…))` on both sides makes a BitmapOr of the two indexes; the
            // `IN (SELECT …) OR IN (SELECT …)` it replaces scanned every row per batch.
            "SELECT id FROM alerts \
             WHERE id = ANY(ARRAY(SELECT CAST(json_array_elements_text($1::json) AS BIGINT))) \
             OR fingerprint = ANY(ARRAY(SELECT json_array_elements_text($2::json))) \
             ORDER BY id FOR UPDATE",
        )
        .bind(json_list(ids))
        .bind(json_list(fingerprints))
        .execute(&mut *conn)
        .await
        .map_err(StoreError::from)
    })
    .await?;
    Ok(())
}

/// Of these firing alerts, the ones whose stored `ends_at` is no longer the one given
/// (another node's repeat moved it on since it was read) or that no longer fire: an
/// expiry must not resolve them.
pub async fn ends_moved(
    db: &Db,
    conn: &mut AnyConnection,
    expected: &[(&str, Option<i64>)],
) -> Result<Vec<String>, StoreError> {
    if expected.is_empty() {
        return Ok(Vec::new());
    }
    #[derive(Serialize)]
    struct E<'a> {
        f: &'a str,
        e: Option<i64>,
    }
    let rows: Vec<E<'_>> = expected.iter().map(|(f, e)| E { f, e: *e }).collect();
    let payload = serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into());
    let sql = match db.backend() {
        Backend::Sqlite => {
            "SELECT a.fingerprint FROM alerts a JOIN (SELECT json_extract(value, '$.f') AS f, \
             json_extract(value, '$.e') AS e FROM json_each($1)) v ON a.fingerprint = v.f \
             WHERE a.state <> 'firing' OR a.ends_at_ms IS NOT v.e"
        }
        Backend::Postgres => {
            "SELECT a.fingerprint FROM alerts a JOIN json_to_recordset($1::json) AS v(f text, e bigint) \
             ON a.fingerprint = v.f WHERE a.state <> 'firing' OR a.ends_at_ms IS DISTINCT FROM v.e"
        }
    };
    let rows = db
        .timed("alerts.ends_moved", async {
            sqlx::query(sql)
                .bind(payload)
                .fetch_all(&mut *conn)
                .await
                .map_err(StoreError::from)
        })
        .await?;
    rows.iter()
        .map(|r| r.try_get("fingerprint").map_err(StoreError::from))
        .collect()
}

/// A full write of an alert: the alert as it is now, and its count when it was read
/// (the difference is added to the stored count).
pub struct FullWrite<'a> {
    /// The alert, with the version it was read at.
    pub alert: &'a Alert,
    /// Its count when read (0 for a new alert).
    pub base_count: i64,
}

/// Inserts or updates `alerts` by fingerprint, each over the version it was read at;
/// returns `(id, fingerprint, version)` of each, or [`StoreError::Conflict`] naming the
/// rows another writer changed meanwhile (then the caller rolls back and re-reads them).
pub async fn upsert(
    db: &Db,
    conn: &mut AnyConnection,
    writes: &[FullWrite<'_>],
) -> Result<Vec<(i64, String, i64)>, StoreError> {
    if writes.is_empty() {
        return Ok(Vec::new());
    }
    let rows = match db.backend() {
        Backend::Sqlite => sqlite_upsert(db, conn, writes).await?,
        Backend::Postgres => {
            let rows: Vec<RowJson<'_>> = writes
                .iter()
                .map(|w| RowJson::of(w.alert, w.base_count))
                .collect();
            let payload = serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into());
            let sql = postgres_upsert_sql();
            db.timed("alerts.upsert", async {
                sqlx::query(AssertSqlSafe(sql))
                    .bind(payload)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(StoreError::from)
            })
            .await?
        }
    };
    let written = rows
        .iter()
        .map(|r| {
            Ok((
                r.try_get("id")?,
                r.try_get("fingerprint")?,
                r.try_get("version")?,
            ))
        })
        .collect::<Result<Vec<(i64, String, i64)>, StoreError>>()?;
    if written.len() < writes.len() {
        let done: std::collections::HashSet<&str> =
            written.iter().map(|(_, fp, _)| fp.as_str()).collect();
        let fingerprints = writes
            .iter()
            .map(|w| w.alert.fingerprint.clone())
            .filter(|fp| !done.contains(fp.as_str()))
            .collect();
        return Err(StoreError::Conflict { fingerprints });
    }
    Ok(written)
}

/// How [`refresh`] writes a record's count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshMode {
    /// `count` goes up by the record's `added` (the current journal format).
    Add,
    /// `count` is set to the record's `added` read as a total, only while the stored
    /// count is lower (files of the older journal format; idempotent).
    Total,
}

/// Writes journaled repeats: each record's receipts are added to the alert's count,
/// and its fields (last seen, `ends_at`, start, risk, rate) replace the row's while
/// the alert is firing and the record is at least as recent as the row, so a late
/// record never undoes a newer write from this or another node.
pub async fn refresh(
    db: &Db,
    conn: &mut AnyConnection,
    list: &[Refresh],
    mode: RefreshMode,
) -> Result<(), StoreError> {
    if list.is_empty() {
        return Ok(());
    }
    #[derive(Serialize)]
    struct R {
        i: i64,
        c: i64,
        l: i64,
        e: Option<i64>,
        s: i64,
        r: i64,
        q: f64,
    }
    let rows: Vec<R> = list
        .iter()
        .map(|x| R {
            i: x.id,
            c: x.added,
            l: x.last_seen_ms,
            e: x.ends_at_ms,
            s: x.starts_at_ms,
            r: x.risk_score,
            q: x.recent_rate,
        })
        .collect();
    let fresh = "alerts.state = 'firing' AND v.l >= alerts.last_seen_ms";
    let take =
        |col: &str, v: &str| format!("{col} = CASE WHEN {fresh} THEN {v} ELSE alerts.{col} END");
    let (count, only) = match mode {
        RefreshMode::Add => ("count = alerts.count + v.c".to_string(), ""),
        RefreshMode::Total => ("count = v.c".to_string(), " AND alerts.count < v.c"),
    };
    let set = [
        count,
        take("last_seen_ms", "v.l"),
        take("ends_at_ms", "v.e"),
        take("starts_at_ms", "v.s"),
        take("risk_score", "v.r"),
        take("recent_rate", "v.q"),
    ]
    .join(", ");
    let from = match db.backend() {
        Backend::Sqlite => {
            "(SELECT json_extract(value, '$.i') AS i, json_extract(value, '$.c') AS c, \
             json_extract(value, '$.l') AS l, json_extract(value, '$.e') AS e, \
             json_extract(value, '$.s') AS s, json_extract(value, '$.r') AS r, \
             json_extract(value, '$.q') AS q FROM json_each($1)) AS v"
        }
        Backend::Postgres => {
            "json_to_recordset($1::json) AS v(i bigint, c bigint, l bigint, e bigint, \
             s bigint, r bigint, q double precision)"
        }
    };
    let sql = format!("UPDATE alerts SET {set} FROM {from} WHERE alerts.id = v.i{only}");
    db.execute_rows(conn, "alerts.refresh", &sql, &rows).await
}

/// Of these journal segments, the ones whose increments are in the database.
pub async fn applied_segments(
    db: &Db,
    conn: &mut AnyConnection,
    names: &[String],
) -> Result<Vec<String>, StoreError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let sql = match db.backend() {
        Backend::Sqlite => {
            "SELECT segment FROM journal_applied WHERE segment IN (SELECT value FROM json_each($1))"
        }
        Backend::Postgres => {
            "SELECT segment FROM journal_applied WHERE segment IN (SELECT json_array_elements_text($1::json))"
        }
    };
    let rows = db
        .timed("journal_applied.select", async {
            sqlx::query(sql)
                .bind(json_list(names))
                .fetch_all(&mut *conn)
                .await
                .map_err(StoreError::from)
        })
        .await?;
    rows.iter()
        .map(|r| r.try_get("segment").map_err(StoreError::from))
        .collect()
}

/// Records that the increments of these journal segments are in the database (in the
/// transaction that wrote them).
pub async fn mark_applied(
    db: &Db,
    conn: &mut AnyConnection,
    names: &[String],
    now_ms: i64,
) -> Result<(), StoreError> {
    if names.is_empty() {
        return Ok(());
    }
    let sql = match db.backend() {
        Backend::Sqlite => {
            "INSERT INTO journal_applied (segment, at_ms) SELECT value, $2 FROM json_each($1) WHERE true \
             ON CONFLICT (segment) DO NOTHING"
        }
        Backend::Postgres => {
            "INSERT INTO journal_applied (segment, at_ms) SELECT json_array_elements_text($1::json), $2 \
             ON CONFLICT (segment) DO NOTHING"
        }
    };
    db.timed("journal_applied.insert", async {
        sqlx::query(sql)
            .bind(json_list(names))
            .bind(now_ms)
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from)
    })
    .await?;
    Ok(())
}

/// Forgets journal segments whose files are deleted.
pub async fn forget_applied(db: &Db, names: &[String]) -> Result<(), StoreError> {
    let sql = match db.backend() {
        Backend::Sqlite => {
            "DELETE FROM journal_applied WHERE segment IN (SELECT value FROM json_each($1))"
        }
        Backend::Postgres => {
            "DELETE FROM journal_applied WHERE segment IN (SELECT json_array_elements_text($1::json))"
        }
    };
    db.timed("journal_applied.delete", async {
        sqlx::query(sql)
            .bind(json_list(names))
            .execute(db.pool())
            .await
            .map_err(StoreError::from)
    })
    .await?;
    Ok(())
}

/// An event to insert.
#[derive(Debug, Clone, Serialize)]
pub struct NewEvent {
    /// Alert id.
    #[serde(rename = "i")]
    pub alert_id: i64,
    /// Kind name.
    #[serde(rename = "k")]
    pub kind: &'static str,
    /// When (Unix ms).
    #[serde(rename = "t")]
    pub at_ms: i64,
    /// Detail JSON text.
    #[serde(rename = "d")]
    pub detail: String,
}

/// Appends events.
pub async fn insert_events(
    db: &Db,
    conn: &mut AnyConnection,
    events: &[NewEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let sql = match db.backend() {
        Backend::Sqlite => {
            "INSERT INTO alert_events (alert_id, kind, at_ms, detail) \
            SELECT json_extract(value, '$.i'), json_extract(value, '$.k'), json_extract(value, '$.t'), \
            json_extract(value, '$.d') FROM json_each($1)"
        }
        Backend::Postgres => {
            "INSERT INTO alert_events (alert_id, kind, at_ms, detail) \
            SELECT i, k, t, d FROM json_to_recordset($1::json) AS x(i bigint, k text, t bigint, d text)"
        }
    };
    db.execute_rows(conn, "alert_events.insert", sql, events)
        .await
}

/// One row of the change feed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewChange {
    /// `alert_id`.
    #[serde(rename = "i")]
    pub alert_id: i64,
    /// [`crate::alerts::change::ChangeKind::as_str`].
    #[serde(rename = "k")]
    pub kind: &'static str,
    /// When (unix ms).
    #[serde(rename = "t")]
    pub at_ms: i64,
}

/// The advisory lock that orders the change feed (`pg_advisory_xact_lock`).
const FEED_LOCK_KEY: i64 = 0x5741_5446; // "WATF"

/// Appends `changes` by `node` to the feed in the caller's transaction (PostgreSQL),
/// behind a transaction-level lock held until commit, so feed order is commit order;
/// wakes the leader's dispatcher and the other nodes' writers at commit (`NOTIFY` with
/// the node's id).
pub async fn append_changes(
    db: &Db,
    conn: &mut AnyConnection,
    changes: &[NewChange],
    node: &str,
) -> Result<(), StoreError> {
    if changes.is_empty() || db.backend() != Backend::Postgres {
        return Ok(());
    }
    db.timed("alert_changes.lock", async {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(FEED_LOCK_KEY)
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from)
    })
    .await?;
    let payload = serde_json::to_string(changes).unwrap_or_else(|_| "[]".into());
    db.timed("alert_changes.insert", async {
        sqlx::query(
            "INSERT INTO alert_changes (alert_id, kind, at_ms, node) \
             SELECT i, k, t, $2 FROM json_to_recordset($1::json) AS x(i bigint, k text, t bigint)",
        )
        .bind(payload)
        .bind(node)
        .execute(&mut *conn)
        .await
        .map_err(StoreError::from)
    })
    .await?;
    db.timed("alert_changes.notify", async {
        sqlx::query("SELECT pg_notify('watchpost_alert_changes', $1)")
            .bind(node)
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from)
    })
    .await?;
    Ok(())
}

/// The feed's last position (0 when empty).
pub async fn changes_head(db: &Db) -> Result<i64, StoreError> {
    db.timed("alert_changes.head", async {
        let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS head FROM alert_changes")
            .fetch_one(db.pool())
            .await?;
        row.try_get::<i64, _>("head").map_err(StoreError::from)
    })
    .await
}

/// One row of the change feed as read back.
#[derive(Debug, Clone)]
pub struct FeedRow {
    /// Position (commit order).
    pub seq: i64,
    /// The alert.
    pub alert_id: i64,
    /// [`crate::alerts::change::ChangeKind::as_str`].
    pub kind: String,
    /// The node that committed it.
    pub node: Option<String>,
}

/// Feed rows after `cursor`, in order, at most `limit`.
pub async fn changes_since(db: &Db, cursor: i64, limit: i64) -> Result<Vec<FeedRow>, StoreError> {
    db.timed("alert_changes.since", async {
        let rows = sqlx::query(
            "SELECT seq, alert_id, kind, node FROM alert_changes WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(cursor)
        .bind(limit)
        .fetch_all(db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FeedRow {
                    seq: r.try_get("seq")?,
                    alert_id: r.try_get("alert_id")?,
                    kind: r.try_get("kind")?,
                    node: r.try_get("node")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(StoreError::from)
    })
    .await
}

/// Deletes feed rows older than `cutoff_ms` (the leader's housekeeping).
pub async fn prune_changes(db: &Db, cutoff_ms: i64) -> Result<u64, StoreError> {
    db.timed("alert_changes.prune", async {
        sqlx::query("DELETE FROM alert_changes WHERE at_ms < $1")
            .bind(cutoff_ms)
            .execute(db.pool())
            .await
            .map(|r| r.rows_affected())
            .map_err(StoreError::from)
    })
    .await
}

/// Marks an alert flapping since `since_ms` (or stable with `None`) and records the
/// `flapping`/`stable` event, in one transaction (the dispatcher's flap damping).
pub async fn set_flapping(
    db: &Db,
    alert_id: i64,
    since_ms: Option<i64>,
    at_ms: i64,
    detail: &serde_json::Value,
) -> Result<(), StoreError> {
    let kind = if since_ms.is_some() {
        EventKind::Flapping
    } else {
        EventKind::Stable
    };
    db.timed("alerts.set_flapping", async {
        let mut tx = db.begin().await?;
        sqlx::query("UPDATE alerts SET flapping_since_ms = $1 WHERE id = $2")
            .bind(since_ms)
            .bind(alert_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO alert_events (alert_id, kind, at_ms, detail) \
             SELECT CAST($1 AS BIGINT), CAST($2 AS TEXT), CAST($3 AS BIGINT), CAST($4 AS TEXT) \
             WHERE EXISTS (SELECT 1 FROM alerts WHERE id = CAST($1 AS BIGINT))",
        )
        .bind(alert_id)
        .bind(kind.as_str())
        .bind(at_ms)
        .bind(detail.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await.map_err(StoreError::from)
    })
    .await
}

/// Alerts marked flapping, as (fingerprint, id).
pub async fn flapping(db: &Db) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = db
        .timed("alerts.flapping", async {
            sqlx::query("SELECT fingerprint, id FROM alerts WHERE flapping_since_ms IS NOT NULL")
                .fetch_all(db.pool())
                .await
                .map_err(StoreError::from)
        })
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("fingerprint")?, r.try_get("id")?)))
        .collect()
}

/// Fired and resolved events at or after `since_ms`, oldest first, as (fingerprint,
/// at_ms, firing): the state changes flap damping counts, rebuilt at start.
pub async fn transitions_since(
    db: &Db,
    since_ms: i64,
) -> Result<Vec<(String, i64, bool)>, StoreError> {
    let rows = db
        .timed("alert_events.transitions", async {
            sqlx::query(
                "SELECT a.fingerprint, e.at_ms, e.kind FROM alert_events e \
                 JOIN alerts a ON a.id = e.alert_id \
                 WHERE e.at_ms >= $1 AND e.kind IN ('fired', 'resolved') ORDER BY e.id",
            )
            .bind(since_ms)
            .fetch_all(db.pool())
            .await
            .map_err(StoreError::from)
        })
        .await?;
    rows.iter()
        .map(|r| {
            let kind: String = r.try_get("kind")?;
            Ok((
                r.try_get("fingerprint")?,
                r.try_get("at_ms")?,
                kind == "fired",
            ))
        })
        .collect()
}

/// Appends one event outside the pipeline (e.g. `notified`, written by a notifier).
pub async fn record_event(
    db: &Db,
    alert_id: i64,
    kind: &'static str,
    at_ms: i64,
    detail: &serde_json::Value,
) -> Result<(), StoreError> {
    db.timed("alert_events.record", async {
        sqlx::query(
            // An alert deleted by retention meanwhile gets no event (and no error).
            "INSERT INTO alert_events (alert_id, kind, at_ms, detail) \
             SELECT CAST($1 AS BIGINT), CAST($2 AS TEXT), CAST($3 AS BIGINT), CAST($4 AS TEXT) \
             WHERE EXISTS (SELECT 1 FROM alerts WHERE id = CAST($1 AS BIGINT))",
        )
        .bind(alert_id)
        .bind(kind)
        .bind(at_ms)
        .bind(detail.to_string())
        .execute(db.pool())
        .await
        .map_err(StoreError::from)
    })
    .await?;
    Ok(())
}

/// The latest `limit` events of an alert, oldest first.
pub async fn events(db: &Db, alert_id: i64, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
    let rows = db
        .timed("alert_events.list", async {
            sqlx::query(
                "SELECT id, kind, at_ms, detail FROM alert_events WHERE alert_id = $1 \
                 ORDER BY id DESC LIMIT $2",
            )
            .bind(alert_id)
            .bind(limit)
            .fetch_all(db.pool())
            .await
            .map_err(StoreError::from)
        })
        .await?;
    let mut out = rows
        .iter()
        .map(|r| {
            let detail: String = r.try_get("detail")?;
            Ok(StoredEvent {
                id: r.try_get("id")?,
                kind: r.try_get("kind")?,
                at_ms: r.try_get("at_ms")?,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    out.reverse();
    Ok(out)
}

/// What `GET /api/v1/alerts` filters on.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// `firing` / `resolved`.
    pub state: Option<AlertState>,
    /// Only acknowledged alerts.
    pub acknowledged: bool,
    /// Only silenced (or inhibited) alerts.
    pub silenced: bool,
    /// Only flapping alerts.
    pub flapping: bool,
    /// Severity.
    pub severity: Option<Severity>,
    /// Source.
    pub source: Option<String>,
    /// Started at or after (Unix ms).
    pub since_ms: Option<i64>,
    /// `label=value` pairs, all required.
    pub labels: Vec<(String, String)>,
    /// Ids below this (the cursor).
    pub before_id: Option<i64>,
    /// Page size.
    pub limit: i64,
}

/// Alerts matching `f`, newest (highest id) first.
pub async fn list(db: &Db, f: &ListFilter) -> Result<Vec<Alert>, StoreError> {
    let mut sql = format!("SELECT {COLUMNS} FROM alerts WHERE 1 = 1");
    let mut args: Vec<Arg> = Vec::new();
    let mut push = |sql: &mut String, clause: &str, a: Arg| {
        args.push(a);
        sql.push_str(&clause.replace('?', &format!("${}", args.len())));
    };
    if let Some(s) = f.state {
        push(&mut sql, " AND state = ?", Arg::Text(s.as_str().into()));
    }
    if f.acknowledged {
        sql.push_str(" AND ack_at_ms IS NOT NULL");
    }
    if f.silenced {
        sql.push_str(" AND (silenced_by <> '[]' OR inhibited_by IS NOT NULL)");
    }
    if f.flapping {
        sql.push_str(" AND flapping_since_ms IS NOT NULL");
    }
    if let Some(s) = f.severity {
        push(&mut sql, " AND severity = ?", Arg::Text(s.as_str().into()));
    }
    if let Some(s) = &f.source {
        push(&mut sql, " AND source = ?", Arg::Text(s.clone()));
    }
    if let Some(t) = f.since_ms {
        push(&mut sql, " AND starts_at_ms >= ?", Arg::Int(t));
    }
    for (name, value) in &f.labels {
        match db.backend() {
            Backend::Sqlite => {
                push(
                    &mut sql,
                    " AND json_extract(labels, ?)",
                    Arg::Text(format!("$.\"{name}\"")),
                );
            }
            Backend::Postgres => {
                push(
                    &mut sql,
                    " AND (labels::jsonb ->> ?)",
                    Arg::Text(name.clone()),
                );
            }
        }
        push(&mut sql, " = ?", Arg::Text(value.clone()));
    }
    if let Some(id) = f.before_id {
        push(&mut sql, " AND id < ?", Arg::Int(id));
    }
    push(&mut sql, " ORDER BY id DESC LIMIT ?", Arg::Int(f.limit));
    let rows = db
        .timed("alerts.list", async {
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for a in args {
                q = match a {
                    Arg::Text(s) => q.bind(s),
                    Arg::Int(i) => q.bind(i),
                };
            }
            q.fetch_all(db.pool()).await.map_err(StoreError::from)
        })
        .await?;
    rows.iter().map(from_row).collect()
}

/// A bind argument of a dynamically built query.
#[derive(Debug, Clone)]
pub enum Arg {
    /// Text.
    Text(String),
    /// Integer.
    Int(i64),
}

/// Retention: deletes resolved alerts last seen before `cutoff_ms` (with their events)
/// and events older than `cutoff_ms`, at most `limit` alerts per call. Returns
/// `(alerts, events)` deleted.
pub async fn delete_older_than(
    db: &Db,
    cutoff_ms: i64,
    limit: i64,
) -> Result<(u64, u64), StoreError> {
    let mut tx = db.begin().await?;
    let events = db
        .timed("alert_events.retention", async {
            sqlx::query(
                "DELETE FROM alert_events WHERE alert_id IN (SELECT id FROM alerts WHERE state = 'resolved' \
                 AND last_seen_ms < $1 ORDER BY id LIMIT $2) OR at_ms < $1",
            )
            .bind(cutoff_ms)
            .bind(limit)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)
        })
        .await?
        .rows_affected();
    let alerts = db
        .timed("alerts.retention", async {
            sqlx::query(
                "DELETE FROM alerts WHERE id IN (SELECT id FROM alerts WHERE state = 'resolved' \
                 AND last_seen_ms < $1 ORDER BY id LIMIT $2)",
            )
            .bind(cutoff_ms)
            .bind(limit)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)
        })
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok((alerts, events))
}
