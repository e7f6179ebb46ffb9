//! The Heartbeats page: cron jobs and backups that must ping (dead man's switches),
//! missed and failed ones first, with when each pinged last and is due next.

use leptos::prelude::*;

use super::{Ctx, ago, live, net};
use crate::model::HeartbeatView;

/// How often the page reads `GET /api/v1/heartbeats` while open.
const REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

#[component]
pub fn HeartbeatsPage() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let list = RwSignal::new(None::<Vec<HeartbeatView>>);
    let error = RwSignal::new(None::<String>);

    let load = move || {
        leptos::task::spawn_local(async move {
            match net::get("/api/v1/heartbeats").await {
                Ok(v) => match HeartbeatView::parse_list(&v) {
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

    let summary = move || {
        list.get().map(|l| {
            let bad = l
                .iter()
                .filter(|h| matches!(h.status.as_str(), "down" | "failed"))
                .count();
            format!("{} heartbeats · {bad} missed or failed", l.len())
        })
    };
    let empty = move || list.get().is_some_and(|l| l.is_empty());

    view! {
        <div class="toolbar">
            <h1>"Heartbeats"</h1>
            <span class="muted num" id="heartbeats-summary">{summary}</span>
        </div>
        {move || error.get().map(|e| view! { <div class="error-box" role="alert">"Could not load the heartbeats: " {e}</div> })}
        {move || empty().then(|| view! {
            <p class="muted">"No heartbeats yet: add [[heartbeats]] to the configuration, or let a job create one with its first ping, "
                <code>"curl …/api/v1/heartbeats/NAME?period=1h"</code>"."</p>
        })}
        <div class="card table-wrap">
            <table class="data" id="heartbeats-table">
                <thead>
                    <tr>
                        <th scope="col">"Heartbeat"</th>
                        <th scope="col">"Status"</th>
                        <th scope="col">"Last ping"</th>
                        <th scope="col">"Next due"</th>
                        <th scope="col" class="hide-narrow">"Period"</th>
                        <th scope="col" class="hide-narrow">"Grace"</th>
                        <th scope="col" class="hide-narrow">"Last duration"</th>
                    </tr>
                </thead>
                <tbody>
                    {move || list.get().unwrap_or_default().into_iter().map(|h| {
                        let class = match h.status.as_str() {
                            "down" | "failed" => "st-firing",
                            "late" => "st-pending",
                            "up" => "st-active",
                            _ => "muted",
                        };
                        let duration = h.last_duration.map(|d| format!("{d:.1} s")).unwrap_or_else(|| "—".into());
                        view! {
                            <tr data-name=h.name.clone() data-status=h.status.clone()>
                                <td class="mono">{h.name.clone()}</td>
                                <td><span class=class>{h.status.clone()}</span></td>
                                <td>{match h.last_ping.clone() {
                                    Some(t) => ago(ctx, Some(t)).into_any(),
                                    None => view! { <span class="muted">"never"</span> }.into_any(),
                                }}</td>
                                <td class="mono">{h.next_due.clone().unwrap_or_else(|| "—".into())}</td>
                                <td class="hide-narrow">{h.period.clone()}</td>
                                <td class="hide-narrow">{h.grace.clone()}</td>
                                <td class="hide-narrow num">{duration}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}
