//! Runs Prometheus' engine test scripts (`promql/test.go` / `promqltest` format) from
//! `tests/fixtures/promql/*.test` against the engine, through the same API the HTTP API
//! uses, and reports every failure of every script at the end.
//!
//! Supported commands: `load <interval>`, `clear`, `eval[_fail|_ordered] instant at <t>
//! <expr>` (also checked in range mode and in `@` variants, as Prometheus 2.42's test
//! does), and `eval[_fail]
//! range from <t> to <t> step <d> <expr>`. `eval_fail` may be followed by
//! `expected_fail_message <text>` or `expected_fail_regexp <regex>`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use promql_parser::parser::{AtModifier, Expr};

use watchpost::promql::{self, Engine, Value};
use watchpost::tsdb::{Labels, METRIC_NAME, STALE_NAN, Tsdb};

/// Relative tolerance of value comparisons (Prometheus' test `epsilon`).
const EPSILON: f64 = 0.000001;

type LabelMap = BTreeMap<String, String>;

/// One expected or loaded series: labels and values in expansion notation (`None` is `_`).
#[derive(Debug, Clone)]
struct SeriesDesc {
    labels: LabelMap,
    values: Vec<Option<f64>>,
}

#[derive(Debug)]
enum Mode {
    Instant { at: i64 },
    Range { start: i64, end: i64, step: i64 },
}

#[derive(Debug)]
enum Expect {
    /// The query must fail, optionally with a message or a message pattern.
    Fail(Option<FailMatch>),
    Scalar(f64),
    Series(Vec<SeriesDesc>),
}

#[derive(Debug)]
enum FailMatch {
    Message(String),
    Regexp(String),
}

#[derive(Debug)]
struct EvalCmd {
    line: usize,
    expr: String,
    mode: Mode,
    ordered: bool,
    expect: Expect,
}

#[derive(Debug)]
enum Cmd {
    Clear,
    Load {
        interval: i64,
        series: Vec<SeriesDesc>,
    },
    Eval(EvalCmd),
}

// ---------------------------------------------------------------- parsing

/// Parses a Prometheus duration (`1h30m`, `5m`, `10s`, `100ms`, `1d`, `1w`, `1y`) or a
/// plain number of seconds, into milliseconds.
fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Ok((secs * 1000.0).round() as i64);
    }
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let mut total: i64 = 0;
    let mut rest = body;
    if rest.is_empty() {
        return Err(format!("empty duration {s:?}"));
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: i64 = rest[..digits]
            .parse()
            .map_err(|_| format!("bad duration {s:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            u => return Err(format!("bad duration unit {u:?} in {s:?}")),
        };
        rest = &rest[unit_len..];
        total += n * unit;
    }
    Ok(if neg { -total } else { total })
}

/// Parses a number as Go's `strconv.ParseInt(s, 0, 64)` then `ParseFloat` would.
fn parse_number(s: &str) -> Option<f64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let lower = body.to_ascii_lowercase();
    let v = if let Some(hex) = lower.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()? as f64
    } else if lower.len() > 1 && lower.starts_with('0') && lower.chars().all(|c| c.is_ascii_digit())
    {
        i64::from_str_radix(&lower[1..], 8).ok()? as f64
    } else {
        match lower.as_str() {
            "inf" | "infinity" => f64::INFINITY,
            "nan" => f64::NAN,
            _ if lower
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | '+' | '-')) =>
            {
                lower.parse().ok()?
            }
            _ => return None,
        }
    };
    Some(if neg { -v } else { v })
}

/// Splits a series line into its metric part and its values part.
fn split_metric(line: &str) -> Result<(&str, &str), String> {
    if let Some(close) = find_closing_brace(line)? {
        return Ok((&line[..=close], line[close + 1..].trim()));
    }
    match line.find(char::is_whitespace) {
        Some(i) => Ok((&line[..i], line[i..].trim())),
        None => Ok((line, "")),
    }
}

/// The index of the `}` closing the label set, if the line has one (quotes respected).
fn find_closing_brace(line: &str) -> Result<Option<usize>, String> {
    let Some(open) = line.find('{') else {
        return Ok(None);
    };
    if line[..open].contains(char::is_whitespace) {
        return Ok(None);
    }
    let mut in_quote = false;
    let mut escaped = false;
    for (i, c) in line.char_indices().skip_while(|(i, _)| *i <= open) {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            '}' if !in_quote => return Ok(Some(i)),
            _ => {}
        }
    }
    Err(format!("unclosed label set in {line:?}"))
}

/// Parses `name{a="b", …}`, `{a="b"}` or `name` into a label map.
fn parse_metric(s: &str) -> Result<LabelMap, String> {
    let mut labels = LabelMap::new();
    let (name, rest) = match s.find('{') {
        Some(i) => (&s[..i], Some(&s[i + 1..s.len() - 1])),
        None => (s, None),
    };
    if !name.is_empty() {
        labels.insert(METRIC_NAME.to_string(), name.to_string());
    }
    let Some(mut rest) = rest else {
        return Ok(labels);
    };
    loop {
        rest = rest.trim_start().trim_start_matches(',').trim_start();
        if rest.is_empty() {
            return Ok(labels);
        }
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("bad label set {s:?}"))?;
        let name = rest[..eq].trim().to_string();
        let (value, after) = parse_quoted(rest[eq + 1..].trim_start())?;
        labels.insert(name, value);
        rest = after;
    }
}

/// Parses a Go double-quoted string at the start of `s`; returns it and the rest.
fn parse_quoted(s: &str) -> Result<(String, &str), String> {
    let mut chars = s.char_indices();
    if !matches!(chars.next(), Some((_, '"'))) {
        return Err(format!("expected a quoted string at {s:?}"));
    }
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => break,
            },
            c => out.push(c),
        }
    }
    Err(format!("unterminated string in {s:?}"))
}

/// Splits one expansion item (`1+2x3`, `-1-1x5`, `5x4`, `_x3`) into tokens.
fn parse_item(item: &str, out: &mut Vec<Option<f64>>) -> Result<(), String> {
    let bad = || format!("bad series value {item:?}");
    if item == "_" {
        out.push(None);
        return Ok(());
    }
    if item == "stale" {
        out.push(Some(STALE_NAN));
        return Ok(());
    }
    if let Some(n) = item.strip_prefix("_x") {
        let n: usize = n.parse().map_err(|_| bad())?;
        out.extend(std::iter::repeat_n(None, n));
        return Ok(());
    }
    // As Prometheus' series lexer: no hexadecimal here, so `0x10` is 0 eleven times.
    let Some(x) = item.rfind('x') else {
        out.push(Some(parse_number(item).ok_or_else(bad)?));
        return Ok(());
    };
    let times: usize = item[x + 1..].parse().map_err(|_| bad())?;
    let head = &item[..x];
    // Split the head into a start value and an optional signed increment.
    let split = head
        .char_indices()
        .skip(1)
        .find(|&(i, c)| matches!(c, '+' | '-') && !matches!(head.as_bytes()[i - 1], b'e' | b'E'))
        .map(|(i, _)| i);
    let (start, inc) = match split {
        Some(i) => (
            parse_number(&head[..i]).ok_or_else(bad)?,
            parse_number(&head[i..]).ok_or_else(bad)?,
        ),
        None => (parse_number(head).ok_or_else(bad)?, 0.0),
    };
    let mut v = start;
    for _ in 0..=times {
        out.push(Some(v));
        v += inc;
    }
    Ok(())
}

fn parse_values(s: &str) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for item in s.split_whitespace() {
        parse_item(item, &mut out)?;
    }
    Ok(out)
}

fn parse_series(line: &str) -> Result<SeriesDesc, String> {
    let (metric, values) = split_metric(line)?;
    Ok(SeriesDesc {
        labels: parse_metric(metric)?,
        values: parse_values(values)?,
    })
}

/// Trimmed lines with comments blanked.
fn lines(input: &str) -> Vec<String> {
    input
        .lines()
        .map(|l| {
            let l = l.trim();
            if l.starts_with('#') { "" } else { l }.to_string()
        })
        .collect()
}

fn parse_script(input: &str) -> Result<Vec<Cmd>, String> {
    let lines = lines(input);
    let mut cmds = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = &lines[i];
        i += 1;
        if l.is_empty() {
            continue;
        }
        let word = l.split_whitespace().next().unwrap_or("").to_lowercase();
        let lineno = i;
        let at = |e: String| format!("line {lineno}: {e}");
        if word == "clear" {
            cmds.push(Cmd::Clear);
            continue;
        }
        let body = take_block(&lines, &mut i);
        let cmd = if word == "load" {
            parse_load(l, &body).map_err(at)?
        } else if word.starts_with("eval") {
            Cmd::Eval(parse_eval(l, &body, lineno).map_err(at)?)
        } else {
            return Err(at(format!("invalid command {l:?}")));
        };
        cmds.push(cmd);
    }
    Ok(cmds)
}

/// The non-empty lines following a command.
fn take_block<'a>(lines: &'a [String], i: &mut usize) -> Vec<&'a str> {
    let mut body = Vec::new();
    while *i < lines.len() && !lines[*i].is_empty() {
        body.push(lines[*i].as_str());
        *i += 1;
    }
    body
}

fn parse_load(head: &str, body: &[&str]) -> Result<Cmd, String> {
    let interval = parse_duration(head["load".len()..].trim())?;
    let mut series: Vec<SeriesDesc> = Vec::new();
    for l in body {
        let s = parse_series(l)?;
        // As Prometheus' loader: a later definition of the same series replaces it.
        match series.iter_mut().find(|x| x.labels == s.labels) {
            Some(x) => *x = s,
            None => series.push(s),
        }
    }
    Ok(Cmd::Load { interval, series })
}

fn parse_eval(head: &str, body: &[&str], line: usize) -> Result<EvalCmd, String> {
    let (word, rest) = head
        .split_once(char::is_whitespace)
        .ok_or("eval without expression")?;
    let (fail, ordered) = match word {
        "eval" | "eval_warn" | "eval_info" => (false, false),
        "eval_fail" => (true, false),
        "eval_ordered" => (false, true),
        w => return Err(format!("unknown eval command {w}")),
    };
    let rest = rest.trim_start();
    let (mode, expr) = if let Some(r) = rest.strip_prefix("instant") {
        let r = r.trim_start().strip_prefix("at").ok_or("missing `at`")?;
        let (at, expr) = r.trim_start().split_once(' ').ok_or("missing expression")?;
        let at = parse_duration(at)?;
        (Mode::Instant { at }, expr)
    } else if let Some(r) = rest.strip_prefix("range") {
        let words: Vec<&str> = r.trim_start().splitn(7, ' ').collect();
        if words.len() < 7 || words[0] != "from" || words[2] != "to" || words[4] != "step" {
            return Err("expected `range from <t> to <t> step <d> <expr>`".to_string());
        }
        let mode = Mode::Range {
            start: parse_duration(words[1])?,
            end: parse_duration(words[3])?,
            step: parse_duration(words[5])?,
        };
        (mode, words[6])
    } else {
        return Err("expected `instant` or `range`".to_string());
    };
    let expect = parse_expect(fail, body)?;
    Ok(EvalCmd {
        line,
        expr: expr.trim().to_string(),
        mode,
        ordered,
        expect,
    })
}

fn parse_expect(fail: bool, body: &[&str]) -> Result<Expect, String> {
    if fail {
        let m = body.first().and_then(|l| {
            if let Some(m) = l.strip_prefix("expected_fail_message") {
                Some(FailMatch::Message(m.trim().to_string()))
            } else {
                l.strip_prefix("expected_fail_regexp")
                    .map(|r| FailMatch::Regexp(r.trim().to_string()))
            }
        });
        return Ok(Expect::Fail(m));
    }
    if let [one] = body
        && let Some(v) = parse_number(one)
    {
        return Ok(Expect::Scalar(v));
    }
    let series = body
        .iter()
        .map(|l| parse_series(l))
        .collect::<Result<_, _>>()?;
    Ok(Expect::Series(series))
}

// ---------------------------------------------------------------- running

/// Prometheus' test `almostEqual`: relative epsilon, NaN equals NaN (stale included).
fn almost_equal(a: f64, b: f64) -> bool {
    let min_normal = f64::MIN_POSITIVE;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || diff < min_normal {
        return diff < EPSILON * min_normal;
    }
    diff / (a.abs() + b.abs()) < EPSILON
}

fn fmt_labels(l: &LabelMap) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in l.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{k}={v:?}");
    }
    s.push('}');
    s
}

fn new_db() -> Tsdb {
    Tsdb::new(Duration::from_secs(100 * 365 * 86_400))
}

fn load(db: &Tsdb, interval: i64, series: &[SeriesDesc]) {
    for s in series {
        let labels = Labels::new(s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        for (i, v) in s.values.iter().enumerate() {
            if let Some(v) = v {
                db.append(&labels, i as i64 * interval, *v);
            }
        }
    }
}

/// A result as `(labels, points)`; a scalar is one series without labels.
type Got = Vec<(LabelMap, Vec<(i64, f64)>)>;

fn run_query(engine: &Engine, expr: &str, mode: &Mode) -> Result<Value, String> {
    run_parsed(engine, &promql::parse(expr)?, mode)
}

fn run_parsed(engine: &Engine, expr: &Expr, mode: &Mode) -> Result<Value, String> {
    match *mode {
        Mode::Instant { at } => engine.instant(expr, at),
        Mode::Range { start, end, step } => engine.range(expr, start, end, step),
    }
    .map_err(|e| e.to_string())
}

/// Runs `cmd`, and for an instant query also its `@` variants, as Prometheus 2.42's
/// test does: every selector and subquery (outside subqueries) pinned with `@` to the
/// evaluation time, evaluated at other times with the same expectations.
fn check_eval(engine: &Engine, cmd: &EvalCmd) -> Result<(), String> {
    check_one(engine, cmd, None)?;
    let Mode::Instant { at } = cmd.mode else {
        return Ok(());
    };
    let Ok(mut expr) = promql::parse(&cmd.expr) else {
        return Ok(());
    };
    if !pin_at(&mut expr, at) {
        return Ok(());
    }
    let times = if at == 0 {
        vec![-1000, 0, 1000]
    } else {
        vec![-10 * at, 0, at / 5, at, 10 * at]
    };
    for t in times {
        let variant = EvalCmd {
            line: cmd.line,
            expr: cmd.expr.clone(),
            mode: Mode::Instant { at: t },
            ordered: cmd.ordered,
            expect: Expect::Fail(None),
        };
        check_one(engine, &variant, Some((&expr, &cmd.expect)))
            .map_err(|e| format!("@ {} variant at {t} ms: {e}", at as f64 / 1000.0))?;
    }
    Ok(())
}

/// Functions whose result depends on the evaluation time even with `@` arguments.
const AT_UNSAFE: &[&str] = &[
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "time",
    "timestamp",
];

/// Sets `@ at_ms` on every selector and subquery not inside a subquery and without
/// one; false (no variants) when the expression calls an [`AT_UNSAFE`] function.
fn pin_at(expr: &mut Expr, at_ms: i64) -> bool {
    let at = || {
        let d = Duration::from_millis(at_ms.unsigned_abs());
        let t = if at_ms < 0 {
            UNIX_EPOCH - d
        } else {
            UNIX_EPOCH + d
        };
        Some(AtModifier::At(t))
    };
    match expr {
        Expr::VectorSelector(vs) => {
            vs.at = vs.at.take().or_else(at);
            true
        }
        Expr::MatrixSelector(ms) => {
            ms.vs.at = ms.vs.at.take().or_else(at);
            true
        }
        Expr::Subquery(sq) => {
            sq.at = sq.at.take().or_else(at);
            true
        }
        Expr::Paren(p) => pin_at(&mut p.expr, at_ms),
        Expr::Unary(u) => pin_at(&mut u.expr, at_ms),
        Expr::Binary(b) => pin_at(&mut b.lhs, at_ms) & pin_at(&mut b.rhs, at_ms),
        Expr::Aggregate(a) => {
            let param = a.param.as_mut().is_none_or(|p| pin_at(p, at_ms));
            pin_at(&mut a.expr, at_ms) & param
        }
        Expr::Call(c) => {
            let safe = !AT_UNSAFE.contains(&c.func.name);
            c.args
                .args
                .iter_mut()
                .fold(safe, |ok, a| pin_at(a, at_ms) & ok)
        }
        _ => true,
    }
}

/// Runs one query: `cmd`'s own, or a `variant` (expression and expectations).
fn check_one(
    engine: &Engine,
    cmd: &EvalCmd,
    variant: Option<(&Expr, &Expect)>,
) -> Result<(), String> {
    let result = match variant {
        Some((expr, _)) => run_parsed(engine, expr, &cmd.mode),
        None => run_query(engine, &cmd.expr, &cmd.mode),
    };
    let expect = variant.map_or(&cmd.expect, |v| v.1);
    match (expect, result) {
        (Expect::Fail(m), Err(e)) => check_fail_message(m.as_ref(), &e),
        (Expect::Fail(_), Ok(v)) => Err(format!("expected an error, got {v:?}")),
        (_, Err(e)) => Err(format!("unexpected error: {e}")),
        (expect, Ok(v)) => {
            compare(cmd, expect, &v)?;
            match cmd.mode {
                Mode::Instant { at } if !cmd.ordered => {
                    check_range_mode(engine, cmd, variant.map(|v| v.0), expect, at)
                }
                _ => Ok(()),
            }
        }
    }
}

fn check_fail_message(m: Option<&FailMatch>, err: &str) -> Result<(), String> {
    match m {
        Some(FailMatch::Message(want)) if want != err => {
            Err(format!("expected error {want:?}, got {err:?}"))
        }
        Some(FailMatch::Regexp(re)) => {
            let re = regex::Regex::new(re).map_err(|e| e.to_string())?;
            if re.is_match(err) {
                Ok(())
            } else {
                Err(format!("expected error matching {re}, got {err:?}"))
            }
        }
        _ => Ok(()),
    }
}

/// As Prometheus 2.42's test: the instant query run as a range query from `at - 1m` to
/// `at + 1m` by 1m must give the same answer at `at`.
fn check_range_mode(
    engine: &Engine,
    cmd: &EvalCmd,
    parsed: Option<&Expr>,
    expect: &Expect,
    at: i64,
) -> Result<(), String> {
    let mode = Mode::Range {
        start: at - 60_000,
        end: at + 60_000,
        step: 60_000,
    };
    let v = match parsed {
        Some(expr) => run_parsed(engine, expr, &mode),
        None => run_query(engine, &cmd.expr, &mode),
    }
    .map_err(|e| format!("range mode: {e}"))?;
    let Value::Matrix(m) = v else {
        return Err("range mode: not a matrix".to_string());
    };
    let mid: Vec<watchpost::promql::Sample> = m
        .into_iter()
        .filter_map(|s| {
            let p = s.points.iter().find(|p| p.0 == at)?;
            Some(watchpost::promql::Sample {
                labels: s.labels,
                value: p.1,
            })
        })
        .collect();
    let v = match expect {
        Expect::Scalar(_) => Value::Scalar(mid.first().map_or(f64::NAN, |s| s.value)),
        _ => Value::Vector(mid),
    };
    let instant = EvalCmd {
        line: cmd.line,
        expr: String::new(),
        mode: Mode::Instant { at },
        ordered: false,
        expect: Expect::Fail(None),
    };
    compare(&instant, expect, &v).map_err(|e| format!("range mode: {e}"))
}

fn got_of(v: &Value) -> Result<Got, String> {
    Ok(match v {
        Value::Scalar(x) => vec![(LabelMap::new(), vec![(0, *x)])],
        Value::Vector(v) => v
            .iter()
            .map(|s| (s.labels.to_map(), vec![(0, s.value)]))
            .collect(),
        Value::Matrix(m) => m
            .iter()
            .map(|s| (s.labels.to_map(), s.points.clone()))
            .collect(),
        Value::String(s) => return Err(format!("got string {s:?}")),
    })
}

fn compare(cmd: &EvalCmd, expect: &Expect, v: &Value) -> Result<(), String> {
    match (expect, v, &cmd.mode) {
        (Expect::Scalar(want), Value::Scalar(got), _) => {
            if almost_equal(*want, *got) {
                Ok(())
            } else {
                Err(format!("expected scalar {want}, got {got}"))
            }
        }
        (Expect::Scalar(want), Value::Matrix(_), Mode::Range { .. }) => {
            let desc = SeriesDesc {
                labels: LabelMap::new(),
                values: vec![Some(*want)],
            };
            compare_series(cmd, &[desc], &got_of(v)?)
        }
        (Expect::Scalar(_), other, _) => Err(format!("expected a scalar, got {other:?}")),
        (Expect::Series(want), Value::Vector(_), Mode::Instant { .. }) => {
            compare_vector(cmd, want, &got_of(v)?)
        }
        (Expect::Series(want), Value::Matrix(_), Mode::Range { .. }) => {
            compare_series(cmd, want, &got_of(v)?)
        }
        (Expect::Series(_), other, _) => Err(format!("unexpected result type: {other:?}")),
        (Expect::Fail(_), _, _) => Ok(()),
    }
}

fn compare_vector(cmd: &EvalCmd, want: &[SeriesDesc], got: &Got) -> Result<(), String> {
    let mut problems = Vec::new();
    for (pos, (labels, points)) in got.iter().enumerate() {
        let value = points[0].1;
        let Some(wpos) = want.iter().position(|w| &w.labels == labels) else {
            problems.push(format!("unexpected {} {value}", fmt_labels(labels)));
            continue;
        };
        let w = want[wpos]
            .values
            .first()
            .copied()
            .flatten()
            .unwrap_or(f64::NAN);
        if cmd.ordered && wpos != pos {
            problems.push(format!(
                "{} at position {} but expected at {}",
                fmt_labels(labels),
                pos + 1,
                wpos + 1
            ));
        }
        if !almost_equal(w, value) {
            problems.push(format!("{}: expected {w}, got {value}", fmt_labels(labels)));
        }
    }
    for w in want {
        if !got.iter().any(|(l, _)| l == &w.labels) {
            problems.push(format!("missing {} {:?}", fmt_labels(&w.labels), w.values));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn compare_series(cmd: &EvalCmd, want: &[SeriesDesc], got: &Got) -> Result<(), String> {
    let Mode::Range { start, step, .. } = cmd.mode else {
        return Err("series comparison outside a range query".to_string());
    };
    let mut problems = Vec::new();
    for w in want {
        let expected: Vec<(i64, f64)> = w
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (start + i as i64 * step, v)))
            .collect();
        let Some((_, points)) = got.iter().find(|(l, _)| l == &w.labels) else {
            problems.push(format!("missing {} {expected:?}", fmt_labels(&w.labels)));
            continue;
        };
        let same = points.len() == expected.len()
            && points
                .iter()
                .zip(&expected)
                .all(|(a, b)| a.0 == b.0 && almost_equal(a.1, b.1));
        if !same {
            problems.push(format!(
                "{}: expected {expected:?}, got {points:?}",
                fmt_labels(&w.labels)
            ));
        }
    }
    for (l, points) in got {
        if !want.iter().any(|w| &w.labels == l) {
            problems.push(format!("unexpected {} {points:?}", fmt_labels(l)));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Counts of one script's run.
#[derive(Default)]
struct Tally {
    evals: usize,
    passed: usize,
}

fn run_script(path: &Path, failures: &mut Vec<String>) -> Tally {
    let mut tally = Tally::default();
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let input = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => {
            failures.push(format!("{name}: {e}"));
            return tally;
        }
    };
    let cmds = match parse_script(&input) {
        Ok(c) => c,
        Err(e) => {
            failures.push(format!("{name}: parse error: {e}"));
            return tally;
        }
    };
    let mut db = new_db();
    for cmd in &cmds {
        match cmd {
            Cmd::Clear => db = new_db(),
            Cmd::Load { interval, series } => load(&db, *interval, series),
            Cmd::Eval(e) => {
                tally.evals += 1;
                match check_eval(&Engine::new(db.clone()), e) {
                    Ok(()) => tally.passed += 1,
                    Err(msg) => failures.push(format!("{name}:{} {}\n    {msg}", e.line, e.expr)),
                }
            }
        }
    }
    tally
}

fn scripts() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/promql");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "test"))
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    paths
}

#[test]
fn prometheus_test_scripts() {
    let filter = std::env::var("PROMQL_SCRIPT").ok();
    let mut failures = Vec::new();
    let (mut evals, mut passed, mut files) = (0, 0, 0);
    for path in scripts() {
        if let Some(f) = &filter
            && !path.to_string_lossy().contains(f.as_str())
        {
            continue;
        }
        files += 1;
        let t = run_script(&path, &mut failures);
        evals += t.evals;
        passed += t.passed;
    }
    println!("{files} scripts, {evals} eval commands, {passed} passed");
    assert!(files > 0, "no scripts found");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn expansion_notation() {
    let v =
        parse_values("0+10x3 1-1x2 _ _x2 stale 5x2 -2+1x1 Inf -Inf NaN 1e3").unwrap_or_default();
    let shown: Vec<String> = v
        .iter()
        .map(|x| {
            x.map_or("_".to_string(), |f| {
                if f.to_bits() == STALE_NAN.to_bits() {
                    "stale".into()
                } else {
                    f.to_string()
                }
            })
        })
        .collect();
    assert_eq!(
        shown.join(" "),
        "0 10 20 30 1 0 -1 _ _ _ stale 5 5 5 -2 -1 inf -inf NaN 1000"
    );
    assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
    assert_eq!(parse_duration("-5m"), Ok(-300_000));
    assert_eq!(parse_number("0x3d"), Some(61.0));
}
