//! The heartbeat service: pings, configuration, and the checker that turns late
//! heartbeats down and raises their alerts.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{GaugeVec, IntGaugeVec, Opts};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{AlertKind, Effect, Heartbeat, Ping, Status, store};
use crate::alerts::AlertService;
use crate::alerts::ingest::RawAlert;
use crate::alerts::model::Severity;
use crate::alerts::raise::{Raised, Raiser};
use crate::config::HeartbeatConfig;
use crate::metrics::Metrics;
use crate::store::{Db, StoreError, now_ms};

/// Longest the checker sleeps (pings may reach another node of a cluster).
const RECHECK: Duration = Duration::from_secs(5);

/// Why a ping was refused.
#[derive(Debug, thiserror::Error)]
pub enum HeartbeatError {
    /// No such heartbeat (and no `period` to create it).
    #[error("{0}")]
    NotFound(String),
    /// A bad name or parameter.
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a ping may create a heartbeat with (`?period=&grace=`).
#[derive(Debug, Clone, Copy)]
pub struct Create {
    /// Longest time between pings.
    pub period: Duration,
    /// Wait after the due time.
    pub grace: Duration,
}

/// Pings, the list, and the checker. Cheap to clone.
#[derive(Clone)]
pub struct Heartbeats {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    alerts: Raiser,
    wake: Notify,
    up: IntGaugeVec,
    last_ping: GaugeVec,
    /// Heartbeats with metric series.
    exported: Mutex<BTreeSet<String>>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Heartbeats {
    /// The service over `db`, raising alerts through `alerts`.
    pub fn new(db: Db, alerts: AlertService, metrics: &Metrics) -> Result<Self, prometheus::Error> {
        let up = IntGaugeVec::new(
            Opts::new(
                "watchpost_heartbeat_up",
                "1 while a heartbeat's pings come on time (up or late within grace), 0 when new, \
                 down or failed.",
            ),
            &["heartbeat"],
        )?;
        let last_ping = GaugeVec::new(
            Opts::new(
                "watchpost_heartbeat_last_ping_timestamp_seconds",
                "Time of a heartbeat's last good ping (0: never).",
            ),
            &["heartbeat"],
        )?;
        metrics.register_all(
            "heartbeats",
            vec![Box::new(up.clone()), Box::new(last_ping.clone())],
        );
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                alerts: Raiser::new(alerts, "heartbeat"),
                wake: Notify::new(),
                up,
                last_ping,
                exported: Mutex::new(BTreeSet::new()),
            }),
        })
    }

    /// Makes the stored heartbeats match `[[heartbeats]]`: new ones created, changed
    /// ones updated (their state kept), removed ones deleted (their alerts resolved).
    pub async fn sync_config(&self, configs: &[HeartbeatConfig]) -> Result<(), StoreError> {
        let db = &self.inner.db;
        let now = now_ms();
        let names: HashSet<&str> = configs.iter().map(|c| c.name.as_str()).collect();
        for old in store::list(db).await? {
            if old.configured && !names.contains(old.name.as_str()) {
                store::delete(db, &old.name).await?;
                self.resolve_all(&old, now).await;
            }
        }
        for c in configs {
            let mut h = match store::find(db, Some(&c.name), None).await? {
                Some(h) => h,
                None => fresh(&c.name, ms(c.period), ms(c.grace), now),
            };
            h.period_ms = ms(c.period);
            h.grace_ms = ms(c.grace);
            h.labels = c.labels.clone();
            h.severity = c.severity.clone();
            h.configured = true;
            h.next_due_ms = h.last_ping_ms.map(|t| t.saturating_add(h.period_ms));
            if !store::insert(db, &h).await? {
                store::save(db, &h, None).await?;
            }
        }
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Applies a ping to heartbeat `name` (created first when `create` is given and it
    /// does not exist); returns it as stored.
    pub async fn ping(
        &self,
        name: &str,
        kind: Ping,
        create: Option<Create>,
    ) -> Result<Heartbeat, HeartbeatError> {
        super::check_name(name).map_err(HeartbeatError::Invalid)?;
        let db = &self.inner.db;
        let now = now_ms();
        let mut h = match (store::find(db, Some(name), None).await?, create) {
            (Some(h), _) => h,
            (None, Some(c)) => {
                let h = fresh(name, ms(c.period), ms(c.grace), now);
                if store::insert(db, &h).await? {
                    tracing::info!(heartbeat = name, period = ?c.period, grace = ?c.grace, "heartbeat created by its first ping");
                }
                store::find(db, Some(name), None).await?.ok_or_else(|| {
                    HeartbeatError::NotFound(format!("heartbeat {name:?} vanished"))
                })?
            }
            (None, None) => {
                return Err(HeartbeatError::NotFound(format!(
                    "no heartbeat {name:?}: configure it in [[heartbeats]] or create it with ?period= (and optionally &grace=)"
                )));
            }
        };
        if let Some(c) = create.filter(|_| !h.configured) {
            h.period_ms = ms(c.period);
            h.grace_ms = ms(c.grace);
        }
        self.apply_ping(&mut h, kind, now).await?;
        Ok(h)
    }

    /// Applies a ping to the heartbeat whose ping URL has `key`.
    pub async fn ping_key(&self, key: &str, kind: Ping) -> Result<Heartbeat, HeartbeatError> {
        let mut h = store::find(&self.inner.db, None, Some(key))
            .await?
            .ok_or_else(|| HeartbeatError::NotFound("no heartbeat has this ping URL".into()))?;
        self.apply_ping(&mut h, kind, now_ms()).await?;
        Ok(h)
    }

    /// Applies a ping to `h` and stores it, unless the checker or another node changed
    /// the row since it was read: then the ping is applied again to the fresh row.
    async fn apply_ping(&self, h: &mut Heartbeat, kind: Ping, now: i64) -> Result<(), StoreError> {
        let db = &self.inner.db;
        for _ in 0..5 {
            let read = h.clone();
            let effects = h.ping(kind, now);
            if store::save(db, h, Some(&read)).await? {
                for e in effects {
                    self.raise(h, e, now).await;
                }
                self.export(std::slice::from_ref(h), false);
                self.inner.wake.notify_one();
                return Ok(());
            }
            match store::find(db, Some(&read.name), None).await? {
                Some(fresh) => *h = fresh,
                None => break,
            }
        }
        Err(StoreError::Conflict {
            fingerprints: vec![format!("heartbeat {}", h.name)],
        })
    }

    /// Every heartbeat with its status now.
    pub async fn list(&self) -> Result<Vec<Heartbeat>, StoreError> {
        let now = now_ms();
        let mut all = store::list(&self.inner.db).await?;
        for h in &mut all {
            h.status = h.status_at(now);
        }
        Ok(all)
    }

    /// Turns late heartbeats late and down (firing their alerts) as time passes, until
    /// `token` is cancelled.
    pub async fn run(self, token: CancellationToken) {
        loop {
            let wait = match self.check().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "heartbeat check failed; retrying");
                    RECHECK
                }
            };
            tokio::select! {
                _ = token.cancelled() => return,
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One pass: stored statuses brought up to now; returns how long to sleep.
    async fn check(&self) -> Result<Duration, StoreError> {
        self.retry_unsent().await;
        let now = now_ms();
        let mut all = store::list(&self.inner.db).await?;
        for h in &mut all {
            let to = h.status_at(now);
            if to == h.status {
                continue;
            }
            if to == Status::Down {
                // Fire first: if the status write fails, the next pass fires again (the
                // same alert, a repeat), never a missed alert.
                let at = h.next_due_ms.unwrap_or(now).saturating_add(h.grace_ms);
                self.raise(h, Effect::Fire(AlertKind::Missing), at).await;
            }
            if store::set_status_if(&self.inner.db, h, to, now).await? {
                if to == Status::Down {
                    tracing::warn!(heartbeat = %h.name, "heartbeat missed: no ping within period and grace");
                }
                h.status = to;
            } else if to == Status::Down {
                // Changed since read: by another node (down too: the alert stands) or by
                // a ping (then the alert just raised ends).
                if let Some(fresh) = store::find(&self.inner.db, Some(&h.name), None).await? {
                    if fresh.status_at(now) != Status::Down {
                        self.raise(h, Effect::Resolve(AlertKind::Missing), now)
                            .await;
                    }
                    *h = fresh;
                }
            }
        }
        self.export(&all, true);
        let next = all.iter().filter_map(Heartbeat::next_change_ms).min();
        let wait = next.map_or(RECHECK, |t| {
            Duration::from_millis(u64::try_from(t - now).unwrap_or(0))
        });
        Ok(wait.min(RECHECK))
    }

    /// Resolves whatever `h`'s status says is firing.
    async fn resolve_all(&self, h: &Heartbeat, now: i64) {
        match h.status {
            Status::Down => {
                self.raise(h, Effect::Resolve(AlertKind::Missing), now)
                    .await
            }
            Status::Failed => self.raise(h, Effect::Resolve(AlertKind::Failed), now).await,
            _ => {}
        }
    }

    /// Submits one alert change after any still waiting, in order; what cannot be
    /// stored now is kept for the next pass.
    async fn raise(&self, h: &Heartbeat, effect: Effect, at_ms: i64) {
        self.inner.alerts.raise(alert_for(h, effect, at_ms)).await;
    }

    async fn retry_unsent(&self) {
        self.inner.alerts.retry().await;
    }

    /// Sets the metrics of `hs`; when `hs` is every heartbeat, drops the series of
    /// deleted ones.
    fn export(&self, hs: &[Heartbeat], complete: bool) {
        let mut exported = self
            .inner
            .exported
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for h in hs {
            let up = matches!(h.status, Status::Up | Status::Late);
            self.inner
                .up
                .with_label_values(&[&h.name])
                .set(i64::from(up));
            self.inner
                .last_ping
                .with_label_values(&[&h.name])
                .set(h.last_ping_ms.map_or(0.0, |t| t as f64 / 1000.0));
            exported.insert(h.name.clone());
        }
        if complete {
            let present: HashSet<&str> = hs.iter().map(|h| h.name.as_str()).collect();
            exported.retain(|name| {
                let keep = present.contains(name.as_str());
                if !keep {
                    let _ = self.inner.up.remove_label_values(&[name]);
                    let _ = self.inner.last_ping.remove_label_values(&[name]);
                }
                keep
            });
        }
    }
}

/// A new heartbeat, never pinged, with a fresh unguessable ping key.
fn fresh(name: &str, period_ms: i64, grace_ms: i64, now: i64) -> Heartbeat {
    Heartbeat {
        name: name.to_string(),
        ping_key: format!("{:032x}", rand::random::<u128>()),
        period_ms,
        grace_ms,
        severity: HeartbeatConfig::default_severity(),
        labels: Default::default(),
        configured: false,
        status: Status::New,
        created_ms: now,
        last_ping_ms: None,
        last_start_ms: None,
        last_duration_ms: None,
        next_due_ms: None,
        changed_ms: now,
    }
}

/// The alert of one effect: `alertname`, `heartbeat` and the heartbeat's labels;
/// firing from `at_ms` until resolved, or resolved at `at_ms`.
fn alert_for(h: &Heartbeat, effect: Effect, at_ms: i64) -> RawAlert {
    let (kind, firing) = match effect {
        Effect::Fire(k) => (k, true),
        Effect::Resolve(k) => (k, false),
    };
    let mut labels = h.labels.clone();
    labels.insert("alertname".into(), kind.alertname().into());
    labels.insert("heartbeat".into(), h.name.clone());
    labels.insert("severity".into(), h.severity.clone());
    let period = humantime::format_duration(Duration::from_millis(h.period_ms.max(0) as u64));
    let grace = humantime::format_duration(Duration::from_millis(h.grace_ms.max(0) as u64));
    let last = h.last_ping_ms.map_or("never".to_string(), rfc3339);
    let (summary, description) = match kind {
        AlertKind::Missing => (
            format!("Heartbeat {} missed: no ping since {last}", h.name),
            format!(
                "The job behind heartbeat {} pings at least every {period}; nothing came within {grace} of the due time. Last ping: {last}.",
                h.name
            ),
        ),
        AlertKind::Failed => (
            format!("Heartbeat {} reported a failure", h.name),
            format!(
                "The job behind heartbeat {} pinged /fail. Last good ping: {last}.",
                h.name
            ),
        ),
    };
    Raised {
        labels,
        severity: Severity::parse_strict(&h.severity),
        type_fallback: "application",
        summary,
        description,
    }
    .at(firing, at_ms)
}

/// RFC 3339 (UTC, seconds) of Unix ms.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}
