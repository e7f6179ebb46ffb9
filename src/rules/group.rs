//! A rule group: its rules evaluated in order at one timestamp, on the group's own
//! interval, in its own task. Series a rule stops producing get a stale marker.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::alerting::AlertingRule;
use super::file::{GroupDef, RuleDef};
use super::recording::RecordingRule;
use super::{EvalDeps, EvalStatus, Health, LabelSet, STALE_NAN, now_ms};

/// A rule of either kind.
pub enum Rule {
    /// `alert:`.
    Alerting(AlertingRule),
    /// `record:`.
    Recording(RecordingRule),
}

impl Rule {
    /// The definition.
    pub fn def(&self) -> &Arc<RuleDef> {
        match self {
            Rule::Alerting(r) => &r.def,
            Rule::Recording(r) => &r.def,
        }
    }

    /// The outcome of the last evaluation.
    pub fn status(&self) -> EvalStatus {
        match self {
            Rule::Alerting(r) => r.snapshot().status,
            Rule::Recording(r) => r.status(),
        }
    }

    fn set_status(&self, status: EvalStatus) {
        match self {
            Rule::Alerting(r) => r.set_status(status),
            Rule::Recording(r) => r.set_status(status),
        }
    }

    /// Rules are matched across reloads by kind, name and labels (Prometheus' rule key).
    fn key(&self) -> (bool, String, Vec<(String, String)>) {
        let def = self.def();
        let labels = def
            .labels
            .iter()
            .map(|(k, t)| (k.clone(), t.source().to_string()))
            .collect();
        (matches!(self, Rule::Alerting(_)), def.name.clone(), labels)
    }
}

/// A running rule group.
pub struct Group {
    /// The definition as loaded.
    pub def: GroupDef,
    /// The file it came from.
    pub file: String,
    /// Effective interval (`interval` or `rules.evaluation_interval`).
    pub interval: Duration,
    /// The rules in order.
    pub rules: Vec<Rule>,
    state: Mutex<GroupState>,
}

#[derive(Default)]
struct GroupState {
    status: EvalStatus,
    /// Per rule: the series written by its last successful evaluation.
    series: Vec<HashSet<Arc<LabelSet>>>,
}

impl Group {
    /// A group from its definition; `default_interval` applies when it sets none.
    pub fn new(def: GroupDef, file: &str, default_interval: Duration) -> Self {
        let rules: Vec<Rule> = def
            .rules
            .iter()
            .map(|r| match r.kind {
                super::file::RuleKind::Alerting => {
                    Rule::Alerting(AlertingRule::new(r.clone(), &def.name, file))
                }
                super::file::RuleKind::Recording => Rule::Recording(RecordingRule::new(r.clone())),
            })
            .collect();
        let state = GroupState {
            status: EvalStatus::default(),
            series: vec![HashSet::new(); rules.len()],
        };
        Self {
            interval: def.interval.unwrap_or(default_interval),
            def,
            file: file.to_string(),
            rules,
            state: Mutex::new(state),
        }
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.def.name
    }

    fn lock(&self) -> MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Last evaluation time and duration of the whole group.
    pub fn status(&self) -> EvalStatus {
        self.lock().status.clone()
    }

    /// Evaluates every rule in order at `ts_ms`.
    pub fn eval(&self, deps: &EvalDeps, ts_ms: i64) {
        let started = Instant::now();
        let query_ts = ts_ms - self.def.query_offset.as_millis() as i64;
        let interval_ms = self.interval.as_millis() as i64;
        let limit = self.def.limit;
        for (i, rule) in self.rules.iter().enumerate() {
            let t0 = Instant::now();
            deps.metrics.rule_evaluations.inc();
            let result = match rule {
                Rule::Alerting(r) => r
                    .eval(deps, ts_ms, query_ts, limit)
                    .map(|o| (o.samples, o.warning)),
                Rule::Recording(r) => r.eval(deps, query_ts, limit).map(|s| (s, None)),
            };
            let mut status = EvalStatus {
                health: Health::Ok,
                last_error: String::new(),
                last_evaluation_ms: Some(ts_ms),
                evaluation_time: Duration::ZERO,
            };
            match result {
                Ok((samples, warning)) => {
                    self.write(deps, i, samples, query_ts);
                    if let Some(w) = warning {
                        deps.metrics.rule_evaluation_failures.inc();
                        status.health = Health::Err;
                        status.last_error = w;
                    }
                    if let Rule::Alerting(r) = rule {
                        for alert in r.due_notifications(deps, ts_ms, interval_ms) {
                            deps.notifier.send(alert);
                        }
                    }
                }
                Err(e) => {
                    deps.metrics.rule_evaluation_failures.inc();
                    tracing::warn!(group = %self.def.name, rule = %rule.def().name, error = %e, "evaluating rule failed");
                    status.health = Health::Err;
                    status.last_error = e;
                }
            }
            let elapsed = t0.elapsed();
            deps.metrics
                .rule_evaluation_duration
                .observe(elapsed.as_secs_f64());
            status.evaluation_time = elapsed;
            rule.set_status(status);
        }
        let mut state = self.lock();
        state.status.last_evaluation_ms = Some(ts_ms);
        state.status.evaluation_time = started.elapsed();
        state.status.health = Health::Ok;
    }

    /// Appends a rule's output and stale markers for its series that disappeared.
    fn write(&self, deps: &EvalDeps, rule: usize, samples: Vec<(Arc<LabelSet>, f64)>, ts_ms: i64) {
        for (labels, value) in &samples {
            deps.sink.append(labels, ts_ms, *value);
        }
        let current: HashSet<Arc<LabelSet>> = samples.into_iter().map(|(l, _)| l).collect();
        let mut state = self.lock();
        if let Some(prev) = state.series.get(rule) {
            for gone in prev.difference(&current) {
                deps.sink.append(gone, ts_ms, STALE_NAN);
            }
        }
        if let Some(slot) = state.series.get_mut(rule) {
            *slot = current;
        }
    }

    /// Takes over alerts, statuses and series of `from` (the same group before a
    /// reload changed it). Series of rules that no longer exist get stale markers.
    pub fn copy_state(&self, from: &Group, deps: &EvalDeps) {
        let mut by_key: HashMap<_, VecDeque<usize>> = HashMap::new();
        for (i, r) in from.rules.iter().enumerate() {
            by_key.entry(r.key()).or_default().push_back(i);
        }
        let from_state = from.lock();
        let mut state = self.lock();
        state.status = from_state.status.clone();
        let mut matched = vec![false; from.rules.len()];
        for (i, rule) in self.rules.iter().enumerate() {
            let Some(fi) = by_key.get_mut(&rule.key()).and_then(VecDeque::pop_front) else {
                continue;
            };
            matched[fi] = true;
            if let Some(series) = from_state.series.get(fi) {
                state.series[i] = series.clone();
            }
            match (rule, &from.rules[fi]) {
                (Rule::Alerting(new), Rule::Alerting(old)) => new.copy_state(old),
                (Rule::Recording(new), Rule::Recording(old)) => new.set_status(old.status()),
                _ => {}
            }
        }
        let ts = now_ms();
        for (fi, series) in from_state.series.iter().enumerate() {
            if !matched[fi] {
                for labels in series {
                    deps.sink.append(labels, ts, STALE_NAN);
                }
            }
        }
    }

    /// Writes stale markers for every series of the group (it was removed).
    pub fn mark_stale(&self, deps: &EvalDeps) {
        let ts = now_ms();
        let mut state = self.lock();
        for series in state.series.iter_mut() {
            for labels in series.drain() {
                deps.sink.append(&labels, ts, STALE_NAN);
            }
        }
    }

    /// Delay before the first evaluation: a stable spread within the interval, like
    /// Prometheus, so groups with equal intervals do not all run at once.
    pub fn first_delay(&self, now_ms: i64) -> Duration {
        let interval = self.interval.as_millis().max(1) as i64;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.file.as_str(), self.def.name.as_str()).hash(&mut h);
        let offset = (h.finish() % interval as u64) as i64;
        let base = now_ms - now_ms.rem_euclid(interval) + offset;
        let next = if base < now_ms { base + interval } else { base };
        Duration::from_millis((next - now_ms) as u64)
    }

    /// Evaluates on the interval until `token` is cancelled, while this node leads.
    /// An evaluation in progress finishes before this returns.
    pub async fn run(self: Arc<Self>, deps: Arc<EvalDeps>, token: CancellationToken) {
        let start = tokio::time::Instant::now() + self.first_delay(now_ms());
        let mut ticker = tokio::time::interval_at(start, self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = ticker.tick() => {}
            }
            if !deps.leader.is_leader() {
                continue;
            }
            let (group, d) = (self.clone(), deps.clone());
            let done = tokio::task::spawn_blocking(move || group.eval(&d, now_ms())).await;
            if let Err(e) = done {
                tracing::error!(group = %self.def.name, file = %self.file, error = %e, "rule group evaluation panicked");
            }
        }
    }
}
