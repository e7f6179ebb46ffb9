//! Go-compatible number formatting (`strconv.FormatFloat` and `fmt.Sprintf`), so that rule
//! templates and the rules API print exactly what Prometheus prints.
//!
//! Digits come from Rust's exact float formatting (shortest round-trip, or correctly
//! rounded to a precision with ties to even, as Go does); the layout rules (when `%g`
//! switches to an exponent, two-digit exponents, `+Inf`) are Go's.

/// Significant decimal digits of a finite, non-negative float: the value is
/// `0.d[0]d[1]… × 10^dp`; no trailing zeros; zero has no digits.
struct Digits {
    d: Vec<u8>,
    dp: i32,
}

impl Digits {
    /// From Rust's `{:e}` output such as `1.2345e-7`.
    fn from_sci(s: &str) -> Digits {
        let (mantissa, exp) = s.split_once('e').unwrap_or((s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let mut d: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
        while d.last() == Some(&b'0') {
            d.pop();
        }
        if d.is_empty() {
            return Digits { d, dp: 0 };
        }
        Digits { d, dp: exp + 1 }
    }

    /// The shortest digits that round-trip.
    fn shortest(v: f64) -> Digits {
        Digits::from_sci(&format!("{:e}", v.abs()))
    }

    /// `sig` significant digits, correctly rounded.
    fn rounded(v: f64, sig: usize) -> Digits {
        Digits::from_sci(&format!("{:.*e}", sig.max(1) - 1, v.abs()))
    }

    fn nd(&self) -> i32 {
        self.d.len() as i32
    }

    fn digit(&self, i: i32) -> char {
        if i >= 0 && i < self.nd() {
            self.d[i as usize] as char
        } else {
            '0'
        }
    }

    /// Go's `fmtE`: `d.ddde±XX` with `prec` digits after the point.
    fn fmt_e(&self, prec: i32, upper: bool) -> String {
        let mut out = String::new();
        out.push(self.digit(0));
        if prec > 0 {
            out.push('.');
            for i in 1..=prec {
                out.push(self.digit(i));
            }
        }
        out.push(if upper { 'E' } else { 'e' });
        let exp = if self.d.is_empty() { 0 } else { self.dp - 1 };
        out.push(if exp < 0 { '-' } else { '+' });
        let exp = exp.unsigned_abs();
        if exp < 10 {
            out.push('0');
        }
        out.push_str(&exp.to_string());
        out
    }

    /// Go's `fmtF`: `ddd.ddd` with `prec` digits after the point.
    fn fmt_f(&self, prec: i32) -> String {
        let mut out = String::new();
        if self.dp > 0 {
            for i in 0..self.dp {
                out.push(self.digit(i));
            }
        } else {
            out.push('0');
        }
        if prec > 0 {
            out.push('.');
            for i in 1..=prec {
                out.push(self.digit(self.dp + i - 1));
            }
        }
        out
    }

    /// Go's `%g` layout; `prec` is `None` for the shortest representation.
    fn fmt_g(&self, prec: Option<i32>, upper: bool) -> String {
        let shortest = prec.is_none();
        let mut eprec = prec.unwrap_or(6);
        if !shortest && eprec > self.nd() && self.nd() >= self.dp {
            eprec = self.nd();
        }
        if shortest {
            eprec = 6;
        }
        let exp = self.dp - 1;
        if exp < -4 || exp >= eprec {
            let p = match prec {
                Some(p) => p.min(self.nd()),
                None => self.nd(),
            };
            return self.fmt_e((p - 1).max(0), upper);
        }
        let p = match prec {
            Some(p) if p > self.dp => self.nd(),
            Some(p) => p,
            None => self.nd(),
        };
        self.fmt_f((p - self.dp).max(0))
    }
}

/// How to lay out a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatVerb {
    /// `%e` / `%E`.
    E(bool),
    /// `%f` / `%F`.
    F,
    /// `%g` / `%G` (and `%v`).
    G(bool),
}

/// The unsigned body of a finite float (sign handled by the caller).
fn float_body(v: f64, verb: FloatVerb, prec: Option<usize>) -> String {
    match verb {
        FloatVerb::E(upper) => match prec {
            Some(p) => Digits::rounded(v, p + 1).fmt_e(p as i32, upper),
            None => {
                let d = Digits::shortest(v);
                let p = (d.nd() - 1).max(0);
                d.fmt_e(p, upper)
            }
        },
        FloatVerb::F => match prec {
            Some(p) => format!("{:.*}", p, v.abs()),
            None => {
                let d = Digits::shortest(v);
                d.fmt_f((d.nd() - d.dp).max(0))
            }
        },
        FloatVerb::G(upper) => match prec {
            Some(p) => {
                let p = p.max(1);
                Digits::rounded(v, p).fmt_g(Some(p as i32), upper)
            }
            None => Digits::shortest(v).fmt_g(None, upper),
        },
    }
}

/// `strconv.FormatFloat(v, fmt, prec, 64)`: `NaN`, `+Inf`, `-Inf`, `-` for negatives.
pub fn format_float(v: f64, verb: FloatVerb, prec: Option<usize>) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let body = float_body(v, verb, prec);
    if v.is_sign_negative() {
        format!("-{body}")
    } else {
        body
    }
}

/// Go's `%v` of a float64 (`strconv.FormatFloat(v, 'g', -1, 64)`).
pub fn format_value(v: f64) -> String {
    format_float(v, FloatVerb::G(false), None)
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`, as in the rules API's `value`.
pub fn format_exp(v: f64) -> String {
    format_float(v, FloatVerb::E(false), None)
}

/// Go's `%.Ng`.
pub fn format_g(v: f64, prec: usize) -> String {
    format_float(v, FloatVerb::G(false), Some(prec))
}

/// Formatting flags of one `%` directive.
#[derive(Debug, Default, Clone, Copy)]
pub struct Flags {
    /// `+`.
    pub plus: bool,
    /// `-`.
    pub minus: bool,
    /// `#`.
    pub sharp: bool,
    /// ` `.
    pub space: bool,
    /// `0`.
    pub zero: bool,
    /// Minimum width.
    pub width: Option<usize>,
    /// Precision.
    pub prec: Option<usize>,
}

impl Flags {
    /// Pads `s` to the width (spaces, or zeros after the sign when `0` is set and
    /// `numeric`).
    pub fn pad(&self, s: String, numeric: bool) -> String {
        let len = s.chars().count();
        let Some(width) = self.width.filter(|w| *w > len) else {
            return s;
        };
        let fill = width - len;
        if self.minus {
            return format!("{s}{}", " ".repeat(fill));
        }
        if self.zero && numeric {
            let (sign, rest) = match s.chars().next() {
                Some(c @ ('+' | '-' | ' ')) => (c.to_string(), s[1..].to_string()),
                _ => (String::new(), s),
            };
            return format!("{sign}{}{rest}", "0".repeat(fill));
        }
        format!("{}{s}", " ".repeat(fill))
    }
}

/// A float under `fmt` verbs with flags: Go's `fmt.fmtFloat`.
pub fn fmt_float(v: f64, verb: FloatVerb, flags: &Flags) -> String {
    let prec = flags.prec;
    if v.is_nan() || v.is_infinite() {
        let body = if v.is_nan() { "NaN" } else { "Inf" };
        let sign = if v.is_infinite() && v < 0.0 {
            "-"
        } else if flags.plus {
            "+"
        } else if flags.space {
            " "
        } else if v.is_infinite() {
            "+"
        } else {
            ""
        };
        let no_zero = Flags {
            zero: false,
            ..*flags
        };
        return no_zero.pad(format!("{sign}{body}"), false);
    }
    let body = float_body(v, verb, prec);
    let sign = if v.is_sign_negative() {
        "-"
    } else if flags.plus {
        "+"
    } else if flags.space {
        " "
    } else {
        ""
    };
    flags.pad(format!("{sign}{body}"), true)
}

/// An integer under `%d`, `%x`, `%X`, `%o`, `%b` with flags.
pub fn fmt_int(v: i64, radix: char, flags: &Flags) -> String {
    let abs = v.unsigned_abs();
    let mut digits = match radix {
        'x' => format!("{abs:x}"),
        'X' => format!("{abs:X}"),
        'o' => format!("{abs:o}"),
        'b' => format!("{abs:b}"),
        _ => abs.to_string(),
    };
    if let Some(p) = flags.prec {
        if digits.len() < p {
            digits = format!("{}{digits}", "0".repeat(p - digits.len()));
        }
        if p == 0 && v == 0 {
            digits.clear();
        }
    }
    if flags.sharp {
        match radix {
            'x' => digits = format!("0x{digits}"),
            'X' => digits = format!("0X{digits}"),
            'o' if !digits.starts_with('0') => digits = format!("0{digits}"),
            _ => {}
        }
    }
    let sign = if v < 0 {
        "-"
    } else if flags.plus {
        "+"
    } else if flags.space {
        " "
    } else {
        ""
    };
    let zero_ok = flags.prec.is_none();
    let f = Flags {
        zero: flags.zero && zero_ok,
        ..*flags
    };
    f.pad(format!("{sign}{digits}"), true)
}

/// Go's `strconv.Quote`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_formatting_matches_go() {
        let cases = [
            (0.0, "0"),
            (1.0, "1"),
            (0.5, "0.5"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (1e6, "1e+06"),
            (100000.0, "100000"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
            (1e21, "1e+21"),
            (0.1 + 0.2, "0.30000000000000004"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for (v, want) in cases {
            assert_eq!(format_value(v), want, "{v}");
        }
    }

    #[test]
    fn exp_formatting_matches_go() {
        assert_eq!(format_exp(1.0), "1e+00");
        assert_eq!(format_exp(0.0), "0e+00");
        assert_eq!(format_exp(1234.5), "1.2345e+03");
        assert_eq!(format_exp(-0.00012), "-1.2e-04");
        assert_eq!(format_exp(1e100), "1e+100");
    }

    #[test]
    fn precision_g_matches_go() {
        let cases = [
            (1234.5, "1234"),
            (1235.5, "1236"),
            (12345.0, "1.234e+04"),
            (1.5, "1.5"),
            (100.0, "100"),
            (0.0001234, "0.0001234"),
            (0.00001234, "1.234e-05"),
            (0.0, "0"),
            (999.99, "1000"),
            (99999.0, "1e+05"),
            (42.0, "42"),
            (3.14259, "3.143"),
        ];
        for (v, want) in cases {
            assert_eq!(format_g(v, 4), want, "{v}");
        }
    }

    #[test]
    fn flags_and_padding() {
        let f = Flags {
            width: Some(8),
            prec: Some(2),
            ..Default::default()
        };
        assert_eq!(fmt_float(3.14259, FloatVerb::F, &f), "    3.14");
        let f = Flags {
            width: Some(8),
            prec: Some(2),
            zero: true,
            ..Default::default()
        };
        assert_eq!(fmt_float(-3.14259, FloatVerb::F, &f), "-0003.14");
        let f = Flags {
            minus: true,
            width: Some(5),
            ..Default::default()
        };
        assert_eq!(fmt_int(42, 'd', &f), "42   ");
        assert_eq!(fmt_int(255, 'x', &Flags::default()), "ff");
        assert_eq!(
            fmt_float(f64::INFINITY, FloatVerb::F, &Flags::default()),
            "+Inf"
        );
        assert_eq!(quote("a\"b\n"), "\"a\\\"b\\n\"");
    }
}
