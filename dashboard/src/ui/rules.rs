//! The Rules page: groups with each rule's state, health, last error and evaluation,
//! and the reload button (admin).

use leptos::prelude::*;

use super::{Ctx, ago, net};
use crate::format::{format_duration, format_seconds};
use crate::model::{RuleGroup, parse_rules, reload_summary, rules_reload_error};

#[component]
pub fn RulesPage() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let groups = RwSignal::new(Vec::<RuleGroup>::new());
    let error = RwSignal::new(None::<String>);
    let reload_error = RwSignal::new(None::<String>);
    let loading = RwSignal::new(true);
    let reloading = RwSignal::new(false);

    let load = move || {
        leptos::task::spawn_local(async move {
            match net::get("/api/v1/rules").await {
                Ok(v) => match parse_rules(&v) {
                    Ok(g) => {
                        groups.set(g);
                        reload_error.set(rules_reload_error(&v));
                        error.set(None);
                    }
                    Err(e) => error.set(Some(e)),
                },
                Err(e) => error.set(Some(e.to_string())),
            }
            loading.set(false);
        });
    };
    load();
    // Rule state changes with every evaluation; refresh while the page is open.
    let handle = set_interval_with_handle(load, std::time::Duration::from_secs(5)).ok();
    on_cleanup(move || {
        if let Some(h) = handle {
            h.clear();
        }
    });

    let reload = move |_| {
        reloading.set(true);
        leptos::task::spawn_local(async move {
            match net::post("/-/reload", &serde_json::json!({})).await {
                Ok(v) => {
                    ctx.toast(reload_summary(&v), "ok");
                    load();
                }
                Err(e) => {
                    ctx.toast(format!("Reload failed: {e}"), "error");
                    load();
                }
            }
            reloading.set(false);
        });
    };

    let totals = Memo::new(move |_| {
        groups.with(|g| {
            let rules = g.iter().flat_map(|g| g.rules.iter());
            let (mut n, mut firing, mut pending, mut errors) = (0, 0, 0, 0);
            for r in rules {
                n += 1;
                match r.state.as_deref() {
                    Some("firing") => firing += 1,
                    Some("pending") => pending += 1,
                    _ => {}
                }
                if r.health == "err" {
                    errors += 1;
                }
            }
            (n, firing, pending, errors)
        })
    });

    view! {
        <div class="toolbar">
            <h1>"Rules"</h1>
            <span class="muted num">{move || {
                let (n, f, p, e) = totals.get();
                format!("{n} rules · {f} firing · {p} pending · {e} with errors")
            }}</span>
            <div class="spacer"></div>
            <button type="button" class="primary" id="reload-rules" on:click=reload disabled=move || reloading.get()
                title="Re-read the rule files (admin token)">
                {move || if reloading.get() { "Reloading…" } else { "Reload rules" }}
            </button>
        </div>
        {move || error.get().map(|e| view! { <div class="error-box" role="alert">"Could not load rules: " {e}</div> })}
        {move || reload_error.get().map(|e| view! {
            <div class="error-box" role="alert" id="reload-error">
                "The last reload failed; the previous rules keep running:"
                <pre>{e}</pre>
            </div>
        })}
        {move || (groups.with(Vec::is_empty) && !loading.get() && error.get().is_none()).then(|| view! {
            <div class="card empty">"No rule groups loaded. Rule files come from " <code>"rules.files"</code> " in the configuration."</div>
        })}
        <For each=move || groups.get() key=|g| (g.file.clone(), g.name.clone(), g.last_evaluation.clone(), g.rules.iter().map(|r| r.state.clone().unwrap_or_default() + &r.health).collect::<String>()) let:g>
            <section class="card group">
                <header>
                    <h2>{g.name.clone()}</h2>
                    <div class="meta">
                        <span class="mono">{g.file.clone()}</span>
                        <span>{format!("every {}", format_duration(g.interval))}</span>
                        <span>"evaluated " {ago(ctx, g.last_evaluation.clone())}</span>
                        <span>{format!("in {}", format_seconds(g.evaluation_time))}</span>
                    </div>
                </header>
                <div class="table-wrap">
                    <table class="data">
                        <thead>
                            <tr>
                                <th scope="col">"Rule"</th>
                                <th scope="col">"State"</th>
                                <th scope="col">"Health"</th>
                                <th scope="col" class="hide-narrow">"Last evaluation"</th>
                                <th scope="col" class="num hide-narrow">"Took"</th>
                                <th scope="col">"Last error"</th>
                            </tr>
                        </thead>
                        <tbody>
                            {g.rules.iter().map(|r| {
                                let state = r.state.clone().unwrap_or_else(|| if r.kind == "recording" { "recording".into() } else { "inactive".into() });
                                let health = if r.health.is_empty() { "unknown".to_string() } else { r.health.clone() };
                                view! {
                                    <tr>
                                        <td>
                                            <div class="title">{r.name.clone()}
                                                {(r.duration > 0.0).then(|| view! { <span class="muted">{format!(" for {}", format_duration(r.duration))}</span> })}
                                            </div>
                                            <div class="query" title=r.query.clone()>{r.query.clone()}</div>
                                        </td>
                                        <td><span class=format!("st-{state}")>{state.clone()}</span>
                                            {(!r.alerts.is_empty()).then(|| view! { <span class="muted">{format!(" ({})", r.alerts.len())}</span> })}
                                        </td>
                                        <td><span class=format!("st-{health}")>{health.clone()}</span></td>
                                        <td class="hide-narrow">{ago(ctx, r.last_evaluation.clone())}</td>
                                        <td class="num hide-narrow">{format_seconds(r.evaluation_time)}</td>
                                        <td><span class="lasterr">{r.last_error.clone().unwrap_or_default()}</span></td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                </div>
            </section>
        </For>
    }
}
