//! The evaluator: walks the AST once per evaluation timestamp.
//!
//! Instant queries read each selected series directly at the evaluation time (the
//! latest sample is kept uncompressed, so `metric > N` costs a postings lookup and a
//! lock per series). Range queries and subqueries first *plan* which time range each
//! selector needs over all steps, load those samples once, and then answer every step
//! from the loaded samples with binary searches.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{
    AtModifier, Expr, MatrixSelector, Offset, SubqueryExpr, VectorSelector, token,
};

use super::{Engine, EvalError, MAX_POINTS_PER_SERIES, Sample, Series, Value};
use crate::tsdb::{Labels, METRIC_NAME, Prehashed, is_stale_nan};

/// A value at one evaluation step.
pub(super) enum StepValue {
    Scalar(f64),
    Vector(Vec<Sample>),
    Matrix(Vec<Series>),
    String(String),
}

impl StepValue {
    fn type_name(&self) -> &'static str {
        match self {
            StepValue::Scalar(_) => "scalar",
            StepValue::Vector(_) => "instant vector",
            StepValue::Matrix(_) => "range vector",
            StepValue::String(_) => "string",
        }
    }
}

/// Samples of one series loaded for all steps of a query.
pub(super) struct Loaded {
    labels: Labels,
    /// `labels` without `__name__`, computed once for all steps.
    no_name: Labels,
    points: Vec<(i64, f64)>,
}

/// The labels of a range-vector element, with its name-less variant when known.
pub(super) struct RangeLabels<'a> {
    pub labels: &'a Labels,
    no_name: Option<&'a Labels>,
}

impl RangeLabels<'_> {
    /// The labels without `__name__`.
    pub fn without_name(&self) -> Labels {
        match self.no_name {
            Some(l) => l.clone(),
            None => self.labels.without_metric_name(),
        }
    }
}

/// The window a range function looks at: samples in `[start, end]` (Prometheus 2.x).
#[derive(Clone, Copy, Debug)]
pub(super) struct Window {
    pub start: i64,
    pub end: i64,
    /// The range in seconds (for `rate`'s per-second division).
    pub range_secs: f64,
}

/// Which selector a plan or preload belongs to: (node address, kind).
type NodeKey = (usize, u8);
const KIND_VECTOR: u8 = 0;
const KIND_MATRIX: u8 = 1;

pub(super) struct Evaluator<'a> {
    engine: &'a Engine,
    /// Query start and end (for `@ start()` / `@ end()`).
    start: i64,
    end: i64,
    lookback: i64,
    /// Time ranges to preload, for selectors evaluated at more than one time.
    plans: HashMap<NodeKey, (i64, i64)>,
    preloaded: HashMap<NodeKey, Rc<Vec<Loaded>>>,
    /// Subquery inner results by (node, inner timestamp): steps of a range query share them.
    subquery_memo: HashMap<(usize, i64), Rc<Vec<Sample>>>,
    /// Per node: which input series produced each output label set, over all steps.
    outputs: HashMap<usize, HashMap<u64, u64, Prehashed>>,
    samples: usize,
    /// When evaluation gives up with [`EvalError::Timeout`].
    deadline: Instant,
    /// Evaluations since the clock was last read.
    since_clock: u32,
}

/// Node evaluations between two reads of the clock.
const CLOCK_EVERY: u32 = 256;
/// Most subquery steps remembered for reuse by later steps (memory, not correctness).
const MEMO_ENTRIES: usize = 1 << 20;

pub(super) fn addr<T>(node: &T) -> usize {
    node as *const T as usize
}

fn duration_ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn offset_ms(offset: &Option<Offset>) -> i64 {
    match offset {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => -duration_ms(d),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => duration_ms(&d),
        Err(e) => -duration_ms(&e.duration()),
    }
}

/// The matchers of a selector, its metric name included.
pub(super) fn selector_matchers(vs: &VectorSelector) -> Vec<Matcher> {
    let mut m = Vec::with_capacity(vs.matchers.matchers.len() + 1);
    if let Some(name) = &vs.name {
        m.push(Matcher::new(MatchOp::Equal, METRIC_NAME, name));
    }
    m.extend(vs.matchers.matchers.iter().cloned());
    m
}

impl<'a> Evaluator<'a> {
    fn new(engine: &'a Engine, start: i64, end: i64) -> Self {
        Self {
            engine,
            start,
            end,
            lookback: duration_ms(&engine.opts.lookback),
            plans: HashMap::new(),
            preloaded: HashMap::new(),
            subquery_memo: HashMap::new(),
            outputs: HashMap::new(),
            samples: 0,
            deadline: engine.deadline(),
            // The first check reads the clock.
            since_clock: CLOCK_EVERY - 1,
        }
    }

    /// Fails once the deadline has passed; reads the clock every [`CLOCK_EVERY`] calls.
    fn check_deadline(&mut self) -> Result<(), EvalError> {
        self.since_clock += 1;
        if self.since_clock < CLOCK_EVERY {
            return Ok(());
        }
        self.since_clock = 0;
        if Instant::now() >= self.deadline {
            return Err(EvalError::Timeout("expression evaluation"));
        }
        Ok(())
    }

    fn count_samples(&mut self, n: usize) -> Result<(), EvalError> {
        self.samples += n;
        if self.samples > self.engine.opts.max_samples {
            return Err(EvalError::TooManySamples);
        }
        Ok(())
    }

    /// The time a selector reads at for evaluation time `t` (`@` and `offset` applied).
    fn ref_time(&self, at: &Option<AtModifier>, offset: &Option<Offset>, t: i64) -> i64 {
        let base = match at {
            None => t,
            Some(AtModifier::Start) => self.start,
            Some(AtModifier::End) => self.end,
            Some(AtModifier::At(st)) => system_time_ms(st),
        };
        base - offset_ms(offset)
    }

    /// Records the time range every selector needs when `expr` is evaluated at times
    /// `[s, e]`. Selectors read at a single time are not planned: they read directly.
    fn plan(&mut self, expr: &Expr, s: i64, e: i64) {
        match expr {
            Expr::VectorSelector(vs) => {
                let (s2, e2) = (
                    self.ref_time(&vs.at, &vs.offset, s),
                    self.ref_time(&vs.at, &vs.offset, e),
                );
                if s2 != e2 {
                    self.widen((addr(vs), KIND_VECTOR), s2 - self.lookback, e2);
                }
            }
            Expr::MatrixSelector(ms) => {
                let (s2, e2) = (
                    self.ref_time(&ms.vs.at, &ms.vs.offset, s),
                    self.ref_time(&ms.vs.at, &ms.vs.offset, e),
                );
                if s2 != e2 {
                    self.widen((addr(ms), KIND_MATRIX), s2 - duration_ms(&ms.range), e2);
                }
            }
            Expr::Subquery(sq) => {
                let (s2, e2) = (
                    self.ref_time(&sq.at, &sq.offset, s),
                    self.ref_time(&sq.at, &sq.offset, e),
                );
                self.plan(&sq.expr, s2 - duration_ms(&sq.range), e2);
            }
            Expr::Paren(p) => self.plan(&p.expr, s, e),
            Expr::Unary(u) => self.plan(&u.expr, s, e),
            Expr::Binary(b) => {
                self.plan(&b.lhs, s, e);
                self.plan(&b.rhs, s, e);
            }
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    self.plan(p, s, e);
                }
                self.plan(&a.expr, s, e);
            }
            Expr::Call(c) => {
                for arg in &c.args.args {
                    self.plan(arg, s, e);
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }

    fn widen(&mut self, key: NodeKey, mint: i64, maxt: i64) {
        self.plans
            .entry(key)
            .and_modify(|r| *r = (r.0.min(mint), r.1.max(maxt)))
            .or_insert((mint, maxt));
    }

    /// The preloaded samples of a planned selector (loading them on first use).
    fn preloaded(
        &mut self,
        key: NodeKey,
        vs: &VectorSelector,
        strip_stale: bool,
    ) -> Result<Option<Rc<Vec<Loaded>>>, EvalError> {
        if let Some(l) = self.preloaded.get(&key) {
            return Ok(Some(l.clone()));
        }
        let Some(&(mint, maxt)) = self.plans.get(&key) else {
            return Ok(None);
        };
        let series = self.engine.tsdb.select(&selector_matchers(vs));
        let mut loaded = Vec::with_capacity(series.len());
        for s in series {
            let mut points = Vec::new();
            s.samples_into(mint, maxt, &mut points);
            if strip_stale {
                points.retain(|p| !is_stale_nan(p.1));
            }
            self.count_samples(points.len())?;
            if !points.is_empty() {
                loaded.push(Loaded {
                    labels: s.labels().clone(),
                    no_name: s.labels().without_metric_name(),
                    points,
                });
            }
        }
        let loaded = Rc::new(loaded);
        self.preloaded.insert(key, loaded.clone());
        Ok(Some(loaded))
    }

    /// Calls `f(labels, sample_ts, value)` for every series an instant selector returns at `t`.
    pub(super) fn select_instant(
        &mut self,
        vs: &VectorSelector,
        t: i64,
        mut f: impl FnMut(&Labels, i64, f64),
    ) -> Result<(), EvalError> {
        let rt = self.ref_time(&vs.at, &vs.offset, t);
        let lookback = self.lookback;
        if let Some(loaded) = self.preloaded((addr(vs), KIND_VECTOR), vs, false)? {
            for l in loaded.iter() {
                let idx = l.points.partition_point(|p| p.0 <= rt);
                if idx == 0 {
                    continue;
                }
                let (st, v) = l.points[idx - 1];
                if st >= rt - lookback && !is_stale_nan(v) {
                    f(&l.labels, st, v);
                }
            }
            return Ok(());
        }
        let series = self.engine.tsdb.select(&selector_matchers(vs));
        self.count_samples(series.len())?;
        for s in &series {
            // `sample_at` excludes its window's start; the lookback includes it.
            if let Some((st, v)) = s.sample_at(rt, lookback.saturating_add(1)) {
                f(s.labels(), st, v);
            }
        }
        Ok(())
    }

    fn vector_selector(&mut self, vs: &VectorSelector, t: i64) -> Result<Vec<Sample>, EvalError> {
        let mut out = Vec::new();
        self.select_instant(vs, t, |labels, _, value| {
            out.push(Sample {
                labels: labels.clone(),
                value,
            })
        })?;
        Ok(out)
    }

    /// Calls `f(labels, samples, window)` for every series with samples in the window of
    /// a range-vector expression (matrix selector or subquery) evaluated at `t`.
    pub(super) fn for_each_range(
        &mut self,
        expr: &Expr,
        t: i64,
        mut f: impl FnMut(&RangeLabels, &[(i64, f64)], &Window),
    ) -> Result<(), EvalError> {
        match expr {
            Expr::Paren(p) => self.for_each_range(&p.expr, t, f),
            Expr::MatrixSelector(ms) => self.matrix_windows(ms, t, f),
            Expr::Subquery(sq) => {
                let rt = self.ref_time(&sq.at, &sq.offset, t);
                let range = duration_ms(&sq.range);
                let window = Window {
                    start: rt - range,
                    end: rt,
                    range_secs: sq.range.as_secs_f64(),
                };
                for s in self.subquery(sq, t)? {
                    let labels = RangeLabels {
                        labels: &s.labels,
                        no_name: None,
                    };
                    f(&labels, &s.points, &window);
                }
                Ok(())
            }
            other => Err(EvalError::Execution(format!(
                "expected a range vector, got {:?}",
                other.value_type()
            ))),
        }
    }

    fn matrix_windows(
        &mut self,
        ms: &MatrixSelector,
        t: i64,
        mut f: impl FnMut(&RangeLabels, &[(i64, f64)], &Window),
    ) -> Result<(), EvalError> {
        let rt = self.ref_time(&ms.vs.at, &ms.vs.offset, t);
        let range = duration_ms(&ms.range);
        let window = Window {
            start: rt - range,
            end: rt,
            range_secs: ms.range.as_secs_f64(),
        };
        if let Some(loaded) = self.preloaded((addr(ms), KIND_MATRIX), &ms.vs, true)? {
            for l in loaded.iter() {
                let lo = l.points.partition_point(|p| p.0 < window.start);
                let hi = l.points.partition_point(|p| p.0 <= rt);
                if lo < hi {
                    let labels = RangeLabels {
                        labels: &l.labels,
                        no_name: Some(&l.no_name),
                    };
                    f(&labels, &l.points[lo..hi], &window);
                }
            }
            return Ok(());
        }
        let series = self.engine.tsdb.select(&selector_matchers(&ms.vs));
        let mut buf = Vec::new();
        for s in &series {
            buf.clear();
            s.samples_into(window.start, rt, &mut buf);
            buf.retain(|p| !is_stale_nan(p.1));
            self.count_samples(buf.len())?;
            if !buf.is_empty() {
                let labels = RangeLabels {
                    labels: s.labels(),
                    no_name: None,
                };
                f(&labels, &buf, &window);
            }
        }
        Ok(())
    }

    /// Evaluates a subquery at `t`: its inner expression at every step-aligned time in
    /// `[t - offset - range, t - offset]`.
    fn subquery(&mut self, sq: &SubqueryExpr, t: i64) -> Result<Vec<Series>, EvalError> {
        let rt = self.ref_time(&sq.at, &sq.offset, t);
        let range = duration_ms(&sq.range);
        let step = duration_ms(&sq.step.unwrap_or(self.engine.opts.default_subquery_step));
        if step <= 0 {
            return Err(EvalError::BadQuery(
                "subquery step must be positive".to_string(),
            ));
        }
        let from = rt - range;
        let mut ts = step * from.div_euclid(step);
        if ts < from {
            ts += step;
        }
        let mut order: Vec<Labels> = Vec::new();
        let mut series: HashMap<Labels, Vec<(i64, f64)>, Prehashed> = HashMap::default();
        let key = addr(sq);
        while ts <= rt {
            self.check_deadline()?;
            let samples = match self.subquery_memo.get(&(key, ts)) {
                Some(s) => s.clone(),
                None => {
                    let v = match self.eval(&sq.expr, ts)? {
                        StepValue::Vector(v) => v,
                        StepValue::Scalar(x) => vec![Sample {
                            labels: Labels::empty(),
                            value: x,
                        }],
                        other => {
                            return Err(EvalError::Execution(format!(
                                "subquery is only allowed on instant vectors, got {}",
                                other.type_name()
                            )));
                        }
                    };
                    let v = Rc::new(v);
                    if self.subquery_memo.len() < MEMO_ENTRIES {
                        self.subquery_memo.insert((key, ts), v.clone());
                    }
                    v
                }
            };
            // An empty step still costs its time: counted as one.
            self.count_samples(samples.len().max(1))?;
            for s in samples.iter() {
                series
                    .entry(s.labels.clone())
                    .or_insert_with(|| {
                        order.push(s.labels.clone());
                        Vec::new()
                    })
                    .push((ts, s.value));
            }
            ts += step;
        }
        Ok(order
            .into_iter()
            .filter_map(|labels| {
                let points = series.remove(&labels)?;
                Some(Series { labels, points })
            })
            .collect())
    }

    /// Evaluates `expr` at `t`.
    pub(super) fn eval(&mut self, expr: &Expr, t: i64) -> Result<StepValue, EvalError> {
        self.check_deadline()?;
        match expr {
            Expr::NumberLiteral(n) => Ok(StepValue::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(StepValue::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                StepValue::Scalar(v) => Ok(StepValue::Scalar(-v)),
                StepValue::Vector(mut v) => {
                    let mut pairs = Vec::with_capacity(v.len());
                    for s in &mut v {
                        let input = s.labels.hash_value();
                        s.labels = s.labels.without_metric_name();
                        s.value = -s.value;
                        pairs.push((s.labels.hash_value(), input));
                    }
                    self.check_outputs(addr(u), pairs)?;
                    Ok(StepValue::Vector(v))
                }
                other => Err(EvalError::Execution(format!(
                    "unary minus is not defined on a {}",
                    other.type_name()
                ))),
            },
            Expr::VectorSelector(vs) => Ok(StepValue::Vector(self.vector_selector(vs, t)?)),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                let mut out = Vec::new();
                self.for_each_range(expr, t, |labels, points, _| {
                    out.push(Series {
                        labels: labels.labels.clone(),
                        points: points.to_vec(),
                    })
                })?;
                Ok(StepValue::Matrix(out))
            }
            Expr::Aggregate(a) => super::aggregate::eval(self, a, t),
            Expr::Binary(b) => super::binary::eval(self, b, t),
            Expr::Call(c) => super::functions::eval(self, c, t),
            Expr::Extension(e) => Err(EvalError::Unsupported(format!(
                "extension expression {}",
                e.expr.name()
            ))),
        }
    }

    /// Fails when an output label set of node `node` comes from two different input
    /// series, at this step or any earlier one: Prometheus 2.42 checks the whole range's
    /// result of range-vector functions and unary minus (`pairs`: output, input hashes).
    pub(super) fn check_outputs(
        &mut self,
        node: usize,
        pairs: impl IntoIterator<Item = (u64, u64)>,
    ) -> Result<(), EvalError> {
        let seen = self.outputs.entry(node).or_default();
        for (output, input) in pairs {
            if *seen.entry(output).or_insert(input) != input {
                return Err(duplicate_labelset());
            }
        }
        Ok(())
    }

    /// Evaluates an argument that must be an instant vector.
    pub(super) fn vector_arg(&mut self, expr: &Expr, t: i64) -> Result<Vec<Sample>, EvalError> {
        match self.eval(expr, t)? {
            StepValue::Vector(v) => Ok(v),
            other => Err(EvalError::Execution(format!(
                "expected an instant vector, got a {}",
                other.type_name()
            ))),
        }
    }

    /// Evaluates an argument that must be a scalar.
    pub(super) fn scalar_arg(&mut self, expr: &Expr, t: i64) -> Result<f64, EvalError> {
        match self.eval(expr, t)? {
            StepValue::Scalar(v) => Ok(v),
            other => Err(EvalError::Execution(format!(
                "expected a scalar, got a {}",
                other.type_name()
            ))),
        }
    }

    /// Evaluates an argument that must be a string.
    pub(super) fn string_arg(&mut self, expr: &Expr, t: i64) -> Result<String, EvalError> {
        match self.eval(expr, t)? {
            StepValue::String(v) => Ok(v),
            other => Err(EvalError::Execution(format!(
                "expected a string, got a {}",
                other.type_name()
            ))),
        }
    }
}

/// Error when one step's vector holds the same label set twice.
pub(super) fn duplicate_labelset() -> EvalError {
    EvalError::Execution("vector cannot contain metrics with the same labelset".to_string())
}

/// Checks that no two samples share a label set.
pub(super) fn check_unique(v: &[Sample]) -> Result<(), EvalError> {
    if v.len() < 2 {
        return Ok(());
    }
    let mut seen =
        std::collections::HashSet::with_capacity_and_hasher(v.len(), Prehashed::default());
    for s in v {
        if !seen.insert(&s.labels) {
            return Err(duplicate_labelset());
        }
    }
    Ok(())
}

pub(super) fn instant(engine: &Engine, expr: &Expr, t: i64) -> Result<Value, EvalError> {
    check_supported(expr)?;
    let mut ev = Evaluator::new(engine, t, t);
    ev.plan(expr, t, t);
    Ok(match ev.eval(expr, t)? {
        StepValue::Scalar(v) => Value::Scalar(v),
        StepValue::Vector(v) => {
            check_unique(&v)?;
            Value::Vector(v)
        }
        StepValue::Matrix(m) => Value::Matrix(m),
        StepValue::String(s) => Value::String(s),
    })
}

pub(super) fn range(
    engine: &Engine,
    expr: &Expr,
    start: i64,
    end: i64,
    step: i64,
) -> Result<Value, EvalError> {
    if step <= 0 {
        return Err(EvalError::BadQuery(
            "zero or negative query resolution step widths are not accepted. Try a positive integer"
                .to_string(),
        ));
    }
    if end < start {
        return Err(EvalError::BadQuery(
            "end timestamp must not be before start time".to_string(),
        ));
    }
    if (end - start) / step > MAX_POINTS_PER_SERIES {
        return Err(EvalError::BadQuery(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
                .to_string(),
        ));
    }
    match expr.value_type() {
        ValueType::Scalar | ValueType::Vector => {}
        other => {
            let name = if other == ValueType::Matrix {
                "range vector".to_string()
            } else {
                other.to_string()
            };
            return Err(EvalError::BadQuery(format!(
                "invalid expression type \"{name}\" for range query, must be Scalar or instant Vector"
            )));
        }
    }
    check_supported(expr)?;
    let mut ev = Evaluator::new(engine, start, end);
    ev.plan(expr, start, end);
    let mut series: HashMap<Labels, Vec<(i64, f64)>, Prehashed> = HashMap::default();
    let mut t = start;
    while t <= end {
        match ev.eval(expr, t)? {
            StepValue::Scalar(v) => series.entry(Labels::empty()).or_default().push((t, v)),
            StepValue::Vector(v) => {
                for s in v {
                    let points = series.entry(s.labels).or_default();
                    if points.last().is_some_and(|p| p.0 == t) {
                        return Err(duplicate_labelset());
                    }
                    points.push((t, s.value));
                }
            }
            other => {
                return Err(EvalError::BadQuery(format!(
                    "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                    other.type_name()
                )));
            }
        }
        t += step;
    }
    let mut out: Vec<Series> = series
        .into_iter()
        .map(|(labels, points)| Series { labels, points })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(Value::Matrix(out))
}

/// Functions the evaluator implements.
pub(super) const FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "deg",
    "delta",
    "deriv",
    "double_exponential_smoothing",
    "exp",
    "floor",
    "histogram_quantile",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
];

/// Fails with [`EvalError::Unsupported`] naming the first construct of `expr` this
/// engine does not evaluate (for `check-rules` and before every evaluation).
pub fn check_supported(expr: &Expr) -> Result<(), EvalError> {
    match expr {
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        Expr::Paren(p) => check_supported(&p.expr),
        Expr::Unary(u) => check_supported(&u.expr),
        Expr::VectorSelector(vs) => check_selector(vs),
        Expr::MatrixSelector(ms) => {
            check_duration(&ms.range, "range")?;
            check_selector(&ms.vs)
        }
        Expr::Subquery(sq) => {
            check_duration(&sq.range, "subquery range")?;
            if let Some(step) = &sq.step {
                check_duration(step, "subquery step")?;
            }
            check_times(&sq.at, &sq.offset)?;
            check_supported(&sq.expr)
        }
        Expr::Binary(b) => {
            if let Some(m) = &b.modifier
                && (m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some())
            {
                return Err(EvalError::Unsupported(
                    "the fill/fill_left/fill_right modifier".to_string(),
                ));
            }
            let op = b.op.id();
            if !b.op.is_operator()
                || !(super::binary::is_arithmetic(op)
                    || b.op.is_comparison_operator()
                    || b.op.is_set_operator())
            {
                return Err(EvalError::Unsupported(format!("binary operator {}", b.op)));
            }
            check_supported(&b.lhs)?;
            check_supported(&b.rhs)
        }
        Expr::Aggregate(a) => {
            let op = a.op.id();
            let supported = [
                token::T_SUM,
                token::T_AVG,
                token::T_MIN,
                token::T_MAX,
                token::T_COUNT,
                token::T_GROUP,
                token::T_STDDEV,
                token::T_STDVAR,
                token::T_TOPK,
                token::T_BOTTOMK,
                token::T_QUANTILE,
                token::T_COUNT_VALUES,
            ];
            if !supported.contains(&op) {
                return Err(EvalError::Unsupported(format!("aggregation {}", a.op)));
            }
            if let Some(p) = &a.param {
                check_supported(p)?;
            }
            check_supported(&a.expr)
        }
        Expr::Call(c) => {
            if !FUNCTIONS.contains(&c.func.name) {
                return Err(EvalError::Unsupported(format!(
                    "function {}()",
                    c.func.name
                )));
            }
            c.args.args.iter().try_for_each(|a| check_supported(a))
        }
        Expr::Extension(e) => Err(EvalError::Unsupported(format!(
            "extension expression {}",
            e.expr.name()
        ))),
    }
}

fn check_selector(vs: &VectorSelector) -> Result<(), EvalError> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(EvalError::Unsupported(
            "`or` inside label matchers".to_string(),
        ));
    }
    check_times(&vs.at, &vs.offset)
}

/// Longest duration in a query: what Go's `time.Duration` holds (about 292 years), as
/// in Prometheus. With [`MAX_AT_MS`] it keeps every time computed from a query in range.
const MAX_DURATION_MS: i64 = i64::MAX / 1_000_000;
/// Furthest `@` time from 1970 (as the API's own time parameters, ±9e15 ms).
const MAX_AT_MS: i64 = 9_000_000_000_000_000;

fn check_duration(d: &Duration, what: &str) -> Result<(), EvalError> {
    if duration_ms(d) > MAX_DURATION_MS {
        return Err(EvalError::BadQuery(format!(
            "{what} {d:?} is out of range: at most 292 years"
        )));
    }
    Ok(())
}

/// Bounds an `@` time and an `offset`, so that reading times cannot overflow.
fn check_times(at: &Option<AtModifier>, offset: &Option<Offset>) -> Result<(), EvalError> {
    if let Some(AtModifier::At(t)) = at
        && system_time_ms(t).unsigned_abs() > MAX_AT_MS as u64
    {
        return Err(EvalError::BadQuery(
            "timestamp out of bounds for @ modifier".to_string(),
        ));
    }
    match offset {
        Some(Offset::Pos(d)) | Some(Offset::Neg(d)) => check_duration(d, "offset"),
        None => Ok(()),
    }
}
