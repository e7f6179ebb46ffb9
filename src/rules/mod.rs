//! Prometheus-format alerting and recording rules, evaluated in-process.
//!
//! - [`file`]: rule files (YAML with positions), the model and promtool's checks.
//! - [`template`]: the Go `text/template` subset of annotations and labels.
//! - [`alerting`] / [`recording`]: the rule kinds; the alert state machine is Prometheus'
//!   (inactive → pending → firing → resolved, `keep_firing_for`).
//! - [`group`]: a group's sequential evaluation, `ALERTS`/`ALERTS_FOR_STATE` and
//!   staleness of series that stopped.
//! - [`manager`]: loading, reloading (keeping state of unchanged rules), one task per
//!   group, behind the leader gate.
//! - [`api`]: the `/api/v1/rules` response in Prometheus' shape.
//!
//! The rules read through [`Querier`] and write through [`SeriesSink`], so the state
//! machine is testable without the store; firing and resolved transitions leave through
//! one channel of [`RuleAlert`].

pub mod alerting;
pub mod api;
pub mod duration;
pub mod engine;
pub mod file;
pub mod gofmt;
pub mod group;
pub mod manager;
pub mod recording;
pub mod template;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use promql_parser::parser::Expr;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::metrics::AlertingMetrics;

pub use engine::{EngineQuerier, TsdbSink};
pub use file::{Problem, Problems, RuleFile, load_file, load_globs, parse_rule_file};
pub use manager::{ReloadOutcome, RuleManager};

/// A label set: sorted names to values.
pub type LabelSet = BTreeMap<String, String>;

/// How long Prometheus keeps resending a firing alert: `--rules.alert.resend-delay`.
pub const DEFAULT_RESEND_DELAY: Duration = Duration::from_secs(60);

/// Prometheus' stale marker: a NaN with this bit pattern ends a series.
pub const STALE_NAN: f64 = crate::tsdb::STALE_NAN;

/// Capacity of the rule alert channel; beyond it alerts are dropped with a warning.
pub const ALERT_QUEUE_CAPACITY: usize = 10_000;

/// One element of an instant query result.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSample {
    /// Series labels (may include `__name__`).
    pub labels: LabelSet,
    /// Value.
    pub value: f64,
}

/// Evaluates PromQL for rules.
pub trait Querier: Send + Sync + 'static {
    /// `expr` at `at_ms` as an instant vector; a scalar becomes one sample without
    /// labels; a range vector or string is an error.
    fn query(&self, expr: &Expr, at_ms: i64) -> Result<Vec<RuleSample>, String>;
}

/// Receives the series rules produce (recording rules, `ALERTS`, stale markers).
pub trait SeriesSink: Send + Sync + 'static {
    /// Appends one sample.
    fn append(&self, labels: &LabelSet, ts_ms: i64, value: f64);
}

/// The "am I the leader" gate rule evaluation runs behind. Every node of a cluster
/// evaluates its own rules over its own metrics, so `lib.rs` passes
/// [`LeaderGate::single_node`]; the gate stays for setups that want one evaluator.
pub use crate::cluster::LeaderGate;

/// Whether a [`RuleAlert`] reports firing or resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAlertState {
    /// Firing (on the transition, then every resend delay).
    Firing,
    /// Resolved (once).
    Resolved,
}

/// A firing or resolved alert from a rule, for the alert pipeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleAlert {
    /// The rule name (also `labels.alertname`).
    pub alertname: String,
    /// Alert labels: series labels minus `__name__`, rule labels, `alertname`, then the
    /// external labels where not already set.
    pub labels: LabelSet,
    /// Expanded annotations.
    pub annotations: LabelSet,
    /// Firing or resolved.
    pub state: RuleAlertState,
    /// When the condition first held (start of pending).
    pub active_at: DateTime<Utc>,
    /// When it started firing.
    pub fired_at: Option<DateTime<Utc>>,
    /// When it resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Until when a firing alert is valid without a resend (Prometheus' `EndsAt`).
    pub valid_until: DateTime<Utc>,
    /// The last value of the expression for this series.
    pub value: f64,
    /// A link to the expression (`external_url` + `/graph?g0.expr=…`).
    pub generator_url: String,
    /// The rule group.
    pub group: String,
    /// The rule file.
    pub file: String,
}

/// Sends rule alerts without ever blocking evaluation: a full queue drops (and logs),
/// like Prometheus' notifier queue.
#[derive(Clone, Debug)]
pub struct Notifier {
    tx: mpsc::Sender<RuleAlert>,
    /// How often a firing alert is sent again.
    pub resend_delay: Duration,
}

impl Notifier {
    /// A notifier over `tx`.
    pub fn new(tx: mpsc::Sender<RuleAlert>, resend_delay: Duration) -> Self {
        Self { tx, resend_delay }
    }

    /// Queues `alert`; false when the queue is full or closed.
    pub fn send(&self, alert: RuleAlert) -> bool {
        match self.tx.try_send(alert) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(a)) => {
                tracing::warn!(alertname = %a.alertname, "rule alert queue full; dropping alert");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// What rule evaluation needs from the rest of the service.
#[derive(Clone)]
pub struct EvalDeps {
    /// PromQL.
    pub querier: Arc<dyn Querier>,
    /// The store.
    pub sink: Arc<dyn SeriesSink>,
    /// Firing/resolved transitions.
    pub notifier: Notifier,
    /// `watchpost_rule_*`.
    pub metrics: AlertingMetrics,
    /// `rules.external_labels`.
    pub external_labels: Arc<LabelSet>,
    /// `external_url` without a trailing slash.
    pub external_url: String,
    /// Evaluate only while this says so.
    pub leader: LeaderGate,
}

/// Rule health as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Not evaluated yet.
    #[default]
    Unknown,
    /// Last evaluation succeeded.
    Ok,
    /// Last evaluation failed (see `lastError`).
    Err,
}

/// Evaluation status of one rule or group.
#[derive(Debug, Clone, Default)]
pub struct EvalStatus {
    /// Health of the last evaluation.
    pub health: Health,
    /// Error of the last evaluation, empty when healthy.
    pub last_error: String,
    /// Start of the last evaluation (Unix ms).
    pub last_evaluation_ms: Option<i64>,
    /// Duration of the last evaluation.
    pub evaluation_time: Duration,
}

/// Current wall-clock time in Unix milliseconds.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Unix ms to a UTC time (the epoch for out-of-range input).
pub fn ms_to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
