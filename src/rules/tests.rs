//! State machine tests over a scripted querier: timestamps are explicit, nothing sleeps.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use promql_parser::parser::Expr;
use tokio::sync::mpsc;

use super::alerting::AlertState;
use super::group::{Group, Rule};
use super::*;

/// Answers each expression (by its printed form) with what the test set.
#[derive(Default)]
struct Script {
    answers: Mutex<HashMap<String, Result<Vec<RuleSample>, String>>>,
}

impl Script {
    fn set(&self, expr: &str, samples: Vec<RuleSample>) {
        let key = crate::promql::parse(expr).unwrap().to_string();
        self.answers.lock().unwrap().insert(key, Ok(samples));
    }
    fn fail(&self, expr: &str, err: &str) {
        let key = crate::promql::parse(expr).unwrap().to_string();
        self.answers
            .lock()
            .unwrap()
            .insert(key, Err(err.to_string()));
    }
}

impl Querier for Script {
    fn query(&self, expr: &Expr, _at_ms: i64) -> Result<Vec<RuleSample>, String> {
        self.answers
            .lock()
            .unwrap()
            .get(&expr.to_string())
            .cloned()
            .unwrap_or(Ok(Vec::new()))
    }
}

#[derive(Default)]
struct Sink {
    samples: Mutex<Vec<(LabelSet, i64, f64)>>,
}

impl SeriesSink for Sink {
    fn append(&self, labels: &LabelSet, ts_ms: i64, value: f64) {
        self.samples
            .lock()
            .unwrap()
            .push((labels.clone(), ts_ms, value));
    }
}

impl Sink {
    fn take(&self) -> Vec<(LabelSet, i64, f64)> {
        std::mem::take(&mut self.samples.lock().unwrap())
    }
}

struct Harness {
    script: Arc<Script>,
    sink: Arc<Sink>,
    deps: EvalDeps,
    rx: mpsc::Receiver<RuleAlert>,
}

fn harness() -> Harness {
    let script = Arc::new(Script::default());
    let sink = Arc::new(Sink::default());
    let (tx, rx) = mpsc::channel(100);
    let metrics = crate::metrics::Metrics::new().unwrap();
    let mut ext = LabelSet::new();
    ext.insert("cluster".into(), "eu1".into());
    let deps = EvalDeps {
        querier: script.clone(),
        sink: sink.clone(),
        notifier: Notifier::new(tx, Duration::from_secs(60)),
        metrics: metrics.alerting,
        external_labels: Arc::new(ext),
        external_url: "http://wp:8080".into(),
        leader: LeaderGate::single_node(),
    };
    Harness {
        script,
        sink,
        deps,
        rx,
    }
}

impl Harness {
    fn sent(&mut self) -> Vec<RuleAlert> {
        let mut out = Vec::new();
        while let Ok(a) = self.rx.try_recv() {
            out.push(a);
        }
        out
    }
}

fn group(yaml: &str) -> Group {
    let f = parse_rule_file("t.yml", yaml).unwrap();
    Group::new(f.groups[0].clone(), "t.yml", Duration::from_secs(1))
}

fn labels(pairs: &[(&str, &str)]) -> LabelSet {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sample(pairs: &[(&str, &str)], value: f64) -> RuleSample {
    RuleSample {
        labels: labels(pairs),
        value,
    }
}

fn alerting(g: &Group, i: usize) -> &alerting::AlertingRule {
    match &g.rules[i] {
        Rule::Alerting(r) => r,
        Rule::Recording(_) => panic!("rule {i} is a recording rule"),
    }
}

const T0: i64 = 1_700_000_000_000;

const HIGH: &str = r#"
groups:
- name: g
  rules:
  - alert: High
    expr: load > 1
    for: 2s
    labels:
      severity: "{{ if gt $value 5.0 }}critical{{ else }}warning{{ end }}"
    annotations:
      summary: "load on {{ $labels.instance }} is {{ $value }}"
"#;

#[test]
fn pending_then_firing_then_resolved() {
    let mut h = harness();
    let g = group(HIGH);
    let up = sample(&[("__name__", "load"), ("instance", "a")], 3.0);
    h.script.set("load > 1", vec![up.clone()]);

    g.eval(&h.deps, T0);
    let snap = alerting(&g, 0).snapshot();
    assert_eq!(snap.state, AlertState::Pending);
    assert_eq!(snap.alerts.len(), 1);
    let a = &snap.alerts[0];
    assert_eq!(
        a.labels,
        labels(&[
            ("alertname", "High"),
            ("instance", "a"),
            ("severity", "warning")
        ])
    );
    assert_eq!(a.annotations["summary"], "load on a is 3");
    assert_eq!(a.active_at_ms, T0);
    assert!(h.sent().is_empty(), "pending alerts are not sent");

    // ALERTS{alertstate="pending"} and ALERTS_FOR_STATE were written.
    let written = h.sink.take();
    let pending_series = {
        let mut l = a.labels.clone();
        l.insert("__name__".into(), "ALERTS".into());
        l.insert("alertstate".into(), "pending".into());
        l
    };
    assert!(written.contains(&(pending_series.clone(), T0, 1.0)));
    let mut for_state = a.labels.clone();
    for_state.insert("__name__".into(), "ALERTS_FOR_STATE".into());
    assert!(written.contains(&(for_state, T0, (T0 / 1000) as f64)));

    // 1 s later: still pending.
    g.eval(&h.deps, T0 + 1000);
    assert_eq!(alerting(&g, 0).snapshot().state, AlertState::Pending);
    h.sink.take();

    // 2 s after activation: firing, sent once; the pending series goes stale.
    g.eval(&h.deps, T0 + 2000);
    let snap = alerting(&g, 0).snapshot();
    assert_eq!(snap.state, AlertState::Firing);
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    let s = &sent[0];
    assert_eq!(s.state, RuleAlertState::Firing);
    assert_eq!(s.alertname, "High");
    assert_eq!(s.labels["cluster"], "eu1", "external labels are added");
    assert_eq!(s.active_at, ms_to_time(T0));
    assert_eq!(s.fired_at, Some(ms_to_time(T0 + 2000)));
    assert_eq!(
        s.generator_url,
        "http://wp:8080/graph?g0.expr=load+%3E+1&g0.tab=1"
    );
    let written = h.sink.take();
    assert!(
        written
            .iter()
            .any(|(l, _, v)| *l == pending_series && v.to_bits() == STALE_NAN.to_bits()),
        "pending series must get a stale marker: {written:?}"
    );

    // Still firing: not resent before the resend delay, resent after it.
    g.eval(&h.deps, T0 + 30_000);
    assert!(h.sent().is_empty());
    g.eval(&h.deps, T0 + 62_001);
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].state, RuleAlertState::Firing);

    // The value changes: annotations follow, labels (severity) re-templated per eval.
    h.script.set(
        "load > 1",
        vec![sample(&[("__name__", "load"), ("instance", "a")], 4.0)],
    );
    g.eval(&h.deps, T0 + 63_000);
    let snap = alerting(&g, 0).snapshot();
    assert_eq!(snap.alerts[0].annotations["summary"], "load on a is 4");
    assert_eq!(
        snap.alerts[0].active_at_ms, T0,
        "same alert keeps its activeAt"
    );

    // The condition clears: resolved once, then nothing.
    h.script.set("load > 1", vec![]);
    g.eval(&h.deps, T0 + 64_000);
    let snap = alerting(&g, 0).snapshot();
    assert_eq!(snap.state, AlertState::Inactive);
    assert!(snap.alerts.is_empty());
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].state, RuleAlertState::Resolved);
    assert_eq!(sent[0].resolved_at, Some(ms_to_time(T0 + 64_000)));
    g.eval(&h.deps, T0 + 200_000);
    assert!(h.sent().is_empty(), "resolved is sent once");

    // It comes back: a fresh pending alert with a new activeAt.
    h.script.set("load > 1", vec![up]);
    g.eval(&h.deps, T0 + 201_000);
    let snap = alerting(&g, 0).snapshot();
    assert_eq!(snap.state, AlertState::Pending);
    assert_eq!(snap.alerts[0].active_at_ms, T0 + 201_000);
}

#[test]
fn pending_alert_that_clears_is_dropped_silently() {
    let mut h = harness();
    let g = group(HIGH);
    h.script
        .set("load > 1", vec![sample(&[("instance", "a")], 3.0)]);
    g.eval(&h.deps, T0);
    h.script.set("load > 1", vec![]);
    g.eval(&h.deps, T0 + 1000);
    assert_eq!(alerting(&g, 0).snapshot().state, AlertState::Inactive);
    assert!(h.sent().is_empty());
}

#[test]
fn zero_for_fires_immediately_and_label_templates_use_value() {
    let mut h = harness();
    let g = group(&HIGH.replace("for: 2s", "for: 0s"));
    h.script
        .set("load > 1", vec![sample(&[("instance", "b")], 9.0)]);
    g.eval(&h.deps, T0);
    let snap = alerting(&g, 0).snapshot();
    assert_eq!(snap.state, AlertState::Firing);
    assert_eq!(snap.alerts[0].labels["severity"], "critical");
    assert_eq!(h.sent().len(), 1);
}

#[test]
fn keep_firing_for_holds_a_firing_alert() {
    let mut h = harness();
    let g = group(
        "groups:\n- name: g\n  rules:\n  - alert: K\n    expr: x > 0\n    keep_firing_for: 5s\n",
    );
    h.script.set("x > 0", vec![sample(&[("i", "1")], 1.0)]);
    g.eval(&h.deps, T0);
    assert_eq!(alerting(&g, 0).snapshot().state, AlertState::Firing);
    h.sent();
    h.script.set("x > 0", vec![]);
    for t in [1000, 3000, 4999] {
        g.eval(&h.deps, T0 + t);
        let snap = alerting(&g, 0).snapshot();
        assert_eq!(snap.state, AlertState::Firing, "held at +{t}ms");
        assert_eq!(snap.alerts[0].keep_firing_since_ms, Some(T0 + 1000));
    }
    assert!(h.sent().is_empty());
    g.eval(&h.deps, T0 + 6000);
    assert_eq!(alerting(&g, 0).snapshot().state, AlertState::Inactive);
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].state, RuleAlertState::Resolved);

    // Coming back while held resets the hold.
    h.script.set("x > 0", vec![sample(&[("i", "2")], 1.0)]);
    g.eval(&h.deps, T0 + 10_000);
    h.script.set("x > 0", vec![]);
    g.eval(&h.deps, T0 + 11_000);
    h.script.set("x > 0", vec![sample(&[("i", "2")], 1.0)]);
    g.eval(&h.deps, T0 + 12_000);
    let snap = alerting(&g, 0).snapshot();
    assert_eq!(snap.alerts[0].keep_firing_since_ms, None);
}

#[test]
fn errors_set_health_and_count() {
    let h = harness();
    let g = group(HIGH);
    h.script.fail("load > 1", "boom");
    g.eval(&h.deps, T0);
    let snap = alerting(&g, 0).snapshot();
    assert_eq!(snap.status.health, Health::Err);
    assert_eq!(snap.status.last_error, "boom");
    assert_eq!(h.deps.metrics.rule_evaluation_failures.get(), 1);
    assert_eq!(h.deps.metrics.rule_evaluations.get(), 1);

    // Two series mapping to one label set.
    h.script.set(
        "load > 1",
        vec![
            sample(&[("__name__", "a"), ("instance", "x")], 2.0),
            sample(&[("__name__", "b"), ("instance", "x")], 2.0),
        ],
    );
    g.eval(&h.deps, T0 + 1000);
    let snap = alerting(&g, 0).snapshot();
    assert!(
        snap.status.last_error.contains("same labelset"),
        "{:?}",
        snap.status
    );

    // Back to healthy.
    h.script.set("load > 1", vec![]);
    g.eval(&h.deps, T0 + 2000);
    let snap = alerting(&g, 0).snapshot();
    assert_eq!(snap.status.health, Health::Ok);
    assert_eq!(snap.status.last_error, "");
    assert_eq!(snap.status.last_evaluation_ms, Some(T0 + 2000));
}

#[test]
fn template_errors_render_and_mark_health() {
    let h = harness();
    let g = group(
        "groups:\n- name: g\n  rules:\n  - alert: T\n    expr: x > 0\n    annotations:\n      bad: \"{{ $labels.instance | humanize }}\"\n",
    );
    h.script
        .set("x > 0", vec![sample(&[("instance", "host")], 1.0)]);
    g.eval(&h.deps, T0);
    let snap = alerting(&g, 0).snapshot();
    assert_eq!(snap.state, AlertState::Firing);
    assert!(
        snap.alerts[0].annotations["bad"].starts_with("<error expanding template:"),
        "{:?}",
        snap.alerts[0].annotations
    );
    assert_eq!(snap.status.health, Health::Err);
    assert!(snap.status.last_error.contains("annotation \"bad\""));
}

#[test]
fn limit_is_enforced() {
    let h = harness();
    let g = group("groups:\n- name: g\n  limit: 1\n  rules:\n  - alert: L\n    expr: x > 0\n");
    h.script.set(
        "x > 0",
        vec![sample(&[("i", "1")], 1.0), sample(&[("i", "2")], 1.0)],
    );
    g.eval(&h.deps, T0);
    let snap = alerting(&g, 0).snapshot();
    assert!(snap.alerts.is_empty());
    assert_eq!(snap.status.last_error, "exceeded limit of 1 with 2 alerts");
}

#[test]
fn recording_rules_write_and_stale_their_series() {
    let h = harness();
    let g = group(
        "groups:\n- name: g\n  rules:\n  - record: job:up:sum\n    expr: sum by (job) (up)\n    labels:\n      team: infra\n",
    );
    h.script.set(
        "sum by (job) (up)",
        vec![sample(&[("job", "a")], 2.0), sample(&[("job", "b")], 3.0)],
    );
    g.eval(&h.deps, T0);
    let mut written = h.sink.take();
    written.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        written,
        vec![
            (
                labels(&[("__name__", "job:up:sum"), ("job", "a"), ("team", "infra")]),
                T0,
                2.0
            ),
            (
                labels(&[("__name__", "job:up:sum"), ("job", "b"), ("team", "infra")]),
                T0,
                3.0
            ),
        ]
    );
    h.script
        .set("sum by (job) (up)", vec![sample(&[("job", "a")], 4.0)]);
    g.eval(&h.deps, T0 + 1000);
    let written = h.sink.take();
    assert!(
        written.iter().any(|(l, t, v)| l["job"] == "b"
            && *t == T0 + 1000
            && v.to_bits() == STALE_NAN.to_bits())
    );
    assert!(written.iter().any(|(l, _, v)| l["job"] == "a" && *v == 4.0));
}

#[test]
fn copy_state_carries_alerts_into_a_changed_group() {
    let h = harness();
    let old = group(HIGH);
    h.script
        .set("load > 1", vec![sample(&[("instance", "a")], 3.0)]);
    old.eval(&h.deps, T0);
    // Same rule, another one added: the alert keeps its activeAt.
    let new = group(&format!("{HIGH}  - alert: Other\n    expr: other > 0\n"));
    new.copy_state(&old, &h.deps);
    let snap = alerting(&new, 0).snapshot();
    assert_eq!(snap.alerts.len(), 1);
    assert_eq!(snap.alerts[0].active_at_ms, T0);
    new.eval(&h.deps, T0 + 2000);
    assert_eq!(alerting(&new, 0).snapshot().state, AlertState::Firing);
}

#[test]
fn leader_gate_is_consulted() {
    let gate = LeaderGate::new(|| false);
    assert!(!gate.is_leader());
    assert!(LeaderGate::single_node().is_leader());
}

const HYSTERESIS: &str = r#"
groups:
- name: g
  rules:
  - alert: Hot
    expr: cpu > 90
    annotations:
      watchpost_resolve_expr: cpu >= 80
"#;

/// Evaluates `Hot` at each value of `cpu` (1 s apart) and returns the states sent.
fn hysteresis_run(yaml: &str, values: &[f64]) -> Vec<RuleAlertState> {
    let mut h = harness();
    let g = group(yaml);
    let mut sent = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let s = sample(&[("__name__", "cpu"), ("instance", "a")], *v);
        let at = |hit: bool| if hit { vec![s.clone()] } else { Vec::new() };
        h.script.set("cpu > 90", at(*v > 90.0));
        h.script.set("cpu >= 80", at(*v >= 80.0));
        g.eval(&h.deps, T0 + 1000 * i as i64);
        sent.extend(h.sent().into_iter().map(|a| a.state));
    }
    sent
}

#[test]
fn hysteresis_fires_once_while_the_value_oscillates_above_the_clear_threshold() {
    let oscillating = [85.0, 95.0, 85.0, 95.0, 85.0, 95.0, 85.0, 95.0, 85.0];
    assert_eq!(
        hysteresis_run(HYSTERESIS, &oscillating),
        vec![RuleAlertState::Firing],
        "fires once, never resolves while above 80"
    );
    let mut dropping = oscillating.to_vec();
    dropping.extend([70.0, 70.0, 85.0]);
    assert_eq!(
        hysteresis_run(HYSTERESIS, &dropping),
        vec![RuleAlertState::Firing, RuleAlertState::Resolved],
        "below 80 resolves once; 85 does not fire again"
    );
    // Without the annotation every crossing is a new alert.
    let plain = HYSTERESIS.replace("      watchpost_resolve_expr: cpu >= 80\n", "      x: y\n");
    let flips = hysteresis_run(&plain, &oscillating);
    assert_eq!(flips.len(), 8, "four fires, four resolves: {flips:?}");
}

#[test]
fn hysteresis_matches_by_labels_and_holds_on_query_errors() {
    let h = harness();
    let g = group(HYSTERESIS);
    let a = sample(&[("__name__", "cpu"), ("instance", "a")], 95.0);
    let b = sample(&[("__name__", "cpu"), ("instance", "b")], 95.0);
    h.script.set("cpu > 90", vec![a.clone(), b.clone()]);
    g.eval(&h.deps, T0);
    assert_eq!(alerting(&g, 0).snapshot().alerts.len(), 2);
    // Both drop below 90; only a stays above 80: b resolves, a is held.
    h.script.set("cpu > 90", vec![]);
    h.script.set("cpu >= 80", vec![a.clone()]);
    g.eval(&h.deps, T0 + 1000);
    let snap = alerting(&g, 0).snapshot();
    assert_eq!(snap.alerts.len(), 1);
    assert_eq!(snap.alerts[0].labels["instance"], "a");
    assert_eq!(snap.alerts[0].state, AlertState::Firing);
    // A failing resolve expression never resolves; it is reported.
    h.script.fail("cpu >= 80", "boom");
    g.eval(&h.deps, T0 + 2000);
    let snap = alerting(&g, 0).snapshot();
    assert_eq!(snap.state, AlertState::Firing);
    assert!(snap.status.last_error.contains("boom"), "{:?}", snap.status);
}

#[test]
fn a_resolve_carries_the_value_at_resolve_time() {
    let mut h = harness();
    let g = group(HYSTERESIS);
    let series = |v: f64| sample(&[("__name__", "cpu"), ("instance", "a")], v);
    h.script.set("cpu > 90", vec![series(95.0)]);
    h.script.set("cpu >= 80", vec![series(95.0)]);
    g.eval(&h.deps, T0);
    let fired = h.sent();
    assert_eq!(fired[0].value, 95.0);
    // Below the clear threshold: the rule's own expression returns nothing, the value
    // is read from what it measures.
    h.script.set("cpu > 90", Vec::new());
    h.script.set("cpu >= 80", Vec::new());
    h.script.set("cpu", vec![series(71.5)]);
    g.eval(&h.deps, T0 + 1000);
    let resolved = h.sent();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].state, RuleAlertState::Resolved);
    assert_eq!(
        resolved[0].value, 71.5,
        "the value when it resolved, not 95"
    );
    let raw = crate::alerts::rules::raw_alert(resolved[0].clone());
    assert_eq!(raw.annotations["value"], "71.5");
}
