//! Alertmanager label matchers: `name="value"`, `name!="value"`, `name=~"regex"`,
//! `name!~"regex"`, alone or as a list (`{a="b", c=~"d.*"}` or `a="b",c=~"d.*"`).
//!
//! Regexes are anchored like Alertmanager's (`^(?:regex)$`); a label that is absent
//! matches as the empty string.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use serde::{Deserialize, Serialize};

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
    fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        }
    }
}

/// A matcher could not be parsed; the message says where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad matcher {input:?}: {reason}")]
pub struct MatcherError {
    /// The text that failed.
    pub input: String,
    /// What is wrong.
    pub reason: String,
}

fn err(input: &str, reason: impl Into<String>) -> MatcherError {
    MatcherError {
        input: input.to_string(),
        reason: reason.into(),
    }
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
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Eq for Matcher {}

impl Matcher {
    /// Builds a matcher, compiling (anchored) regexes.
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Matcher, MatcherError> {
        let name = name.into();
        let value = value.into();
        let regex = match op {
            MatchOp::Re | MatchOp::NotRe => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| err(&value, format!("invalid regex: {e}")))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name,
            op,
            value,
            regex,
        })
    }

    /// An equality matcher (never fails).
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Matcher {
        Matcher {
            name: name.into(),
            op: MatchOp::Eq,
            value: value.into(),
            regex: None,
        }
    }

    /// Whether `labels` satisfy this matcher (absent label = empty string).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        self.matches_value(v)
    }

    /// Whether a label value satisfies this matcher.
    pub fn matches_value(&self, v: &str) -> bool {
        match (self.op, &self.regex) {
            (MatchOp::Eq, _) => v == self.value,
            (MatchOp::Ne, _) => v != self.value,
            (MatchOp::Re, Some(re)) => re.is_match(v),
            (MatchOp::NotRe, Some(re)) => !re.is_match(v),
            _ => false,
        }
    }

    /// `isRegex` of the silence JSON shape.
    pub fn is_regex(&self) -> bool {
        matches!(self.op, MatchOp::Re | MatchOp::NotRe)
    }

    /// `isEqual` of the silence JSON shape.
    pub fn is_equal(&self) -> bool {
        matches!(self.op, MatchOp::Eq | MatchOp::Re)
    }

    /// Parses one matcher such as `severity="critical"` or `instance=~host.*`.
    pub fn parse(input: &str) -> Result<Matcher, MatcherError> {
        let mut p = Parser::new(input);
        let m = p.matcher()?;
        p.skip_ws();
        if !p.at_end() {
            return Err(err(input, format!("unexpected text {:?}", p.rest())));
        }
        Ok(m)
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.name, self.op.as_str(), quote(&self.value))
    }
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

/// The silence API's matcher shape: `{"name","value","isRegex","isEqual"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatcherJson {
    /// Label name.
    pub name: String,
    /// Value or regex.
    pub value: String,
    /// Regex match.
    #[serde(default)]
    pub is_regex: bool,
    /// Equal (true) or negated (false).
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

impl From<&Matcher> for MatcherJson {
    fn from(m: &Matcher) -> Self {
        MatcherJson {
            name: m.name.clone(),
            value: m.value.clone(),
            is_regex: m.is_regex(),
            is_equal: m.is_equal(),
        }
    }
}

impl TryFrom<&MatcherJson> for Matcher {
    type Error = MatcherError;
    fn try_from(j: &MatcherJson) -> Result<Self, Self::Error> {
        let op = match (j.is_regex, j.is_equal) {
            (false, true) => MatchOp::Eq,
            (false, false) => MatchOp::Ne,
            (true, true) => MatchOp::Re,
            (true, false) => MatchOp::NotRe,
        };
        Matcher::new(j.name.clone(), op, j.value.clone())
    }
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
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '"');
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
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|m| m.matches(labels))
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
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn matcher(&mut self) -> Result<Matcher, MatcherError> {
        self.skip_ws();
        let start = self.pos;
        let name = if self.peek() == Some('"') {
            self.quoted()?
        } else {
            while self
                .peek()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                self.pos += 1;
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
        Matcher::new(name, op, value).map_err(|e| err(self.input, e.reason))
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

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn operators_and_anchoring() {
        let l = labels(&[("severity", "critical"), ("instance", "web-1:9100")]);
        assert!(
            Matcher::parse(r#"severity="critical""#)
                .unwrap()
                .matches(&l)
        );
        assert!(
            !Matcher::parse(r#"severity!="critical""#)
                .unwrap()
                .matches(&l)
        );
        assert!(Matcher::parse(r#"instance=~"web-.*""#).unwrap().matches(&l));
        // Anchored: a partial match is not a match.
        assert!(!Matcher::parse(r#"instance=~"web""#).unwrap().matches(&l));
        assert!(Matcher::parse(r#"instance!~"db-.*""#).unwrap().matches(&l));
        // Absent label is the empty string.
        assert!(Matcher::parse(r#"team="""#).unwrap().matches(&l));
        assert!(!Matcher::parse(r#"team!="""#).unwrap().matches(&l));
        assert!(Matcher::parse(r#"team=~"|x""#).unwrap().matches(&l));
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
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(
            Matcher::parse("=x")
                .unwrap_err()
                .reason
                .contains("label name")
        );
        assert!(
            Matcher::parse("a~x")
                .unwrap_err()
                .reason
                .contains("expected one of")
        );
        assert!(
            Matcher::parse(r#"a=~"(""#)
                .unwrap_err()
                .reason
                .contains("regex")
        );
        assert!(
            Matcher::parse(r#"a="open"#)
                .unwrap_err()
                .reason
                .contains("unterminated")
        );
        assert!(
            Matchers::parse(r#"{a="b""#)
                .unwrap_err()
                .reason
                .contains("'}'")
        );
        assert!(Matchers::parse("").is_err());
    }

    #[test]
    fn json_shape_round_trips() {
        let m = Matcher::parse(r#"job!~"x.*""#).unwrap();
        let j = MatcherJson::from(&m);
        assert!(j.is_regex && !j.is_equal);
        let back = Matcher::try_from(&j).unwrap();
        assert_eq!(back, m);
    }
}
