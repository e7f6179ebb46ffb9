//! The live feed: one WebSocket to `/api/v1/stream`, reconnecting with backoff, the
//! sample store the charts draw from, the firing-alert store, and backfill of gaps
//! through `/api/v1/query_range`.
//!
//! Series data lives outside the reactive graph (a thread-local store; the app is
//! single-threaded) so a tick costs one signal update, not a clone of every buffer.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

use super::{Conn, Ctx, net};
use crate::model::{Alert, AlertList, Labels, build_query};
use crate::panels;
use crate::promql::{backfill_step_ms, parse_query_response};
use crate::protocol::{ClientMsg, ServerMsg, backoff_ms, parse_server_msg};
use crate::series::{SeriesBuffer, capacity_for, series_key};

/// The longest window the Overview offers; buffers keep this much.
pub const MAX_WINDOW_MS: i64 = 3_600_000;
/// Most points a backfill asks for per series.
const BACKFILL_POINTS: i64 = 900;

/// One series of an expression.
pub struct SeriesEntry {
    /// Its labels.
    pub labels: Labels,
    /// Its samples.
    pub buf: SeriesBuffer,
}

/// Everything received for one subscribed expression.
#[derive(Default)]
pub struct ExprData {
    /// Series by key.
    pub series: BTreeMap<String, SeriesEntry>,
    /// The server's last error for it (cleared by the next sample).
    pub error: Option<String>,
}

type AlertListener = Rc<dyn Fn(&str, &Alert)>;
type ResyncListener = Rc<dyn Fn()>;

#[derive(Default)]
struct State {
    ws: Option<WebSocket>,
    on_message: Option<Closure<dyn FnMut(MessageEvent)>>,
    on_close: Option<Closure<dyn FnMut(CloseEvent)>>,
    attempt: u32,
    connected_once: bool,
    last_msg_ms: f64,
    interval_ms: i64,
    clock_offset_ms: f64,
    last_tick: i64,
    ticks_seen: u64,
    exprs: Vec<String>,
    store: HashMap<String, ExprData>,
    alert_listeners: Vec<(u32, AlertListener)>,
    resync_listeners: Vec<(u32, ResyncListener)>,
    next_listener: u32,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State {
        interval_ms: 1000,
        ..State::default()
    });
}

fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

/// Reads the sample store.
pub fn with_store<R>(f: impl FnOnce(&HashMap<String, ExprData>) -> R) -> R {
    STATE.with(|s| f(&s.borrow().store))
}

/// Browser clock (ms).
pub fn local_now() -> f64 {
    js_sys::Date::now()
}

/// The server's clock (ms), estimated from `hello`.
pub fn server_now() -> i64 {
    (local_now() + with_state(|s| s.clock_offset_ms)) as i64
}

/// The latest tick time, or the estimated server clock before the first tick.
pub fn latest_time() -> i64 {
    let t = with_state(|s| s.last_tick);
    if t > 0 { t } else { server_now() }
}

/// Calls `f(kind, alert)` for every alert event until the current owner is cleaned up.
pub fn on_alert(f: impl Fn(&str, &Alert) + 'static) {
    let id = with_state(|s| {
        s.next_listener += 1;
        s.alert_listeners.push((s.next_listener, Rc::new(f)));
        s.next_listener
    });
    on_cleanup(move || with_state(|s| s.alert_listeners.retain(|(i, _)| *i != id)));
}

/// Runs `load` now, after every stream resync, and every `every` while the page that
/// calls it is mounted.
pub fn refresh_while_open(load: impl Fn() + Copy + 'static, every: std::time::Duration) {
    load();
    on_resync(load);
    let handle = leptos::prelude::set_interval_with_handle(load, every).ok();
    on_cleanup(move || {
        if let Some(h) = handle {
            h.clear();
        }
    });
}

/// Calls `f` after a reconnect or lost events, when lists should be reloaded.
pub fn on_resync(f: impl Fn() + 'static) {
    let id = with_state(|s| {
        s.next_listener += 1;
        s.resync_listeners.push((s.next_listener, Rc::new(f)));
        s.next_listener
    });
    on_cleanup(move || with_state(|s| s.resync_listeners.retain(|(i, _)| *i != id)));
}

fn ws_url() -> String {
    let loc = web_sys::window().map(|w| w.location());
    let host = loc
        .as_ref()
        .and_then(|l| l.host().ok())
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let secure = loc
        .and_then(|l| l.protocol().ok())
        .is_some_and(|p| p == "https:");
    format!(
        "{}://{host}/api/v1/stream",
        if secure { "wss" } else { "ws" }
    )
}

/// Starts the feed: connects now and keeps a watchdog that reconnects a silent socket.
pub fn start(ctx: Ctx) {
    connect(ctx);
    set_interval(
        move || watchdog(ctx),
        std::time::Duration::from_millis(1000),
    );
}

fn connect(ctx: Ctx) {
    let ws = match WebSocket::new(&ws_url()) {
        Ok(ws) => ws,
        Err(_) => {
            schedule_reconnect(ctx);
            return;
        }
    };
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
        if let Some(text) = e.data().as_string() {
            on_text(ctx, &text);
        }
    });
    let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |_e: CloseEvent| {
        with_state(|s| s.ws = None);
        schedule_reconnect(ctx);
    });
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    with_state(|s| {
        s.ws = Some(ws);
        s.on_message = Some(on_message);
        s.on_close = Some(on_close);
        s.last_msg_ms = local_now();
    });
    if ctx.conn.get_untracked() != Conn::Live {
        let attempt = with_state(|s| s.attempt);
        if attempt == 0 {
            ctx.conn.set(Conn::Connecting);
        }
    }
}

fn schedule_reconnect(ctx: Ctx) {
    let attempt = with_state(|s| {
        s.attempt = s.attempt.saturating_add(1);
        s.attempt
    });
    let delay = backoff_ms(attempt - 1, js_sys::Math::random());
    ctx.conn.set(Conn::Reconnecting {
        attempt,
        at_ms: local_now() + delay as f64,
    });
    set_timeout(
        move || connect(ctx),
        std::time::Duration::from_millis(delay as u64),
    );
}

fn watchdog(ctx: Ctx) {
    ctx.clock.set(local_now());
    let (silent_for, interval, ws) =
        with_state(|s| (local_now() - s.last_msg_ms, s.interval_ms, s.ws.clone()));
    let limit = (interval as f64 * 5.0).max(6000.0);
    if let Some(ws) = ws
        && ws.ready_state() == WebSocket::OPEN
        && silent_for > limit
    {
        web_sys::console::warn_1(&"watchpost: stream silent, reconnecting".into());
        let _ = ws.close();
    }
}

fn send(msg: &ClientMsg) {
    let text = serde_json::to_string(msg).unwrap_or_default();
    if let Some(ws) = with_state(|s| s.ws.clone()) {
        let _ = ws.send_with_str(&text);
    }
}

fn on_text(ctx: Ctx, text: &str) {
    with_state(|s| s.last_msg_ms = local_now());
    let msg = match parse_server_msg(text) {
        Ok(m) => m,
        Err(e) => {
            web_sys::console::warn_1(&format!("watchpost: bad stream message: {e}").into());
            return;
        }
    };
    match msg {
        ServerMsg::Hello {
            interval_ms,
            server_time,
            ..
        } => on_hello(ctx, interval_ms, server_time),
        ServerMsg::Sample {
            series,
            labels,
            t,
            v,
        } => with_state(|s| {
            // Late samples of an expression just unsubscribed (the host changed).
            if !s.exprs.contains(&series) {
                return;
            }
            let cap = capacity_for(MAX_WINDOW_MS, s.interval_ms);
            let data = s.store.entry(series.clone()).or_default();
            data.error = None;
            let key = series_key(&series, &labels);
            data.series
                .entry(key)
                .or_insert_with(|| SeriesEntry {
                    labels,
                    buf: SeriesBuffer::new(cap),
                })
                .buf
                .push(t, v);
        }),
        ServerMsg::Tick { t } => {
            let prune = with_state(|s| {
                s.last_tick = t;
                s.ticks_seen += 1;
                s.ticks_seen % 60 == 0
            });
            if prune {
                prune_stale(t);
            }
            ctx.redraw.update(|v| *v += 1);
        }
        ServerMsg::Alert { kind, alert } => on_alert_event(ctx, &kind, *alert),
        ServerMsg::Error { series, error } => match series {
            Some(s) => {
                with_state(|st| st.store.entry(s).or_default().error = Some(error));
                ctx.redraw.update(|v| *v += 1);
            }
            None => web_sys::console::warn_1(&format!("watchpost stream: {error}").into()),
        },
        ServerMsg::Lagged { .. } => resync(ctx),
        ServerMsg::Unknown => {}
    }
}

fn on_hello(ctx: Ctx, interval_ms: i64, server_time: i64) {
    let interval_ms = interval_ms.max(50);
    let exprs = panels::overview_exprs(interval_ms, &ctx.host.get_untracked());
    let (reconnect, resume_from) = with_state(|s| {
        if server_time > 0 {
            s.clock_offset_ms = server_time as f64 - local_now();
        }
        if s.interval_ms != interval_ms {
            let cap = capacity_for(MAX_WINDOW_MS, interval_ms);
            for d in s.store.values_mut() {
                for e in d.series.values_mut() {
                    e.buf.set_capacity(cap);
                }
            }
        }
        s.interval_ms = interval_ms;
        s.attempt = 0;
        s.exprs = exprs.clone();
        // Where the data stopped: the gap to fill now.
        let resume = s
            .store
            .values()
            .flat_map(|d| d.series.values())
            .filter_map(|e| e.buf.last().map(|p| p.0))
            .max();
        let reconnect = s.connected_once;
        s.connected_once = true;
        (reconnect, resume)
    });
    ctx.interval_ms.set(interval_ms);
    send(&ClientMsg::Subscribe { series: exprs });
    ctx.conn.set(Conn::Live);
    backfill(ctx, resume_from);
    refresh_firing(ctx);
    if reconnect {
        notify_resync();
    }
}

/// Subscribes to the Overview's expressions for the host now chosen: forgets what the
/// previous ones received and backfills the new ones. While disconnected, the next
/// `hello` subscribes for the new host instead.
pub fn resubscribe(ctx: Ctx) {
    if ctx.conn.get_untracked() != Conn::Live {
        return;
    }
    let exprs = panels::overview_exprs(with_state(|s| s.interval_ms), &ctx.host.get_untracked());
    let changed = with_state(|s| {
        if s.exprs == exprs {
            return false;
        }
        s.store.retain(|k, _| exprs.contains(k));
        s.exprs = exprs.clone();
        true
    });
    if changed {
        send(&ClientMsg::Subscribe { series: exprs });
        ctx.redraw.update(|v| *v += 1);
        backfill(ctx, None);
    }
}

fn on_alert_event(ctx: Ctx, kind: &str, alert: Alert) {
    ctx.firing.update(|list| {
        if alert.state == "firing" {
            crate::model::upsert_alert(list, alert.clone());
        } else {
            list.retain(|a| a.id != alert.id);
        }
    });
    let listeners: Vec<AlertListener> =
        with_state(|s| s.alert_listeners.iter().map(|(_, f)| f.clone()).collect());
    for f in listeners {
        f(kind, &alert);
    }
}

fn notify_resync() {
    let listeners: Vec<ResyncListener> =
        with_state(|s| s.resync_listeners.iter().map(|(_, f)| f.clone()).collect());
    for f in listeners {
        f();
    }
}

fn resync(ctx: Ctx) {
    refresh_firing(ctx);
    notify_resync();
}

/// Reloads the firing alerts (summary strip, nav badge).
pub fn refresh_firing(ctx: Ctx) {
    leptos::task::spawn_local(async move {
        let q = build_query(&[
            ("state".into(), "firing".into()),
            ("limit".into(), "1000".into()),
        ]);
        match net::get(&format!("/api/v1/alerts?{q}")).await {
            Ok(v) => match serde_json::from_value::<AlertList>(v) {
                Ok(list) => {
                    ctx.firing.set(list.alerts);
                    ctx.alerts_error.set(None);
                }
                Err(e) => ctx.alerts_error.set(Some(format!("alert list: {e}"))),
            },
            Err(e) => ctx.alerts_error.set(Some(e.to_string())),
        }
    });
}

/// Fills what the charts lack for the current window: the part before the oldest point
/// and, after a reconnect, the gap since `resume_from`.
pub fn backfill(ctx: Ctx, resume_from: Option<i64>) {
    let window = ctx.window_ms.get_untracked();
    let (interval, exprs) = with_state(|s| (s.interval_ms, s.exprs.clone()));
    let now = server_now();
    let step = backfill_step_ms(window, interval, BACKFILL_POINTS);
    for expr in exprs {
        let first = with_store(|st| {
            st.get(&expr).and_then(|d| {
                d.series
                    .values()
                    .filter_map(|e| e.buf.first())
                    .map(|p| p.0)
                    .min()
            })
        });
        let mut ranges = Vec::new();
        match first {
            None => ranges.push((now - window, now, step)),
            Some(f) if f > now - window + 2 * step => ranges.push((now - window, f, step)),
            Some(_) => {}
        }
        if let Some(r) = resume_from
            && now - r > 2 * interval
            && first.is_some()
        {
            let gap_step = backfill_step_ms(now - r, interval, BACKFILL_POINTS * 2);
            ranges.push((r, now, gap_step));
        }
        for (from, to, step) in ranges {
            let expr = expr.clone();
            leptos::task::spawn_local(async move {
                fill(ctx, &expr, from, to, step).await;
            });
        }
    }
}

async fn fill(ctx: Ctx, expr: &str, from: i64, to: i64, step: i64) {
    let q = build_query(&[
        ("query".into(), expr.to_string()),
        ("start".into(), format!("{:.3}", from as f64 / 1000.0)),
        ("end".into(), format!("{:.3}", to as f64 / 1000.0)),
        ("step".into(), format!("{:.3}", step as f64 / 1000.0)),
    ]);
    let Ok(answer) = net::get(&format!("/api/v1/query_range?{q}")).await else {
        // No history (no engine, or an error): live samples still flow.
        return;
    };
    let Ok(series) = parse_query_response(&answer) else {
        return;
    };
    with_state(|s| {
        if !s.exprs.iter().any(|e| e == expr) {
            return;
        }
        let cap = capacity_for(MAX_WINDOW_MS, s.interval_ms);
        let data = s.store.entry(expr.to_string()).or_default();
        for qs in series {
            let key = series_key(expr, &qs.labels);
            data.series
                .entry(key)
                .or_insert_with(|| SeriesEntry {
                    labels: qs.labels.clone(),
                    buf: SeriesBuffer::new(cap),
                })
                .buf
                .merge(&qs.points);
        }
    });
    ctx.redraw.update(|v| *v += 1);
}

/// Forgets series that stopped reporting longer than the largest window ago.
fn prune_stale(now: i64) {
    with_state(|s| {
        let horizon = now - MAX_WINDOW_MS - 60_000;
        for d in s.store.values_mut() {
            d.series.retain(|_, e| {
                e.buf.trim_before(horizon);
                e.buf.last().is_some_and(|p| p.0 >= horizon)
            });
        }
        let subscribed = s.exprs.clone();
        s.store.retain(|k, _| subscribed.contains(k));
    });
}
