//! The UI (wasm32 only).
