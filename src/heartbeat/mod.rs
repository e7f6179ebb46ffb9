//! Heartbeats (dead man's switches): a cron job or a backup pings
//! `/api/v1/heartbeats/{name}` at least every `period`; the *absence* of a ping is the
//! incident.
//!
//! * Status: `new` (never pinged), `up`, `late` (past due, within `grace`), `down` (past
//!   due and grace: `HeartbeatMissing` fires), `failed` (the job pinged `/fail`:
//!   `HeartbeatFailed` fires). The next good ping resolves both.
//! * Everything is stored (`store.rs`): the due time survives a restart, and pings may
//!   reach any node of a cluster. Time-driven changes are made by `checker.rs` with
//!   conditional updates, so two nodes never both make the same change.
//! * Alerts enter the alert pipeline like any other (source `watchpost`), so routing,
//!   silences, inhibition and notifications apply.

mod checker;
pub mod store;

use std::collections::BTreeMap;
use std::time::Duration;

pub use checker::{Create, HeartbeatError, Heartbeats, rfc3339};

/// Where a heartbeat stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Created, never pinged: nothing is expected yet.
    New,
    /// Pinged within its period.
    Up,
    /// Past due, within the grace.
    Late,
    /// Past due and grace: `HeartbeatMissing` fires.
    Down,
    /// The job reported a failure: `HeartbeatFailed` fires.
    Failed,
}

impl Status {
    /// The API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Up => "up",
            Status::Late => "late",
            Status::Down => "down",
            Status::Failed => "failed",
        }
    }

    /// From the stored name (unknown names read as `new`).
    pub fn parse(s: &str) -> Status {
        match s {
            "up" => Status::Up,
            "late" => Status::Late,
            "down" => Status::Down,
            "failed" => Status::Failed,
            _ => Status::New,
        }
    }
}

/// What a job reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ping {
    /// It ran (and finished): the next ping is due a period from now.
    Success,
    /// It started: the duration to the next success is recorded.
    Start,
    /// It failed.
    Fail,
}

/// The two alerts a heartbeat may raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    /// No ping within period and grace.
    Missing,
    /// The job pinged `/fail`.
    Failed,
}

impl AlertKind {
    /// The alert name.
    pub fn alertname(self) -> &'static str {
        match self {
            AlertKind::Missing => "HeartbeatMissing",
            AlertKind::Failed => "HeartbeatFailed",
        }
    }
}

/// An alert to raise or resolve after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Fire the alert.
    Fire(AlertKind),
    /// Resolve it.
    Resolve(AlertKind),
}

/// One heartbeat as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    /// Its name (`heartbeat` label of its alerts).
    pub name: String,
    /// The secret of its ping URL (`/api/v1/heartbeats/p/{key}`).
    pub ping_key: String,
    /// Longest time between pings.
    pub period_ms: i64,
    /// How long a late ping is waited for.
    pub grace_ms: i64,
    /// Severity of its alerts.
    pub severity: String,
    /// Labels of its alerts.
    pub labels: BTreeMap<String, String>,
    /// Defined in `[[heartbeats]]` (else created by a ping).
    pub configured: bool,
    /// Status as last stored.
    pub status: Status,
    /// Created (Unix ms).
    pub created_ms: i64,
    /// Latest good ping.
    pub last_ping_ms: Option<i64>,
    /// Latest start not yet followed by a good ping.
    pub last_start_ms: Option<i64>,
    /// From start to good ping, the last time both came.
    pub last_duration_ms: Option<i64>,
    /// When the next good ping is due.
    pub next_due_ms: Option<i64>,
    /// Last status change.
    pub changed_ms: i64,
}

impl Heartbeat {
    /// The status time alone gives at `now`: `up` and `late` turn `late` and `down`.
    pub fn status_at(&self, now_ms: i64) -> Status {
        match (self.status, self.next_due_ms) {
            (Status::Up | Status::Late, Some(due))
                if now_ms > due.saturating_add(self.grace_ms) =>
            {
                Status::Down
            }
            (Status::Up | Status::Late, Some(due)) if now_ms > due => Status::Late,
            (status, _) => status,
        }
    }

    /// When time alone next changes the status (`None`: only a ping will).
    pub fn next_change_ms(&self) -> Option<i64> {
        let due = self.next_due_ms?;
        match self.status {
            Status::Up => Some(due.saturating_add(1)),
            Status::Late => Some(due.saturating_add(self.grace_ms).saturating_add(1)),
            _ => None,
        }
    }

    /// Applies a ping at `now`; returns the alerts to fire or resolve (resolves only
    /// of alerts the stored status says fired).
    pub fn ping(&mut self, kind: Ping, now_ms: i64) -> Vec<Effect> {
        let before = self.status;
        let mut effects = Vec::new();
        match kind {
            Ping::Start => {
                self.last_start_ms = Some(now_ms);
                return effects;
            }
            Ping::Success => {
                if let Some(start) = self.last_start_ms.take() {
                    self.last_duration_ms = Some(now_ms - start);
                }
                self.last_ping_ms = Some(now_ms);
                self.next_due_ms = Some(now_ms.saturating_add(self.period_ms));
                self.status = Status::Up;
                match before {
                    Status::Down => effects.push(Effect::Resolve(AlertKind::Missing)),
                    Status::Failed => effects.push(Effect::Resolve(AlertKind::Failed)),
                    _ => {}
                }
            }
            Ping::Fail => {
                if let Some(start) = self.last_start_ms.take() {
                    self.last_duration_ms = Some(now_ms - start);
                }
                self.next_due_ms = Some(now_ms.saturating_add(self.period_ms));
                self.status = Status::Failed;
                if before == Status::Down {
                    effects.push(Effect::Resolve(AlertKind::Missing));
                }
                effects.push(Effect::Fire(AlertKind::Failed));
            }
        }
        if self.status != before {
            self.changed_ms = now_ms;
        }
        effects
    }
}

/// Why a heartbeat name cannot be used.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if name.is_empty() || name.len() > 128 || !ok_chars {
        return Err(format!(
            "heartbeat name {name:?}: 1 to 128 letters, digits, '_', '-' or '.'"
        ));
    }
    if name == "p" {
        return Err(
            "heartbeat name \"p\" is reserved (ping URLs are /api/v1/heartbeats/p/KEY)".into(),
        );
    }
    Ok(())
}

/// Configuration problems of `[[heartbeats]]`, each naming its key.
pub fn validate(config: &crate::config::Config) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, h) in config.heartbeats.iter().enumerate() {
        if let Err(e) = check_name(&h.name) {
            problems.push(format!("heartbeats[{i}].name: {e}"));
        }
        if !seen.insert(h.name.as_str()) {
            problems.push(format!("heartbeats[{i}].name: {:?} given twice", h.name));
        }
        if h.period < Duration::from_secs(1) {
            problems.push(format!("heartbeats[{i}].period: at least 1s"));
        }
        if crate::alerts::model::Severity::parse_strict(&h.severity).is_none() {
            problems.push(format!(
                "heartbeats[{i}].severity: {:?} is not critical, warning or info",
                h.severity
            ));
        }
        for k in h.labels.keys() {
            if !crate::tsdb::is_valid_label_name(k) || k == "alertname" || k == "heartbeat" {
                problems.push(format!("heartbeats[{i}].labels: {k:?} cannot be set"));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb() -> Heartbeat {
        Heartbeat {
            name: "backup".into(),
            ping_key: "k".into(),
            period_ms: 60_000,
            grace_ms: 10_000,
            severity: "critical".into(),
            labels: BTreeMap::new(),
            configured: true,
            status: Status::New,
            created_ms: 0,
            last_ping_ms: None,
            last_start_ms: None,
            last_duration_ms: None,
            next_due_ms: None,
            changed_ms: 0,
        }
    }

    #[test]
    fn new_waits_for_a_first_ping_then_late_then_down() {
        let mut h = hb();
        assert_eq!(h.status_at(10_000_000), Status::New);
        assert_eq!(h.next_change_ms(), None);
        assert!(h.ping(Ping::Success, 1_000).is_empty());
        assert_eq!(h.status_at(61_000), Status::Up);
        assert_eq!(h.status_at(61_001), Status::Late);
        assert_eq!(h.status_at(71_000), Status::Late);
        assert_eq!(h.status_at(71_001), Status::Down);
        assert_eq!(h.next_change_ms(), Some(61_001));
        h.status = Status::Down;
        assert_eq!(
            h.ping(Ping::Success, 80_000),
            vec![Effect::Resolve(AlertKind::Missing)]
        );
        assert_eq!((h.status, h.next_due_ms), (Status::Up, Some(140_000)));
    }

    #[test]
    fn start_then_ping_records_the_duration_and_fail_fires() {
        let mut h = hb();
        h.ping(Ping::Start, 1_000);
        h.ping(Ping::Success, 4_500);
        assert_eq!(h.last_duration_ms, Some(3_500));
        assert_eq!(
            h.ping(Ping::Fail, 5_000),
            vec![Effect::Fire(AlertKind::Failed)]
        );
        assert_eq!(
            h.status_at(1_000_000),
            Status::Failed,
            "failed stays until a good ping"
        );
        assert_eq!(
            h.ping(Ping::Success, 6_000),
            vec![Effect::Resolve(AlertKind::Failed)]
        );
        // A failure while down replaces the missing alert.
        h.status = Status::Down;
        assert_eq!(
            h.ping(Ping::Fail, 7_000),
            vec![
                Effect::Resolve(AlertKind::Missing),
                Effect::Fire(AlertKind::Failed)
            ]
        );
    }

    #[test]
    fn huge_periods_saturate() {
        let mut h = hb();
        h.period_ms = i64::MAX;
        h.grace_ms = i64::MAX;
        h.ping(Ping::Success, 1_000);
        assert_eq!(h.next_due_ms, Some(i64::MAX));
        assert_eq!(h.status_at(i64::MAX), Status::Up);
        h.status = Status::Late;
        assert_eq!(h.next_change_ms(), Some(i64::MAX));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("nightly-backup.db_1").is_ok());
        for bad in ["", "p", "a b", "x/y", &"a".repeat(129)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
