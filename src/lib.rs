//! watchpost: host and self metrics, an in-memory store with PromQL, Prometheus-format
//! rules, an alert pipeline and Telegram notifications, in one binary.
//!
//! [`App::start`] wires the parts together and returns a running service; `main.rs` is
//! only the command line around it.

pub mod agent;
pub mod alerts;
pub mod api;
pub mod audit;
pub mod bot;
pub mod cluster;
pub mod collect;
pub mod config;
pub mod dispatch;
pub mod events;
pub mod heartbeat;
pub mod inhibit;
pub mod json;
pub mod metrics;
pub mod notify;
pub mod promql;
pub mod redact;
pub mod remote_write;
pub mod rules;
pub mod server;
pub mod silence;
pub mod store;
pub mod supervisor;
pub mod telemetry;
pub mod tsdb;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::AppState;
use crate::collect::{CollectLoop, HostCollector};
use crate::config::Config;
use crate::events::EventBus;
use crate::metrics::Metrics;
use crate::promql::Engine;
use crate::rules::{EngineQuerier, EvalDeps, LeaderGate, Notifier, RuleManager, TsdbSink};
use crate::store::{Db, StoreError};
use crate::supervisor::Supervisor;
use crate::tsdb::Tsdb;
use crate::tsdb::scrape::SelfScraper;

/// Validates the whole configuration: the config's own checks, then each part's owner
/// (routing tree, receivers, report schedule). Every problem names its key.
pub fn validate_config(config: &Config) -> Result<(), config::ConfigError> {
    let mut problems: Vec<String> = match config.validate() {
        Ok(()) => Vec::new(),
        Err(e) => vec![e.to_string()],
    };
    problems.extend(cluster::validate(config));
    problems.extend(dispatch::validate(config));
    problems.extend(notify::validate(config));
    problems.extend(api::auth::validate(config));
    problems.extend(collect::postgres::validate(config));
    problems.extend(alerts::vocabulary::validate(config));
    problems.extend(alerts::stats::validate(config));
    problems.extend(bot::schedule::validate(config));
    problems.extend(remote_write::validate(&config.remote_write));
    problems.extend(heartbeat::validate(config));
    problems.extend(agent::validate(config));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(config::ConfigError::Invalid(problems.join("\n")))
    }
}

/// Why the service could not start. [`StartError::exit_code`] maps it to the contract.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Invalid configuration (exit 1).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Cannot bind the listen address (exit 2).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Database unreachable or migrations failed (exit 2).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Cannot join the cluster: the SQLite file is in use by another process (exit 2).
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
    /// Anything else at start (exit 2).
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

impl StartError {
    /// 1 for invalid input, 2 for runtime failures.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Config(_) => 1,
            _ => 2,
        }
    }
}

/// A running service.
pub struct App {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    rules: RuleManager,
    alert_notices: tokio::sync::mpsc::Sender<dispatch::AlertNotice>,
    notify: notify::NotifyHandle,
}

impl App {
    /// Connects the database, applies migrations, takes a first sample, binds `listen`
    /// and starts serving and the background tasks.
    pub async fn start(config: Config) -> Result<App, StartError> {
        validate_config(&config).map_err(|e| StartError::Config(e.to_string()))?;
        if let Some(path) = &config.classify.vocabulary_file {
            let v = alerts::vocabulary::Vocabulary::load(path)
                .map_err(|e| StartError::Config(e.to_string()))?;
            alerts::vocabulary::set_active(v);
            tracing::info!(path = %path.display(), "classifier vocabulary loaded");
        }
        let config = Arc::new(config);
        let metrics = Metrics::new().map_err(|e| anyhow::anyhow!("metrics registry: {e}"))?;
        let db = Db::connect(&config, metrics.db.clone()).await?;
        // One process per SQLite file: refused before anything is written to it.
        let file_lock = cluster::single::lock_file(config.database_url.expose())?;
        db.migrate().await?;

        let host = HostCollector::new(metrics.system.clone())
            .map_err(|e| anyhow::anyhow!("sysinfo: {e}"))?;
        let collect = CollectLoop::new(host, db.clone(), config.collect.interval);
        collect.collect_once().await;

        let listen = config.listen_addr().map_err(StartError::Config)?;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen.clone(),
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| anyhow::anyhow!("local_addr: {e}"))?;
        if !config.auth.enabled() {
            tracing::warn!(
                "no auth.tokens or auth.jwt configured: writes are accepted from anyone who can reach {addr} (loopback only)"
            );
        }

        // Links (notifications, the bot, rule generator URLs) point at the address
        // actually bound when `external_url` is unset; so does the node id.
        let config = with_bound_address(config, addr);
        // Membership and leadership: leader-only work runs once per term of this node.
        let cluster =
            cluster::Cluster::join(&config, db.clone(), metrics.cluster.clone(), file_lock).await?;

        // Shutdown: `shutdown` (the signal) stops inputs, rules and the sender (which
        // lets sends in flight finish); `delivery` stops the dispatcher once the alert
        // writer has committed and announced everything queued.
        let shutdown = CancellationToken::new();
        let delivery = CancellationToken::new();
        let mut supervisor = Supervisor::new(shutdown.clone());
        let mut dispatch_supervisor = Supervisor::new(delivery.clone());
        let collect_handle = collect.clone();
        supervisor.spawn("collect", move |token| collect.clone().run(token));
        // PostgreSQL servers (and the own database), under postgres_exporter's names.
        let postgres = collect::postgres::PostgresCollector::register(
            collect::postgres::targets(&config),
            &metrics,
        );
        if !postgres.is_empty() {
            supervisor.spawn("postgres-collector", move |token| {
                postgres.clone().run(token)
            });
        }

        let events = EventBus::default();
        let (alert_changes, alert_changes_rx) = alerts::change::channel();
        let (alert_service, alert_pipeline) = alerts::AlertService::start(
            &config,
            db.clone(),
            metrics.clone(),
            events.clone(),
            alert_changes,
            cluster::NodeRole::of(&cluster),
        )
        .await
        .map_err(StartError::Config)?;

        let tsdb = Tsdb::new(config.tsdb.retention);
        tsdb.set_max_series(config.tsdb.max_series);
        let tsdb_metrics = tsdb::metrics::TsdbCollector::new(tsdb.clone())
            .map_err(|e| anyhow::anyhow!("tsdb metrics: {e}"))?;
        metrics.register_all("tsdb", vec![Box::new(tsdb_metrics)]);
        let remote_write = remote_write::Receiver::new(
            tsdb.clone(),
            remote_write::Limits {
                max_decoded_bytes: config.tsdb.max_write_bytes,
                max_labels: config.tsdb.max_labels_per_series,
                max_label_bytes: config.tsdb.max_label_length,
            },
            &metrics,
        )
        .map_err(|e| anyhow::anyhow!("remote write metrics: {e}"))?;
        let remote_senders = remote_write::start_senders(
            &tsdb,
            &config.remote_write,
            &metrics,
            shutdown.clone(),
            config.shutdown_timeout,
        )
        .map_err(StartError::Config)?;
        let engine = Engine::with_options(
            tsdb.clone(),
            promql::EngineOptions {
                max_samples: config.query.max_samples,
                timeout: config.query.timeout,
                ..Default::default()
            },
        );
        let (scraped_tx, scraped) = tokio::sync::watch::channel(0i64);
        {
            let (tsdb, metrics, collect) = (tsdb.clone(), metrics.clone(), collect_handle.clone());
            let interval = config.collect.interval;
            supervisor.spawn("tsdb-self-scrape", move |token| {
                SelfScraper::new(tsdb.clone())
                    .with_interval(interval)
                    .with_scraped(scraped_tx.clone())
                    .run(metrics.clone(), collect.clone(), token)
            });
        }

        // Rules: evaluated behind the leader gate; transitions leave on one channel.
        let (rule_tx, rule_rx) = tokio::sync::mpsc::channel(rules::ALERT_QUEUE_CAPACITY);
        let external_url = config.external_url().trim_end_matches('/').to_string();
        let template_external_url = external_url.clone();
        let rule_manager = RuleManager::new(
            EvalDeps {
                querier: Arc::new(EngineQuerier(engine.clone())),
                sink: Arc::new(TsdbSink(tsdb.clone())),
                notifier: Notifier::new(rule_tx, rules::DEFAULT_RESEND_DELAY),
                metrics: metrics.alerting.clone(),
                external_labels: Arc::new(rule_labels(&config, &cluster, db.backend())),
                external_url,
                leader: LeaderGate::single_node(),
            },
            config.rules.files.clone(),
            config.rules.evaluation_interval,
            shutdown.clone(),
        );
        if let Err(problems) = rule_manager.reload().await {
            shutdown.cancel();
            return Err(StartError::Config(format!(
                "invalid rule files:\n{problems}"
            )));
        }
        // Heartbeats raise their alerts into the same pipeline.
        let heartbeats = heartbeat::Heartbeats::new(db.clone(), alert_service.clone(), &metrics)
            .map_err(|e| anyhow::anyhow!("heartbeat metrics: {e}"))?;
        heartbeats.sync_config(&config.heartbeats).await?;
        {
            let heartbeats = heartbeats.clone();
            supervisor.spawn("heartbeats", move |token| {
                let heartbeats = heartbeats.clone();
                async move {
                    heartbeats.run(token).await;
                    Ok(())
                }
            });
        }
        // Agents on other hosts: their series into the store, AgentDown into the pipeline.
        let agents = agent::Agents::new(
            db.clone(),
            cluster.node().id.clone(),
            config.agents.clone(),
            tsdb.clone(),
            remote_write::Limits {
                // A host's batch is a few KiB; a message decodes to at most this.
                max_decoded_bytes: config
                    .tsdb
                    .max_write_bytes
                    .min(config.agents.max_message_bytes.saturating_mul(8)),
                max_labels: config.tsdb.max_labels_per_series,
                max_label_bytes: config.tsdb.max_label_length,
            },
            alert_service.clone(),
            &metrics,
        )
        .map_err(|e| anyhow::anyhow!("agent metrics: {e}"))?;
        {
            let agents = agents.clone();
            supervisor.spawn("agents", move |token| {
                let agents = agents.clone();
                async move {
                    agents.run(token).await;
                    Ok(())
                }
            });
        }
        // Rule transitions enter the same pipeline as ingested alerts.
        {
            let service = alert_service.clone();
            tokio::spawn(alerts::rules::forward(rule_rx, service, shutdown.clone()));
        }
        // Changes of alerts: routed, grouped and delivered; deliveries back into the
        // alerts' event log.
        let notifications = notify::Notifications::new(
            &config,
            db.clone(),
            metrics.alerting.clone(),
            Some(Arc::new(
                notify::template::GoTemplates::new(&template_external_url)
                    .with_timezone(notify::timezone(&config)),
            )),
            notify::NotifyOptions {
                sender: notify::sender::SenderOptions {
                    fence: cluster::Fence::Cluster(cluster.clone()),
                    ..Default::default()
                },
                charts: Some(notify::chart::source::Charts(Arc::new(
                    notify::chart::source::RuleCharts::from_config(&config, engine.clone()),
                ))),
                ..Default::default()
            },
        )
        .map_err(StartError::Config)?;
        let backend = Arc::new(
            bot::backend::ServiceBackend::new(alert_service.clone(), rule_manager.clone())
                .with_cluster(cluster.clone())
                .with_heartbeats(heartbeats.clone())
                .with_agents(agents.clone()),
        );
        notifications.spawn_sender(&mut supervisor, Some(&cluster));
        notifications.spawn_bot(&config, &mut supervisor, backend, Some(&cluster));
        notifications.spawn_dispatcher(&mut dispatch_supervisor, Some(&cluster));
        let alert_notices = notifications.dispatcher.sender();
        // Ends when the alert writer is gone (its channel closes) or at `delivery`. With
        // a change feed (PostgreSQL) the leader reads every node's changes from the
        // database instead.
        let forward = if notifications.reads_feed() {
            drop(alert_changes_rx);
            tokio::spawn(async {})
        } else {
            tokio::spawn(dispatch::changes::forward(
                alert_changes_rx,
                alert_notices.clone(),
                delivery.clone(),
            ))
        };
        tokio::spawn(notify::events::record_deliveries(
            notifications.handle.subscribe(),
            db.clone(),
            shutdown.clone(),
        ));

        let auth = api::auth::Authenticator::new(&config.auth, &metrics);
        auth.start();
        let state = AppState {
            config: config.clone(),
            metrics,
            db: db.clone(),
            events,
            collect: collect_handle,
            tsdb,
            engine,
            scraped,
            rules: rule_manager.clone(),
            alerts: alert_service,
            notify: notifications.handle.clone(),
            cluster: cluster.clone(),
            auth,
            remote_write,
            heartbeats,
            agents,
        };
        let router = api::router(state);
        tracing::info!(%addr, version = env!("CARGO_PKG_VERSION"), "listening on {addr}");

        let token = shutdown.clone();
        let shutdown_timeout = config.shutdown_timeout;
        let http = config.http.clone();
        let task = tokio::spawn(async move {
            let began =
                server::serve(listener, router, token.clone(), shutdown_timeout, &http).await;
            token.cancel();
            let deadline = began + shutdown_timeout;
            let left = |floor: Duration| {
                deadline
                    .saturating_duration_since(tokio::time::Instant::now())
                    .max(floor)
            };
            // In-flight requests are answered; the alert writer commits and announces
            // what is queued, then the dispatcher takes in the last changes and stops.
            // (What it does not get to is rebuilt from the database at the next start.)
            alert_pipeline.shutdown(left(Duration::from_secs(1))).await;
            let _ = tokio::time::timeout(Duration::from_secs(1), forward).await;
            delivery.cancel();
            // The sender stopped at the signal; sends in flight finish by the deadline,
            // then are cut and recorded (a couple of seconds for those last writes).
            // Remote write flushes its queues within shutdown_timeout.
            let flushed = async {
                if let Some(senders) = remote_senders {
                    let bound = left(Duration::from_secs(1)) + Duration::from_secs(2);
                    if tokio::time::timeout(bound, senders).await.is_err() {
                        tracing::warn!("remote write not flushed within shutdown_timeout");
                    }
                }
            };
            tokio::join!(
                dispatch_supervisor.join(Duration::from_secs(1)),
                supervisor.join(left(Duration::ZERO) + Duration::from_secs(3)),
                flushed,
            );
            // Leadership is held until sends in flight are recorded, so a successor
            // never takes over a claim that is still being sent.
            cluster.leave().await;
            db.close().await;
            tracing::info!(took = ?began.elapsed(), "stopped");
        });
        Ok(App {
            addr,
            shutdown,
            task,
            rules: rule_manager,
            alert_notices,
            notify: notifications.handle,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The rule manager (reload, groups).
    pub fn rules(&self) -> RuleManager {
        self.rules.clone()
    }

    /// Where alert changes go to be routed, grouped and notified.
    pub fn alert_notices(&self) -> tokio::sync::mpsc::Sender<dispatch::AlertNotice> {
        self.alert_notices.clone()
    }

    /// Outbox, queue depths and delivery reports.
    pub fn notifications(&self) -> &notify::NotifyHandle {
        &self.notify
    }

    /// Cancelling this token starts a graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the service has stopped.
    pub async fn wait(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "service task failed");
        }
    }

    /// Starts a graceful shutdown and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.wait().await;
    }
}

/// This machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// `config` with what depends on the bound address filled in when unset:
/// `cluster.node_id` (`<hostname>:<port>`) and `external_url` (the address as bound, or
/// the host name when bound to all interfaces, as Prometheus does).
fn with_bound_address(config: Arc<Config>, addr: SocketAddr) -> Arc<Config> {
    if config.external_url.is_some() && config.cluster.node_id.is_some() {
        return config;
    }
    let mut c = (*config).clone();
    if c.cluster.node_id.is_none() {
        c.cluster.node_id = Some(format!("{}:{}", hostname(), addr.port()));
    }
    if c.external_url.is_none() {
        c.external_url = Some(external_url(addr));
    }
    Arc::new(c)
}

/// `http://<host>:<port>` of the bound address.
fn external_url(addr: SocketAddr) -> String {
    let host = if addr.ip().is_unspecified() {
        hostname()
    } else {
        addr.ip().to_string()
    };
    let authority = match addr.ip() {
        std::net::IpAddr::V6(_) if !addr.ip().is_unspecified() => {
            format!("[{host}]:{}", addr.port())
        }
        _ => format!("{host}:{}", addr.port()),
    };
    format!("http://{authority}")
}

/// `rules.external_labels`, plus `instance = <node id>` with several nodes (PostgreSQL)
/// unless set there: each node's rules watch its own host and internals, so the same
/// rule firing on two nodes is two alerts. A rule whose result names an `instance`
/// (ClusterNodeDown) keeps it, and is then one alert whichever node evaluates it.
fn rule_labels(
    config: &Config,
    cluster: &cluster::Cluster,
    backend: store::Backend,
) -> std::collections::BTreeMap<String, String> {
    let mut labels = config.rules.external_labels.clone();
    if backend == store::Backend::Postgres {
        labels
            .entry("instance".into())
            .or_insert_with(|| cluster.node().id.clone());
    }
    labels
}
