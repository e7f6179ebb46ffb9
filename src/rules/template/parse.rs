//! Parser for the `text/template` subset: actions, pipelines, `if`/`else`/`range`/`with`,
//! variables. Checks at parse time what Go checks (unknown functions, undefined
//! variables) plus the argument count of our functions.

use super::TemplateError;
use super::funcs;
use super::lex::{Piece, Tok, Token};

/// A template node.
#[derive(Debug, Clone)]
pub enum Node {
    /// Literal text.
    Text(String),
    /// `{{ pipeline }}`: printed unless it declares variables.
    Action(Pipeline),
    /// `{{ if }}…{{ else }}…{{ end }}`.
    If(Control),
    /// `{{ range }}…{{ else }}…{{ end }}`.
    Range(Control),
    /// `{{ with }}…{{ else }}…{{ end }}`.
    With(Control),
    /// `{{ break }}` inside range.
    Break,
    /// `{{ continue }}` inside range.
    Continue,
}

/// The parts of `if`, `range` and `with`.
#[derive(Debug, Clone)]
pub struct Control {
    /// The condition or value.
    pub pipe: Pipeline,
    /// Nodes when truthy (or per element).
    pub body: Vec<Node>,
    /// Nodes of the `else` branch.
    pub otherwise: Vec<Node>,
}

/// `$x := cmd | cmd …`.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Declared or assigned variables.
    pub decl: Vec<String>,
    /// `=` rather than `:=`.
    pub assign: bool,
    /// The commands; each one's result is the last argument of the next.
    pub cmds: Vec<Command>,
    /// 1-based line.
    pub line: usize,
}

/// One command: a function call or a single operand.
#[derive(Debug, Clone)]
pub struct Command {
    /// The operands; a function name first for calls.
    pub args: Vec<Operand>,
    /// 1-based line.
    pub line: usize,
}

/// A number constant: integer when it is one, float always.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Number {
    /// The integer value, if the literal is an integer.
    pub int: Option<i64>,
    /// The float value.
    pub float: f64,
}

/// An operand.
#[derive(Debug, Clone)]
pub enum Operand {
    /// `.`.
    Dot,
    /// `nil`.
    Nil,
    /// `true` / `false`.
    Bool(bool),
    /// A number.
    Number(Number),
    /// A string.
    Str(String),
    /// `.a.b` on dot.
    Field(Vec<String>),
    /// `$x.a.b`.
    Variable(String, Vec<String>),
    /// A function name.
    Func(String),
    /// `(pipeline).a.b`.
    Pipe(Box<Pipeline>, Vec<String>),
}

/// Variables every rule template starts with (Prometheus' prepended definitions).
pub const PREDEFINED: &[&str] = &["$", "$labels", "$externalLabels", "$externalURL", "$value"];

/// Parses pieces into nodes; `predefined` are the variables defined from the start.
pub fn parse_with(pieces: Vec<Piece>, predefined: &[&str]) -> Result<Vec<Node>, TemplateError> {
    let mut p = Parser {
        pieces,
        pos: 0,
        vars: predefined.iter().map(|s| s.to_string()).collect(),
        range_depth: 0,
    };
    let (nodes, end) = p.list()?;
    match end {
        Terminator::Eof => Ok(nodes),
        Terminator::End(line) => Err(TemplateError::new(line, "unexpected {{end}}")),
        Terminator::Else(line, _) => Err(TemplateError::new(line, "unexpected {{else}}")),
    }
}

/// What ended a node list.
enum Terminator {
    Eof,
    /// `{{end}}`.
    End(usize),
    /// `else` and the tokens after it (`if …` for `else if`).
    Else(usize, Vec<Token>),
}

struct Parser {
    pieces: Vec<Piece>,
    pos: usize,
    vars: Vec<String>,
    range_depth: usize,
}

impl Parser {
    fn list(&mut self) -> Result<(Vec<Node>, Terminator), TemplateError> {
        let mut nodes = Vec::new();
        while self.pos < self.pieces.len() {
            let piece = self.pieces[self.pos].clone();
            self.pos += 1;
            match piece {
                Piece::Text(t) => nodes.push(Node::Text(t)),
                Piece::Action { tokens, line } => {
                    let Some(first) = tokens.first() else {
                        return Err(TemplateError::new(line, "missing value for command"));
                    };
                    match &first.tok {
                        Tok::Ident(k) if k == "end" => {
                            if tokens.len() > 1 {
                                return Err(TemplateError::new(line, "unexpected token in end"));
                            }
                            return Ok((nodes, Terminator::End(line)));
                        }
                        Tok::Ident(k) if k == "else" => {
                            return Ok((nodes, Terminator::Else(line, tokens[1..].to_vec())));
                        }
                        Tok::Ident(k) if k == "if" || k == "range" || k == "with" => {
                            let kind = k.clone();
                            nodes.push(self.control(&kind, &tokens[1..], line)?);
                        }
                        Tok::Ident(k) if k == "break" || k == "continue" => {
                            if self.range_depth == 0 {
                                return Err(TemplateError::new(
                                    line,
                                    format!("{{{{{k}}}}} outside {{{{range}}}}"),
                                ));
                            }
                            if tokens.len() > 1 {
                                return Err(TemplateError::new(
                                    line,
                                    format!("unexpected token in {{{{{k}}}}}"),
                                ));
                            }
                            nodes.push(if k == "break" {
                                Node::Break
                            } else {
                                Node::Continue
                            });
                        }
                        Tok::Ident(k) if k == "define" || k == "template" || k == "block" => {
                            return Err(TemplateError::new(
                                line,
                                format!("{{{{{k}}}}} is not supported in rule templates"),
                            ));
                        }
                        _ => {
                            let mut at = 0;
                            let pipe = self.pipeline(&tokens, &mut at, line, "command")?;
                            if at < tokens.len() {
                                return Err(unexpected(&tokens[at], "command"));
                            }
                            nodes.push(Node::Action(pipe));
                        }
                    }
                }
            }
        }
        Ok((nodes, Terminator::Eof))
    }

    /// `if`/`range`/`with` after the keyword.
    fn control(
        &mut self,
        kind: &str,
        tokens: &[Token],
        line: usize,
    ) -> Result<Node, TemplateError> {
        let scope = self.vars.len();
        let mut at = 0;
        let pipe = self.pipeline(tokens, &mut at, line, kind)?;
        if at < tokens.len() {
            return Err(unexpected(&tokens[at], kind));
        }
        if kind == "range" {
            self.range_depth += 1;
        }
        let body = self.list();
        if kind == "range" {
            self.range_depth -= 1;
        }
        let (body, end) = body?;
        let otherwise = match end {
            Terminator::Eof => {
                return Err(TemplateError::new(
                    line,
                    format!("unexpected EOF in {kind}"),
                ));
            }
            Terminator::End(_) => Vec::new(),
            Terminator::Else(else_line, rest) => {
                let chained = match rest.first().map(|t| &t.tok) {
                    Some(Tok::Ident(k)) if (k == "if" || k == "with") && kind != "range" => {
                        Some(k.clone())
                    }
                    Some(_) => {
                        return Err(TemplateError::new(else_line, "unexpected token in else"));
                    }
                    None => None,
                };
                match chained {
                    // `{{else if …}}` is a nested if sharing our `{{end}}`.
                    Some(k) => vec![self.control(&k, &rest[1..], else_line)?],
                    None => {
                        let (nodes, end) = self.list()?;
                        match end {
                            Terminator::End(_) => nodes,
                            Terminator::Eof => {
                                return Err(TemplateError::new(
                                    line,
                                    format!("unexpected EOF in {kind}"),
                                ));
                            }
                            Terminator::Else(l, _) => {
                                return Err(TemplateError::new(l, "unexpected {{else}}"));
                            }
                        }
                    }
                }
            }
        };
        self.vars.truncate(scope);
        let control = Control {
            pipe,
            body,
            otherwise,
        };
        Ok(match kind {
            "if" => Node::If(control),
            "range" => Node::Range(control),
            _ => Node::With(control),
        })
    }

    /// A pipeline up to the end of `tokens` or a `)`.
    fn pipeline(
        &mut self,
        tokens: &[Token],
        at: &mut usize,
        line: usize,
        context: &str,
    ) -> Result<Pipeline, TemplateError> {
        let mut decl = Vec::new();
        let mut assign = false;
        // `$x :=`, `$x =`, `$k, $v :=`.
        let mut probe = *at;
        let mut names = Vec::new();
        while let Some(Tok::Variable(name)) = tokens.get(probe).map(|t| &t.tok) {
            names.push(name.clone());
            probe += 1;
            match tokens.get(probe).map(|t| &t.tok) {
                Some(Tok::Comma) if context == "range" && names.len() < 2 => probe += 1,
                Some(Tok::Declare) | Some(Tok::Assign) => break,
                _ => {
                    names.clear();
                    break;
                }
            }
        }
        if !names.is_empty() {
            match tokens.get(probe).map(|t| &t.tok) {
                Some(Tok::Declare) => {
                    decl = names;
                    *at = probe + 1;
                }
                Some(Tok::Assign) => {
                    for n in &names {
                        if !self.vars.contains(n) {
                            return Err(TemplateError::new(
                                line,
                                format!("undefined variable {n:?}"),
                            ));
                        }
                    }
                    decl = names;
                    assign = true;
                    *at = probe + 1;
                }
                _ => {}
            }
        }
        let mut cmds = Vec::new();
        loop {
            let cmd = self.command(tokens, at, line, cmds.is_empty())?;
            cmds.push(cmd);
            match tokens.get(*at).map(|t| &t.tok) {
                Some(Tok::Pipe) => {
                    *at += 1;
                }
                _ => break,
            }
        }
        if !assign {
            self.vars.extend(decl.iter().cloned());
        }
        Ok(Pipeline {
            decl,
            assign,
            cmds,
            line,
        })
    }

    fn command(
        &mut self,
        tokens: &[Token],
        at: &mut usize,
        line: usize,
        first_in_pipeline: bool,
    ) -> Result<Command, TemplateError> {
        let mut args = Vec::new();
        while let Some(t) = tokens.get(*at) {
            match &t.tok {
                Tok::Pipe | Tok::RParen => break,
                Tok::Comma | Tok::Declare | Tok::Assign => {
                    return Err(unexpected(t, "operand"));
                }
                _ => {}
            }
            if !args.is_empty() && !t.space_before && !matches!(t.tok, Tok::LParen) {
                return Err(unexpected(t, "operand"));
            }
            let operand = self.operand(tokens, at, line)?;
            args.push(operand);
        }
        let Some(first) = args.first() else {
            return Err(TemplateError::new(line, "missing value for command"));
        };
        match first {
            Operand::Nil => {
                return Err(TemplateError::new(line, "nil is not a command"));
            }
            Operand::Func(name) => {
                let given = args.len() - 1 + usize::from(!first_in_pipeline);
                if let Some(arity) = funcs::arity(name)
                    && !arity.accepts(given)
                {
                    return Err(TemplateError::new(
                        line,
                        format!(
                            "wrong number of args for {name}: want {} got {given}",
                            arity.describe()
                        ),
                    ));
                }
            }
            // A field chain may end in a method taking arguments (`.Labels.Remove x`).
            Operand::Field(f) | Operand::Variable(_, f) | Operand::Pipe(_, f) if !f.is_empty() => {}
            _ => {
                if args.len() > 1 || !first_in_pipeline {
                    return Err(TemplateError::new(
                        line,
                        format!("can't give argument to non-function {}", describe(first)),
                    ));
                }
            }
        }
        Ok(Command { args, line })
    }

    fn operand(
        &mut self,
        tokens: &[Token],
        at: &mut usize,
        line: usize,
    ) -> Result<Operand, TemplateError> {
        let t = &tokens[*at];
        *at += 1;
        let op = match &t.tok {
            Tok::Dot => Operand::Dot,
            Tok::Field(names) => Operand::Field(names.clone()),
            Tok::Str(s) => Operand::Str(s.clone()),
            Tok::Char(c) => Operand::Number(Number {
                int: Some(*c as i64),
                float: *c as u32 as f64,
            }),
            Tok::Number(text) => Operand::Number(parse_number(text).ok_or_else(|| {
                TemplateError::new(t.line, format!("illegal number syntax: {text:?}"))
            })?),
            Tok::Variable(name) => {
                if !self.vars.contains(name) {
                    return Err(TemplateError::new(
                        t.line,
                        format!("undefined variable {name:?}"),
                    ));
                }
                Operand::Variable(name.clone(), self.attached_fields(tokens, at))
            }
            Tok::Ident(name) => match name.as_str() {
                "true" => Operand::Bool(true),
                "false" => Operand::Bool(false),
                "nil" => Operand::Nil,
                "if" | "else" | "end" | "range" | "with" | "define" | "template" | "block"
                | "break" | "continue" => {
                    return Err(TemplateError::new(
                        t.line,
                        format!("unexpected <{name}> in command"),
                    ));
                }
                _ => {
                    if funcs::arity(name).is_none() {
                        return Err(TemplateError::new(
                            t.line,
                            format!("function {name:?} not defined"),
                        ));
                    }
                    Operand::Func(name.clone())
                }
            },
            Tok::LParen => {
                let pipe = self.pipeline(tokens, at, line, "parenthesized pipeline")?;
                match tokens.get(*at).map(|t| &t.tok) {
                    Some(Tok::RParen) => *at += 1,
                    _ => return Err(TemplateError::new(t.line, "unclosed left paren")),
                }
                Operand::Pipe(Box::new(pipe), self.attached_fields(tokens, at))
            }
            _ => return Err(unexpected(t, "operand")),
        };
        Ok(op)
    }

    /// A `.a.b` token right after the previous one (no space) chains onto it.
    fn attached_fields(&self, tokens: &[Token], at: &mut usize) -> Vec<String> {
        match tokens.get(*at) {
            Some(Token {
                tok: Tok::Field(names),
                space_before: false,
                ..
            }) => {
                *at += 1;
                names.clone()
            }
            _ => Vec::new(),
        }
    }
}

fn unexpected(t: &Token, context: &str) -> TemplateError {
    let what = match &t.tok {
        Tok::LParen => "\"(\"".to_string(),
        Tok::RParen => "\")\"".to_string(),
        Tok::Pipe => "\"|\"".to_string(),
        Tok::Declare => "\":=\"".to_string(),
        Tok::Assign => "\"=\"".to_string(),
        Tok::Comma => "\",\"".to_string(),
        Tok::Dot => "<.>".to_string(),
        Tok::Field(n) => format!("<.{}>", n.join(".")),
        Tok::Variable(v) => format!("<{v}>"),
        Tok::Ident(i) => format!("<{i}>"),
        Tok::Str(s) => format!("{s:?}"),
        Tok::Number(n) => format!("<{n}>"),
        Tok::Char(c) => format!("{c:?}"),
    };
    TemplateError::new(t.line, format!("unexpected {what} in {context}"))
}

fn describe(op: &Operand) -> String {
    match op {
        Operand::Dot => ".".into(),
        Operand::Nil => "nil".into(),
        Operand::Bool(b) => b.to_string(),
        Operand::Number(n) => match n.int {
            Some(i) => i.to_string(),
            None => n.float.to_string(),
        },
        Operand::Str(s) => format!("{s:?}"),
        Operand::Field(f) => format!(".{}", f.join(".")),
        Operand::Variable(v, f) if f.is_empty() => v.clone(),
        Operand::Variable(v, f) => format!("{v}.{}", f.join(".")),
        Operand::Func(name) => name.clone(),
        Operand::Pipe(..) => "(pipeline)".into(),
    }
}

/// Go number literal: integers (decimal, `0x`, `0o`, `0b`, `_` separators) or floats.
fn parse_number(text: &str) -> Option<Number> {
    let clean: String = text.chars().filter(|c| *c != '_').collect();
    let (neg, body) = match clean.strip_prefix('-') {
        Some(b) => (true, b.to_string()),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean).to_string()),
    };
    let lower = body.to_ascii_lowercase();
    let radix_int = if let Some(h) = lower.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()
    } else if let Some(o) = lower.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()
    } else if let Some(b) = lower.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()
    } else if lower.len() > 1 && lower.starts_with('0') && lower.chars().all(|c| c.is_ascii_digit())
    {
        i64::from_str_radix(&lower[1..], 8).ok()
    } else {
        lower.parse::<i64>().ok()
    };
    if let Some(i) = radix_int {
        let i = if neg { -i } else { i };
        return Some(Number {
            int: Some(i),
            float: i as f64,
        });
    }
    let f: f64 = lower.parse().ok()?;
    if !f.is_finite() {
        return None;
    }
    let f = if neg { -f } else { f };
    let int =
        (f.fract() == 0.0 && f.abs() < 9.0e15 && !lower.contains(['.', 'e'])).then_some(f as i64);
    Some(Number { int, float: f })
}

#[cfg(test)]
mod tests {
    use super::super::lex::lex;
    use super::*;

    fn p(src: &str) -> Result<Vec<Node>, TemplateError> {
        parse_with(lex(src)?, PREDEFINED)
    }

    #[test]
    fn parses_control_structures() {
        let nodes =
            p("{{ if gt $value 0.5 }}high{{ else if eq $value 0.0 }}zero{{ else }}low{{ end }}")
                .unwrap();
        assert_eq!(nodes.len(), 1);
        let nodes = p("{{ range $k, $v := $labels }}{{ $k }}={{ $v }} {{ end }}").unwrap();
        assert!(matches!(nodes[0], Node::Range(_)));
    }

    #[test]
    fn parse_errors_like_go() {
        let e = p("{{ humanise $value }}").unwrap_err();
        assert_eq!(e.message, "function \"humanise\" not defined");
        let e = p("{{ $nope }}").unwrap_err();
        assert_eq!(e.message, "undefined variable \"$nope\"");
        let e = p("a\n{{ if true }}x").unwrap_err();
        assert!(e.message.contains("unexpected EOF"), "{}", e.message);
        let e = p("{{ end }}").unwrap_err();
        assert!(e.message.contains("unexpected {{end}}"));
        let e = p("{{ $value | humanize 1 }}").unwrap_err();
        assert!(e.message.contains("wrong number of args"), "{}", e.message);
        let e = p("{{ range $x := $labels }}{{ end }}{{ $x }}").unwrap_err();
        assert!(e.message.contains("undefined variable"), "{}", e.message);
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("42").unwrap().int, Some(42));
        assert_eq!(parse_number("0x1F").unwrap().int, Some(31));
        assert_eq!(parse_number("1.5").unwrap().int, None);
        assert_eq!(parse_number("-2e3").unwrap().float, -2000.0);
    }
}
