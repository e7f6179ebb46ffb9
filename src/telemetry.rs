//! Tracing set-up and the layer that counts log events by level.
//!
//! The counts live in process-wide atomics (tracing has one global subscriber) and every
//! app's registry exposes them as `watchpost_log_events_total{level}`.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogConfig, LogFormat};

/// Level names in the order of [`LOG_EVENTS`].
pub const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// Events seen per level since the process started.
pub static LOG_EVENTS: [AtomicU64; 5] = [
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
];

fn level_index(level: &Level) -> usize {
    match *level {
        Level::ERROR => 0,
        Level::WARN => 1,
        Level::INFO => 2,
        Level::DEBUG => 3,
        Level::TRACE => 4,
    }
}

/// A layer that counts every enabled event by level.
pub struct CountingLayer;

impl<S: Subscriber> Layer<S> for CountingLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        LOG_EVENTS[level_index(event.metadata().level())].fetch_add(1, Ordering::Relaxed);
    }
}

/// Installs the global subscriber: filter from `RUST_LOG`, else `log.level`, else `info`;
/// pretty on a TTY, else JSON, unless `log.format` says otherwise. Logs go to stderr.
/// Calling it twice is harmless (the second call does nothing).
pub fn init(log: &LogConfig) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| log.level.clone())
        .unwrap_or_else(|| "info".into());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let format = log.format.unwrap_or(if std::io::stderr().is_terminal() {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    });
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(CountingLayer);
    let result = match format {
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    // Already initialised (several apps in one test process): keep the first.
    let _ = result;
}
