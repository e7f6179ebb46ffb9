//! Alerts watchpost raises itself (missed heartbeats, agents down): stored in the
//! order raised, each retried until the pipeline takes it, so a resolve never
//! overtakes its firing even while the database is down.

use super::AlertService;
use super::ingest::RawAlert;

/// An ordered, retrying submitter of raised alerts.
pub struct Raiser {
    alerts: AlertService,
    /// What raises them, for logs.
    what: &'static str,
    /// Changes in the order raised, until stored.
    unsent: tokio::sync::Mutex<Vec<RawAlert>>,
}

impl Raiser {
    /// Raises through `alerts`; `what` names the raiser in logs.
    pub fn new(alerts: AlertService, what: &'static str) -> Self {
        Self {
            alerts,
            what,
            unsent: tokio::sync::Mutex::new(Vec::new()),
        }
    }

    /// Queues `alert` behind the ones not stored yet, and stores what it can.
    pub async fn raise(&self, alert: RawAlert) {
        let mut unsent = self.unsent.lock().await;
        unsent.push(alert);
        self.submit_in_order(&mut unsent).await;
    }

    /// Stores what is waiting (call now and then).
    pub async fn retry(&self) {
        let mut unsent = self.unsent.lock().await;
        self.submit_in_order(&mut unsent).await;
    }

    /// Stores the waiting changes one by one, stopping at the first that fails.
    async fn submit_in_order(&self, unsent: &mut Vec<RawAlert>) {
        while let Some(next) = unsent.first() {
            match self.alerts.ingest(vec![next.clone()], None).await {
                Ok(_) => {
                    unsent.remove(0);
                }
                Err(e) => {
                    tracing::warn!(error = %e, waiting = unsent.len(), "{} alert not stored yet; retrying", self.what);
                    return;
                }
            }
        }
    }
}
