//! Alertmanager label matchers: `name="value"`, `name!="value"`, `name=~"regex"`,
//! `name!~"regex"`, alone or as a list (`{a="b", c=~"d.*"}`, `a="b",c=~"d.*"` or
//! `a="b" c=~"d.*"`). One implementation for silences, inhibition rules, routes, the
//! API's filters and the bot's `/silence`.
//!
//! Regexes are anchored like Alertmanager's (`^(?:regex)$`), and a label the alert
//! does not have matches as the empty string. Values may be quoted (Go escapes) or
//! bare; label names may be quoted too (UTF-8 names).

use std::fmt;

use regex::{Regex, RegexBuilder};

use crate::alerts::model::Labels;

/// Largest compiled regex a matcher may use (bytes), against pathological patterns.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// How a matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `=~`
    Re,
    /// `!~`
    NotRe,
}

impl MatchOp {
    /// The operator's text.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        }
    }

    /// From Alertmanager's JSON flags.
    pub fn from_flags(is_regex: bool, is_equal: bool) -> MatchOp {
        match (is_regex, is_equal) {
            (false, true) => MatchOp::Eq,
            (false, false) => MatchOp::Ne,
            (true, true) => MatchOp::Re,
            (true, false) => MatchOp::NotRe,
        }
    }

    /// `isRegex`.
    pub fn is_regex(self) -> bool {
        matches!(self, MatchOp::Re | MatchOp::NotRe)
    }

    /// `isEqual`.
    pub fn is_equal(self) -> bool {
        matches!(self, MatchOp::Eq | MatchOp::Re)
    }
}

/// A matcher that could not be built or parsed; the message names the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MatcherError(pub String);

fn err(input: &str, reason: impl fmt::Display) -> MatcherError {
    MatcherError(format!("bad matcher {input:?}: {reason}"))
}

/// One label matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Operator.
    pub op: MatchOp,
    /// Value or regex source (unanchored, as written).
    pub value: String,
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Eq for Matcher {}

impl Matcher {
    /// A matcher; regexes are compiled anchored, and a bad one is an error naming it.
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Matcher, MatcherError> {
        let (name, value) = (name.into(), value.into());
        if name.is_empty() {
            return Err(MatcherError("label name must not be empty".into()));
        }
        let re = if op.is_regex() {
            Some(
                RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| {
                        MatcherError(format!(
                            "invalid regular expression {value:?} for label {name:?}: {}",
                            first_line(&e.to_string())
                        ))
                    })?,
            )
        } else {
            None
        };
        Ok(Matcher {
            name,
            op,
            value,
            re,
        })
    }

    /// An equality matcher (never fails).
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Matcher {
        Matcher {
            name: name.into(),
            op: MatchOp::Eq,
            value: value.into(),
            re: None,
        }
    }

    /// Parses one matcher such as `severity="critical"`, `instance=~host.*` or
    /// `{job!="x"}`.
    pub fn parse(text: &str) -> Result<Matcher, MatcherError> {
        let mut list = Matchers::parse(text)?.0;
        if list.len() != 1 {
            return Err(err(
                text,
                format!("expected one matcher, found {}", list.len()),
            ));
        }
        Ok(list.remove(0))
    }

    /// Whether `labels` satisfy this matcher (a missing label is the empty string).
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        let v = labels.label(&self.name).unwrap_or("");
        self.matches_value(v)
    }

    /// Whether a label value satisfies this matcher.
    pub fn matches_value(&self, v: &str) -> bool {
        match (self.op, &self.re) {
            (MatchOp::Eq, _) => v == self.value,
            (MatchOp::Ne, _) => v != self.value,
            (MatchOp::Re, Some(re)) => re.is_match(v),
            (MatchOp::NotRe, Some(re)) => !re.is_match(v),
            _ => false,
        }
    }

    /// `isRegex` of the JSON shape.
    pub fn is_regex(&self) -> bool {
        self.op.is_regex()
    }

    /// `isEqual` of the JSON shape.
    pub fn is_equal(&self) -> bool {
        self.op.is_equal()
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.name, self.op.as_str(), quote(&self.value))
    }
}

/// Whether every matcher matches (an empty list matches everything).
pub fn all_match<L: Labels + ?Sized>(matchers: &[Matcher], labels: &L) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

/// Quotes a value the way matchers and group keys print it.
pub fn quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Several matchers, all of which must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matchers(pub Vec<Matcher>);

impl Matchers {
    /// Parses each string as a matcher list and concatenates them (the config's
    /// `matchers = ["a=\"b\"", "c=~\"d\""]`).
    pub fn parse_all<S: AsRef<str>>(items: &[S]) -> Result<Matchers, MatcherError> {
        let mut out = Vec::new();
        for s in items {
            out.extend(Matchers::parse(s.as_ref())?.0);
        }
        Ok(Matchers(out))
    }

    /// Parses `{a="b", c!~"d"}` or `a="b",c!~"d"` (braces optional, commas or
    /// whitespace between).
    pub fn parse(input: &str) -> Result<Matchers, MatcherError> {
        let mut p = Parser::new(input);
        p.skip_ws();
        let braced = p.eat('{');
        let mut out = Vec::new();
        loop {
            p.skip_ws();
            if braced && p.eat('}') {
                break;
            }
            if p.at_end() {
                if braced {
                    return Err(err(input, "missing closing '}'"));
                }
                break;
            }
            out.push(p.matcher()?);
            p.skip_ws();
            if p.eat(',') {
                continue;
            }
            if braced && p.eat('}') {
                break;
            }
            // Whitespace also separates matchers (`a="b" c=~"d"`, as amtool takes them).
            let next_is_name = p
                .peek()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '"');
            if !p.at_end() && !next_is_name {
                let expected = if braced { "',' or '}'" } else { "','" };
                return Err(err(input, format!("expected {expected} at {:?}", p.rest())));
            }
        }
        p.skip_ws();
        if !p.at_end() {
            return Err(err(input, format!("unexpected text {:?}", p.rest())));
        }
        if out.is_empty() {
            return Err(err(input, "no matchers"));
        }
        Ok(Matchers(out))
    }

    /// Whether every matcher holds for `labels` (an empty list matches everything).
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        all_match(&self.0, labels)
    }

    /// Whether there are no matchers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Matchers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, m) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{m}")?;
        }
        f.write_str("}")
    }
}

/// A small hand-written scanner over matcher text.
struct Parser<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Parser { input, pos: 0 }
    }
    fn rest(&self) -> &'a str {
        &self.input[self.pos..]
    }
    fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }
    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }
    fn skip_ws(&mut self) {
        while let Some(c) = self.peek().filter(|c| c.is_whitespace()) {
            self.pos += c.len_utf8();
        }
    }

    fn matcher(&mut self) -> Result<Matcher, MatcherError> {
        self.skip_ws();
        let start = self.pos;
        let name = if self.peek() == Some('"') {
            self.quoted()?
        } else {
            while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
                self.pos += self.peek().map_or(1, char::len_utf8);
            }
            self.input[start..self.pos].to_string()
        };
        if name.is_empty() {
            return Err(err(
                self.input,
                format!("expected a label name at {:?}", self.rest()),
            ));
        }
        if name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(err(
                self.input,
                format!("label name {name:?} must not start with a digit"),
            ));
        }
        self.skip_ws();
        let op = if self.rest().starts_with("=~") {
            self.pos += 2;
            MatchOp::Re
        } else if self.rest().starts_with("!~") {
            self.pos += 2;
            MatchOp::NotRe
        } else if self.rest().starts_with("!=") {
            self.pos += 2;
            MatchOp::Ne
        } else if self.rest().starts_with('=') {
            self.pos += 1;
            MatchOp::Eq
        } else {
            return Err(err(
                self.input,
                format!("expected one of =, !=, =~, !~ after {name:?}"),
            ));
        };
        self.skip_ws();
        let value = if self.peek() == Some('"') {
            self.quoted()?
        } else {
            // Unquoted values run to the next comma, closing brace or whitespace.
            let start = self.pos;
            while self
                .peek()
                .is_some_and(|c| c != ',' && c != '}' && !c.is_whitespace())
            {
                self.pos += self.peek().map_or(1, char::len_utf8);
            }
            self.input[start..self.pos].to_string()
        };
        Matcher::new(name, op, value).map_err(|e| err(self.input, e.0))
    }

    fn quoted(&mut self) -> Result<String, MatcherError> {
        let mut out = String::new();
        self.pos += 1; // opening quote
        loop {
            let c = self
                .peek()
                .ok_or_else(|| err(self.input, "unterminated quoted string"))?;
            self.pos += c.len_utf8();
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let e = self
                        .peek()
                        .ok_or_else(|| err(self.input, "unterminated escape"))?;
                    self.pos += e.len_utf8();
                    match e {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        '"' => out.push('"'),
                        '\\' => out.push('\\'),
                        // Keep regex escapes such as `\d` intact.
                        other => {
                            out.push('\\');
                            out.push(other);
                        }
                    }
                }
                c => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::model::LabelSet;

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_operator() {
        let m = Matcher::parse(r#"severity="critical""#).unwrap();
        assert_eq!(
            (m.name.as_str(), m.op, m.value.as_str()),
            ("severity", MatchOp::Eq, "critical")
        );
        assert_eq!(Matcher::parse("a!=b").unwrap().op, MatchOp::Ne);
        assert_eq!(Matcher::parse(r#"a=~"web-.*""#).unwrap().op, MatchOp::Re);
        assert_eq!(Matcher::parse(r#"{a!~"x"}"#).unwrap().op, MatchOp::NotRe);
        assert_eq!(
            Matcher::parse(r#"a="say \"hi\"""#).unwrap().value,
            "say \"hi\""
        );
        assert_eq!(Matcher::parse(r#"a=~"\d+""#).unwrap().value, r"\d+");
        assert!(Matcher::parse("nooperator").is_err());
        assert!(Matcher::parse(r#"a="open"#).is_err());
        let e = Matcher::parse(r#"a=~"(""#).unwrap_err();
        assert!(e.0.contains("invalid regular expression"), "{e}");
    }

    #[test]
    fn regexes_are_anchored() {
        let m = Matcher::new("instance", MatchOp::Re, "web-.*").unwrap();
        assert!(m.matches(&labels(&[("instance", "web-1")])));
        assert!(!m.matches(&labels(&[("instance", "xweb-1")])));
        let m = Matcher::new("instance", MatchOp::Re, "web").unwrap();
        assert!(!m.matches(&labels(&[("instance", "web-1")])));
        let m = Matcher::new("instance", MatchOp::Re, "a|b").unwrap();
        assert!(m.matches(&labels(&[("instance", "b")])));
        assert!(!m.matches(&labels(&[("instance", "ab")])));
    }

    #[test]
    fn missing_labels_are_empty() {
        let l = labels(&[("a", "1")]);
        assert!(Matcher::new("b", MatchOp::Eq, "").unwrap().matches(&l));
        assert!(Matcher::new("b", MatchOp::Ne, "x").unwrap().matches(&l));
        assert!(Matcher::new("b", MatchOp::Re, ".*").unwrap().matches(&l));
        assert!(!Matcher::new("b", MatchOp::Re, ".+").unwrap().matches(&l));
        assert!(Matcher::new("b", MatchOp::NotRe, ".+").unwrap().matches(&l));
    }
    #[test]
    fn operators_and_anchoring() {
        let l = labels(&[("severity", "critical"), ("instance", "web-1:9100")]);
        let m = |s: &str| Matcher::parse(s).unwrap().matches(&l);
        assert!(m(r#"severity="critical""#));
        assert!(!m(r#"severity!="critical""#));
        assert!(m(r#"instance=~"web-.*""#));
        assert!(!m(r#"instance=~"web""#), "anchored");
        assert!(m(r#"instance!~"db-.*""#));
        assert!(m(r#"team="""#), "absent label is the empty string");
        assert!(!m(r#"team!="""#));
        assert!(m(r#"team=~"|x""#));
    }

    #[test]
    fn lists_quotes_and_unquoted() {
        let m = Matchers::parse(r#"{alertname="High CPU", instance=~"a\\d+",job=node}"#).unwrap();
        assert_eq!(m.0.len(), 3);
        assert_eq!(m.0[0].value, "High CPU");
        assert_eq!(m.0[1].value, r"a\d+");
        assert!(m.0[1].matches_value("a12"));
        assert_eq!(m.0[2].value, "node");
        let m = Matchers::parse(r#"a="x\"y" b!=z"#).unwrap();
        assert_eq!(m.0[0].value, "x\"y");
        assert_eq!(m.0[1].op, MatchOp::Ne);
        assert_eq!(m.to_string(), r#"{a="x\"y",b!="z"}"#);
        let m = Matchers::parse(r#""service.name"="api", région=ouest"#).unwrap();
        assert_eq!(m.0[0].name, "service.name", "quoted UTF-8 names");
        assert_eq!(m.0[1].name, "région");
        assert_eq!(Matcher::parse(r#" { job = "x" } "#).unwrap().value, "x");
        assert!(
            Matcher::parse(r#"a="b",c="d""#)
                .unwrap_err()
                .0
                .contains("expected one matcher")
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let e = |s: &str| Matchers::parse(s).unwrap_err().0;
        assert!(e("=x").contains("label name"), "{}", e("=x"));
        assert!(e("a~x").contains("expected one of"));
        assert!(e(r#"a=~"(""#).contains("invalid regular expression"));
        assert!(e(r#"a="open"#).contains("unterminated"));
        assert!(e(r#"{a="b""#).contains("'}'"));
        assert!(e("1a=b").contains("must not start with a digit"));
        assert!(e("").contains("no matchers"));
        assert!(e(r#"a="b" ; c="d""#).contains("expected"));
        assert_eq!(
            Matcher::new("", MatchOp::Eq, "x").unwrap_err().0,
            "label name must not be empty"
        );
    }
}
