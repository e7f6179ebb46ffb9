//! Rule files in Prometheus' format: YAML with positions, the typed model, and the checks
//! promtool makes (plus expression types and template function arity). Every problem is
//! reported as `file:line: message`, all of them at once.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use promql_parser::parser::Expr;
use promql_parser::parser::value::ValueType;
use saphyr::{MarkedYaml, ScalarStyle, YamlData, YamlLoader};
use saphyr_parser::Parser;

use super::duration::parse_duration;
use super::template::Template;
use crate::tsdb::{is_valid_label_name, is_valid_metric_name};

/// One problem in a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file as given (or the glob pattern for pattern errors).
    pub file: String,
    /// 1-based line; 0 when the problem is about the whole file.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        } else {
            write!(f, "{}: {}", self.file, self.message)
        }
    }
}

/// Several problems, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// A parsed, valid rule file.
#[derive(Debug, Clone)]
pub struct RuleFile {
    /// The path as given.
    pub path: String,
    /// Its groups in file order.
    pub groups: Vec<GroupDef>,
}

impl RuleFile {
    /// Number of rules in all groups.
    pub fn rule_count(&self) -> usize {
        self.groups.iter().map(|g| g.rules.len()).sum()
    }
}

/// A rule group as written.
#[derive(Debug, Clone)]
pub struct GroupDef {
    /// `name`.
    pub name: String,
    /// Line of the group.
    pub line: usize,
    /// `interval`; `None` means `rules.evaluation_interval`.
    pub interval: Option<Duration>,
    /// `query_offset`.
    pub query_offset: Duration,
    /// `limit` (0 = none).
    pub limit: usize,
    /// The rules in evaluation order.
    pub rules: Vec<Arc<RuleDef>>,
}

impl GroupDef {
    /// Same definition (ignoring positions): a reload keeps such a group running.
    pub fn same_as(&self, other: &GroupDef) -> bool {
        self.name == other.name
            && self.interval == other.interval
            && self.query_offset == other.query_offset
            && self.limit == other.limit
            && self.rules.len() == other.rules.len()
            && self
                .rules
                .iter()
                .zip(&other.rules)
                .all(|(a, b)| a.same_as(b))
    }
}

/// Alerting or recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// `alert:`.
    Alerting,
    /// `record:`.
    Recording,
}

/// One rule, validated and compiled.
#[derive(Debug, Clone)]
pub struct RuleDef {
    /// Line of the rule.
    pub line: usize,
    /// Alerting or recording.
    pub kind: RuleKind,
    /// The alert name or the recorded metric name.
    pub name: String,
    /// The expression as written.
    pub expr_source: String,
    /// The parsed expression.
    pub expr: Arc<Expr>,
    /// `for`.
    pub hold: Duration,
    /// `keep_firing_for`.
    pub keep_firing_for: Duration,
    /// `labels` (templates for alerting rules), sorted by name.
    pub labels: Vec<(String, Template)>,
    /// `annotations` (templates), sorted by name.
    pub annotations: Vec<(String, Template)>,
    /// Hysteresis: the annotation [`RESOLVE_EXPR`], parsed. Once firing, an alert stays
    /// firing while this expression returns a series matching it.
    pub resolve_expr: Option<Arc<Expr>>,
}

/// The annotation that holds a firing alert until its expression returns nothing.
pub const RESOLVE_EXPR: &str = "watchpost_resolve_expr";

impl RuleDef {
    /// Same definition, ignoring positions.
    pub fn same_as(&self, other: &RuleDef) -> bool {
        let same_templates = |a: &[(String, Template)], b: &[(String, Template)]| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((ka, ta), (kb, tb))| ka == kb && ta.source() == tb.source())
        };
        self.kind == other.kind
            && self.name == other.name
            && self.expr_source == other.expr_source
            && self.hold == other.hold
            && self.keep_firing_for == other.keep_firing_for
            && same_templates(&self.labels, &other.labels)
            && same_templates(&self.annotations, &other.annotations)
    }

    /// The labels as plain strings (what the API shows).
    pub fn label_sources(&self) -> BTreeMap<String, String> {
        self.labels
            .iter()
            .map(|(k, t)| (k.clone(), t.source().to_string()))
            .collect()
    }

    /// The annotations as plain strings.
    pub fn annotation_sources(&self) -> BTreeMap<String, String> {
        self.annotations
            .iter()
            .map(|(k, t)| (k.clone(), t.source().to_string()))
            .collect()
    }
}

/// Expands glob patterns (sorted matches, deduplicated) and loads every file. Patterns
/// matching nothing are fine, as in Prometheus.
pub fn load_globs(patterns: &[String]) -> Result<Vec<RuleFile>, Problems> {
    let mut problems = Vec::new();
    let mut paths = Vec::new();
    let mut seen = HashSet::new();
    for pattern in patterns {
        match glob::glob(pattern) {
            Ok(entries) => {
                let mut matched: Vec<String> = entries
                    .filter_map(|e| match e {
                        Ok(p) => Some(p.display().to_string()),
                        Err(e) => {
                            problems.push(Problem {
                                file: e.path().display().to_string(),
                                line: 0,
                                message: format!("cannot read: {}", e.error()),
                            });
                            None
                        }
                    })
                    .collect();
                matched.sort();
                for p in matched {
                    if seen.insert(p.clone()) {
                        paths.push(p);
                    }
                }
            }
            Err(e) => problems.push(Problem {
                file: pattern.clone(),
                line: 0,
                message: format!("invalid glob pattern in rules.files: {e}"),
            }),
        }
    }
    let mut files = Vec::new();
    for path in paths {
        match load_file(Path::new(&path)) {
            Ok(f) => files.push(f),
            Err(p) => problems.extend(p.0),
        }
    }
    if problems.is_empty() {
        Ok(files)
    } else {
        Err(Problems(problems))
    }
}

/// Reads and checks one rule file.
pub fn load_file(path: &Path) -> Result<RuleFile, Problems> {
    let name = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|e| {
        Problems(vec![Problem {
            file: name.clone(),
            line: 0,
            message: format!("cannot read: {e}"),
        }])
    })?;
    parse_rule_file(&name, &source)
}

/// Parses and checks rule file text; `name` is used in problems.
pub fn parse_rule_file(name: &str, source: &str) -> Result<RuleFile, Problems> {
    let mut cx = Checker {
        file: name,
        problems: Vec::new(),
    };
    let doc = match load_yaml(source) {
        Ok(doc) => doc,
        Err((line, message)) => {
            return Err(Problems(vec![Problem {
                file: name.to_string(),
                line,
                message,
            }]));
        }
    };
    let groups = match doc {
        Some(doc) => cx.file(&doc),
        None => Vec::new(),
    };
    if cx.problems.is_empty() {
        Ok(RuleFile {
            path: name.to_string(),
            groups,
        })
    } else {
        Err(Problems(cx.problems))
    }
}

/// The first YAML document with raw scalars, or `None` for an empty file.
fn load_yaml(source: &str) -> Result<Option<MarkedYaml<'_>>, (usize, String)> {
    let mut parser = Parser::new_from_str(source);
    let mut loader: YamlLoader<'_, MarkedYaml<'_>> = YamlLoader::default();
    loader.early_parse(false);
    let yaml_err = |e: &saphyr::ScanError| (e.marker().line(), format!("yaml: {}", e.info()));
    parser.load(&mut loader, true).map_err(|e| yaml_err(&e))?;
    if let Some(e) = loader.error() {
        return Err(yaml_err(e));
    }
    let doc = loader.into_documents().into_iter().next();
    Ok(doc.filter(|d| !is_null(d)))
}

fn line_of(node: &MarkedYaml<'_>) -> usize {
    node.span.start.line()
}

fn untag<'a, 'b>(node: &'a MarkedYaml<'b>) -> &'a MarkedYaml<'b> {
    match &node.data {
        YamlData::Tagged(_, inner) => untag(inner),
        _ => node,
    }
}

/// A scalar's raw text and style.
fn scalar<'a>(node: &'a MarkedYaml<'_>) -> Option<(&'a str, ScalarStyle)> {
    match &untag(node).data {
        YamlData::Representation(v, style, _) => Some((v.as_ref(), *style)),
        _ => None,
    }
}

fn is_null(node: &MarkedYaml<'_>) -> bool {
    matches!(
        scalar(node),
        Some(("" | "~" | "null" | "Null" | "NULL", ScalarStyle::Plain))
    )
}

fn kind_name(node: &MarkedYaml<'_>) -> &'static str {
    match &untag(node).data {
        YamlData::Sequence(_) => "a list",
        YamlData::Mapping(_) => "a mapping",
        YamlData::Representation(..) | YamlData::Value(_) => "a scalar",
        _ => "an invalid value",
    }
}

/// Collects problems while walking the document.
struct Checker<'f> {
    file: &'f str,
    problems: Vec<Problem>,
}

/// Where a rule is, for message prefixes.
struct RuleAt<'a> {
    group: &'a str,
    index: usize,
    name: String,
}

impl fmt::Display for RuleAt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "group {:?}, rule {}, {:?}",
            self.group, self.index, self.name
        )
    }
}

impl Checker<'_> {
    fn problem(&mut self, line: usize, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_string(),
            line,
            message: message.into(),
        });
    }

    /// The entries of a mapping with string keys; problems for anything else.
    fn mapping<'a, 'b>(
        &mut self,
        node: &'a MarkedYaml<'b>,
        what: &str,
    ) -> Vec<(&'a str, &'a MarkedYaml<'b>, usize)> {
        match &untag(node).data {
            YamlData::Mapping(map) => {
                let mut out = Vec::new();
                for (k, v) in map.iter() {
                    match scalar(k) {
                        Some((key, _)) => out.push((key, v, line_of(k))),
                        None => self.problem(line_of(k), format!("{what}: keys must be strings")),
                    }
                }
                out
            }
            _ if is_null(node) => Vec::new(),
            _ => {
                self.problem(
                    line_of(node),
                    format!("{what} must be a mapping, not {}", kind_name(node)),
                );
                Vec::new()
            }
        }
    }

    fn string(&mut self, node: &MarkedYaml<'_>, what: &str) -> Option<String> {
        if is_null(node) {
            return Some(String::new());
        }
        match scalar(node) {
            Some((v, _)) => Some(v.to_string()),
            None => {
                self.problem(
                    line_of(node),
                    format!("{what} must be a string, not {}", kind_name(node)),
                );
                None
            }
        }
    }

    fn duration(&mut self, node: &MarkedYaml<'_>, what: &str) -> Option<Duration> {
        let s = self.string(node, what)?;
        if s.is_empty() {
            return Some(Duration::ZERO);
        }
        match parse_duration(&s) {
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(line_of(node), format!("{what}: {e}"));
                None
            }
        }
    }

    fn file(&mut self, doc: &MarkedYaml<'_>) -> Vec<GroupDef> {
        let mut groups_node = None;
        for (key, value, line) in self.mapping(doc, "rule file") {
            match key {
                "groups" => groups_node = Some(value),
                other => self.problem(
                    line,
                    format!("unknown field {other:?} at the top level (expected groups)"),
                ),
            }
        }
        let Some(groups_node) = groups_node else {
            return Vec::new();
        };
        let items = match &untag(groups_node).data {
            YamlData::Sequence(items) => items.iter().collect::<Vec<_>>(),
            _ if is_null(groups_node) => Vec::new(),
            _ => {
                self.problem(
                    line_of(groups_node),
                    format!("groups must be a list, not {}", kind_name(groups_node)),
                );
                return Vec::new();
            }
        };
        let mut names = HashSet::new();
        let mut groups = Vec::new();
        for item in items {
            if let Some(g) = self.group(item, &mut names) {
                groups.push(g);
            }
        }
        groups
    }

    fn group(&mut self, node: &MarkedYaml<'_>, names: &mut HashSet<String>) -> Option<GroupDef> {
        let line = line_of(node);
        let before = self.problems.len();
        let mut name = None;
        let mut name_line = line;
        let mut interval = None;
        let mut query_offset = Duration::ZERO;
        let mut limit = 0usize;
        let mut rules_node = None;
        for (key, value, key_line) in self.mapping(node, "group") {
            match key {
                "name" => {
                    name = self.string(value, "name");
                    name_line = key_line;
                }
                "interval" => {
                    interval = self.duration(value, "interval").filter(|d| !d.is_zero());
                }
                "query_offset" => {
                    query_offset = self.duration(value, "query_offset").unwrap_or_default();
                }
                "limit" => match self.string(value, "limit").map(|s| s.parse::<usize>()) {
                    Some(Ok(n)) => limit = n,
                    Some(Err(_)) => self.problem(
                        key_line,
                        "limit must be a non-negative integer".to_string(),
                    ),
                    None => {}
                },
                "rules" => rules_node = Some(value),
                other => self.problem(
                    key_line,
                    format!(
                        "unknown field {other:?} in group (expected name, interval, limit, query_offset, rules)"
                    ),
                ),
            }
        }
        let name = name.unwrap_or_default();
        if name.is_empty() {
            self.problem(line, "Groupname must not be empty");
        } else if !names.insert(name.clone()) {
            self.problem(
                name_line,
                format!("groupname: {name:?} is repeated in the same file"),
            );
        }
        let mut rules = Vec::new();
        if let Some(rules_node) = rules_node {
            match &untag(rules_node).data {
                YamlData::Sequence(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(r) = self.rule(item, &name, i + 1) {
                            rules.push(Arc::new(r));
                        }
                    }
                }
                _ if is_null(rules_node) => {}
                _ => self.problem(
                    line_of(rules_node),
                    format!("rules must be a list, not {}", kind_name(rules_node)),
                ),
            }
        }
        if self.problems.len() > before {
            return None;
        }
        Some(GroupDef {
            name,
            line,
            interval,
            query_offset,
            limit,
            rules,
        })
    }

    fn rule(&mut self, node: &MarkedYaml<'_>, group: &str, index: usize) -> Option<RuleDef> {
        let line = line_of(node);
        let before = self.problems.len();
        let mut alert: Option<(String, usize)> = None;
        let mut record: Option<(String, usize)> = None;
        let mut expr: Option<(String, &MarkedYaml<'_>)> = None;
        let mut hold = (Duration::ZERO, line);
        let mut keep = (Duration::ZERO, line);
        let mut labels: Vec<(String, &MarkedYaml<'_>, usize)> = Vec::new();
        let mut annotations: Vec<(String, &MarkedYaml<'_>, usize)> = Vec::new();
        let mut has_annotations = false;
        for (key, value, key_line) in self.mapping(node, "rule") {
            match key {
                "alert" => alert = self.string(value, "alert").map(|s| (s, key_line)),
                "record" => record = self.string(value, "record").map(|s| (s, key_line)),
                "expr" => expr = self.string(value, "expr").map(|s| (s, value)),
                "for" => hold = (self.duration(value, "for").unwrap_or_default(), key_line),
                "keep_firing_for" => {
                    keep = (
                        self.duration(value, "keep_firing_for").unwrap_or_default(),
                        key_line,
                    )
                }
                "labels" => {
                    for (k, v, l) in self.mapping(value, "labels") {
                        labels.push((k.to_string(), v, l));
                    }
                }
                "annotations" => {
                    has_annotations = !is_null(value);
                    for (k, v, l) in self.mapping(value, "annotations") {
                        annotations.push((k.to_string(), v, l));
                    }
                }
                other => self.problem(
                    key_line,
                    format!(
                        "unknown field {other:?} in rule (expected alert or record, expr, for, keep_firing_for, labels, annotations)"
                    ),
                ),
            }
        }
        let alert = alert.filter(|(s, _)| !s.is_empty());
        let record = record.filter(|(s, _)| !s.is_empty());
        let at = RuleAt {
            group,
            index,
            name: alert
                .as_ref()
                .or(record.as_ref())
                .map(|(s, _)| s.clone())
                .unwrap_or_default(),
        };
        let kind = match (&alert, &record) {
            (Some(_), Some((_, l))) => {
                self.problem(
                    *l,
                    format!("{at}: only one of 'record' and 'alert' must be set"),
                );
                RuleKind::Alerting
            }
            (None, None) => {
                self.problem(
                    line,
                    format!("{at}: one of 'record' or 'alert' must be set"),
                );
                RuleKind::Alerting
            }
            (Some(_), None) => RuleKind::Alerting,
            (None, Some(_)) => RuleKind::Recording,
        };
        let parsed = self.expr(&at, line, expr, "");
        if let (RuleKind::Recording, Some((name, l))) = (kind, &record) {
            if has_annotations {
                self.problem(
                    *l,
                    format!("{at}: invalid field 'annotations' in recording rule"),
                );
            }
            if !hold.0.is_zero() {
                self.problem(
                    hold.1,
                    format!("{at}: invalid field 'for' in recording rule"),
                );
            }
            if !keep.0.is_zero() {
                self.problem(
                    keep.1,
                    format!("{at}: invalid field 'keep_firing_for' in recording rule"),
                );
            }
            if !is_valid_metric_name(name) {
                self.problem(*l, format!("{at}: invalid recording rule name: {name}"));
            }
            if name.contains(['{', '}']) {
                self.problem(
                    *l,
                    format!(
                        "{at}: braces present in the recording rule name; should it be in expr?: {name}"
                    ),
                );
            }
        }
        let resolve_expr = self.resolve_expr(&at, kind, &annotations);
        let templated = kind == RuleKind::Alerting;
        let labels = self.templates(&at, labels, "label", templated);
        let annotations = self.templates(&at, annotations, "annotation", true);
        if self.problems.len() > before {
            return None;
        }
        Some(RuleDef {
            line,
            kind,
            name: at.name,
            expr_source: parsed.as_ref().map(|(s, _)| s.clone())?,
            expr: parsed.map(|(_, e)| e)?,
            hold: hold.0,
            keep_firing_for: keep.0,
            labels,
            annotations,
            resolve_expr,
        })
    }

    /// The [`RESOLVE_EXPR`] annotation of an alerting rule, checked like `expr`.
    fn resolve_expr(
        &mut self,
        at: &RuleAt<'_>,
        kind: RuleKind,
        annotations: &[(String, &MarkedYaml<'_>, usize)],
    ) -> Option<Arc<Expr>> {
        let (_, node, line) = annotations.iter().find(|(k, _, _)| k == RESOLVE_EXPR)?;
        if kind != RuleKind::Alerting {
            return None;
        }
        let source = self.string(node, RESOLVE_EXPR)?;
        if source.trim().is_empty() {
            self.problem(*line, format!("{at}: annotation {RESOLVE_EXPR} is empty"));
            return None;
        }
        let what = format!("annotation {RESOLVE_EXPR}: ");
        let (_, expr) = self.expr(at, *line, Some((source, node)), &what)?;
        if expr.value_type() != ValueType::Vector {
            self.problem(
                *line,
                format!("{at}: {what}expression must evaluate to an instant vector"),
            );
            return None;
        }
        Some(expr)
    }

    fn expr(
        &mut self,
        at: &RuleAt<'_>,
        rule_line: usize,
        expr: Option<(String, &MarkedYaml<'_>)>,
        what: &str,
    ) -> Option<(String, Arc<Expr>)> {
        let Some((source, node)) = expr.filter(|(s, _)| !s.trim().is_empty()) else {
            self.problem(
                rule_line,
                format!("{at}: {what}field 'expr' must be set in rule"),
            );
            return None;
        };
        let line = line_of(node);
        match crate::promql::parse(&source) {
            Ok(e) => match e.value_type() {
                ValueType::Vector | ValueType::Scalar => {
                    if let Err(unsupported) = crate::promql::check_supported(&e) {
                        self.problem(line, format!("{at}: {what}{unsupported}"));
                        return None;
                    }
                    Some((source, Arc::new(e)))
                }
                other => {
                    let kind = match other {
                        ValueType::Matrix => "range vector",
                        _ => "string",
                    };
                    self.problem(
                        line,
                        format!(
                            "{at}: {what}expression must evaluate to an instant vector or scalar, not a {kind}"
                        ),
                    );
                    None
                }
            },
            Err(e) => {
                self.problem(line, format!("{at}: {what}could not parse expression: {e}"));
                None
            }
        }
    }

    /// Checks names and parses templates (only alerting rules template their labels).
    fn templates(
        &mut self,
        at: &RuleAt<'_>,
        entries: Vec<(String, &MarkedYaml<'_>, usize)>,
        what: &str,
        templated: bool,
    ) -> Vec<(String, Template)> {
        let mut out = Vec::new();
        for (name, node, key_line) in entries {
            let valid = is_valid_label_name(&name) && !(what == "label" && name == "__name__");
            if !valid {
                self.problem(key_line, format!("{at}: invalid {what} name: {name}"));
                continue;
            }
            let Some(text) = self.string(node, &format!("{what} {name:?}")) else {
                continue;
            };
            let parsed = if templated {
                Template::parse(&text)
            } else {
                Ok(Template::literal(&text))
            };
            match parsed {
                Ok(t) => out.push((name, t)),
                Err(e) => {
                    // Block scalars are positioned at their first content line.
                    let line = line_of(node) + e.line.saturating_sub(1);
                    self.problem(
                        line,
                        format!("{at}: {what} {name:?}: template: {}", e.message),
                    );
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(src: &str) -> Vec<String> {
        match parse_rule_file("r.yml", src) {
            Ok(_) => Vec::new(),
            Err(p) => p.0.iter().map(|p| p.to_string()).collect(),
        }
    }

    const GOOD: &str = r#"
groups:
  - name: host
    interval: 30s
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
        labels:
          team: infra
      - alert: HighCPU
        expr: system_cpu_usage_ratio > 0.9
        for: 5m
        keep_firing_for: 1m
        labels:
          severity: critical
        annotations:
          summary: "CPU at {{ $value | humanizePercentage }}"
          description: |
            Instance {{ $labels.instance }}
            is busy.
"#;

    #[test]
    fn parses_a_good_file() {
        let f = parse_rule_file("r.yml", GOOD).unwrap();
        assert_eq!(f.groups.len(), 1);
        let g = &f.groups[0];
        assert_eq!(g.name, "host");
        assert_eq!(g.interval, Some(Duration::from_secs(30)));
        assert_eq!(g.rules.len(), 2);
        assert_eq!(g.rules[0].kind, RuleKind::Recording);
        assert_eq!(g.rules[0].line, 6);
        let a = &g.rules[1];
        assert_eq!(a.kind, RuleKind::Alerting);
        assert_eq!(a.name, "HighCPU");
        assert_eq!(a.line, 10);
        assert_eq!(a.hold, Duration::from_secs(300));
        assert_eq!(a.keep_firing_for, Duration::from_secs(60));
        assert_eq!(a.annotations.len(), 2);
        assert_eq!(f.rule_count(), 2);
    }

    #[test]
    fn rule_expressions_speak_prometheus_2_42() {
        let rule = |expr: &str| {
            format!("groups:\n  - name: g\n    rules:\n      - record: r\n        expr: {expr}\n")
        };
        assert!(parse_rule_file("r.yml", &rule("holt_winters(cpu[10m], 0.5, 0.5)")).is_ok());
        let err = parse_rule_file(
            "r.yml",
            &rule("double_exponential_smoothing(cpu[10m], 0.5, 0.5)"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("double_exponential_smoothing"), "{err}");
    }

    #[test]
    fn empty_files_are_fine() {
        assert!(parse_rule_file("e.yml", "").unwrap().groups.is_empty());
        assert!(
            parse_rule_file("e.yml", "groups: []\n")
                .unwrap()
                .groups
                .is_empty()
        );
    }

    #[test]
    fn resolve_expr_is_parsed_and_checked() {
        let ok = "groups:\n  - name: g\n    rules:\n      - alert: Hot\n        expr: cpu > 90\n        annotations:\n          watchpost_resolve_expr: cpu >= 80\n";
        let f = parse_rule_file("r.yml", ok).unwrap();
        let r = &f.groups[0].rules[0];
        assert_eq!(r.resolve_expr.as_ref().unwrap().to_string(), "cpu >= 80");
        assert!(r.annotations.iter().any(|(k, _)| k == RESOLVE_EXPR));
        let bad = ok.replace("cpu >= 80", "cpu >=");
        let p = problems(&bad);
        assert!(
            p.iter().any(|m| m.starts_with("r.yml:7: ")
                && m.contains("annotation watchpost_resolve_expr: could not parse expression")),
            "{p:?}"
        );
        let range = ok.replace("cpu >= 80", "cpu[5m]");
        let p = problems(&range);
        assert!(p.iter().any(|m| m.contains("range vector")), "{p:?}");
        let scalar = ok.replace("cpu >= 80", "1");
        let p = problems(&scalar);
        assert!(p.iter().any(|m| m.contains("instant vector")), "{p:?}");
        let empty = ok.replace("cpu >= 80", "\"\"");
        assert!(problems(&empty).iter().any(|m| m.contains("is empty")));
    }

    #[test]
    fn problems_carry_the_line() {
        let src = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up ==\n      - record: bad name\n        expr: up\n        for: 1m\n";
        let p = problems(src);
        assert!(
            p.contains(&"r.yml:5: group \"g\", rule 1, \"A\": could not parse expression: unexpected end of input".to_string())
                || p.iter().any(|m| m.starts_with("r.yml:5: group \"g\", rule 1, \"A\": could not parse expression")),
            "{p:?}"
        );
        assert!(p.iter().any(|m| m == "r.yml:6: group \"g\", rule 2, \"bad name\": invalid recording rule name: bad name"), "{p:?}");
        assert!(p.iter().any(|m| m == "r.yml:8: group \"g\", rule 2, \"bad name\": invalid field 'for' in recording rule"), "{p:?}");
    }

    #[test]
    fn template_problems_point_into_block_scalars() {
        let src = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n    annotations:\n      description: |\n        first line\n        {{ $value | humanise }}\n";
        let p = problems(src);
        assert_eq!(
            p,
            vec![
                "r.yml:9: group \"g\", rule 1, \"A\": annotation \"description\": template: function \"humanise\" not defined"
            ]
        );
    }

    #[test]
    fn structural_problems() {
        let p = problems("groups:\n- name: g\n  rules: []\n- name: g\n  rulez: []\n");
        assert!(
            p.iter()
                .any(|m| m.starts_with("r.yml:4: groupname: \"g\" is repeated")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("r.yml:5: unknown field \"rulez\"")),
            "{p:?}"
        );
        let p = problems(
            "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up[5m]\n    labels:\n      bad-name: x\n",
        );
        assert!(
            p.iter()
                .any(|m| m.contains("r.yml:5:") && m.contains("range vector")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("r.yml:7:") && m.contains("invalid label name: bad-name")),
            "{p:?}"
        );
        let p = problems("groups:\n- name: g\n  rules:\n  - expr: up\n");
        assert!(
            p.iter()
                .any(|m| m.starts_with("r.yml:4:") && m.contains("one of 'record' or 'alert'")),
            "{p:?}"
        );
        let p = problems("groups:\n  - name: [\n");
        assert!(p[0].starts_with("r.yml:"), "{p:?}");
        assert!(p[0].contains("yaml:"), "{p:?}");
        let p = problems("groups:\n- name: a\n  name: b\n");
        assert!(p[0].contains("duplicated key"), "{p:?}");
        let p = problems("groups:\n- name: g\n  interval: 5 minutes\n");
        assert!(
            p[0].starts_with("r.yml:3: interval: not a valid duration"),
            "{p:?}"
        );
    }

    #[test]
    fn sameness_ignores_positions() {
        let a = parse_rule_file("r.yml", GOOD).unwrap();
        let b = parse_rule_file("r.yml", &format!("# comment\n{GOOD}")).unwrap();
        assert!(a.groups[0].same_as(&b.groups[0]));
        let c = parse_rule_file("r.yml", &GOOD.replace("for: 5m", "for: 6m")).unwrap();
        assert!(!a.groups[0].same_as(&c.groups[0]));
    }
}
