//! In-process event bus: alert lifecycle events fan out to the WebSocket stream (and
//! anything else that watches) without the alert pipeline knowing its listeners.

use serde::Serialize;
use tokio::sync::broadcast;

/// Events buffered per slow subscriber before it starts missing some.
const CAPACITY: usize = 4096;

/// What happened to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertEventKind {
    /// Newly firing, or firing again after being resolved.
    Fired,
    /// Fired again while firing (count and last_seen changed).
    Repeated,
    /// Resolved.
    Resolved,
    /// Acknowledged.
    Acked,
    /// Matched by a silence.
    Silenced,
    /// No longer matched by any silence.
    Unsilenced,
    /// A notification about it was delivered.
    Notified,
}

/// One alert event: the kind and the alert object of the contract, as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct AlertEvent {
    /// What happened.
    pub kind: AlertEventKind,
    /// The alert after the event, in the contract's alert-object shape.
    pub alert: serde_json::Value,
}

/// The bus. Cheap to clone; publishing with no subscribers is a no-op.
#[derive(Clone)]
pub struct EventBus {
    alerts: broadcast::Sender<AlertEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            alerts: broadcast::channel(CAPACITY).0,
        }
    }
}

impl EventBus {
    /// Publishes an alert event.
    pub fn publish_alert(&self, event: AlertEvent) {
        let _ = self.alerts.send(event);
    }

    /// How many subscribers alert events have (publishers skip building events for none).
    pub fn alert_subscribers(&self) -> usize {
        self.alerts.receiver_count()
    }

    /// Subscribes to alert events from now on.
    pub fn subscribe_alerts(&self) -> broadcast::Receiver<AlertEvent> {
        self.alerts.subscribe()
    }
}
