//! Executes parsed templates over Prometheus' alert template data, or over any data
//! given as a [`Value`] (Alertmanager's notification data, JSON).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use super::parse::{Command, Control, Node, Operand, Pipeline};
use super::{Context, TemplateData, TemplateError, funcs};
use crate::rules::gofmt;

/// Largest expansion; a template producing more is an error, not a memory problem.
const MAX_OUTPUT: usize = 1 << 20;

/// A label set as templates see it (`map[string]string`).
pub type LabelMap = BTreeMap<String, String>;

/// One element of a `query` result (`sample` in Prometheus' template package).
#[derive(Debug, Clone)]
pub struct QuerySample {
    /// The series labels.
    pub labels: Arc<LabelMap>,
    /// The value.
    pub value: f64,
}

/// Go's zero `time.Time` (`0001-01-01 00:00:00 +0000 UTC`) as a [`Value::Time`].
pub const ZERO_TIME: i64 = i64::MIN;

/// A struct: named fields; asking for any other field is an error, as in Go.
#[derive(Debug, Clone, Default)]
pub struct Object {
    /// The Go type name, for error messages (`*template.Data`).
    pub type_name: &'static str,
    /// Fields by name.
    pub fields: BTreeMap<String, Value>,
}

impl Object {
    /// An empty struct of type `type_name`.
    pub fn new(type_name: &'static str) -> Object {
        Object {
            type_name,
            fields: BTreeMap::new(),
        }
    }

    /// Adds a field.
    pub fn with(mut self, name: &str, value: Value) -> Object {
        self.fields.insert(name.to_string(), value);
        self
    }
}

/// A dynamically typed template value, mirroring the Go types Prometheus and
/// Alertmanager pass around.
#[derive(Debug, Clone)]
pub enum Value {
    /// `nil`.
    Nil,
    /// `bool`.
    Bool(bool),
    /// `int`.
    Int(i64),
    /// `float64`.
    Float(f64),
    /// `string`.
    Str(String),
    /// `map[string]string` (labels).
    Labels(Arc<LabelMap>),
    /// `map[string]interface{}` (from `args`).
    Map(Arc<BTreeMap<String, Value>>),
    /// A query result.
    Samples(Arc<Vec<QuerySample>>),
    /// One sample.
    Sample(Arc<QuerySample>),
    /// The root data (`.`).
    Data(Arc<TemplateData>),
    /// `time.Time` in Unix nanoseconds (UTC); [`ZERO_TIME`] is Go's zero time.
    Time(i64),
    /// `time.Time` in Unix nanoseconds, shown in a zone (`.Local`, `tz`).
    Zoned(i64, chrono_tz::Tz),
    /// A slice (`[]interface{}`). A list of alerts has Alertmanager's `Firing` and
    /// `Resolved` methods (elements whose `Status` is `firing` / `resolved`).
    List(Arc<Vec<Value>>),
    /// Alertmanager's `template.KV` (labels, annotations): a `map[string]string` with the
    /// methods `SortedPairs`, `Names`, `Values` and `Remove`.
    Kv(Arc<LabelMap>),
    /// A struct.
    Object(Arc<Object>),
    /// `template.HTML`: text that is never escaped (from `safeHtml` and `html`).
    Html(String),
}

impl Value {
    /// The instant of a `time.Time` value (Unix nanoseconds).
    pub fn time_ns(&self) -> Option<i64> {
        match self {
            Value::Time(ns) | Value::Zoned(ns, _) => Some(*ns),
            _ => None,
        }
    }

    /// The Go type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::Labels(_) => "map[string]string",
            Value::Map(_) => "map[string]interface {}",
            Value::Samples(_) => "template.queryResult",
            Value::Sample(_) => "*template.sample",
            Value::Data(_) => "struct",
            Value::Time(_) | Value::Zoned(..) => "time.Time",
            Value::List(_) => "[]interface {}",
            Value::Kv(_) => "template.KV",
            Value::Object(o) => o.type_name,
            Value::Html(_) => "template.HTML",
        }
    }

    /// Generic JSON: objects are `map[string]interface{}`, arrays slices, integral
    /// numbers `int`, other numbers `float64`.
    pub fn from_json(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Nil,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::Str(s.clone()),
            serde_json::Value::Array(a) => {
                Value::List(Arc::new(a.iter().map(Value::from_json).collect()))
            }
            serde_json::Value::Object(o) => Value::Map(Arc::new(
                o.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect(),
            )),
        }
    }

    /// Go's truth: false, 0, nil and empty things are false.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Labels(m) => !m.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::Samples(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Kv(m) => !m.is_empty(),
            Value::Html(s) => !s.is_empty(),
            Value::Sample(_)
            | Value::Data(_)
            | Value::Time(_)
            | Value::Zoned(..)
            | Value::Object(_) => true,
        }
    }

    /// How `{{ . }}` prints the value (Go's `fmt.Print`).
    pub fn print(&self, out: &mut String) {
        match self {
            Value::Nil => out.push_str("<no value>"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => out.push_str(&gofmt::format_value(*f)),
            Value::Str(s) => out.push_str(s),
            Value::Labels(m) => print_map(out, m.iter().map(|(k, v)| (k, Value::Str(v.clone())))),
            Value::Map(m) => print_map(out, m.iter().map(|(k, v)| (k, v.clone()))),
            Value::Samples(s) => {
                out.push('[');
                for (i, sample) in s.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    print_sample(out, sample);
                }
                out.push(']');
            }
            Value::Sample(s) => {
                out.push('&');
                print_sample(out, s);
            }
            Value::Data(d) => {
                out.push('{');
                Value::Labels(d.labels.clone()).print(out);
                out.push(' ');
                Value::Labels(d.external_labels.clone()).print(out);
                out.push(' ');
                out.push_str(&d.external_url);
                out.push(' ');
                out.push_str(&gofmt::format_value(d.value));
                out.push('}');
            }
            Value::Time(ns) => out.push_str(&go_time_string(*ns)),
            Value::Zoned(ns, tz) => out.push_str(&super::time::go_string_in(*ns, *tz)),
            Value::List(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    v.print(out);
                }
                out.push(']');
            }
            Value::Kv(m) => print_map(out, m.iter().map(|(k, v)| (k, Value::Str(v.clone())))),
            Value::Object(o) => {
                out.push('{');
                for (i, v) in o.fields.values().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    v.print(out);
                }
                out.push('}');
            }
            Value::Html(s) => out.push_str(s),
        }
    }

    /// The printed form as a string.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        self.print(&mut s);
        s
    }

    /// Field access `.name` (maps give "" for a missing key: `missingkey=zero`).
    fn field(&self, name: &str) -> Result<Value, String> {
        match self {
            Value::Labels(m) => Ok(Value::Str(m.get(name).cloned().unwrap_or_default())),
            Value::Map(m) => Ok(m.get(name).cloned().unwrap_or(Value::Nil)),
            Value::Data(d) => match name {
                "Labels" => Ok(Value::Labels(d.labels.clone())),
                "ExternalLabels" => Ok(Value::Labels(d.external_labels.clone())),
                "ExternalURL" => Ok(Value::Str(d.external_url.clone())),
                "Value" => Ok(Value::Float(d.value)),
                _ => Err(format!("can't evaluate field {name} in type struct")),
            },
            Value::Sample(s) => match name {
                "Labels" => Ok(Value::Labels(s.labels.clone())),
                "Value" => Ok(Value::Float(s.value)),
                _ => Err(format!(
                    "can't evaluate field {name} in type *template.sample"
                )),
            },
            Value::Kv(m) => Ok(match name {
                "SortedPairs" => Value::List(Arc::new(
                    m.iter()
                        .map(|(k, v)| {
                            Value::Object(Arc::new(
                                Object::new("template.Pair")
                                    .with("Name", Value::Str(k.clone()))
                                    .with("Value", Value::Str(v.clone())),
                            ))
                        })
                        .collect(),
                )),
                "Names" => Value::List(Arc::new(m.keys().map(|k| Value::Str(k.clone())).collect())),
                "Values" => Value::List(Arc::new(
                    m.values().map(|v| Value::Str(v.clone())).collect(),
                )),
                _ => Value::Str(m.get(name).cloned().unwrap_or_default()),
            }),
            Value::Object(o) => o
                .fields
                .get(name)
                .cloned()
                .ok_or_else(|| format!("can't evaluate field {name} in type {}", o.type_name)),
            Value::List(items) if name == "Firing" || name == "Resolved" => {
                let want = name.to_ascii_lowercase();
                Ok(Value::List(Arc::new(
                    items
                        .iter()
                        .filter(|a| matches!(a.field("Status"), Ok(Value::Str(s)) if s == want))
                        .cloned()
                        .collect(),
                )))
            }
            Value::Time(ns) | Value::Zoned(ns, _) if name == "UTC" => Ok(Value::Time(*ns)),
            Value::Time(ns) | Value::Zoned(ns, _) if name == "Unix" => {
                Ok(Value::Int(ns.div_euclid(1_000_000_000)))
            }
            Value::Nil => Err(format!("nil pointer evaluating interface {{}}.{name}")),
            other => Err(format!(
                "can't evaluate field {name} in type {}",
                other.type_name()
            )),
        }
    }
}

impl Value {
    /// A method call with arguments (`.CommonLabels.Remove .GroupLabels.Names`).
    fn call_method(&self, name: &str, args: &[Value]) -> Result<Value, String> {
        match (self, name) {
            (Value::Time(_) | Value::Zoned(..), "Format") => {
                let [Value::Str(layout)] = args else {
                    return Err("Format takes one layout string (\"2006-01-02 15:04\")".into());
                };
                let (ns, tz) = match self {
                    Value::Zoned(ns, tz) => (*ns, *tz),
                    other => (other.time_ns().unwrap_or_default(), chrono_tz::Tz::UTC),
                };
                Ok(Value::Str(super::time::go_format(ns, tz, layout)))
            }
            (Value::Kv(m), "Remove") => {
                let [keys] = args else {
                    return Err(format!(
                        "wrong number of args for Remove: want 1 got {}",
                        args.len()
                    ));
                };
                let keys: Vec<String> = match keys {
                    Value::List(l) => l.iter().map(Value::to_text).collect(),
                    Value::Str(s) => vec![s.clone()],
                    other => {
                        return Err(format!(
                            "wrong type for value; expected []string; got {}",
                            other.type_name()
                        ));
                    }
                };
                let mut out = (**m).clone();
                for k in keys {
                    out.remove(&k);
                }
                Ok(Value::Kv(Arc::new(out)))
            }
            _ => Err(format!(
                "{name} is not a method of {} (can't give argument to non-function)",
                self.type_name()
            )),
        }
    }
}

fn print_map<'a>(out: &mut String, entries: impl Iterator<Item = (&'a String, Value)>) {
    out.push_str("map[");
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(k);
        out.push(':');
        v.print(out);
    }
    out.push(']');
}

fn print_sample(out: &mut String, s: &QuerySample) {
    out.push('{');
    Value::Labels(s.labels.clone()).print(out);
    out.push(' ');
    out.push_str(&gofmt::format_value(s.value));
    out.push('}');
}

/// Go's `time.Time.String()` for a UTC time: `2006-01-02 15:04:05.999999999 +0000 UTC`.
pub fn go_time_string(ns: i64) -> String {
    if ns == ZERO_TIME {
        return "0001-01-01 00:00:00 +0000 UTC".into();
    }
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    let Some(t) = chrono::DateTime::from_timestamp(secs, frac as u32) else {
        return format!("{ns}ns");
    };
    let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
    if frac != 0 {
        let digits = format!("{frac:09}");
        s.push('.');
        s.push_str(digits.trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    s
}

/// Control flow out of a node list.
enum Flow {
    Normal,
    Break,
    Continue,
}

/// One execution.
pub struct Exec<'a> {
    ctx: &'a Context<'a>,
    vars: Vec<(Cow<'static, str>, Value)>,
    out: String,
}

impl<'a> Exec<'a> {
    /// An execution over `data`.
    pub fn new(ctx: &'a Context<'a>, data: Arc<TemplateData>) -> Self {
        let root = Value::Data(data.clone());
        let vars = vec![
            (Cow::Borrowed("$"), root),
            (Cow::Borrowed("$labels"), Value::Labels(data.labels.clone())),
            (
                Cow::Borrowed("$externalLabels"),
                Value::Labels(data.external_labels.clone()),
            ),
            (
                Cow::Borrowed("$externalURL"),
                Value::Str(data.external_url.clone()),
            ),
            (Cow::Borrowed("$value"), Value::Float(data.value)),
        ];
        Exec {
            ctx,
            vars,
            out: String::new(),
        }
    }

    /// An execution over any data: `.` and `$` are `root`, no other variables.
    pub fn with_root(ctx: &'a Context<'a>, root: Value) -> Self {
        Exec {
            ctx,
            vars: vec![(Cow::Borrowed("$"), root)],
            out: String::new(),
        }
    }

    /// Runs `nodes` and returns the output.
    pub fn run(mut self, nodes: &[Node]) -> Result<String, TemplateError> {
        let dot = self.vars[0].1.clone();
        self.list(nodes, &dot)?;
        Ok(self.out)
    }

    fn list(&mut self, nodes: &[Node], dot: &Value) -> Result<Flow, TemplateError> {
        for node in nodes {
            match node {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(pipe) => {
                    let v = self.pipeline(pipe, dot)?;
                    if pipe.decl.is_empty() {
                        self.emit(&v);
                    }
                }
                Node::If(c) => {
                    let scope = self.vars.len();
                    let v = self.pipeline(&c.pipe, dot)?;
                    let flow = if v.truthy() {
                        self.list(&c.body, dot)?
                    } else {
                        self.list(&c.otherwise, dot)?
                    };
                    self.vars.truncate(scope);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::With(c) => {
                    let scope = self.vars.len();
                    let v = self.pipeline(&c.pipe, dot)?;
                    let flow = if v.truthy() {
                        self.list(&c.body, &v)?
                    } else {
                        self.list(&c.otherwise, dot)?
                    };
                    self.vars.truncate(scope);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Range(c) => self.range(c, dot)?,
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
            if self.out.len() > MAX_OUTPUT {
                return Err(TemplateError::new(0, "template output exceeds 1 MiB"));
            }
        }
        Ok(Flow::Normal)
    }

    /// Prints an action's value, escaped when the context escapes (except HTML).
    fn emit(&mut self, v: &Value) {
        match self.ctx.escape {
            Some(escape) if !matches!(v, Value::Html(_)) => {
                let text = v.to_text();
                self.out.push_str(&escape(&text));
            }
            _ => v.print(&mut self.out),
        }
    }

    fn range(&mut self, c: &Control, dot: &Value) -> Result<(), TemplateError> {
        let scope = self.vars.len();
        // Evaluate without declaring; the range declares per element.
        let pipe = Pipeline {
            decl: Vec::new(),
            assign: false,
            cmds: c.pipe.cmds.clone(),
            line: c.pipe.line,
        };
        let v = self.pipeline(&pipe, dot)?;
        let items: Vec<(Value, Value)> = match &v {
            Value::Labels(m) | Value::Kv(m) => m
                .iter()
                .map(|(k, v)| (Value::Str(k.clone()), Value::Str(v.clone())))
                .collect(),
            Value::List(l) => l
                .iter()
                .enumerate()
                .map(|(i, v)| (Value::Int(i as i64), v.clone()))
                .collect(),
            Value::Map(m) => m
                .iter()
                .map(|(k, v)| (Value::Str(k.clone()), v.clone()))
                .collect(),
            Value::Samples(s) => s
                .iter()
                .enumerate()
                .map(|(i, s)| (Value::Int(i as i64), Value::Sample(Arc::new(s.clone()))))
                .collect(),
            Value::Int(n) => (0..*n).map(|i| (Value::Int(i), Value::Int(i))).collect(),
            Value::Nil => Vec::new(),
            other => {
                return Err(TemplateError::new(
                    c.pipe.line,
                    format!("range can't iterate over {}", other.to_text()),
                ));
            }
        };
        if items.is_empty() {
            self.list(&c.otherwise, dot)?;
            self.vars.truncate(scope);
            return Ok(());
        }
        for (key, elem) in items {
            match c.pipe.decl.as_slice() {
                [v] => self.set_var(v, elem.clone(), c.pipe.assign),
                [k, v] => {
                    self.set_var(k, key, c.pipe.assign);
                    self.set_var(v, elem.clone(), c.pipe.assign);
                }
                _ => {}
            }
            let flow = self.list(&c.body, &elem)?;
            if matches!(flow, Flow::Break) {
                break;
            }
        }
        self.vars.truncate(scope);
        Ok(())
    }

    fn set_var(&mut self, name: &str, value: Value, assign: bool) {
        if assign && let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
            slot.1 = value;
            return;
        }
        self.vars.push((Cow::Owned(name.to_string()), value));
    }

    fn var(&self, name: &str, line: usize) -> Result<Value, TemplateError> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| TemplateError::new(line, format!("undefined variable: {name}")))
    }

    fn pipeline(&mut self, pipe: &Pipeline, dot: &Value) -> Result<Value, TemplateError> {
        let mut value: Option<Value> = None;
        for cmd in &pipe.cmds {
            value = Some(self.command(cmd, dot, value)?);
        }
        let value = value.unwrap_or(Value::Nil);
        for name in &pipe.decl {
            self.set_var(name, value.clone(), pipe.assign);
        }
        Ok(value)
    }

    fn command(
        &mut self,
        cmd: &Command,
        dot: &Value,
        last: Option<Value>,
    ) -> Result<Value, TemplateError> {
        let line = cmd.line;
        match &cmd.args[0] {
            Operand::Func(name) => {
                let mut args = Vec::with_capacity(cmd.args.len());
                for a in &cmd.args[1..] {
                    args.push(self.operand(a, dot, line)?);
                }
                if let Some(v) = last {
                    args.push(v);
                }
                funcs::call(name, self.ctx, args)
                    .map_err(|e| TemplateError::new(line, format!("error calling {name}: {e}")))
            }
            op => {
                if cmd.args.len() == 1 && last.is_none() {
                    return self.operand(op, dot, line);
                }
                // A method with arguments: `.X.Method arg…` (the last field names it).
                let Some((receiver, method)) = self.method_receiver(op, dot, line)? else {
                    return Err(TemplateError::new(
                        line,
                        "can't give argument to non-function",
                    ));
                };
                let mut args = Vec::with_capacity(cmd.args.len());
                for a in &cmd.args[1..] {
                    args.push(self.operand(a, dot, line)?);
                }
                if let Some(v) = last {
                    args.push(v);
                }
                receiver
                    .call_method(method, &args)
                    .map_err(|e| TemplateError::new(line, e))
            }
        }
    }

    /// For `.a.b.M` (or `$x.M`, `(pipe).M`): the value of `.a.b` and `M`.
    fn method_receiver<'o>(
        &mut self,
        op: &'o Operand,
        dot: &Value,
        line: usize,
    ) -> Result<Option<(Value, &'o str)>, TemplateError> {
        let (mut v, fields) = match op {
            Operand::Field(f) => (dot.clone(), f.as_slice()),
            Operand::Variable(name, f) => (self.var(name, line)?, f.as_slice()),
            Operand::Pipe(p, f) => (self.pipeline(p, dot)?, f.as_slice()),
            _ => return Ok(None),
        };
        let Some((method, path)) = fields.split_last() else {
            return Ok(None);
        };
        for name in path {
            v = self.field(v, name, line)?;
        }
        Ok(Some((v, method.as_str())))
    }

    fn operand(&mut self, op: &Operand, dot: &Value, line: usize) -> Result<Value, TemplateError> {
        let (base, fields) = match op {
            Operand::Dot => (dot.clone(), &[][..]),
            Operand::Nil => (Value::Nil, &[][..]),
            Operand::Bool(b) => (Value::Bool(*b), &[][..]),
            Operand::Number(n) => (
                match n.int {
                    Some(i) => Value::Int(i),
                    None => Value::Float(n.float),
                },
                &[][..],
            ),
            Operand::Str(s) => (Value::Str(s.clone()), &[][..]),
            Operand::Field(f) => (dot.clone(), f.as_slice()),
            Operand::Variable(name, f) => (self.var(name, line)?, f.as_slice()),
            Operand::Func(name) => {
                let v = funcs::call(name, self.ctx, Vec::new())
                    .map_err(|e| TemplateError::new(line, format!("error calling {name}: {e}")))?;
                (v, &[][..])
            }
            Operand::Pipe(p, f) => (self.pipeline(p, dot)?, f.as_slice()),
        };
        let mut v = base;
        for name in fields {
            v = self.field(v, name, line)?;
        }
        Ok(v)
    }

    /// `.name` of `v`; `.Local` of a time is it in the context's zone.
    fn field(&self, v: Value, name: &str, line: usize) -> Result<Value, TemplateError> {
        match (v.time_ns(), name) {
            (Some(ns), "Local") => Ok(Value::Zoned(ns, self.ctx.timezone)),
            _ => v.field(name).map_err(|e| TemplateError::new(line, e)),
        }
    }
}
