//! Scheduled reports: `reports.telegram_schedule` (cron, in `notify.timezone`) sends the report of
//! `reports.window` to the default chats, through the outbox (so a report is sent once
//! per scheduled time, even across restarts).

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use croner::Cron;
use tokio_util::sync::CancellationToken;

use super::{BotBackend, format};
use crate::config::Config;
use crate::notify::split::{TELEGRAM_LIMIT, split_html};
use crate::notify::{NewOutboxRow, NotifyHandle, TelegramPayload};

/// Parses a cron expression (5 fields, or 6 with seconds; `@daily` and the like).
pub fn parse_cron(expr: &str) -> Result<Cron, String> {
    Cron::from_str(expr.trim()).map_err(|e| format!("invalid cron expression {expr:?}: {e}"))
}

/// The next run strictly after `after`, the cron read in `tz` (`0 9 * * *` is 09:00
/// there, daylight saving included).
pub fn next_run(cron: &Cron, after: DateTime<Utc>, tz: chrono_tz::Tz) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&after.with_timezone(&tz), false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The report loop.
#[derive(Clone)]
pub struct ReportSchedule {
    cron: Arc<Cron>,
    config: Arc<Config>,
    backend: Arc<dyn BotBackend>,
    notify: NotifyHandle,
}

impl ReportSchedule {
    /// A schedule from `reports.telegram_schedule`.
    pub fn new(
        config: Arc<Config>,
        backend: Arc<dyn BotBackend>,
        notify: NotifyHandle,
    ) -> Result<ReportSchedule, String> {
        let expr = config
            .reports
            .telegram_schedule
            .clone()
            .ok_or("reports.telegram_schedule is not set")?;
        Ok(ReportSchedule {
            cron: Arc::new(parse_cron(&expr)?),
            config,
            backend,
            notify,
        })
    }

    /// Sleeps until each scheduled time and enqueues the report.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut after = Utc::now();
        loop {
            let tz = crate::notify::timezone(&self.config);
            let Some(next) = next_run(&self.cron, after, tz) else {
                tracing::warn!("report schedule has no next run");
                return Ok(());
            };
            let wait = (next - Utc::now()).to_std().unwrap_or_default();
            tracing::debug!(at = %next, "next scheduled report");
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(wait) => {}
            }
            self.send(next).await;
            after = next;
        }
    }

    /// Builds the report and writes it to the outbox for every default chat; the
    /// idempotency key is the scheduled time, so it goes out once.
    pub async fn send(&self, at: DateTime<Utc>) {
        let window = self.config.reports.window;
        let report = match self.backend.report(window).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "scheduled report failed");
                return;
            }
        };
        let html = format::report(&report, crate::notify::timezone(&self.config));
        let parts = split_html(&html, TELEGRAM_LIMIT);
        let mut rows = Vec::new();
        for chat in &self.config.telegram.chat_ids {
            for (i, part) in parts.iter().enumerate() {
                let payload = TelegramPayload {
                    chat_id: *chat,
                    text: part.clone(),
                    message_thread_id: None,
                    disable_notification: true,
                    buttons: false,
                    ack_ids: vec![],
                    silence_labels: Default::default(),
                    chart: None,
                    reply_to: None,
                };
                rows.push(NewOutboxRow {
                    idempotency_key: format!(
                        "report|{}|telegram:{chat}|{}/{}",
                        at.timestamp(),
                        i + 1,
                        parts.len()
                    ),
                    receiver: "report".into(),
                    kind: "telegram".into(),
                    target: format!("telegram:{chat}"),
                    group_key: format!("report:{}", at.to_rfc3339()),
                    status: "report".into(),
                    part: i as i64 + 1,
                    parts: parts.len() as i64,
                    payload: serde_json::to_string(&payload).unwrap_or_default(),
                    alert_ids: vec![],
                });
            }
        }
        match self.notify.enqueue(&rows).await {
            Ok(n) => tracing::info!(rows = n, "scheduled report enqueued"),
            Err(e) => tracing::error!(error = %e, "cannot enqueue the scheduled report"),
        }
    }
}

/// Problems with `reports.telegram_schedule`, each naming the key.
pub fn validate(config: &crate::config::Config) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(cron) = &config.reports.telegram_schedule {
        if let Err(e) = parse_cron(cron) {
            problems.push(format!("reports.telegram_schedule: {e}"));
        }
        if config.telegram.bot_token.is_none() {
            problems.push("reports.telegram_schedule: needs telegram.bot_token".into());
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_the_key() {
        let config =
            crate::config::Config::from_toml("[reports]\ntelegram_schedule = \"not cron\"\n")
                .unwrap();
        let problems = validate(&config).join("\n");
        assert!(
            problems.contains("reports.telegram_schedule: ")
                && problems.contains("reports.telegram_schedule: needs telegram.bot_token"),
            "{problems}"
        );
    }

    #[test]
    fn cron_parsing_and_next_run() {
        let c = parse_cron("0 9 * * 1").unwrap();
        let monday_8 = DateTime::parse_from_rfc3339("2025-01-06T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let next = next_run(&c, monday_8, chrono_tz::Tz::UTC).unwrap();
        assert_eq!(next.to_rfc3339(), "2025-01-06T09:00:00+00:00");
        // 09:00 in Moscow (UTC+3) is 06:00 UTC: already past at 08:00 UTC on Monday.
        let next = next_run(&c, monday_8, chrono_tz::Europe::Moscow).unwrap();
        assert_eq!(next.to_rfc3339(), "2025-01-13T06:00:00+00:00");
        assert!(parse_cron("every day").is_err());
        assert!(parse_cron("@daily").is_ok());
    }
}
