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

/// What a receipt did to the alert it was applied to in place.
#[derive(Debug, Clone, Default)]
pub struct Receipt {
    /// Events to append.
    pub events: Vec<Event>,
    /// Changes for the notifier and the stream.
    pub changes: Vec<ChangeKind>,
    /// Whether the row must be written.
    pub dirty: bool,
    /// A firing alert stayed firing and only its count, last seen, `ends_at`, rate and
    /// risk changed (message, annotations, severity, type, silences as before).
    pub refreshed_only: bool,
}

/// Applies receipt `inc` at `now_ms` to `prev` (the stored alert, if any).
pub fn apply(prev: Option<&Alert>, inc: &Incoming, now_ms: i64, silences: &SilenceSet) -> Applied {
    let mut slot = prev.cloned();
    let r = receive(&mut slot, inc, now_ms, silences);
    Applied {
        alert: slot.unwrap_or_else(|| new_alert(inc, now_ms, false)),
        events: r.events,
        changes: r.changes,
        dirty: r.dirty,
    }
}

/// Applies receipt `inc` at `now_ms` to the alert in `slot` in place (`None`: a new
/// fingerprint, which the receipt creates).
pub fn receive(
    slot: &mut Option<Alert>,
    inc: &Incoming,
    now_ms: i64,
    silences: &SilenceSet,
) -> Receipt {
    let resolves = inc.ends_at_ms.is_some_and(|e| e <= now_ms);
    let mut r = Receipt {
        dirty: true,
        ..Default::default()
    };
    let Some(a) = slot.as_mut() else {
        r.events.push(Event::new(
            EventKind::Fired,
            json!({"severity": inc.severity.as_str()}),
        ));
        if resolves {
            r.events.push(Event::new(EventKind::Resolved, json!({})));
            r.changes.push(ChangeKind::Resolved);
        } else {
            r.changes.push(ChangeKind::Fired);
        }
        let alert = slot.insert(new_alert(inc, now_ms, resolves));
        apply_silences(alert, false, silences, now_ms, &mut r);
        return r;
    };
    let was_firing = a.state == AlertState::Firing;
    if !was_firing && resolves {
        r.dirty = false;
        return r;
    }
    let (prev_severity, prev_rate, prev_seen) = (a.severity, a.recent_rate, a.last_seen_ms);
    if was_firing && resolves {
        // The resolving payload's annotations (its value, say) over the firing ones: a
        // resolve that carries none keeps the summary.
        let mut merged = std::mem::take(&mut a.annotations);
        merged.extend(inc.annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
        refresh(a, inc, now_ms);
        a.annotations = merged;
        a.state = AlertState::Resolved;
        a.ends_at_ms = inc.ends_at_ms;
        r.events.push(Event::new(EventKind::Resolved, json!({})));
        r.changes.push(ChangeKind::Resolved);
        return r;
    }
    let same = refresh(a, inc, now_ms);
    count_receipt(a, prev_rate, prev_seen, was_firing, inc, now_ms);
    if was_firing {
        r.events
            .push(Event::new(EventKind::Repeated, json!({"count": a.count})));
        if inc.severity > prev_severity {
            r.events.push(Event::new(
                EventKind::SeverityRaised,
                json!({"from": prev_severity.as_str(), "to": inc.severity.as_str()}),
            ));
            a.ack = None;
            r.changes.push(ChangeKind::SeverityRaised);
        } else {
            r.changes.push(ChangeKind::Repeated);
        }
    } else {
        a.state = AlertState::Firing;
        a.starts_at_ms = start_of(inc, now_ms);
        a.ack = None;
        a.inhibited_by = None;
        a.silenced_by = Vec::new();
        r.events.push(Event::new(
            EventKind::Fired,
            json!({"severity": inc.severity.as_str(), "refired": true}),
        ));
        r.changes.push(ChangeKind::Fired);
    }
    let silences_same = apply_silences(a, was_firing, silences, now_ms, &mut r);
    r.refreshed_only = was_firing && same && silences_same;
    r
}

/// A new alert from its first receipt.
fn new_alert(inc: &Incoming, now_ms: i64, resolved: bool) -> Alert {
    let rate = 1.0;
    Alert {
        id: 0,
        fingerprint: inc.fingerprint.clone(),
        source: inc.source.clone(),
        alertname: inc.alertname.clone(),
        message: inc.message.clone(),
        severity: inc.severity,
        alert_type: inc.alert_type.to_string(),
        risk_score: classify::risk_score(inc.severity, inc.alert_type, rate, inc.source_score),
        state: if resolved {
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
        flapping_since_ms: None,
        version: 0,
    }
}

/// Re-applies the silences to a firing alert; returns whether they are unchanged.
fn apply_silences(
    a: &mut Alert,
    was_firing: bool,
    silences: &SilenceSet,
    now_ms: i64,
    r: &mut Receipt,
) -> bool {
    if a.state != AlertState::Firing {
        return true;
    }
    let muting = silences.muting(&a.match_view(), now_ms);
    let before: &[String] = if was_firing { &a.silenced_by } else { &[] };
    if muting == before {
        return true;
    }
    silence_transition(before, &muting, &mut r.events, &mut r.changes);
    a.silenced_by = muting;
    false
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

/// Takes the receipt's descriptive fields (copying only what differs); returns whether
/// they were all the same.
fn refresh(a: &mut Alert, inc: &Incoming, now_ms: i64) -> bool {
    let mut same = a.severity == inc.severity && a.alert_type == inc.alert_type;
    if a.message != inc.message {
        a.message.clone_from(&inc.message);
        same = false;
    }
    if a.annotations != inc.annotations {
        a.annotations.clone_from(&inc.annotations);
        same = false;
    }
    a.severity = inc.severity;
    if a.alert_type != inc.alert_type {
        a.alert_type = inc.alert_type.to_string();
    }
    if inc.generator_url.is_some() && a.generator_url != inc.generator_url {
        a.generator_url.clone_from(&inc.generator_url);
        same = false;
    }
    a.last_seen_ms = now_ms;
    same
}

/// Count, rate, risk and end of a firing receipt (`prev_*`: before this receipt).
fn count_receipt(
    a: &mut Alert,
    prev_rate: f64,
    prev_seen_ms: i64,
    was_firing: bool,
    inc: &Incoming,
    now_ms: i64,
) {
    a.count += 1;
    a.recent_rate = classify::next_rate(prev_rate, prev_seen_ms, now_ms);
    a.risk_score = classify::risk_score(a.severity, &a.alert_type, a.recent_rate, inc.source_score);
    a.ends_at_ms = inc.ends_at_ms;
    if was_firing && let Some(s) = inc.starts_at_ms {
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
    fn a_resolve_keeps_the_summary_and_takes_its_own_value() {
        let none = SilenceSet::default();
        let mut fire = incoming(None, None);
        fire.annotations = [("summary", "disk full"), ("value", "97")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        let a = apply(None, &fire, T, &none).alert;
        let mut resolve = incoming(Some(T + 5), None);
        resolve.annotations = [("value".to_string(), "41".to_string())].into();
        let r = apply(Some(&a), &resolve, T + 10, &none).alert;
        assert_eq!(r.state, AlertState::Resolved);
        assert_eq!(
            r.annotations["value"], "41",
            "the resolving payload's value"
        );
        assert_eq!(
            r.annotations["summary"], "disk full",
            "kept from the firing"
        );
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
    fn extreme_times_and_scores() {
        let none = SilenceSet::default();
        let mut inc = incoming(Some(i64::MAX), None);
        inc.starts_at_ms = Some(i64::MAX);
        inc.source_score = Some(i64::MAX);
        let a = apply(None, &inc, T, &none);
        assert_eq!(a.alert.starts_at_ms, T, "a start in the future is now");
        assert_eq!(a.alert.state, AlertState::Firing);
        assert_eq!(a.alert.risk_score, 100);
        inc.starts_at_ms = Some(i64::MIN);
        inc.ends_at_ms = None;
        inc.source_score = Some(i64::MIN);
        let b = apply(Some(&a.alert), &inc, i64::MAX, &none);
        assert_eq!(b.alert.starts_at_ms, i64::MIN);
        assert_eq!(b.alert.count, 2);
        assert!((0..=100).contains(&b.alert.risk_score));
        // A receipt at the end of time ends what ends before it.
        inc.ends_at_ms = Some(i64::MAX);
        let c = apply(Some(&b.alert), &inc, i64::MAX, &none);
        assert_eq!(c.alert.state, AlertState::Resolved);
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
