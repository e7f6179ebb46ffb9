//! Flap damping (Nagios' flap detection, simplified): an alert that changes state more
//! than `max_transitions` times in `window` is *flapping*. Its notifications are held
//! (the groups send one "flapping" message instead) until it has not changed for
//! `window / 3`, when it is *stable* again and one message tells its final state.
//!
//! The tracker is the dispatcher's, on the leader; it is rebuilt at start from the
//! stored `fired`/`resolved` events of the last window.

use std::collections::{HashMap, VecDeque};

use crate::config::FlapConfig;

/// What a state change did to an alert's flap status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlapChange {
    /// It started flapping with this many changes in the window.
    Started(usize),
}

#[derive(Debug, Default)]
struct Flap {
    /// The alert's id (for storing its status).
    id: i64,
    firing: Option<bool>,
    /// Times of its state changes within the window, oldest first.
    changes: VecDeque<i64>,
    /// Since when it is flapping.
    since_ms: Option<i64>,
}

/// Per-fingerprint state changes and flap status.
#[derive(Debug)]
pub struct FlapTracker {
    max: usize,
    window_ms: i64,
    alerts: HashMap<String, Flap>,
}

impl FlapTracker {
    /// A tracker for `cfg` (`max_transitions = 0`: never flapping).
    pub fn new(cfg: &FlapConfig) -> Self {
        FlapTracker {
            max: cfg.max_transitions,
            window_ms: i64::try_from(cfg.window.as_millis()).unwrap_or(i64::MAX),
            alerts: HashMap::new(),
        }
    }

    /// How long without a change makes a flapping alert stable.
    fn calm_ms(&self) -> i64 {
        self.window_ms / 3
    }

    /// Records the state of alert `id` (`fp`) as the dispatcher learns it at `at_ms`;
    /// a change of state counts. `restoring`: the state as found at start, which is
    /// not a change.
    pub fn observe(
        &mut self,
        fp: &str,
        id: i64,
        firing: bool,
        at_ms: i64,
        restoring: bool,
    ) -> Option<FlapChange> {
        if self.max == 0 {
            return None;
        }
        let window_ms = self.window_ms;
        let max = self.max;
        let f = self.alerts.entry(fp.to_string()).or_default();
        f.id = id;
        let previous = f.firing.replace(firing);
        let changed = if restoring {
            false
        } else {
            // A first notice counts when it fires (a new alert); a resolve of an alert
            // never seen firing does not.
            previous.map_or(firing, |p| p != firing)
        };
        if !changed {
            return None;
        }
        f.changes.push_back(at_ms);
        while f
            .changes
            .front()
            .is_some_and(|t| *t < at_ms.saturating_sub(window_ms))
        {
            f.changes.pop_front();
        }
        if f.since_ms.is_none() && f.changes.len() > max {
            f.since_ms = Some(at_ms);
            return Some(FlapChange::Started(f.changes.len()));
        }
        None
    }

    /// A stored change (a `fired`/`resolved` event at start): counted, but it never
    /// starts flapping — whether an alert flaps is what the database says.
    pub fn replay(&mut self, fp: &str, firing: bool, at_ms: i64) {
        if self.max == 0 {
            return;
        }
        let f = self.alerts.entry(fp.to_string()).or_default();
        if f.firing.replace(firing) != Some(firing) {
            f.changes.push_back(at_ms);
            if f.changes.len() > self.max + 1 {
                f.changes.pop_front();
            }
        }
    }

    /// Whether `fp` is flapping.
    pub fn is_flapping(&self, fp: &str) -> bool {
        self.alerts.get(fp).is_some_and(|f| f.since_ms.is_some())
    }

    /// Since when `fp` is flapping.
    pub fn flapping_since(&self, fp: &str) -> Option<i64> {
        self.alerts.get(fp).and_then(|f| f.since_ms)
    }

    /// Flapping alerts that have not changed for `window / 3` at `now_ms`, as
    /// (fingerprint, id): they are stable again, and their changes are forgotten (a
    /// later change starts counting afresh). Also forgets alerts with no change in the
    /// window, so memory follows the alerts that change.
    pub fn settle(&mut self, now_ms: i64) -> Vec<(String, i64)> {
        let calm = self.calm_ms();
        let window_ms = self.window_ms;
        let mut stable = Vec::new();
        self.alerts.retain(|fp, f| {
            let last = f.changes.back().copied().unwrap_or(i64::MIN);
            if f.since_ms.is_some() && now_ms.saturating_sub(last) >= calm {
                f.since_ms = None;
                f.changes.clear();
                stable.push((fp.clone(), f.id));
            }
            f.since_ms.is_some() || now_ms.saturating_sub(last) < window_ms
        });
        stable.sort();
        stable
    }

    /// When [`FlapTracker::settle`] has work next, if any alert is flapping.
    pub fn next_settle_ms(&self) -> Option<i64> {
        let calm = self.calm_ms();
        self.alerts
            .values()
            .filter(|f| f.since_ms.is_some())
            .filter_map(|f| f.changes.back().map(|t| t.saturating_add(calm)))
            .min()
    }

    /// Forgets everything (a new leadership term rebuilds it).
    pub fn clear(&mut self) {
        self.alerts.clear();
    }

    /// Number of flapping alerts.
    pub fn flapping(&self) -> usize {
        self.alerts
            .values()
            .filter(|f| f.since_ms.is_some())
            .count()
    }

    /// Marks alert `id` (`fp`) flapping since `since_ms`, as the database says (it
    /// settles, and is stored stable, once calm; at once when damping is off).
    pub fn restore_flapping(&mut self, fp: &str, id: i64, since_ms: i64) {
        let f = self.alerts.entry(fp.to_string()).or_default();
        f.id = id;
        f.since_ms = Some(since_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn tracker() -> FlapTracker {
        FlapTracker::new(&FlapConfig {
            max_transitions: 4,
            window: Duration::from_secs(30),
        })
    }

    #[test]
    fn more_than_max_changes_in_the_window_is_flapping() {
        let mut t = tracker();
        let mut started = Vec::new();
        for i in 0..8 {
            if let Some(c) = t.observe("a", 1, i % 2 == 0, i * 1000, false) {
                started.push((i, c));
            }
        }
        assert_eq!(
            started,
            vec![(4, FlapChange::Started(5))],
            "once, at the 5th change"
        );
        assert!(t.is_flapping("a"));
        assert_eq!(t.flapping(), 1);
        // Stable after window/3 = 10 s without a change.
        assert!(t.settle(7000 + 9_999).is_empty());
        assert_eq!(t.next_settle_ms(), Some(17_000));
        assert_eq!(t.settle(17_000), vec![("a".to_string(), 1)]);
        // Its changes are forgotten: one more change is not flapping again.
        assert_eq!(t.observe("a", 1, true, 18_000, false), None);
        assert!(!t.is_flapping("a"));
        assert!(!t.is_flapping("a"));
        assert_eq!(t.next_settle_ms(), None);
    }

    #[test]
    fn slow_changes_and_repeats_never_flap() {
        let mut t = tracker();
        for i in 0..20 {
            // One change every 10 s: at most 3 in any 30 s window.
            assert_eq!(t.observe("a", 1, i % 2 == 0, i * 10_000, false), None);
            // Repeats of the same state are not changes.
            assert_eq!(t.observe("a", 1, i % 2 == 0, i * 10_000 + 1, false), None);
        }
        // Restored states are not changes; a first resolve is not one either.
        for i in 0..10 {
            assert_eq!(t.observe("b", 2, i % 2 == 0, i, true), None);
        }
        assert_eq!(t.observe("c", 3, false, 0, false), None);
        assert!(!t.is_flapping("b"));
        // Quiet alerts are forgotten after the window.
        t.settle(1_000_000);
        assert!(t.alerts.is_empty());
    }

    #[test]
    fn replayed_changes_count_but_never_start_flapping() {
        let mut t = tracker();
        for i in 0..6 {
            t.replay("a", i % 2 == 0, i * 1000);
        }
        assert!(!t.is_flapping("a"), "the database decides");
        // The next live change is the 7th in the window: flapping.
        assert!(t.observe("a", 1, true, 6_000, false).is_some());
        // Restored from the database, settled when calm, with its id.
        let mut t = tracker();
        t.restore_flapping("b", 9, 0);
        assert_eq!(t.settle(1), vec![("b".to_string(), 9)]);
    }

    #[test]
    fn zero_turns_damping_off() {
        let mut t = FlapTracker::new(&FlapConfig {
            max_transitions: 0,
            window: Duration::from_secs(30),
        });
        for i in 0..50 {
            assert_eq!(t.observe("a", 1, i % 2 == 0, i, false), None);
        }
        assert!(t.alerts.is_empty());
    }
}
