//! PromQL functions, with Prometheus' semantics (`promql/functions.go`).

use chrono::{Datelike, TimeZone, Timelike};
use promql_parser::label::MatchOp;
use promql_parser::parser::{Call, Expr};

use super::eval::{Evaluator, StepValue, Window, addr, check_unique};
use super::quantile::{histogram_quantile, quantile};
use super::{EvalError, Sample};
use crate::tsdb::{Labels, METRIC_NAME};

type R = Result<StepValue, EvalError>;

/// Evaluates a function call at `t`.
pub(super) fn eval(ev: &mut Evaluator, call: &Call, t: i64) -> R {
    let name = call.func.name;
    let args: Vec<&Expr> = call.args.args.iter().map(|a| &**a).collect();
    let arg = |i: usize| -> Result<&Expr, EvalError> {
        args.get(i)
            .copied()
            .ok_or_else(|| EvalError::Execution(format!("{name}(): missing argument {}", i + 1)))
    };
    match name {
        "time" => Ok(StepValue::Scalar(t as f64 / 1000.0)),
        "pi" => Ok(StepValue::Scalar(std::f64::consts::PI)),
        "vector" => {
            let v = ev.scalar_arg(arg(0)?, t)?;
            Ok(StepValue::Vector(vec![Sample {
                labels: Labels::empty(),
                value: v,
            }]))
        }
        "scalar" => {
            let v = ev.vector_arg(arg(0)?, t)?;
            Ok(StepValue::Scalar(if v.len() == 1 {
                v[0].value
            } else {
                f64::NAN
            }))
        }
        "absent" => {
            let v = ev.vector_arg(arg(0)?, t)?;
            Ok(StepValue::Vector(if v.is_empty() {
                vec![Sample {
                    labels: absent_labels(arg(0)?),
                    value: 1.0,
                }]
            } else {
                Vec::new()
            }))
        }
        "abs" => math(ev, arg(0)?, t, f64::abs),
        "ceil" => math(ev, arg(0)?, t, f64::ceil),
        "floor" => math(ev, arg(0)?, t, f64::floor),
        "exp" => math(ev, arg(0)?, t, f64::exp),
        "sqrt" => math(ev, arg(0)?, t, f64::sqrt),
        "ln" => math(ev, arg(0)?, t, f64::ln),
        "log2" => math(ev, arg(0)?, t, f64::log2),
        "log10" => math(ev, arg(0)?, t, f64::log10),
        "sin" => math(ev, arg(0)?, t, f64::sin),
        "cos" => math(ev, arg(0)?, t, f64::cos),
        "tan" => math(ev, arg(0)?, t, f64::tan),
        "asin" => math(ev, arg(0)?, t, f64::asin),
        "acos" => math(ev, arg(0)?, t, f64::acos),
        "atan" => math(ev, arg(0)?, t, f64::atan),
        "sinh" => math(ev, arg(0)?, t, f64::sinh),
        "cosh" => math(ev, arg(0)?, t, f64::cosh),
        "tanh" => math(ev, arg(0)?, t, f64::tanh),
        "asinh" => math(ev, arg(0)?, t, f64::asinh),
        "acosh" => math(ev, arg(0)?, t, f64::acosh),
        "atanh" => math(ev, arg(0)?, t, f64::atanh),
        "deg" => math(ev, arg(0)?, t, f64::to_degrees),
        "rad" => math(ev, arg(0)?, t, f64::to_radians),
        "sgn" => math(ev, arg(0)?, t, |v| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                v // 0, -0 and NaN are returned as they are
            }
        }),
        "round" => {
            let to_nearest = match args.get(1) {
                Some(e) => ev.scalar_arg(e, t)?,
                None => 1.0,
            };
            let inverse = 1.0 / to_nearest;
            math(ev, arg(0)?, t, move |v| {
                (v * inverse + 0.5).floor() / inverse
            })
        }
        "clamp" => {
            let (lo, hi) = (ev.scalar_arg(arg(1)?, t)?, ev.scalar_arg(arg(2)?, t)?);
            clamp(ev, arg(0)?, t, lo, hi)
        }
        "clamp_min" => {
            let lo = ev.scalar_arg(arg(1)?, t)?;
            math(ev, arg(0)?, t, move |v| go_max(lo, v))
        }
        "clamp_max" => {
            let hi = ev.scalar_arg(arg(1)?, t)?;
            math(ev, arg(0)?, t, move |v| go_min(hi, v))
        }
        "timestamp" => timestamp(ev, arg(0)?, t),
        "minute" | "hour" | "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month"
        | "month" | "year" => date_fn(ev, name, args.first().copied(), t),
        "sort" | "sort_desc" => {
            let mut v = ev.vector_arg(arg(0)?, t)?;
            let desc = name == "sort_desc";
            // NaN sorts last either way, as in Prometheus.
            v.sort_by(|a, b| match (a.value.is_nan(), b.value.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ if desc => b.value.total_cmp(&a.value),
                _ => a.value.total_cmp(&b.value),
            });
            Ok(StepValue::Vector(v))
        }
        "label_replace" => label_replace(ev, &args, t),
        "label_join" => label_join(ev, &args, t),
        "histogram_quantile" => {
            let q = ev.scalar_arg(arg(0)?, t)?;
            let v = ev.vector_arg(arg(1)?, t)?;
            let out = histogram_quantile(q, v);
            check_unique(&out)?;
            Ok(StepValue::Vector(out))
        }
        // Range-vector functions.
        "rate" => over_range(ev, arg(0)?, t, false, |p, w| {
            extrapolated_rate(p, w, true, true)
        }),
        "increase" => over_range(ev, arg(0)?, t, false, |p, w| {
            extrapolated_rate(p, w, true, false)
        }),
        "delta" => over_range(ev, arg(0)?, t, false, |p, w| {
            extrapolated_rate(p, w, false, false)
        }),
        "irate" => over_range(ev, arg(0)?, t, false, |p, _| instant_value(p, true)),
        "idelta" => over_range(ev, arg(0)?, t, false, |p, _| instant_value(p, false)),
        "deriv" => over_range(ev, arg(0)?, t, false, |p, _| {
            (p.len() >= 2).then(|| linear_regression(p, p[0].0).0)
        }),
        "predict_linear" => {
            let secs = ev.scalar_arg(arg(1)?, t)?;
            over_range(ev, arg(0)?, t, false, move |p, _| {
                (p.len() >= 2).then(|| {
                    let (slope, intercept) = linear_regression(p, t);
                    slope * secs + intercept
                })
            })
        }
        "changes" => over_range(ev, arg(0)?, t, false, |p, _| {
            let n = p
                .windows(2)
                .filter(|w| !(w[0].1 == w[1].1 || (w[0].1.is_nan() && w[1].1.is_nan())))
                .count();
            Some(n as f64)
        }),
        "resets" => over_range(ev, arg(0)?, t, false, |p, _| {
            Some(p.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64)
        }),
        "avg_over_time" => over_range(ev, arg(0)?, t, false, |p, _| Some(avg(p))),
        "sum_over_time" => over_range(ev, arg(0)?, t, false, |p, _| Some(sum_over_time(p))),
        "count_over_time" => over_range(ev, arg(0)?, t, false, |p, _| Some(p.len() as f64)),
        "min_over_time" => over_range(ev, arg(0)?, t, false, |p, _| {
            p.iter()
                .map(|s| s.1)
                .reduce(|m, v| if v < m || m.is_nan() { v } else { m })
        }),
        "max_over_time" => over_range(ev, arg(0)?, t, false, |p, _| {
            p.iter()
                .map(|s| s.1)
                .reduce(|m, v| if v > m || m.is_nan() { v } else { m })
        }),
        "last_over_time" => over_range(ev, arg(0)?, t, true, |p, _| p.last().map(|s| s.1)),
        "present_over_time" => over_range(ev, arg(0)?, t, false, |_, _| Some(1.0)),
        "stddev_over_time" => over_range(ev, arg(0)?, t, false, |p, _| Some(stdvar(p).sqrt())),
        "stdvar_over_time" => over_range(ev, arg(0)?, t, false, |p, _| Some(stdvar(p))),
        "quantile_over_time" => {
            let q = ev.scalar_arg(arg(0)?, t)?;
            over_range(ev, arg(1)?, t, false, move |p, _| {
                let mut values: Vec<f64> = p.iter().map(|s| s.1).collect();
                Some(quantile(q, &mut values))
            })
        }
        "double_exponential_smoothing" => holt_winters(ev, &args, t),
        "absent_over_time" => {
            let mut any = false;
            ev.for_each_range(arg(0)?, t, |_, _, _| any = true)?;
            Ok(StepValue::Vector(if any {
                Vec::new()
            } else {
                vec![Sample {
                    labels: absent_labels(arg(0)?),
                    value: 1.0,
                }]
            }))
        }
        other => Err(EvalError::Unsupported(format!("function {other}()"))),
    }
}

/// Applies `f` to every element of a range-vector argument.
fn over_range(
    ev: &mut Evaluator,
    arg: &Expr,
    t: i64,
    keep_name: bool,
    f: impl Fn(&[(i64, f64)], &Window) -> Option<f64>,
) -> R {
    let mut out = Vec::new();
    let mut pairs = Vec::new();
    ev.for_each_range(arg, t, |labels, points, window| {
        if let Some(value) = f(points, window) {
            let out_labels = if keep_name {
                labels.labels.clone()
            } else {
                labels.without_name()
            };
            pairs.push((out_labels.hash_value(), labels.labels.hash_value()));
            out.push(Sample {
                labels: out_labels,
                value,
            });
        }
    })?;
    check_unique(&out)?;
    ev.check_outputs(addr(arg), pairs)?;
    Ok(StepValue::Vector(out))
}

/// Applies `f` to every element of an instant-vector argument, dropping the metric name.
fn math(ev: &mut Evaluator, arg: &Expr, t: i64, f: impl Fn(f64) -> f64) -> R {
    let mut v = ev.vector_arg(arg, t)?;
    for s in &mut v {
        s.labels = s.labels.without_metric_name();
        s.value = f(s.value);
    }
    check_unique(&v)?;
    Ok(StepValue::Vector(v))
}

fn clamp(ev: &mut Evaluator, arg: &Expr, t: i64, lo: f64, hi: f64) -> R {
    if hi < lo {
        // Prometheus returns an empty vector when max < min.
        ev.vector_arg(arg, t)?;
        return Ok(StepValue::Vector(Vec::new()));
    }
    math(ev, arg, t, |v| go_max(lo, go_min(hi, v)))
}

/// Go's `math.Max`: NaN if either is NaN, +0 over -0.
fn go_max(a: f64, b: f64) -> f64 {
    match (a.is_nan(), b.is_nan()) {
        (false, false) if a == b && a == 0.0 => {
            if a.is_sign_negative() {
                b
            } else {
                a
            }
        }
        (false, false) => a.max(b),
        _ => f64::NAN,
    }
}

/// Go's `math.Min`: NaN if either is NaN, -0 under +0.
fn go_min(a: f64, b: f64) -> f64 {
    match (a.is_nan(), b.is_nan()) {
        (false, false) if a == b && a == 0.0 => {
            if a.is_sign_negative() {
                a
            } else {
                b
            }
        }
        (false, false) => a.min(b),
        _ => f64::NAN,
    }
}

/// `timestamp(v)`: the sample's own timestamp for a selector, the evaluation time for
/// computed samples.
fn timestamp(ev: &mut Evaluator, arg: &Expr, t: i64) -> R {
    let mut inner = arg;
    while let Expr::Paren(p) = inner {
        inner = &p.expr;
    }
    let mut out = Vec::new();
    if let Expr::VectorSelector(vs) = inner {
        ev.select_instant(vs, t, |labels, ts, _| {
            out.push(Sample {
                labels: labels.without_metric_name(),
                value: ts as f64 / 1000.0,
            })
        })?;
    } else {
        for s in ev.vector_arg(arg, t)? {
            out.push(Sample {
                labels: s.labels.without_metric_name(),
                value: t as f64 / 1000.0,
            });
        }
    }
    check_unique(&out)?;
    Ok(StepValue::Vector(out))
}

fn date_fn(ev: &mut Evaluator, name: &str, arg: Option<&Expr>, t: i64) -> R {
    let input = match arg {
        Some(a) => ev.vector_arg(a, t)?,
        None => vec![Sample {
            labels: Labels::empty(),
            value: t as f64 / 1000.0,
        }],
    };
    let mut out = Vec::with_capacity(input.len());
    for s in input {
        let value = if s.value.is_finite() {
            // Go's `int64(v)`: truncation towards zero, as Prometheus.
            let secs = s.value.trunc() as i64;
            match chrono::Utc.timestamp_opt(secs, 0).single() {
                Some(d) => match name {
                    "minute" => f64::from(d.minute()),
                    "hour" => f64::from(d.hour()),
                    "day_of_month" => f64::from(d.day()),
                    "day_of_week" => f64::from(d.weekday().num_days_from_sunday()),
                    "day_of_year" => f64::from(d.ordinal()),
                    "days_in_month" => f64::from(days_in_month(d.year(), d.month())),
                    "month" => f64::from(d.month()),
                    _ => f64::from(d.year()),
                },
                None => f64::NAN,
            }
        } else {
            s.value
        };
        out.push(Sample {
            labels: s.labels.without_metric_name(),
            value,
        });
    }
    check_unique(&out)?;
    Ok(StepValue::Vector(out))
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    chrono::NaiveDate::from_ymd_opt(ny, nm, 1)
        .and_then(|d| d.pred_opt())
        .map(|d| d.day())
        .unwrap_or(30)
}

pub use crate::tsdb::is_valid_label_name;

fn label_replace(ev: &mut Evaluator, args: &[&Expr], t: i64) -> R {
    if args.len() != 5 {
        return Err(EvalError::Execution(
            "label_replace() takes 5 arguments".to_string(),
        ));
    }
    let dst = ev.string_arg(args[1], t)?;
    let replacement = ev.string_arg(args[2], t)?;
    let src = ev.string_arg(args[3], t)?;
    let pattern = ev.string_arg(args[4], t)?;
    // Prometheus 2.x: `.` does not match a newline (3.x sets the `s` flag).
    let re = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
        EvalError::Execution(format!(
            "invalid regular expression in label_replace(): {pattern}: {e}"
        ))
    })?;
    if !is_valid_label_name(&dst) {
        return Err(EvalError::Execution(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let mut v = ev.vector_arg(args[0], t)?;
    for s in &mut v {
        let value = s.labels.get(&src).unwrap_or("");
        if let Some(caps) = re.captures(value) {
            let mut expanded = String::new();
            caps.expand(&replacement, &mut expanded);
            let mut b = s.labels.to_builder();
            b.set(&dst, &expanded);
            s.labels = b.build();
        }
    }
    check_unique(&v)?;
    Ok(StepValue::Vector(v))
}

fn label_join(ev: &mut Evaluator, args: &[&Expr], t: i64) -> R {
    if args.len() < 3 {
        return Err(EvalError::Execution(
            "label_join() takes at least 3 arguments".to_string(),
        ));
    }
    let dst = ev.string_arg(args[1], t)?;
    let sep = ev.string_arg(args[2], t)?;
    let mut srcs = Vec::new();
    for a in &args[3..] {
        let src = ev.string_arg(a, t)?;
        if !is_valid_label_name(&src) {
            return Err(EvalError::Execution(format!(
                "invalid source label name in label_join(): {src}"
            )));
        }
        srcs.push(src);
    }
    if !is_valid_label_name(&dst) {
        return Err(EvalError::Execution(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let mut v = ev.vector_arg(args[0], t)?;
    for s in &mut v {
        let joined = srcs
            .iter()
            .map(|n| s.labels.get(n).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(&sep);
        let mut b = s.labels.to_builder();
        b.set(&dst, &joined);
        s.labels = b.build();
    }
    check_unique(&v)?;
    Ok(StepValue::Vector(v))
}

/// Labels of `absent(...)`'s output: the selector's equality matchers (a name matched
/// twice is left out), as Prometheus' `createLabelsForAbsentFunction`.
fn absent_labels(arg: &Expr) -> Labels {
    let mut arg = arg;
    while let Expr::Paren(p) = arg {
        arg = &p.expr;
    }
    let vs = match arg {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::empty(),
    };
    let mut b = crate::tsdb::LabelsBuilder::default();
    let mut seen = std::collections::HashSet::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, MatchOp::Equal) && seen.insert(m.name.as_str()) {
            b.set(&m.name, &m.value);
        } else {
            b.del(&m.name);
        }
    }
    b.build()
}

/// `rate`, `increase` and `delta`: Prometheus' `extrapolatedRate`.
pub(super) fn extrapolated_rate(
    points: &[(i64, f64)],
    w: &Window,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (first_t, first_v) = points[0];
    let (last_t, last_v) = points[points.len() - 1];
    let mut result = last_v - first_v;
    if is_counter {
        for pair in points.windows(2) {
            if pair[1].1 < pair[0].1 {
                result += pair[0].1;
            }
        }
    }
    let mut duration_to_start = (first_t - w.start) as f64 / 1000.0;
    let mut duration_to_end = (w.end - last_t) as f64 / 1000.0;
    let sampled_interval = (last_t - first_t) as f64 / 1000.0;
    let average_between = sampled_interval / (points.len() - 1) as f64;
    if is_counter && result > 0.0 && first_v >= 0.0 {
        // Counters cannot be negative: do not extrapolate below zero. Prometheus 2.x
        // applies this before the threshold test (3.x after).
        let duration_to_zero = sampled_interval * (first_v / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    let threshold = average_between * 1.1;
    if duration_to_start >= threshold {
        duration_to_start = average_between / 2.0;
    }
    if duration_to_end >= threshold {
        duration_to_end = average_between / 2.0;
    }
    let mut factor = (sampled_interval + duration_to_start + duration_to_end) / sampled_interval;
    if is_rate {
        factor /= w.range_secs;
    }
    Some(result * factor)
}

/// `holt_winters(v, sf, tf)` (Prometheus 2.42; parsed under its 3.x name
/// `double_exponential_smoothing`, see [`super::parse`]).
fn holt_winters(ev: &mut Evaluator, args: &[&Expr], t: i64) -> R {
    let [range, sf, tf] = args else {
        return Err(EvalError::Execution(
            "holt_winters() takes 3 arguments".to_string(),
        ));
    };
    let (sf, tf) = (ev.scalar_arg(sf, t)?, ev.scalar_arg(tf, t)?);
    // As 2.42, the factors are checked only when some series has samples in its window.
    let called = std::cell::Cell::new(false);
    let out = over_range(ev, range, t, false, |p, _| {
        called.set(true);
        smooth(p, sf, tf)
    })?;
    if called.get() {
        check_factor("smoothing", "sf", sf)?;
        check_factor("trend", "tf", tf)?;
    }
    Ok(out)
}

/// Refuses a `holt_winters` factor outside (0, 1), with Prometheus' message.
fn check_factor(what: &str, name: &str, v: f64) -> Result<(), EvalError> {
    if v <= 0.0 || v >= 1.0 {
        return Err(EvalError::Execution(format!(
            "invalid {what} factor. Expected: 0 < {name} < 1, got: {v:.6}"
        )));
    }
    Ok(())
}

/// Double exponential smoothing of the window's values (Prometheus 2.42's
/// `funcHoltWinters`); `None` with fewer than two samples.
fn smooth(points: &[(i64, f64)], sf: f64, tf: f64) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, points[0].1);
    let mut b = points[1].1 - points[0].1;
    for (i, p) in points.iter().enumerate().skip(1) {
        let x = sf * p.1;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, x + y);
    }
    Some(s1)
}

/// `irate` and `idelta`: the last two samples.
fn instant_value(points: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (prev_t, prev_v) = points[points.len() - 2];
    let (last_t, last_v) = points[points.len() - 1];
    let interval = last_t - prev_t;
    if interval == 0 {
        return None;
    }
    let mut value = last_v;
    if !is_rate || last_v >= prev_v || last_v.is_nan() || prev_v.is_nan() {
        value = last_v - prev_v;
    }
    if is_rate {
        value /= interval as f64 / 1000.0;
    }
    Some(value)
}

/// Neumaier-compensated increment (Prometheus' `kahanSumInc`).
pub(super) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// `avg_over_time` as Prometheus 2.42: an incremental, compensated mean that keeps an
/// infinite mean unless a NaN or an infinity of the other sign arrives.
fn avg(points: &[(i64, f64)]) -> f64 {
    let (mut mean, mut c, mut count) = (0.0f64, 0.0, 0.0);
    for &(_, v) in points {
        count += 1.0;
        if mean.is_infinite() && ((v.is_infinite() && (mean > 0.0) == (v > 0.0)) || (v.is_finite()))
        {
            continue;
        }
        (mean, c) = kahan_inc(v / count - mean / count, mean, c);
    }
    if mean.is_infinite() { mean } else { mean + c }
}

/// `sum_over_time`: compensated sum, the plain sum when it is infinite.
fn sum_over_time(points: &[(i64, f64)]) -> f64 {
    let (mut sum, mut c) = (0.0f64, 0.0);
    for &(_, v) in points {
        (sum, c) = kahan_inc(v, sum, c);
    }
    if sum.is_infinite() { sum } else { sum + c }
}

/// Population variance (Prometheus' `stdvar_over_time`).
fn stdvar(points: &[(i64, f64)]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(_, v) in points {
        count += 1.0;
        let delta = v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// Least-squares slope and intercept (at `intercept_t`), x in seconds.
pub(super) fn linear_regression(points: &[(i64, f64)], intercept_t: i64) -> (f64, f64) {
    let first = points[0].1;
    if points.iter().all(|p| p.1 == first) {
        if first.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, first);
    }
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for &(t, v) in points {
        n += 1.0;
        let x = (t - intercept_t) as f64 / 1000.0;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(v, sy, cy);
        (sxy, cxy) = kahan_inc(x * v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov_xy = sxy - sx * sy / n;
    let var_x = sx2 - sx * sx / n;
    let slope = cov_xy / var_x;
    let intercept = sy / n - slope * sx / n;
    (slope, intercept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(start: i64, end: i64) -> Window {
        Window {
            start,
            end,
            range_secs: (end - start) as f64 / 1000.0,
        }
    }

    #[test]
    fn rate_extrapolates_to_the_window_edges() {
        // Samples every 10 s from 10 s to 290 s in a (0, 300] window: both gaps are
        // within 1.1 × the average interval, so the increase is extrapolated to 300 s.
        let p: Vec<_> = (1..=29).map(|i| (i * 10_000, i as f64 * 10.0)).collect();
        let inc = extrapolated_rate(&p, &w(0, 300_000), true, false).unwrap();
        assert!((inc - 300.0).abs() < 1e-9, "{inc}");
        let rate = extrapolated_rate(&p, &w(0, 300_000), true, true).unwrap();
        assert!((rate - 1.0).abs() < 1e-12, "{rate}");
    }

    #[test]
    fn counter_reset_is_added_back() {
        let p = [(0, 5.0), (10_000, 10.0), (20_000, 2.0), (30_000, 6.0)];
        // increase without extrapolation room: window exactly [0, 30 s], first sample at
        // the start → duration_to_start = 0 … but the zero point limits nothing here.
        let inc = extrapolated_rate(&p, &w(0, 30_000), true, false).unwrap();
        assert!((inc - 11.0).abs() < 1e-12, "{inc}");
        assert_eq!(instant_value(&p, true), Some(0.4));
        assert_eq!(instant_value(&p[..3], true), Some(0.2));
    }

    #[test]
    fn regression() {
        let p = [(0, 1.0), (1000, 3.0), (2000, 5.0)];
        assert_eq!(linear_regression(&p, 0), (2.0, 1.0));
        assert_eq!(linear_regression(&p, 2000), (2.0, 5.0));
    }

    #[test]
    fn label_names() {
        assert!(is_valid_label_name("a_1"));
        assert!(is_valid_label_name("_x"));
        assert!(!is_valid_label_name("1a"));
        assert!(!is_valid_label_name("a-b"));
        assert!(!is_valid_label_name(""));
    }
}
