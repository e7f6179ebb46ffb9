//! The Cluster page: the nodes on the shared database, which one leads (and so sends
//! the notifications and runs the bot), the fencing epoch, and each node's heartbeat.

use leptos::prelude::*;

use super::{Ctx, ago, live, net};
use crate::model::ClusterView;

/// How often the page reads `GET /api/v1/cluster` while open.
const REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

#[component]
pub fn ClusterPage() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let cluster = RwSignal::new(None::<ClusterView>);
    let error = RwSignal::new(None::<String>);

    let load = move || {
        leptos::task::spawn_local(async move {
            match net::get("/api/v1/cluster").await {
                Ok(v) => match ClusterView::parse(&v) {
                    Ok(c) => {
                        cluster.set(Some(c));
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
        cluster.get().map(|c| {
            let leader = c.leader.clone().unwrap_or_else(|| "none".into());
            format!(
                "leader {leader} · epoch {} · {}/{} nodes alive",
                c.epoch,
                c.alive(),
                c.nodes.len()
            )
        })
    };
    let rows = move || {
        cluster
            .get()
            .map(|c| (c.self_id, c.nodes))
            .unwrap_or_default()
    };

    view! {
        <div class="toolbar">
            <h1>"Cluster"</h1>
            <span class="muted num" id="cluster-summary">{summary}</span>
        </div>
        {move || error.get().map(|e| view! { <div class="error-box" role="alert">"Could not load the cluster: " {e}</div> })}
        {move || cluster.get().is_some_and(|c| c.leader.is_none()).then(|| view! {
            <div class="error-box" role="alert">"No node leads: notifications wait until one does (within cluster.node_timeout)."</div>
        })}
        <div class="card table-wrap">
            <table class="data" id="cluster-table">
                <thead>
                    <tr>
                        <th scope="col">"Node"</th>
                        <th scope="col">"Role"</th>
                        <th scope="col">"State"</th>
                        <th scope="col">"Last heartbeat"</th>
                        <th scope="col" class="hide-narrow">"Started"</th>
                        <th scope="col" class="hide-narrow">"Address"</th>
                        <th scope="col" class="hide-narrow">"Version"</th>
                    </tr>
                </thead>
                <tbody>
                    {move || {
                        let (me, nodes) = rows();
                        nodes.into_iter().map(|n| {
                            let role = if n.leader { "leader" } else { "follower" };
                            let state = if n.alive { "alive" } else { "dead" };
                            let class = if n.alive { "st-active" } else { "st-firing" };
                            view! {
                                <tr data-id=n.id.clone() data-role=role data-state=state>
                                    <td>
                                        <span class="mono">{n.id.clone()}</span>
                                        {(n.id == me).then(|| view! { <span class="muted">" (this node)"</span> })}
                                    </td>
                                    <td>{if n.leader { view! { <strong>"leader"</strong> }.into_any() } else { view! { <span class="muted">"follower"</span> }.into_any() }}</td>
                                    <td><span class=class>{state}</span></td>
                                    <td>{ago(ctx, Some(n.last_heartbeat.clone()))}</td>
                                    <td class="hide-narrow">{ago(ctx, Some(n.started_at.clone()))}</td>
                                    <td class="hide-narrow mono">{n.address.clone()}</td>
                                    <td class="hide-narrow">{n.version.clone()}</td>
                                </tr>
                            }
                        }).collect_view()
                    }}
                </tbody>
            </table>
        </div>
    }
}
