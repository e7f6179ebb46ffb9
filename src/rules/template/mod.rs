//! Prometheus rule templates: the subset of Go's `text/template` that rule files use,
//! with Prometheus' variables (`$labels`, `$value`, `$externalLabels`, `$externalURL`)
//! and functions (`humanize*`, `printf`, `title`, `toUpper`, `query`, …).
//!
//! Templates are parsed once when rules load (unknown functions and undefined variables
//! are errors then, as in Go) and executed per alert; execution errors are returned,
//! never panics.

mod exec;
mod funcs;
mod lex;
mod parse;
pub mod time;

use std::sync::Arc;

pub use exec::{LabelMap, Object, QuerySample, Value, ZERO_TIME};
pub use funcs::{graph_link, humanize, humanize_duration, humanize1024, query_escape};

/// A template problem, with the 1-based line inside the template text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct TemplateError {
    /// 1-based line within the template (0 when not known).
    pub line: usize,
    /// What is wrong, in Go's words where Go has them.
    pub message: String,
}

impl TemplateError {
    /// An error at `line`.
    pub fn new(line: usize, message: impl Into<String>) -> Self {
        Self {
            line,
            message: message.into(),
        }
    }
}

/// The data of one expansion: Prometheus' `AlertTemplateData`.
#[derive(Debug, Clone, Default)]
pub struct TemplateData {
    /// The alert's labels (`$labels`, `.Labels`).
    pub labels: Arc<LabelMap>,
    /// `rules.external_labels` (`$externalLabels`).
    pub external_labels: Arc<LabelMap>,
    /// `external_url` (`$externalURL`).
    pub external_url: String,
    /// The sample value (`$value`, `.Value`).
    pub value: f64,
}

/// A PromQL query from a template (`query "…"`), evaluated at the rule's timestamp.
pub type QueryFn<'a> = &'a dyn Fn(&str) -> Result<Vec<QuerySample>, String>;

/// What functions can reach while a template runs.
#[derive(Default, Clone, Copy)]
pub struct Context<'a> {
    /// The zone of `.Local` (`notify.timezone`); UTC by default.
    pub timezone: chrono_tz::Tz,
    /// `external_url`, for `externalURL` and `pathPrefix`.
    pub external_url: &'a str,
    /// The `query` function; `None` makes `query` an error.
    pub query: Option<QueryFn<'a>>,
    /// Escapes what actions print (not literal text, not `safeHtml`/`html` values), as
    /// Go's `html/template` does for notification templates; `None` prints as is.
    pub escape: Option<fn(&str) -> String>,
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
    nodes: Vec<parse::Node>,
    /// Plain text without actions: expansion is a copy.
    literal: bool,
}

impl Template {
    /// Parses `source` (a rule template: `$labels`, `$value`, … are defined).
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        Self::parse_with_vars(source, parse::PREDEFINED)
    }

    /// Parses `source` with only `predefined` variables defined (e.g. `["$"]` for
    /// templates over other data, see [`Template::execute_value`]).
    pub fn parse_with_vars(source: &str, predefined: &[&str]) -> Result<Template, TemplateError> {
        let pieces = lex::lex(source)?;
        let literal = pieces.iter().all(|p| matches!(p, lex::Piece::Text(_)));
        let nodes = parse::parse_with(pieces, predefined)?;
        Ok(Template {
            source: source.to_string(),
            nodes,
            literal,
        })
    }

    /// A template that is taken literally (recording rule labels are not templates).
    pub fn literal(text: &str) -> Template {
        Template {
            source: text.to_string(),
            nodes: vec![parse::Node::Text(text.to_string())],
            literal: true,
        }
    }

    /// Whether expanding is a plain copy of the source.
    pub fn is_literal(&self) -> bool {
        self.literal
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Expands the template over `data`.
    pub fn execute(
        &self,
        ctx: &Context<'_>,
        data: Arc<TemplateData>,
    ) -> Result<String, TemplateError> {
        if self.literal {
            return Ok(self.source.clone());
        }
        exec::Exec::new(ctx, data).run(&self.nodes)
    }

    /// Expands the template over any data: `.` and `$` are `root`.
    pub fn execute_value(&self, ctx: &Context<'_>, root: Value) -> Result<String, TemplateError> {
        if self.literal {
            return Ok(self.source.clone());
        }
        exec::Exec::with_root(ctx, root).run(&self.nodes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(value: f64) -> Arc<TemplateData> {
        let mut labels = LabelMap::new();
        labels.insert("instance".into(), "node-1:9100".into());
        labels.insert("job".into(), "node".into());
        let mut ext = LabelMap::new();
        ext.insert("cluster".into(), "eu1".into());
        Arc::new(TemplateData {
            labels: Arc::new(labels),
            external_labels: Arc::new(ext),
            external_url: "http://wp:8080/prefix".into(),
            value,
        })
    }

    fn render(src: &str, value: f64) -> String {
        Template::parse(src)
            .unwrap()
            .execute(
                &Context {
                    external_url: "http://wp:8080/prefix",
                    query: None,
                    escape: None,
                    ..Context::default()
                },
                data(value),
            )
            .unwrap()
    }

    #[test]
    fn variables_and_fields() {
        assert_eq!(render("{{ $value }}", 0.95), "0.95");
        assert_eq!(render("{{ .Value }}", 1234567.0), "1.234567e+06");
        assert_eq!(render("{{ $labels.instance }}", 0.0), "node-1:9100");
        assert_eq!(
            render("{{ .Labels.job }}/{{ $labels.missing }}.", 0.0),
            "node/."
        );
        assert_eq!(render("{{ $externalLabels.cluster }}", 0.0), "eu1");
        assert_eq!(render("{{ $externalURL }}", 0.0), "http://wp:8080/prefix");
        assert_eq!(render("{{ pathPrefix }}", 0.0), "/prefix");
    }

    #[test]
    fn pipes_and_functions() {
        assert_eq!(render("{{ $value | humanize }}", 1234.0), "1.234k");
        assert_eq!(render("{{ humanize1024 $value }}B", 2048.0), "2kiB");
        assert_eq!(
            render("{{ $value | humanizePercentage }}", 0.8765),
            "87.65%"
        );
        assert_eq!(render("{{ humanizeDuration $value }}", 3700.0), "1h 1m 40s");
        assert_eq!(render(r#"{{ printf "%.2f" $value }}"#, 2.0 / 3.0), "0.67");
        assert_eq!(render("{{ $labels.job | toUpper }}", 0.0), "NODE");
        assert_eq!(render("{{ \"hello world\" | title }}", 0.0), "Hello World");
        assert_eq!(render("{{ $labels.instance | stripPort }}", 0.0), "node-1");
        assert_eq!(
            render("{{ $labels.instance | reReplaceAll \":.*\" \"\" }}", 0.0),
            "node-1"
        );
        assert_eq!(
            render("{{ printf \"%s=%v\" \"x\" (humanize 2000) }}", 0.0),
            "x=2k"
        );
    }

    #[test]
    fn conditions_and_range() {
        let t =
            "{{ if gt $value 0.9 }}critical{{ else if gt $value 0.5 }}warning{{ else }}ok{{ end }}";
        assert_eq!(render(t, 0.95), "critical");
        assert_eq!(render(t, 0.6), "warning");
        assert_eq!(render(t, 0.1), "ok");
        assert_eq!(
            render("{{ if eq $labels.job \"node\" }}yes{{ end }}", 0.0),
            "yes"
        );
        assert_eq!(
            render(
                "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
                0.0
            ),
            "instance=node-1:9100;job=node;"
        );
        assert_eq!(
            render("{{ with $labels.job }}job {{ . }}{{ end }}", 0.0),
            "job node"
        );
        assert_eq!(
            render("{{ $x := humanize $value }}v={{ $x }}", 5000.0),
            "v=5k"
        );
        assert_eq!(render("a  {{- \" b \" -}}  c", 0.0), "a b c");
        assert_eq!(
            render(
                "{{ if and (gt $value 1.0) (lt $value 10.0) }}in{{ end }}",
                5.0
            ),
            "in"
        );
    }

    #[test]
    fn execution_errors_are_errors() {
        let t = Template::parse("x\n{{ $labels.job | humanize }}").unwrap();
        let e = t.execute(&Context::default(), data(1.0)).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            e.message.contains("error calling humanize"),
            "{}",
            e.message
        );
        let t = Template::parse("{{ query \"up\" | first | value }}").unwrap();
        let e = t.execute(&Context::default(), data(1.0)).unwrap_err();
        assert!(e.message.contains("query"), "{}", e.message);
    }

    #[test]
    fn query_function() {
        let q = |expr: &str| -> Result<Vec<QuerySample>, String> {
            assert_eq!(expr, "up");
            let mut l = LabelMap::new();
            l.insert("instance".into(), "a".into());
            Ok(vec![QuerySample {
                labels: Arc::new(l),
                value: 2048.0,
            }])
        };
        let ctx = Context {
            external_url: "",
            query: Some(&q),
            ..Context::default()
        };
        let t = Template::parse(r#"{{ with query "up" }}{{ . | first | value | humanize1024 }} on {{ . | first | label "instance" }}{{ end }}"#).unwrap();
        assert_eq!(t.execute(&ctx, data(0.0)).unwrap(), "2ki on a");
    }
}
