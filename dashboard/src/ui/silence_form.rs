//! The silence form, used on the Silences page and in the alert drawer (prefilled from
//! the alert's labels).

use leptos::prelude::*;

use super::{Ctx, live, net, session};
use crate::model::{Matcher, NewSilence};
use crate::time::{format_rfc3339, parse_duration_ms};

const OPERATORS: [(&str, bool, bool); 4] = [
    ("=", true, false),
    ("!=", false, false),
    ("=~", true, true),
    ("!~", false, true),
];

fn operator(m: &Matcher) -> &'static str {
    OPERATORS
        .iter()
        .find(|(_, eq, re)| *eq == m.is_equal && *re == m.is_regex)
        .map_or("=", |o| o.0)
}

#[component]
pub fn SilenceForm(initial: Vec<Matcher>, on_done: Callback<()>) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let next_id = RwSignal::new(initial.len() as u64);
    let matchers = RwSignal::new(
        initial
            .into_iter()
            .enumerate()
            .map(|(i, m)| (i as u64, m))
            .collect::<Vec<_>>(),
    );
    let duration = RwSignal::new("2h".to_string());
    let created_by = RwSignal::new(session::user());
    let comment = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);

    let edit = move |id: u64, f: &dyn Fn(&mut Matcher)| {
        matchers.update(|ms| {
            if let Some((_, m)) = ms.iter_mut().find(|(i, _)| *i == id) {
                f(m);
            }
        })
    };
    let add = move |_| {
        let id = next_id.get_untracked();
        next_id.set(id + 1);
        matchers.update(|ms| {
            ms.push((
                id,
                Matcher {
                    name: String::new(),
                    value: String::new(),
                    is_regex: false,
                    is_equal: true,
                },
            ))
        });
    };
    let submit = move || {
        let Some(ms) = parse_duration_ms(&duration.get_untracked()).filter(|d| *d > 0) else {
            error.set(Some("duration: use e.g. 30m, 2h, 1d".into()));
            return;
        };
        let now = live::server_now();
        let silence = NewSilence {
            matchers: matchers
                .get_untracked()
                .into_iter()
                .map(|(_, m)| m)
                .collect(),
            starts_at: format_rfc3339(now),
            ends_at: format_rfc3339(now + ms),
            created_by: created_by.get_untracked().trim().to_string(),
            comment: comment.get_untracked().trim().to_string(),
        };
        if let Err(e) = silence.validate() {
            error.set(Some(e));
            return;
        }
        error.set(None);
        busy.set(true);
        let body = serde_json::to_value(&silence).unwrap_or_default();
        leptos::task::spawn_local(async move {
            match net::post("/api/v1/silences", &body).await {
                Ok(_) => {
                    session::set_user(&silence.created_by);
                    ctx.toast("Silence created", "ok");
                    on_done.run(());
                }
                Err(e) => error.set(Some(e.to_string())),
            }
            busy.set(false);
        });
    };

    view! {
        <form class="form card card-body" id="silence-form" on:submit=move |e: web_sys::SubmitEvent| { e.prevent_default(); submit(); }>
            <div class="hint">"Matchers (all must match an alert's labels)"</div>
            <For each=move || matchers.get() key=|(id, _)| *id let:item>
                {
                    let (id, m) = item;
                    view! {
                        <div class="matcher">
                            <input type="text" aria-label="label name" placeholder="label" value=m.name.clone()
                                on:input=move |e| { let v = event_target_value(&e); edit(id, &|m| m.name = v.clone()); }/>
                            <select aria-label="operator" on:change=move |e| {
                                let v = event_target_value(&e);
                                if let Some((_, eq, re)) = OPERATORS.iter().find(|o| o.0 == v) {
                                    edit(id, &|m| { m.is_equal = *eq; m.is_regex = *re; });
                                }
                            }>
                                {OPERATORS.iter().map(|(op, _, _)| view! {
                                    <option value=*op selected=operator(&m) == *op>{*op}</option>
                                }).collect_view()}
                            </select>
                            <input type="text" aria-label="value" placeholder="value" value=m.value.clone()
                                on:input=move |e| { let v = event_target_value(&e); edit(id, &|m| m.value = v.clone()); }/>
                            <button type="button" class="ghost small" aria-label="remove matcher"
                                on:click=move |_| matchers.update(|ms| ms.retain(|(i, _)| *i != id))>"✕"</button>
                        </div>
                    }
                }
            </For>
            <div><button type="button" class="small" on:click=add>"+ matcher"</button></div>
            <div class="row">
                <label>"Duration"
                    <input type="text" id="silence-duration" list="silence-durations" prop:value=move || duration.get()
                        on:input=move |e| duration.set(event_target_value(&e))/>
                    <datalist id="silence-durations">
                        {["30m", "1h", "2h", "4h", "8h", "1d", "3d", "7d"].into_iter().map(|d| view! { <option value=d></option> }).collect_view()}
                    </datalist>
                </label>
                <label>"Created by"
                    <input type="text" id="silence-by" prop:value=move || created_by.get()
                        on:input=move |e| created_by.set(event_target_value(&e))/>
                </label>
            </div>
            <label>"Comment"
                <input type="text" id="silence-comment" placeholder="why (required)" prop:value=move || comment.get()
                    on:input=move |e| comment.set(event_target_value(&e))/>
            </label>
            <div class="msg-error" role="alert">{move || error.get()}</div>
            <div class="actions">
                <button type="submit" class="primary" id="silence-submit" disabled=move || busy.get()>"Create silence"</button>
                <button type="button" class="ghost" on:click=move |_| on_done.run(())>"Cancel"</button>
            </div>
        </form>
    }
}
