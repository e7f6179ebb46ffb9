//! What one batch writes and announces, and how repeats are thinned out.

use std::collections::{HashMap, HashSet};

use super::{ANNOUNCE_BEFORE_END_MS, ANNOUNCE_EVERY_MS};
use crate::alerts::change::ChangeKind;
use crate::alerts::journal::Refresh;
use crate::alerts::lifecycle::{Event, Receipt};
use crate::alerts::model::{Alert, AlertState, EventKind, Severity};
use crate::alerts::repo;
use crate::audit::AuditRecord;

#[derive(Default)]
pub(super) struct Plan {
    pub(super) now: i64,
    pub(super) order: Vec<String>,
    pub(super) alerts: HashMap<String, Alert>,
    pub(super) before: HashMap<String, Option<(AlertState, Severity)>>,
    /// Each alert's count when it entered the plan: a write adds what it counted since.
    pub(super) base: HashMap<String, i64>,
    pub(super) dirty: HashSet<String>,
    /// Alerts whose receipts only refreshed volatile fields (journaled).
    pub(super) volatile: HashSet<String>,
    pub(super) events: Vec<(String, Event)>,
    pub(super) changes: Vec<(String, ChangeKind)>,
    pub(super) audit: Vec<AuditRecord>,
    /// Expiry: the `ends_at` each alert it resolves had when read; the commit fails
    /// ([`crate::store::StoreError::Conflict`]) for any whose stored one has moved since.
    pub(super) expect_ends: Vec<(String, Option<i64>)>,
}

impl Plan {
    pub(super) fn new(now: i64) -> Self {
        Plan {
            now,
            ..Default::default()
        }
    }

    /// Adds an alert as it is stored (not dirty unless changed later).
    pub(super) fn add_stored(&mut self, a: Alert) {
        if self.alerts.contains_key(&a.fingerprint) {
            return;
        }
        self.before
            .insert(a.fingerprint.clone(), Some((a.state, a.severity)));
        self.base.insert(a.fingerprint.clone(), a.count);
        self.order.push(a.fingerprint.clone());
        self.alerts.insert(a.fingerprint.clone(), a);
    }

    /// Takes the alert of `fp` out of the plan, else out of the writer's cache (its
    /// first touch in this batch records the state it had), else `None` (new).
    pub(super) fn take(
        &mut self,
        fp: &str,
        cache: &mut HashMap<String, Alert>,
    ) -> (String, Option<Alert>) {
        if let Some((key, a)) = self.alerts.remove_entry(fp) {
            return (key, Some(a));
        }
        let (key, alert) = match cache.remove_entry(fp) {
            Some((key, a)) => (key, Some(a)),
            None => (fp.to_string(), None),
        };
        if !self.before.contains_key(fp) {
            let state = alert.as_ref().map(|a| (a.state, a.severity));
            self.before.insert(key.clone(), state);
            self.base
                .insert(key.clone(), alert.as_ref().map_or(0, |a| a.count));
            self.order.push(key.clone());
        }
        (key, alert)
    }

    /// Puts an alert back after a receipt, with what the receipt did.
    pub(super) fn put(&mut self, key: String, alert: Alert, r: Receipt, volatile: bool) {
        for e in r.events {
            self.events.push((key.clone(), e));
        }
        for c in r.changes {
            self.changes.push((key.clone(), c));
        }
        if volatile {
            if !self.dirty.contains(&key) {
                self.volatile.insert(key.clone());
            }
        } else if r.dirty {
            self.volatile.remove(&key);
            self.dirty.insert(key.clone());
        }
        self.alerts.insert(key, alert);
    }

    pub(super) fn event(&mut self, fp: &str, e: Event, change: Option<ChangeKind>) {
        self.events.push((fp.to_string(), e));
        if let Some(c) = change {
            self.changes.push((fp.to_string(), c));
        }
        self.volatile.remove(fp);
        self.dirty.insert(fp.to_string());
    }

    pub(super) fn is_empty(&self) -> bool {
        self.dirty.is_empty() && self.volatile.is_empty() && self.audit.is_empty()
    }

    /// The refreshes of the alerts that only repeated (and were not written in full).
    pub(super) fn refreshes(&self) -> Vec<Refresh> {
        self.volatile
            .iter()
            .filter(|fp| !self.dirty.contains(*fp))
            .filter_map(|fp| self.alerts.get(fp))
            .filter(|a| a.id > 0)
            .map(|a| Refresh::of(a, self.base_count(&a.fingerprint, a)))
            .filter(|r| r.added > 0)
            .collect()
    }

    /// The count `fp` had when it entered the plan.
    pub(super) fn base_count(&self, fp: &str, a: &Alert) -> i64 {
        self.base.get(fp).copied().unwrap_or(a.count)
    }

    /// The full writes of the dirty alerts, in order.
    pub(super) fn full_writes(&self) -> Vec<repo::FullWrite<'_>> {
        self.order
            .iter()
            .filter(|fp| self.dirty.contains(*fp))
            .filter_map(|fp| {
                let alert = self.alerts.get(fp)?;
                Some(repo::FullWrite {
                    alert,
                    base_count: self.base_count(fp, alert),
                })
            })
            .collect()
    }

    /// The changes to announce: per alert, its distinct kinds in order; an alert that
    /// ends the batch resolved announces only that.
    pub(super) fn announcements(&self) -> Vec<(&Alert, ChangeKind)> {
        let mut per: HashMap<&str, Vec<ChangeKind>> = HashMap::new();
        let mut order: Vec<&str> = Vec::new();
        for (fp, kind) in &self.changes {
            let list = per.entry(fp.as_str()).or_insert_with(|| {
                order.push(fp.as_str());
                Vec::new()
            });
            if !list.contains(kind) {
                list.push(*kind);
            }
        }
        let mut out = Vec::new();
        for fp in order {
            let Some(alert) = self.alerts.get(fp) else {
                continue;
            };
            let kinds = &per[fp];
            if alert.state == AlertState::Resolved {
                if kinds.contains(&ChangeKind::Resolved) {
                    out.push((alert, ChangeKind::Resolved));
                }
                if kinds.contains(&ChangeKind::Acked) {
                    out.push((alert, ChangeKind::Acked));
                }
                continue;
            }
            for k in kinds {
                if *k != ChangeKind::Resolved {
                    out.push((alert, *k));
                }
            }
        }
        out
    }
}

/// The change-feed rows of `plan` (what [`Plan::announcements`] announces), with the
/// ids new alerts got in this transaction.
pub(super) fn feed_rows(plan: &Plan, by_fp: &HashMap<&str, i64>) -> Vec<repo::NewChange> {
    plan.announcements()
        .into_iter()
        .filter_map(|(a, kind)| {
            let id = by_fp.get(a.fingerprint.as_str()).copied().unwrap_or(a.id);
            (id > 0).then(|| repo::NewChange {
                alert_id: id,
                kind: kind.as_str(),
                at_ms: plan.now,
            })
        })
        .collect()
}

/// How recently an alert's repeats were logged and announced.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Throttle {
    /// Whether a `repeated` event was logged since it fired (by this process).
    pub(super) logged: bool,
    /// When it was last announced, and the `ends_at` announced then.
    pub(super) announced: Option<(i64, Option<i64>)>,
    /// Whether a repeat was announced since its last other change.
    pub(super) repeat_told: bool,
}

/// Thins out what a receipt logs and announces; returns whether it only refreshed a
/// firing alert (so it can be journaled instead of written).
///
/// A `repeated` event is kept for the first repeat of an incident (the count on the
/// alert says how many followed; a restarted process logs one more). An unchanged repeat is announced when it is the first since
/// another change of the alert, then at most every [`ANNOUNCE_EVERY_MS`], or when the
/// `ends_at` the notifier holds is about to pass.
pub(super) fn coalesce(c: &mut Throttle, alert: &Alert, applied: &mut Receipt, now: i64) -> bool {
    let repeat_only = applied.changes.iter().all(|k| *k == ChangeKind::Repeated)
        && applied.events.iter().all(|e| e.kind == EventKind::Repeated);
    if !repeat_only {
        if applied.changes.contains(&ChangeKind::Fired) {
            c.logged = false;
        }
        return false;
    }
    if !applied.events.is_empty() {
        if !c.logged {
            c.logged = true;
        } else {
            applied.events.clear();
        }
    }
    let unchanged = applied.refreshed_only;
    if !applied.changes.is_empty() {
        let ends = alert.ends_at_ms;
        let due = match c.announced {
            _ if !c.repeat_told => true,
            None => true,
            Some((at, known)) => {
                now - at >= ANNOUNCE_EVERY_MS
                    || (known != ends && known.is_some_and(|e| e - now < ANNOUNCE_BEFORE_END_MS))
            }
        };
        if due || !unchanged {
            c.announced = Some((now, ends));
            c.repeat_told = true;
        } else {
            applied.changes.clear();
        }
    }
    unchanged && applied.events.is_empty() && alert.id > 0
}
