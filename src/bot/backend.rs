//! The bot's backend over the real service: the same alert service, silences, reports
//! and rule manager the REST API uses, so a command from Telegram and a call to the API
//! do exactly the same thing (and leave the same audit records).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{
    Actor, AlertDetailInfo, AlertInfo, BackendError, BotBackend, EventInfo, ReportInfo,
    SilenceInfo, StatusInfo,
};
use crate::alerts::AlertService;
use crate::alerts::model::{Alert, AlertState, Severity, datetime, rfc3339};
use crate::alerts::pipeline::PipelineError;
use crate::alerts::repo::ListFilter;
use crate::alerts::service::SilenceOpError;
use crate::audit::AuditRecord;
use crate::rules::{Health, RuleManager};
use crate::silence::{self, Matcher, MatcherJson, PostableSilence};
use crate::store::StoreError;

/// Most alerts `/alerts` looks at before sorting by severity.
const LIST_SCAN: i64 = 1000;

/// [`BotBackend`] over the alert service and the rule manager.
pub struct ServiceBackend {
    alerts: AlertService,
    rules: RuleManager,
    cluster: Option<crate::cluster::Cluster>,
    heartbeats: Option<crate::heartbeat::Heartbeats>,
    agents: Option<crate::agent::Agents>,
}

impl ServiceBackend {
    /// A backend over the running service.
    pub fn new(alerts: AlertService, rules: RuleManager) -> Self {
        ServiceBackend {
            alerts,
            rules,
            cluster: None,
            heartbeats: None,
            agents: None,
        }
    }

    /// `/agents` lists these agents.
    pub fn with_agents(mut self, agents: crate::agent::Agents) -> Self {
        self.agents = Some(agents);
        self
    }

    /// `/heartbeats` lists these heartbeats.
    pub fn with_heartbeats(mut self, heartbeats: crate::heartbeat::Heartbeats) -> Self {
        self.heartbeats = Some(heartbeats);
        self
    }

    /// `/status` names the cluster's leader and members.
    pub fn with_cluster(mut self, cluster: crate::cluster::Cluster) -> Self {
        self.cluster = Some(cluster);
        self
    }
}

fn store(e: StoreError) -> BackendError {
    tracing::warn!(error = %e, "bot command failed on the database");
    BackendError::Unavailable("the database is not answering; try again".into())
}

fn pipeline(e: PipelineError) -> BackendError {
    BackendError::Unavailable(e.to_string())
}

fn silence_op(e: SilenceOpError) -> BackendError {
    match e {
        SilenceOpError::Invalid(e) => BackendError::Invalid(e.to_string()),
        SilenceOpError::NotFound(id) => BackendError::NotFound(format!("silence {id}")),
        SilenceOpError::Store(e) => store(e),
        SilenceOpError::Pipeline(e) => pipeline(e),
    }
}

fn info(a: &Alert) -> AlertInfo {
    AlertInfo {
        id: a.id,
        alertname: a.alertname.clone(),
        message: a.message.clone(),
        severity: a.severity.as_str().to_string(),
        state: a.state.as_str().to_string(),
        labels: a.labels.clone(),
        annotations: a.annotations.clone(),
        starts_at: datetime(a.starts_at_ms),
        ends_at: a.ends_at_ms.map(datetime),
        count: a.count,
        silenced: a.is_suppressed(),
        acknowledged_by: a.ack.as_ref().map(|k| k.by.clone()),
    }
}

/// A one-line summary of an event's detail (who, receiver, reason).
fn event_detail(detail: &serde_json::Value) -> Option<String> {
    let obj = detail.as_object()?;
    let parts: Vec<String> = ["by", "receiver", "target", "outcome", "reason", "comment"]
        .iter()
        .filter_map(|k| {
            obj.get(*k)
                .and_then(|v| v.as_str())
                .filter(|v| !v.is_empty())
                .map(|v| format!("{k}: {v}"))
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

fn silence_info(s: &silence::Silence) -> SilenceInfo {
    SilenceInfo {
        id: s.id.clone(),
        matchers: s.matchers.iter().map(MatcherJson::from).collect(),
        starts_at: datetime(s.starts_at_ms),
        ends_at: datetime(s.ends_at_ms),
        created_by: s.created_by.clone(),
        comment: Some(s.comment.clone()).filter(|c| !c.is_empty()),
    }
}

/// When a silence of `duration` from `now` ends; an error (never a panic) when that is
/// past what a date can hold (`/silence` bounds durations first).
fn silence_end(now: DateTime<Utc>, duration: Duration) -> Result<DateTime<Utc>, BackendError> {
    chrono::TimeDelta::from_std(duration)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .ok_or_else(|| {
            BackendError::Invalid(format!(
                "duration {} is too long: the silence would end after the last date",
                humantime::format_duration(duration)
            ))
        })
}

#[async_trait::async_trait]
impl BotBackend for ServiceBackend {
    async fn list_alerts(
        &self,
        severity: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AlertInfo>, BackendError> {
        let severity = match severity {
            Some(s) => Some(Severity::parse_lenient(s).ok_or_else(|| {
                BackendError::Invalid(format!(
                    "unknown severity {s:?}; use critical, warning or info"
                ))
            })?),
            None => None,
        };
        let filter = ListFilter {
            state: Some(AlertState::Firing),
            severity,
            limit: LIST_SCAN,
            ..ListFilter::default()
        };
        let mut alerts = self.alerts.list(&filter).await.map_err(store)?;
        // Most severe first, then newest.
        alerts.sort_by(|a, b| b.severity.cmp(&a.severity).then(b.id.cmp(&a.id)));
        Ok(alerts.iter().take(limit).map(info).collect())
    }

    async fn get_alert(&self, id: i64) -> Result<Option<AlertDetailInfo>, BackendError> {
        let Some((alert, events)) = self.alerts.get(id).await.map_err(store)? else {
            return Ok(None);
        };
        let c = crate::alerts::classify::explain(&alert);
        Ok(Some(AlertDetailInfo {
            alert_type: alert.alert_type.clone(),
            type_reason: c.type_reason,
            severity_reason: c.severity_reason,
            flapping: alert.flapping_since_ms.is_some(),
            alert: info(&alert),
            events: events
                .iter()
                .map(|e| EventInfo {
                    kind: e.kind.clone(),
                    at: datetime(e.at_ms),
                    detail: event_detail(&e.detail),
                })
                .collect(),
        }))
    }

    async fn ack(
        &self,
        id: i64,
        actor: &Actor,
        comment: Option<&str>,
    ) -> Result<AlertInfo, BackendError> {
        let who = actor.principal();
        let comment = comment.unwrap_or_default().to_string();
        let audit = AuditRecord::new(
            &who,
            "alert.ack",
            id.to_string(),
            serde_json::json!({"comment": comment, "via": "telegram"}),
        );
        match self.alerts.ack(id, who.name.clone(), comment, audit).await {
            Ok(Some(a)) => Ok(info(&a)),
            Ok(None) => Err(BackendError::NotFound(format!("alert {id}"))),
            Err(e) => Err(pipeline(e)),
        }
    }

    async fn silence(
        &self,
        matchers: &[Matcher],
        duration: Duration,
        actor: &Actor,
        comment: Option<&str>,
    ) -> Result<SilenceInfo, BackendError> {
        let who = actor.principal();
        let ends = silence_end(Utc::now(), duration)?;
        let posted = PostableSilence {
            id: None,
            matchers: matchers.iter().map(MatcherJson::from).collect(),
            starts_at: None,
            ends_at: rfc3339(ends.timestamp_millis()),
            created_by: Some(who.name.clone()),
            comment: Some(
                comment
                    .map(str::to_string)
                    .unwrap_or_else(|| "silenced from Telegram".into()),
            ),
            status: None,
            updated_at: None,
        };
        let (s, _) = self
            .alerts
            .save_silence(&posted, &who.name, |s, _| {
                AuditRecord::new(
                    &who,
                    "silence.create",
                    s.id.clone(),
                    serde_json::json!({"matchers": posted.matchers, "via": "telegram"}),
                )
            })
            .await
            .map_err(silence_op)?;
        Ok(silence_info(&s))
    }

    async fn unsilence(&self, id: &str, actor: &Actor) -> Result<(), BackendError> {
        let who = actor.principal();
        self.alerts
            .expire_silence(id, |s| {
                AuditRecord::new(
                    &who,
                    "silence.expire",
                    s.id.clone(),
                    serde_json::json!({"via": "telegram"}),
                )
            })
            .await
            .map_err(silence_op)?;
        Ok(())
    }

    async fn report(&self, window: Duration) -> Result<ReportInfo, BackendError> {
        let label = humantime::format_duration(window).to_string();
        let r = self.alerts.report(window, &label).await.map_err(store)?;
        let mut by_severity: Vec<(String, u64)> = r
            .counts
            .by_severity
            .iter()
            .map(|(k, v)| (k.clone(), (*v).max(0) as u64))
            .collect();
        by_severity.sort_by_key(|(k, _)| {
            std::cmp::Reverse(Severity::parse_strict(k).map(|s| s as u8).unwrap_or(0))
        });
        Ok(ReportInfo {
            window,
            total: r.counts.total.max(0) as u64,
            firing: r.counts.firing.max(0) as u64,
            resolved: r.counts.resolved.max(0) as u64,
            by_severity,
            top_alerts: r
                .top_alerts
                .iter()
                .map(|t| {
                    let name = t.alertname.clone().unwrap_or_else(|| t.source.clone());
                    (name, t.count.max(0) as u64)
                })
                .collect(),
            noisiest_sources: r
                .noisiest_sources
                .iter()
                .map(|n| (n.name.clone(), n.receipts.max(0) as u64))
                .collect(),
            mean_time_to_resolve: r
                .mttr_seconds
                .and_then(|s| Duration::try_from_secs_f64(s).ok()),
        })
    }

    async fn heartbeats(&self) -> Result<Vec<crate::heartbeat::Heartbeat>, BackendError> {
        match &self.heartbeats {
            Some(h) => h.list().await.map_err(store),
            None => Err(BackendError::Unavailable(
                "heartbeats are not available".into(),
            )),
        }
    }

    async fn agents(&self) -> Result<Vec<crate::agent::registry::AgentView>, BackendError> {
        match &self.agents {
            Some(a) => a.list().await.map_err(store),
            None => Err(BackendError::Unavailable("agents are not available".into())),
        }
    }

    async fn status(&self) -> Result<StatusInfo, BackendError> {
        let database = self.alerts.db().ping().await.is_ok();
        let (mut loaded, mut failing) = (0u64, 0u64);
        for g in self.rules.groups() {
            for r in &g.rules {
                loaded += 1;
                if r.status().health == Health::Err {
                    failing += 1;
                }
            }
        }
        let firing = if database {
            let filter = ListFilter {
                state: Some(AlertState::Firing),
                limit: LIST_SCAN,
                ..ListFilter::default()
            };
            self.alerts
                .list(&filter)
                .await
                .map(|a| a.len())
                .unwrap_or(0) as u64
        } else {
            0
        };
        Ok(StatusInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            healthy: database,
            database,
            rules_loaded: loaded,
            rules_failing: failing,
            firing_alerts: firing,
            cluster: match &self.cluster {
                Some(c) if database => c.status().await.ok(),
                _ => None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_ends_are_checked() {
        let now = Utc::now();
        let hour = silence_end(now, Duration::from_secs(3600)).unwrap();
        assert_eq!((hour - now).num_seconds(), 3600);
        // 300000 years fit a `TimeDelta` but not a date: an error, not a panic.
        for d in [
            Duration::from_secs(300_000 * 31_557_600),
            Duration::from_secs(u64::MAX),
            Duration::MAX,
        ] {
            let e = silence_end(now, d).unwrap_err();
            assert!(e.to_string().contains("too long"), "{e}");
        }
    }
}
