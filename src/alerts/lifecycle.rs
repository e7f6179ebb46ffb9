//! The lifecycle of one alert: what a receipt does to the stored alert, and which
//! events and changes that makes. Pure functions; the pipeline stores the result.
//!
//! * New fingerprint: `fired` (and `resolved` right away when `ends_at` is past).
//! * Firing + receipt: `repeated` — count and last seen go up, message, annotations and
//!   `ends_at` are refreshed; a higher severity adds `severity_raised` and lifts the
//!   acknowledgement.
//! * Firing + `ends_at` in the past: `resolved`.
//! * Resolved + firing receipt: `fired` again — a new incident: new start, the
//!   acknowledgement is cleared.
//! * Resolved + resolved receipt: nothing changes.
//!
//! Silences are applied to firing alerts here; inhibition (which depends on other
//! alerts) is applied by the pipeline afterwards.

use serde_json::json;

use super::change::ChangeKind;
use super::classify;
use super::ingest::Incoming;
use super::model::{Alert, AlertState, EventKind};
use crate::silence::SilenceSet;

/// One event to append, with its detail.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Kind.
    pub kind: EventKind,
    /// Kind-specific fields.
    pub detail: serde_json::Value,
    /// When it happened (Unix ms); `None` = when the batch is processed.
    pub at_ms: Option<i64>,
}

impl Event {
    /// An event of `kind` with `detail`, happening now.
    pub fn new(kind: EventKind, detail: serde_json::Value) -> Self {
        Self {
            kind,
            detail,
            at_ms: None,
        }
    }

    /// The same event, stamped at `at_ms`.
    pub fn at(mut self, at_ms: i64) -> Self {
        self.at_ms = Some(at_ms);
        self
    }
}

/// What a receipt did.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The alert after the receipt.
    pub alert: Alert,
    /// Events to append.
    pub events: Vec<Event>,
    /// Changes for the notifier and the stream.
    pub changes: Vec<ChangeKind>,
    /// Whether the row must be written.
    pub dirty: bool,
}

/// Applies receipt `inc` at `now_ms` to `prev` (the stored alert, if any).
pub fn apply(prev: Option<&Alert>, inc: &Incoming, now_ms: i64, silences: &SilenceSet) -> Applied {
    let resolves = inc.ends_at_ms.is_some_and(|e| e <= now_ms);
    let mut events = Vec::new();
    let mut changes = Vec::new();
    let mut alert = match prev {
        None => {
            let rate = 1.0;
            let alert = Alert {
                id: 0,
                fingerprint: inc.fingerprint.clone(),
                source: inc.source.clone(),
                alertname: inc.alertname.clone(),
                message: inc.message.clone(),
                severity: inc.severity,
                alert_type: inc.alert_type.to_string(),
                risk_score: classify::risk_score(
                    inc.severity,
                    inc.alert_type,
                    rate,
                    inc.source_score,
                ),
                state: if resolves {
                    AlertState::Resolved
                } else {
                    AlertState::Firing
                },
                silenced_by: Vec::new(),
                inhibited_by: None,
                labels: inc.labels.clone(),
                annotations: inc.annotations.clone(),
                generator_url: inc.generator_url.clone(),
                starts_at_ms: start_of(inc, now_ms),
                ends_at_ms: inc.ends_at_ms,
                first_seen_ms: now_ms,
                last_seen_ms: now_ms,
                count: 1,
                recent_rate: rate,
                ack: None,
            };
            events.push(Event::new(
                EventKind::Fired,
                json!({"severity": inc.severity.as_str()}),
            ));
            if resolves {
                events.push(Event::new(EventKind::Resolved, json!({})));
                changes.push(ChangeKind::Resolved);
            } else {
                changes.push(ChangeKind::Fired);
            }
            alert
        }
        Some(p) if p.state == AlertState::Firing => {
            let mut a = refresh(p, inc, now_ms);
            if resolves {
                a.state = AlertState::Resolved;
                a.ends_at_ms = inc.ends_at_ms;
                a.last_seen_ms = now_ms;
                events.push(Event::new(EventKind::Resolved, json!({})));
                changes.push(ChangeKind::Resolved);
            } else {
                count_receipt(&mut a, p, inc, now_ms);
                events.push(Event::new(EventKind::Repeated, json!({"count": a.count})));
                if inc.severity > p.severity {
                    events.push(Event::new(
                        EventKind::SeverityRaised,
                        json!({"from": p.severity.as_str(), "to": inc.severity.as_str()}),
                    ));
                    a.ack = None;
                    changes.push(ChangeKind::SeverityRaised);
                } else {
                    changes.push(ChangeKind::Repeated);
                }
            }
            a
        }
        Some(p) => {
            if resolves {
                return Applied {
                    alert: p.clone(),
                    events,
                    changes,
                    dirty: false,
                };
            }
            let mut a = refresh(p, inc, now_ms);
            count_receipt(&mut a, p, inc, now_ms);
            a.state = AlertState::Firing;
            a.starts_at_ms = start_of(inc, now_ms);
            a.ends_at_ms = inc.ends_at_ms;
            a.ack = None;
            a.inhibited_by = None;
            a.silenced_by = Vec::new();
            events.push(Event::new(
                EventKind::Fired,
                json!({"severity": inc.severity.as_str(), "refired": true}),
            ));
            changes.push(ChangeKind::Fired);
            a
        }
    };
    if alert.state == AlertState::Firing {
        let before = if prev.is_some_and(|p| p.state == AlertState::Firing) {
            prev.map(|p| p.silenced_by.clone()).unwrap_or_default()
        } else {
            Vec::new()
        };
        let now_muting = silences.muting(&alert.match_view(), now_ms);
        silence_transition(&before, &now_muting, &mut events, &mut changes);
        alert.silenced_by = now_muting;
    }
    Applied {
        alert,
        events,
        changes,
        dirty: true,
    }
}

/// Appends the silenced/unsilenced event and change for a silence set going from
/// `before` to `after` (both sorted ids).
pub fn silence_transition(
    before: &[String],
    after: &[String],
    events: &mut Vec<Event>,
    changes: &mut Vec<ChangeKind>,
) {
    match (before.is_empty(), after.is_empty()) {
        (true, false) => {
            events.push(Event::new(
                EventKind::Silenced,
                json!({"reason": "silence", "silences": after}),
            ));
            changes.push(ChangeKind::Silenced);
        }
        (false, true) => {
            events.push(Event::new(
                EventKind::Unsilenced,
                json!({"reason": "silence", "silences": before}),
            ));
            changes.push(ChangeKind::Unsilenced);
        }
        _ => {}
    }
}

/// The start of an incident: what the sender said, never in the future.
fn start_of(inc: &Incoming, now_ms: i64) -> i64 {
    inc.starts_at_ms.unwrap_or(now_ms).min(now_ms)
}

/// `prev` with the receipt's descriptive fields.
fn refresh(prev: &Alert, inc: &Incoming, now_ms: i64) -> Alert {
    let mut a = prev.clone();
    a.message = inc.message.clone();
    a.annotations = inc.annotations.clone();
    a.severity = inc.severity;
    a.alert_type = inc.alert_type.to_string();
    if inc.generator_url.is_some() {
        a.generator_url = inc.generator_url.clone();
    }
    a.last_seen_ms = now_ms;
    a
}

/// Count, rate, risk and end of a firing receipt.
fn count_receipt(a: &mut Alert, prev: &Alert, inc: &Incoming, now_ms: i64) {
    a.count = prev.count + 1;
    a.recent_rate = classify::next_rate(prev.recent_rate, prev.last_seen_ms, now_ms);
    a.risk_score = classify::risk_score(a.severity, &a.alert_type, a.recent_rate, inc.source_score);
    a.ends_at_ms = inc.ends_at_ms;
    if prev.state == AlertState::Firing
        && let Some(s) = inc.starts_at_ms
    {
        a.starts_at_ms = a.starts_at_ms.min(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::ingest::RawAlert;
    use crate::alerts::model::Severity;

    fn incoming(ends: Option<i64>, severity: Option<Severity>) -> Incoming {
        RawAlert {
            source: "api".into(),
            message: Some("disk full".into()),
            severity,
            labels: [("alertname".to_string(), "Disk".to_string())].into(),
            ends_at_ms: ends,
            ..Default::default()
        }
        .prepare()
    }

    fn kinds(a: &Applied) -> Vec<&'static str> {
        a.events.iter().map(|e| e.kind.as_str()).collect()
    }

    const T: i64 = 1_700_000_000_000;

    #[test]
    fn fire_repeat_resolve_refire() {
        let none = SilenceSet::default();
        let a = apply(None, &incoming(None, None), T, &none);
        assert_eq!(kinds(&a), ["fired"]);
        assert_eq!(a.alert.count, 1);
        assert_eq!(a.changes, [ChangeKind::Fired]);
        let mut stored = a.alert;
        stored.id = 1;

        let b = apply(Some(&stored), &incoming(None, None), T + 1000, &none);
        assert_eq!(kinds(&b), ["repeated"]);
        assert_eq!((b.alert.count, b.alert.last_seen_ms), (2, T + 1000));
        assert_eq!(b.alert.starts_at_ms, T);
        assert!(b.alert.risk_score > stored.risk_score);

        let c = apply(
            Some(&b.alert),
            &incoming(Some(T + 1500), None),
            T + 2000,
            &none,
        );
        assert_eq!(kinds(&c), ["resolved"]);
        assert_eq!(c.alert.state, AlertState::Resolved);
        assert_eq!(c.alert.ends_at_ms, Some(T + 1500));

        let again = apply(Some(&c.alert), &incoming(Some(T), None), T + 2500, &none);
        assert!(!again.dirty && again.events.is_empty());

        let d = apply(Some(&c.alert), &incoming(None, None), T + 3000, &none);
        assert_eq!(kinds(&d), ["fired"]);
        assert_eq!(d.alert.state, AlertState::Firing);
        assert_eq!(d.alert.starts_at_ms, T + 3000);
        assert_eq!(d.alert.ends_at_ms, None);
        assert_eq!(d.alert.count, 3);
    }

    #[test]
    fn severity_raise_lifts_ack() {
        let none = SilenceSet::default();
        let mut a = apply(None, &incoming(None, Some(Severity::Warning)), T, &none).alert;
        a.ack = Some(crate::alerts::model::Ack {
            by: "ann".into(),
            at_ms: T,
            comment: String::new(),
        });
        let same = apply(
            Some(&a),
            &incoming(None, Some(Severity::Warning)),
            T + 1,
            &none,
        );
        assert!(same.alert.ack.is_some());
        let up = apply(
            Some(&a),
            &incoming(None, Some(Severity::Critical)),
            T + 2,
            &none,
        );
        assert_eq!(kinds(&up), ["repeated", "severity_raised"]);
        assert_eq!(up.changes, [ChangeKind::SeverityRaised]);
        assert!(up.alert.ack.is_none());
    }

    #[test]
    fn arrives_resolved() {
        let a = apply(
            None,
            &incoming(Some(T - 10), None),
            T,
            &SilenceSet::default(),
        );
        assert_eq!(kinds(&a), ["fired", "resolved"]);
        assert_eq!(a.changes, [ChangeKind::Resolved]);
        assert_eq!(a.alert.state, AlertState::Resolved);
    }
}
