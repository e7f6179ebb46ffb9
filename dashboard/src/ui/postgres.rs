//! The PostgreSQL page: one row per watched server (up, connections against
//! max_connections, transactions per second, cache hit ratio, locks, the longest open
//! transaction, replication) and the top statements of pg_stat_statements, read with
//! PromQL instant queries while the page is open.

use leptos::prelude::*;

use super::{live, net};
use crate::format::{format_duration, format_si};
use crate::model::build_query;
use crate::postgres::{SERVER_QUERIES, STATEMENT_QUERIES, Server, Statement, servers, statements};

/// How often the page re-reads while open.
const REFRESH: std::time::Duration = std::time::Duration::from_secs(5);
/// Statements listed.
const TOP: usize = 20;

async fn answers(queries: &[(&str, &str)]) -> Result<Vec<serde_json::Value>, String> {
    let calls = queries.iter().map(|(_, expr)| async move {
        let q = build_query(&[("query".into(), (*expr).into())]);
        net::get(&format!("/api/v1/query?{q}")).await
    });
    futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.map_err(|e| e.to_string()))
        .collect()
}

fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{:.1}%", v * 100.0))
}

#[component]
pub fn PostgresPage() -> impl IntoView {
    let rows = RwSignal::new(None::<Vec<Server>>);
    let top = RwSignal::new(Vec::<Statement>::new());
    let error = RwSignal::new(None::<String>);
    let load = move || {
        leptos::task::spawn_local(async move {
            match answers(SERVER_QUERIES).await {
                Ok(a) => {
                    rows.set(Some(servers(&a)));
                    error.set(None);
                }
                Err(e) => error.set(Some(e)),
            }
            if let Ok(a) = answers(STATEMENT_QUERIES).await {
                let mut s = statements(&a);
                s.truncate(TOP);
                top.set(s);
            }
        });
    };
    live::refresh_while_open(load, REFRESH);

    let server_row = |s: Server| {
        let state = if s.up() { "up" } else { "down" };
        let class = if s.up() { "st-active" } else { "st-firing" };
        let role = match s.get("replica") {
            Some(r) if r >= 1.0 => format!(
                "replica, {} behind",
                s.get("lag").map_or("–".into(), format_duration)
            ),
            Some(_) => "primary".into(),
            None => "–".into(),
        };
        let conns = match (s.get("connections"), s.get("max_connections")) {
            (Some(c), Some(m)) => format!("{c:.0} / {m:.0} ({})", percent(s.connections_used())),
            _ => "–".into(),
        };
        view! {
            <tr data-server=s.name.clone() data-state=state>
                <td class="mono">{s.name.clone()}</td>
                <td><span class=class>{state}</span></td>
                <td class="num" data-col="connections">{conns}</td>
                <td class="num" data-col="tps">{s.get("tps").map_or("–".into(), |v| format!("{}/s", format_si(v)))}</td>
                <td class="num" data-col="cache-hit">{percent(s.get("cache_hit"))}</td>
                <td class="num" data-col="locks">{s.get("locks").map_or("–".into(), |v| format!("{v:.0}"))}</td>
                <td class="num hide-narrow">{s.get("longest_tx").map_or("–".into(), format_duration)}</td>
                <td class="hide-narrow">{role}</td>
            </tr>
        }
    };
    let statement_row = |s: Statement| {
        view! {
            <tr data-queryid=s.queryid.clone()>
                <td class="mono">{s.server.clone()}</td>
                <td class="mono query" title=s.query.clone()>{if s.query.is_empty() { s.queryid.clone() } else { s.query.clone() }}</td>
                <td class="num">{format_si(s.calls)}</td>
                <td class="num">{format_duration(s.total)}</td>
                <td class="num">{format!("{:.1} ms", s.mean * 1000.0)}</td>
                <td class="num hide-narrow">{format_si(s.rows)}</td>
                <td class="hide-narrow">{format!("{} · {}", s.datname, s.rolname)}</td>
            </tr>
        }
    };

    view! {
        <div class="toolbar">
            <h1>"PostgreSQL"</h1>
            <span class="muted">"servers of [[postgres]] (and the own database), read every collection"</span>
        </div>
        {move || error.get().map(|e| view! { <div class="error-box" role="alert">"Could not query: " {e}</div> })}
        {move || rows.get().is_some_and(|r| r.is_empty()).then(|| view! {
            <div class="card empty" id="postgres-empty">
                "No PostgreSQL server is watched. Add a [[postgres]] target (name, url) to the config, or run on a postgres:// database_url."
            </div>
        })}
        <div class="card table-wrap">
            <table class="data" id="postgres-servers">
                <thead>
                    <tr>
                        <th scope="col">"Server"</th>
                        <th scope="col">"State"</th>
                        <th scope="col">"Connections"</th>
                        <th scope="col">"Transactions"</th>
                        <th scope="col">"Cache hit"</th>
                        <th scope="col">"Locks"</th>
                        <th scope="col" class="hide-narrow">"Longest transaction"</th>
                        <th scope="col" class="hide-narrow">"Role"</th>
                    </tr>
                </thead>
                <tbody>
                    {move || rows.get().unwrap_or_default().into_iter().map(server_row).collect_view()}
                </tbody>
            </table>
        </div>
        <h2>"Top statements"</h2>
        <div class="card table-wrap">
            <table class="data" id="postgres-statements">
                <thead>
                    <tr>
                        <th scope="col">"Server"</th>
                        <th scope="col">"Statement"</th>
                        <th scope="col">"Calls"</th>
                        <th scope="col">"Total time"</th>
                        <th scope="col">"Mean"</th>
                        <th scope="col" class="hide-narrow">"Rows"</th>
                        <th scope="col" class="hide-narrow">"Database · role"</th>
                    </tr>
                </thead>
                <tbody>
                    {move || {
                        let list = top.get();
                        if list.is_empty() {
                            view! { <tr><td colspan="7" class="muted">"No statements: pg_stat_statements is not installed on any watched server, or statements_top is 0."</td></tr> }.into_any()
                        } else {
                            list.into_iter().map(statement_row).collect_view().into_any()
                        }
                    }}
                </tbody>
            </table>
        </div>
    }
}
