//! Aggregation groups: the alerts of one route and one set of group labels, and the
//! decision whether a flush notifies (Alertmanager's dedup stage, plus acknowledgement).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::route::RouteOpts;
use super::{AlertNotice, AlertState, severity_rank};

/// What a receiver was last told about a group (Alertmanager's notification log entry).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyLogEntry {
    /// Number of notifications sent for this group and receiver.
    pub seq: u64,
    /// When the last notification was enqueued (unix ms).
    pub at_ms: i64,
    /// Alerts the receiver believes are firing: fingerprint → severity rank announced.
    pub firing: BTreeMap<String, u8>,
    /// Alerts announced resolved by the last notification.
    pub resolved: BTreeSet<String>,
    /// Alerts the receiver was told are flapping (their changes are held).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub flapping: BTreeSet<String>,
    /// When the group's episode began: the `at_ms` of its first notification since the
    /// group last emptied (0 in entries written before it was kept). E-mail threads.
    #[serde(default)]
    pub episode_ms: i64,
}

/// One notification of a group to its receiver.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    /// `route_id:{group labels}`.
    pub group_key: String,
    /// Receiver name.
    pub receiver: String,
    /// The group labels.
    pub group_labels: BTreeMap<String, String>,
    /// `firing` if any alert fires, else `resolved`.
    pub status: AlertState,
    /// Firing alerts (not silenced, inhibited or acknowledged).
    pub firing: Vec<AlertNotice>,
    /// Alerts resolved since they were announced firing.
    pub resolved: Vec<AlertNotice>,
    /// Alerts that started flapping: their notifications are held from now on.
    pub flapping: Vec<AlertNotice>,
    /// Fingerprints of the firing or resolved alerts that are stable again after
    /// flapping (this notification tells their final state).
    pub stable: BTreeSet<String>,
    /// Sequence number of this notification for the group and receiver (from 1).
    pub seq: u64,
    /// When the notification was made (unix ms).
    pub at_ms: i64,
    /// When the group's episode began (unix ms): equal to `at_ms` for the first
    /// notification since the group was empty. Stored in the notification log.
    pub episode_ms: i64,
}

impl Notification {
    /// Ids of every alert in the notification.
    pub fn alert_ids(&self) -> Vec<i64> {
        self.alerts().map(|a| a.id).collect()
    }

    /// Every alert of the notification: firing, resolved, then flapping.
    pub fn alerts(&self) -> impl Iterator<Item = &AlertNotice> {
        self.firing
            .iter()
            .chain(&self.resolved)
            .chain(&self.flapping)
    }

    /// Labels common to every alert of the notification.
    pub fn common_labels(&self) -> BTreeMap<String, String> {
        common(self.alerts().map(|a| &a.labels))
    }

    /// Annotations common to every alert of the notification.
    pub fn common_annotations(&self) -> BTreeMap<String, String> {
        common(self.alerts().map(|a| &a.annotations))
    }
}

fn common<'a>(
    mut maps: impl Iterator<Item = &'a BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let Some(first) = maps.next() else {
        return BTreeMap::new();
    };
    let mut out = first.clone();
    for m in maps {
        out.retain(|k, v| m.get(k) == Some(v));
    }
    out
}

/// An alert inside a group.
#[derive(Debug, Clone)]
pub struct GroupAlert {
    /// The latest notice.
    pub notice: AlertNotice,
    /// When it was last updated (unix ms).
    pub updated_ms: i64,
}

impl GroupAlert {
    /// Firing, and not past its `ends_at`.
    pub fn is_firing(&self, now_ms: i64) -> bool {
        self.notice.state == AlertState::Firing
            && self
                .notice
                .ends_at
                .is_none_or(|t| t.timestamp_millis() > now_ms)
    }

    /// Silenced or inhibited.
    pub fn is_suppressed(&self) -> bool {
        self.notice.silenced || self.notice.inhibited
    }

    /// Acknowledged and not escalated since.
    pub fn is_acked(&self) -> bool {
        self.notice.acknowledged && !self.notice.severity_raised
    }
}

/// One aggregation group.
#[derive(Debug, Clone)]
pub struct AggregationGroup {
    /// `route_id:{group labels}`.
    pub key: String,
    /// The route's id.
    pub route_id: String,
    /// The route's effective options.
    pub opts: RouteOpts,
    /// Group labels.
    pub labels: BTreeMap<String, String>,
    /// Alerts by fingerprint.
    pub alerts: BTreeMap<String, GroupAlert>,
    /// When the group was created (unix ms).
    pub created_ms: i64,
    /// When the group flushes next.
    pub next_flush: Instant,
    /// Whether the first flush (after `group_wait`) happened.
    pub has_flushed: bool,
    /// What the receiver was last told.
    pub log: Option<NotifyLogEntry>,
}

/// The result of evaluating a group at flush time.
#[derive(Debug, Clone)]
pub struct FlushPlan {
    /// The notification to send, with the log entry to record once it is enqueued.
    pub notify: Option<(Notification, NotifyLogEntry)>,
    /// The log entry to keep when nothing is sent (pruned of alerts that left); `None`
    /// when it did not change.
    pub pruned_log: Option<NotifyLogEntry>,
    /// Resolved alerts to drop from the group after the flush.
    pub drop: Vec<String>,
}

impl AggregationGroup {
    /// Decides what a flush at `now_ms` does. Pure: the caller applies the plan.
    pub fn plan(&self, now_ms: i64) -> FlushPlan {
        let old = self.log.clone().unwrap_or_default();
        let mut firing = Vec::new();
        let mut resolved = Vec::new();
        let mut drop = Vec::new();
        let mut carried = BTreeMap::new();
        let mut flapping = Vec::new();
        let mut flapping_told = BTreeSet::new();
        let mut stable = BTreeSet::new();
        for (fp, a) in &self.alerts {
            if a.notice.flapping {
                // Held: the receiver is told once that it flaps, and keeps believing
                // what it was told before.
                if a.is_suppressed() {
                    continue;
                }
                flapping_told.insert(fp.clone());
                if !old.flapping.contains(fp) {
                    flapping.push(a);
                }
                if let Some(rank) = old.firing.get(fp) {
                    carried.insert(fp.clone(), *rank);
                }
                continue;
            }
            let was_flapping = old.flapping.contains(fp) && !a.is_suppressed();
            if was_flapping {
                stable.insert(fp.clone());
            }
            if a.is_firing(now_ms) {
                if a.is_suppressed() {
                    continue;
                }
                if a.is_acked() && !was_flapping {
                    // Not re-notified, but the receiver still believes it fires: keep it
                    // in the log so that its resolution is announced. (A receiver told it
                    // flaps is told it is stable, acknowledged or not.)
                    if let Some(rank) = old.firing.get(fp) {
                        carried.insert(fp.clone(), *rank);
                    }
                    continue;
                }
                firing.push(a);
            } else {
                drop.push(fp.clone());
                if !a.is_suppressed() && (old.firing.contains_key(fp) || was_flapping) {
                    resolved.push(a);
                }
            }
        }
        // Readers want the worst first, then the oldest; resolved ones in the order
        // they ended. Deterministic, so a retried flush renders the same message.
        firing.sort_by(|a, b| {
            severity_rank(&b.notice.severity)
                .cmp(&severity_rank(&a.notice.severity))
                .then(a.notice.starts_at.cmp(&b.notice.starts_at))
                .then(a.notice.id.cmp(&b.notice.id))
        });
        resolved.sort_by(|a, b| {
            a.notice
                .ends_at
                .cmp(&b.notice.ends_at)
                .then(a.notice.id.cmp(&b.notice.id))
        });
        let changed_firing = firing.iter().any(|a| {
            old.firing
                .get(&a.notice.fingerprint)
                .is_none_or(|r| severity_rank(&a.notice.severity) > *r)
        });
        let repeat_due = !firing.is_empty()
            && (self.log.is_none()
                || now_ms.saturating_sub(old.at_ms)
                    >= self.opts.repeat_interval.as_millis() as i64);
        // Only what this notification carries (a silenced one is not told).
        stable.retain(|fp| {
            firing
                .iter()
                .chain(&resolved)
                .any(|a| &a.notice.fingerprint == fp)
        });
        let needs_update = changed_firing
            || !resolved.is_empty()
            || repeat_due
            || !flapping.is_empty()
            || !stable.is_empty();

        if needs_update {
            // A new episode starts with a group's first notification (or with the first
            // one after an upgrade, whose stored entry has no episode yet).
            let episode_ms = if old.seq == 0 || old.episode_ms == 0 {
                now_ms
            } else {
                old.episode_ms
            };
            let mut entry = NotifyLogEntry {
                seq: old.seq + 1,
                at_ms: now_ms,
                episode_ms,
                firing: carried,
                resolved: resolved
                    .iter()
                    .map(|a| a.notice.fingerprint.clone())
                    .collect(),
                flapping: flapping_told,
            };
            for a in &firing {
                entry.firing.insert(
                    a.notice.fingerprint.clone(),
                    severity_rank(&a.notice.severity),
                );
            }
            // Firing if any alert it carries fires (flapping ones by their state now).
            let status = if firing.is_empty() && !flapping.iter().any(|a| a.is_firing(now_ms)) {
                AlertState::Resolved
            } else {
                AlertState::Firing
            };
            let n = Notification {
                group_key: self.key.clone(),
                receiver: self.opts.receiver.clone(),
                group_labels: self.labels.clone(),
                status,
                firing: firing
                    .iter()
                    .map(|a| resolved_copy(a, now_ms, false))
                    .collect(),
                resolved: resolved
                    .iter()
                    .map(|a| resolved_copy(a, now_ms, true))
                    .collect(),
                flapping: flapping.iter().map(|a| a.notice.clone()).collect(),
                stable,
                seq: entry.seq,
                at_ms: now_ms,
                episode_ms,
            };
            return FlushPlan {
                notify: Some((n, entry)),
                pruned_log: None,
                drop,
            };
        }

        // Nothing to send: forget alerts that left, resolved or are now suppressed, so
        // that a return (or the end of a silence) is announced again.
        let pruned_log = self.log.as_ref().and_then(|log| {
            let mut pruned = log.clone();
            pruned.firing.retain(|fp, _| {
                self.alerts
                    .get(fp)
                    .is_some_and(|a| a.is_firing(now_ms) && !a.is_suppressed())
            });
            pruned
                .flapping
                .retain(|fp| self.alerts.get(fp).is_some_and(|a| a.notice.flapping));
            (pruned != *log).then_some(pruned)
        });
        FlushPlan {
            notify: None,
            pruned_log,
            drop,
        }
    }
}

/// The notice as it goes out; alerts past their `ends_at` are reported resolved.
fn resolved_copy(a: &GroupAlert, now_ms: i64, resolved: bool) -> AlertNotice {
    let mut n = a.notice.clone();
    if resolved && n.state == AlertState::Firing {
        n.state = AlertState::Resolved;
        if n.ends_at.is_none() {
            n.ends_at = chrono::DateTime::from_timestamp_millis(now_ms);
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::route::GroupBy;
    use std::time::Duration;

    fn notice(fp: &str, state: AlertState) -> AlertNotice {
        let mut n = AlertNotice::test(fp.len() as i64, fp, "A");
        n.state = state;
        n
    }

    fn group(alerts: Vec<AlertNotice>, log: Option<NotifyLogEntry>) -> AggregationGroup {
        AggregationGroup {
            key: "{}:{alertname=\"A\"}".into(),
            route_id: "{}".into(),
            opts: RouteOpts {
                receiver: "r".into(),
                group_by: GroupBy::Labels(vec!["alertname".into()]),
                group_wait: Duration::from_secs(1),
                group_interval: Duration::from_secs(5),
                repeat_interval: Duration::from_secs(60),
            },
            labels: BTreeMap::new(),
            alerts: alerts
                .into_iter()
                .map(|n| {
                    (
                        n.fingerprint.clone(),
                        GroupAlert {
                            notice: n,
                            updated_ms: 0,
                        },
                    )
                })
                .collect(),
            created_ms: 0,
            next_flush: Instant::now(),
            has_flushed: true,
            log,
        }
    }

    fn log_of(fps: &[&str], at_ms: i64) -> NotifyLogEntry {
        NotifyLogEntry {
            seq: 1,
            at_ms,
            firing: fps.iter().map(|f| (f.to_string(), 1)).collect(),
            resolved: BTreeSet::new(),
            flapping: Default::default(),
            episode_ms: 0,
        }
    }

    #[test]
    fn new_firing_notifies_and_unchanged_waits_for_repeat() {
        let g = group(vec![notice("a", AlertState::Firing)], None);
        let (n, entry) = g.plan(1000).notify.expect("first notification");
        assert_eq!(n.firing.len(), 1);
        assert_eq!(n.status, AlertState::Firing);
        assert_eq!(entry.seq, 1);

        let g = group(vec![notice("a", AlertState::Firing)], Some(entry.clone()));
        assert!(
            g.plan(2000).notify.is_none(),
            "unchanged before repeat_interval"
        );
        let (n, e2) = g.plan(1000 + 60_000).notify.expect("repeat");
        assert_eq!(n.seq, 2);
        assert_eq!(e2.seq, 2);
    }

    #[test]
    fn an_episode_begins_with_the_first_notification_and_is_kept() {
        let g = group(vec![notice("a", AlertState::Firing)], None);
        let (n, entry) = g.plan(1000).notify.expect("first notification");
        assert_eq!((n.episode_ms, entry.episode_ms), (1000, 1000));
        // Another alert joins, the first resolves: the same episode (from the stored log).
        let g = group(
            vec![
                notice("a", AlertState::Resolved),
                notice("bb", AlertState::Firing),
            ],
            Some(entry),
        );
        let (n, entry) = g.plan(9000).notify.expect("changes");
        assert_eq!((n.seq, n.at_ms, n.episode_ms), (2, 9000, 1000));
        let json = serde_json::to_string(&entry).unwrap();
        let stored: NotifyLogEntry = serde_json::from_str(&json).unwrap();
        assert_eq!(stored.episode_ms, 1000, "kept across a restart");
        // An entry written before episodes were kept starts one at its next notification.
        let g = group(
            vec![notice("a", AlertState::Resolved)],
            Some(log_of(&["a"], 5)),
        );
        let (n, _) = g.plan(7000).notify.expect("resolve");
        assert_eq!(n.episode_ms, 7000);
    }

    #[test]
    fn resolved_is_sent_once_then_dropped() {
        let g = group(
            vec![notice("a", AlertState::Resolved)],
            Some(log_of(&["a"], 0)),
        );
        let plan = g.plan(1000);
        let (n, entry) = plan.notify.expect("resolved notification");
        assert_eq!(n.status, AlertState::Resolved);
        assert_eq!(n.resolved.len(), 1);
        assert!(entry.firing.is_empty());
        assert_eq!(plan.drop, vec!["a".to_string()]);
    }

    #[test]
    fn resolved_never_announced_is_dropped_silently() {
        let g = group(vec![notice("a", AlertState::Resolved)], None);
        let plan = g.plan(1000);
        assert!(plan.notify.is_none());
        assert_eq!(plan.drop, vec!["a".to_string()]);
    }

    #[test]
    fn silenced_and_inhibited_are_not_notified() {
        let mut s = notice("a", AlertState::Firing);
        s.silenced = true;
        let mut i = notice("b", AlertState::Firing);
        i.inhibited = true;
        let g = group(vec![s, i], None);
        assert!(g.plan(1000).notify.is_none());
    }

    #[test]
    fn silence_prunes_the_log_so_its_end_renotifies() {
        let mut s = notice("a", AlertState::Firing);
        s.silenced = true;
        let g = group(vec![s.clone()], Some(log_of(&["a"], 0)));
        let plan = g.plan(1000);
        assert!(plan.notify.is_none());
        let pruned = plan.pruned_log.expect("log pruned");
        assert!(pruned.firing.is_empty());
        s.silenced = false;
        let g = group(vec![s], Some(pruned));
        assert!(
            g.plan(2000).notify.is_some(),
            "silence over: announced again"
        );
    }

    #[test]
    fn ack_stops_repeats_until_resolution_or_escalation() {
        let mut a = notice("a", AlertState::Firing);
        a.acknowledged = true;
        let g = group(vec![a.clone()], Some(log_of(&["a"], 0)));
        assert!(g.plan(120_000).notify.is_none(), "no repeat while acked");

        // Another alert in the group repeats; the acked one stays known as firing.
        let b = notice("bb", AlertState::Firing);
        let g = group(vec![a.clone(), b], Some(log_of(&["a", "bb"], 0)));
        let (n, entry) = g.plan(120_000).notify.expect("repeat for b");
        assert_eq!(n.firing.len(), 1);
        assert_eq!(n.firing[0].fingerprint, "bb");
        assert!(entry.firing.contains_key("a"), "acked alert carried");

        // Resolution of the acked alert is announced.
        let mut r = a.clone();
        r.state = AlertState::Resolved;
        let g = group(vec![r], Some(entry));
        let (n, _) = g.plan(130_000).notify.expect("resolved announced");
        assert_eq!(n.resolved[0].fingerprint, "a");

        // Escalation lifts the ack.
        let mut up = a.clone();
        up.severity = "critical".into();
        up.severity_raised = true;
        let g = group(vec![up], Some(log_of(&["a"], 100_000)));
        let (n, entry) = g.plan(101_000).notify.expect("escalation notified");
        assert_eq!(n.firing[0].severity, "critical");
        assert_eq!(entry.firing["a"], severity_rank("critical"));
    }

    #[test]
    fn severity_rise_is_a_change() {
        let mut a = notice("a", AlertState::Firing);
        a.severity = "critical".into();
        let g = group(vec![a], Some(log_of(&["a"], 1000)));
        assert!(g.plan(2000).notify.is_some());
    }

    #[test]
    fn ends_at_in_the_past_resolves() {
        let mut a = notice("a", AlertState::Firing);
        a.ends_at = chrono::DateTime::from_timestamp_millis(500);
        let g = group(vec![a], Some(log_of(&["a"], 0)));
        let plan = g.plan(1000);
        let (n, _) = plan.notify.unwrap();
        assert_eq!(n.status, AlertState::Resolved);
        assert_eq!(n.resolved[0].state, AlertState::Resolved);
    }

    #[test]
    fn common_labels() {
        let mut a = notice("a", AlertState::Firing);
        a.labels.insert("job".into(), "x".into());
        let mut b = notice("bb", AlertState::Firing);
        b.labels.insert("job".into(), "y".into());
        let g = group(vec![a, b], None);
        let (n, _) = g.plan(0).notify.unwrap();
        let common = n.common_labels();
        assert_eq!(common.get("alertname").map(String::as_str), Some("A"));
        assert!(!common.contains_key("job"));
    }

    #[test]
    fn flapping_is_told_once_and_stable_even_when_acknowledged() {
        let now = chrono::Utc::now().timestamp_millis();
        let mut a = notice("a", AlertState::Resolved);
        a.flapping = true;
        let g = group(vec![a.clone()], Some(log_of(&["a"], now)));
        let p = g.plan(now);
        let (n, entry) = p.notify.expect("the flapping message");
        assert_eq!(n.flapping.len(), 1);
        assert!(n.firing.is_empty() && n.resolved.is_empty(), "held");
        assert_eq!(n.status, AlertState::Resolved, "by its state now");
        assert!(entry.flapping.contains("a"));
        assert!(entry.firing.contains_key("a"), "still believed firing");
        assert!(p.drop.is_empty(), "kept while flapping");
        // Told: nothing more while it flaps.
        let g = group(vec![a.clone()], Some(entry.clone()));
        assert!(g.plan(now).notify.is_none());
        // Stable, firing and acknowledged meanwhile: still told it is stable, once.
        let mut b = notice("a", AlertState::Firing);
        b.acknowledged = true;
        let g = group(vec![b], Some(entry));
        let (n, entry) = g.plan(now).notify.expect("the stable message");
        assert!(n.stable.contains("a"));
        assert_eq!(n.firing.len(), 1);
        assert!(entry.flapping.is_empty());
    }
}
