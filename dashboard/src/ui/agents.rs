//! The Agents page: other hosts' `watchpost agent` processes streaming their host
//! metrics, down and disconnected ones first, each linking to the Overview with its host
//! selected.

use leptos::prelude::*;

use super::{Ctx, ago, live, net};
use crate::format::format_si;
use crate::model::{AgentView, build_query};

/// How often the page reads `GET /api/v1/agents` while open.
const REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

#[component]
pub fn AgentsPage() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let list = RwSignal::new(None::<Vec<AgentView>>);
    let error = RwSignal::new(None::<String>);

    let load = move || {
        leptos::task::spawn_local(async move {
            match net::get("/api/v1/agents").await {
                Ok(v) => match AgentView::parse_list(&v) {
                    Ok(l) => {
                        list.set(Some(l));
                        error.set(None);
                    }
                    Err(e) => error.set(Some(e)),
                },
                Err(e) => error.set(Some(e.to_string())),
            }
        });
    };
    live::refresh_while_open(load, REFRESH);

    let summary = move || list.get().map(|l| AgentView::summary(&l));
    let empty = move || list.get().is_some_and(|l| l.is_empty());

    view! {
        <div class="toolbar">
            <h1>"Agents"</h1>
            <span class="muted num" id="agents-summary">{summary}</span>
        </div>
        {move || error.get().map(|e| view! { <div class="error-box" role="alert">"Could not load the agents: " {e}</div> })}
        {move || empty().then(|| view! {
            <p class="muted" id="agents-empty">"No agents yet: on another host, run "
                <code>"watchpost agent --server URL --token T --name NAME"</code>
                " with a token of role " <code>"agent"</code> " from " <code>"[[auth.tokens]]"</code>
                "; its CPU, memory, disk and network charts then appear on the overview under its name."</p>
        })}
        <div class="card table-wrap">
            <table class="data" id="agents-table">
                <thead>
                    <tr>
                        <th scope="col">"Agent"</th>
                        <th scope="col">"Host"</th>
                        <th scope="col">"Status"</th>
                        <th scope="col">"Connected / last seen"</th>
                        <th scope="col" class="num">"Samples received"</th>
                        <th scope="col" class="hide-narrow">"Version"</th>
                        <th scope="col" class="hide-narrow">"Address"</th>
                    </tr>
                </thead>
                <tbody>
                    {move || list.get().unwrap_or_default().into_iter().map(|a| {
                        let status = a.status();
                        let class = match status {
                            "down" => "st-firing",
                            "disconnected" => "st-pending",
                            _ => "st-active",
                        };
                        let href = format!("/?{}", build_query(&[("host".into(), a.name.clone())]));
                        let dash = |s: &str| if s.is_empty() { "—".to_string() } else { s.to_string() };
                        view! {
                            <tr data-name=a.name.clone() data-status=status>
                                <td class="mono"><a href=href title="Show its charts on the overview">{a.name.clone()}</a></td>
                                <td class="mono">{dash(&a.host)}</td>
                                <td><span class=class>{status}</span></td>
                                <td>{if a.connected && a.connected_since.is_some() {
                                    view! { <span>"connected "</span>{ago(ctx, a.connected_since.clone())} }.into_any()
                                } else {
                                    match a.last_seen.clone() {
                                        Some(t) => view! { <span>"last seen "</span>{ago(ctx, Some(t))} }.into_any(),
                                        None => view! { <span class="muted">"never seen"</span> }.into_any(),
                                    }
                                }}</td>
                                <td class="num" title=format!("{:.0}", a.samples_received)>{format_si(a.samples_received)}</td>
                                <td class="hide-narrow mono">{dash(&a.version)}</td>
                                <td class="hide-narrow mono">{dash(&a.address)}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}
