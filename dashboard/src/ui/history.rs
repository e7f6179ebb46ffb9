//! History & stats: a window picker (5m … 30d), counts by severity, type and source
//! (`/api/v1/alerts/stats`), the noisiest alerts, sources and rules, MTTR and MTTA
//! (`/api/v1/reports?format=json`), and the report rendered from its Markdown.

use leptos::prelude::*;

use super::{Ctx, net, replace_query};
use crate::format::{format_duration, sig3};
use crate::markdown::to_safe_html;
use crate::model::build_query;
use crate::stats::{
    Noisy, Report, Stats, WINDOWS, bar_percent, by_severity, parse_report, parse_stats, ranked,
};

/// A card of horizontal bars (the largest is full width).
fn bars(
    title: &'static str,
    id: &'static str,
    rows: Vec<(String, f64)>,
    colored: bool,
) -> impl IntoView {
    let max = rows.iter().map(|r| r.1).fold(0.0, f64::max);
    let empty = rows.is_empty() || max <= 0.0;
    view! {
        <section class="card" id=id>
            <header><h2>{title}</h2></header>
            <div class="card-body bars">
                {rows.into_iter().take(12).map(|(name, n)| {
                    let class = if colored { format!("fill {name}") } else { "fill".to_string() };
                    view! {
                        <div class="bar-row" data-name=name.clone() data-count=n.to_string()>
                            <span class="name" title=name.clone()>{name.clone()}</span>
                            <span class="track"><span class=class style=format!("width:{:.1}%", bar_percent(n, max))></span></span>
                            <span class="num">{sig3(n)}</span>
                        </div>
                    }
                }).collect_view()}
                {empty.then(|| view! { <div class="muted">"No alerts started in this window."</div> })}
            </div>
        </section>
    }
}

/// A small table of noisy sources or rules.
fn noisy_table(title: &'static str, id: &'static str, rows: Vec<Noisy>) -> impl IntoView {
    let empty = rows.is_empty();
    view! {
        <section class="card" id=id>
            <header><h2>{title}</h2></header>
            <div class="table-wrap">
                <table class="data">
                    <thead><tr>
                        <th scope="col">"Name"</th>
                        <th scope="col" class="num">"Alerts"</th>
                        <th scope="col" class="num">"Receipts"</th>
                    </tr></thead>
                    <tbody>
                        {rows.into_iter().map(|n| view! {
                            <tr><td class="title">{n.name}</td><td class="num">{n.alerts}</td><td class="num">{n.receipts}</td></tr>
                        }).collect_view()}
                    </tbody>
                </table>
                {empty.then(|| view! { <div class="empty">"Nothing in this window."</div> })}
            </div>
        </section>
    }
}

#[component]
pub fn HistoryPage() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let window = Memo::new(move |_| {
        ctx.query_pairs()
            .into_iter()
            .find(|(k, _)| k == "window")
            .map(|(_, v)| v)
            .filter(|v| WINDOWS.contains(&v.as_str()))
            .unwrap_or_else(|| "24h".to_string())
    });
    let stats = RwSignal::new(None::<Stats>);
    let report = RwSignal::new(None::<Report>);
    let markdown = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let loading = RwSignal::new(false);

    let load = move |w: String| {
        loading.set(true);
        leptos::task::spawn_local(async move {
            let stats_url = format!("/api/v1/alerts/stats?window={w}");
            let report_url = format!("/api/v1/reports?window={w}&format=json");
            let md_url = format!("/api/v1/reports?window={w}&format=markdown");
            let (s, r, m) = futures_util::future::join3(
                net::get(&stats_url),
                net::get(&report_url),
                net::get_text(&md_url),
            )
            .await;
            if window.get_untracked() != w {
                return; // the window changed meanwhile; its own load wins
            }
            let mut problems = Vec::new();
            match s.map_err(|e| e.to_string()).and_then(|v| parse_stats(&v)) {
                Ok(v) => stats.set(Some(v)),
                Err(e) => problems.push(format!("stats: {e}")),
            }
            match r.map_err(|e| e.to_string()).and_then(|v| parse_report(&v)) {
                Ok(v) => report.set(Some(v)),
                Err(e) => problems.push(format!("report: {e}")),
            }
            match m {
                Ok(t) => markdown.set(t),
                Err(e) => problems.push(format!("markdown report: {e}")),
            }
            error.set((!problems.is_empty()).then(|| problems.join("; ")));
            loading.set(false);
        });
    };
    Effect::new(move |_| load(window.get()));
    // New alerts change the numbers: refresh at most every few seconds while open.
    let handle = set_interval_with_handle(
        move || load(window.get_untracked()),
        std::time::Duration::from_secs(15),
    )
    .ok();
    on_cleanup(move || {
        if let Some(h) = handle {
            h.clear();
        }
    });

    let pick = move |w: &'static str| {
        replace_query(ctx, &build_query(&[("window".into(), w.into())]));
    };
    let tile = |label: &'static str, id: &'static str, value: Signal<String>| {
        view! {
            <div class="card tile" id=id>
                <div class="label">{label}</div>
                <div class="value num">{move || value.get()}</div>
            </div>
        }
    };
    let stat = move |f: fn(&Stats) -> i64| {
        Signal::derive(move || {
            stats.with(|s| {
                s.as_ref()
                    .map_or_else(|| "–".to_string(), |s| sig3(f(s) as f64))
            })
        })
    };
    let seconds = move |f: fn(&Report) -> Option<f64>| {
        Signal::derive(move || {
            report.with(|r| {
                r.as_ref()
                    .and_then(f)
                    .map(format_duration)
                    .unwrap_or_else(|| "–".into())
            })
        })
    };
    let current = move || stats.get().unwrap_or_default();

    view! {
        <div class="toolbar">
            <h1>"History & stats"</h1>
            <div class="seg" role="group" aria-label="Time window">
                {WINDOWS.iter().map(|&w| view! {
                    <button type="button" aria-pressed=move || (window.get() == w).to_string()
                        id=format!("history-{w}") on:click=move |_| pick(w)>{w}</button>
                }).collect_view()}
            </div>
            <span class="muted" style="min-width:6em">{move || loading.get().then_some("loading…")}</span>
        </div>
        {move || error.get().map(|e| view! { <div class="error-box" role="alert">{e}</div> })}
        <div class="tiles">
            {tile("Alerts started", "tile-total", stat(|s| s.total))}
            {tile("Still firing", "tile-firing", stat(|s| s.firing))}
            {tile("Receipts", "tile-receipts", stat(|s| s.receipts))}
            {tile("Acknowledged", "tile-acked", stat(|s| s.acknowledged))}
            {tile("Silenced", "tile-silenced", stat(|s| s.silenced))}
            {tile("Mean time to resolve", "tile-mttr", seconds(|r| r.mttr_seconds))}
            {tile("Mean time to acknowledge", "tile-mtta", seconds(|r| r.mtta_seconds))}
        </div>
        <div class="cols-3">
            {move || bars("By severity", "by-severity", by_severity(&current()), true)}
            {move || bars("By type", "by-type", ranked(&current().by_type), false)}
            {move || bars("By source", "by-source", ranked(&current().by_source), false)}
            {move || bars("Top labels", "top-labels", current().top_labels.iter().map(|l| (format!("{}={}", l.name, l.value), l.count as f64)).collect(), false)}
        </div>
        <section class="card" style="margin-bottom:14px" id="top-alerts">
            <header><h2>"Noisiest alerts"</h2></header>
            <div class="table-wrap">
                <table class="data">
                    <thead><tr>
                        <th scope="col">"Alert"</th>
                        <th scope="col" class="hide-narrow">"Source"</th>
                        <th scope="col">"Severity"</th>
                        <th scope="col" class="hide-narrow">"State"</th>
                        <th scope="col" class="num">"Receipts"</th>
                    </tr></thead>
                    <tbody>
                        {move || report.get().map(|r| r.top_alerts).unwrap_or_default().into_iter().map(|t| view! {
                            <tr>
                                <td><a class="title" href=format!("/alerts/{}?state=all", t.id)>{t.title().to_string()}</a></td>
                                <td class="hide-narrow muted">{t.source.clone()}</td>
                                <td>{super::alerts::severity_badge(&t.severity)}</td>
                                <td class="hide-narrow"><span class=format!("st-{}", t.state)>{t.state.clone()}</span></td>
                                <td class="num">{t.count}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
                {move || report.with(|r| r.as_ref().is_some_and(|r| r.top_alerts.is_empty())).then(|| view! {
                    <div class="empty">"No alerts started in this window."</div>
                })}
            </div>
        </section>
        <div class="cols-2">
            {move || noisy_table("Noisiest sources", "noisy-sources", report.get().map(|r| r.noisiest_sources).unwrap_or_default())}
            {move || noisy_table("Noisiest rules", "noisy-rules", report.get().map(|r| r.noisiest_rules).unwrap_or_default())}
        </div>
        <section class="card">
            <header><h2>"Report"</h2></header>
            <div class="card-body markdown" id="report-markdown" inner_html=move || to_safe_html(&markdown.get())></div>
        </section>
    }
}
