//! Binary operators: arithmetic, comparisons (filtering or `bool`), set operators, and
//! vector matching with `on`/`ignoring` and `group_left`/`group_right`.

use std::collections::{HashMap, HashSet};

use promql_parser::parser::{
    BinModifier, BinaryExpr, LabelModifier, VectorMatchCardinality, token,
};

use super::eval::{Evaluator, StepValue, check_unique};
use super::{EvalError, Sample};
use crate::tsdb::{Labels, LabelsBuilder, METRIC_NAME, Prehashed};

/// True for arithmetic operators.
pub(super) fn is_arithmetic(op: u16) -> bool {
    matches!(
        op,
        token::T_ADD
            | token::T_SUB
            | token::T_MUL
            | token::T_DIV
            | token::T_MOD
            | token::T_POW
            | token::T_ATAN2
    )
}

/// True for operators whose result drops the metric name (all arithmetic but `atan2`,
/// as in Prometheus 2.42).
fn drops_name(op: u16) -> bool {
    is_arithmetic(op) && op != token::T_ATAN2
}

fn is_comparison(op: u16) -> bool {
    matches!(
        op,
        token::T_EQLC | token::T_NEQ | token::T_GTR | token::T_LSS | token::T_GTE | token::T_LTE
    )
}

/// `lhs op rhs` for one pair of values: the value and whether the element is kept
/// (comparisons keep the left value when true).
fn elem(op: u16, l: f64, r: f64) -> (f64, bool) {
    match op {
        token::T_ADD => (l + r, true),
        token::T_SUB => (l - r, true),
        token::T_MUL => (l * r, true),
        token::T_DIV => (l / r, true),
        token::T_MOD => (l % r, true),
        token::T_POW => (l.powf(r), true),
        token::T_ATAN2 => (l.atan2(r), true),
        token::T_EQLC => (l, l == r),
        token::T_NEQ => (l, l != r),
        token::T_GTR => (l, l > r),
        token::T_LSS => (l, l < r),
        token::T_GTE => (l, l >= r),
        token::T_LTE => (l, l <= r),
        _ => (f64::NAN, false),
    }
}

pub(super) fn eval(ev: &mut Evaluator, b: &BinaryExpr, t: i64) -> Result<StepValue, EvalError> {
    let op = b.op.id();
    let return_bool = b.return_bool();
    let lhs = ev.eval(&b.lhs, t)?;
    let rhs = ev.eval(&b.rhs, t)?;
    match (lhs, rhs) {
        (StepValue::Scalar(l), StepValue::Scalar(r)) => {
            let (v, keep) = elem(op, l, r);
            Ok(StepValue::Scalar(if is_comparison(op) {
                if keep { 1.0 } else { 0.0 }
            } else {
                v
            }))
        }
        (StepValue::Vector(v), StepValue::Scalar(s)) => {
            unique(vector_scalar(op, v, s, false, return_bool))
        }
        (StepValue::Scalar(s), StepValue::Vector(v)) => {
            unique(vector_scalar(op, v, s, true, return_bool))
        }
        (StepValue::Vector(l), StepValue::Vector(r)) => {
            let default = BinModifier::default();
            let m = b.modifier.as_ref().unwrap_or(&default);
            let matching = Matching::from(m);
            unique(match op {
                token::T_LAND => and_unless(l, r, &matching, true),
                token::T_LUNLESS => and_unless(l, r, &matching, false),
                token::T_LOR => or(l, r, &matching),
                _ => vector_vector(op, l, r, m, &matching, return_bool)?,
            })
        }
        _ => Err(EvalError::Execution(format!(
            "operator {} is only defined between scalars and instant vectors",
            b.op
        ))),
    }
}

/// A step's vector result, refused (as Prometheus does per step) if two samples share
/// a label set.
fn unique(v: Vec<Sample>) -> Result<StepValue, EvalError> {
    check_unique(&v)?;
    Ok(StepValue::Vector(v))
}

fn vector_scalar(
    op: u16,
    v: Vec<Sample>,
    s: f64,
    scalar_left: bool,
    return_bool: bool,
) -> Vec<Sample> {
    let drop_name = drops_name(op) || return_bool;
    let mut out = Vec::with_capacity(v.len());
    for mut sample in v {
        let (l, r) = if scalar_left {
            (s, sample.value)
        } else {
            (sample.value, s)
        };
        let (mut value, mut keep) = elem(op, l, r);
        if is_comparison(op) && scalar_left {
            // The vector element's value is the output, even when it is on the right.
            value = r;
        }
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
            keep = true;
        }
        if keep {
            sample.value = value;
            if drop_name {
                sample.labels = sample.labels.without_metric_name();
            }
            out.push(sample);
        }
    }
    out
}

/// `on (...)` / `ignoring (...)` of a binary expression.
struct Matching<'a> {
    on: bool,
    names: &'a [String],
}

impl<'a> From<&'a BinModifier> for Matching<'a> {
    fn from(m: &'a BinModifier) -> Self {
        match &m.matching {
            Some(LabelModifier::Include(l)) => Matching {
                on: true,
                names: &l.labels,
            },
            Some(LabelModifier::Exclude(l)) => Matching {
                on: false,
                names: &l.labels,
            },
            None => Matching {
                on: false,
                names: &[],
            },
        }
    }
}

impl Matching<'_> {
    fn signature(&self, labels: &Labels) -> u64 {
        if self.on {
            labels.hash_for_labels(self.names)
        } else {
            labels.hash_without_labels(self.names)
        }
    }

    /// The labels that identify the match group, for error messages.
    fn group_labels(&self, labels: &Labels) -> Labels {
        let mut b = labels.to_builder();
        if self.on {
            b.keep(self.names);
        } else {
            b.del(METRIC_NAME);
            for n in self.names {
                b.del(n);
            }
        }
        b.build()
    }
}

fn and_unless(l: Vec<Sample>, r: Vec<Sample>, m: &Matching, and: bool) -> Vec<Sample> {
    let rhs: HashSet<u64> = r.iter().map(|s| m.signature(&s.labels)).collect();
    l.into_iter()
        .filter(|s| rhs.contains(&m.signature(&s.labels)) == and)
        .collect()
}

fn or(l: Vec<Sample>, r: Vec<Sample>, m: &Matching) -> Vec<Sample> {
    let lhs: HashSet<u64> = l.iter().map(|s| m.signature(&s.labels)).collect();
    let mut out = l;
    out.extend(
        r.into_iter()
            .filter(|s| !lhs.contains(&m.signature(&s.labels))),
    );
    out
}

fn vector_vector(
    op: u16,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    modifier: &BinModifier,
    m: &Matching,
    return_bool: bool,
) -> Result<Vec<Sample>, EvalError> {
    let (card_one_to_one, swap, include): (bool, bool, &[String]) = match &modifier.card {
        VectorMatchCardinality::OneToOne => (true, false, &[]),
        VectorMatchCardinality::ManyToOne(l) => (false, false, &l.labels),
        VectorMatchCardinality::OneToMany(l) => (false, true, &l.labels),
        VectorMatchCardinality::ManyToMany => {
            return Err(EvalError::Execution(
                "many-to-many matching is only allowed for set operators".to_string(),
            ));
        }
    };
    // The "one" side is always on the right from here on.
    let (many, one) = if swap { (rhs, lhs) } else { (lhs, rhs) };
    let mut one_by_sig: HashMap<u64, usize, Prehashed> = HashMap::default();
    for (i, s) in one.iter().enumerate() {
        let sig = m.signature(&s.labels);
        if let Some(&j) = one_by_sig.get(&sig) {
            let side = if swap { "left" } else { "right" };
            return Err(EvalError::Execution(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                m.group_labels(&s.labels),
                s.labels,
                one[j].labels
            )));
        }
        one_by_sig.insert(sig, i);
    }
    let drop_name = drops_name(op);
    let mut matched: HashMap<u64, HashSet<u64>, Prehashed> = HashMap::default();
    let mut out = Vec::new();
    for s in many {
        let sig = m.signature(&s.labels);
        let Some(&oi) = one_by_sig.get(&sig) else {
            continue;
        };
        let o = &one[oi];
        let (l, r) = if swap {
            (o.value, s.value)
        } else {
            (s.value, o.value)
        };
        let (mut value, keep) = elem(op, l, r);
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let mut labels =
            result_labels(&s.labels, &o.labels, drop_name, card_one_to_one, m, include);
        if return_bool {
            labels = labels.without_metric_name();
        }
        let seen = matched.entry(sig).or_default();
        if card_one_to_one {
            if !seen.is_empty() {
                return Err(EvalError::Execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                        .to_string(),
                ));
            }
            seen.insert(0);
        } else if !seen.insert(labels.hash_value()) {
            return Err(EvalError::Execution(
                "multiple matches for labels: grouping labels must ensure unique matches"
                    .to_string(),
            ));
        }
        out.push(Sample { labels, value });
    }
    Ok(out)
}

/// The result's labels: the "many" side's, without the metric name for arithmetic,
/// reduced to the `on` labels (or without the `ignoring` ones) for one-to-one matching,
/// plus the `group_x(...)` labels copied from the "one" side.
fn result_labels(
    many: &Labels,
    one: &Labels,
    drop_name: bool,
    one_to_one: bool,
    m: &Matching,
    include: &[String],
) -> Labels {
    let untouched = !(one_to_one && (m.on || !m.names.is_empty())) && include.is_empty();
    if untouched {
        return if drop_name {
            many.without_metric_name()
        } else {
            many.clone()
        };
    }
    let mut b: LabelsBuilder = many.to_builder();
    if drop_name {
        b.del(METRIC_NAME);
    }
    if one_to_one {
        if m.on {
            b.keep(m.names);
        } else {
            for n in m.names {
                b.del(n);
            }
        }
    }
    for n in include {
        match one.get(n) {
            Some(v) => b.set(n, v),
            None => b.del(n),
        };
    }
    b.build()
}
