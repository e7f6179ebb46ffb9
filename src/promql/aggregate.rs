//! Aggregation operators with `by`/`without` grouping.

use std::collections::HashMap;

use promql_parser::parser::{AggregateExpr, LabelModifier, token};

use super::eval::{Evaluator, StepValue};
use super::functions::is_valid_label_name;
use super::quantile::quantile;
use super::{EvalError, Sample, format_float};
use crate::tsdb::{Labels, LabelsBuilder, METRIC_NAME, Prehashed};

/// How samples are grouped.
struct Grouping<'a> {
    /// `by (...)` (true) or `without (...)` (false).
    by: bool,
    names: &'a [String],
}

impl Grouping<'_> {
    /// Hash identifying the group of `labels`.
    fn key(&self, labels: &Labels) -> u64 {
        if self.by {
            labels.hash_for_labels(self.names)
        } else {
            labels.hash_without_labels(self.names)
        }
    }

    /// The labels of the group's output.
    fn labels(&self, labels: &Labels) -> Labels {
        if self.by {
            let mut b = LabelsBuilder::default();
            for n in self.names {
                if let Some(v) = labels.get(n) {
                    b.set(n, v);
                }
            }
            b.build()
        } else {
            let mut b = labels.to_builder();
            b.del(METRIC_NAME);
            for n in self.names {
                b.del(n);
            }
            b.build()
        }
    }
}

/// Running state of one group.
struct Group {
    labels: Labels,
    value: f64,
    count: f64,
    mean: f64,
    values: Vec<f64>,
}

pub(super) fn eval(ev: &mut Evaluator, a: &AggregateExpr, t: i64) -> Result<StepValue, EvalError> {
    let op = a.op.id();
    let param = a.param.as_deref();
    let (by, names): (bool, &[String]) = match &a.modifier {
        None => (true, &[]),
        Some(LabelModifier::Include(l)) => (true, &l.labels),
        Some(LabelModifier::Exclude(l)) => (false, &l.labels),
    };
    let grouping = Grouping { by, names };
    let need_param =
        || param.ok_or_else(|| EvalError::Execution(format!("{}: missing parameter", a.op)));
    match op {
        token::T_TOPK | token::T_BOTTOMK => {
            let k = ev.scalar_arg(need_param()?, t)?;
            let input = ev.vector_arg(&a.expr, t)?;
            Ok(StepValue::Vector(top_k(
                &grouping,
                input,
                k,
                op == token::T_TOPK,
            )?))
        }
        token::T_COUNT_VALUES => {
            let label = ev.string_arg(need_param()?, t)?;
            if !is_valid_label_name(&label) {
                return Err(EvalError::Execution(format!(
                    "invalid label name {label:?}"
                )));
            }
            let input = ev.vector_arg(&a.expr, t)?;
            Ok(StepValue::Vector(count_values(&grouping, input, &label)))
        }
        _ => {
            let q = match op {
                token::T_QUANTILE => Some(ev.scalar_arg(need_param()?, t)?),
                _ => None,
            };
            let input = ev.vector_arg(&a.expr, t)?;
            Ok(StepValue::Vector(aggregate(&grouping, op, input, q)?))
        }
    }
}

fn aggregate(
    g: &Grouping,
    op: u16,
    input: Vec<Sample>,
    q: Option<f64>,
) -> Result<Vec<Sample>, EvalError> {
    let mut order: Vec<u64> = Vec::new();
    let mut groups: HashMap<u64, Group, Prehashed> = HashMap::default();
    for s in input {
        let key = g.key(&s.labels);
        let group = groups.entry(key).or_insert_with(|| {
            order.push(key);
            Group {
                labels: g.labels(&s.labels),
                value: s.value,
                count: 0.0,
                mean: 0.0,
                values: Vec::new(),
            }
        });
        let first = group.count == 0.0;
        group.count += 1.0;
        let v = s.value;
        match op {
            // Prometheus 2.42 sums plainly (no compensation) and averages incrementally.
            token::T_SUM => {
                if !first {
                    group.value += v;
                }
            }
            token::T_AVG => {
                if first {
                    group.mean = v;
                } else {
                    group.mean = avg_step(group.mean, v, group.count);
                }
            }
            token::T_MIN => {
                if v < group.value || group.value.is_nan() {
                    group.value = v;
                }
            }
            token::T_MAX => {
                if v > group.value || group.value.is_nan() {
                    group.value = v;
                }
            }
            token::T_STDDEV | token::T_STDVAR => {
                if first {
                    group.value = 0.0;
                }
                let delta = v - group.mean;
                group.mean += delta / group.count;
                group.value += delta * (v - group.mean);
            }
            token::T_QUANTILE => group.values.push(v),
            token::T_COUNT | token::T_GROUP => {}
            _ => {
                return Err(EvalError::Unsupported(format!(
                    "aggregation {}",
                    promql_parser::parser::token::TokenType::new(op)
                )));
            }
        }
    }
    let mut out = Vec::with_capacity(order.len());
    for key in order {
        let Some(mut group) = groups.remove(&key) else {
            continue;
        };
        let value = match op {
            token::T_SUM => group.value,
            token::T_AVG => group.mean,
            token::T_MIN | token::T_MAX => group.value,
            token::T_COUNT => group.count,
            token::T_GROUP => 1.0,
            token::T_STDVAR => group.value / group.count,
            token::T_STDDEV => (group.value / group.count).sqrt(),
            token::T_QUANTILE => quantile(q.unwrap_or(f64::NAN), &mut group.values),
            _ => f64::NAN,
        };
        out.push(Sample {
            labels: group.labels,
            value,
        });
    }
    Ok(out)
}

/// One step of Prometheus 2.42's incremental `avg`: an infinite mean stays unless a NaN
/// or an infinity of the other sign arrives.
fn avg_step(mean: f64, v: f64, count: f64) -> f64 {
    if mean.is_infinite() && ((v.is_infinite() && (mean > 0.0) == (v > 0.0)) || v.is_finite()) {
        return mean;
    }
    mean + (v / count - mean / count)
}

/// `topk`/`bottomk`: the k largest/smallest samples per group, original labels kept,
/// each group sorted by value (NaN last).
fn top_k(g: &Grouping, input: Vec<Sample>, k: f64, top: bool) -> Result<Vec<Sample>, EvalError> {
    // i64::MAX as f64 rounds up to 2^63, which no longer fits.
    if k.is_nan() || !(-(2f64.powi(63))..2f64.powi(63)).contains(&k) {
        return Err(EvalError::Execution(format!(
            "Scalar value {} overflows int64",
            format_float(k)
        )));
    }
    let k = k as i64;
    if k < 1 {
        return Ok(Vec::new());
    }
    let k = usize::try_from(k).unwrap_or(usize::MAX);
    let mut order: Vec<u64> = Vec::new();
    let mut groups: HashMap<u64, KHeap, Prehashed> = HashMap::default();
    for s in input {
        let key = g.key(&s.labels);
        groups
            .entry(key)
            .or_insert_with(|| {
                order.push(key);
                KHeap {
                    top,
                    items: Vec::new(),
                }
            })
            .offer(s, k);
    }
    let mut out = Vec::new();
    for key in order {
        if let Some(heap) = groups.remove(&key) {
            out.extend(heap.into_sorted());
        }
    }
    Ok(out)
}

/// The k samples kept by `topk` (a min-heap) or `bottomk` (a max-heap), with Go's
/// `container/heap` moves, so ties are broken exactly as Prometheus breaks them.
struct KHeap {
    top: bool,
    items: Vec<Sample>,
}

impl KHeap {
    /// Go's `Less` of Prometheus' `vectorByValueHeap` (`topk`) and
    /// `vectorByReverseValueHeap` (`bottomk`): NaN is always "less".
    fn less(&self, i: usize, j: usize) -> bool {
        let (a, b) = (self.items[i].value, self.items[j].value);
        a.is_nan() || if self.top { a < b } else { a > b }
    }

    /// Keeps `s` if the heap has room, or if it beats the weakest kept sample (which
    /// then goes): Prometheus 2.42's `heap.Pop` then `heap.Push`.
    fn offer(&mut self, s: Sample, k: usize) {
        let weakest = self.items.first().map_or(f64::NAN, |w| w.value);
        let beats = if self.top {
            weakest < s.value
        } else {
            weakest > s.value
        };
        if self.items.len() >= k && !beats && !weakest.is_nan() {
            return;
        }
        if self.items.len() >= k {
            if k == 1 {
                self.items[0] = s;
                return;
            }
            let last = self.items.len() - 1;
            self.items.swap(0, last);
            self.down(0, last);
            self.items.pop();
        }
        self.items.push(s);
        self.up(self.items.len() - 1);
    }

    fn up(&mut self, mut j: usize) {
        while j > 0 {
            let i = (j - 1) / 2;
            if !self.less(j, i) {
                break;
            }
            self.items.swap(i, j);
            j = i;
        }
    }

    /// Go's `down` over the first `n` items.
    fn down(&mut self, mut i: usize, n: usize) {
        loop {
            let j1 = 2 * i + 1;
            if j1 >= n {
                break;
            }
            let j = if j1 + 1 < n && self.less(j1 + 1, j1) {
                j1 + 1
            } else {
                j1
            };
            if !self.less(j, i) {
                break;
            }
            self.items.swap(i, j);
            i = j;
        }
    }

    /// The kept samples, best first (NaN last).
    fn into_sorted(mut self) -> Vec<Sample> {
        let top = self.top;
        self.items
            .sort_by(|a, b| match (a.value.is_nan(), b.value.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ if top => b.value.total_cmp(&a.value),
                _ => a.value.total_cmp(&b.value),
            });
        self.items
    }
}

/// `count_values("label", v)`: the value is set as `label` first, then samples are
/// grouped (`by` grouping includes `label`) and counted, as Prometheus 2.42 does.
fn count_values(g: &Grouping, input: Vec<Sample>, label: &str) -> Vec<Sample> {
    let mut names = g.names.to_vec();
    if g.by {
        names.push(label.to_string());
    }
    let g = Grouping {
        by: g.by,
        names: &names,
    };
    let mut order: Vec<u64> = Vec::new();
    let mut counts: HashMap<u64, (Labels, f64), Prehashed> = HashMap::default();
    for s in input {
        let mut b = s.labels.to_builder();
        b.set(label, &format_float(s.value));
        let labels = b.build();
        let key = g.key(&labels);
        counts
            .entry(key)
            .or_insert_with(|| {
                order.push(key);
                (g.labels(&labels), 0.0)
            })
            .1 += 1.0;
    }
    order
        .into_iter()
        .filter_map(|k| counts.remove(&k))
        .map(|(labels, value)| Sample { labels, value })
        .collect()
}
