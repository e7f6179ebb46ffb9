//! Reports over a window, as JSON or Markdown: counts, the top alerts, mean time to
//! resolve and to acknowledge, and the noisiest sources and rules. Like the stats, a
//! report covers the alerts that started in the window.

use std::fmt::Write;
use std::time::Duration;

use serde::Serialize;
use sqlx::Row;

use super::model::rfc3339;
use super::stats::{self, Stats};
use crate::store::{Db, StoreError, now_ms};

/// How many entries the top lists have.
pub const TOP: i64 = 10;

/// One of the most repeated alerts.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TopAlert {
    /// Id.
    pub id: i64,
    /// Alert name.
    pub alertname: Option<String>,
    /// Source.
    pub source: String,
    /// Severity.
    pub severity: String,
    /// State.
    pub state: String,
    /// Receipts.
    pub count: i64,
    /// Message.
    pub message: String,
}

/// A source or rule and how noisy it was.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Noisy {
    /// Source or alert name.
    pub name: String,
    /// Distinct alerts.
    pub alerts: i64,
    /// Receipts.
    pub receipts: i64,
}

/// A report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// The window (`24h`).
    pub window: String,
    /// Start (RFC 3339).
    pub from: String,
    /// End (RFC 3339).
    pub to: String,
    /// Counts (the stats of the window).
    pub counts: Stats,
    /// Alerts resolved among those of the window.
    pub resolved: i64,
    /// Mean time from start to resolution of those, in seconds.
    pub mttr_seconds: Option<f64>,
    /// Alerts acknowledged among those of the window.
    pub acknowledged: i64,
    /// Mean time from start to acknowledgement, in seconds.
    pub mtta_seconds: Option<f64>,
    /// Most repeated alerts.
    pub top_alerts: Vec<TopAlert>,
    /// Sources by receipts.
    pub noisiest_sources: Vec<Noisy>,
    /// Alert names (rules) by receipts.
    pub noisiest_rules: Vec<Noisy>,
}

/// Builds the report of `window` ending now.
pub async fn build(db: &Db, window: Duration, label: &str) -> Result<Report, StoreError> {
    let mut counts = stats::compute(db, window).await?;
    counts.window = label.to_string();
    let from = stats::window_start(now_ms(), window);
    let (resolved, mttr) = mean(
        db,
        "reports.mttr",
        "SELECT count(*) AS n, CAST(avg(ends_at_ms - starts_at_ms) AS DOUBLE PRECISION) AS mean \
         FROM alerts WHERE starts_at_ms >= $1 AND state = 'resolved' AND ends_at_ms IS NOT NULL",
        from,
    )
    .await?;
    let (acknowledged, mtta) = mean(
        db,
        "reports.mtta",
        "SELECT count(*) AS n, CAST(avg(ack_at_ms - starts_at_ms) AS DOUBLE PRECISION) AS mean \
         FROM alerts WHERE starts_at_ms >= $1 AND ack_at_ms IS NOT NULL",
        from,
    )
    .await?;
    let rows = db
        .timed("reports.top_alerts", async {
            sqlx::query(
                "SELECT id, alertname, source, severity, state, count, message FROM alerts \
                 WHERE starts_at_ms >= $1 ORDER BY count DESC, id LIMIT $2",
            )
            .bind(from)
            .bind(TOP)
            .fetch_all(db.pool())
            .await
            .map_err(StoreError::from)
        })
        .await?;
    let top_alerts = rows
        .iter()
        .map(|r| {
            Ok(TopAlert {
                id: r.try_get("id")?,
                alertname: r.try_get("alertname")?,
                source: r.try_get("source")?,
                severity: r.try_get("severity")?,
                state: r.try_get("state")?,
                count: r.try_get("count")?,
                message: r.try_get("message")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let noisiest_sources = noisy(
        db,
        "reports.noisy_sources",
        "SELECT source AS name, count(*) AS alerts, CAST(sum(count) AS BIGINT) AS receipts FROM alerts \
         WHERE starts_at_ms >= $1 GROUP BY source ORDER BY receipts DESC, name LIMIT $2",
        from,
    )
    .await?;
    let noisiest_rules = noisy(
        db,
        "reports.noisy_rules",
        "SELECT alertname AS name, count(*) AS alerts, CAST(sum(count) AS BIGINT) AS receipts FROM alerts \
         WHERE starts_at_ms >= $1 AND alertname IS NOT NULL GROUP BY alertname \
         ORDER BY receipts DESC, name LIMIT $2",
        from,
    )
    .await?;
    Ok(Report {
        window: label.to_string(),
        from: counts.from.clone(),
        to: counts.to.clone(),
        counts,
        resolved,
        mttr_seconds: mttr.map(|ms| (ms / 1000.0 * 1000.0).round() / 1000.0),
        acknowledged,
        mtta_seconds: mtta.map(|ms| (ms / 1000.0 * 1000.0).round() / 1000.0),
        top_alerts,
        noisiest_sources,
        noisiest_rules,
    })
}

async fn mean(
    db: &Db,
    name: &'static str,
    sql: &'static str,
    from: i64,
) -> Result<(i64, Option<f64>), StoreError> {
    let row = db
        .timed(name, async {
            sqlx::query(sql)
                .bind(from)
                .fetch_one(db.pool())
                .await
                .map_err(StoreError::from)
        })
        .await?;
    let n: i64 = row.try_get("n")?;
    let mean: Option<f64> = row.try_get("mean")?;
    Ok((n, if n > 0 { mean } else { None }))
}

async fn noisy(
    db: &Db,
    name: &'static str,
    sql: &'static str,
    from: i64,
) -> Result<Vec<Noisy>, StoreError> {
    let rows = db
        .timed(name, async {
            sqlx::query(sql)
                .bind(from)
                .bind(TOP)
                .fetch_all(db.pool())
                .await
                .map_err(StoreError::from)
        })
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Noisy {
                name: r.try_get("name")?,
                alerts: r.try_get("alerts")?,
                receipts: r.try_get::<Option<i64>, _>("receipts")?.unwrap_or(0),
            })
        })
        .collect()
}

/// `1h 5m 3s`-style durations for people.
fn human(seconds: f64) -> String {
    let d = Duration::from_secs(seconds.max(0.0).round() as u64);
    if d.is_zero() {
        return "0s".into();
    }
    humantime::format_duration(d).to_string()
}

/// Escapes text for a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

impl Report {
    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let c = &self.counts;
        let mut m = String::new();
        let _ = writeln!(m, "# Alert report: last {}\n", self.window);
        let _ = writeln!(m, "{} to {}\n", self.from, self.to);
        let _ = writeln!(m, "## Counts\n");
        let _ = writeln!(m, "| | alerts |\n|---|---:|");
        let _ = writeln!(m, "| total | {} |", c.total);
        let _ = writeln!(m, "| firing | {} |", c.firing);
        let _ = writeln!(m, "| resolved | {} |", c.resolved);
        let _ = writeln!(m, "| acknowledged | {} |", c.acknowledged);
        let _ = writeln!(m, "| silenced | {} |", c.silenced);
        let _ = writeln!(m, "| receipts | {} |", c.receipts);
        for (s, n) in &c.by_severity {
            let _ = writeln!(m, "| severity {s} | {n} |");
        }
        for (t, n) in &c.by_type {
            let _ = writeln!(m, "| type {} | {n} |", cell(t));
        }
        let _ = writeln!(m, "\n## Response\n");
        let _ = writeln!(
            m,
            "- Mean time to resolve (MTTR): {} over {} resolved alerts",
            self.mttr_seconds.map(human).unwrap_or_else(|| "n/a".into()),
            self.resolved
        );
        let _ = writeln!(
            m,
            "- Mean time to acknowledge: {} over {} acknowledged alerts",
            self.mtta_seconds.map(human).unwrap_or_else(|| "n/a".into()),
            self.acknowledged
        );
        let _ = writeln!(m, "\n## Top alerts\n");
        if self.top_alerts.is_empty() {
            let _ = writeln!(m, "No alerts.");
        } else {
            let _ = writeln!(
                m,
                "| id | alert | source | severity | state | count | message |\n|---:|---|---|---|---|---:|---|"
            );
            for a in &self.top_alerts {
                let _ = writeln!(
                    m,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    a.id,
                    cell(a.alertname.as_deref().unwrap_or("-")),
                    cell(&a.source),
                    a.severity,
                    a.state,
                    a.count,
                    cell(&super::ingest::truncate_chars(&a.message, 120))
                );
            }
        }
        for (title, list) in [
            ("Noisiest sources", &self.noisiest_sources),
            ("Noisiest rules", &self.noisiest_rules),
        ] {
            let _ = writeln!(m, "\n## {title}\n");
            if list.is_empty() {
                let _ = writeln!(m, "None.");
                continue;
            }
            let _ = writeln!(m, "| name | alerts | receipts |\n|---|---:|---:|");
            for n in list {
                let _ = writeln!(m, "| {} | {} | {} |", cell(&n.name), n.alerts, n.receipts);
            }
        }
        let _ = writeln!(m, "\n_Generated {}._", rfc3339(now_ms()));
        m
    }
}
