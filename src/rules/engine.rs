//! The rules' view of the store: [`Querier`] over the PromQL [`Engine`] and
//! [`SeriesSink`] over the [`Tsdb`].

use promql_parser::parser::Expr;

use super::{LabelSet, Querier, RuleSample, SeriesSink};
use crate::promql::{Engine, Value};
use crate::tsdb::{Labels, Tsdb, is_stale_nan};

/// Rules query the engine as Prometheus' rule manager does: instant vectors, and a
/// scalar as one sample without labels.
pub struct EngineQuerier(pub Engine);

impl Querier for EngineQuerier {
    fn query(&self, expr: &Expr, at_ms: i64) -> Result<Vec<RuleSample>, String> {
        match self.0.instant(expr, at_ms) {
            Ok(Value::Vector(samples)) => Ok(samples
                .into_iter()
                .map(|s| RuleSample {
                    labels: s.labels.to_map(),
                    value: s.value,
                })
                .collect()),
            Ok(Value::Scalar(v)) => Ok(vec![RuleSample {
                labels: LabelSet::new(),
                value: v,
            }]),
            Ok(other) => Err(format!(
                "rule result is not a vector or scalar: {}",
                other.type_name()
            )),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Rule output goes into the store; stale markers only end series that exist.
pub struct TsdbSink(pub Tsdb);

impl SeriesSink for TsdbSink {
    fn append(&self, labels: &LabelSet, ts_ms: i64, value: f64) {
        let labels = Labels::from(labels);
        if is_stale_nan(value) {
            self.0.mark_stale(&labels, ts_ms);
        } else {
            self.0.append(&labels, ts_ms, value);
        }
    }
}
