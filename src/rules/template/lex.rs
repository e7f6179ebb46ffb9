//! Lexer for Go `text/template` source: text runs and the tokens inside `{{ }}`.

use super::TemplateError;

/// One token inside an action.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// `(`.
    LParen,
    /// `)`.
    RParen,
    /// `|`.
    Pipe,
    /// `:=`.
    Declare,
    /// `=`.
    Assign,
    /// `,`.
    Comma,
    /// `.` alone.
    Dot,
    /// `.a.b` (the names without dots).
    Field(Vec<String>),
    /// `$x` or `$`.
    Variable(String),
    /// A name: a function or a keyword.
    Ident(String),
    /// A string literal, unquoted.
    Str(String),
    /// A number literal as written.
    Number(String),
    /// A character constant.
    Char(char),
}

/// A token and its position.
#[derive(Debug, Clone)]
pub struct Token {
    /// The token.
    pub tok: Tok,
    /// Whether white space came before it (a field right after `)` or `$x` chains).
    pub space_before: bool,
    /// 1-based line in the template.
    pub line: usize,
}

/// A piece of the template.
#[derive(Debug, Clone)]
pub enum Piece {
    /// Literal text.
    Text(String),
    /// The tokens of one `{{ … }}` (comments are dropped).
    Action {
        /// The tokens.
        tokens: Vec<Token>,
        /// 1-based line of the `{{`.
        line: usize,
    },
}

const LEFT: &str = "{{";
const RIGHT: &str = "}}";

fn is_trim_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Splits `src` into text and action tokens.
pub fn lex(src: &str) -> Result<Vec<Piece>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = src;
    let mut line = 1usize;
    let mut trim_next_text = false;
    loop {
        let Some(at) = rest.find(LEFT) else {
            let mut text = rest;
            if trim_next_text {
                text = text.trim_start_matches(is_trim_space);
            }
            if !text.is_empty() {
                pieces.push(Piece::Text(text.to_string()));
            }
            return Ok(pieces);
        };
        let mut text = &rest[..at];
        let after = &rest[at + LEFT.len()..];
        // `{{- ` trims white space before the action.
        let trim_left = after.starts_with('-') && after[1..].starts_with(is_trim_space);
        if trim_next_text {
            text = text.trim_start_matches(is_trim_space);
        }
        if trim_left {
            text = text.trim_end_matches(is_trim_space);
        }
        line += rest[..at].matches('\n').count();
        if !text.is_empty() {
            pieces.push(Piece::Text(text.to_string()));
        }
        let body_start = if trim_left { 2 } else { 0 };
        let action_line = line;
        let (tokens, consumed, trim_right, newlines) = lex_action(&after[body_start..], line)?;
        line += newlines;
        if let Some(tokens) = tokens {
            pieces.push(Piece::Action {
                tokens,
                line: action_line,
            });
        }
        trim_next_text = trim_right;
        rest = &after[body_start + consumed..];
    }
}

/// The tokens of an action (`None` for a comment), bytes consumed, whether to trim the
/// following text, and the newlines inside.
type Lexed = (Option<Vec<Token>>, usize, bool, usize);

/// Lexes one action body up to and including `}}`. Returns the tokens (`None` for a
/// comment), the bytes consumed, whether `-}}` asked to trim the following text, and the
/// newlines inside.
fn lex_action(s: &str, line: usize) -> Result<Lexed, TemplateError> {
    let err = |l: usize, m: String| TemplateError::new(l, m);
    let mut toks = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0usize;
    let mut cur_line = line;
    let mut space = true;
    // Comments: `{{/* … */}}`, possibly with trim markers around.
    let lead = s.len() - s.trim_start_matches(is_trim_space).len();
    if s[lead..].starts_with("/*") {
        let Some(end) = s[lead + 2..].find("*/") else {
            return Err(err(line, "unclosed comment".into()));
        };
        let after_comment = lead + 2 + end + 2;
        let newlines = s[..after_comment].matches('\n').count();
        let tail = &s[after_comment..];
        let tail_trim = tail.trim_start_matches(is_trim_space);
        let (trim_right, close) = if let Some(t) = tail_trim.strip_prefix("-") {
            (true, t)
        } else {
            (false, tail_trim)
        };
        if !close.starts_with(RIGHT) {
            return Err(err(line, "comment ends before closing delimiter".into()));
        }
        let consumed = s.len() - close.len() + RIGHT.len();
        return Ok((None, consumed, trim_right, newlines));
    }
    while i < s.len() {
        let c = s[i..].chars().next().unwrap_or(' ');
        // Right delimiter, with an optional trim marker before it.
        if s[i..].starts_with(RIGHT) {
            return Ok((Some(toks), i + RIGHT.len(), false, cur_line - line));
        }
        if c == '-' && space && s[i + 1..].starts_with(RIGHT) {
            return Ok((Some(toks), i + 1 + RIGHT.len(), true, cur_line - line));
        }
        if is_trim_space(c) {
            if c == '\n' {
                cur_line += 1;
            }
            space = true;
            i += 1;
            continue;
        }
        let start_space = space;
        space = false;
        let push = |toks: &mut Vec<Token>, tok: Tok| {
            toks.push(Token {
                tok,
                space_before: start_space,
                line: cur_line,
            })
        };
        match c {
            '(' => {
                push(&mut toks, Tok::LParen);
                i += 1;
            }
            ')' => {
                push(&mut toks, Tok::RParen);
                i = lex_field_chain(s, i + 1, &mut toks, cur_line);
            }
            '|' => {
                if s[i + 1..].starts_with('|') {
                    return Err(err(cur_line, "unexpected \"||\" in command".into()));
                }
                push(&mut toks, Tok::Pipe);
                i += 1;
            }
            ',' => {
                push(&mut toks, Tok::Comma);
                i += 1;
            }
            ':' => {
                if !s[i + 1..].starts_with('=') {
                    return Err(err(cur_line, "expected :=".into()));
                }
                push(&mut toks, Tok::Declare);
                i += 2;
            }
            '=' => {
                push(&mut toks, Tok::Assign);
                i += 1;
            }
            '"' => {
                let (value, len) = lex_quoted(&s[i..]).map_err(|m| err(cur_line, m))?;
                push(&mut toks, Tok::Str(value));
                i += len;
            }
            '`' => {
                let Some(end) = s[i + 1..].find('`') else {
                    return Err(err(cur_line, "unterminated raw quoted string".into()));
                };
                let value = &s[i + 1..i + 1 + end];
                push(&mut toks, Tok::Str(value.to_string()));
                i += end + 2;
                cur_line += value.matches('\n').count();
            }
            '\'' => {
                let (ch, len) = lex_char(&s[i..]).map_err(|m| err(cur_line, m))?;
                push(&mut toks, Tok::Char(ch));
                i += len;
            }
            '$' => {
                let len = ident_len(&s[i + 1..]);
                push(&mut toks, Tok::Variable(s[i..i + 1 + len].to_string()));
                i += 1 + len;
                i = lex_field_chain(s, i, &mut toks, cur_line);
            }
            '.' => {
                let next = s[i + 1..].chars().next();
                if next.is_some_and(|n| n.is_ascii_digit()) {
                    let len = number_len(&s[i..]);
                    push(&mut toks, Tok::Number(s[i..i + len].to_string()));
                    i += len;
                } else if next.is_some_and(is_ident_start) {
                    let mut names = Vec::new();
                    while s[i..].starts_with('.')
                        && s[i + 1..].chars().next().is_some_and(is_ident_start)
                    {
                        let len = ident_len(&s[i + 1..]);
                        names.push(s[i + 1..i + 1 + len].to_string());
                        i += 1 + len;
                    }
                    push(&mut toks, Tok::Field(names));
                } else {
                    push(&mut toks, Tok::Dot);
                    i += 1;
                }
            }
            c if c.is_ascii_digit() || ((c == '-' || c == '+') && next_is_digit(s, i)) => {
                let len = number_len(&s[i..]);
                push(&mut toks, Tok::Number(s[i..i + len].to_string()));
                i += len;
            }
            c if is_ident_start(c) => {
                let len = ident_len(&s[i..]);
                push(&mut toks, Tok::Ident(s[i..i + len].to_string()));
                i += len;
            }
            other => {
                return Err(err(
                    cur_line,
                    format!("unrecognized character in action: {other:?}"),
                ));
            }
        }
        if i < bytes.len() && !s.is_char_boundary(i) {
            return Err(err(cur_line, "invalid UTF-8 in action".into()));
        }
    }
    Err(err(line, "unclosed action".into()))
}

/// After `$x` or `)`, attached `.a.b` fields become their own token without space.
fn lex_field_chain(s: &str, mut i: usize, toks: &mut Vec<Token>, line: usize) -> usize {
    let mut names = Vec::new();
    while s[i..].starts_with('.') && s[i + 1..].chars().next().is_some_and(is_ident_start) {
        let len = ident_len(&s[i + 1..]);
        names.push(s[i + 1..i + 1 + len].to_string());
        i += 1 + len;
    }
    if !names.is_empty() {
        toks.push(Token {
            tok: Tok::Field(names),
            space_before: false,
            line,
        });
    }
    i
}

fn next_is_digit(s: &str, i: usize) -> bool {
    s[i + 1..]
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit())
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn ident_len(s: &str) -> usize {
    s.char_indices()
        .find(|(_, c)| !(*c == '_' || c.is_alphanumeric()))
        .map(|(i, _)| i)
        .unwrap_or(s.len())
}

fn number_len(s: &str) -> usize {
    let mut len = 0;
    let mut prev = ' ';
    for (i, c) in s.char_indices() {
        let ok = c.is_ascii_alphanumeric()
            || c == '.'
            || c == '_'
            || (i == 0 && (c == '-' || c == '+'))
            || ((c == '-' || c == '+') && matches!(prev, 'e' | 'E' | 'p' | 'P'));
        if !ok {
            break;
        }
        prev = c;
        len = i + c.len_utf8();
    }
    len
}

/// A double-quoted string with Go escapes; returns the value and the bytes used.
fn lex_quoted(s: &str) -> Result<(String, usize), String> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            '\n' => return Err("unterminated quoted string".into()),
            '\\' => {
                let Some((_, e)) = chars.next() else {
                    return Err("unterminated quoted string".into());
                };
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'v' => out.push('\u{b}'),
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    '\'' => out.push('\''),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = (0..n)
                            .filter_map(|_| chars.next().map(|(_, h)| h))
                            .collect();
                        let code = u32::from_str_radix(&hex, 16)
                            .map_err(|_| format!("invalid escape \\{e}{hex}"))?;
                        out.push(
                            char::from_u32(code)
                                .ok_or_else(|| format!("invalid escape \\{e}{hex}"))?,
                        );
                    }
                    other => return Err(format!("unknown escape sequence: \\{other}")),
                }
            }
            c => out.push(c),
        }
    }
    Err("unterminated quoted string".into())
}

fn lex_char(s: &str) -> Result<(char, usize), String> {
    let body = &s[1..];
    let end = body
        .find('\'')
        .ok_or_else(|| "unterminated character constant".to_string())?;
    let inner = &body[..end];
    let (value, _) = lex_quoted(&format!("\"{}\"", inner.replace('"', "\\\"")))?;
    let mut it = value.chars();
    match (it.next(), it.next()) {
        (Some(c), None) => Ok((c, end + 2)),
        _ => Err(format!("malformed character constant: '{inner}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        match lex(src).unwrap().into_iter().next().unwrap() {
            Piece::Action { tokens, .. } => tokens.into_iter().map(|t| t.tok).collect(),
            Piece::Text(t) => panic!("text {t}"),
        }
    }

    #[test]
    fn tokens_of_typical_actions() {
        assert_eq!(
            toks("{{ $labels.instance }}"),
            vec![
                Tok::Variable("$labels".into()),
                Tok::Field(vec!["instance".into()])
            ]
        );
        assert_eq!(
            toks(r#"{{ printf "%.2f" $value | toUpper }}"#),
            vec![
                Tok::Ident("printf".into()),
                Tok::Str("%.2f".into()),
                Tok::Variable("$value".into()),
                Tok::Pipe,
                Tok::Ident("toUpper".into()),
            ]
        );
        assert_eq!(toks("{{ -1.5e3 }}"), vec![Tok::Number("-1.5e3".into())]);
        assert_eq!(
            toks("{{ .Labels.job }}"),
            vec![Tok::Field(vec!["Labels".into(), "job".into()])]
        );
    }

    #[test]
    fn trim_markers_and_comments() {
        let pieces = lex("a  {{- 1 -}}  b{{/* note */}}c").unwrap();
        let texts: Vec<String> = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Text(t) => Some(t.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(texts, vec!["a", "b", "c"]);
    }

    #[test]
    fn errors_carry_lines() {
        let e = lex("line1\nline2 {{ \"open }}").unwrap_err();
        assert_eq!(e.line, 2);
        let e = lex("{{ 1 ").unwrap_err();
        assert!(e.message.contains("unclosed action"), "{}", e.message);
    }
}
