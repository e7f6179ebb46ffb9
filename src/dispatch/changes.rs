//! The alert pipeline's committed changes, into the dispatcher; and the stored alerts
//! the dispatcher rebuilds its groups from at start.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{AlertNotice, AlertSource, AlertState};
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
        AlertNotice::from(AlertChange::new(kind, a))
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
            severity_raised: c.kind == ChangeKind::SeverityRaised,
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
