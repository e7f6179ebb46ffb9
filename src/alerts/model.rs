//! The alert model: severities, states, a stored alert, its events, and the contract's
//! JSON shapes.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Serialize, Serializer};

/// Labels or annotations: sorted name → value.
pub type LabelSet = BTreeMap<String, String>;

/// How bad an alert is. Ordered: `Info < Warning < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// For information.
    Info,
    /// Needs attention soon.
    Warning,
    /// Needs attention now.
    Critical,
}

impl Severity {
    /// Every severity, most severe first.
    pub const ALL: [Severity; 3] = [Severity::Critical, Severity::Warning, Severity::Info];

    /// `critical`, `warning` or `info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }

    /// Exactly `critical`, `warning` or `info` (any case): the API's severity field.
    pub fn parse_strict(s: &str) -> Option<Severity> {
        match s.trim().to_ascii_lowercase().as_str() {
            "critical" => Some(Severity::Critical),
            "warning" => Some(Severity::Warning),
            "info" => Some(Severity::Info),
            _ => None,
        }
    }

    /// The common spellings of severities in labels and other systems (`page`, `error`,
    /// `warn`, `notice`, syslog levels, …); see the README's "Classification".
    pub fn parse_lenient(s: &str) -> Option<Severity> {
        match s.trim().to_ascii_lowercase().as_str() {
            "critical" | "crit" | "fatal" | "emergency" | "emerg" | "alert" | "page" | "error"
            | "err" | "high" | "severe" | "major" | "disaster" | "p1" | "p2" | "sev1" | "sev2" => {
                Some(Severity::Critical)
            }
            "warning" | "warn" | "medium" | "minor" | "average" | "p3" | "sev3" => {
                Some(Severity::Warning)
            }
            "info" | "information" | "informational" | "notice" | "low" | "none" | "debug"
            | "ok" | "p4" | "p5" | "sev4" | "sev5" => Some(Severity::Info),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Severity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertState {
    /// Firing.
    Firing,
    /// Resolved.
    Resolved,
}

impl AlertState {
    /// `firing` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }

    /// Parses `firing` / `resolved`.
    pub fn parse(s: &str) -> Option<AlertState> {
        match s {
            "firing" => Some(AlertState::Firing),
            "resolved" => Some(AlertState::Resolved),
            _ => None,
        }
    }
}

impl Serialize for AlertState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// An acknowledgement.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    /// Who acknowledged.
    pub by: String,
    /// When (Unix ms).
    pub at_ms: i64,
    /// Why, or what is being done.
    pub comment: String,
}

/// A stored alert: one row of `alerts`.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Store id.
    pub id: i64,
    /// Identity: hash of source + sorted labels.
    pub fingerprint: String,
    /// Where it came from (`api`, `prometheus`, `alertmanager`, `ntopng`, `rules`, …).
    pub source: String,
    /// The `alertname` label, if any.
    pub alertname: Option<String>,
    /// Human-readable text.
    pub message: String,
    /// Classified severity.
    pub severity: Severity,
    /// Classified type (system, network, security, database, application, other).
    pub alert_type: String,
    /// 0–100.
    pub risk_score: i64,
    /// Firing or resolved.
    pub state: AlertState,
    /// Ids of the silences muting it (empty = not silenced).
    pub silenced_by: Vec<String>,
    /// Fingerprint of the firing alert inhibiting it.
    pub inhibited_by: Option<String>,
    /// Identifying labels.
    pub labels: LabelSet,
    /// Descriptive annotations.
    pub annotations: LabelSet,
    /// Link back to the source (Prometheus' `generatorURL`).
    pub generator_url: Option<String>,
    /// When the current (or last) incident started (Unix ms).
    pub starts_at_ms: i64,
    /// When it resolved, or will resolve unless refreshed (Unix ms).
    pub ends_at_ms: Option<i64>,
    /// First receipt ever (Unix ms).
    pub first_seen_ms: i64,
    /// Latest receipt (Unix ms).
    pub last_seen_ms: i64,
    /// Receipts while firing (fired + repeated).
    pub count: i64,
    /// Receipts in the last hour, exponentially decayed (risk score input).
    pub recent_rate: f64,
    /// The acknowledgement, if any.
    pub ack: Option<Ack>,
    /// Since when it is flapping (notifications held), if it is (Unix ms).
    pub flapping_since_ms: Option<i64>,
    /// The row's version as last read or written (0: not stored yet). Every full write
    /// increments it and applies only over the version its writer read, so a node
    /// never overwrites a change another node made (not part of the API).
    pub version: i64,
}

impl Alert {
    /// Muted by a silence.
    pub fn is_silenced(&self) -> bool {
        !self.silenced_by.is_empty()
    }

    /// Inhibited by another firing alert.
    pub fn is_inhibited(&self) -> bool {
        self.inhibited_by.is_some()
    }

    /// Silenced or inhibited: stored and listed, never notified.
    pub fn is_suppressed(&self) -> bool {
        self.is_silenced() || self.is_inhibited()
    }

    /// Labels that silences, inhibition rules and routes match: the labels, plus
    /// `severity` and `source` when the alert carries them as fields only.
    pub fn match_labels(&self) -> LabelSet {
        match_labels(&self.labels, self.severity, &self.source)
    }

    /// The repeat rate as stored: a non-finite rate (never expected) is stored as 0.
    pub fn storable_rate(&self) -> f64 {
        if self.recent_rate.is_finite() {
            self.recent_rate
        } else {
            0.0
        }
    }

    /// [`Alert::match_labels`] without copying.
    pub fn match_view(&self) -> MatchLabels<'_> {
        MatchLabels {
            labels: &self.labels,
            severity: self.severity,
            source: &self.source,
        }
    }

    /// The contract's alert object.
    pub fn view(&self) -> AlertView<'_> {
        AlertView { a: self }
    }

    /// The contract's alert object as a JSON value.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.view()).unwrap_or(serde_json::Value::Null)
    }
}

/// Something matchers can look labels up in.
pub trait Labels {
    /// The value of label `name`, if present.
    fn label(&self, name: &str) -> Option<&str>;
}

impl Labels for LabelSet {
    fn label(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// An alert's labels plus `severity` and `source` when absent, without copying.
#[derive(Debug, Clone, Copy)]
pub struct MatchLabels<'a> {
    labels: &'a LabelSet,
    severity: Severity,
    source: &'a str,
}

impl Labels for MatchLabels<'_> {
    fn label(&self, name: &str) -> Option<&str> {
        match self.labels.get(name) {
            Some(v) => Some(v),
            None => match name {
                "severity" => Some(self.severity.as_str()),
                "source" => Some(self.source),
                _ => None,
            },
        }
    }
}

/// Labels plus `severity` and `source` when absent (what matchers see).
pub fn match_labels(labels: &LabelSet, severity: Severity, source: &str) -> LabelSet {
    let mut l = labels.clone();
    l.entry("severity".into())
        .or_insert_with(|| severity.as_str().to_string());
    l.entry("source".into())
        .or_insert_with(|| source.to_string());
    l
}

/// Unix ms → RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ms: i64) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => "1970-01-01T00:00:00.000Z".into(),
    }
}

/// A duration in ms, saturating at `i64::MAX` (a `Duration` can hold 2^64 s, far more
/// than `i64` ms; `as_millis() as i64` would wrap).
pub fn duration_ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Unix ms → `DateTime<Utc>` (the epoch for out-of-range values).
pub fn datetime(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// Serializes an [`Alert`] as the contract's alert object.
pub struct AlertView<'a> {
    a: &'a Alert,
}

#[derive(Serialize)]
struct AckView<'a> {
    by: &'a str,
    at: String,
    comment: &'a str,
}

impl Serialize for AlertView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let a = self.a;
        let mut m = s.serialize_map(Some(24))?;
        m.serialize_entry("id", &a.id)?;
        m.serialize_entry("fingerprint", &a.fingerprint)?;
        m.serialize_entry("source", &a.source)?;
        m.serialize_entry("alertname", &a.alertname)?;
        m.serialize_entry("message", &a.message)?;
        m.serialize_entry("severity", &a.severity)?;
        m.serialize_entry("type", &a.alert_type)?;
        m.serialize_entry("risk_score", &a.risk_score)?;
        m.serialize_entry("state", &a.state)?;
        m.serialize_entry("silenced", &a.is_suppressed())?;
        m.serialize_entry("inhibited", &a.is_inhibited())?;
        m.serialize_entry("silenced_by", &a.silenced_by)?;
        m.serialize_entry("inhibited_by", &a.inhibited_by)?;
        m.serialize_entry("labels", &a.labels)?;
        m.serialize_entry("annotations", &a.annotations)?;
        m.serialize_entry("generator_url", &a.generator_url)?;
        m.serialize_entry("starts_at", &rfc3339(a.starts_at_ms))?;
        m.serialize_entry("ends_at", &a.ends_at_ms.map(rfc3339))?;
        m.serialize_entry("first_seen", &rfc3339(a.first_seen_ms))?;
        m.serialize_entry("last_seen", &rfc3339(a.last_seen_ms))?;
        m.serialize_entry("count", &a.count)?;
        let ack = a.ack.as_ref().map(|k| AckView {
            by: &k.by,
            at: rfc3339(k.at_ms),
            comment: &k.comment,
        });
        m.serialize_entry("acknowledged", &ack)?;
        m.serialize_entry("flapping", &a.flapping_since_ms.is_some())?;
        m.serialize_entry("flapping_since", &a.flapping_since_ms.map(rfc3339))?;
        m.end()
    }
}

/// What happened to an alert, as stored in its event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// Started firing (new, or again after resolving).
    Fired,
    /// Received again while firing.
    Repeated,
    /// Resolved.
    Resolved,
    /// Acknowledged.
    Acknowledged,
    /// Muted by a silence or inhibited.
    Silenced,
    /// No longer muted.
    Unsilenced,
    /// Severity went up.
    SeverityRaised,
    /// A notification was delivered (written by the notifier).
    Notified,
    /// Started flapping: notifications held (written by the dispatcher).
    Flapping,
    /// Stable again after flapping (written by the dispatcher).
    Stable,
}

impl EventKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Fired => "fired",
            EventKind::Repeated => "repeated",
            EventKind::Resolved => "resolved",
            EventKind::Acknowledged => "acknowledged",
            EventKind::Silenced => "silenced",
            EventKind::Unsilenced => "unsilenced",
            EventKind::SeverityRaised => "severity_raised",
            EventKind::Notified => "notified",
            EventKind::Flapping => "flapping",
            EventKind::Stable => "stable",
        }
    }
}

/// One stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Event id.
    pub id: i64,
    /// Kind name (see [`EventKind::as_str`]).
    pub kind: String,
    /// When (Unix ms).
    pub at_ms: i64,
    /// Kind-specific fields.
    pub detail: serde_json::Value,
}

impl StoredEvent {
    /// `{"kind", "at", …detail}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("id".into(), self.id.into());
        m.insert("kind".into(), self.kind.clone().into());
        m.insert("at".into(), rfc3339(self.at_ms).into());
        if let serde_json::Value::Object(d) = &self.detail {
            for (k, v) in d {
                if !m.contains_key(k) {
                    m.insert(k.clone(), v.clone());
                }
            }
        }
        serde_json::Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert() -> Alert {
        Alert {
            id: 7,
            fingerprint: "ab".into(),
            source: "api".into(),
            alertname: Some("HighCpu".into()),
            message: "cpu".into(),
            severity: Severity::Warning,
            alert_type: "system".into(),
            risk_score: 43,
            state: AlertState::Firing,
            silenced_by: vec![],
            inhibited_by: None,
            labels: LabelSet::from([("alertname".into(), "HighCpu".into())]),
            annotations: LabelSet::new(),
            generator_url: None,
            starts_at_ms: 1_700_000_000_000,
            ends_at_ms: None,
            first_seen_ms: 1_700_000_000_000,
            last_seen_ms: 1_700_000_000_500,
            count: 2,
            recent_rate: 2.0,
            ack: None,
            flapping_since_ms: None,
            version: 1,
        }
    }

    #[test]
    fn json_has_every_contract_field() {
        let v = alert().to_json();
        for key in [
            "id",
            "fingerprint",
            "source",
            "alertname",
            "message",
            "severity",
            "type",
            "risk_score",
            "state",
            "silenced",
            "labels",
            "annotations",
            "starts_at",
            "ends_at",
            "first_seen",
            "last_seen",
            "count",
            "acknowledged",
            "flapping",
        ] {
            assert!(v.get(key).is_some(), "{key} missing in {v}");
        }
        assert_eq!(v["starts_at"], "2023-11-14T22:13:20.000Z");
        assert_eq!(v["ends_at"], serde_json::Value::Null);
        assert_eq!(v["acknowledged"], serde_json::Value::Null);
        assert_eq!(v["severity"], "warning");
    }

    #[test]
    fn inhibited_alerts_show_as_silenced() {
        let mut a = alert();
        a.inhibited_by = Some("cd".into());
        let v = a.to_json();
        assert_eq!(v["silenced"], true);
        assert_eq!(v["inhibited"], true);
    }

    #[test]
    fn duration_ms_saturates() {
        use std::time::Duration;
        assert_eq!(duration_ms(Duration::from_secs(2)), 2000);
        assert_eq!(duration_ms(Duration::from_secs(u64::MAX)), i64::MAX);
        assert_eq!(duration_ms(Duration::MAX), i64::MAX);
        let edge = Duration::from_millis(i64::MAX as u64);
        assert_eq!(duration_ms(edge), i64::MAX);
        assert_eq!(duration_ms(edge + Duration::from_millis(1)), i64::MAX);
    }

    #[test]
    fn lenient_severities() {
        assert_eq!(Severity::parse_lenient("PAGE"), Some(Severity::Critical));
        assert_eq!(Severity::parse_lenient("warn"), Some(Severity::Warning));
        assert_eq!(Severity::parse_lenient("notice"), Some(Severity::Info));
        assert_eq!(Severity::parse_lenient("purple"), None);
        assert_eq!(Severity::parse_strict("error"), None);
    }
}
