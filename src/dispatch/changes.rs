//! The alert pipeline's committed changes, into the dispatcher; and the stored alerts
//! the dispatcher rebuilds its groups from at start.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::{AlertFeed, AlertNotice, AlertSource, AlertState};
use crate::alerts::change::{AlertChange, ChangeKind, ChangeReceiver};
use crate::alerts::{model, repo};
use crate::store::Db;

/// Fingerprints looked up per query when restoring.
const LOOKUP_CHUNK: usize = 5_000;

/// The alerts table as the dispatcher's [`AlertSource`].
pub struct StoredAlerts(pub Db);

impl StoredAlerts {
    fn notice(a: &model::Alert) -> AlertNotice {
        let kind = match a.state {
            model::AlertState::Firing => ChangeKind::Fired,
            model::AlertState::Resolved => ChangeKind::Resolved,
        };
        let mut n = AlertNotice::from(AlertChange::new(kind, a));
        n.flapping = a.flapping_since_ms.is_some();
        n
    }
}

#[async_trait::async_trait]
impl AlertSource for StoredAlerts {
    async fn firing(&self) -> anyhow::Result<Vec<AlertNotice>> {
        Ok(repo::firing(&self.0)
            .await?
            .iter()
            .map(Self::notice)
            .collect())
    }

    async fn by_fingerprints(&self, fps: &[String]) -> anyhow::Result<Vec<AlertNotice>> {
        let mut conn = self.0.pool().acquire().await?;
        let mut out = Vec::with_capacity(fps.len());
        for chunk in fps.chunks(LOOKUP_CHUNK) {
            let list: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let alerts = repo::by_fingerprints(&self.0, &mut conn, &list).await?;
            out.extend(alerts.iter().map(Self::notice));
        }
        Ok(out)
    }

    async fn transitions(&self, since_ms: i64) -> anyhow::Result<Vec<(String, i64, bool)>> {
        Ok(repo::transitions_since(&self.0, since_ms).await?)
    }

    async fn flapping(&self) -> anyhow::Result<Vec<(String, i64)>> {
        Ok(repo::flapping(&self.0).await?)
    }

    async fn set_flapping(
        &self,
        id: i64,
        since_ms: Option<i64>,
        at_ms: i64,
        detail: &serde_json::Value,
    ) -> anyhow::Result<()> {
        Ok(repo::set_flapping(&self.0, id, since_ms, at_ms, detail).await?)
    }
}

/// Feed rows read per query.
const FEED_BATCH: i64 = 2_000;
/// How often the feed is polled when no notification comes.
const FEED_POLL: Duration = Duration::from_secs(1);
/// How long feed rows are kept (a new leader reads from the head, so only a reader
/// that falls behind by more than this would miss rows).
const FEED_KEEP: Duration = Duration::from_secs(3600);

/// The database's alert change feed as the dispatcher's [`AlertFeed`].
pub struct StoredChanges {
    db: Db,
    wake: Arc<Notify>,
}

impl StoredChanges {
    /// The feed of `db`, woken by `wake` (the cluster connection's `LISTEN`).
    pub fn new(db: Db, wake: Arc<Notify>) -> Self {
        StoredChanges { db, wake }
    }
}

#[async_trait::async_trait]
impl AlertFeed for StoredChanges {
    async fn head(&self) -> anyhow::Result<i64> {
        Ok(repo::changes_head(&self.db).await?)
    }

    async fn since(&self, cursor: i64) -> anyhow::Result<(Vec<AlertNotice>, i64)> {
        let rows = repo::changes_since(&self.db, cursor, FEED_BATCH).await?;
        let Some(next) = rows.last().map(|r| r.seq) else {
            return Ok((Vec::new(), cursor));
        };
        let mut ids: Vec<i64> = rows.iter().map(|r| r.alert_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let alerts: HashMap<i64, model::Alert> = repo::by_ids(&self.db, &ids)
            .await?
            .into_iter()
            .map(|a| (a.id, a))
            .collect();
        let notices = rows
            .iter()
            .filter_map(|r| {
                let alert = alerts.get(&r.alert_id)?;
                let kind = ChangeKind::parse(&r.kind)?;
                Some(AlertNotice::from(AlertChange::new(kind, alert)))
            })
            .collect();
        Ok((notices, next))
    }

    async fn wait(&self) {
        tokio::select! {
            _ = self.wake.notified() => {}
            _ = tokio::time::sleep(FEED_POLL) => {}
        }
    }

    async fn housekeeping(&self) {
        let cutoff = crate::store::now_ms() - FEED_KEEP.as_millis() as i64;
        match repo::prune_changes(&self.db, cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "old alert change feed rows deleted"),
            Err(e) => tracing::warn!(error = %e, "cannot prune the alert change feed"),
        }
    }
}

impl From<AlertChange> for AlertNotice {
    fn from(c: AlertChange) -> AlertNotice {
        let value = c.annotations.get("value").cloned();
        AlertNotice {
            id: c.id,
            fingerprint: c.fingerprint,
            source: c.source,
            message: c.message,
            labels: c.labels,
            annotations: c.annotations,
            severity: c.severity.as_str().to_string(),
            state: match c.state {
                model::AlertState::Firing => AlertState::Firing,
                model::AlertState::Resolved => AlertState::Resolved,
            },
            starts_at: c.starts_at,
            ends_at: c.ends_at,
            value,
            generator_url: c.generator_url,
            silenced: c.silenced,
            inhibited: c.inhibited,
            acknowledged: c.acknowledged,
            acknowledged_by: c.acknowledged_by,
            severity_raised: c.kind == ChangeKind::SeverityRaised,
            flapping: false,
        }
    }
}

/// Hands every committed change to the dispatcher, in commit order, until `token` is
/// cancelled or either side closes. Waits when the dispatcher is behind (the pipeline's
/// channel then fills and the pipeline waits too: nothing is dropped).
pub async fn forward(
    mut changes: ChangeReceiver,
    dispatcher: mpsc::Sender<AlertNotice>,
    token: CancellationToken,
) {
    loop {
        let change = tokio::select! {
            _ = token.cancelled() => return,
            c = changes.recv() => match c {
                Some(c) => c,
                None => return,
            },
        };
        tracing::trace!(
            id = change.id,
            kind = change.kind.as_str(),
            "alert change to dispatch"
        );
        if dispatcher.send(AlertNotice::from(change)).await.is_err() {
            return;
        }
    }
}
