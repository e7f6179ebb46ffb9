//! The Overview: live charts of the host and the service, a time-window selector, a host
//! selector (this server or one of its agents) and the firing-alert summary.

use leptos::prelude::*;

use super::chart::Chart;
use super::{Ctx, SeverityStrip, live, net, replace_query};
use crate::model::{AgentView, build_query, parse_query, set_param};
use crate::panels::OVERVIEW;
use crate::promql::parse_query_response;

/// Windows offered: (label, ms).
pub const WINDOWS: [(&str, i64); 3] = [("5m", 300_000), ("15m", 900_000), ("60m", 3_600_000)];

/// How often the host selector reads `GET /api/v1/agents` while the Overview is open.
const AGENTS_REFRESH: std::time::Duration = std::time::Duration::from_secs(10);

/// The agents with host data now, for a caller without a token.
const AGENTS_WITH_DATA: &str = r#"count by (instance) (system_cpu_usage_ratio{job="agent"})"#;

/// The window from `?window=` (default 15 minutes).
pub fn window_from_query(q: &[(String, String)]) -> i64 {
    q.iter()
        .find(|(k, _)| k == "window")
        .and_then(|(_, v)| WINDOWS.iter().find(|(l, _)| l == v))
        .map_or(900_000, |(_, ms)| *ms)
}

/// The host from `?host=`: an agent's name, or "" for this server (the default).
pub fn host_from_query(q: &[(String, String)]) -> String {
    q.iter()
        .find(|(k, _)| k == "host")
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// Sets one parameter of the Overview's query string, keeping the others.
fn set_overview_param(ctx: Ctx, key: &str, value: &str) {
    let q = parse_query(&ctx.query.get_untracked());
    replace_query(ctx, &build_query(&set_param(&q, key, value)));
}

#[component]
pub fn Overview() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let choose = move |label: &'static str, ms: i64| {
        ctx.window_ms.set(ms);
        set_overview_param(ctx, "window", if ms == 900_000 { "" } else { label });
    };

    // The agents for the host selector: (name, status), by name. `GET /api/v1/agents`
    // needs a viewer token where the server requires tokens; without one, the agents
    // with data now (an instant query, readable by anyone) are listed instead, so an
    // anonymous Overview never provokes a 401.
    let agents = RwSignal::new(Vec::<(String, &'static str)>::new());
    let load = move || {
        leptos::task::spawn_local(async move {
            let mut named: Vec<(String, &'static str)> = if ctx.has_token.get_untracked() {
                let Ok(v) = net::get("/api/v1/agents").await else {
                    return;
                };
                let Ok(list) = AgentView::parse_list(&v) else {
                    return;
                };
                list.iter().map(|a| (a.name.clone(), a.status())).collect()
            } else {
                let q = build_query(&[("query".into(), AGENTS_WITH_DATA.into())]);
                let Ok(v) = net::get(&format!("/api/v1/query?{q}")).await else {
                    return;
                };
                let Ok(series) = parse_query_response(&v) else {
                    return;
                };
                series
                    .into_iter()
                    .filter_map(|s| s.labels.get("instance").cloned())
                    .filter(|n| !n.is_empty())
                    .map(|n| (n, "connected"))
                    .collect()
            };
            named.sort();
            if agents.with_untracked(|a| *a != named) {
                agents.set(named);
            }
        });
    };
    live::refresh_while_open(load, AGENTS_REFRESH);
    // The chosen host is listed even when the server does not know it (any longer).
    let options = move || {
        let mut list = agents.get();
        let host = ctx.host.get();
        if !host.is_empty() && !list.iter().any(|(n, _)| *n == host) {
            list.push((host, "unknown"));
        }
        list
    };
    let show_hosts = move || !options().is_empty();

    view! {
        <div class="toolbar">
            <h1>"Overview"</h1>
            <div class="seg" role="group" aria-label="Time window">
                {WINDOWS.iter().map(|&(label, ms)| view! {
                    <button type="button" aria-pressed=move || (ctx.window_ms.get() == ms).to_string()
                        id=format!("window-{label}") on:click=move |_| choose(label, ms)>
                        {label}
                    </button>
                }).collect_view()}
            </div>
            <Show when=show_hosts>
                <label class="inline">"Host"
                    <select id="host-select" on:change=move |e| {
                        set_overview_param(ctx, "host", &event_target_value(&e));
                    }>
                        <option value="" selected=move || ctx.host.get().is_empty()>"this server"</option>
                        <For each=options key=|a| a.clone() let:a>
                            <option value=a.0.clone() selected={
                                let name = a.0.clone();
                                move || ctx.host.get() == name
                            }>
                                {match a.1 {
                                    "connected" => a.0.clone(),
                                    other => format!("{} ({other})", a.0),
                                }}
                            </option>
                        </For>
                    </select>
                </label>
            </Show>
            <div class="spacer"></div>
            <SeverityStrip/>
        </div>
        <div class="grid">
            {OVERVIEW.iter().map(|p| view! { <Chart panel=p/> }).collect_view()}
        </div>
    }
}
