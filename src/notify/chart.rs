//! PNG charts of an alert's expression, drawn in process: plotters on an RGB buffer, the
//! embedded DejaVu Sans font (no system fonts, no browser), encoded with `png`.
//!
//! A chart shows at most [`MAX_SERIES`] series (highlighted ones first, then the largest
//! by last value; the legend counts the others as `+N more`), an optional threshold as a
//! dashed red line, and the firing interval(s) shaded. Time labels are in the configured
//! time zone. No data is a chart saying so, not an error.

pub mod source;

use std::str::FromStr;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Most series drawn in one chart.
pub const MAX_SERIES: usize = 10;
/// Smallest width or height accepted, pixels.
pub const MIN_SIDE: u32 = 200;
/// Largest width or height accepted, pixels.
pub const MAX_SIDE: u32 = 2000;
/// Points per series a chart asks for (the range query's step is window / this).
pub const POINTS: i64 = 240;

/// DejaVu Sans (Bitstream Vera license, `assets/fonts/DejaVuSans.LICENSE`).
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
/// The family name the font is registered under.
const FAMILY: &str = "sans-serif";

/// Ten distinguishable line colours (Tableau 10).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(174, 199, 232),
];
/// Threshold line and firing shade.
const ALERT_RED: RGBColor = RGBColor(214, 39, 40);

/// Why a chart could not be drawn.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChartError {
    /// The embedded font did not load (never expected).
    #[error("chart font: {0}")]
    Font(String),
    /// Drawing failed.
    #[error("chart drawing: {0}")]
    Draw(String),
    /// PNG encoding failed.
    #[error("chart encoding: {0}")]
    Encode(String),
}

/// A chart's size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChartSize {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

impl Default for ChartSize {
    fn default() -> Self {
        ChartSize {
            width: 800,
            height: 450,
        }
    }
}

impl ChartSize {
    /// A size with both sides checked against [`MIN_SIDE`]..=[`MAX_SIDE`]; the error
    /// names the side.
    pub fn new(width: u32, height: u32) -> Result<ChartSize, String> {
        for (name, v) in [("width", width), ("height", height)] {
            if !(MIN_SIDE..=MAX_SIDE).contains(&v) {
                return Err(format!(
                    "{name} {v} is out of range ({MIN_SIDE}..={MAX_SIDE})"
                ));
            }
        }
        Ok(ChartSize { width, height })
    }
}

impl FromStr for ChartSize {
    type Err = String;

    /// `WIDTHxHEIGHT`, e.g. `800x450`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (w, h) = s
            .trim()
            .split_once(['x', 'X'])
            .ok_or_else(|| format!("{s:?} is not WIDTHxHEIGHT (e.g. \"800x450\")"))?;
        let side = |v: &str| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| format!("{s:?} is not WIDTHxHEIGHT (e.g. \"800x450\")"))
        };
        ChartSize::new(side(w)?, side(h)?)
    }
}

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartSeries {
    /// Legend text (the series' labels).
    pub label: String,
    /// `(unix ms, value)` in time order; NaN or a missing step is a gap.
    pub points: Vec<(i64, f64)>,
    /// The alert's own series: drawn bold, always kept; the others faint.
    pub highlight: bool,
}

/// Everything a chart shows.
#[derive(Debug, Clone)]
pub struct ChartSpec {
    /// Caption above the plot.
    pub title: String,
    /// The lines.
    pub series: Vec<ChartSeries>,
    /// Threshold (a dashed red line), if the expression compares with a number.
    pub threshold: Option<f64>,
    /// Firing intervals `(from, to)` in unix ms, shaded.
    pub firing: Vec<(i64, i64)>,
    /// Time axis start, unix ms.
    pub start_ms: i64,
    /// Time axis end, unix ms.
    pub end_ms: i64,
    /// Image size.
    pub size: ChartSize,
    /// Time zone of the time labels.
    pub tz: Tz,
}

/// Problems of the chart settings (`telegram.chart_size`, `telegram.chart_window`),
/// each naming its key.
pub fn validate(config: &crate::config::Config) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = config.telegram.chart_size.parse::<ChartSize>() {
        problems.push(format!("telegram.chart_size: {e}"));
    }
    if config.telegram.chart_window < std::time::Duration::from_secs(60) {
        problems.push("telegram.chart_window: must be at least 1m".into());
    }
    problems
}

/// The chart a notification carries: of its first firing alert from watchpost's rules
/// (of its first resolved one, for a resolved notification); ending at the
/// notification's time, or at the resolve.
pub fn chart_of(n: &crate::dispatch::Notification) -> Option<source::ChartRef> {
    use crate::dispatch::AlertState;
    let alerts = match n.status {
        AlertState::Firing => &n.firing,
        _ => &n.resolved,
    };
    alerts.iter().find_map(|a| {
        let resolved = (a.state != AlertState::Firing)
            .then(|| a.ends_at.map(|t| t.timestamp_millis()))
            .flatten();
        source::ChartRef::for_alert(
            a.id,
            &a.source,
            a.generator_url.as_deref(),
            &a.labels,
            a.starts_at.timestamp_millis(),
            resolved,
            n.at_ms,
        )
    })
}

/// Registers the embedded font once; later calls return the first outcome.
fn font() -> Result<(), ChartError> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
                .map_err(|_| "the embedded DejaVu Sans is not a valid font".to_string())
        })
        .clone()
        .map_err(ChartError::Font)
}

fn draw_err<E: std::fmt::Debug>(e: E) -> ChartError {
    ChartError::Draw(format!("{e:?}"))
}

/// Renders `spec` as a PNG (RGB, 8 bits).
pub fn render_png(spec: &ChartSpec) -> Result<Vec<u8>, ChartError> {
    font()?;
    let (w, h) = (spec.size.width, spec.size.height);
    let mut rgb = vec![255u8; (w as usize) * (h as usize) * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let (shown, hidden) = pick_series(&spec.series);
        match y_range(&shown, spec.threshold) {
            Some(y) => draw_chart(&root, spec, &shown, hidden, y)?,
            None => draw_no_data(&root, spec)?,
        }
        root.present().map_err(draw_err)?;
    }
    encode(&rgb, w, h)
}

/// `rgb` (`w`×`h`, 3 bytes a pixel) as PNG bytes.
fn encode(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>, ChartError> {
    let mut out = Vec::with_capacity(rgb.len() / 8);
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let mut writer = enc
        .write_header()
        .map_err(|e| ChartError::Encode(e.to_string()))?;
    writer
        .write_image_data(rgb)
        .map_err(|e| ChartError::Encode(e.to_string()))?;
    writer
        .finish()
        .map_err(|e| ChartError::Encode(e.to_string()))?;
    Ok(out)
}

/// The series drawn (highlighted first, then the largest by last value, at most
/// [`MAX_SERIES`]) and how many were left out.
fn pick_series(all: &[ChartSeries]) -> (Vec<&ChartSeries>, usize) {
    let last = |s: &ChartSeries| {
        s.points
            .iter()
            .rev()
            .map(|p| p.1)
            .find(|v| v.is_finite())
            .unwrap_or(f64::NEG_INFINITY)
    };
    let mut order: Vec<&ChartSeries> = all.iter().collect();
    order.sort_by(|a, b| {
        b.highlight
            .cmp(&a.highlight)
            .then_with(|| last(b).total_cmp(&last(a)))
    });
    let hidden = order.len().saturating_sub(MAX_SERIES);
    order.truncate(MAX_SERIES);
    (order, hidden)
}

/// The value axis: every finite value and the threshold, padded; `None` without data.
fn y_range(series: &[&ChartSeries], threshold: Option<f64>) -> Option<std::ops::Range<f64>> {
    let values = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|v| v.is_finite());
    let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return None;
    }
    if let Some(t) = threshold.filter(|t| t.is_finite()) {
        lo = lo.min(t);
        hi = hi.max(t);
    }
    let pad = if hi > lo {
        (hi - lo) * 0.08
    } else {
        (hi.abs() * 0.1).max(1.0)
    };
    Some((lo - pad)..(hi + pad))
}

/// A time label in `tz`: `HH:MM`, with the date for windows over a day.
fn time_label(ms: i64, span_ms: i64, tz: Tz) -> String {
    let Some(t) = DateTime::<Utc>::from_timestamp_millis(ms) else {
        return String::new();
    };
    let local = t.with_timezone(&tz);
    if span_ms > 86_400_000 {
        local.format("%m-%d %H:%M").to_string()
    } else if span_ms <= 600_000 {
        local.format("%H:%M:%S").to_string()
    } else {
        local.format("%H:%M").to_string()
    }
}

/// A value label: short, with SI suffixes for large and small magnitudes.
pub fn value_label(v: f64) -> String {
    let a = v.abs();
    let (scaled, suffix) = if a >= 1e12 {
        (v / 1e12, "T")
    } else if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e4 {
        (v / 1e3, "k")
    } else if a != 0.0 && a < 1e-3 {
        return format!("{v:.1e}");
    } else {
        (v, "")
    };
    let text = format!("{scaled:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{suffix}")
}

/// The pieces of a series between gaps: NaN values, or missing steps (a jump of more
/// than twice the usual spacing).
fn segments(points: &[(i64, f64)]) -> Vec<Vec<(i64, f64)>> {
    let mut gaps: Vec<i64> = points.windows(2).map(|w| w[1].0 - w[0].0).collect();
    gaps.sort_unstable();
    let usual = gaps.get(gaps.len() / 2).copied().unwrap_or(0);
    let mut out: Vec<Vec<(i64, f64)>> = Vec::new();
    let mut current: Vec<(i64, f64)> = Vec::new();
    for &(t, v) in points {
        let jumped = current
            .last()
            .is_some_and(|&(prev, _)| usual > 0 && t - prev > usual * 2);
        if !v.is_finite() || jumped {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            if !v.is_finite() {
                continue;
            }
        }
        current.push((t, v));
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// Tick spacings of the time axis, ms.
const TIME_STEPS: [i64; 16] = [
    10_000,
    30_000,
    60_000,
    120_000,
    300_000,
    600_000,
    900_000,
    1_800_000,
    3_600_000,
    7_200_000,
    10_800_000,
    21_600_000,
    43_200_000,
    86_400_000,
    172_800_000,
    604_800_000,
];

/// Round times (in `tz`) from `start` to `end`, at most `max` of them.
fn time_ticks(start: i64, end: i64, max: i64, tz: Tz) -> Vec<i64> {
    use chrono::Offset;
    let span = (end - start).max(1);
    let step = TIME_STEPS
        .iter()
        .copied()
        .find(|s| span / s <= max)
        .unwrap_or(span / max.max(1) + 1);
    let offset = DateTime::<Utc>::from_timestamp_millis(start)
        .map(|t| i64::from(t.with_timezone(&tz).offset().fix().local_minus_utc()) * 1000)
        .unwrap_or(0);
    let first = (start + offset).div_euclid(step) * step + step - offset;
    (0..)
        .map(|k| first + k * step)
        .take_while(|t| *t <= end)
        .collect()
}

fn draw_chart(
    root: &Area<'_>,
    spec: &ChartSpec,
    shown: &[&ChartSeries],
    hidden: usize,
    y: std::ops::Range<f64>,
) -> Result<(), ChartError> {
    let (start, end) = (spec.start_ms, spec.end_ms.max(spec.start_ms + 1));
    let span = end - start;
    let big = spec.size.height >= 400;
    let (title_px, label_px) = if big { (20, 13) } else { (15, 11) };
    let max_ticks = i64::from(spec.size.width / 110).max(2);
    let ticks = time_ticks(start, end, max_ticks, spec.tz);
    let mut chart = ChartBuilder::on(root)
        .caption(shorten(&spec.title, 90), (FAMILY, title_px))
        .margin(12)
        .margin_right(28)
        .x_label_area_size(if big { 40 } else { 30 })
        .y_label_area_size(if big { 60 } else { 48 })
        .build_cartesian_2d((start..end).with_key_points(ticks), y.clone())
        .map_err(draw_err)?;
    let x_fmt = |x: &i64| time_label(*x, span, spec.tz);
    let y_fmt = |v: &f64| value_label(*v);
    chart
        .configure_mesh()
        .y_labels(6)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style((FAMILY, label_px))
        .x_desc(spec.tz.name())
        .axis_desc_style((FAMILY, label_px))
        .light_line_style(RGBColor(245, 245, 245))
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()
        .map_err(draw_err)?;

    // An alert that has just fired still gets a visible band (4 px).
    let min_width = span * 4 / i64::from(spec.size.width.max(1));
    let shade = ALERT_RED.mix(0.15).filled();
    let shades: Vec<_> = spec
        .firing
        .iter()
        .filter_map(|&(from, to)| {
            let b = to.min(end);
            let a = from.max(start).min(b - min_width).max(start);
            (a < b).then(|| Rectangle::new([(a, y.start), (b, y.end)], shade))
        })
        .collect();
    let any_shade = !shades.is_empty();
    chart.draw_series(shades).map_err(draw_err)?;

    let own = shown.iter().position(|s| s.highlight);
    let legend_line = |style: ShapeStyle| {
        move |(x, y): (i32, i32)| PathElement::new(vec![(x, y), (x + 18, y)], style)
    };
    match own {
        // The alert's series bold on top, the others faint and counted in one entry.
        Some(own) => {
            let faint = RGBColor(120, 120, 120).mix(0.45).stroke_width(1);
            let others: Vec<&ChartSeries> = shown
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != own)
                .map(|(_, s)| *s)
                .collect();
            for s in &others {
                chart
                    .draw_series(
                        segments(&s.points)
                            .into_iter()
                            .map(|seg| PathElement::new(seg, faint)),
                    )
                    .map_err(draw_err)?;
            }
            let bold = PALETTE[0].stroke_width(3);
            chart
                .draw_series(
                    segments(&shown[own].points)
                        .into_iter()
                        .map(|seg| PathElement::new(seg, bold)),
                )
                .map_err(draw_err)?
                .label(shorten(&shown[own].label, 70))
                .legend(legend_line(bold));
            if !others.is_empty() {
                let n = others.len();
                chart
                    .draw_series(std::iter::empty::<PathElement<(i64, f64)>>())
                    .map_err(draw_err)?
                    .label(format!("{n} other series"))
                    .legend(legend_line(faint));
            }
        }
        None => {
            for (i, s) in shown.iter().enumerate() {
                let style = PALETTE[i % PALETTE.len()].stroke_width(2);
                chart
                    .draw_series(
                        segments(&s.points)
                            .into_iter()
                            .map(|seg| PathElement::new(seg, style)),
                    )
                    .map_err(draw_err)?
                    .label(shorten(&s.label, 70))
                    .legend(legend_line(style));
            }
        }
    }
    if let Some(t) = spec.threshold.filter(|t| t.is_finite()) {
        let style = ALERT_RED.stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(start, t), (end, t)],
                8,
                5,
                style,
            ))
            .map_err(draw_err)?
            .label(format!("threshold {}", value_label(t)))
            .legend(legend_line(style));
    }
    if any_shade {
        chart
            .draw_series(std::iter::empty::<PathElement<(i64, f64)>>())
            .map_err(draw_err)?
            .label("firing")
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 18, y + 6)], shade));
    }
    if hidden > 0 {
        chart
            .draw_series(std::iter::empty::<PathElement<(i64, f64)>>())
            .map_err(draw_err)?
            .label(format!("+{hidden} more"));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FAMILY, label_px))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .draw()
        .map_err(draw_err)?;
    Ok(())
}

/// A chart without data: the title and "no data" over an empty frame.
fn draw_no_data(root: &Area<'_>, spec: &ChartSpec) -> Result<(), ChartError> {
    let (w, h) = (spec.size.width as i32, spec.size.height as i32);
    let title = TextStyle::from((FAMILY, 20).into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    root.draw(&Text::new(shorten(&spec.title, 90), (w / 2, 12), title))
        .map_err(draw_err)?;
    root.draw(&Rectangle::new(
        [(40, 50), (w - 20, h - 30)],
        RGBColor(200, 200, 200).stroke_width(1),
    ))
    .map_err(draw_err)?;
    let middle = TextStyle::from((FAMILY, 28).into_font())
        .color(&RGBColor(120, 120, 120))
        .pos(Pos::new(HPos::Center, VPos::Center));
    root.draw(&Text::new("no data", (w / 2, h / 2), middle))
        .map_err(draw_err)?;
    let span = spec.end_ms - spec.start_ms;
    let small = TextStyle::from((FAMILY, 13).into_font())
        .color(&RGBColor(120, 120, 120))
        .pos(Pos::new(HPos::Center, VPos::Bottom));
    let range = format!(
        "{} – {} ({})",
        time_label(spec.start_ms, span.max(86_400_001), spec.tz),
        time_label(spec.end_ms, span.max(86_400_001), spec.tz),
        spec.tz.name()
    );
    root.draw(&Text::new(range, (w / 2, h - 8), small))
        .map_err(draw_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1-hour chart of `n` series with 240 points each.
    pub(crate) fn sample_spec(n: usize) -> ChartSpec {
        let end = 1_700_000_000_000i64;
        let start = end - 3_600_000;
        let series = (0..n)
            .map(|i| ChartSeries {
                label: format!("{{instance=\"host-{i}:9100\"}}"),
                points: (0..240)
                    .map(|k| {
                        let t = start + k * 15_000;
                        (
                            t,
                            50.0 + 10.0 * ((k as f64 / 20.0) + i as f64).sin() + i as f64,
                        )
                    })
                    .collect(),
                highlight: i == 0,
            })
            .collect();
        ChartSpec {
            title: "HighLoad: node_load1 > 55".into(),
            series,
            threshold: Some(55.0),
            firing: vec![(end - 900_000, end)],
            start_ms: start,
            end_ms: end,
            size: ChartSize::default(),
            tz: chrono_tz::Europe::Berlin,
        }
    }

    fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let dec = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    fn colours(rgb: &[u8]) -> usize {
        rgb.chunks(3)
            .map(|p| (p[0], p[1], p[2]))
            .collect::<std::collections::HashSet<_>>()
            .len()
    }

    #[test]
    fn renders_a_decodable_png_of_the_size_with_many_colours() {
        let png_bytes = render_png(&sample_spec(14)).unwrap();
        let (w, h, rgb) = decode(&png_bytes);
        assert_eq!((w, h), (800, 450));
        assert!(colours(&rgb) > 50, "{} colours", colours(&rgb));
    }

    #[test]
    fn no_data_is_a_chart() {
        let mut spec = sample_spec(0);
        spec.size = ChartSize::new(300, 200).unwrap();
        let (w, h, rgb) = decode(&render_png(&spec).unwrap());
        assert_eq!((w, h), (300, 200));
        let non_white = rgb.chunks(3).filter(|p| p != &[255, 255, 255]).count();
        assert!(non_white > 200, "{non_white}");
    }

    #[test]
    fn sizes_parse_and_are_bounded() {
        assert_eq!(
            "640x360".parse::<ChartSize>(),
            Ok(ChartSize {
                width: 640,
                height: 360
            })
        );
        assert!(
            "640"
                .parse::<ChartSize>()
                .unwrap_err()
                .contains("WIDTHxHEIGHT")
        );
        assert!(
            "100x360"
                .parse::<ChartSize>()
                .unwrap_err()
                .contains("width 100")
        );
        assert!(
            "640x2001"
                .parse::<ChartSize>()
                .unwrap_err()
                .contains("height 2001")
        );
    }

    #[test]
    fn bad_chart_settings_name_their_key() {
        let c = crate::config::Config::from_toml(
            "[telegram]\nchart_size = \"100x450\"\nchart_window = \"10s\"\n",
        )
        .unwrap();
        let problems = crate::validate_config(&c).unwrap_err().to_string();
        assert!(
            problems.contains("telegram.chart_size: width 100 is out of range"),
            "{problems}"
        );
        assert!(problems.contains("telegram.chart_window: must be at least 1m"));
        let ok = crate::config::Config::from_toml("[telegram]\nchart_size = \"640x360\"\n");
        assert!(validate(&ok.unwrap()).is_empty());
    }

    #[test]
    fn keeps_the_highlighted_and_largest_series() {
        let spec = sample_spec(14);
        let (shown, hidden) = pick_series(&spec.series);
        assert_eq!((shown.len(), hidden), (MAX_SERIES, 4));
        assert!(shown[0].highlight);
        let last = |s: &ChartSeries| s.points.last().unwrap().1;
        let lasts: Vec<f64> = shown[1..].iter().map(|s| last(s)).collect();
        assert!(lasts.windows(2).all(|w| w[0] >= w[1]), "{lasts:?}");
        let least = lasts[lasts.len() - 1];
        let left_out = spec
            .series
            .iter()
            .filter(|s| !shown.iter().any(|k| k.label == s.label));
        assert!(left_out.into_iter().all(|s| last(s) <= least));
    }

    #[test]
    fn gaps_split_lines() {
        let pts = vec![
            (0, 1.0),
            (10, 2.0),
            (20, f64::NAN),
            (30, 3.0),
            (40, 4.0),
            (100, 5.0),
        ];
        let segs = segments(&pts);
        assert_eq!(segs.len(), 3, "{segs:?}");
    }

    #[test]
    fn time_ticks_are_round_in_the_zone() {
        // 2023-11-14 22:13:20 UTC; Kolkata is UTC+5:30.
        let start = 1_700_000_000_000i64;
        let ticks = time_ticks(start, start + 3_600_000, 7, chrono_tz::Asia::Kolkata);
        assert_eq!(ticks.len(), 6, "{ticks:?}");
        for t in &ticks {
            let label = time_label(*t, 3_600_000, chrono_tz::Asia::Kolkata);
            assert!(label.ends_with('0'), "{label}");
        }
    }

    #[test]
    fn value_labels_are_short() {
        assert_eq!(value_label(90.0), "90");
        assert_eq!(value_label(0.25), "0.25");
        assert_eq!(value_label(12_500.0), "12.5k");
        assert_eq!(value_label(3.2e9), "3.2G");
    }
}
