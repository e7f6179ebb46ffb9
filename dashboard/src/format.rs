//! Human formatting of values with units, durations and timestamps, and "nice" axis ticks.
//!
//! Everything here is pure so it is unit-tested on the host.

/// What a series' values mean; decides formatting and axis ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A ratio 0–1 shown as percent.
    Percent,
    /// Bytes (binary prefixes: KiB, MiB…).
    Bytes,
    /// Bytes per second.
    BytesPerSec,
    /// Seconds (shown as µs, ms, s, min…).
    Seconds,
    /// Events per second.
    PerSec,
    /// A plain number (SI prefixes k, M, G).
    Count,
}

impl Unit {
    /// A short suffix for axis captions ("%", "B", "B/s", "s", "/s", "").
    pub fn caption(self) -> &'static str {
        match self {
            Unit::Percent => "%",
            Unit::Bytes => "bytes",
            Unit::BytesPerSec => "bytes/s",
            Unit::Seconds => "seconds",
            Unit::PerSec => "per second",
            Unit::Count => "",
        }
    }
}

/// Formats `v` in `unit` with about three significant digits ("42.1 %", "1.5 GiB",
/// "230 ms", "12.3 /s"). NaN and infinities read "–" / "∞".
pub fn format_value(v: f64, unit: Unit) -> String {
    if v.is_nan() {
        return "–".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "∞".into() } else { "-∞".into() };
    }
    match unit {
        Unit::Percent => format!("{} %", sig3(v * 100.0)),
        Unit::Bytes => format_bytes(v),
        Unit::BytesPerSec => format!("{}/s", format_bytes(v)),
        Unit::Seconds => format_seconds(v),
        Unit::PerSec => format!("{} /s", format_si(v)),
        Unit::Count => format_si(v),
    }
}

/// Bytes with binary prefixes: `1536` → "1.5 KiB".
pub fn format_bytes(v: f64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let (scaled, i) = scale_binary(v);
    if i == 0 {
        format!("{} {}", sig3(scaled), UNITS[0])
    } else {
        format!("{} {}", sig3(scaled), UNITS[i])
    }
}

/// `v` divided by the largest power of 1024 not above it, and that power's index.
fn scale_binary(v: f64) -> (f64, usize) {
    let mut scaled = v;
    let mut i = 0;
    while scaled.abs() >= 1024.0 && i < 6 {
        scaled /= 1024.0;
        i += 1;
    }
    (scaled, i)
}

/// A number with SI prefixes: `12_300` → "12.3k".
pub fn format_si(v: f64) -> String {
    const PREFIXES: [(f64, &str); 4] = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")];
    for (p, s) in PREFIXES {
        if v.abs() >= p {
            return format!("{}{s}", sig3(v / p));
        }
    }
    sig3(v)
}

/// Seconds as a latency: "850 µs", "12.5 ms", "1.25 s", "2.5 min", "3.2 h".
pub fn format_seconds(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0 s".into()
    } else if a < 1e-3 {
        format!("{} µs", sig3(v * 1e6))
    } else if a < 1.0 {
        format!("{} ms", sig3(v * 1e3))
    } else if a < 120.0 {
        format!("{} s", sig3(v))
    } else if a < 7200.0 {
        format!("{} min", sig3(v / 60.0))
    } else {
        format!("{} h", sig3(v / 3600.0))
    }
}

/// A duration for people: "45s", "12m 5s", "3h 20m", "2d 4h".
pub fn format_duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "–".into();
    }
    let s = secs.round() as u64;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) if sec == 0 => format!("{m}m"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, 0) => format!("{h}h"),
        (0, _, _) => format!("{h}h {m}m"),
        (_, 0, _) => format!("{d}d"),
        _ => format!("{d}d {h}h"),
    }
}

/// "5s ago", "3m ago", "2h ago", "4d ago", or "just now"; a future time reads "in 5m".
pub fn format_ago(now_ms: i64, then_ms: i64) -> String {
    let diff = now_ms - then_ms;
    if diff.abs() < 1000 {
        return "just now".into();
    }
    let s = diff.unsigned_abs() / 1000;
    let short = if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m", s / 60)
    } else if s < 86_400 {
        format!("{}h", s / 3600)
    } else {
        format!("{}d", s / 86_400)
    };
    if diff > 0 {
        format!("{short} ago")
    } else {
        format!("in {short}")
    }
}

/// Three significant digits without trailing zeros: 0.5 → "0.5", 1234 → "1234",
/// 12.345 → "12.3", 0.001234 → "0.00123".
pub fn sig3(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v.is_finite() {
            "0".into()
        } else {
            format!("{v}")
        };
    }
    let mag = v.abs().log10().floor() as i32;
    let decimals = (2 - mag).clamp(0, 6) as usize;
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" { "0".into() } else { s }
}

/// Picks about `target` round tick values covering `[min, max]` for `unit`: decimal
/// steps (1, 2, 5 × 10ⁿ) for most units, binary multiples for bytes, so "256 MiB" rather
/// than "268 MB" ticks.
pub fn nice_ticks(min: f64, max: f64, target: usize, unit: Unit) -> Vec<f64> {
    if !(min.is_finite() && max.is_finite()) || target == 0 {
        return Vec::new();
    }
    let (lo, hi) = if max > min {
        (min, max)
    } else {
        (min - 1.0, min + 1.0)
    };
    let raw = (hi - lo) / target as f64;
    let step = match unit {
        Unit::Bytes | Unit::BytesPerSec if raw >= 1024.0 => {
            let (_, i) = scale_binary(raw);
            let base = 1024f64.powi(i as i32);
            let s = nice_step(raw / base);
            // 1000 MiB reads better as the next binary unit, 1 GiB.
            if s >= 1000.0 { 1024.0 * base } else { s * base }
        }
        _ => nice_step(raw),
    };
    if step <= 0.0 || !step.is_finite() {
        return Vec::new();
    }
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last)
        .take(100)
        .map(|k| {
            let v = k as f64 * step;
            // Snap away float noise such as 0.30000000000000004.
            (v / step).round() * step
        })
        .collect()
}

/// The smallest 1, 2, 5 × 10ⁿ (or 2.5 × 10ⁿ) at or above `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 0.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let n = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 2.5 {
        2.5
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    n * mag
}

/// Rounds `[min, max]` out to the value axis' domain: percent charts keep 0–100 % unless
/// data exceeds it, other charts start at 0 when all data is non-negative, and a flat
/// series gets some room.
pub fn value_domain(min: f64, max: f64, unit: Unit) -> (f64, f64) {
    if !(min.is_finite() && max.is_finite()) {
        return match unit {
            Unit::Percent => (0.0, 1.0),
            _ => (0.0, 1.0),
        };
    }
    let lo = if min >= 0.0 { 0.0 } else { min };
    let hi = match unit {
        Unit::Percent if max <= 1.0 => 1.0,
        _ if max <= lo => lo + 1.0,
        _ => max + (max - lo) * 0.05,
    };
    (lo, hi)
}

/// Time ticks: an interval from a fixed ladder (1 s … 1 d) giving about `target` ticks
/// in `[from_ms, to_ms]`, aligned to multiples of the interval (in local time when
/// `offset_min` is the local UTC offset in minutes).
pub fn time_ticks(from_ms: i64, to_ms: i64, target: usize, offset_min: i32) -> Vec<i64> {
    const LADDER: [i64; 16] = [
        1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000,
        1_800_000, 3_600_000, 7_200_000, 21_600_000, 86_400_000,
    ];
    if to_ms <= from_ms || target == 0 {
        return Vec::new();
    }
    let span = to_ms - from_ms;
    let step = LADDER
        .iter()
        .copied()
        .find(|s| span / s <= target as i64)
        .unwrap_or(86_400_000);
    let off = offset_min as i64 * 60_000;
    let first = (from_ms + off).div_euclid(step) * step - off;
    let mut t = if first < from_ms { first + step } else { first };
    let mut out = Vec::new();
    while t <= to_ms && out.len() < 200 {
        out.push(t);
        t += step;
    }
    out
}

/// "HH:MM:SS" (or "HH:MM" when `seconds` is false) of `ms` shifted by `offset_min`.
pub fn clock(ms: i64, offset_min: i32, seconds: bool) -> String {
    let local = ms.div_euclid(1000) + offset_min as i64 * 60;
    let day_s = local.rem_euclid(86_400);
    let (h, m, s) = (day_s / 3600, day_s / 60 % 60, day_s % 60);
    if seconds {
        format!("{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn significant_digits() {
        assert_eq!(sig3(0.5), "0.5");
        assert_eq!(sig3(12.345), "12.3");
        assert_eq!(sig3(1234.0), "1234");
        assert_eq!(sig3(0.001234), "0.00123");
        assert_eq!(sig3(100.0), "100");
        assert_eq!(sig3(-2.5), "-2.5");
        assert_eq!(sig3(0.0), "0");
        assert_eq!(sig3(-0.0001), "-0.0001");
    }

    #[test]
    fn bytes_use_binary_prefixes() {
        assert_eq!(format_bytes(0.0), "0 B");
        assert_eq!(format_bytes(512.0), "512 B");
        assert_eq!(format_bytes(1536.0), "1.5 KiB");
        assert_eq!(format_bytes(8.0 * 1024.0 * 1024.0 * 1024.0), "8 GiB");
        assert_eq!(
            format_value(3.5 * 1024.0 * 1024.0, Unit::BytesPerSec),
            "3.5 MiB/s"
        );
    }

    #[test]
    fn percent_seconds_and_rates() {
        assert_eq!(format_value(0.4213, Unit::Percent), "42.1 %");
        assert_eq!(format_value(1.0, Unit::Percent), "100 %");
        assert_eq!(format_value(0.000_85, Unit::Seconds), "850 µs");
        assert_eq!(format_value(0.0125, Unit::Seconds), "12.5 ms");
        assert_eq!(format_value(1.25, Unit::Seconds), "1.25 s");
        assert_eq!(format_value(150.0, Unit::Seconds), "2.5 min");
        assert_eq!(format_value(12_300.0, Unit::PerSec), "12.3k /s");
        assert_eq!(format_value(f64::NAN, Unit::Count), "–");
        assert_eq!(format_value(f64::INFINITY, Unit::Seconds), "∞");
    }

    #[test]
    fn durations_and_relative_times() {
        assert_eq!(format_duration(45.0), "45s");
        assert_eq!(format_duration(725.0), "12m 5s");
        assert_eq!(format_duration(600.0), "10m");
        assert_eq!(format_duration(3.0 * 3600.0 + 20.0 * 60.0), "3h 20m");
        assert_eq!(format_duration(7200.0), "2h");
        assert_eq!(format_duration(2.0 * 86_400.0 + 4.0 * 3600.0), "2d 4h");
        assert_eq!(format_duration(-1.0), "–");
        assert_eq!(format_ago(10_000, 9_500), "just now");
        assert_eq!(format_ago(100_000, 95_000), "5s ago");
        assert_eq!(format_ago(4_000_000, 0), "1h ago");
        assert_eq!(format_ago(0, 300_000), "in 5m");
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let t = nice_ticks(0.0, 1.0, 4, Unit::Percent);
        assert_eq!(t, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        let t = nice_ticks(0.0, 97.0, 5, Unit::Count);
        assert_eq!(t, vec![0.0, 20.0, 40.0, 60.0, 80.0]);
        // Bytes: steps are binary multiples (here 1 GiB), not 10⁹.
        let gib = 1024.0 * 1024.0 * 1024.0;
        let t = nice_ticks(0.0, 3.9 * gib, 4, Unit::Bytes);
        assert_eq!(t, vec![0.0, gib, 2.0 * gib, 3.0 * gib]);
        let t = nice_ticks(0.0, 9.0 * 1024.0 * 1024.0, 4, Unit::Bytes);
        assert_eq!(t[1], 2.5 * 1024.0 * 1024.0);
        assert!(nice_ticks(f64::NAN, 1.0, 4, Unit::Count).is_empty());
        // A flat series still gets ticks.
        assert!(!nice_ticks(5.0, 5.0, 4, Unit::Count).is_empty());
    }

    #[test]
    fn domains() {
        assert_eq!(value_domain(0.1, 0.4, Unit::Percent), (0.0, 1.0));
        assert_eq!(value_domain(3.0, 3.0, Unit::Count), (0.0, 3.15));
        assert_eq!(value_domain(0.0, 0.0, Unit::Count), (0.0, 1.0));
        assert_eq!(value_domain(-2.0, 2.0, Unit::Count), (-2.0, 2.2));
        assert_eq!(value_domain(f64::INFINITY, 1.0, Unit::Bytes), (0.0, 1.0));
    }

    #[test]
    fn time_ticks_align_to_the_interval() {
        // 5 minutes with ~6 ticks → one per minute, on whole minutes.
        let from = 1_700_000_012_345;
        let to = from + 300_000;
        let t = time_ticks(from, to, 6, 0);
        assert_eq!(t.len(), 5);
        assert!(t.iter().all(|x| x % 60_000 == 0));
        assert!(t[0] >= from && *t.last().unwrap() <= to);
        // Local offset shifts the alignment: whole local hours at +05:30.
        let t = time_ticks(0, 6 * 3_600_000, 6, 330);
        assert!(
            t.iter().all(|x| (x + 330 * 60_000) % 3_600_000 == 0),
            "{t:?}"
        );
    }

    #[test]
    fn clocks() {
        assert_eq!(clock(0, 0, true), "00:00:00");
        assert_eq!(clock(3_723_000, 0, true), "01:02:03");
        assert_eq!(clock(3_723_000, 60, false), "02:02");
        assert_eq!(clock(0, -60, false), "23:00");
    }
}
