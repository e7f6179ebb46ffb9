//! The time-series chart: two stacked canvases drawn from Rust (series and axes below,
//! crosshair above), a legend with the latest values, and an HTML tooltip.
//!
//! Each series is decimated to one min/max column per pixel before drawing, so the cost
//! of a frame depends on the chart's width, not on how many points it holds. The base
//! canvas is redrawn once per tick (or resize, window or theme change); hovering only
//! redraws the thin crosshair canvas. The plot has a fixed height and the legend a fixed
//! height, so nothing moves when data arrives.

use std::cell::RefCell;

use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement};

use super::Ctx;
use super::live::{self, ExprData};
use crate::format::{Unit, clock, format_value, nice_ticks, time_ticks, value_domain};
use crate::panels::{Panel, panel_expr, render_legend};
use crate::series::SeriesBuffer;
use crate::time::format_local;

const MARGIN_LEFT: f64 = 62.0;
const MARGIN_RIGHT: f64 = 10.0;
const MARGIN_TOP: f64 = 8.0;
const MARGIN_BOTTOM: f64 = 22.0;
const PALETTE: usize = 10;

/// Theme colors read from CSS custom properties (refreshed on theme change).
#[derive(Default, Clone)]
struct Theme {
    version: u32,
    grid: String,
    axis: String,
    crosshair: String,
    surface: String,
    palette: Vec<String>,
    font: String,
}

thread_local! {
    static THEME: RefCell<Option<Theme>> = const { RefCell::new(None) };
}

fn theme(version: u32) -> Theme {
    THEME.with(|t| {
        if let Some(th) = t.borrow().as_ref().filter(|th| th.version == version) {
            return th.clone();
        }
        let style = web_sys::window().and_then(|w| {
            let root = w.document()?.document_element()?;
            w.get_computed_style(&root).ok().flatten()
        });
        let var = |name: &str, fallback: &str| {
            style
                .as_ref()
                .and_then(|s| s.get_property_value(name).ok())
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| fallback.to_string())
        };
        let th = Theme {
            version,
            grid: var("--grid", "rgba(128,128,128,0.2)"),
            axis: var("--axis", "#888"),
            crosshair: var("--crosshair", "rgba(128,128,128,0.6)"),
            surface: var("--surface", "#151b23"),
            palette: (0..PALETTE)
                .map(|i| var(&format!("--c{i}"), "#4c8dff"))
                .collect(),
            font: "11px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif".into(),
        };
        *t.borrow_mut() = Some(th.clone());
        th
    })
}

/// One drawn series, for the legend and tooltip.
#[derive(Debug, Clone, PartialEq)]
struct LegendItem {
    key: String,
    name: String,
    color: usize,
    dashed: bool,
    latest: String,
}

/// One series to draw: (key, legend name, dashed, buffer).
type Drawable<'a> = (String, String, bool, &'a SeriesBuffer);

/// The series of `panel` (for `host`) in drawing order, and the first expression error.
fn panel_series<'a>(
    panel: &Panel,
    interval_ms: i64,
    host: &str,
    store: &'a std::collections::HashMap<String, ExprData>,
) -> (Vec<Drawable<'a>>, Option<String>) {
    let mut out = Vec::new();
    let mut error = None;
    for q in panel.queries {
        let expr = panel_expr(panel, q, interval_ms, host);
        if let Some(d) = store.get(&expr) {
            if let Some(e) = &d.error {
                error.get_or_insert_with(|| e.clone());
            }
            for (key, e) in &d.series {
                out.push((
                    key.clone(),
                    render_legend(q.legend, &e.labels),
                    q.dashed,
                    &e.buf,
                ));
            }
        }
    }
    (out, error)
}

/// Plot geometry shared by the two canvases.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Frame {
    w: f64,
    h: f64,
    from: i64,
    to: i64,
    lo: f64,
    hi: f64,
}

impl Frame {
    fn plot_w(&self) -> f64 {
        (self.w - MARGIN_LEFT - MARGIN_RIGHT).max(1.0)
    }
    fn plot_h(&self) -> f64 {
        (self.h - MARGIN_TOP - MARGIN_BOTTOM).max(1.0)
    }
    fn x(&self, t: i64) -> f64 {
        MARGIN_LEFT + (t - self.from) as f64 / (self.to - self.from).max(1) as f64 * self.plot_w()
    }
    fn t_at(&self, x: f64) -> i64 {
        let f = ((x - MARGIN_LEFT) / self.plot_w()).clamp(0.0, 1.0);
        self.from + (f * (self.to - self.from) as f64) as i64
    }
    fn y(&self, v: f64) -> f64 {
        let span = if self.hi > self.lo {
            self.hi - self.lo
        } else {
            1.0
        };
        MARGIN_TOP + self.plot_h() - (v - self.lo) / span * self.plot_h()
    }
}

fn context_2d(canvas: &HtmlCanvasElement) -> Option<CanvasRenderingContext2d> {
    canvas.get_context("2d").ok()??.dyn_into().ok()
}

/// Sizes the backing store for the device pixel ratio; returns the context scaled to CSS px.
fn prepare(canvas: &HtmlCanvasElement, w: f64, h: f64) -> Option<CanvasRenderingContext2d> {
    let dpr = web_sys::window()
        .map(|w| w.device_pixel_ratio())
        .unwrap_or(1.0)
        .max(1.0);
    let (bw, bh) = ((w * dpr).round() as u32, (h * dpr).round() as u32);
    if canvas.width() != bw {
        canvas.set_width(bw);
    }
    if canvas.height() != bh {
        canvas.set_height(bh);
    }
    let ctx = context_2d(canvas)?;
    let _ = ctx.set_transform(dpr, 0.0, 0.0, dpr, 0.0, 0.0);
    ctx.clear_rect(0.0, 0.0, w, h);
    Some(ctx)
}

/// Short axis labels: no space before %, integers where possible.
fn axis_label(v: f64, unit: Unit) -> String {
    format_value(v, unit).replace(" %", "%")
}

/// Result of drawing the base canvas.
struct Drawn {
    frame: Frame,
    legend: Vec<LegendItem>,
    points: usize,
    last: Option<(i64, f64)>,
    error: Option<String>,
}

#[allow(clippy::too_many_arguments)]
fn draw_base(
    canvas: &HtmlCanvasElement,
    w: f64,
    h: f64,
    panel: &Panel,
    interval_ms: i64,
    host: &str,
    window_ms: i64,
    to: i64,
    th: &Theme,
) -> Option<Drawn> {
    let ctx = prepare(canvas, w, h)?;
    let from = to - window_ms;
    live::with_store(|store| {
        let (series, error) = panel_series(panel, interval_ms, host, store);
        // Value domain over what is visible.
        let mut mm: Option<(f64, f64)> = None;
        for (_, _, _, buf) in &series {
            if let Some((lo, hi)) = buf.range_min_max(from, to) {
                mm = Some(match mm {
                    None => (lo, hi),
                    Some((a, b)) => (a.min(lo), b.max(hi)),
                });
            }
        }
        let (lo, hi) = mm.map_or((0.0, 1.0), |(lo, hi)| value_domain(lo, hi, panel.unit));
        let frame = Frame {
            w,
            h,
            from,
            to,
            lo,
            hi,
        };
        let (pw, ph) = (frame.plot_w(), frame.plot_h());
        ctx.set_font(&th.font);
        ctx.set_line_width(1.0);

        // Horizontal grid and value labels.
        ctx.set_text_align("right");
        ctx.set_text_baseline("middle");
        let y_ticks = nice_ticks(lo, hi, ((ph / 34.0) as usize).max(2), panel.unit);
        ctx.set_stroke_style_str(&th.grid);
        ctx.set_fill_style_str(&th.axis);
        ctx.begin_path();
        for v in &y_ticks {
            let y = frame.y(*v).round() + 0.5;
            ctx.move_to(MARGIN_LEFT, y);
            ctx.line_to(MARGIN_LEFT + pw, y);
            let _ = ctx.fill_text(&axis_label(*v, panel.unit), MARGIN_LEFT - 6.0, y);
        }
        ctx.stroke();

        // Time labels and light vertical grid.
        let offset_min = -(js_sys::Date::new_0().get_timezone_offset() as i32);
        let x_ticks = time_ticks(from, to, ((pw / 84.0) as usize).max(2), offset_min);
        let with_seconds =
            window_ms <= 5 * 60_000 && x_ticks.windows(2).any(|w| (w[1] - w[0]) % 60_000 != 0);
        ctx.set_text_align("center");
        ctx.set_text_baseline("top");
        ctx.begin_path();
        for t in &x_ticks {
            let x = frame.x(*t).round() + 0.5;
            ctx.move_to(x, MARGIN_TOP);
            ctx.line_to(x, MARGIN_TOP + ph);
            let _ = ctx.fill_text(
                &clock(*t, offset_min, with_seconds),
                x,
                MARGIN_TOP + ph + 6.0,
            );
        }
        ctx.stroke();

        // Series, clipped to the plot.
        ctx.save();
        ctx.begin_path();
        ctx.rect(MARGIN_LEFT, MARGIN_TOP - 1.0, pw, ph + 2.0);
        ctx.clip();
        ctx.set_line_width(1.5);
        ctx.set_line_join("round");
        let max_gap = (interval_ms * 5).max(window_ms / 300);
        let mut legend = Vec::with_capacity(series.len());
        let mut points = 0;
        let mut last = None;
        for (i, (key, name, dashed, buf)) in series.iter().enumerate() {
            let color = i % PALETTE;
            ctx.set_stroke_style_str(&th.palette[color]);
            let dash = js_sys::Array::new();
            if *dashed {
                dash.push(&JsValue::from_f64(5.0));
                dash.push(&JsValue::from_f64(4.0));
            }
            let _ = ctx.set_line_dash(&dash);
            let cols = buf.decimate(from, to, pw.max(1.0) as usize, max_gap);
            points += cols.len();
            ctx.begin_path();
            let x0 = MARGIN_LEFT + 0.5;
            for c in &cols {
                let x = x0 + c.x as f64;
                if c.break_before {
                    ctx.move_to(x, frame.y(c.first));
                } else {
                    ctx.line_to(x, frame.y(c.first));
                }
                if c.min != c.max {
                    ctx.line_to(x, frame.y(c.min));
                    ctx.line_to(x, frame.y(c.max));
                }
                ctx.line_to(x, frame.y(c.last));
            }
            // A single point would be invisible as a path: mark it.
            if cols.len() == 1 {
                let c = cols[0];
                ctx.move_to(x0 + c.x as f64 - 2.0, frame.y(c.last));
                ctx.line_to(x0 + c.x as f64 + 2.0, frame.y(c.last));
            }
            ctx.stroke();
            let latest = buf.last();
            if i == 0 {
                last = latest;
            }
            legend.push(LegendItem {
                key: key.clone(),
                name: name.clone(),
                color,
                dashed: *dashed,
                latest: latest
                    .map(|p| format_value(p.1, panel.unit))
                    .unwrap_or_default(),
            });
        }
        ctx.restore();
        Some(Drawn {
            frame,
            legend,
            points,
            last,
            error,
        })
    })
}

fn draw_overlay(
    canvas: &HtmlCanvasElement,
    frame: &Frame,
    hover_t: Option<i64>,
    panel: &Panel,
    interval_ms: i64,
    host: &str,
    th: &Theme,
) {
    let Some(ctx) = prepare(canvas, frame.w, frame.h) else {
        return;
    };
    let Some(t) = hover_t.filter(|t| *t >= frame.from && *t <= frame.to) else {
        return;
    };
    let x = frame.x(t).round() + 0.5;
    ctx.set_stroke_style_str(&th.crosshair);
    ctx.set_line_width(1.0);
    ctx.begin_path();
    ctx.move_to(x, MARGIN_TOP);
    ctx.line_to(x, MARGIN_TOP + frame.plot_h());
    ctx.stroke();
    let max_gap = (interval_ms * 3).max((frame.to - frame.from) / 200);
    live::with_store(|store| {
        let (series, _) = panel_series(panel, interval_ms, host, store);
        for (i, (_, _, _, buf)) in series.iter().enumerate() {
            if let Some((pt, v)) = buf.nearest(t, max_gap) {
                if !v.is_finite() {
                    continue;
                }
                ctx.set_fill_style_str(&th.palette[i % PALETTE]);
                ctx.begin_path();
                let _ = ctx.arc(frame.x(pt), frame.y(v), 3.0, 0.0, std::f64::consts::TAU);
                ctx.fill();
                ctx.set_stroke_style_str(&th.surface);
                ctx.stroke();
            }
        }
    });
}

/// Rows of the tooltip at `t`: (color, name, value text).
fn tooltip_rows(
    panel: &Panel,
    interval_ms: i64,
    host: &str,
    t: i64,
    span: i64,
) -> Vec<(usize, String, String)> {
    let max_gap = (interval_ms * 3).max(span / 200);
    live::with_store(|store| {
        let (series, _) = panel_series(panel, interval_ms, host, store);
        series
            .iter()
            .enumerate()
            .filter_map(|(i, (_, name, _, buf))| {
                let (_, v) = buf.nearest(t, max_gap)?;
                Some((i % PALETTE, name.clone(), format_value(v, panel.unit)))
            })
            .collect()
    })
}

/// A live chart of one Overview panel.
#[component]
pub fn Chart(panel: &'static Panel) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let base_ref = NodeRef::<leptos::html::Canvas>::new();
    let overlay_ref = NodeRef::<leptos::html::Canvas>::new();
    let plot_ref = NodeRef::<leptos::html::Div>::new();
    let size = RwSignal::new((0.0f64, 0.0f64));
    let frame = RwSignal::new(Frame::default());
    let legend = RwSignal::new(Vec::<LegendItem>::new());
    // Latest value per series key, separate from the items so values update in place.
    let values = RwSignal::new(std::collections::HashMap::<String, String>::new());
    let last = RwSignal::new(None::<(i64, f64)>);
    let points = RwSignal::new(0usize);
    let error = RwSignal::new(None::<String>);

    // Track the plot's size without forcing layout on every frame.
    Effect::new(move |_| {
        let Some(div) = plot_ref.get() else { return };
        let el: web_sys::Element = div.into();
        let r = el.get_bounding_client_rect();
        size.set((r.width(), r.height()));
        let cb = Closure::<dyn FnMut(js_sys::Array)>::new(move |entries: js_sys::Array| {
            if let Some(e) = entries.get(0).dyn_ref::<web_sys::ResizeObserverEntry>() {
                let r = e.content_rect();
                size.set((r.width(), r.height()));
            }
        });
        if let Ok(obs) = web_sys::ResizeObserver::new(cb.as_ref().unchecked_ref()) {
            obs.observe(&el);
            // The observer and its callback live until the chart is removed.
            let held = send_wrapper::SendWrapper::new((obs, cb));
            on_cleanup(move || {
                held.0.disconnect();
                drop(held);
            });
        }
    });

    // Base layer: on every tick, resize, window or theme change.
    Effect::new(move |_| {
        ctx.redraw.track();
        let (w, h) = size.get();
        let window_ms = ctx.window_ms.get();
        let interval_ms = ctx.interval_ms.get();
        let host = ctx.host.get();
        let th = theme(ctx.theme.get());
        let Some(canvas) = base_ref.get() else { return };
        if w < 10.0 || h < 10.0 {
            return;
        }
        let to = live::latest_time();
        if let Some(d) = draw_base(&canvas, w, h, panel, interval_ms, &host, window_ms, to, &th) {
            frame.set(d.frame);
            values.set(
                d.legend
                    .iter()
                    .map(|i| (i.key.clone(), i.latest.clone()))
                    .collect(),
            );
            let items: Vec<LegendItem> = d
                .legend
                .into_iter()
                .map(|i| LegendItem {
                    latest: String::new(),
                    ..i
                })
                .collect();
            if legend.with_untracked(|l| *l != items) {
                legend.set(items);
            }
            last.set(d.last);
            points.set(d.points);
            error.set(d.error);
        }
    });

    // Overlay: crosshair shared by all charts.
    Effect::new(move |_| {
        let f = frame.get();
        let hover = ctx.hover.get();
        let th = theme(ctx.theme.get_untracked());
        if let Some(canvas) = overlay_ref.get() {
            draw_overlay(
                &canvas,
                &f,
                hover.map(|h| h.1),
                panel,
                ctx.interval_ms.get_untracked(),
                &ctx.host.get_untracked(),
                &th,
            );
        }
    });

    // Pointer → shared hover time, at most once per animation frame.
    let pending = std::rc::Rc::new(std::cell::Cell::new(None::<f64>));
    let scheduled = std::rc::Rc::new(std::cell::Cell::new(false));
    let on_move = {
        let pending = pending.clone();
        let scheduled = scheduled.clone();
        move |e: web_sys::MouseEvent| {
            pending.set(Some(e.offset_x() as f64));
            if !scheduled.replace(true) {
                let pending = pending.clone();
                let scheduled = scheduled.clone();
                request_animation_frame(move || {
                    scheduled.set(false);
                    if let Some(x) = pending.take() {
                        let f = frame.get_untracked();
                        if x >= MARGIN_LEFT && x <= f.w - MARGIN_RIGHT {
                            ctx.hover.set(Some((panel.id, f.t_at(x), x)));
                        } else {
                            ctx.hover.set(None);
                        }
                    }
                });
            }
        }
    };
    let on_leave = move |_| ctx.hover.set(None);
    // Keyboard: arrows move the crosshair, Escape hides it.
    let on_key = move |e: web_sys::KeyboardEvent| {
        let f = frame.get_untracked();
        let step = ((f.to - f.from) / 60).max(1);
        let cur = ctx
            .hover
            .get_untracked()
            .filter(|h| h.0 == panel.id)
            .map_or(f.to, |h| h.1);
        let t = match e.key().as_str() {
            "ArrowLeft" => cur - step,
            "ArrowRight" => cur + step,
            "Home" => f.from,
            "End" => f.to,
            "Escape" => {
                ctx.hover.set(None);
                return;
            }
            _ => return,
        };
        e.prevent_default();
        let t = t.clamp(f.from, f.to);
        ctx.hover.set(Some((panel.id, t, f.x(t))));
    };
    let on_focus = move |_| {
        let f = frame.get_untracked();
        ctx.hover.set(Some((panel.id, f.to, f.x(f.to))));
    };

    let header_value = move || {
        if panel.queries.len() == 1 {
            values.with(|v| {
                if v.len() == 1 {
                    v.values().next().cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
        } else {
            String::new()
        }
    };
    let aria = move || {
        let latest: Vec<String> = legend.with(|l| {
            values.with(|v| {
                l.iter()
                    .take(6)
                    .map(|i| format!("{} {}", i.name, v.get(&i.key).cloned().unwrap_or_default()))
                    .collect()
            })
        });
        format!("{} chart. Latest: {}", panel.title, latest.join(", "))
    };
    let overlay_text = move || {
        if let Some(e) = error.get() {
            return Some(format!("cannot show this chart: {e}"));
        }
        // Say "waiting" only after a few ticks, so a chart that is about to get data
        // does not flash (and move) a message first.
        if points.get() == 0 && ctx.redraw.get() > 3 {
            return Some(if legend.with(|l| l.is_empty()) {
                panel.empty.to_string()
            } else {
                "no samples in this window".to_string()
            });
        }
        None
    };

    view! {
        <section class="card chart" id=format!("chart-{}", panel.id)
            data-last-t=move || last.get().map(|l| l.0.to_string()).unwrap_or_default()
            data-last-v=move || last.get().map(|l| l.1.to_string()).unwrap_or_default()
            data-points=move || points.get().to_string()>
            <header>
                <h2>{panel.title}</h2>
                <span class="latest">{header_value}</span>
            </header>
            <div class="legend">
                <For each=move || legend.get() key=|i| (i.key.clone(), i.name.clone(), i.color, i.dashed) let:item>
                    {
                        let key = item.key.clone();
                        view! {
                            <span title=item.name.clone()>
                                <i class:dashed=item.dashed style=format!("background: var(--c{})", item.color)></i>
                                {item.name.clone()}
                                " "
                                <b>{move || values.with(|v| v.get(&key).cloned().unwrap_or_default())}</b>
                            </span>
                        }
                    }
                </For>
            </div>
            <div class="plot" node_ref=plot_ref tabindex="0" role="img" aria-label=aria
                on:mousemove=on_move on:mouseleave=on_leave on:keydown=on_key on:focus=on_focus on:blur=move |_| ctx.hover.set(None)>
                <canvas node_ref=base_ref></canvas>
                <canvas node_ref=overlay_ref></canvas>
                {move || overlay_text().map(|t| view! { <div class="overlay"><span>{t}</span></div> })}
                {move || {
                    let (id, t, x) = ctx.hover.get().filter(|h| h.0 == panel.id)?;
                    let f = frame.get_untracked();
                    let rows = tooltip_rows(panel, ctx.interval_ms.get_untracked(), &ctx.host.get_untracked(), t, f.to - f.from);
                    let offset_min = -(js_sys::Date::new_0().get_timezone_offset() as i32);
                    let left = if x > f.w / 2.0 { (x - 200.0).max(0.0) } else { x + 14.0 };
                    let _ = id;
                    Some(view! {
                        <div class="tooltip" style:left=format!("{left}px")>
                            <div class="t">{format_local(t, offset_min)}</div>
                            {rows.into_iter().take(12).map(|(c, name, v)| view! {
                                <div class="row">
                                    <span><i style=format!("background: var(--c{c})")></i>{name}</span>
                                    <b>{v}</b>
                                </div>
                            }).collect_view()}
                        </div>
                    })
                }}
            </div>
        </section>
    }
}
