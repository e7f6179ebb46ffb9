//! Alerts watchpost raises itself (missed heartbeats, agents down): stored in the
//! order raised, each retried until the pipeline takes it, so a resolve never
//! overtakes its firing even while the database is down.

use std::collections::BTreeMap;

use super::AlertService;
use super::ingest::RawAlert;
use super::model::Severity;

/// What watchpost says about an alert it raises.
pub struct Raised {
    /// Its labels (`alertname` included).
    pub labels: BTreeMap<String, String>,
    /// Its severity.
    pub severity: Option<Severity>,
    /// The type when classification finds none.
    pub type_fallback: &'static str,
    /// One line; also the message.
    pub summary: String,
    /// The details.
    pub description: String,
}

impl Raised {
    /// The alert, firing or resolved at `at_ms`, from source `watchpost`.
    pub fn at(self, firing: bool, at_ms: i64) -> RawAlert {
        RawAlert {
            source: super::rules::SOURCE.to_string(),
            message: Some(self.summary.clone()),
            severity: self.severity,
            type_hint: None,
            type_fallback: Some(self.type_fallback),
            source_score: None,
            labels: self.labels,
            annotations: [
                ("summary".to_string(), self.summary),
                ("description".to_string(), self.description),
            ]
            .into_iter()
            .collect(),
            starts_at_ms: firing.then_some(at_ms),
            ends_at_ms: (!firing).then_some(at_ms),
            generator_url: None,
        }
    }
}

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
