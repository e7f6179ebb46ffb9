//! watchpost's dashboard: a Leptos client-side app compiled to `wasm32-unknown-unknown`,
//! fed live over `/api/v1/stream` and acting through the REST API.
//!
//! The modules at the top level are pure logic (formatting, series buffers, filters,
//! API shapes, the stream protocol) and are unit-tested on the host with
//! `cargo test -p dashboard`; the UI under `ui` only builds for wasm32.

pub mod format;
pub mod markdown;
pub mod model;
pub mod panels;
pub mod postgres;
pub mod promql;
pub mod protocol;
pub mod route;
pub mod series;
pub mod stats;
pub mod time;

#[cfg(target_arch = "wasm32")]
mod ui;
