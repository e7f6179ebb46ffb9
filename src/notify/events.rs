//! `notified` events in the alert event log: one per alert per finished delivery
//! (delivered or failed), so an alert's timeline shows who was told and when.

use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use super::sender::{DeliveryOutcome, DeliveryReport};
use crate::alerts::repo;
use crate::store::{Db, now_ms};

/// Records delivery reports until `token` is cancelled.
pub async fn record_deliveries(
    mut reports: broadcast::Receiver<DeliveryReport>,
    db: Db,
    token: CancellationToken,
) {
    loop {
        let report = tokio::select! {
            _ = token.cancelled() => return,
            r = reports.recv() => r,
        };
        match report {
            Ok(r) => record(&db, &r).await,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "notified events fell behind; some are not recorded"
                )
            }
            Err(RecvError::Closed) => return,
        }
    }
}

async fn record(db: &Db, r: &DeliveryReport) {
    let detail = detail(r);
    let at = now_ms();
    for id in &r.alert_ids {
        if let Err(e) = repo::record_event(db, *id, "notified", at, &detail).await {
            tracing::warn!(alert = id, error = %e, "cannot record notified event");
        }
    }
}

/// The event detail: receiver, target (a webhook's URL reduced to its endpoint: every
/// role reads alert events), status, outcome (and reason), attempts, part.
fn detail(r: &DeliveryReport) -> serde_json::Value {
    let (outcome, reason) = match &r.outcome {
        DeliveryOutcome::Delivered => ("delivered", None),
        DeliveryOutcome::Failed { reason } => ("failed", Some(reason.as_str())),
    };
    let mut d = serde_json::json!({
        "receiver": r.receiver,
        "target": crate::redact::target(&r.target),
        "status": r.status,
        "outcome": outcome,
        "attempts": r.attempts,
    });
    if let Some(reason) = reason {
        d["reason"] = reason.into();
    }
    if r.parts > 1 {
        d["part"] = r.part.into();
        d["parts"] = r.parts.into();
    }
    d
}
