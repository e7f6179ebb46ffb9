//! Firing and resolved transitions of watchpost's own rules, into the alert pipeline.
//!
//! Rule evaluation never waits on the database: it queues [`RuleAlert`]s on a bounded
//! channel; this task drains it in batches and submits them like any ingested alert
//! (source `watchpost`). A firing alert carries `ends_at` = its validity (Prometheus'
//! `EndsAt`), so an alert whose rule vanished resolves on its own; a resolved one
//! carries the resolve time.

use std::time::Duration;

use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;

use super::ingest::RawAlert;
use super::pipeline::PipelineError;
use super::service::AlertService;
use crate::rules::{RuleAlert, RuleAlertState};

/// The `source` of alerts raised by watchpost's rules.
pub const SOURCE: &str = "watchpost";

/// Most transitions submitted in one pipeline call.
const MAX_BATCH: usize = 1000;

/// Attempts per batch while the pipeline is full or the DB is failing.
const ATTEMPTS: u32 = 6;

/// The alert the pipeline stores for one rule transition. The expression's value
/// travels as the `value` annotation (unless the rule sets one), so notifications can
/// show it.
pub fn raw_alert(mut a: RuleAlert) -> RawAlert {
    if !a.annotations.contains_key("value") {
        a.annotations
            .insert("value".into(), crate::rules::gofmt::format_value(a.value));
    }
    let ends = match a.state {
        RuleAlertState::Resolved => a.resolved_at.unwrap_or_else(chrono::Utc::now),
        RuleAlertState::Firing => a.valid_until,
    };
    RawAlert {
        source: SOURCE.to_string(),
        message: None,
        severity: None,
        type_hint: None,
        type_fallback: None,
        source_score: None,
        labels: a.labels,
        annotations: a.annotations,
        starts_at_ms: Some(a.fired_at.unwrap_or(a.active_at).timestamp_millis()),
        ends_at_ms: Some(ends.timestamp_millis()),
        generator_url: Some(a.generator_url),
    }
}

/// Forwards rule transitions until `token` is cancelled or the rules stop.
pub async fn forward(mut rx: Receiver<RuleAlert>, service: AlertService, token: CancellationToken) {
    let mut batch = Vec::with_capacity(64);
    loop {
        let first = tokio::select! {
            _ = token.cancelled() => return,
            a = rx.recv() => match a {
                Some(a) => a,
                None => return,
            },
        };
        batch.push(raw_alert(first));
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(a) => batch.push(raw_alert(a)),
                Err(_) => break,
            }
        }
        submit(&service, std::mem::take(&mut batch), &token).await;
    }
}

/// Submits one batch, retrying with backoff while the pipeline is full or the DB fails.
async fn submit(service: &AlertService, batch: Vec<RawAlert>, token: &CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    for attempt in 1..=ATTEMPTS {
        let result = service.ingest(batch.clone(), None).await;
        let retry = match &result {
            Ok(_) => return,
            Err(PipelineError::Stopped) => return,
            Err(
                PipelineError::Full { .. }
                | PipelineError::TooManyFiring { .. }
                | PipelineError::Timeout(_),
            ) => true,
            Err(PipelineError::Store { transient, .. }) => *transient,
        };
        if let Err(e) = result {
            if !retry || attempt == ATTEMPTS {
                // Firing alerts are sent again at the resend delay; a lost resolve is
                // covered by `ends_at`.
                tracing::error!(error = %e, alerts = batch.len(), "rule alerts dropped");
                return;
            }
            tracing::warn!(error = %e, retry_in = ?backoff, "rule alerts not stored yet; retrying");
        }
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff *= 2;
    }
}
