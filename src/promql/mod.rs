//! PromQL over the in-memory store.
//!
//! Queries are parsed by the `promql-parser` crate; evaluation is ours and follows
//! Prometheus 2.42 semantics: 5 m lookback and range windows `[t - range, t]` closed on
//! the left, `holt_winters`, plain (uncompensated) `sum`/`avg`, stale markers, counter
//! resets and `extrapolatedRate` exactly as Prometheus computes them, vector matching
//! with `on`/`ignoring`/`group_left`/`group_right`. Constructs we do not evaluate
//! (native-histogram functions, experimental aggregations, `fill` modifiers, …) fail
//! with [`EvalError::Unsupported`] naming the construct — never a silently wrong number.
//!
//! The API the rules engine uses is [`Engine::instant`] and [`Engine::range`].

mod aggregate;
mod binary;
mod eval;
mod functions;
mod quantile;

use std::time::{Duration, Instant};

use promql_parser::parser::Expr;
use serde::Serialize;

use crate::tsdb::{Labels, Tsdb};

pub use eval::check_supported;
pub use functions::is_valid_label_name;

/// Default lookback of instant selectors (Prometheus' `--query.lookback-delta`).
pub const DEFAULT_LOOKBACK: Duration = Duration::from_secs(300);
/// Default step of subqueries without one (Prometheus' default evaluation interval).
pub const DEFAULT_SUBQUERY_STEP: Duration = Duration::from_secs(60);
/// Default limit of samples one query may load (Prometheus' `--query.max-samples`).
pub const DEFAULT_MAX_SAMPLES: usize = 50_000_000;
/// Default longest evaluation (Prometheus' `--query.timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Most points a range query may return per series (as Prometheus).
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// Labels; `__name__` is kept where Prometheus keeps it.
    pub labels: Labels,
    /// The value.
    pub value: f64,
}

/// One series of a range vector or of a range query result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// Labels.
    pub labels: Labels,
    /// `(timestamp in Unix ms, value)` in time order.
    pub points: Vec<(i64, f64)>,
}

/// The result of an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number.
    Scalar(f64),
    /// An instant vector.
    Vector(Vec<Sample>),
    /// A range vector (instant query of `x[5m]`) or a range query's result.
    Matrix(Vec<Series>),
    /// A string literal.
    String(String),
}

impl Value {
    /// Prometheus' name of the result type (`resultType` in the HTTP API).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
            Value::String(_) => "string",
        }
    }
}

/// Why an expression could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// The expression uses something this engine does not evaluate; names it.
    #[error("{0} is not supported by watchpost")]
    Unsupported(String),
    /// The expression is valid but cannot be evaluated on this data (as Prometheus'
    /// execution errors: many-to-many matching, duplicate label sets, …).
    #[error("{0}")]
    Execution(String),
    /// The query parameters are invalid (range query of a string, step too small, …).
    #[error("{0}")]
    BadQuery(String),
    /// The query would load more samples than allowed.
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
    /// The query ran past its deadline; names the stage (as Prometheus' `ErrQueryTimeout`).
    #[error("query timed out in {0}")]
    Timeout(&'static str),
}

/// Evaluation settings.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// Lookback of instant selectors.
    pub lookback: Duration,
    /// Step of subqueries that do not give one.
    pub default_subquery_step: Duration,
    /// Most samples one query may load.
    pub max_samples: usize,
    /// Longest one evaluation may run.
    pub timeout: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            lookback: DEFAULT_LOOKBACK,
            default_subquery_step: DEFAULT_SUBQUERY_STEP,
            max_samples: DEFAULT_MAX_SAMPLES,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Evaluates PromQL over a [`Tsdb`]. Cheap to clone; evaluations are independent and
/// may run on any number of threads at once.
#[derive(Clone)]
pub struct Engine {
    tsdb: Tsdb,
    opts: EngineOptions,
    /// Set by [`Engine::until`]: evaluations end here at the latest.
    deadline: Option<Instant>,
}

impl Engine {
    /// An engine over `tsdb` with default options.
    pub fn new(tsdb: Tsdb) -> Self {
        Self::with_options(tsdb, EngineOptions::default())
    }

    /// An engine with explicit options.
    pub fn with_options(tsdb: Tsdb, opts: EngineOptions) -> Self {
        Self {
            tsdb,
            opts,
            deadline: None,
        }
    }

    /// This engine with evaluations cut at `deadline` (if sooner than `timeout` after
    /// their start): the HTTP API counts queueing and a request's own `timeout` in it.
    pub fn until(&self, deadline: Instant) -> Self {
        Self {
            deadline: Some(deadline),
            ..self.clone()
        }
    }

    /// When an evaluation starting now must end.
    fn deadline(&self) -> Instant {
        let own = Instant::now() + self.opts.timeout;
        self.deadline.map_or(own, |d| d.min(own))
    }

    /// The store queried.
    pub fn tsdb(&self) -> &Tsdb {
        &self.tsdb
    }

    /// The options in use.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Evaluates `expr` at `at_ms` (Unix ms). Returns a scalar, vector, matrix (for a
    /// range-vector expression) or string.
    pub fn instant(&self, expr: &Expr, at_ms: i64) -> Result<Value, EvalError> {
        eval::instant(self, expr, at_ms)
    }

    /// Evaluates `expr` at every `step_ms` from `start_ms` to `end_ms` inclusive. The
    /// result is a matrix sorted by labels (a scalar becomes one series without labels).
    pub fn range(
        &self,
        expr: &Expr,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Value, EvalError> {
        eval::range(self, expr, start_ms, end_ms, step_ms)
    }
}

/// Deepest expression accepted (brackets, or operators chained): evaluation recurses
/// per level, and anyone who can reach the query API chooses the depth.
pub const MAX_DEPTH: usize = 256;

/// Parses a query, returning the parser's message on error (what the HTTP API puts
/// in `bad_data` errors). A query nested deeper than [`MAX_DEPTH`] is refused, its
/// brackets before parsing and its operators after.
pub fn parse(query: &str) -> Result<Expr, String> {
    let brackets = bracket_depth(query);
    if brackets > MAX_DEPTH {
        return Err(too_deep(brackets));
    }
    let expr = promql_parser::parser::parse(&rename_functions(query)?)?;
    match depth(&expr) {
        d if d > MAX_DEPTH => Err(too_deep(d)),
        _ => Ok(expr),
    }
}

/// The plotted side of an alerting expression and the threshold side, if any.
#[derive(Debug, Clone)]
pub struct Split {
    /// What is drawn.
    pub plotted: Expr,
    /// The side compared with (a dashed line when it is a number).
    pub threshold: Option<Expr>,
    /// The comparison, e.g. `>` (for the title).
    pub op: Option<String>,
}

/// Splits a top-level comparison (`lhs > 90`, `90 < lhs`, `lhs >= bool 2`): the side
/// holding series is plotted, the other is the threshold. Brackets are looked through,
/// and so is the left side of `and` / `unless` (the condition the others only gate).
pub fn split(expr: &Expr) -> Split {
    match expr {
        Expr::Paren(p) => split(&p.expr),
        Expr::Binary(b)
            if matches!(
                b.op.id(),
                promql_parser::parser::token::T_LAND | promql_parser::parser::token::T_LUNLESS
            ) =>
        {
            split(&b.lhs)
        }
        // Relabelling around a comparison: the comparison is what is charted.
        Expr::Call(c)
            if matches!(c.func.name, "label_replace" | "label_join")
                && c.args.args.first().is_some_and(|a| is_comparison(a)) =>
        {
            split(&c.args.args[0])
        }
        Expr::Binary(b) if b.op.is_comparison_operator() => {
            let op = b.op.to_string();
            let scalar = |e: &Expr| {
                matches!(
                    e.value_type(),
                    promql_parser::parser::value::ValueType::Scalar
                )
            };
            if scalar(&b.lhs) && !scalar(&b.rhs) {
                Split {
                    plotted: (*b.rhs).clone(),
                    threshold: Some((*b.lhs).clone()),
                    op: Some(mirror(&op)),
                }
            } else {
                Split {
                    plotted: (*b.lhs).clone(),
                    threshold: Some((*b.rhs).clone()),
                    op: Some(op),
                }
            }
        }
        other => Split {
            plotted: other.clone(),
            threshold: None,
            op: None,
        },
    }
}

/// Whether `expr` is (in brackets or not) a comparison.
fn is_comparison(expr: &Expr) -> bool {
    match expr {
        Expr::Paren(p) => is_comparison(&p.expr),
        Expr::Binary(b) => b.op.is_comparison_operator(),
        _ => false,
    }
}

/// `90 < x` read as `x > 90`.
fn mirror(op: &str) -> String {
    match op {
        "<" => ">",
        ">" => "<",
        "<=" => ">=",
        ">=" => "<=",
        o => o,
    }
    .to_string()
}

/// Prometheus 2.42's `holt_winters` is `double_exponential_smoothing` to the parser (its
/// 3.x name, which 2.42 does not know): calls are renamed before parsing, and calls
/// under the 3.x name refused as Prometheus 2.42 refuses them.
/// `expr` as query text in Prometheus 2.42's words (`holt_winters`, which [`parse`]
/// read under the parser's newer name).
pub fn to_query(expr: &Expr) -> String {
    const NEW: &str = "double_exponential_smoothing";
    let text = expr.to_string();
    if !text.contains(NEW) {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    for token in tokens(&text) {
        match token.ident {
            Some(NEW) => out.push_str("holt_winters"),
            _ => out.push_str(&text[token.start..token.end]),
        }
    }
    out
}

fn rename_functions(query: &str) -> Result<String, String> {
    const OLD: &str = "holt_winters";
    const NEW: &str = "double_exponential_smoothing";
    let mut out = String::with_capacity(query.len() + 16);
    for token in tokens(query) {
        let called = || query[token.end..].trim_start().starts_with('(');
        match token.ident {
            Some(OLD) if called() => out.push_str(NEW),
            Some(NEW) if called() => {
                return Err(format!("unknown function with name \"{NEW}\""));
            }
            _ => out.push_str(&query[token.start..token.end]),
        }
    }
    Ok(out)
}

/// A piece of a query: an identifier outside string literals, or any other text.
struct Token<'a> {
    start: usize,
    end: usize,
    ident: Option<&'a str>,
}

/// Where a scan of query text is with respect to string literals (`"…"`, `'…'` with
/// backslash escapes; raw `` `…` ``).
#[derive(Default)]
struct Quotes {
    open: Option<char>,
    escaped: bool,
}

impl Quotes {
    /// Takes the next character; `true` when it belongs to a string literal (its
    /// quotes included).
    fn in_string(&mut self, c: char) -> bool {
        match self.open {
            Some(q) => {
                match c {
                    _ if self.escaped => self.escaped = false,
                    '\\' if q != '`' => self.escaped = true,
                    _ if c == q => self.open = None,
                    _ => {}
                }
                true
            }
            None if matches!(c, '"' | '\'' | '`') => {
                self.open = Some(c);
                true
            }
            None => false,
        }
    }
}

/// Splits a query into identifiers (outside quotes) and the text between them.
fn tokens(query: &str) -> Vec<Token<'_>> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = Vec::new();
    let mut quotes = Quotes::default();
    let mut chars = query.char_indices().peekable();
    let mut text_start = 0;
    while let Some((i, c)) = chars.next() {
        if quotes.in_string(c) {
            continue;
        }
        if !(c.is_ascii_alphabetic() || c == '_') {
            if is_ident(c) {
                // A digit run (number or duration): skip it whole.
                while chars.peek().is_some_and(|&(_, d)| is_ident(d)) {
                    chars.next();
                }
            }
            continue;
        }
        let mut end = i + c.len_utf8();
        while let Some(&(j, d)) = chars.peek().filter(|&&(_, d)| is_ident(d)) {
            end = j + d.len_utf8();
            chars.next();
        }
        out.push(Token {
            start: text_start,
            end: i,
            ident: None,
        });
        out.push(Token {
            start: i,
            end,
            ident: Some(&query[i..end]),
        });
        text_start = end;
    }
    out.push(Token {
        start: text_start,
        end: query.len(),
        ident: None,
    });
    out
}

fn too_deep(depth: usize) -> String {
    format!("query too deeply nested: depth {depth} exceeds the limit of {MAX_DEPTH}")
}

/// The deepest nesting of `()`, `[]` and `{}` outside string literals.
fn bracket_depth(query: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut quotes = Quotes::default();
    for c in query.chars() {
        if quotes.in_string(c) {
            continue;
        }
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// The depth of an expression tree, walked without recursion.
fn depth(expr: &Expr) -> usize {
    let mut max = 0;
    let mut stack: Vec<(&Expr, usize)> = vec![(expr, 1)];
    while let Some((e, d)) = stack.pop() {
        max = max.max(d);
        match e {
            Expr::Aggregate(a) => {
                stack.push((&a.expr, d + 1));
                if let Some(p) = &a.param {
                    stack.push((p, d + 1));
                }
            }
            Expr::Unary(u) => stack.push((&u.expr, d + 1)),
            Expr::Binary(b) => {
                stack.push((&b.lhs, d + 1));
                stack.push((&b.rhs, d + 1));
            }
            Expr::Paren(p) => stack.push((&p.expr, d + 1)),
            Expr::Subquery(s) => stack.push((&s.expr, d + 1)),
            Expr::Call(c) => stack.extend(c.args.args.iter().map(|a| (a.as_ref(), d + 1))),
            _ => {}
        }
    }
    max
}

/// Formats a float as Prometheus does in its API and in `count_values`
/// (`strconv.FormatFloat(f, 'f', -1, 64)`, with `+Inf`, `-Inf`, `NaN`).
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod depth_tests {
    use super::*;

    #[test]
    fn printed_queries_keep_the_2_42_name() {
        let e = parse("sum(holt_winters(x[5m], 0.5, 0.5))").unwrap();
        let text = to_query(&e);
        assert_eq!(text, "sum(holt_winters(x[5m], 0.5, 0.5))");
        assert!(parse(&text).is_ok(), "{text}");
    }

    #[test]
    fn nesting_is_bounded_before_and_after_parsing() {
        assert_eq!(bracket_depth(r#"sum(rate(x{a="((("}[5m]))"#), 3);
        assert_eq!(bracket_depth(r#"x{a='\'('}"#), 1);
        let ok = format!(
            "{}1{}",
            "(".repeat(MAX_DEPTH - 1),
            ")".repeat(MAX_DEPTH - 1)
        );
        assert!(parse(&ok).is_ok());
        let deep = format!(
            "{}1{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert!(parse(&deep).unwrap_err().contains("too deeply nested"));
        let chain = vec!["1"; MAX_DEPTH + 2].join("+");
        assert!(
            parse(&chain)
                .unwrap_err()
                .contains("exceeds the limit of 256")
        );
        assert!(parse(&vec!["1"; 100].join("+")).is_ok());
    }

    #[test]
    fn holt_winters_is_the_2_42_name() {
        let call = |e: &Expr| match e {
            Expr::Call(c) => c.func.name,
            _ => "",
        };
        let e = parse("holt_winters(x[5m], 0.5, 0.1)").unwrap();
        assert_eq!(call(&e), "double_exponential_smoothing");
        let e = parse(
            r#"label_replace(holt_winters{a="holt_winters("}, "b", "holt_winters(", "a", "")"#,
        )
        .unwrap();
        assert!(
            e.to_string().contains(r#"holt_winters{a="holt_winters("}"#),
            "{e}"
        );
        assert!(e.to_string().contains(r#""holt_winters(""#), "{e}");
        let err = parse("double_exponential_smoothing(x[5m], 0.5, 0.1)").unwrap_err();
        assert!(err.contains("unknown function"), "{err}");
        assert!(parse(r#"x{a="double_exponential_smoothing("}"#).is_ok());
    }

    #[test]
    fn times_and_durations_out_of_range_are_refused_not_overflowed() {
        let engine = Engine::new(Tsdb::new(Duration::from_secs(60)));
        for q in [
            "up @ 1e300 offset -1h",
            "up @ -1e300",
            "up offset 300000y",
            "rate(up[300000y])",
            "max_over_time(up[1h:300000y])",
            "max_over_time(up[300000y:1m])",
            "max_over_time(up[1h:1m] offset -300000y)",
        ] {
            let expr = parse(q).unwrap();
            let e = engine.instant(&expr, 1_700_000_000_000).unwrap_err();
            assert!(matches!(e, EvalError::BadQuery(_)), "{q}: {e}");
            let e = engine.range(&expr, 0, 60_000, 15_000).unwrap_err();
            assert!(matches!(e, EvalError::BadQuery(_)), "{q}: {e}");
        }
        let ok = parse("up @ 1700000000 offset 1h").unwrap();
        assert!(engine.instant(&ok, 1_700_000_000_000).is_ok());
        assert!(parse("sum by (job) (rate(http_requests_total[5m]))").is_ok());
    }
}
