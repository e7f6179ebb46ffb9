//! Go's `time.Time` for templates in a time zone: `String()`, `Format(layout)` with Go's
//! reference layout (`2006-01-02 15:04:05 -0700 MST`), and zone names (IANA).

use chrono::{DateTime, Datelike, TimeZone, Timelike};
use chrono_tz::Tz;

/// The IANA zone `name` (`Europe/Moscow`, `UTC`); the error says what is expected.
pub fn parse_zone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| format!("unknown time zone {name:?} (an IANA name such as Europe/Moscow)"))
}

/// The instant `ns` (Unix nanoseconds) in `tz`; `None` out of range.
fn at(ns: i64, tz: Tz) -> Option<DateTime<Tz>> {
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000) as u32;
    DateTime::from_timestamp(secs, frac).map(|t| tz.from_utc_datetime(&t.naive_utc()))
}

/// Go's `time.Time.String()` in `tz`: `2006-01-02 15:04:05.999999999 -0700 MST`.
pub fn go_string_in(ns: i64, tz: Tz) -> String {
    go_format(ns, tz, "2006-01-02 15:04:05.999999999 -0700 MST")
}

/// Go's `time.Time.Format(layout)` in `tz`, for the layout elements Go documents
/// (years, months, days, weekdays, hours, minutes, seconds, fractions, AM/PM, zones).
pub fn go_format(ns: i64, tz: Tz, layout: &str) -> String {
    let Some(t) = at(ns, tz) else {
        return format!("{ns}ns");
    };
    let mut out = String::with_capacity(layout.len() + 8);
    let mut rest = layout;
    'scan: while !rest.is_empty() {
        for (token, render) in TOKENS {
            if let Some(tail) = rest.strip_prefix(token) {
                out.push_str(&render(&t));
                rest = tail;
                continue 'scan;
            }
        }
        if let Some(tail) = fraction(&t, rest, &mut out) {
            rest = tail;
            continue;
        }
        let c = rest.chars().next().unwrap_or_default();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

type Render = fn(&DateTime<Tz>) -> String;

/// Go's layout elements, longest first where one is a prefix of another.
const TOKENS: &[(&str, Render)] = &[
    ("January", |t| month_name(t.month()).to_string()),
    ("Jan", |t| month_name(t.month())[..3].to_string()),
    ("Monday", |t| t.format("%A").to_string()),
    ("Mon", |t| t.format("%a").to_string()),
    ("MST", |t| t.format("%Z").to_string()),
    ("2006", |t| format!("{:04}", t.year())),
    ("-07:00:00", |t| t.format("%::z").to_string()),
    ("-0700", |t| t.format("%z").to_string()),
    ("-07:00", |t| t.format("%:z").to_string()),
    ("-07", |t| t.format("%:z").to_string()[..3].to_string()),
    ("Z07:00", |t| {
        utc_z(t).unwrap_or_else(|| t.format("%:z").to_string())
    }),
    ("Z0700", |t| {
        utc_z(t).unwrap_or_else(|| t.format("%z").to_string())
    }),
    ("01", |t| format!("{:02}", t.month())),
    ("02", |t| format!("{:02}", t.day())),
    ("_2", |t| format!("{:>2}", t.day())),
    ("002", |t| format!("{:03}", t.ordinal())),
    ("06", |t| format!("{:02}", t.year() % 100)),
    ("15", |t| format!("{:02}", t.hour())),
    ("03", |t| format!("{:02}", hour12(t))),
    ("04", |t| format!("{:02}", t.minute())),
    ("05", |t| format!("{:02}", t.second())),
    ("PM", |t| {
        if t.hour() < 12 { "AM" } else { "PM" }.to_string()
    }),
    ("pm", |t| {
        if t.hour() < 12 { "am" } else { "pm" }.to_string()
    }),
    ("1", |t| t.month().to_string()),
    ("2", |t| t.day().to_string()),
    ("3", |t| hour12(t).to_string()),
    ("4", |t| t.minute().to_string()),
    ("5", |t| t.second().to_string()),
];

/// `Z` for UTC in the `Z07:00` forms.
fn utc_z(t: &DateTime<Tz>) -> Option<String> {
    (t.offset().to_string() == "UTC" || t.format("%z").to_string() == "+0000").then(|| "Z".into())
}

fn hour12(t: &DateTime<Tz>) -> u32 {
    match t.hour() % 12 {
        0 => 12,
        h => h,
    }
}

fn month_name(m: u32) -> &'static str {
    const NAMES: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    NAMES[(m as usize + 11) % 12]
}

/// `.000` (fixed digits) or `.999` (trailing zeros trimmed) after a seconds element.
fn fraction<'l>(t: &DateTime<Tz>, rest: &'l str, out: &mut String) -> Option<&'l str> {
    let sep = rest.chars().next().filter(|c| *c == '.' || *c == ',')?;
    let digits = &rest[1..];
    let n = digits.chars().take_while(|c| *c == '0').count();
    let nines = digits.chars().take_while(|c| *c == '9').count();
    let (len, trim) = match (n, nines) {
        (n, 0) if n > 0 => (n, false),
        (0, n) if n > 0 => (n, true),
        _ => return None,
    };
    if !out.ends_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let all = format!("{:09}", t.nanosecond() % 1_000_000_000);
    let mut s = all[..len.min(9)].to_string();
    if trim {
        s = s.trim_end_matches('0').to_string();
    }
    if !s.is_empty() {
        out.push(sep);
        out.push_str(&s);
    }
    Some(&rest[1 + len..])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2025-03-04 05:06:07.5 UTC.
    const T: i64 = 1_741_064_767_500_000_000;

    #[test]
    fn go_layouts_in_zones() {
        let utc = parse_zone("UTC").unwrap();
        let msk = parse_zone("Europe/Moscow").unwrap();
        assert_eq!(go_string_in(T, utc), "2025-03-04 05:06:07.5 +0000 UTC");
        assert_eq!(go_string_in(T, msk), "2025-03-04 08:06:07.5 +0300 MSK");
        assert_eq!(go_format(T, msk, "15:04"), "08:06");
        assert_eq!(
            go_format(T, msk, "Mon, 02 Jan 2006 15:04:05 MST"),
            "Tue, 04 Mar 2025 08:06:07 MSK"
        );
        assert_eq!(
            go_format(T, utc, "2006-01-02T15:04:05.000Z07:00"),
            "2025-03-04T05:06:07.500Z"
        );
        assert_eq!(
            go_format(T, msk, "2006-01-02T15:04:05Z07:00"),
            "2025-03-04T08:06:07+03:00"
        );
        assert_eq!(
            go_format(T, utc, "3:04PM Monday January _2"),
            "5:06AM Tuesday March  4"
        );
        assert!(parse_zone("Mars/Base").unwrap_err().contains("Mars/Base"));
    }
}
