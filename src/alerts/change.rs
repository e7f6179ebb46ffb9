//! What the pipeline hands to the notifier: one [`AlertChange`] per committed change of
//! an alert, on a bounded `tokio::sync::mpsc` channel, in commit order.
//!
//! Notification rules the flags encode:
//! * `silenced` or `inhibited`: stored and listed, never notified.
//! * `acknowledged`: do not re-notify while firing; a `Resolved` change is still worth
//!   telling, and a `SeverityRaised` change lifts the acknowledgement (it arrives with
//!   `acknowledged: false`).
//! * [`AlertChange::should_notify`] sums this up for a receiver.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc;

use super::model::{Alert, AlertState, Severity, datetime};

/// Capacity of the change channel: the pipeline waits when the notifier is this far
/// behind.
pub const CHANGE_CHANNEL_CAPACITY: usize = 10_000;

/// Sending half of the change channel (held by the pipeline).
pub type ChangeSender = mpsc::Sender<AlertChange>;
/// Receiving half of the change channel (for the notifier).
pub type ChangeReceiver = mpsc::Receiver<AlertChange>;

/// A new change channel.
pub fn channel() -> (ChangeSender, ChangeReceiver) {
    mpsc::channel(CHANGE_CHANNEL_CAPACITY)
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Started firing: new, or again after resolving (a new incident).
    Fired,
    /// Received again while firing.
    Repeated,
    /// Resolved.
    Resolved,
    /// Acknowledged by an operator.
    Acked,
    /// Muted by a silence or inhibited by another alert.
    Silenced,
    /// No longer silenced nor inhibited.
    Unsilenced,
    /// Severity went up (lifts an acknowledgement).
    SeverityRaised,
}

impl ChangeKind {
    /// The name used in events and the stream.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Fired => "fired",
            ChangeKind::Repeated => "repeated",
            ChangeKind::Resolved => "resolved",
            ChangeKind::Acked => "acked",
            ChangeKind::Silenced => "silenced",
            ChangeKind::Unsilenced => "unsilenced",
            ChangeKind::SeverityRaised => "severity_raised",
        }
    }

    /// The kind named `s` (as written by [`ChangeKind::as_str`]).
    pub fn parse(s: &str) -> Option<ChangeKind> {
        [
            ChangeKind::Fired,
            ChangeKind::Repeated,
            ChangeKind::Resolved,
            ChangeKind::Acked,
            ChangeKind::Silenced,
            ChangeKind::Unsilenced,
            ChangeKind::SeverityRaised,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One committed change of one alert: the alert after the change, and what changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertChange {
    /// What changed.
    pub kind: ChangeKind,
    /// Store id (links, bot commands).
    pub id: i64,
    /// Identity: hash of source + sorted labels.
    pub fingerprint: String,
    /// Origin (`api`, `prometheus`, `alertmanager`, `ntopng`, `rules`, …).
    pub source: String,
    /// `alertname` label, if any.
    pub alertname: Option<String>,
    /// Message.
    pub message: String,
    /// Labels (route and group on these; `severity` is added when only a field).
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Classified severity.
    pub severity: Severity,
    /// Classified type.
    #[serde(rename = "type")]
    pub alert_type: String,
    /// 0–100.
    pub risk_score: i64,
    /// Firing or resolved.
    pub state: AlertState,
    /// Muted by a silence.
    pub silenced: bool,
    /// Inhibited by another firing alert.
    pub inhibited: bool,
    /// Acknowledged (not re-notified until it resolves or its severity rises).
    pub acknowledged: bool,
    /// Who acknowledged it, if anyone (resolve messages name them).
    pub acknowledged_by: Option<String>,
    /// Start of the current incident.
    pub starts_at: DateTime<Utc>,
    /// End (resolved), or when it resolves unless refreshed.
    pub ends_at: Option<DateTime<Utc>>,
    /// Link back to the source (Prometheus' `generatorURL`).
    pub generator_url: Option<String>,
    /// Receipts while firing.
    pub count: i64,
}

impl AlertChange {
    /// The change `kind` of `alert` (the alert as committed).
    pub fn new(kind: ChangeKind, alert: &Alert) -> AlertChange {
        AlertChange {
            kind,
            id: alert.id,
            fingerprint: alert.fingerprint.clone(),
            source: alert.source.clone(),
            alertname: alert.alertname.clone(),
            message: alert.message.clone(),
            labels: alert.match_labels(),
            annotations: alert.annotations.clone(),
            severity: alert.severity,
            alert_type: alert.alert_type.clone(),
            risk_score: alert.risk_score,
            state: alert.state,
            silenced: alert.is_silenced(),
            inhibited: alert.is_inhibited(),
            acknowledged: alert.ack.is_some(),
            acknowledged_by: alert.ack.as_ref().map(|a| a.by.clone()),
            starts_at: datetime(alert.starts_at_ms),
            ends_at: alert.ends_at_ms.map(datetime),
            generator_url: alert.generator_url.clone(),
            count: alert.count,
        }
    }

    /// Silenced or inhibited: never notified.
    pub fn suppressed(&self) -> bool {
        self.silenced || self.inhibited
    }

    /// Whether a receiver should hear about this change at all: not suppressed, and
    /// not a firing re-notification of an acknowledged alert.
    pub fn should_notify(&self) -> bool {
        if self.suppressed() {
            return false;
        }
        match self.kind {
            ChangeKind::Resolved => true,
            ChangeKind::Acked => false,
            _ => !(self.acknowledged && self.state == AlertState::Firing),
        }
    }
}
