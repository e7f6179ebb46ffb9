//! The alert service: what the HTTP API (and the Telegram bot, and rule evaluation)
//! call. Thin over the pipeline, the repository and the caches.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use super::change::ChangeSender;
use super::ingest::{Incoming, RawAlert};
use super::journal::{Journal, database_key};
use super::model::{Alert, StoredEvent};
use super::pipeline::{self, Pipeline, PipelineConfig, PipelineError, PipelineTask, WriterParts};
use super::ratelimit::RateLimiter;
use super::repo::{self, ListFilter};
use super::report::{self, Report};
use super::stats::{Stats, StatsCache};
use crate::audit::AuditRecord;
use crate::config::Config;
use crate::events::EventBus;
use crate::inhibit;
use crate::metrics::Metrics;
use crate::silence::{self, PostableSilence, Silence, SilenceError};
use crate::store::{self, Db, StoreError, now_ms};

/// Where the receipt journal lives (see `alerts.journal_dir`); `None` = no journal.
fn journal_dir(config: &Config) -> Option<PathBuf> {
    match &config.alerts.journal_dir {
        Some(dir) if dir.as_os_str().is_empty() => None,
        Some(dir) => Some(dir.clone()),
        None => {
            let url = config.database_url.expose();
            if url.starts_with("sqlite:") {
                let file = store::sqlite_file(url)?;
                let parent = file.parent().map(PathBuf::from).unwrap_or_default();
                Some(parent.join("journal"))
            } else {
                Some(PathBuf::from("data/journal"))
            }
        }
    }
}

/// What identifies a database in journal file names: the SQLite file, or PostgreSQL's
/// host, port and database (not the user, password or options, which may change
/// between a crash and the restart that replays).
fn database_identity(url: &str) -> String {
    if let Some(file) = store::sqlite_file(url) {
        return std::path::absolute(&file)
            .unwrap_or(file)
            .to_string_lossy()
            .into_owned();
    }
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
    let host_db = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    format!("postgres://{host_db}")
}

/// Opens the receipt journal. A folder set in `alerts.journal_dir` must work; when the
/// default one cannot be created (a read-only working directory), repeats are written
/// to the database directly instead, with a warning.
fn open_journal(config: &Config) -> Result<Option<Arc<Journal>>, String> {
    let Some(dir) = journal_dir(config) else {
        return Ok(None);
    };
    match Journal::open(
        &dir,
        &database_key(&database_identity(config.database_url.expose())),
    ) {
        Ok(j) => Ok(Some(Arc::new(j))),
        Err(e) if config.alerts.journal_dir.is_some() => Err(format!("alerts.journal_dir: {e}")),
        Err(e) => {
            tracing::warn!(error = %e, "no receipt journal; every repeat is written to the database (set alerts.journal_dir)");
            Ok(None)
        }
    }
}

/// Longest an ingest request waits for its batch to commit: under Prometheus' and
/// Alertmanager's default 10 s client timeout.
pub const INGEST_TIMEOUT: Duration = Duration::from_secs(8);

/// Most events the detail view returns (the latest ones).
pub const MAX_DETAIL_EVENTS: i64 = 500;

/// Shared alert service. Cheap to clone.
#[derive(Clone)]
pub struct AlertService {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    pipeline: Pipeline,
    stats: StatsCache,
    limiter: RateLimiter,
}

/// Failures of silence operations.
#[derive(Debug, thiserror::Error)]
pub enum SilenceOpError {
    /// Invalid input (400).
    #[error(transparent)]
    Invalid(#[from] SilenceError),
    /// No such silence (404).
    #[error("silence {0} not found")]
    NotFound(String),
    /// Storage.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Pipeline.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

impl AlertService {
    /// Builds the service and starts its writer. Inhibition rules are validated here
    /// (an invalid matcher is a configuration error naming it).
    pub async fn start(
        config: &Config,
        db: Db,
        metrics: Metrics,
        events: EventBus,
        changes: ChangeSender,
        role: crate::cluster::NodeRole,
    ) -> Result<(AlertService, PipelineTask), String> {
        let rules = inhibit::rules_from_config(config.inhibit_rules.as_deref())?;
        let journal = open_journal(config)?;
        if let Some(j) = &journal {
            pipeline::replay_orphans(&db, j)
                .await
                .map_err(|e| format!("replaying the receipt journal: {e}"))?;
        }
        let generation = Arc::new(AtomicU64::new(0));
        let a = &config.alerts;
        let parts = WriterParts {
            db: db.clone(),
            cfg: PipelineConfig {
                batch_max_size: a.batch_max_size.max(1),
                batch_max_delay: a.batch_max_delay,
                queue_capacity: a.queue_capacity.max(a.max_alerts_per_request).max(1),
                retention: a.retention,
                checkpoint_interval: a.checkpoint_interval,
                max_firing: a.max_firing,
                leader: role.leader,
                feed: db.backend() == crate::store::Backend::Postgres,
                node: role.node,
                news: role.news,
            },
            rules,
            changes,
            events,
            metrics: metrics.clone(),
            generation: generation.clone(),
            journal,
            pending: Default::default(),
            checkpoints: Default::default(),
        };
        let (pipeline, task) = pipeline::start(parts);
        let service = AlertService {
            inner: Arc::new(Inner {
                db,
                pipeline,
                stats: StatsCache::new(&metrics.cache, generation),
                limiter: RateLimiter::new(a.rate_limit_per_second, a.rate_limit_burst),
            }),
        };
        Ok((service, task))
    }

    /// The pipeline (for submitters such as rule evaluation).
    pub fn pipeline(&self) -> &Pipeline {
        &self.inner.pipeline
    }

    /// The ingest rate limiter.
    pub fn limiter(&self) -> &RateLimiter {
        &self.inner.limiter
    }

    /// Classifies and stores `alerts` durably; returns their ids in order. Answers
    /// within [`INGEST_TIMEOUT`] whatever the database does (then with
    /// [`PipelineError::Timeout`]), so a sender never hangs past its own timeout.
    pub async fn ingest(
        &self,
        alerts: Vec<RawAlert>,
        audit: Option<AuditRecord>,
    ) -> Result<Vec<i64>, PipelineError> {
        let prepared: Vec<Incoming> = alerts.into_iter().map(RawAlert::prepare).collect();
        let submit = self.inner.pipeline.submit(prepared, audit);
        tokio::time::timeout(INGEST_TIMEOUT, submit)
            .await
            .unwrap_or(Err(PipelineError::Timeout(INGEST_TIMEOUT)))
    }

    /// Makes the database current with what the pipeline accepted (see
    /// [`Pipeline::sync`]); when the pipeline cannot, reads go on with what is stored.
    async fn sync(&self) {
        if let Err(e) = self.inner.pipeline.sync().await {
            tracing::warn!(error = %e, "reading without the latest journaled repeats");
        }
    }

    /// Alerts matching `filter`.
    pub async fn list(&self, filter: &ListFilter) -> Result<Vec<Alert>, StoreError> {
        self.sync().await;
        repo::list(&self.inner.db, filter).await
    }

    /// One alert and its latest events.
    pub async fn get(&self, id: i64) -> Result<Option<(Alert, Vec<StoredEvent>)>, StoreError> {
        self.sync().await;
        let Some(a) = repo::get(&self.inner.db, id).await? else {
            return Ok(None);
        };
        let events = repo::events(&self.inner.db, id, MAX_DETAIL_EVENTS).await?;
        Ok(Some((a, events)))
    }

    /// Acknowledges alert `id`.
    pub async fn ack(
        &self,
        id: i64,
        by: String,
        comment: String,
        audit: AuditRecord,
    ) -> Result<Option<Alert>, PipelineError> {
        self.inner.pipeline.ack(id, by, comment, audit).await
    }

    /// Statistics of a window (cached).
    pub async fn stats(&self, window: Duration, label: &str) -> Result<Stats, StoreError> {
        self.sync().await;
        self.inner.stats.get(&self.inner.db, window, label).await
    }

    /// A report of a window.
    pub async fn report(&self, window: Duration, label: &str) -> Result<Report, StoreError> {
        self.sync().await;
        report::build(&self.inner.db, window, label).await
    }

    /// Every silence.
    pub async fn silences(&self) -> Result<Vec<Silence>, StoreError> {
        silence::list(&self.inner.db).await
    }

    /// One silence.
    pub async fn silence(&self, id: &str) -> Result<Option<Silence>, StoreError> {
        silence::get(&self.inner.db, id).await
    }

    /// Creates (or, with an existing `id`, replaces) a silence and applies it; returns
    /// it and whether it was new.
    pub async fn save_silence(
        &self,
        posted: &PostableSilence,
        creator: &str,
        audit: impl FnOnce(&Silence, bool) -> AuditRecord,
    ) -> Result<(Silence, bool), SilenceOpError> {
        let now = now_ms();
        let mut s = Silence::from_postable(posted, creator, now)?;
        let existing = match posted.id.as_deref().filter(|i| !i.is_empty()) {
            Some(id) => Some(
                silence::get(&self.inner.db, id)
                    .await?
                    .ok_or_else(|| SilenceOpError::NotFound(id.to_string()))?,
            ),
            None => None,
        };
        let created = existing.is_none();
        if let Some(old) = &existing {
            // Alertmanager keeps the start of a silence that is already running.
            if old.state(now) == silence::SilenceState::Active {
                s.starts_at_ms = old.starts_at_ms;
            }
        } else {
            s.id = silence::new_id();
        }
        silence::save(&self.inner.db, &s).await?;
        crate::audit::record(&self.inner.db, &audit(&s, created)).await?;
        self.inner.pipeline.silences_changed().await?;
        Ok((s, created))
    }

    /// Expires a silence now; returns it.
    pub async fn expire_silence(
        &self,
        id: &str,
        audit: impl FnOnce(&Silence) -> AuditRecord,
    ) -> Result<Silence, SilenceOpError> {
        let now = now_ms();
        let mut s = silence::get(&self.inner.db, id)
            .await?
            .ok_or_else(|| SilenceOpError::NotFound(id.to_string()))?;
        if s.state(now) != silence::SilenceState::Expired {
            if s.starts_at_ms > now {
                s.starts_at_ms = now;
            }
            s.ends_at_ms = now;
            s.updated_ms = now;
            silence::save(&self.inner.db, &s).await?;
            crate::audit::record(&self.inner.db, &audit(&s)).await?;
            self.inner.pipeline.silences_changed().await?;
        }
        Ok(s)
    }

    /// The database (for read-only views such as the audit log).
    pub fn db(&self) -> &Db {
        &self.inner.db
    }
}

#[cfg(test)]
mod tests {
    use super::database_identity;

    #[test]
    fn journal_files_survive_credential_and_option_changes() {
        assert_eq!(
            database_identity("postgres://u:old@db:5432/wp?sslmode=require"),
            database_identity("postgres://v:new@db:5432/wp")
        );
        assert_ne!(
            database_identity("postgres://db:5432/wp"),
            database_identity("postgres://db:5432/other")
        );
        assert_eq!(
            database_identity("sqlite://data/x.db?mode=rwc"),
            database_identity("sqlite:data/x.db")
        );
    }
}
