//! History & stats: a window picker (5m … 30d), counts by severity, type and source,
//! the noisiest alerts, MTTR, and the report rendered from Markdown.

use leptos::prelude::*;
use serde_json::Value;

use super::{Ctx, net, replace_query};
use crate::format::{format_duration, sig3};
use crate::markdown::to_safe_html;
use crate::model::build_query;
use crate::stats::{WINDOWS, counts, mttr_seconds, top_alerts, total};

fn bars(
    title: &'static str,
    id: &'static str,
    rows: Vec<(String, f64)>,
    colored: bool,
) -> impl IntoView {
    let max = rows.iter().map(|r| r.1).fold(0.0, f64::max).max(1.0);
    let empty = rows.is_empty();
    view! {
        <section class="card" id=id>
            <header><h2>{title}</h2></header>
            <div class="card-body bars">
                {rows.into_iter().take(12).map(|(name, n)| {
                    let class = if colored { format!("fill {name}") } else { "fill".to_string() };
                    view! {
                        <div class="bar-row">
                            <span class="name" title=name.clone()>{name.clone()}</span>
                            <span class="track"><span class=class style=format!("width:{:.1}%", n / max * 100.0)></span></span>
                            <span class="num" style="text-align:right">{sig3(n)}</span>
                        </div>
                    }
                }).collect_view()}
                {empty.then(|| view! { <div class="muted">"No alerts in this window."</div> })}
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
    let stats = RwSignal::new(None::<Value>);
    let report = RwSignal::new(None::<Value>);
    let markdown = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let loading = RwSignal::new(false);

    Effect::new(move |_| {
        let w = window.get();
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
                return;
            }
            let mut problems = Vec::new();
            match s {
                Ok(v) => stats.set(Some(v)),
                Err(e) => problems.push(format!("stats: {e}")),
            }
            match r {
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
    });

    let pick = move |w: &'static str| {
        replace_query(ctx, &build_query(&[("window".into(), w.into())]));
    };
    let tile = |label: &'static str, id: &'static str, value: Signal<String>| {
        view! {
            <div class="card tile" id=id>
                <div class="label">{label}</div>
                <div class="value">{move || value.get()}</div>
            </div>
        }
    };
    let source = move || stats.get().or_else(|| report.get()).unwrap_or(Value::Null);
    let total_s = Signal::derive(move || {
        let s = source();
        if s.is_null() {
            "–".into()
        } else {
            sig3(total(&s))
        }
    });
    let by_sev = move |sev: &'static str| {
        Signal::derive(move || {
            let s = source();
            if s.is_null() {
                return "–".to_string();
            }
            sig3(
                counts(&s, "severity")
                    .into_iter()
                    .find(|(k, _)| k == sev)
                    .map_or(0.0, |c| c.1),
            )
        })
    };
    let mttr = Signal::derive(move || {
        report
            .get()
            .and_then(|r| mttr_seconds(&r))
            .or_else(|| stats.get().and_then(|s| mttr_seconds(&s)))
            .map(format_duration)
            .unwrap_or_else(|| "–".into())
    });

    view! {
        <div class="toolbar">
            <h1>"History & stats"</h1>
            <div class="seg" role="group" aria-label="Time window">
                {WINDOWS.iter().map(|&w| view! {
                    <button type="button" aria-pressed=move || (window.get() == w).to_string()
                        id=format!("history-{w}") on:click=move |_| pick(w)>{w}</button>
                }).collect_view()}
            </div>
            <span class="muted">{move || loading.get().then_some("loading…")}</span>
        </div>
        {move || error.get().map(|e| view! { <div class="error-box" role="alert">{e}</div> })}
        <div class="tiles">
            {tile("Alerts", "tile-total", total_s)}
            {tile("Critical", "tile-critical", by_sev("critical"))}
            {tile("Warning", "tile-warning", by_sev("warning"))}
            {tile("Info", "tile-info", by_sev("info"))}
            {tile("Mean time to resolve", "tile-mttr", mttr)}
        </div>
        <div class="cols-3">
            {move || bars("By severity", "by-severity", counts(&source(), "severity"), true)}
            {move || bars("By type", "by-type", counts(&source(), "type"), false)}
            {move || bars("By source", "by-source", counts(&source(), "source"), false)}
        </div>
        <section class="card" style="margin-bottom:14px" id="top-alerts">
            <header><h2>"Noisiest alerts"</h2></header>
            <div class="table-wrap">
                <table class="data">
                    <thead><tr><th scope="col">"Alert"</th><th scope="col" class="hide-narrow">"Source · severity"</th><th scope="col" class="num">"Count"</th></tr></thead>
                    <tbody>
                        {move || {
                            let r = report.get().unwrap_or(Value::Null);
                            let mut top = top_alerts(&r);
                            if top.is_empty() {
                                top = top_alerts(&stats.get().unwrap_or(Value::Null));
                            }
                            top.into_iter().take(15).map(|t| view! {
                                <tr><td class="title">{t.name}</td><td class="hide-narrow muted">{t.detail}</td><td class="num">{sig3(t.count)}</td></tr>
                            }).collect_view()
                        }}
                    </tbody>
                </table>
            </div>
        </section>
        <section class="card">
            <header><h2>"Report"</h2></header>
            <div class="card-body markdown" id="report-markdown" inner_html=move || to_safe_html(&markdown.get())></div>
        </section>
    }
}
