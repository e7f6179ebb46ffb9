//! The outbox table (same database as the alerts): notifications are written here,
//! with an idempotency key, before anything is sent; the sender drains pending rows.
//! Also the notification log (what each receiver was last told about each group).

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::cluster::Fence;
use crate::dispatch::NotifyLogEntry;
use crate::store::{Backend, Db, StoreError, now_ms};

/// Row states.
pub mod state {
    /// Waiting to be sent (or retried).
    pub const PENDING: &str = "pending";
    /// Sent successfully.
    pub const DELIVERED: &str = "delivered";
    /// Given up: permanent error or `max_retry` exceeded.
    pub const FAILED: &str = "failed";
}

/// A row to insert.
#[derive(Debug, Clone)]
pub struct NewOutboxRow {
    /// Unique per message: group key + receiver + content hash + sequence (+ target, part).
    pub idempotency_key: String,
    /// Receiver name.
    pub receiver: String,
    /// `telegram`, `webhook` or `report`.
    pub kind: String,
    /// `telegram:CHAT_ID` or `webhook:URL`: rate limits and ordering are per target.
    pub target: String,
    /// The aggregation group (or `report:…`).
    pub group_key: String,
    /// `firing` or `resolved` (or `report`).
    pub status: String,
    /// Part number (1-based) of a split message.
    pub part: i64,
    /// Number of parts.
    pub parts: i64,
    /// What to send (JSON).
    pub payload: String,
    /// Alerts in the notification.
    pub alert_ids: Vec<i64>,
}

/// A stored row.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxRow {
    /// Row id.
    pub id: i64,
    /// Idempotency key.
    pub idempotency_key: String,
    /// Receiver name.
    pub receiver: String,
    /// `telegram`, `webhook` or `report`.
    pub kind: String,
    /// Target (`telegram:CHAT` / `webhook:URL`).
    pub target: String,
    /// Group key.
    pub group_key: String,
    /// Notification status.
    pub status: String,
    /// Part number.
    pub part: i64,
    /// Parts.
    pub parts: i64,
    /// Payload JSON.
    #[serde(skip)]
    pub payload: String,
    /// Alert ids.
    pub alert_ids: Vec<i64>,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// Attempts so far.
    pub attempts: i64,
    /// Created (unix ms).
    pub created_ms: i64,
    /// Next attempt not before (unix ms).
    pub next_attempt_ms: i64,
    /// Last change (unix ms).
    pub updated_ms: i64,
    /// Delivered (unix ms).
    pub delivered_ms: Option<i64>,
    /// Last error.
    pub last_error: Option<String>,
    /// What the receiver answered (e.g. Telegram message id).
    pub response: Option<String>,
    /// The sender holding the row (`node#instance`) while it is being sent.
    pub claimed_by: Option<String>,
    /// Until when the claim holds (unix ms); after it, another sender may take over.
    pub lease_until_ms: Option<i64>,
    /// Sends whose outcome was unknown (timed out after the request went out, or cut).
    pub ambiguous: i64,
    /// The leadership epoch the claim was made under (`None`: unfenced or unclaimed).
    pub claim_epoch: Option<i64>,
}

const COLUMNS: &str = "id, idempotency_key, receiver, kind, target, group_key, status, part, parts, \
    payload, alert_ids, state, attempts, created_ms, next_attempt_ms, updated_ms, delivered_ms, \
    last_error, response, claimed_by, lease_until_ms, ambiguous, claim_epoch";

fn row(r: &AnyRow) -> Result<OutboxRow, sqlx::Error> {
    let ids: String = r.try_get("alert_ids")?;
    Ok(OutboxRow {
        id: r.try_get("id")?,
        idempotency_key: r.try_get("idempotency_key")?,
        receiver: r.try_get("receiver")?,
        kind: r.try_get("kind")?,
        target: r.try_get("target")?,
        group_key: r.try_get("group_key")?,
        status: r.try_get("status")?,
        part: r.try_get("part")?,
        parts: r.try_get("parts")?,
        payload: r.try_get("payload")?,
        alert_ids: serde_json::from_str(&ids).unwrap_or_default(),
        state: r.try_get("state")?,
        attempts: r.try_get("attempts")?,
        created_ms: r.try_get("created_ms")?,
        next_attempt_ms: r.try_get("next_attempt_ms")?,
        updated_ms: r.try_get("updated_ms")?,
        delivered_ms: r.try_get("delivered_ms")?,
        last_error: r.try_get("last_error")?,
        response: r.try_get("response")?,
        claimed_by: r.try_get("claimed_by")?,
        lease_until_ms: r.try_get("lease_until_ms")?,
        ambiguous: r.try_get("ambiguous")?,
        claim_epoch: r.try_get("claim_epoch")?,
    })
}

/// The recorded end of one attempt (or of a claim taken over from a sender that died).
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Delivered; what the receiver answered.
    Delivered {
        /// E.g. the Telegram message id.
        response: Option<String>,
    },
    /// Not delivered yet: try again at `at_ms`.
    Retry {
        /// Next attempt, unix ms.
        at_ms: i64,
        /// Why this attempt did not deliver.
        error: String,
        /// The attempt's outcome is unknown (counted in the row's `ambiguous`).
        ambiguous: bool,
    },
    /// Given up for good.
    Failed {
        /// Why.
        error: String,
        /// The last attempt's outcome is unknown.
        ambiguous: bool,
    },
}

/// Filters for [`Outbox::list`].
#[derive(Debug, Clone, Default)]
pub struct OutboxFilter {
    /// Only this state.
    pub state: Option<String>,
    /// Only this receiver.
    pub receiver: Option<String>,
    /// Only this alert.
    pub alert_id: Option<i64>,
    /// Only ids below this (pagination, newest first).
    pub before_id: Option<i64>,
    /// At most this many.
    pub limit: i64,
}

/// The outbox repository.
#[derive(Clone)]
pub struct Outbox {
    db: Db,
    fence: Fence,
}

impl Outbox {
    /// An outbox on `db`.
    pub fn new(db: Db) -> Self {
        Outbox {
            db,
            fence: Fence::None,
        }
    }

    /// Writes of the notification log and new rows only under this node's leadership
    /// epoch (checked in their transaction; a takeover waits for them to commit).
    pub fn with_fence(mut self, fence: Fence) -> Self {
        self.fence = fence;
        self
    }

    /// `cluster.node_timeout` in ms (0 when unfenced).
    fn node_timeout_ms(&self) -> i64 {
        match &self.fence {
            Fence::Cluster(c) => c.timers().1.as_millis() as i64,
            Fence::None => 0,
        }
    }

    /// In `tx`: refuses unless this node leads under the stored epoch, and holds the
    /// term row (PostgreSQL `FOR SHARE`) so a takeover waits for the commit.
    async fn check_fence(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ) -> Result<(), StoreError> {
        let expected = match self.fence.epoch() {
            Ok(None) => return Ok(()),
            Ok(Some(e)) => e,
            Err(_) => {
                return Err(StoreError::Fenced {
                    expected: None,
                    current: None,
                });
            }
        };
        let sql = match self.db.backend() {
            Backend::Postgres => "SELECT epoch FROM cluster_leader WHERE id = 1 FOR SHARE",
            Backend::Sqlite => "SELECT epoch FROM cluster_leader WHERE id = 1",
        };
        let current: i64 = sqlx::query(sql)
            .fetch_one(&mut **tx)
            .await?
            .try_get("epoch")?;
        if current != expected {
            return Err(StoreError::Fenced {
                expected: Some(expected),
                current: Some(current),
            });
        }
        Ok(())
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Inserts `rows` (skipping keys already present) and, in the same transaction,
    /// records `log` for its group and receiver. Returns how many rows were new.
    pub async fn enqueue(
        &self,
        rows: &[NewOutboxRow],
        log: Option<(&str, &str, &NotifyLogEntry)>,
    ) -> Result<u64, StoreError> {
        let logs: Vec<(&str, &str, &NotifyLogEntry)> = log.into_iter().collect();
        self.enqueue_many(rows, &logs).await
    }

    /// Like [`Outbox::enqueue`] with any number of log entries, in one transaction.
    pub async fn enqueue_many(
        &self,
        rows: &[NewOutboxRow],
        logs: &[(&str, &str, &NotifyLogEntry)],
    ) -> Result<u64, StoreError> {
        let now = now_ms();
        self.db
            .timed("notify.outbox_enqueue", async {
                let mut tx = self.db.begin().await?;
                self.check_fence(&mut tx).await?;
                let mut inserted = 0;
                for r in rows {
                    let ids = serde_json::to_string(&r.alert_ids).unwrap_or_else(|_| "[]".into());
                    let res = sqlx::query(
                        "INSERT INTO notification_outbox (idempotency_key, receiver, kind, target, \
                         group_key, status, part, parts, payload, alert_ids, state, attempts, \
                         created_ms, next_attempt_ms, updated_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', 0, $11, $11, $11) \
                         ON CONFLICT (idempotency_key) DO NOTHING",
                    )
                    .bind(&r.idempotency_key)
                    .bind(&r.receiver)
                    .bind(&r.kind)
                    .bind(&r.target)
                    .bind(&r.group_key)
                    .bind(&r.status)
                    .bind(r.part)
                    .bind(r.parts)
                    .bind(&r.payload)
                    .bind(ids)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    inserted += res.rows_affected();
                }
                for (group_key, receiver, entry) in logs {
                    upsert_log(&mut tx, group_key, receiver, entry, now).await?;
                }
                tx.commit().await?;
                Ok::<_, StoreError>(inserted)
            })
            .await
    }

    /// Records a notification-log entry on its own.
    pub async fn save_log(
        &self,
        group_key: &str,
        receiver: &str,
        entry: &NotifyLogEntry,
    ) -> Result<(), StoreError> {
        self.db
            .timed("notify.log_save", async {
                let mut tx = self.db.begin().await?;
                self.check_fence(&mut tx).await?;
                upsert_log(&mut tx, group_key, receiver, entry, now_ms()).await?;
                tx.commit().await?;
                Ok::<_, StoreError>(())
            })
            .await
    }

    /// Deletes the log of a group that is gone.
    pub async fn delete_log(&self, group_key: &str, receiver: &str) -> Result<(), StoreError> {
        self.db
            .timed("notify.log_delete", async {
                let mut tx = self.db.begin().await?;
                self.check_fence(&mut tx).await?;
                sqlx::query("DELETE FROM notification_log WHERE group_key = $1 AND receiver = $2")
                    .bind(group_key)
                    .bind(receiver)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok::<_, StoreError>(())
            })
            .await
    }

    /// The whole notification log; entries older than `max_age_ms` are deleted first.
    pub async fn load_log(
        &self,
        max_age_ms: i64,
    ) -> Result<Vec<(String, String, NotifyLogEntry)>, StoreError> {
        let cutoff = now_ms() - max_age_ms;
        self.db
            .timed("notify.log_load", async {
                sqlx::query("DELETE FROM notification_log WHERE updated_ms < $1")
                    .bind(cutoff)
                    .execute(self.db.pool())
                    .await?;
                let rows = sqlx::query("SELECT group_key, receiver, entry FROM notification_log")
                    .fetch_all(self.db.pool())
                    .await?;
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    let entry: String = r.try_get("entry")?;
                    match serde_json::from_str(&entry) {
                        Ok(e) => out.push((r.try_get("group_key")?, r.try_get("receiver")?, e)),
                        Err(e) => {
                            tracing::warn!(error = %e, "unreadable notification log entry skipped")
                        }
                    }
                }
                Ok::<_, StoreError>(out)
            })
            .await
    }

    /// Targets with pending rows.
    pub async fn pending_targets(&self) -> Result<Vec<String>, StoreError> {
        self.db
            .timed("notify.outbox_pending_targets", async {
                let rows = sqlx::query(
                    "SELECT DISTINCT target FROM notification_outbox WHERE state = 'pending'",
                )
                .fetch_all(self.db.pool())
                .await?;
                rows.iter()
                    .map(|r| r.try_get::<String, _>("target").map_err(StoreError::from))
                    .collect()
            })
            .await
    }

    /// The oldest pending row of `target` (rows of a target go out in order): the only
    /// row of the target a sender may claim.
    pub async fn head(&self, target: &str) -> Result<Option<OutboxRow>, StoreError> {
        self.db
            .timed("notify.outbox_head", async {
                let sql = format!(
                    "SELECT {COLUMNS} FROM notification_outbox WHERE state = 'pending' AND target = $1 \
                     ORDER BY id LIMIT 1"
                );
                let r = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(target)
                    .fetch_optional(self.db.pool())
                    .await?;
                r.as_ref().map(row).transpose().map_err(StoreError::from)
            })
            .await
    }

    /// Claims row `id` for `claimer` until `lease_until_ms`, atomically: only while it is
    /// pending, due, and not held by another claim (unless that claim's lease ran out, or
    /// its holder matches `stale`, a `LIKE` pattern of claimers known to be dead, or it
    /// was made under an earlier leadership epoch). Taking over a claim counts the row's
    /// send as ambiguous: its holder may have sent it.
    ///
    /// With `epoch` (a cluster's fencing token) the claim succeeds only while that epoch
    /// is current, and records it: a leader that lost its term cannot claim any more.
    ///
    /// One conditional `UPDATE … RETURNING` on both databases. On PostgreSQL a second
    /// claimer blocks on the row lock and then re-checks the conditions against the new
    /// row, so exactly one wins. (`FOR UPDATE SKIP LOCKED` would hand the *next* row of
    /// the chat to the loser while the head is in flight, breaking order per chat.)
    pub async fn claim(
        &self,
        id: i64,
        claimer: &str,
        lease_until_ms: i64,
        stale: &str,
        epoch: Option<i64>,
    ) -> Result<Option<OutboxRow>, StoreError> {
        let now = now_ms();
        // A claim from an earlier term is stale once its holder is gone: on SQLite that
        // is certain (one process per file); on PostgreSQL its node must have stopped
        // heartbeating, else it may still be sending (and renewing its lease).
        let older = match (epoch, self.db.backend()) {
            (None, _) => String::new(),
            (Some(_), Backend::Sqlite) => " OR claim_epoch IS NULL OR claim_epoch < $6".into(),
            (Some(_), Backend::Postgres) => format!(
                " OR ((claim_epoch IS NULL OR claim_epoch < $6) AND NOT EXISTS (\
                 SELECT 1 FROM cluster_nodes n WHERE notification_outbox.claimed_by LIKE n.id || '#%' \
                 AND n.heartbeat_ms >= (extract(epoch from clock_timestamp()) * 1000)::bigint - {}))",
                self.node_timeout_ms()
            ),
        };
        let (set_epoch, fence) = match epoch {
            Some(_) => (
                "$6",
                " AND EXISTS (SELECT 1 FROM cluster_leader WHERE id = 1 AND epoch = $6)",
            ),
            None => ("NULL", ""),
        };
        self.db
            .timed("notify.outbox_claim", async {
                let sql = format!(
                    "UPDATE notification_outbox SET claimed_by = $2, lease_until_ms = $3, \
                     updated_ms = $4, claim_epoch = {set_epoch}, \
                     ambiguous = ambiguous + CASE WHEN claimed_by IS NULL THEN 0 ELSE 1 END \
                     WHERE id = $1 AND state = 'pending' AND next_attempt_ms <= $4 \
                     AND (claimed_by IS NULL OR lease_until_ms <= $4 \
                          OR (claimed_by <> $2 AND (claimed_by LIKE $5{older}))){fence} \
                     RETURNING {COLUMNS}"
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .bind(claimer)
                    .bind(lease_until_ms)
                    .bind(now)
                    .bind(stale);
                if let Some(e) = epoch {
                    q = q.bind(e);
                }
                let r = q.fetch_optional(self.db.pool()).await?;
                r.as_ref().map(row).transpose().map_err(StoreError::from)
            })
            .await
    }

    /// Gives up `claimer`'s claim on row `id` without an attempt (this node stopped
    /// leading before the request went out): the next leader sends it, not as a
    /// takeover.
    pub async fn release(&self, id: i64, claimer: &str) -> Result<bool, StoreError> {
        self.db
            .timed("notify.outbox_release", async {
                sqlx::query(
                    "UPDATE notification_outbox SET claimed_by = NULL, lease_until_ms = NULL, \
                     claim_epoch = NULL WHERE id = $1 AND claimed_by = $2 AND state = 'pending'",
                )
                .bind(id)
                .bind(claimer)
                .execute(self.db.pool())
                .await
                .map(|r| r.rows_affected() == 1)
                .map_err(StoreError::from)
            })
            .await
    }

    /// Extends `claimer`'s lease on row `id` (while its send is in flight); `Ok(false)`
    /// when the claim is gone.
    pub async fn renew(
        &self,
        id: i64,
        claimer: &str,
        lease_until_ms: i64,
    ) -> Result<bool, StoreError> {
        self.db
            .timed("notify.outbox_renew", async {
                sqlx::query(
                    "UPDATE notification_outbox SET lease_until_ms = $3 \
                     WHERE id = $1 AND claimed_by = $2 AND state = 'pending'",
                )
                .bind(id)
                .bind(claimer)
                .bind(lease_until_ms)
                .execute(self.db.pool())
                .await
                .map(|r| r.rows_affected() == 1)
                .map_err(StoreError::from)
            })
            .await
    }

    /// Records `verdict` on row `id` and releases the claim, only if `claimer` still holds
    /// it: `Ok(false)` when another sender took the row over (its lease had run out).
    pub async fn record(
        &self,
        id: i64,
        claimer: &str,
        verdict: &Verdict,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let (state, next_ms, delivered_ms, response, error, ambiguous) = match verdict {
            Verdict::Delivered { response } => (
                state::DELIVERED,
                None,
                Some(now),
                response.clone(),
                None,
                false,
            ),
            Verdict::Retry {
                at_ms,
                error,
                ambiguous,
            } => (
                state::PENDING,
                Some(*at_ms),
                None,
                None,
                Some(error.clone()),
                *ambiguous,
            ),
            Verdict::Failed { error, ambiguous } => (
                state::FAILED,
                None,
                None,
                None,
                Some(error.clone()),
                *ambiguous,
            ),
        };
        // Shown to every role: no receiver URL (secret paths, tokens) or password.
        let response = response.map(|r| crate::redact::text(&r));
        let error = error.map(|e| crate::redact::text(&e));
        self.db
            .timed("notify.outbox_record", async {
                sqlx::query(
                    "UPDATE notification_outbox SET state = $3, attempts = attempts + 1, \
                     next_attempt_ms = COALESCE($4, next_attempt_ms), \
                     delivered_ms = COALESCE($5, delivered_ms), response = COALESCE($6, response), \
                     last_error = COALESCE($7, last_error), ambiguous = ambiguous + $8, \
                     updated_ms = $9, claimed_by = NULL, lease_until_ms = NULL \
                     WHERE id = $1 AND claimed_by = $2 AND state = 'pending'",
                )
                .bind(id)
                .bind(claimer)
                .bind(state)
                .bind(next_ms)
                .bind(delivered_ms)
                .bind(response)
                .bind(error)
                .bind(i64::from(ambiguous))
                .bind(now)
                .execute(self.db.pool())
                .await
                .map(|r| r.rows_affected() == 1)
                .map_err(StoreError::from)
            })
            .await
    }

    /// One row.
    pub async fn get(&self, id: i64) -> Result<Option<OutboxRow>, StoreError> {
        self.db
            .timed("notify.outbox_get", async {
                let sql = format!("SELECT {COLUMNS} FROM notification_outbox WHERE id = $1");
                let r = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(self.db.pool())
                    .await?;
                r.as_ref().map(row).transpose().map_err(StoreError::from)
            })
            .await
    }

    /// What the receiver answered to the row with `key` (the message a later part
    /// replies to); `None` when it is unknown or not delivered.
    pub async fn response_of(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.db
            .timed("notify.outbox_response", async {
                let r: Option<(Option<String>,)> = sqlx::query_as(
                    "SELECT response FROM notification_outbox WHERE idempotency_key = $1 \
                     AND state = 'delivered'",
                )
                .bind(key)
                .fetch_optional(self.db.pool())
                .await?;
                Ok(r.and_then(|(v,)| v))
            })
            .await
    }

    /// Pending rows per receiver.
    pub async fn depth_by_receiver(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.db
            .timed("notify.outbox_depth", async {
                let rows = sqlx::query(
                    "SELECT receiver, COUNT(*) AS n FROM notification_outbox \
                     WHERE state = 'pending' GROUP BY receiver",
                )
                .fetch_all(self.db.pool())
                .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get("receiver")?, r.try_get("n")?)))
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(StoreError::from)
            })
            .await
    }

    /// Rows, newest first.
    pub async fn list(&self, f: &OutboxFilter) -> Result<Vec<OutboxRow>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM notification_outbox WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if f.state.is_some() {
            sql.push_str(&format!(" AND state = {}", next()));
        }
        if f.receiver.is_some() {
            sql.push_str(&format!(" AND receiver = {}", next()));
        }
        if f.before_id.is_some() {
            sql.push_str(&format!(" AND id < {}", next()));
        }
        if f.alert_id.is_some() {
            // alert_ids is a JSON array of integers: match the number as a whole element.
            sql.push_str(&format!(
                " AND (',' || REPLACE(REPLACE(REPLACE(alert_ids, '[', ''), ']', ''), ' ', '') || ',') LIKE {}",
                next()
            ));
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", next()));
        self.db
            .timed("notify.outbox_list", async {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                if let Some(s) = &f.state {
                    q = q.bind(s.clone());
                }
                if let Some(r) = &f.receiver {
                    q = q.bind(r.clone());
                }
                if let Some(b) = f.before_id {
                    q = q.bind(b);
                }
                if let Some(a) = f.alert_id {
                    q = q.bind(format!("%,{a},%"));
                }
                q = q.bind(f.limit);
                let rows = q.fetch_all(self.db.pool()).await?;
                rows.iter()
                    .map(row)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(StoreError::from)
            })
            .await
    }

    /// Deletes delivered and failed rows last changed before `cutoff_ms`.
    pub async fn prune(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        self.db
            .timed("notify.outbox_prune", async {
                sqlx::query(
                    "DELETE FROM notification_outbox WHERE state <> 'pending' AND updated_ms < $1",
                )
                .bind(cutoff_ms)
                .execute(self.db.pool())
                .await
                .map(|r| r.rows_affected())
                .map_err(StoreError::from)
            })
            .await
    }
}

async fn upsert_log(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    group_key: &str,
    receiver: &str,
    entry: &NotifyLogEntry,
    now: i64,
) -> Result<(), sqlx::Error> {
    let json = serde_json::to_string(entry).unwrap_or_else(|_| "{}".into());
    sqlx::query(
        "INSERT INTO notification_log (group_key, receiver, entry, updated_ms) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (group_key, receiver) DO UPDATE SET entry = excluded.entry, updated_ms = excluded.updated_ms",
    )
    .bind(group_key)
    .bind(receiver)
    .bind(json)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map(|_| ())
}
