//! The Silences page: list (active, pending, expired), create, expire.

use leptos::prelude::*;

use super::silence_form::SilenceForm;
use super::{Ctx, live, local_offset, net};
use crate::format::format_ago;
use crate::model::{Silence, parse_silences};
use crate::time::{format_local, parse_rfc3339};

fn state_rank(s: &str) -> u8 {
    match s {
        "active" => 0,
        "pending" => 1,
        _ => 2,
    }
}

#[component]
pub fn SilencesPage() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let silences = RwSignal::new(Vec::<Silence>::new());
    let error = RwSignal::new(None::<String>);
    let loading = RwSignal::new(true);
    let creating = RwSignal::new(false);
    let show_expired = RwSignal::new(false);
    // `/silences#<id>` (linked from an alert muted by it) highlights that silence.
    let target = web_sys::window()
        .and_then(|w| w.location().hash().ok())
        .map(|h| h.trim_start_matches('#').to_string())
        .filter(|h| !h.is_empty());
    if target.is_some() {
        show_expired.set(true);
    }

    let load = move || {
        loading.set(true);
        leptos::task::spawn_local(async move {
            match net::get("/api/v1/silences").await {
                Ok(v) => match parse_silences(&v) {
                    Ok(list) => {
                        silences.set(list);
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
    live::on_resync(load);

    let expire = move |id: String| {
        leptos::task::spawn_local(async move {
            match net::delete(&format!("/api/v1/silences/{id}")).await {
                Ok(_) => {
                    ctx.toast("Silence expired", "ok");
                    load();
                }
                Err(e) => ctx.toast(format!("Expire failed: {e}"), "error"),
            }
        });
    };

    let rows = Memo::new(move |_| {
        let now = ctx.clock.get() as i64;
        let mut v: Vec<(String, Silence)> = silences
            .get()
            .into_iter()
            .map(|s| (s.state(now), s))
            .filter(|(st, _)| show_expired.get() || st != "expired")
            .collect();
        v.sort_by(|a, b| {
            state_rank(&a.0)
                .cmp(&state_rank(&b.0))
                .then_with(|| b.1.ends_at.cmp(&a.1.ends_at))
        });
        v
    });

    view! {
        <div class="toolbar">
            <h1>"Silences"</h1>
            <label class="inline">
                <input type="checkbox" prop:checked=move || show_expired.get()
                    on:change=move |e| show_expired.set(event_target_checked(&e))/>
                "show expired"
            </label>
            <div class="spacer"></div>
            <button type="button" on:click=move |_| load()>"Refresh"</button>
            <button type="button" class="primary" id="new-silence" aria-expanded=move || creating.get().to_string()
                on:click=move |_| creating.update(|c| *c = !*c)>"New silence"</button>
        </div>
        {move || creating.get().then(|| view! {
            <div style="margin-bottom:14px; max-width:720px">
                <SilenceForm initial=Vec::new() on_done=Callback::new(move |_| { creating.set(false); load(); })/>
            </div>
        })}
        {move || error.get().map(|e| view! { <div class="error-box" role="alert">"Could not load silences: " {e}</div> })}
        <div class="card table-wrap">
            <table class="data" id="silences-table">
                <thead>
                    <tr>
                        <th scope="col">"State"</th>
                        <th scope="col">"Matchers"</th>
                        <th scope="col">"Ends"</th>
                        <th scope="col" class="hide-narrow">"Created by"</th>
                        <th scope="col" class="hide-narrow">"Comment"</th>
                        <th scope="col"></th>
                    </tr>
                </thead>
                <tbody>
                    <For each=move || rows.get() key=|(st, s)| (s.id.clone(), st.clone()) let:row>
                        {
                            let (state, s) = row;
                            let id = s.id.clone();
                            let ends = s.ends_at.as_deref().and_then(parse_rfc3339);
                            let starts = s.starts_at.as_deref().and_then(parse_rfc3339);
                            view! {
                                <tr data-id=s.id.clone() data-state=state.clone() class:target=target.as_deref() == Some(id.as_str())>
                                    <td><span class=format!("st-{state}")>{state.clone()}</span></td>
                                    <td>{s.matchers.iter().map(|m| view! { <span class="tag">{m.display()}</span> }).collect_view()}</td>
                                    <td class="num" title=format!("{} → {}",
                                        starts.map(|t| format_local(t, local_offset())).unwrap_or_default(),
                                        ends.map(|t| format_local(t, local_offset())).unwrap_or_default())>
                                        {move || ends.map(|e| format_ago(ctx.clock.get() as i64, e)).unwrap_or_default()}
                                    </td>
                                    <td class="hide-narrow">{s.created_by.clone()}</td>
                                    <td class="hide-narrow">{s.comment.clone()}</td>
                                    <td>
                                        {(state != "expired").then(|| {
                                            let id = id.clone();
                                            view! { <button type="button" class="small danger" on:click=move |_| expire(id.clone())>"Expire"</button> }
                                        })}
                                    </td>
                                </tr>
                            }
                        }
                    </For>
                </tbody>
            </table>
            {move || (rows.with(Vec::is_empty) && !loading.get()).then(|| view! {
                <div class="empty">"No silences."</div>
            })}
        </div>
    }
}
