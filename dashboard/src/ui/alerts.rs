//! The Alerts page: filterable, sortable table kept live by stream events, and a detail
//! drawer (`/alerts/{id}`) with the event timeline, Ack and Silence.

use leptos::prelude::*;

use super::silence_form::SilenceForm;
use super::{Ctx, live, local_offset, navigate, net, replace_query, session};
use crate::format::{format_ago, format_duration};
use crate::model::{
    Alert, AlertFilter, AlertList, LabelMatch, SortKey, StateFilter, build_query, matchers_for,
    sort_alerts, upsert_alert,
};
use crate::route::Page;
use crate::time::{format_local, parse_rfc3339};

/// How many alerts the table loads.
const LIMIT: usize = 1000;

/// "5m ago" with the exact local time as a tooltip.
fn when(ctx: Ctx, rfc: Option<String>) -> impl IntoView {
    let ms = rfc.as_deref().and_then(parse_rfc3339);
    let title = ms
        .map(|m| format_local(m, local_offset()))
        .unwrap_or_default();
    view! {
        <span title=title class="num">
            {move || ms.map(|m| format_ago(ctx.clock.get() as i64, m)).unwrap_or_else(|| "–".into())}
        </span>
    }
}

/// A severity badge.
pub fn severity_badge(sev: &str) -> impl IntoView + use<> {
    let class = match sev {
        "critical" | "warning" | "info" => format!("badge sev-{sev}"),
        _ => "badge".to_string(),
    };
    view! { <span class=class>{sev.to_string()}</span> }
}

fn state_badges(a: &Alert) -> impl IntoView + use<> {
    let mut out = Vec::new();
    out.push(view! { <span class=format!("st-{}", a.state)>{a.state.clone()}</span> }.into_any());
    if let Some(ack) = &a.acknowledged {
        out.push(
            view! { <span class="tag" title=format!("acknowledged by {}", ack.by)>"acked"</span> }
                .into_any(),
        );
    }
    if a.inhibited {
        out.push(
            view! { <span class="tag" title="muted by an inhibition rule">"inhibited"</span> }
                .into_any(),
        );
    } else if a.silenced {
        out.push(view! { <span class="tag">"silenced"</span> }.into_any());
    }
    out
}

#[component]
pub fn AlertsPage() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let filter = Memo::new(move |_| AlertFilter::from_query(&ctx.query_pairs()));
    let sort = Memo::new(move |_| {
        ctx.query_pairs()
            .iter()
            .find(|(k, _)| k == "sort")
            .and_then(|(_, v)| SortKey::parse(v))
            .unwrap_or((SortKey::Severity, true))
    });
    let alerts = RwSignal::new(Vec::<Alert>::new());
    let loading = RwSignal::new(true);
    let error = RwSignal::new(None::<String>);
    let generation = RwSignal::new(0u64);

    // (Re)load when the server-side part of the filter changes.
    let api_query = Memo::new(move |_| build_query(&filter.get().api_query(LIMIT)));
    let load = move || {
        let q = api_query.get_untracked();
        let this = generation.get_untracked() + 1;
        generation.set(this);
        loading.set(true);
        leptos::task::spawn_local(async move {
            let result = net::get(&format!("/api/v1/alerts?{q}")).await;
            if generation.get_untracked() != this {
                return; // a newer load superseded this one
            }
            match result.map(serde_json::from_value::<AlertList>) {
                Ok(Ok(list)) => {
                    alerts.set(list.alerts);
                    error.set(None);
                }
                Ok(Err(e)) => error.set(Some(format!("unexpected answer: {e}"))),
                Err(e) => error.set(Some(e.to_string())),
            }
            loading.set(false);
        });
    };
    Effect::new(move |_| {
        api_query.track();
        load();
    });
    live::on_alert(move |_, a| {
        alerts.update(|l| {
            upsert_alert(l, a.clone());
        })
    });
    live::on_resync(load);

    let rows = Memo::new(move |_| {
        let f = filter.get();
        let (key, desc) = sort.get();
        let mut v: Vec<Alert> =
            alerts.with(|l| l.iter().filter(|a| f.matches(a)).cloned().collect());
        sort_alerts(&mut v, key, desc);
        v
    });
    let sources = Memo::new(move |_| {
        let mut s: Vec<String> = alerts.with(|l| l.iter().map(|a| a.source.clone()).collect());
        s.extend(
            ctx.firing
                .with(|l| l.iter().map(|a| a.source.clone()).collect::<Vec<_>>()),
        );
        if let Some(cur) = filter.get().source {
            s.push(cur);
        }
        s.retain(|x| !x.is_empty());
        s.sort();
        s.dedup();
        s
    });

    // Writes a changed filter or sort into the URL (which drives everything else).
    let set_query = move |f: AlertFilter, sort: Option<(SortKey, bool)>| {
        let mut q = f.to_query();
        if let Some((k, desc)) = sort.filter(|s| *s != (SortKey::Severity, true)) {
            q.push((
                "sort".into(),
                format!("{}{}", if desc { "-" } else { "" }, k.as_str()),
            ));
        }
        replace_query(ctx, &build_query(&q));
    };
    let update_filter = move |change: &dyn Fn(&mut AlertFilter)| {
        let mut f = filter.get_untracked();
        change(&mut f);
        set_query(f, Some(sort.get_untracked()));
    };
    let sort_by = move |k: SortKey| {
        let (cur, desc) = sort.get_untracked();
        let next = if cur == k {
            (k, !desc)
        } else {
            (k, !matches!(k, SortKey::Name | SortKey::Source))
        };
        set_query(filter.get_untracked(), Some(next));
    };
    let header = move |k: SortKey, label: &'static str, class: &'static str| {
        let aria = move || {
            let (cur, desc) = sort.get();
            if cur == k {
                if desc { "descending" } else { "ascending" }
            } else {
                "none"
            }
        };
        let arrow = move || {
            let (cur, desc) = sort.get();
            if cur == k {
                if desc { " ↓" } else { " ↑" }
            } else {
                ""
            }
        };
        view! {
            <th class=class aria-sort=aria scope="col">
                <button type="button" on:click=move |_| sort_by(k)>{label}{arrow}</button>
            </th>
        }
    };
    let label_text = move || {
        filter
            .get()
            .labels
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let open = move |id: i64| {
        let q = ctx.query.get_untracked();
        let url = if q.is_empty() {
            format!("/alerts/{id}")
        } else {
            format!("/alerts/{id}?{q}")
        };
        navigate(ctx, &url);
    };
    let selected = move || match ctx.page() {
        Page::Alerts(id) => id,
        _ => None,
    };

    view! {
        <div class="toolbar">
            <h1>"Alerts"</h1>
            <span class="muted num" id="alerts-count">
                {move || format!("{} shown", rows.with(Vec::len))}
            </span>
            <div class="spacer"></div>
            <button type="button" on:click=move |_| load() disabled=move || loading.get()>"Refresh"</button>
        </div>
        {move || error.get().map(|e| view! { <div class="error-box" role="alert">"Could not load alerts: " {e}</div> })}
        <div class="card">
            <div class="filters" role="search">
                <label>"State"
                    <select id="filter-state" on:change=move |e| {
                        let v = event_target_value(&e);
                        update_filter(&|f| f.state = StateFilter::parse(&v).unwrap_or_default());
                    }>
                        {StateFilter::ALL.iter().map(|s| view! {
                            <option value=s.as_str() selected=move || filter.get().state == *s>{s.as_str()}</option>
                        }).collect_view()}
                    </select>
                </label>
                <label>"Severity"
                    <select id="filter-severity" on:change=move |e| {
                        let v = event_target_value(&e);
                        update_filter(&|f| f.severity = (!v.is_empty()).then(|| v.clone()));
                    }>
                        <option value="" selected=move || filter.get().severity.is_none()>"any"</option>
                        {["critical", "warning", "info"].into_iter().map(|s| view! {
                            <option value=s selected=move || filter.get().severity.as_deref() == Some(s)>{s}</option>
                        }).collect_view()}
                    </select>
                </label>
                <label>"Source"
                    <select id="filter-source" on:change=move |e| {
                        let v = event_target_value(&e);
                        update_filter(&|f| f.source = (!v.is_empty()).then(|| v.clone()));
                    }>
                        <option value="" selected=move || filter.get().source.is_none()>"any"</option>
                        <For each=move || sources.get() key=|s| s.clone() let:s>
                            <option value=s.clone() selected={
                                let s = s.clone();
                                move || filter.get().source.as_deref() == Some(s.as_str())
                            }>{s.clone()}</option>
                        </For>
                    </select>
                </label>
                <label>"Labels"
                    <input type="text" id="filter-label" placeholder="instance=db1, job!=x"
                        prop:value=label_text
                        on:change=move |e| {
                            let v = event_target_value(&e);
                            let labels: Vec<LabelMatch> = v.split(',').filter_map(LabelMatch::parse).collect();
                            update_filter(&|f| f.labels = labels.clone());
                        }/>
                </label>
                <label>"Search"
                    <input type="search" id="filter-text" placeholder="name, message, label…"
                        prop:value=move || filter.get().text
                        on:input=move |e| {
                            let v = event_target_value(&e);
                            update_filter(&|f| f.text = v.clone());
                        }/>
                </label>
                <button type="button" class="ghost" on:click=move |_| set_query(AlertFilter::default(), None)>"Reset"</button>
            </div>
            <div class="table-wrap">
                <table class="data" id="alerts-table">
                    <thead>
                        <tr>
                            {header(SortKey::Severity, "Severity", "")}
                            {header(SortKey::Name, "Alert", "")}
                            {header(SortKey::Source, "Source", "hide-narrow")}
                            {header(SortKey::Since, "Since", "")}
                            {header(SortKey::Count, "Count", "num hide-narrow")}
                            {header(SortKey::Risk, "Risk", "hide-narrow")}
                            <th scope="col">"State"</th>
                        </tr>
                    </thead>
                    <tbody>
                        <For each=move || rows.get() key=|a| (a.id, a.last_seen.clone(), a.state.clone(), a.acknowledged.is_some(), a.silenced, a.count) let:a>
                            {
                                let id = a.id;
                                let href = format!("/alerts/{id}");
                                let risk = a.risk_score.clamp(0.0, 100.0);
                                view! {
                                    <tr class="clickable" data-id=id.to_string() data-fingerprint=a.fingerprint.clone()
                                        class:selected=move || selected() == Some(id)
                                        on:click=move |_| open(id)>
                                        <td>{severity_badge(&a.severity)}</td>
                                        <td>
                                            <a class="title" href=href on:click=move |e| { e.prevent_default(); e.stop_propagation(); open(id); }>
                                                {a.title().to_string()}
                                            </a>
                                            {(a.alertname.as_deref().is_some_and(|n| !n.is_empty() && n != a.message)).then(|| view! {
                                                <div class="sub" title=a.message.clone()>{a.message.clone()}</div>
                                            })}
                                        </td>
                                        <td class="hide-narrow">{a.source.clone()}</td>
                                        <td>{when(ctx, a.starts_at.clone().or(a.first_seen.clone()))}</td>
                                        <td class="num hide-narrow">{a.count}</td>
                                        <td class="hide-narrow">
                                            <span class="risk" title=format!("risk score {risk:.0} of 100")>
                                                <span class="bar"><span style=format!("width:{risk:.0}%")></span></span>
                                                <span class="num">{format!("{risk:.0}")}</span>
                                            </span>
                                        </td>
                                        <td>{state_badges(&a)}</td>
                                    </tr>
                                }
                            }
                        </For>
                    </tbody>
                </table>
                {move || (rows.with(Vec::is_empty) && !loading.get()).then(|| view! {
                    <div class="empty">"No alerts match these filters."</div>
                })}
                {move || (rows.with(Vec::is_empty) && loading.get()).then(|| view! {
                    <div class="empty">"Loading…"</div>
                })}
            </div>
        </div>
        {move || selected().map(|id| view! { <AlertDrawer id=id alerts=alerts/> })}
    }
}

#[component]
fn AlertDrawer(id: i64, alerts: RwSignal<Vec<Alert>>) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let detail = RwSignal::new(None::<Alert>);
    let error = RwSignal::new(None::<String>);
    let comment = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let silencing = RwSignal::new(false);
    let close_ref = NodeRef::<leptos::html::Button>::new();

    let load = move || {
        leptos::task::spawn_local(async move {
            match net::get(&format!("/api/v1/alerts/{id}")).await {
                Ok(v) => match serde_json::from_value::<Alert>(v) {
                    Ok(a) => {
                        alerts.update(|l| {
                            if l.iter().any(|x| x.id == a.id) {
                                upsert_alert(l, a.clone());
                            }
                        });
                        detail.set(Some(a));
                        error.set(None);
                    }
                    Err(e) => error.set(Some(format!("unexpected answer: {e}"))),
                },
                Err(e) => error.set(Some(e.to_string())),
            }
        });
    };
    load();
    live::on_alert(move |_, a| {
        if a.id == id {
            load();
        }
    });
    Effect::new(move |_| {
        if let Some(b) = close_ref.get() {
            let _ = b.focus();
        }
    });

    let close = move || {
        let q = ctx.query.get_untracked();
        navigate(
            ctx,
            &if q.is_empty() {
                "/alerts".to_string()
            } else {
                format!("/alerts?{q}")
            },
        );
    };
    let ack = move || {
        busy.set(true);
        let body = serde_json::json!({"by": session::user(), "comment": comment.get_untracked()});
        leptos::task::spawn_local(async move {
            match net::post(&format!("/api/v1/alerts/{id}/ack"), &body).await {
                Ok(_) => {
                    ctx.toast(format!("Alert #{id} acknowledged"), "ok");
                    comment.set(String::new());
                    load();
                }
                Err(e) => ctx.toast(format!("Ack failed: {e}"), "error"),
            }
            busy.set(false);
        });
    };

    view! {
        <div class="scrim" on:click=move |_| close()></div>
        <aside class="drawer" role="dialog" aria-modal="true" aria-labelledby="drawer-title" id="alert-drawer"
            on:keydown=move |e: web_sys::KeyboardEvent| if e.key() == "Escape" { close() }>
            <header>
                <h2 id="drawer-title">
                    {move || detail.get().map(|a| a.title().to_string()).unwrap_or_else(|| format!("Alert #{id}"))}
                </h2>
                <button type="button" class="ghost" node_ref=close_ref aria-label="Close" on:click=move |_| close()>"✕"</button>
            </header>
            <div class="body">
                {move || error.get().map(|e| view! { <div class="error-box" role="alert">{e}</div> })}
                {move || detail.get().map(|a| {
                    let acked = a.acknowledged.clone();
                    let firing = a.state == "firing";
                    let started = a.since_ms();
                    let ended = a.ends_at.as_deref().and_then(parse_rfc3339).filter(|_| !firing);
                    // Firing: counts up with the clock; resolved: fixed.
                    let duration = move || {
                        ctx.clock.track();
                        started.map(|s| {
                            let end = ended.unwrap_or_else(live::server_now);
                            format_duration(((end - s).max(0) as f64 / 1000.0).max(1.0))
                        }).unwrap_or_else(|| "–".into())
                    };
                    let matchers = matchers_for(&a);
                    let silenced_by = a.silenced_by.clone();
                    view! {
                        <section>
                            <div class="actions" style="margin-bottom:10px">
                                {severity_badge(&a.severity)}
                                {state_badges(&a)}
                                <span class="muted">{format!("#{} · {}", a.id, a.source)}</span>
                            </div>
                            <p style="margin:0; word-break:break-word">{a.message.clone()}</p>
                        </section>
                        <section>
                            <h3>"Actions"</h3>
                            {match acked {
                                Some(ack) => view! {
                                    <p class="muted" id="acked-by">
                                        {format!("Acknowledged by {}", ack.by)}
                                        {ack.at.as_deref().and_then(parse_rfc3339).map(|t| format!(" at {}", format_local(t, local_offset())))}
                                        {ack.comment.filter(|c| !c.is_empty()).map(|c| format!(": {c}"))}
                                    </p>
                                    <div class="actions">
                                        <button type="button" id="silence-button" aria-expanded=move || silencing.get().to_string()
                                            on:click=move |_| silencing.update(|s| *s = !*s)>"Silence…"</button>
                                    </div>
                                }.into_any(),
                                None => view! {
                                    <form class="form" on:submit=move |e: web_sys::SubmitEvent| { e.prevent_default(); ack(); }>
                                        <label>"Comment (optional)"
                                            <input type="text" id="ack-comment" prop:value=move || comment.get()
                                                on:input=move |e| comment.set(event_target_value(&e))/>
                                        </label>
                                        <div class="actions">
                                            <button type="submit" class="primary" id="ack-button" disabled=move || busy.get()>"Acknowledge"</button>
                                            <button type="button" id="silence-button" aria-expanded=move || silencing.get().to_string()
                                                on:click=move |_| silencing.update(|s| *s = !*s)>"Silence…"</button>
                                        </div>
                                    </form>
                                }.into_any(),
                            }}
                            {(!silenced_by.is_empty()).then(|| view! {
                                <p class="muted" id="silenced-by">"Muted by silence "
                                    {silenced_by.iter().map(|id| view! { <a class="mono" href=format!("/silences#{id}")>{id.clone()}</a>" " }).collect_view()}
                                </p>
                            })}
                            {move || silencing.get().then(|| view! {
                                <div style="margin-top:12px">
                                    <SilenceForm initial=matchers.clone() on_done=Callback::new(move |_| { silencing.set(false); load(); })/>
                                </div>
                            })}
                        </section>
                        <section>
                            <h3>"Details"</h3>
                            <dl class="kv">
                                <dt>"Started"</dt><dd>{a.since_ms().map(|t| format_local(t, local_offset())).unwrap_or_else(|| "–".into())}</dd>
                                <dt>"Duration"</dt><dd class="num" id="alert-duration">{duration}</dd>
                                <dt>"Last seen"</dt><dd>{a.last_seen.as_deref().and_then(parse_rfc3339).map(|t| format_local(t, local_offset())).unwrap_or_else(|| "–".into())}</dd>
                                <dt>"Received"</dt><dd>{format!("{} time{}", a.count, if a.count == 1 { "" } else { "s" })}</dd>
                                <dt>"Type"</dt><dd>{if a.kind.is_empty() { "–".to_string() } else { a.kind.clone() }}</dd>
                                {a.classification.clone().map(|c| view! {
                                    <dt>"Why this type"</dt><dd class="muted" id="type-reason">{c.type_reason}</dd>
                                    <dt>"Why this severity"</dt><dd class="muted" id="severity-reason">{c.severity_reason}</dd>
                                })}
                                {a.flapping.then(|| view! {
                                    <dt>"Flapping"</dt><dd id="alert-flapping">"🔁 notifications held until it is stable"</dd>
                                })}
                                <dt>"Risk"</dt><dd>{format!("{:.0} / 100", a.risk_score)}</dd>
                                <dt>"Fingerprint"</dt><dd class="mono">{a.fingerprint.clone()}</dd>
                                {a.generator_url.clone().filter(|u| u.starts_with("http")).map(|u| view! {
                                    <dt>"Source link"</dt><dd><a href=u.clone() target="_blank" rel="noopener noreferrer">{u.clone()}</a></dd>
                                })}
                            </dl>
                        </section>
                        {(a.source == "watchpost" && a.generator_url.is_some()).then(|| {
                            let failed = RwSignal::new(false);
                            view! {
                                <section class:hidden=move || failed.get()>
                                    <h3>"Chart"</h3>
                                    <img id="alert-chart" class="alert-chart" loading="lazy" width="640" height="300"
                                        alt=format!("{} over the last hour: the rule's expression, its threshold and when it fired", a.source)
                                        src=format!("/api/v1/alerts/{}/chart.png?width=640&height=300", a.id)
                                        on:error=move |_| failed.set(true)/>
                                </section>
                            }
                        })}
                        <section>
                            <h3>"Labels"</h3>
                            <div>
                                {a.labels.iter().map(|(k, v)| view! { <span class="tag">{format!("{k}={v}")}</span> }).collect_view()}
                                {a.labels.is_empty().then(|| view! { <span class="muted">"none"</span> })}
                            </div>
                        </section>
                        {(!a.annotations.is_empty()).then(|| view! {
                            <section>
                                <h3>"Annotations"</h3>
                                <dl class="kv">
                                    {a.annotations.iter().map(|(k, v)| view! { <dt>{k.clone()}</dt><dd>{v.clone()}</dd> }).collect_view()}
                                </dl>
                            </section>
                        })}
                        <section>
                            <h3>"Timeline"</h3>
                            <ol class="timeline" id="alert-timeline">
                                {a.events.iter().rev().map(|e| view! {
                                    <li class=format!("k-{}", e.kind)>
                                        <div><b>{e.kind.clone()}</b>" "<span class="muted">{e.detail_text()}</span></div>
                                        <div class="when">{e.at.as_deref().and_then(parse_rfc3339).map(|t| format_local(t, local_offset())).unwrap_or_default()}</div>
                                    </li>
                                }).collect_view()}
                            </ol>
                            {a.events.is_empty().then(|| view! { <p class="muted">"No events recorded."</p> })}
                        </section>
                    }
                })}
                {move || (detail.get().is_none() && error.get().is_none()).then(|| view! { <p class="muted">"Loading…"</p> })}
            </div>
        </aside>
    }
}
