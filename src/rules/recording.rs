//! Recording rules: evaluate, rename to the rule's metric name, add labels.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use super::file::RuleDef;
use super::{EvalDeps, EvalStatus, LabelSet};

/// A recording rule.
pub struct RecordingRule {
    /// The definition.
    pub def: Arc<RuleDef>,
    /// The expression as Prometheus prints it.
    pub query: String,
    labels: Vec<(String, String)>,
    status: Mutex<EvalStatus>,
}

impl RecordingRule {
    /// A rule from its definition.
    pub fn new(def: Arc<RuleDef>) -> Self {
        let labels = def
            .labels
            .iter()
            .map(|(k, t)| (k.clone(), t.source().to_string()))
            .collect();
        Self {
            query: crate::promql::to_query(&def.expr),
            def,
            labels,
            status: Mutex::new(EvalStatus::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, EvalStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The series to record at `query_ts_ms`; `limit` > 0 caps their number.
    pub fn eval(
        &self,
        deps: &EvalDeps,
        query_ts_ms: i64,
        limit: usize,
    ) -> Result<Vec<(Arc<LabelSet>, f64)>, String> {
        let result = deps.querier.query(&self.def.expr, query_ts_ms)?;
        let mut seen = HashSet::with_capacity(result.len());
        let mut out = Vec::with_capacity(result.len());
        for sample in result {
            let mut labels = sample.labels;
            labels.insert("__name__".into(), self.def.name.clone());
            for (k, v) in &self.labels {
                if v.is_empty() {
                    labels.remove(k);
                } else {
                    labels.insert(k.clone(), v.clone());
                }
            }
            if !seen.insert(labels.clone()) {
                return Err(
                    "vector contains metrics with the same labelset after applying rule labels"
                        .into(),
                );
            }
            out.push((Arc::new(labels), sample.value));
        }
        if limit > 0 && out.len() > limit {
            return Err(format!(
                "exceeded limit of {limit} with {} series",
                out.len()
            ));
        }
        Ok(out)
    }

    /// Records the outcome of an evaluation.
    pub fn set_status(&self, status: EvalStatus) {
        *self.lock() = status;
    }

    /// The last evaluation's status.
    pub fn status(&self) -> EvalStatus {
        self.lock().clone()
    }
}
