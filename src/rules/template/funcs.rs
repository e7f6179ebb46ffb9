//! Template functions: Go's built-ins and Prometheus' additions, formatted as Go does.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::Context;
use super::exec::{QuerySample, Value, go_time_string};
use crate::rules::duration::parse_duration;
use crate::rules::gofmt::{self, Flags, FloatVerb};

/// How many arguments a function takes.
#[derive(Debug, Clone, Copy)]
pub struct Arity {
    min: usize,
    max: Option<usize>,
}

impl Arity {
    const fn exactly(n: usize) -> Arity {
        Arity {
            min: n,
            max: Some(n),
        }
    }
    const fn at_least(n: usize) -> Arity {
        Arity { min: n, max: None }
    }

    /// Whether `n` arguments are fine.
    pub fn accepts(&self, n: usize) -> bool {
        n >= self.min && self.max.is_none_or(|m| n <= m)
    }

    /// "1", "at least 2".
    pub fn describe(&self) -> String {
        match self.max {
            Some(m) if m == self.min => m.to_string(),
            Some(m) => format!("{}..{m}", self.min),
            None => format!("at least {}", self.min),
        }
    }
}

/// The arity of a known function, `None` for an unknown name.
pub fn arity(name: &str) -> Option<Arity> {
    Some(match name {
        "and" | "or" => Arity::at_least(1),
        "not" | "len" => Arity::exactly(1),
        "html" | "js" | "urlquery" => Arity::at_least(0),
        "index" => Arity::at_least(1),
        "print" | "println" => Arity::at_least(0),
        "printf" => Arity::at_least(1),
        "eq" => Arity::at_least(2),
        "ne" | "lt" | "le" | "gt" | "ge" => Arity::exactly(2),
        "query" | "first" | "value" | "strvalue" => Arity::exactly(1),
        "label" | "sortByLabel" | "match" => Arity::exactly(2),
        "args" => Arity::at_least(0),
        "reReplaceAll" => Arity::exactly(3),
        "safeHtml" | "title" | "toUpper" | "toLower" | "graphLink" | "tableLink" => {
            Arity::exactly(1)
        }
        "humanize" | "humanize1024" | "humanizeDuration" | "humanizePercentage"
        | "humanizeTimestamp" => Arity::exactly(1),
        "parseDuration" | "stripPort" | "stripDomain" | "toTime" => Arity::exactly(1),
        "pathPrefix" | "externalURL" => Arity::exactly(0),
        // Alertmanager's additions for notification templates.
        "join" => Arity::exactly(2),
        "trimSpace" | "since" => Arity::exactly(1),
        // watchpost's: a time in an IANA zone.
        "tz" => Arity::exactly(2),
        "stringSlice" => Arity::at_least(0),
        _ => return None,
    })
}

/// Calls `name` with `args` (already checked against the arity at parse time).
pub fn call(name: &str, ctx: &Context<'_>, args: Vec<Value>) -> Result<Value, String> {
    if let Some(a) = arity(name)
        && !a.accepts(args.len())
    {
        return Err(format!(
            "wrong number of args: want {} got {}",
            a.describe(),
            args.len()
        ));
    }
    // `template.HTML` is a string to every function (Go: a string kind).
    let args: Vec<Value> = args
        .into_iter()
        .map(|a| match a {
            Value::Html(s) => Value::Str(s),
            other => other,
        })
        .collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or(Value::Nil);
    Ok(match name {
        "and" => args
            .iter()
            .find(|a| !a.truthy())
            .cloned()
            .unwrap_or_else(|| arg(args.len() - 1)),
        "or" => args
            .iter()
            .find(|a| a.truthy())
            .cloned()
            .unwrap_or_else(|| arg(args.len() - 1)),
        "not" => Value::Bool(!arg(0).truthy()),
        "len" => Value::Int(match &args[0] {
            Value::Str(s) => s.len(),
            Value::Labels(m) => m.len(),
            Value::Map(m) => m.len(),
            Value::Samples(s) => s.len(),
            Value::List(l) => l.len(),
            Value::Kv(m) => m.len(),
            other => return Err(format!("len of type {}", other.type_name())),
        } as i64),
        "index" => index(&args)?,
        "print" => Value::Str(sprint(&args, false)),
        "println" => Value::Str(sprint(&args, true)),
        "printf" => {
            let format = str_arg(&args[0])?;
            Value::Str(sprintf(&format, &args[1..]))
        }
        "html" => Value::Html(html_escape(&sprint(&args, false))),
        "js" => Value::Str(js_escape(&sprint(&args, false))),
        "urlquery" => Value::Str(query_escape(&sprint(&args, false))),
        "eq" => {
            let mut any = false;
            for b in &args[1..] {
                if eq(&args[0], b)? {
                    any = true;
                    break;
                }
            }
            Value::Bool(any)
        }
        "ne" => Value::Bool(!eq(&args[0], &args[1])?),
        "lt" => Value::Bool(lt(&args[0], &args[1])?),
        "le" => Value::Bool(le(&args[0], &args[1])?),
        "gt" => Value::Bool(!le(&args[0], &args[1])?),
        "ge" => Value::Bool(!lt(&args[0], &args[1])?),
        "query" => {
            let q = str_arg(&args[0])?;
            let Some(f) = ctx.query else {
                return Err("query is not available here".into());
            };
            Value::Samples(Arc::new(f(&q)?))
        }
        "first" => match &args[0] {
            Value::Samples(s) => match s.first() {
                Some(first) => Value::Sample(Arc::new(first.clone())),
                None => return Err("first() called on vector with no elements".into()),
            },
            other => return Err(wrong_type("template.queryResult", other)),
        },
        "label" => {
            let l = str_arg(&args[0])?;
            match &args[1] {
                Value::Sample(s) => Value::Str(s.labels.get(&l).cloned().unwrap_or_default()),
                other => return Err(wrong_type("*template.sample", other)),
            }
        }
        "value" => match &args[0] {
            Value::Sample(s) => Value::Float(s.value),
            other => return Err(wrong_type("*template.sample", other)),
        },
        "strvalue" => match &args[0] {
            Value::Sample(s) => Value::Str(s.labels.get("__value__").cloned().unwrap_or_default()),
            other => return Err(wrong_type("*template.sample", other)),
        },
        "sortByLabel" => {
            let l = str_arg(&args[0])?;
            match &args[1] {
                Value::Samples(s) => {
                    let mut v: Vec<QuerySample> = s.as_ref().clone();
                    v.sort_by(|a, b| a.labels.get(&l).cmp(&b.labels.get(&l)));
                    Value::Samples(Arc::new(v))
                }
                other => return Err(wrong_type("template.queryResult", other)),
            }
        }
        "args" => Value::Map(Arc::new(
            args.iter()
                .enumerate()
                .map(|(i, a)| (format!("arg{i}"), a.clone()))
                .collect::<BTreeMap<_, _>>(),
        )),
        "reReplaceAll" => {
            let (pattern, repl, text) =
                (str_arg(&args[0])?, str_arg(&args[1])?, str_arg(&args[2])?);
            let re = regex::Regex::new(&pattern).map_err(|e| e.to_string())?;
            Value::Str(re.replace_all(&text, repl.as_str()).into_owned())
        }
        "match" => {
            let (pattern, text) = (str_arg(&args[0])?, str_arg(&args[1])?);
            let re = regex::Regex::new(&pattern).map_err(|e| e.to_string())?;
            Value::Bool(re.is_match(&text))
        }
        "safeHtml" => Value::Html(str_arg(&args[0])?),
        "title" => Value::Str(title(&str_arg(&args[0])?)),
        "toUpper" => Value::Str(str_arg(&args[0])?.to_uppercase()),
        "toLower" => Value::Str(str_arg(&args[0])?.to_lowercase()),
        "graphLink" => Value::Str(graph_link(&str_arg(&args[0])?, 0)),
        "tableLink" => Value::Str(graph_link(&str_arg(&args[0])?, 1)),
        "humanize" => Value::Str(humanize(to_float(&args[0])?)),
        "humanize1024" => Value::Str(humanize1024(to_float(&args[0])?)),
        "humanizeDuration" => Value::Str(humanize_duration(to_float(&args[0])?)),
        "humanizePercentage" => Value::Str(format!(
            "{}%",
            gofmt::format_g(to_float(&args[0])? * 100.0, 4)
        )),
        "humanizeTimestamp" => Value::Str(humanize_timestamp(&args[0])?),
        "parseDuration" => {
            let s = str_arg(&args[0])?;
            Value::Float(parse_duration(&s)?.as_secs_f64())
        }
        "stripPort" => Value::Str(strip_port(&str_arg(&args[0])?)),
        "stripDomain" => Value::Str(strip_domain(&str_arg(&args[0])?)),
        "toTime" => Value::Time(float_to_nanos(to_float(&args[0])?)?),
        "join" => {
            let sep = str_arg(&args[0])?;
            match &args[1] {
                Value::List(l) => Value::Str(
                    l.iter()
                        .map(str_arg)
                        .collect::<Result<Vec<_>, _>>()?
                        .join(&sep),
                ),
                other => return Err(wrong_type("[]string", other)),
            }
        }
        "trimSpace" => Value::Str(str_arg(&args[0])?.trim().to_string()),
        "stringSlice" => Value::List(Arc::new(
            args.iter()
                .map(|a| str_arg(a).map(Value::Str))
                .collect::<Result<Vec<_>, _>>()?,
        )),
        "since" => match args[0].time_ns() {
            Some(ns) if ns != super::ZERO_TIME => {
                let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
                Value::Float(now.saturating_sub(ns) as f64 / 1e9)
            }
            Some(_) => return Err("since of the zero time".into()),
            None => return Err(wrong_type("time.Time", &args[0])),
        },
        "tz" => {
            let zone = super::time::parse_zone(&str_arg(&args[0])?)?;
            match args[1].time_ns() {
                Some(ns) => Value::Zoned(ns, zone),
                None => Value::Zoned(float_to_nanos(to_float(&args[1])?)?, zone),
            }
        }
        "pathPrefix" => Value::Str(url_path(ctx.external_url)),
        "externalURL" => Value::Str(ctx.external_url.to_string()),
        other => return Err(format!("function {other:?} not defined")),
    })
}

fn wrong_type(want: &str, got: &Value) -> String {
    format!(
        "wrong type for value; expected {want}; got {}",
        got.type_name()
    )
}

fn str_arg(v: &Value) -> Result<String, String> {
    match v {
        Value::Str(s) => Ok(s.clone()),
        other => Err(wrong_type("string", other)),
    }
}

/// Prometheus' `convertToFloat`: numbers, numeric strings, times.
fn to_float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Int(i) => Ok(*i as f64),
        Value::Str(s) => parse_go_float(s).ok_or_else(|| {
            format!(
                "strconv.ParseFloat: parsing {}: invalid syntax",
                gofmt::quote(s)
            )
        }),
        Value::Time(ns) | Value::Zoned(ns, _) => Ok(*ns as f64 / 1e9),
        other => Err(format!("can't convert {} to float", other.type_name())),
    }
}

fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.trim();
    if t != s || t.is_empty() {
        return None;
    }
    match t.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    t.parse().ok()
}

fn float_to_nanos(v: f64) -> Result<i64, String> {
    if v.is_nan() || v.is_infinite() {
        return Err(format!("time value is {}", gofmt::format_value(v)));
    }
    let ns = v * 1e9;
    if ns < i64::MIN as f64 || ns > i64::MAX as f64 {
        return Err(format!("{} out of time range", gofmt::format_value(v)));
    }
    Ok(ns as i64)
}

/// Prometheus' `humanize`: SI prefixes, 4 significant digits.
pub fn humanize(mut v: f64) -> String {
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return gofmt::format_g(v, 4);
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
        return format!("{}{prefix}", gofmt::format_g(v, 4));
    }
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}", gofmt::format_g(v, 4))
}

/// Prometheus' `humanize1024`: binary prefixes.
pub fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || v.is_nan() || v.is_infinite() {
        return gofmt::format_g(v, 4);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", gofmt::format_g(v, 4))
}

/// Prometheus' `humanizeDuration`: `1d 2h 3m 4s`, or `1.5s`, `250ms`.
pub fn humanize_duration(mut v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return gofmt::format_g(v, 4);
    }
    if v == 0.0 {
        return format!("{}s", gofmt::format_g(v, 4));
    }
    if v.abs() >= 1.0 {
        let mut sign = "";
        if v < 0.0 {
            sign = "-";
            v = -v;
        }
        let d = v as i64;
        let (seconds, minutes, hours, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86400);
        if days != 0 {
            return format!("{sign}{days}d {hours}h {minutes}m {seconds}s");
        }
        if hours != 0 {
            return format!("{sign}{hours}h {minutes}m {seconds}s");
        }
        if minutes != 0 {
            return format!("{sign}{minutes}m {seconds}s");
        }
        return format!("{sign}{}s", gofmt::format_g(v, 4));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", gofmt::format_g(v, 4))
}

fn humanize_timestamp(v: &Value) -> Result<String, String> {
    if let Value::Zoned(ns, tz) = v {
        return Ok(super::time::go_string_in(*ns, *tz));
    }
    let ns = match v {
        Value::Time(ns) => *ns,
        other => {
            let f = to_float(other)?;
            if f.is_nan() || f.is_infinite() {
                return Ok(gofmt::format_g(f, 4));
            }
            float_to_nanos(f)?
        }
    };
    Ok(go_time_string(ns))
}

/// Go's deprecated `strings.Title`: upper-cases the first letter of each word.
pub fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_sep = true;
    for c in s.chars() {
        if prev_sep {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_sep = is_separator(c);
    }
    out
}

fn is_separator(c: char) -> bool {
    if c.is_ascii() {
        return !(c.is_ascii_alphanumeric() || c == '_');
    }
    if c.is_alphanumeric() {
        return false;
    }
    c.is_whitespace()
}

/// Go's `url.QueryEscape`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Prometheus' `graphLink`/`tableLink` (`tab` 0 or 1).
pub fn graph_link(expr: &str, tab: u8) -> String {
    format!("/graph?g0.expr={}&g0.tab={tab}", query_escape(expr))
}

fn url_path(url: &str) -> String {
    let after_scheme = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    match after_scheme.find('/') {
        Some(i) => after_scheme[i..].to_string(),
        None => String::new(),
    }
}

fn split_host_port(s: &str) -> Option<(String, String)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return Some((host.to_string(), port.to_string()));
    }
    let (host, port) = s.rsplit_once(':')?;
    if host.contains(':') {
        return None;
    }
    Some((host.to_string(), port.to_string()))
}

fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn strip_port(s: &str) -> String {
    match split_host_port(s) {
        Some((host, _)) => host,
        None => s.to_string(),
    }
}

fn strip_domain(s: &str) -> String {
    let (host, port) = match split_host_port(s) {
        Some((h, p)) => (h, Some(p)),
        None => (s.to_string(), None),
    };
    if host.parse::<std::net::IpAddr>().is_ok() {
        return s.to_string();
    }
    let short = host.split('.').next().unwrap_or("").to_string();
    match port {
        Some(p) if !p.is_empty() => join_host_port(&short, &p),
        _ => short,
    }
}

fn index(args: &[Value]) -> Result<Value, String> {
    let mut v = args[0].clone();
    for key in &args[1..] {
        v = match (&v, key) {
            (Value::Labels(m), Value::Str(k)) => Value::Str(m.get(k).cloned().unwrap_or_default()),
            (Value::Map(m), Value::Str(k)) => m.get(k).cloned().unwrap_or(Value::Nil),
            (Value::Kv(m), Value::Str(k)) => Value::Str(m.get(k).cloned().unwrap_or_default()),
            (Value::List(l), Value::Int(i)) => {
                match usize::try_from(*i).ok().and_then(|i| l.get(i)) {
                    Some(x) => x.clone(),
                    None => return Err(format!("index out of range: {i}")),
                }
            }
            (Value::Samples(s), Value::Int(i)) => {
                match usize::try_from(*i).ok().and_then(|i| s.get(i)) {
                    Some(x) => Value::Sample(Arc::new(x.clone())),
                    None => return Err(format!("index out of range: {i}")),
                }
            }
            (Value::Str(s), Value::Int(i)) => {
                match usize::try_from(*i).ok().and_then(|i| s.as_bytes().get(i)) {
                    Some(b) => Value::Int(*b as i64),
                    None => return Err(format!("index out of range: {i}")),
                }
            }
            (Value::Nil, _) => return Err("index of untyped nil".into()),
            (container, k) => {
                return Err(format!(
                    "can't index item of type {} with {}",
                    container.type_name(),
                    k.type_name()
                ));
            }
        };
    }
    Ok(v)
}

/// Comparison of basic kinds; ints and floats compare numerically; `None` when
/// unordered (NaN).
fn compare(a: &Value, b: &Value) -> Result<Option<Ordering>, String> {
    let num = |v: &Value| match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    };
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => Ok(Some(x.cmp(y))),
        (Value::Str(x), Value::Str(y)) => Ok(Some(x.cmp(y))),
        (Value::Int(x), Value::Int(y)) => Ok(Some(x.cmp(y))),
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => Ok(x.partial_cmp(&y)),
            _ if !is_basic(a) || !is_basic(b) => Err("invalid type for comparison".into()),
            _ => Err("incompatible types for comparison".into()),
        },
    }
}

fn eq(a: &Value, b: &Value) -> Result<bool, String> {
    Ok(compare(a, b)? == Some(Ordering::Equal))
}

/// Go's `lt` (booleans are not ordered); `le` is `lt || eq`, `gt` is `!le`, `ge` is `!lt`.
fn lt(a: &Value, b: &Value) -> Result<bool, String> {
    if matches!(a, Value::Bool(_)) || matches!(b, Value::Bool(_)) {
        return Err("invalid type for comparison".into());
    }
    Ok(compare(a, b)? == Some(Ordering::Less))
}

fn le(a: &Value, b: &Value) -> Result<bool, String> {
    Ok(lt(a, b)? || eq(a, b)?)
}

fn is_basic(v: &Value) -> bool {
    matches!(
        v,
        Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Str(_)
    )
}

/// `fmt.Sprint` / `fmt.Sprintln`.
fn sprint(args: &[Value], ln: bool) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            let both_non_string =
                !matches!(a, Value::Str(_)) && !matches!(args[i - 1], Value::Str(_));
            if ln || both_non_string {
                out.push(' ');
            }
        }
        print_fmt(a, &mut out);
    }
    if ln {
        out.push('\n');
    }
    out
}

/// `%v` of a value inside `fmt` (nil is `<nil>`, unlike a template's `<no value>`).
fn print_fmt(v: &Value, out: &mut String) {
    match v {
        Value::Nil => out.push_str("<nil>"),
        other => other.print(out),
    }
}

/// Go's `fmt.Sprintf` for the verbs templates use.
pub fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut next = 0usize;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut flags = Flags::default();
        while let Some(&f) = chars.peek() {
            match f {
                '+' => flags.plus = true,
                '-' => flags.minus = true,
                '#' => flags.sharp = true,
                ' ' => flags.space = true,
                '0' => flags.zero = !flags.minus,
                _ => break,
            }
            chars.next();
        }
        flags.width = number_or_star(&mut chars, args, &mut next, &mut out, "WIDTH");
        if chars.peek() == Some(&'.') {
            chars.next();
            flags.prec =
                Some(number_or_star(&mut chars, args, &mut next, &mut out, "PREC").unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        next += 1;
        out.push_str(&format_one(verb, arg, &flags));
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        for (i, a) in args[next..].iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(a.type_name());
            out.push('=');
            print_fmt(a, &mut out);
        }
        out.push(')');
    }
    out
}

fn number_or_star(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    args: &[Value],
    next: &mut usize,
    out: &mut String,
    what: &str,
) -> Option<usize> {
    if chars.peek() == Some(&'*') {
        chars.next();
        let v = match args.get(*next) {
            Some(Value::Int(i)) if *i >= 0 => Some(*i as usize),
            _ => {
                out.push_str(&format!("%!(BAD{what})"));
                None
            }
        };
        *next += 1;
        return v;
    }
    let mut n: Option<usize> = None;
    while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
        n = Some(n.unwrap_or(0).saturating_mul(10).saturating_add(d as usize));
        chars.next();
    }
    n
}

fn bad_verb(verb: char, arg: &Value) -> String {
    match arg {
        Value::Nil => format!("%!{verb}(<nil>)"),
        other => format!("%!{verb}({}={})", other.type_name(), {
            let mut s = String::new();
            print_fmt(other, &mut s);
            s
        }),
    }
}

fn format_one(verb: char, arg: &Value, flags: &Flags) -> String {
    if verb == 'T' {
        return flags.pad(arg.type_name().to_string(), false);
    }
    match arg {
        Value::Float(f) => match verb {
            'v' | 'g' => gofmt::fmt_float(*f, FloatVerb::G(false), flags),
            'G' => gofmt::fmt_float(*f, FloatVerb::G(true), flags),
            'e' | 'E' => {
                let with_prec = Flags {
                    prec: Some(flags.prec.unwrap_or(6)),
                    ..*flags
                };
                gofmt::fmt_float(*f, FloatVerb::E(verb == 'E'), &with_prec)
            }
            'f' | 'F' => {
                let with_prec = Flags {
                    prec: Some(flags.prec.unwrap_or(6)),
                    ..*flags
                };
                gofmt::fmt_float(*f, FloatVerb::F, &with_prec)
            }
            _ => bad_verb(verb, arg),
        },
        Value::Int(i) => match verb {
            'v' | 'd' => gofmt::fmt_int(*i, 'd', flags),
            'x' | 'X' | 'o' | 'b' => gofmt::fmt_int(*i, verb, flags),
            'c' => flags.pad(
                char::from_u32(*i as u32).unwrap_or('\u{fffd}').to_string(),
                false,
            ),
            'q' => flags.pad(
                format!("'{}'", char::from_u32(*i as u32).unwrap_or('\u{fffd}')),
                false,
            ),
            _ => bad_verb(verb, arg),
        },
        Value::Str(s) => match verb {
            'v' | 's' => {
                let s = match flags.prec {
                    Some(p) => s.chars().take(p).collect(),
                    None => s.clone(),
                };
                flags.pad(s, false)
            }
            'q' => flags.pad(gofmt::quote(s), false),
            'x' => flags.pad(s.bytes().map(|b| format!("{b:02x}")).collect(), false),
            'X' => flags.pad(s.bytes().map(|b| format!("{b:02X}")).collect(), false),
            _ => bad_verb(verb, arg),
        },
        Value::Bool(b) => match verb {
            'v' | 't' => flags.pad(b.to_string(), false),
            _ => bad_verb(verb, arg),
        },
        Value::Nil => match verb {
            'v' => flags.pad("<nil>".into(), false),
            _ => bad_verb(verb, arg),
        },
        other => match verb {
            'v' | 's' => {
                let mut s = String::new();
                print_fmt(other, &mut s);
                flags.pad(s, false)
            }
            _ => bad_verb(verb, arg),
        },
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&#34;"),
            '\0' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanize_matches_prometheus() {
        let cases = [
            (0.0, "0"),
            (1.0, "1"),
            (999.0, "999"),
            (1000.0, "1k"),
            (1234.0, "1.234k"),
            (1_234_567.0, "1.235M"),
            (0.001, "1m"),
            (0.0123, "12.3m"),
            (-1500.0, "-1.5k"),
            (1e30, "1e+06Y"),
            (f64::INFINITY, "+Inf"),
        ];
        for (v, want) in cases {
            assert_eq!(humanize(v), want, "{v}");
        }
    }

    #[test]
    fn humanize1024_matches_prometheus() {
        assert_eq!(humanize1024(0.5), "0.5");
        assert_eq!(humanize1024(1024.0), "1ki");
        assert_eq!(humanize1024(1536.0), "1.5ki");
        assert_eq!(humanize1024(1073741824.0), "1Gi");
        assert_eq!(humanize1024(1000.0), "1000");
    }

    #[test]
    fn humanize_duration_matches_prometheus() {
        assert_eq!(humanize_duration(0.0), "0s");
        assert_eq!(humanize_duration(1.0), "1s");
        assert_eq!(humanize_duration(1.5), "1.5s");
        assert_eq!(humanize_duration(60.0), "1m 0s");
        assert_eq!(humanize_duration(3601.0), "1h 0m 1s");
        assert_eq!(humanize_duration(90061.0), "1d 1h 1m 1s");
        assert_eq!(humanize_duration(-65.0), "-1m 5s");
        assert_eq!(humanize_duration(0.25), "250ms");
        assert_eq!(humanize_duration(0.000001), "1us");
    }

    #[test]
    fn printf_like_go() {
        let f = |fmt: &str, args: &[Value]| sprintf(fmt, args);
        assert_eq!(f("%.2f", &[Value::Float(3.14259)]), "3.14");
        assert_eq!(f("%d%%", &[Value::Int(42)]), "42%");
        assert_eq!(f("%d", &[Value::Float(1.5)]), "%!d(float64=1.5)");
        assert_eq!(f("%s %s", &[Value::Str("a".into())]), "a %!s(MISSING)");
        assert_eq!(f("%v", &[Value::Float(0.5)]), "0.5");
        assert_eq!(f("%5.1f|", &[Value::Float(2.25)]), "  2.2|");
        assert_eq!(f("%q", &[Value::Str("x".into())]), "\"x\"");
        assert_eq!(f("%g", &[Value::Float(1e6)]), "1e+06");
        assert_eq!(f("%e", &[Value::Float(1234.5678)]), "1.234568e+03");
        assert_eq!(f("x", &[Value::Int(1)]), "x%!(EXTRA int=1)");
        assert_eq!(f("%-4s|", &[Value::Str("ab".into())]), "ab  |");
        assert_eq!(f("%05.1f", &[Value::Float(-1.25)]), "-01.2");
    }

    #[test]
    fn strings_helpers() {
        assert_eq!(title("hello world-foo_bar"), "Hello World-Foo_bar");
        assert_eq!(strip_port("host:9100"), "host");
        assert_eq!(strip_port("[::1]:9100"), "::1");
        assert_eq!(strip_domain("node1.example.com:9100"), "node1:9100");
        assert_eq!(strip_domain("10.0.0.1:9100"), "10.0.0.1:9100");
        assert_eq!(query_escape("up == 0"), "up+%3D%3D+0");
        assert_eq!(
            humanize_timestamp(&Value::Float(1.5e9)).unwrap(),
            "2017-07-14 02:40:00 +0000 UTC"
        );
    }
}
