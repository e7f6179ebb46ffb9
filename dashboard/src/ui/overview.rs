//! The Overview: live charts of the host and the service, a time-window selector and the
//! firing-alert summary.

use leptos::prelude::*;

use super::chart::Chart;
use super::{Ctx, SeverityStrip, replace_query};
use crate::model::build_query;
use crate::panels::OVERVIEW;

/// Windows offered: (label, ms).
pub const WINDOWS: [(&str, i64); 3] = [("5m", 300_000), ("15m", 900_000), ("60m", 3_600_000)];

/// The window from `?window=` (default 15 minutes).
pub fn window_from_query(q: &[(String, String)]) -> i64 {
    q.iter()
        .find(|(k, _)| k == "window")
        .and_then(|(_, v)| WINDOWS.iter().find(|(l, _)| l == v))
        .map_or(900_000, |(_, ms)| *ms)
}

#[component]
pub fn Overview() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let choose = move |label: &'static str, ms: i64| {
        ctx.window_ms.set(ms);
        let q = if ms == 900_000 {
            String::new()
        } else {
            build_query(&[("window".into(), label.into())])
        };
        replace_query(ctx, &q);
    };
    view! {
        <div class="toolbar">
            <h1>"Overview"</h1>
            <div class="seg" role="group" aria-label="Time window">
                {WINDOWS.iter().map(|&(label, ms)| view! {
                    <button type="button" aria-pressed=move || (ctx.window_ms.get() == ms).to_string()
                        id=format!("window-{label}") on:click=move |_| choose(label, ms)>
                        {label}
                    </button>
                }).collect_view()}
            </div>
            <div class="spacer"></div>
            <SeverityStrip/>
        </div>
        <div class="grid">
            {OVERVIEW.iter().map(|p| view! { <Chart panel=p/> }).collect_view()}
        </div>
    }
}
