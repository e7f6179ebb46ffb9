//! The UI (wasm32 only): app shell, client-side routing, shared context, pages.

mod agents;
mod alerts;
mod chart;
mod cluster;
mod heartbeats;
mod history;
mod live;
mod net;
mod overview;
mod postgres;
mod rules;
mod session;
mod silence_form;
mod silences;

use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

use crate::model::{Alert, Who, parse_query, severity_counts};
use crate::route::Page;
use crate::time::format_local;

/// State of the live connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Conn {
    /// First connection attempt.
    Connecting,
    /// Receiving.
    Live,
    /// Lost; the next attempt is at `at_ms` (browser clock).
    Reconnecting {
        /// Consecutive failures.
        attempt: u32,
        /// When the next attempt starts.
        at_ms: f64,
    },
}

/// A transient message in the corner.
#[derive(Debug, Clone, PartialEq)]
pub struct Toast {
    id: u64,
    text: String,
    kind: &'static str,
}

/// Signals shared by every page. `Copy`, so closures capture it freely.
#[derive(Clone, Copy)]
pub struct Ctx {
    /// Current URL path.
    pub path: RwSignal<String>,
    /// Current query string (without `?`).
    pub query: RwSignal<String>,
    /// Live connection state.
    pub conn: RwSignal<Conn>,
    /// Whether a token is set (the token itself stays in session storage).
    pub has_token: RwSignal<bool>,
    /// Firing alerts (strip, nav badge).
    pub firing: RwSignal<Vec<Alert>>,
    /// Why the firing list could not be loaded.
    pub alerts_error: RwSignal<Option<String>>,
    /// Bumped whenever chart data changed (tick, backfill).
    pub redraw: RwSignal<u64>,
    /// The server's collection interval.
    pub interval_ms: RwSignal<i64>,
    /// The Overview's time window.
    pub window_ms: RwSignal<i64>,
    /// The Overview's host (`?host=`): "" for this server, else an agent's name.
    pub host: RwSignal<String>,
    /// Browser clock, updated every second (relative times, countdowns).
    pub clock: RwSignal<f64>,
    /// Shared chart crosshair: (chart id, time, x in CSS px) of the pointer.
    pub hover: RwSignal<Option<(&'static str, i64, f64)>>,
    /// Bumped when the OS switches between dark and light.
    pub theme: RwSignal<u32>,
    /// The token dialog is open.
    pub token_dialog: RwSignal<bool>,
    /// Who the saved token signs in as.
    pub who: RwSignal<Option<Who>>,
    toasts: RwSignal<Vec<Toast>>,
}

impl Ctx {
    /// The current page.
    pub fn page(&self) -> Page {
        Page::parse(&self.path.get())
    }

    /// Query parameters of the current URL.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        parse_query(&self.query.get())
    }

    /// Shows a message for a few seconds.
    pub fn toast(&self, text: impl Into<String>, kind: &'static str) {
        let id = (js_sys::Math::random() * 1e15) as u64;
        let toasts = self.toasts;
        toasts.update(|t| {
            t.push(Toast {
                id,
                text: text.into(),
                kind,
            });
            if t.len() > 4 {
                t.remove(0);
            }
        });
        set_timeout(
            move || toasts.update(|t| t.retain(|x| x.id != id)),
            std::time::Duration::from_millis(if kind == "error" { 8000 } else { 4000 }),
        );
    }
}

/// The browser's offset from UTC, in minutes.
pub fn local_offset() -> i32 {
    -(js_sys::Date::new_0().get_timezone_offset() as i32)
}

/// An RFC 3339 time as "3s ago" (ticking with the clock), the local time as its
/// tooltip; "never" when absent.
pub fn ago(ctx: Ctx, rfc: Option<String>) -> impl IntoView {
    let ms = rfc
        .as_deref()
        .and_then(crate::time::parse_rfc3339)
        .filter(|t| *t > 0);
    let title = ms
        .map(|m| format_local(m, local_offset()))
        .unwrap_or_default();
    view! {
        <span class="num" title=title>
            {move || ms.map(|m| crate::format::format_ago(ctx.clock.get() as i64, m)).unwrap_or_else(|| "never".into())}
        </span>
    }
}

/// Navigates within the app (pushes history, no reload).
pub fn navigate(ctx: Ctx, url: &str) {
    if let Some(w) = web_sys::window()
        && let Ok(h) = w.history()
    {
        let _ = h.push_state_with_url(&JsValue::NULL, "", Some(url));
    }
    sync_location(ctx);
    if let Some(w) = web_sys::window() {
        w.scroll_to_with_x_and_y(0.0, 0.0);
    }
}

/// Replaces the query string of the current entry (filters), without a new history entry.
pub fn replace_query(ctx: Ctx, query: &str) {
    let path = ctx.path.get_untracked();
    let url = if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    };
    if let Some(w) = web_sys::window()
        && let Ok(h) = w.history()
    {
        let _ = h.replace_state_with_url(&JsValue::NULL, "", Some(&url));
    }
    ctx.query.set(query.to_string());
}

fn sync_location(ctx: Ctx) {
    let Some(loc) = web_sys::window().map(|w| w.location()) else {
        return;
    };
    let path = loc.pathname().unwrap_or_else(|_| "/".into());
    let query = loc
        .search()
        .unwrap_or_default()
        .trim_start_matches('?')
        .to_string();
    if ctx.path.get_untracked() != path {
        ctx.path.set(path);
    }
    if ctx.query.get_untracked() != query {
        ctx.query.set(query);
    }
}

/// Makes plain same-origin `<a href>` clicks navigate client-side.
fn intercept_links(ctx: Ctx) {
    let handler = Closure::<dyn FnMut(web_sys::MouseEvent)>::new(move |e: web_sys::MouseEvent| {
        if e.default_prevented()
            || e.button() != 0
            || e.meta_key()
            || e.ctrl_key()
            || e.shift_key()
            || e.alt_key()
        {
            return;
        }
        let mut node = e
            .target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok());
        while let Some(el) = node {
            if let Ok(a) = el.clone().dyn_into::<web_sys::HtmlAnchorElement>() {
                let href = a.get_attribute("href").unwrap_or_default();
                let external = !href.starts_with('/')
                    || href.starts_with("//")
                    || a.target() == "_blank"
                    || a.has_attribute("download")
                    || a.has_attribute("data-external")
                    || href.starts_with("/api/")
                    || href.starts_with("/metrics");
                if !external {
                    e.prevent_default();
                    navigate(ctx, &href);
                }
                return;
            }
            node = el.parent_element();
        }
    });
    if let Some(doc) = web_sys::window().and_then(|w| w.document()) {
        let _ = doc.add_event_listener_with_callback("click", handler.as_ref().unchecked_ref());
    }
    handler.forget();
}

/// Watches `prefers-color-scheme` so canvases pick up the new colors.
fn watch_theme(ctx: Ctx) {
    let Some(mql) = web_sys::window()
        .and_then(|w| w.match_media("(prefers-color-scheme: light)").ok())
        .flatten()
    else {
        return;
    };
    let cb = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
        ctx.theme.update(|t| *t += 1);
    });
    let _ = mql.add_event_listener_with_callback("change", cb.as_ref().unchecked_ref());
    cb.forget();
}

/// Entry point: mounts the app.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    if let Some(boot) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id("boot"))
    {
        boot.remove();
    }
    leptos::mount::mount_to_body(App);
}

#[component]
fn App() -> impl IntoView {
    let initial_query = parse_query(
        &web_sys::window()
            .and_then(|w| w.location().search().ok())
            .unwrap_or_default(),
    );
    let ctx = Ctx {
        path: RwSignal::new(String::from("/")),
        query: RwSignal::new(String::new()),
        conn: RwSignal::new(Conn::Connecting),
        has_token: RwSignal::new(session::token().is_some()),
        firing: RwSignal::new(Vec::new()),
        alerts_error: RwSignal::new(None),
        redraw: RwSignal::new(0),
        interval_ms: RwSignal::new(1000),
        window_ms: RwSignal::new(overview::window_from_query(&initial_query)),
        host: RwSignal::new(
            if Page::parse(
                &web_sys::window()
                    .and_then(|w| w.location().pathname().ok())
                    .unwrap_or_default(),
            ) == Page::Overview
            {
                overview::host_from_query(&initial_query)
            } else {
                String::new()
            },
        ),
        clock: RwSignal::new(live::local_now()),
        hover: RwSignal::new(None),
        theme: RwSignal::new(0),
        token_dialog: RwSignal::new(false),
        who: RwSignal::new(None),
        toasts: RwSignal::new(Vec::new()),
    };
    provide_context(ctx);
    if ctx.has_token.get_untracked() {
        leptos::task::spawn_local(async move {
            ctx.who.set(
                net::get("/api/v1/whoami")
                    .await
                    .ok()
                    .and_then(|v| serde_json::from_value(v).ok()),
            );
        });
    }
    sync_location(ctx);
    let _ = window_event_listener(leptos::ev::popstate, move |_| sync_location(ctx));
    intercept_links(ctx);
    watch_theme(ctx);
    live::start(ctx);

    // Widening the window fetches the older history.
    Effect::new(move |prev: Option<i64>| {
        let w = ctx.window_ms.get();
        if prev.is_some_and(|p| p < w) {
            live::backfill(ctx, None);
        }
        w
    });
    // On the Overview, the host follows `?host=` (selector, links, back and forward);
    // another host re-subscribes the host charts.
    Effect::new(move |_| {
        if ctx.page() == Page::Overview {
            let host = overview::host_from_query(&ctx.query_pairs());
            if host != ctx.host.get_untracked() {
                ctx.host.set(host);
            }
        }
    });
    Effect::new(move |prev: Option<String>| {
        let host = ctx.host.get();
        if prev.is_some_and(|p| p != host) {
            live::resubscribe(ctx);
        }
        host
    });
    // Document title follows the page.
    Effect::new(move |_| {
        let title = ctx.page().title();
        if let Some(d) = web_sys::window().and_then(|w| w.document()) {
            d.set_title(&title);
        }
    });

    view! {
        <TopBar/>
        <main class="page" id="main">
            {move || match ctx.page() {
                Page::Overview => view! { <overview::Overview/> }.into_any(),
                Page::Alerts(_) => view! { <alerts::AlertsPage/> }.into_any(),
                Page::History => view! { <history::HistoryPage/> }.into_any(),
                Page::Rules => view! { <rules::RulesPage/> }.into_any(),
                Page::Silences => view! { <silences::SilencesPage/> }.into_any(),
                Page::Cluster => view! { <cluster::ClusterPage/> }.into_any(),
                Page::Postgres => view! { <postgres::PostgresPage/> }.into_any(),
                Page::Heartbeats => view! { <heartbeats::HeartbeatsPage/> }.into_any(),
                Page::Agents => view! { <agents::AgentsPage/> }.into_any(),
                Page::NotFound => view! {
                    <div class="card empty">
                        <p>"There is no page at " <code>{move || ctx.path.get()}</code> "."</p>
                        <p><a href="/">"Go to the overview"</a></p>
                    </div>
                }.into_any(),
            }}
        </main>
        <TokenDialog/>
        <Toasts/>
    }
}

const LOGO: &str = r##"<svg viewBox="0 0 32 32" aria-hidden="true"><rect width="32" height="32" rx="7" fill="#f59e0b"/><path d="M6 20l6-8 5 6 4-5 5 7" stroke="#111" stroke-width="3" fill="none" stroke-linecap="round" stroke-linejoin="round"/></svg>"##;

const KEY_ICON: &str = r##"<svg class="icon" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true"><circle cx="8" cy="15" r="4"/><path d="M10.8 12.2 20 3m-4 4 3 3m-6-1 2 2"/></svg>"##;

#[component]
fn TopBar() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let section = Memo::new(move |_| ctx.page().section());
    let link = move |href: &'static str, name: &'static str, label: &'static str| {
        view! {
            <a href=href style="position:relative" aria-current=move || (section.get() == name).then_some("page")>
                {label}
                {(name == "alerts").then(|| view! {
                    <span class="count" aria-label="firing alerts needing attention"
                        style:visibility={move || if attention(ctx) > 0 { "visible" } else { "hidden" }}>
                        {move || attention(ctx)}
                    </span>
                })}
            </a>
        }
    };
    view! {
        <header class="topbar">
            <a class="brand" href="/" aria-label="watchpost overview">
                <span inner_html=LOGO style="display:contents"></span>
                <span>"watchpost"</span>
            </a>
            <nav class="nav" aria-label="Pages">
                {link("/", "overview", "Overview")}
                {link("/alerts", "alerts", "Alerts")}
                {link("/history", "history", "History")}
                {link("/rules", "rules", "Rules")}
                {link("/silences", "silences", "Silences")}
                {link("/cluster", "cluster", "Cluster")}
                {link("/postgres", "postgres", "PostgreSQL")}
                {link("/heartbeats", "heartbeats", "Heartbeats")}
                {link("/agents", "agents", "Agents")}
            </nav>
            <div class="spacer"></div>
            <ConnStatus/>
            <button class="ghost tokenbtn" title="Access token" data-set=move || ctx.has_token.get().to_string()
                aria-label=move || if ctx.has_token.get() { "Access token (set)" } else { "Access token (read-only)" }
                on:click=move |_| ctx.token_dialog.set(true)>
                <span inner_html=KEY_ICON style="display:contents"></span>
                <span class="label" id="signed-in">{move || match (ctx.has_token.get(), ctx.who.get()) {
                    (true, Some(w)) => w.label(ctx.clock.get() as i64),
                    (true, None) => "token set".to_string(),
                    (false, _) => "read-only".to_string(),
                }}</span>
            </button>
        </header>
    }
}

/// Firing alerts that are neither acknowledged nor silenced.
fn attention(ctx: Ctx) -> usize {
    ctx.firing
        .with(|f| f.iter().filter(|a| a.needs_attention()).count())
}

#[component]
fn ConnStatus() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let state = move || match ctx.conn.get() {
        Conn::Connecting => "connecting",
        Conn::Live => "live",
        Conn::Reconnecting { .. } => "reconnecting",
    };
    let label = move || match ctx.conn.get() {
        Conn::Connecting => "connecting…".to_string(),
        Conn::Live => "live".to_string(),
        Conn::Reconnecting { attempt, at_ms } => {
            let secs = ((at_ms - ctx.clock.get()) / 1000.0).ceil().max(0.0);
            if secs >= 1.0 {
                format!("reconnecting in {secs}s (#{attempt})")
            } else {
                format!("reconnecting… (#{attempt})")
            }
        }
    };
    view! {
        <span class="conn" data-state=state role="status" aria-live="polite" id="conn">
            <span class="dot"></span>
            <span class="label">{label}</span>
        </span>
    }
}

#[component]
fn TokenDialog() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let token = RwSignal::new(String::new());
    let user = RwSignal::new(session::user());
    let input = NodeRef::<leptos::html::Input>::new();
    Effect::new(move |_| {
        if ctx.token_dialog.get() {
            token.set(session::token().unwrap_or_default());
            user.set(session::user());
            if let Some(i) = input.get() {
                let _ = i.focus();
            }
        }
    });
    let close = move || ctx.token_dialog.set(false);
    let error = RwSignal::new(None::<String>);
    // The token is checked (GET /api/v1/whoami) before it is kept: a refused one stays
    // in the dialog with the server's reason.
    let save = move || {
        let candidate = token.get_untracked().trim().to_string();
        let name = user.get_untracked();
        leptos::task::spawn_local(async move {
            if candidate.is_empty() {
                session::set_token(None);
                session::set_user(&name);
                ctx.has_token.set(false);
                ctx.who.set(None);
                ctx.token_dialog.set(false);
                ctx.toast("Token cleared: read-only", "ok");
                return;
            }
            let who = match net::request_as("GET", "/api/v1/whoami", None, Some(&candidate)).await {
                Ok(v) => serde_json::from_value::<Who>(v).ok(),
                Err(e) if e.status == 401 || e.status == 403 => {
                    error.set(Some(format!("Token refused: {}", e.message)));
                    return;
                }
                Err(_) => None,
            };
            session::set_token(Some(&candidate));
            let name = match &who {
                Some(w) if name.trim().is_empty() || name == "dashboard" => w.display_name.clone(),
                _ => name,
            };
            session::set_user(&name);
            ctx.has_token.set(true);
            error.set(None);
            ctx.token_dialog.set(false);
            ctx.toast(
                match &who {
                    Some(w) => match w.expires_ms() {
                        Some(t) => format!(
                            "Signed in as {} ({}) until {}",
                            w.display_name,
                            w.role,
                            format_local(t, local_offset())
                        ),
                        None => format!("Signed in as {} ({})", w.display_name, w.role),
                    },
                    None => "Token saved for this tab".to_string(),
                },
                "ok",
            );
            ctx.who.set(who);
        });
    };
    let clear = move |_| {
        session::set_token(None);
        ctx.has_token.set(false);
        ctx.who.set(None);
        error.set(None);
        ctx.token_dialog.set(false);
        ctx.toast("Token cleared: read-only", "ok");
    };
    view! {
        <Show when=move || ctx.token_dialog.get()>
            <div class="modal-scrim" on:click=move |_| close()></div>
            <div class="modal" role="dialog" aria-modal="true" aria-labelledby="token-title"
                on:keydown=move |e: web_sys::KeyboardEvent| if e.key() == "Escape" { close() }>
                <h2 id="token-title">"Access token"</h2>
                <form class="form" on:submit=move |e: web_sys::SubmitEvent| { e.prevent_default(); save(); }>
                    <label>"Bearer token (kept in this tab's session storage only)"
                        <input type="password" id="token-input" autocomplete="off" node_ref=input
                            prop:value=move || token.get()
                            on:input=move |e| token.set(event_target_value(&e))/>
                    </label>
                    <label>"Your name (recorded on acks and silences)"
                        <input type="text" id="user-input" autocomplete="nickname"
                            prop:value=move || user.get()
                            on:input=move |e| user.set(event_target_value(&e))/>
                    </label>
                    {move || ctx.who.get().map(|w| view! {
                        <p class="hint" id="whoami">{format!("Signed in as {} ({}, {})", w.display_name, w.role, if w.kind == "jwt" { "identity provider" } else { "static token" })}
                            {w.expires_ms().map(|t| format!(" until {}", format_local(t, local_offset())))}</p>
                    })}
                    {move || error.get().map(|e| view! { <p class="error" id="token-error" role="alert">{e}</p> })}
                    <p class="hint">"A static token or a JWT from your identity provider. Reading works without a token where the server allows it; acknowledging and silencing need an operator token, reloading rules an admin token."</p>
                    <div class="actions">
                        <button type="submit" class="primary" id="token-save">"Save"</button>
                        <button type="button" on:click=clear>"Clear"</button>
                        <button type="button" class="ghost" on:click=move |_| close()>"Cancel"</button>
                    </div>
                </form>
            </div>
        </Show>
    }
}

#[component]
fn Toasts() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    view! {
        <div class="toasts" role="status" aria-live="polite">
            <For each=move || ctx.toasts.get() key=|t| t.id let:t>
                <div class=format!("toast {}", t.kind)>{t.text.clone()}</div>
            </For>
        </div>
    }
}

/// The severity summary of firing alerts, linking to the filtered Alerts page.
#[component]
pub fn SeverityStrip() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let counts = Memo::new(move |_| ctx.firing.with(|f| severity_counts(f)));
    let pill = move |sev: &'static str| {
        let n = move || {
            let c = counts.get();
            match sev {
                "critical" => c.critical,
                "warning" => c.warning,
                _ => c.info,
            }
        };
        view! {
            <a class=format!("pill {sev}") href=format!("/alerts?severity={sev}") data-zero=move || (n() == 0).to_string()
                id=format!("strip-{sev}")>
                <span class="swatch"></span>
                <span>{sev}</span>
                <span class="n">{n}</span>
            </a>
        }
    };
    view! {
        <div class="strip" aria-label="Firing alerts by severity">
            {pill("critical")}
            {pill("warning")}
            {pill("info")}
            {move || ctx.alerts_error.get().map(|e| view! {
                <span class="pill unavailable" role="alert" title=e.clone()>"⚠ alerts unavailable"</span>
            })}
        </div>
    }
}
