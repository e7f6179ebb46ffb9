//! Several nodes writing one database (PostgreSQL with the change feed): what this
//! node's writer learns from the others, and what only the leader's writer does.
//!
//! * Every node follows the change feed each tick: a newer copy of an alert another
//!   node changed replaces the cached one and updates the inhibition index, so a
//!   receipt here is inhibited by a source that fired elsewhere. The leader writes the
//!   inhibition flags such a change moves.
//! * Silences are read again each tick (one may have been made on another node).
//! * Time-driven work runs on the leader only, over the database rather than its
//!   memory: resolving alerts whose `ends_at` passed (after a grace that lets the
//!   other nodes' journaled repeats reach the database), silence start and end.
//! * `watchpost_alerts_active` is read from the database (every node's alerts).

use std::collections::BTreeSet;

use super::Writer;
use crate::alerts::model::{Alert, AlertState, Labels};
use crate::alerts::pipeline::plan::Plan;
use crate::alerts::pipeline::{CONFLICT_ATTEMPTS, EXPIRE_CHUNK, TICK, lock};
use crate::alerts::repo;
use crate::silence::{self, SilenceSet};
use crate::store::{StoreError, now_ms};

/// Feed rows read per round.
const FOLLOW_BATCH: i64 = 2_000;

impl Writer {
    /// Whether other nodes may write the same alerts.
    pub(super) fn shared(&self) -> bool {
        self.p.cfg.feed
    }

    /// Whether this node does the time-driven writes (always, when alone).
    pub(super) fn does_timed_work(&self) -> bool {
        !self.shared() || self.p.cfg.leader.is_leader()
    }

    /// Starts following the feed at its head (read before the firing alerts are).
    pub(super) async fn follow_from_head(&mut self) -> Result<(), StoreError> {
        if self.shared() {
            self.feed_cursor = repo::changes_head(&self.p.db).await?;
        }
        Ok(())
    }

    /// Takes in what was committed since the last call (see the module docs).
    pub(super) async fn follow(&mut self) -> Result<(), StoreError> {
        if !self.shared() {
            return Ok(());
        }
        self.news_seen = self.p.cfg.news.count();
        loop {
            let rows = repo::changes_since(&self.p.db, self.feed_cursor, FOLLOW_BATCH).await?;
            let Some(last) = rows.last().map(|r| r.seq) else {
                return Ok(());
            };
            let me = Some(self.p.cfg.node.as_str());
            let mut ids: Vec<i64> = rows
                .iter()
                .filter(|r| r.node.as_deref() != me)
                .map(|r| r.alert_id)
                .collect();
            ids.sort_unstable();
            ids.dedup();
            let fresh = repo::by_ids(&self.p.db, &ids).await?;
            let affected = self.take_newer(fresh);
            self.feed_cursor = last;
            // The leader writes the inhibition flags the others' changes move.
            if self.p.cfg.leader.is_leader() {
                self.unsettled.extend(affected);
                self.settle_flags().await?;
            }
            if (rows.len() as i64) < FOLLOW_BATCH {
                return Ok(());
            }
        }
    }

    /// Replaces cached alerts older than their stored copies in `fresh`; returns the
    /// alerts whose inhibition may have changed.
    fn take_newer(&mut self, fresh: Vec<Alert>) -> BTreeSet<String> {
        let pending = lock(&self.p.pending).clone();
        let mut affected = BTreeSet::new();
        for mut a in fresh {
            // The same row, not newer (a row deleted by retention and created again
            // has another id).
            if self
                .cache
                .get(&a.fingerprint)
                .is_some_and(|c| c.id == a.id && c.version >= a.version)
            {
                continue;
            }
            if let Some(r) = pending.get(&a.id) {
                r.apply_to(&mut a);
            }
            let view = a.match_view();
            let labels = (a.state == AlertState::Firing).then_some(&view as &dyn Labels);
            affected.extend(self.inhibitor.update(&a.fingerprint, labels));
            self.cache.insert(a.fingerprint.clone(), a);
        }
        affected
    }

    /// Writes the inhibition flags of the [`Writer::unsettled`] alerts as the index
    /// now says (over their stored rows, again if another node wrote one meanwhile).
    pub(super) async fn settle_flags(&mut self) -> Result<(), StoreError> {
        if self.unsettled.is_empty() {
            return Ok(());
        }
        over_fresh_rows!(self, self.try_settle_flags().await)
    }

    async fn try_settle_flags(&mut self) -> Result<(), StoreError> {
        let fps = self.unsettled.clone();
        let mut plan = Plan::new(now_ms());
        self.load_into(&mut plan, &fps).await?;
        self.reinhibit(&mut plan, fps);
        self.commit(&mut plan).await?;
        self.unsettled.clear();
        self.announce(&plan).await;
        self.remember(plan);
        Ok(())
    }

    /// On becoming the leader (several nodes): the silence and inhibition flags of every
    /// firing alert, derived again from the database — the previous leader may have died
    /// before writing a transition.
    pub(super) async fn on_leadership(&mut self) {
        if !self.shared() {
            return;
        }
        let leading = self.p.cfg.leader.is_leader();
        if !leading {
            self.was_leading = false;
        } else if !self.was_leading {
            match self.settle().await {
                Ok(()) => self.was_leading = true,
                Err(e) => {
                    tracing::warn!(error = %e, "settling silences and inhibitions as the new leader failed; will retry")
                }
            }
        }
    }

    /// Reads the silences again (one may have been made, changed or expired on another
    /// node).
    pub(super) async fn reload_silences(&mut self, now: i64) -> Result<(), StoreError> {
        if self.shared() {
            self.silences = SilenceSet::new(silence::unexpired(&self.p.db, now).await?);
        }
        Ok(())
    }

    /// The firing alerts whose `ends_at` has passed: from memory when alone, from the
    /// database on the leader (with a grace for journaled repeats of other nodes not yet
    /// checkpointed), none on other nodes. With the database's, the `ends_at` each had
    /// as read: the expiry commits only where it is still the stored one.
    pub(super) async fn due_to_expire(
        &self,
        now: i64,
    ) -> Result<(Vec<Alert>, Vec<(String, Option<i64>)>), StoreError> {
        if !self.shared() {
            // The cache holds every firing alert, with `ends_at` as last received.
            let mut due: Vec<Alert> = self
                .cache
                .values()
                .filter(|a| a.state == AlertState::Firing && a.ends_at_ms.is_some_and(|e| e <= now))
                .cloned()
                .collect();
            due.sort_by_key(|a| (a.ends_at_ms, a.id));
            due.truncate(EXPIRE_CHUNK);
            return Ok((due, Vec::new()));
        }
        if !self.p.cfg.leader.is_leader() {
            return Ok((Vec::new(), Vec::new()));
        }
        let grace = (self.p.cfg.checkpoint_interval + 2 * TICK).as_millis() as i64;
        let mut due = repo::expired(&self.p.db, now - grace, EXPIRE_CHUNK as i64).await?;
        let read: std::collections::HashMap<String, Option<i64>> = due
            .iter()
            .map(|a| (a.fingerprint.clone(), a.ends_at_ms))
            .collect();
        let pending = lock(&self.p.pending);
        for a in &mut due {
            if let Some(r) = pending.get(&a.id) {
                r.apply_to(a);
            }
        }
        // A repeat journaled here moved `ends_at` on.
        due.retain(|a| a.ends_at_ms.is_some_and(|e| e <= now));
        let expected = due
            .iter()
            .map(|a| {
                (
                    a.fingerprint.clone(),
                    read.get(&a.fingerprint).copied().flatten(),
                )
            })
            .collect();
        Ok((due, expected))
    }

    /// Sets `watchpost_alerts_active` from the database (every node's alerts).
    pub(super) async fn refresh_active(&mut self) -> Result<(), StoreError> {
        if !self.shared() {
            return Ok(());
        }
        let counts = repo::firing_counts(&self.p.db).await?;
        self.active.clear();
        for (severity, n) in counts {
            if let Some(s) = crate::alerts::model::Severity::parse_strict(&severity) {
                *self.active.entry(s).or_default() += n;
            }
        }
        self.publish_active();
        Ok(())
    }
}
