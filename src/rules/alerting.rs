//! Alerting rules: Prometheus' state machine, one alert per output series.
//!
//! A new series starts a *pending* alert; after `for` it *fires*; when the series leaves
//! the result a pending alert is dropped and a firing one becomes *inactive* (resolved),
//! unless `keep_firing_for` holds it. Resolved alerts are kept a while (as Prometheus
//! does) and a returning series starts a fresh alert.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use super::file::{RESOLVE_EXPR, RuleDef};
use super::template::{self, QuerySample, TemplateData};
use super::{EvalDeps, EvalStatus, LabelSet, RuleAlert, RuleAlertState, ms_to_time};

/// How long a resolved alert is remembered (Prometheus' `resolvedRetention`).
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// The state of one alert (and, as the most severe of its alerts, of a rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Not active (or resolved).
    Inactive,
    /// Active for less than `for`.
    Pending,
    /// Active for at least `for`.
    Firing,
}

impl AlertState {
    /// `inactive`, `pending`, `firing`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Labels (series labels minus `__name__`, rule labels, `alertname`).
    pub labels: LabelSet,
    /// Expanded annotations.
    pub annotations: LabelSet,
    /// Current state.
    pub state: AlertState,
    /// Last value of the expression.
    pub value: f64,
    /// When the series appeared (Unix ms).
    pub active_at_ms: i64,
    /// When it started firing.
    pub fired_at_ms: Option<i64>,
    /// When it resolved.
    pub resolved_at_ms: Option<i64>,
    /// When it was last sent to the pipeline.
    pub last_sent_ms: Option<i64>,
    /// Since when `keep_firing_for` holds it.
    pub keep_firing_since_ms: Option<i64>,
    /// The evaluation that last returned this series.
    seen: u64,
    /// `ALERTS` labels for `state` and `ALERTS_FOR_STATE` labels, built once per state.
    series: Option<(AlertState, Arc<LabelSet>, Arc<LabelSet>)>,
}

impl Alert {
    fn new(labels: LabelSet, annotations: LabelSet, value: f64, ts_ms: i64, seen: u64) -> Self {
        Alert {
            labels,
            annotations,
            state: AlertState::Pending,
            value,
            active_at_ms: ts_ms,
            fired_at_ms: None,
            resolved_at_ms: None,
            last_sent_ms: None,
            keep_firing_since_ms: None,
            seen,
            series: None,
        }
    }

    /// The `ALERTS` and `ALERTS_FOR_STATE` samples of this alert.
    fn samples(&mut self, out: &mut Vec<(Arc<LabelSet>, f64)>) {
        let fresh = matches!(&self.series, Some((s, _, _)) if *s == self.state);
        if !fresh {
            let mut alerts = self.labels.clone();
            alerts.insert("__name__".into(), "ALERTS".into());
            alerts.insert("alertstate".into(), self.state.as_str().into());
            let for_state = match self.series.take() {
                Some((_, _, f)) => f,
                None => {
                    let mut f = self.labels.clone();
                    f.insert("__name__".into(), "ALERTS_FOR_STATE".into());
                    Arc::new(f)
                }
            };
            self.series = Some((self.state, Arc::new(alerts), for_state));
        }
        if let Some((_, alerts, for_state)) = &self.series {
            out.push((alerts.clone(), 1.0));
            out.push((
                for_state.clone(),
                (self.active_at_ms.div_euclid(1000)) as f64,
            ));
        }
    }
}

/// Whether the resolve expression's output `held` holds an alert: some series whose
/// labels (without `__name__`) all equal the alert's.
fn holds(held: &Option<Vec<LabelSet>>, alert: &LabelSet) -> bool {
    held.as_ref().is_some_and(|sets| {
        sets.iter()
            .any(|s| s.iter().all(|(k, v)| alert.get(k) == Some(v)))
    })
}

/// Prometheus keys alerts by a hash of their labels.
fn fingerprint(labels: &LabelSet) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    labels.hash(&mut h);
    h.finish()
}

/// What one evaluation produced.
#[derive(Debug, Default)]
pub struct Output {
    /// `ALERTS` and `ALERTS_FOR_STATE` samples.
    pub samples: Vec<(Arc<LabelSet>, f64)>,
    /// A problem that did not stop the evaluation (a template that failed to expand).
    pub warning: Option<String>,
}

/// An alerting rule with its alerts.
pub struct AlertingRule {
    /// The definition.
    pub def: Arc<RuleDef>,
    /// The expression as Prometheus prints it (API `query`, generator URL).
    pub query: String,
    group: String,
    file: String,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    active: HashMap<u64, Alert>,
    status: EvalStatus,
    seq: u64,
}

/// A consistent view of an alerting rule for the API.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The most severe state of its alerts.
    pub state: AlertState,
    /// Pending and firing alerts, sorted by labels.
    pub alerts: Vec<Alert>,
    /// Evaluation status.
    pub status: EvalStatus,
}

impl AlertingRule {
    /// A rule of `group` in `file` with no alerts.
    pub fn new(def: Arc<RuleDef>, group: &str, file: &str) -> Self {
        Self {
            query: crate::promql::to_query(&def.expr),
            def,
            group: group.to_string(),
            file: file.to_string(),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Evaluates at `ts_ms`, querying at `query_ts_ms` (`ts` minus the group's query
    /// offset); `limit` > 0 caps the number of pending and firing alerts.
    pub fn eval(
        &self,
        deps: &EvalDeps,
        ts_ms: i64,
        query_ts_ms: i64,
        limit: usize,
    ) -> Result<Output, String> {
        let result = deps.querier.query(&self.def.expr, query_ts_ms)?;
        let query_fn = |q: &str| -> Result<Vec<QuerySample>, String> {
            let expr = crate::promql::parse(q)?;
            let samples = deps.querier.query(&expr, query_ts_ms)?;
            Ok(samples
                .into_iter()
                .map(|s| QuerySample {
                    labels: Arc::new(s.labels),
                    value: s.value,
                })
                .collect())
        };
        let ctx = template::Context {
            external_url: &deps.external_url,
            query: Some(&query_fn),
            escape: None,
            ..template::Context::default()
        };
        let mut warning = None;
        let templated = self
            .def
            .labels
            .iter()
            .chain(&self.def.annotations)
            .any(|(_, t)| !t.is_literal());
        let mut fresh: Vec<(u64, Alert)> = Vec::with_capacity(result.len());
        let mut fps: HashMap<u64, usize> = HashMap::with_capacity(result.len());
        for sample in result {
            let data = templated.then(|| {
                Arc::new(TemplateData {
                    labels: Arc::new(sample.labels.clone()),
                    external_labels: deps.external_labels.clone(),
                    external_url: deps.external_url.clone(),
                    value: sample.value,
                })
            });
            let mut expand = |what: &str, name: &str, t: &template::Template| -> String {
                let Some(data) = data.as_ref().filter(|_| !t.is_literal()) else {
                    return t.source().to_string();
                };
                match t.execute(&ctx, data.clone()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(alertname = %self.def.name, %what, %name, error = %e, "expanding alert template failed");
                        warning.get_or_insert_with(|| format!("{what} {name:?}: template: {e}"));
                        format!("<error expanding template: {e}>")
                    }
                }
            };
            let mut labels = sample.labels;
            labels.remove("__name__");
            for (k, t) in &self.def.labels {
                let v = expand("label", k, t);
                labels.insert(k.clone(), v);
            }
            labels.insert("alertname".into(), self.def.name.clone());
            let annotations: LabelSet = self
                .def
                .annotations
                .iter()
                .map(|(k, t)| (k.clone(), expand("annotation", k, t)))
                .collect();
            let fp = fingerprint(&labels);
            if let Some(&i) = fps.get(&fp)
                && fresh[i].1.labels == labels
            {
                return Err(
                    "vector contains metrics with the same labelset after applying alert labels"
                        .into(),
                );
            }
            fps.insert(fp, fresh.len());
            fresh.push((fp, Alert::new(labels, annotations, sample.value, ts_ms, 0)));
        }

        let held = self.hysteresis(deps, query_ts_ms, &mut warning);
        let mut inner = self.lock();
        inner.seq += 1;
        let seq = inner.seq;
        for (fp, mut alert) in fresh {
            alert.seen = seq;
            match inner.active.entry(fp) {
                Entry::Occupied(mut e) if e.get().state != AlertState::Inactive => {
                    let existing = e.get_mut();
                    existing.value = alert.value;
                    existing.annotations = alert.annotations;
                    existing.seen = seq;
                }
                Entry::Occupied(mut e) => {
                    e.insert(alert);
                }
                Entry::Vacant(e) => {
                    e.insert(alert);
                }
            }
        }
        let hold_ms = self.def.hold.as_millis() as i64;
        let keep_ms = self.def.keep_firing_for.as_millis() as i64;
        let mut samples = Vec::new();
        let mut num_active = 0usize;
        let mut resolved_now = Vec::new();
        inner.active.retain(|fp, a| {
            if a.seen != seq && a.state == AlertState::Firing && holds(&held, &a.labels) {
                // Hysteresis: the resolve expression still matches it.
                a.seen = seq;
            }
            if a.seen != seq {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && keep_ms > 0 {
                    let since = *a.keep_firing_since_ms.get_or_insert(ts_ms);
                    keep_firing = ts_ms - since < keep_ms;
                }
                let expired = a
                    .resolved_at_ms
                    .is_some_and(|r| ts_ms - r > RESOLVED_RETENTION_MS);
                if a.state == AlertState::Pending || expired {
                    return false;
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    if a.state == AlertState::Firing {
                        resolved_now.push(*fp);
                    }
                    a.state = AlertState::Inactive;
                    a.resolved_at_ms = Some(ts_ms);
                }
                if !keep_firing {
                    return true;
                }
            } else {
                a.keep_firing_since_ms = None;
            }
            num_active += 1;
            if a.state == AlertState::Pending && ts_ms - a.active_at_ms >= hold_ms {
                a.state = AlertState::Firing;
                a.fired_at_ms = Some(ts_ms);
            }
            a.samples(&mut samples);
            true
        });
        if !resolved_now.is_empty() {
            self.resolve_values(deps, query_ts_ms, &mut inner, &resolved_now);
        }
        if limit > 0 && num_active > limit {
            inner.active.clear();
            return Err(format!(
                "exceeded limit of {limit} with {num_active} alerts"
            ));
        }
        Ok(Output { samples, warning })
    }

    /// Gives alerts that resolved in this evaluation their value at the resolve: what a
    /// threshold expression measures (`x` of `x > 90`), now, not the last value that
    /// crossed it. An alert whose series is gone keeps its last value.
    fn resolve_values(&self, deps: &EvalDeps, query_ts_ms: i64, inner: &mut Inner, fps: &[u64]) {
        let parts = crate::promql::split(&self.def.expr);
        if parts.threshold.is_none() {
            return;
        }
        let samples = match deps.querier.query(&parts.plotted, query_ts_ms) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(rule = %self.def.name, error = %e, "resolve-time value not read");
                return;
            }
        };
        for fp in fps {
            let Some(a) = inner.active.get_mut(fp) else {
                continue;
            };
            let own = samples.iter().find(|s| {
                s.labels
                    .iter()
                    .all(|(k, v)| k == "__name__" || a.labels.get(k) == Some(v))
            });
            if let Some(s) = own {
                a.value = s.value;
            }
        }
    }

    /// The label sets the rule's resolve expression returns (when it has one and some
    /// alert fires); a failed query holds every firing alert and is reported.
    fn hysteresis(
        &self,
        deps: &EvalDeps,
        query_ts_ms: i64,
        warning: &mut Option<String>,
    ) -> Option<Vec<LabelSet>> {
        let expr = self.def.resolve_expr.as_ref()?;
        let firing = self
            .lock()
            .active
            .values()
            .any(|a| a.state == AlertState::Firing);
        if !firing {
            return None;
        }
        match deps.querier.query(expr, query_ts_ms) {
            Ok(samples) => Some(
                samples
                    .into_iter()
                    .map(|mut s| {
                        s.labels.remove("__name__");
                        s.labels
                    })
                    .collect(),
            ),
            Err(e) => {
                tracing::warn!(alertname = %self.def.name, error = %e, "resolve expression failed; firing alerts held");
                warning.get_or_insert_with(|| format!("{RESOLVE_EXPR}: {e}"));
                Some(vec![LabelSet::new()])
            }
        }
    }

    /// Alerts due for the pipeline at `ts_ms`: firing on the transition and then every
    /// resend delay, resolved once. Marks them sent.
    pub fn due_notifications(
        &self,
        deps: &EvalDeps,
        ts_ms: i64,
        interval_ms: i64,
    ) -> Vec<RuleAlert> {
        let resend_ms = deps.notifier.resend_delay.as_millis() as i64;
        let valid_for = 4 * resend_ms.max(interval_ms);
        let mut inner = self.lock();
        let mut out = Vec::new();
        for a in inner.active.values_mut() {
            let due = match a.state {
                AlertState::Pending => false,
                AlertState::Firing => a.last_sent_ms.is_none_or(|l| l + resend_ms < ts_ms),
                AlertState::Inactive => match (a.resolved_at_ms, a.last_sent_ms) {
                    (Some(r), Some(l)) => r > l,
                    (Some(_), None) => true,
                    (None, _) => false,
                },
            };
            if !due {
                continue;
            }
            a.last_sent_ms = Some(ts_ms);
            out.push(self.to_rule_alert(deps, a, ts_ms + valid_for));
        }
        out
    }

    fn to_rule_alert(&self, deps: &EvalDeps, a: &Alert, valid_until_ms: i64) -> RuleAlert {
        let mut labels = a.labels.clone();
        for (k, v) in deps.external_labels.iter() {
            labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let resolved = a.state == AlertState::Inactive;
        // The hysteresis expression is the rule's, not something to show with the alert.
        let mut annotations = a.annotations.clone();
        annotations.remove(RESOLVE_EXPR);
        RuleAlert {
            alertname: self.def.name.clone(),
            labels,
            annotations,
            state: if resolved {
                RuleAlertState::Resolved
            } else {
                RuleAlertState::Firing
            },
            active_at: ms_to_time(a.active_at_ms),
            fired_at: a.fired_at_ms.map(ms_to_time),
            resolved_at: a.resolved_at_ms.map(ms_to_time),
            valid_until: ms_to_time(a.resolved_at_ms.unwrap_or(valid_until_ms)),
            value: a.value,
            generator_url: format!(
                "{}{}",
                deps.external_url,
                template::graph_link(&self.query, 1)
            ),
            group: self.group.clone(),
            file: self.file.clone(),
        }
    }

    /// Records the outcome of an evaluation.
    pub fn set_status(&self, status: EvalStatus) {
        self.lock().status = status;
    }

    /// State, active alerts and status, consistently.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        let mut alerts: Vec<Alert> = inner
            .active
            .values()
            .filter(|a| a.state != AlertState::Inactive)
            .cloned()
            .collect();
        alerts.sort_by(|a, b| a.labels.cmp(&b.labels));
        let state = alerts
            .iter()
            .map(|a| a.state)
            .max()
            .unwrap_or(AlertState::Inactive);
        Snapshot {
            state,
            alerts,
            status: inner.status.clone(),
        }
    }

    /// Takes over the alerts and status of `from` (a reload of a changed group).
    pub fn copy_state(&self, from: &AlertingRule) {
        let src = from.lock();
        let mut dst = self.lock();
        dst.active = src.active.clone();
        dst.status = src.status.clone();
    }
}
