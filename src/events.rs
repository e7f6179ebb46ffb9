//! In-process event bus: alert lifecycle events fan out to the WebSocket stream (and
//! anything else that watches) without the alert pipeline knowing its listeners.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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
    listeners: Arc<Listeners>,
}

/// Who is listening through relays ([`EventBus::relay`]).
#[derive(Default)]
struct Listeners {
    /// Receivers that only pass events on (not listeners themselves).
    relays: AtomicUsize,
    /// What the relays pass events on to.
    behind_relays: AtomicUsize,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            alerts: broadcast::channel(CAPACITY).0,
            listeners: Arc::default(),
        }
    }
}

/// A relay's report of how many listeners it passes events on to; the bus forgets the
/// relay when this is dropped.
pub struct RelayListeners {
    listeners: Arc<Listeners>,
    now: usize,
}

impl RelayListeners {
    /// The relay now has `n` listeners.
    pub fn set(&mut self, n: usize) {
        let l = &self.listeners.behind_relays;
        if n >= self.now {
            l.fetch_add(n - self.now, Ordering::Relaxed);
        } else {
            l.fetch_sub(self.now - n, Ordering::Relaxed);
        }
        self.now = n;
    }
}

impl Drop for RelayListeners {
    fn drop(&mut self) {
        self.set(0);
        self.listeners.relays.fetch_sub(1, Ordering::Relaxed);
    }
}

impl EventBus {
    /// Publishes an alert event.
    pub fn publish_alert(&self, event: AlertEvent) {
        let _ = self.alerts.send(event);
    }

    /// How many listen to alert events: direct subscribers, and what relays pass them
    /// on to (publishers skip building events for none, so an alert storm costs no
    /// event serialisation while no dashboard is open).
    pub fn alert_subscribers(&self) -> usize {
        let l = &self.listeners;
        let relays = l.relays.load(Ordering::Relaxed);
        self.alerts.receiver_count().saturating_sub(relays)
            + l.behind_relays.load(Ordering::Relaxed)
    }

    /// Subscribes a relay (the WebSocket hub), which counts as listening only while it
    /// reports listeners of its own.
    pub fn relay(&self) -> (broadcast::Receiver<AlertEvent>, RelayListeners) {
        self.listeners.relays.fetch_add(1, Ordering::Relaxed);
        let handle = RelayListeners {
            listeners: self.listeners.clone(),
            now: 0,
        };
        (self.alerts.subscribe(), handle)
    }

    /// Subscribes to alert events from now on.
    pub fn subscribe_alerts(&self) -> broadcast::Receiver<AlertEvent> {
        self.alerts.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_listens_only_through_its_clients() {
        let bus = EventBus::default();
        assert_eq!(bus.alert_subscribers(), 0);
        let (_rx, mut relay) = bus.relay();
        assert_eq!(bus.alert_subscribers(), 0, "a relay without clients");
        relay.set(2);
        assert_eq!(bus.alert_subscribers(), 2);
        relay.set(1);
        assert_eq!(bus.alert_subscribers(), 1);
        let direct = bus.subscribe_alerts();
        assert_eq!(bus.alert_subscribers(), 2, "a direct subscriber counts");
        drop(relay);
        drop(_rx);
        assert_eq!(bus.alert_subscribers(), 1, "the relay's clients go with it");
        drop(direct);
        assert_eq!(bus.alert_subscribers(), 0);
    }
}
