//! Alertmanager label matchers: `name="value"`, `name!="value"`, `name=~"regex"`,
//! `name!~"regex"`.
//!
//! Regexes are anchored like Alertmanager's (`^(?:regex)$`), and a label the alert
//! does not have matches as the empty string.

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

/// A matcher that could not be built; the message names the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MatcherError(pub String);

/// One label matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Operator.
    pub op: MatchOp,
    /// Value or regex source.
    pub value: String,
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Matcher {
    /// A matcher; regexes are compiled anchored, and a bad one is an error naming it.
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Matcher, MatcherError> {
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
            name: name.to_string(),
            op,
            value: value.to_string(),
            re,
        })
    }

    /// Parses `name="value"` (also with `!=`, `=~`, `!~`; quotes optional).
    pub fn parse(text: &str) -> Result<Matcher, MatcherError> {
        let t = text.trim();
        let t = t
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .unwrap_or(t)
            .trim();
        let name_end = t.find(['=', '!', '~']).ok_or_else(|| {
            MatcherError(format!(
                "{text:?} is not a matcher like name=\"value\" (operators: = != =~ !~)"
            ))
        })?;
        let name = t[..name_end].trim();
        let rest = &t[name_end..];
        let (op, rest) = if let Some(r) = rest.strip_prefix("=~") {
            (MatchOp::Re, r)
        } else if let Some(r) = rest.strip_prefix("!~") {
            (MatchOp::NotRe, r)
        } else if let Some(r) = rest.strip_prefix("!=") {
            (MatchOp::Ne, r)
        } else if let Some(r) = rest.strip_prefix('=') {
            (MatchOp::Eq, r)
        } else {
            return Err(MatcherError(format!(
                "{text:?}: unknown operator; use = != =~ or !~"
            )));
        };
        if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return Err(MatcherError(format!(
                "{text:?}: invalid label name {name:?}"
            )));
        }
        let value = unquote(rest.trim()).map_err(|e| MatcherError(format!("{text:?}: {e}")))?;
        Matcher::new(name, op, &value).map_err(|e| MatcherError(format!("{text:?}: {e}")))
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
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

/// Whether every matcher matches.
pub fn all_match<L: Labels + ?Sized>(matchers: &[Matcher], labels: &L) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A double-quoted string with Go escapes, or a bare word.
fn unquote(s: &str) -> Result<String, String> {
    let Some(inner) = s.strip_prefix('"') else {
        if s.contains('"') {
            return Err("unbalanced quotes".into());
        }
        return Ok(s.to_string());
    };
    let Some(inner) = inner.strip_suffix('"') else {
        return Err("missing closing quote".into());
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            if c == '"' {
                return Err("unescaped quote inside value".into());
            }
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            // Keep regex escapes such as \d or \. as they are.
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => return Err("value ends with a backslash".into()),
        }
    }
    Ok(out)
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
}
