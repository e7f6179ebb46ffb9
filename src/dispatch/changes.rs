//! The alert pipeline's committed changes, into the dispatcher.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{AlertNotice, AlertState};
use crate::alerts::change::{AlertChange, ChangeKind, ChangeReceiver};
use crate::alerts::model;

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
