//! The PostgreSQL collector: `[[postgres]]` servers (and, with a `postgres://`
//! `database_url`, watchpost's own) read every `interval` over one `tokio-postgres`
//! session each, exported under postgres_exporter's metric names and labels plus
//! `server="<name>"`, so its community dashboards and rules keep working.
//!
//! Each target keeps the families of its latest collection; `/metrics` and the tsdb's
//! self-scrape read them through one registry [`Collector`]. A target that cannot be
//! reached is `pg_up 0` and is retried with backoff; every statement runs under the
//! target's `timeout` (`statement_timeout` and a client-side deadline), so a locked
//! catalog cannot hang the loop; a failing query is counted and skipped, never failing
//! the others. Per-database series are capped by `max_databases`.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};
use tokio_postgres::{Client, Row};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, PostgresTarget};
use crate::metrics::Metrics;

/// The name of the target that is watchpost's own database.
pub const OWN: &str = "watchpost";

/// The targets of `config`: `[[postgres]]`, plus the own database when it is PostgreSQL
/// and `postgres.monitor_own` is on (unless a target already has its URL).
pub fn targets(config: &Config) -> Vec<PostgresTarget> {
    let mut targets = config.postgres.targets.clone();
    let own = config.database_url.expose();
    let is_pg = own.starts_with("postgres://") || own.starts_with("postgresql://");
    if is_pg
        && config.postgres.monitor_own
        && !targets
            .iter()
            .any(|t| t.url.expose() == own || t.name == OWN)
    {
        targets.push(PostgresTarget::new(OWN, own));
    }
    targets
}

/// Problems of the `[[postgres]]` targets, each naming its key.
pub fn validate(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, t) in config.postgres.targets.iter().enumerate() {
        let key = format!("postgres[{i}]");
        if t.name.trim().is_empty() {
            problems.push(format!("{key}.name: must not be empty"));
        } else if !names.insert(t.name.as_str()) {
            problems.push(format!("{key}.name: {:?} is used twice", t.name));
        }
        let url = t.url.expose();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            problems.push(format!(
                "{key}.url: must be a postgres:// URL, got {}",
                crate::redact::dsn(url)
            ));
        } else if let Err(e) = crate::store::pg_tls::plan(url) {
            problems.push(format!("{key}.url: {e}"));
        }
        if t.interval < Duration::from_secs(1) {
            problems.push(format!("{key}.interval: at least 1s"));
        }
        if t.timeout.is_zero() || t.timeout >= t.interval {
            problems.push(format!(
                "{key}.timeout: must be above 0 and below interval ({:?})",
                t.interval
            ));
        }
        if t.statements_top > 1000 {
            problems.push(format!("{key}.statements_top: at most 1000"));
        }
        if t.max_databases == 0 {
            problems.push(format!("{key}.max_databases: at least 1"));
        }
    }
    problems
}

/// The latest families of every target, as one registry collector.
#[derive(Clone)]
pub struct PostgresCollector {
    targets: Vec<Arc<Target>>,
    desc: Arc<Desc>,
    stats: CollectorStats,
}

/// The collector's own metrics.
#[derive(Clone)]
struct CollectorStats {
    duration: HistogramVec,
    errors: IntCounterVec,
}

impl CollectorStats {
    fn register(metrics: &Metrics) -> Self {
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "watchpost_postgres_collect_duration_seconds",
                "Time one collection of a PostgreSQL target took.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["server"],
        )
        .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new(
                "watchpost_postgres_query_errors_total",
                "Collector queries that failed, by target and query.",
            ),
            &["server", "query"],
        )
        .expect("valid metric");
        metrics.register_all(
            "postgres collector",
            vec![Box::new(duration.clone()), Box::new(errors.clone())],
        );
        Self { duration, errors }
    }
}

struct Target {
    cfg: PostgresTarget,
    latest: RwLock<Vec<MetricFamily>>,
}

impl PostgresCollector {
    /// A collector for `targets`, registered in `metrics` (nothing collected yet: each
    /// target shows `pg_up 0` until its first collection).
    pub fn register(targets: Vec<PostgresTarget>, metrics: &Metrics) -> Self {
        let targets: Vec<Arc<Target>> = targets
            .into_iter()
            .map(|cfg| {
                let down = Families::new(&cfg.name).down();
                Arc::new(Target {
                    cfg,
                    latest: RwLock::new(down),
                })
            })
            .collect();
        let me = Self {
            targets,
            desc: Arc::new(
                Desc::new(
                    "pg_up".into(),
                    UP_HELP.into(),
                    vec!["server".into()],
                    Default::default(),
                )
                .expect("valid desc"),
            ),
            stats: CollectorStats::register(metrics),
        };
        if !me.targets.is_empty()
            && let Err(e) = metrics.registry.register(Box::new(me.clone()))
        {
            tracing::warn!(error = %e, "cannot register the PostgreSQL collector");
        }
        me
    }

    /// Whether there is anything to collect.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Collects every target on its own interval until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let loops = self
            .targets
            .iter()
            .map(|t| run_target(t.clone(), self.stats.clone(), shutdown.clone()));
        futures_util::future::join_all(loops).await;
        Ok(())
    }
}

impl Collector for PostgresCollector {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut merged: BTreeMap<String, MetricFamily> = BTreeMap::new();
        for t in &self.targets {
            let latest = t
                .latest
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for f in latest.iter() {
                match merged.get_mut(f.name()) {
                    Some(m) => m.mut_metric().extend(f.get_metric().iter().cloned()),
                    None => {
                        merged.insert(f.name().to_string(), f.clone());
                    }
                }
            }
        }
        merged.into_values().collect()
    }
}

/// One target's loop: connect (with backoff), collect every interval, publish.
async fn run_target(t: Arc<Target>, stats: CollectorStats, shutdown: CancellationToken) {
    let name = t.cfg.name.clone();
    let mut client: Option<Client> = None;
    // Cancelled when the session ends, so a server that goes away is `pg_up 0` at once.
    let mut lost = CancellationToken::new();
    let mut backoff = Duration::from_secs(1);
    let mut ticker = tokio::time::interval(t.cfg.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
            _ = lost.cancelled(), if client.is_some() => {
                tracing::warn!(server = %name, "postgres collector session lost; reconnecting");
                publish(&t, Families::new(&name).down());
                client = None;
            }
        }
        if client.as_ref().is_none_or(Client::is_closed) {
            lost = CancellationToken::new();
            let opened = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = open(&t.cfg, lost.clone()) => r,
            };
            client = match opened {
                Ok(c) => {
                    backoff = Duration::from_secs(1);
                    tracing::info!(server = %name, "postgres collector connected");
                    Some(c)
                }
                Err(e) => {
                    tracing::warn!(server = %name, error = %e, retry_in = ?backoff, "postgres target unreachable");
                    publish(&t, Families::new(&name).down());
                    // Retry sooner than the interval while it is short, never hammering.
                    let wait = backoff.min(t.cfg.interval);
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    ticker.reset_immediately();
                    continue;
                }
            };
        }
        let Some(c) = client.as_ref() else { continue };
        let started = Instant::now();
        // One collection never outlasts the interval: a server that stops answering is
        // down, not stale.
        let deadline = t.cfg.interval.max(t.cfg.timeout * 2);
        let collected = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(deadline, collect(c, &t.cfg, &stats)) => {
                r.unwrap_or_else(|_| Err(Elapsed(deadline).into()))
            }
        };
        match collected {
            Ok(families) => publish(&t, families),
            Err(e) => {
                tracing::warn!(server = %name, error = %e, "postgres collection failed; reconnecting");
                publish(&t, Families::new(&name).down());
                client = None;
            }
        }
        stats
            .duration
            .with_label_values(&[&name])
            .observe(started.elapsed().as_secs_f64());
    }
}

fn publish(t: &Target, families: Vec<MetricFamily>) {
    *t.latest
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = families;
}

/// Opens the target's session with its statement timeout.
async fn open(cfg: &PostgresTarget, lost: CancellationToken) -> anyhow::Result<Client> {
    let (client, connection) = crate::store::pg_tls::connect(cfg.url.expose(), cfg.timeout).await?;
    let server = cfg.name.clone();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(%server, error = %e, "postgres collector session ended");
        }
        lost.cancel();
    });
    let ms = cfg.timeout.as_millis();
    tokio::time::timeout(
        cfg.timeout,
        client.batch_execute(&format!(
            "SET statement_timeout = {ms}; SET lock_timeout = {ms}; \
             SET application_name = 'watchpost-collector'"
        )),
    )
    .await
    .map_err(|_| anyhow::anyhow!("setting the session up timed out"))??;
    Ok(client)
}

/// One collection: `pg_up 1` and every family whose query succeeds. Fails only when the
/// session itself is gone (the caller reconnects).
async fn collect(
    client: &Client,
    cfg: &PostgresTarget,
    stats: &CollectorStats,
) -> anyhow::Result<Vec<MetricFamily>> {
    let mut f = Families::new(&cfg.name);
    let databases = i64::try_from(cfg.max_databases).unwrap_or(i64::MAX);
    let statements = i64::try_from(cfg.statements_top).unwrap_or(i64::MAX);
    let installed: Vec<String> = within(
        cfg,
        client.query("SELECT extname::text FROM pg_extension", &[]),
    )
    .await?
    .iter()
    .filter_map(|r| r.try_get(0).ok())
    .collect();
    let version: i32 = within(
        cfg,
        client.query_one("SELECT current_setting('server_version_num')::int", &[]),
    )
    .await?
    .try_get(0)
    .unwrap_or(0);
    for q in QUERIES {
        if let Some(ext) = q.needs_extension
            && !installed.iter().any(|e| e == ext)
        {
            continue;
        }
        if !(q.versions.0..q.versions.1).contains(&version) {
            continue;
        }
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = match q.param {
            Param::None => vec![],
            Param::Databases => vec![&databases],
            Param::Statements if statements == 0 => continue,
            Param::Statements => vec![&statements],
        };
        match within(cfg, client.query(q.sql, &params)).await {
            Ok(rows) => {
                for row in &rows {
                    (q.apply)(row, &mut f);
                }
            }
            // Gone, or not answering: what follows would queue behind it. Reconnect.
            Err(e) if client.is_closed() || e.is::<Elapsed>() => {
                stats.errors.with_label_values(&[&cfg.name, q.name]).inc();
                return Err(e);
            }
            Err(e) => {
                tracing::debug!(server = %cfg.name, query = q.name, error = %e, "collector query failed");
                stats.errors.with_label_values(&[&cfg.name, q.name]).inc();
            }
        }
    }
    f.gauge("pg_up", UP_HELP, &[], 1.0);
    Ok(f.into_vec())
}

/// `fut` within the target's timeout (beyond `statement_timeout`, for a server that
/// stopped answering).
async fn within<T>(
    cfg: &PostgresTarget,
    fut: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(cfg.timeout + Duration::from_millis(500), fut).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(Elapsed(cfg.timeout).into()),
    }
}

/// A statement got no answer within the target's timeout.
#[derive(Debug, thiserror::Error)]
#[error("no answer within {0:?}")]
struct Elapsed(Duration);

const UP_HELP: &str = "Whether the last scrape of metrics from PostgreSQL was able to connect to the server (1 for yes, 0 for no).";

/// Families being built for one target; every series gets `server`.
struct Families {
    server: String,
    by_name: BTreeMap<&'static str, MetricFamily>,
}

impl Families {
    fn new(server: &str) -> Self {
        Self {
            server: server.to_string(),
            by_name: BTreeMap::new(),
        }
    }

    /// Only `pg_up 0`.
    fn down(mut self) -> Vec<MetricFamily> {
        self.gauge("pg_up", UP_HELP, &[], 0.0);
        self.into_vec()
    }

    fn into_vec(self) -> Vec<MetricFamily> {
        self.by_name.into_values().collect()
    }

    fn gauge(&mut self, name: &'static str, help: &'static str, labels: &[(&str, &str)], v: f64) {
        self.add(name, help, MetricType::GAUGE, labels, v);
    }

    fn counter(&mut self, name: &'static str, help: &'static str, labels: &[(&str, &str)], v: f64) {
        self.add(name, help, MetricType::COUNTER, labels, v);
    }

    fn add(
        &mut self,
        name: &'static str,
        help: &'static str,
        kind: MetricType,
        labels: &[(&str, &str)],
        v: f64,
    ) {
        let mut pairs: Vec<LabelPair> = labels
            .iter()
            .copied()
            .chain([("server", self.server.as_str())])
            .map(|(k, val)| {
                let mut p = LabelPair::default();
                p.set_name(k.to_string());
                p.set_value(val.to_string());
                p
            })
            .collect();
        pairs.sort_by(|a, b| a.name().cmp(b.name()));
        let mut m = Metric::from_label(pairs);
        // postgres_exporter's counters without `_total` (xact_commit…) stay untyped, so
        // OpenMetrics does not rename them to `…_total` under the dashboards' feet.
        let kind = match kind {
            MetricType::COUNTER if name.ends_with("_total") => {
                let mut c = prometheus::proto::Counter::default();
                c.set_value(v);
                m.set_counter(c);
                kind
            }
            #[allow(deprecated)] // untyped is how the crate models OpenMetrics' `unknown`
            MetricType::COUNTER => {
                let mut u = prometheus::proto::Untyped::default();
                u.set_value(v);
                m.set_untyped(u);
                MetricType::UNTYPED
            }
            _ => {
                let mut g = Gauge::default();
                g.set_value(v);
                m.set_gauge(g);
                kind
            }
        };
        let family = self.by_name.entry(name).or_insert_with(|| {
            let mut f = MetricFamily::default();
            f.set_name(name.into());
            f.set_help(help.into());
            f.set_field_type(kind);
            f
        });
        family.mut_metric().push(m);
    }
}

/// What a query's `$1` is.
#[derive(Clone, Copy, PartialEq)]
enum Param {
    /// No parameter.
    None,
    /// `max_databases`.
    Databases,
    /// `statements_top`.
    Statements,
}

/// One catalog query and how its rows become series.
struct Query {
    name: &'static str,
    sql: &'static str,
    param: Param,
    /// Runs only when this extension is installed.
    needs_extension: Option<&'static str>,
    /// Server versions (`server_version_num`) it runs on: `[from, until)`.
    versions: (i32, i32),
    apply: fn(&Row, &mut Families),
}

/// Every version.
const ALL: (i32, i32) = (0, i32::MAX);

fn text(row: &Row, i: usize) -> String {
    row.try_get::<_, Option<String>>(i)
        .ok()
        .flatten()
        .unwrap_or_default()
}

fn num(row: &Row, i: usize) -> f64 {
    row.try_get::<_, Option<f64>>(i)
        .ok()
        .flatten()
        .unwrap_or(f64::NAN)
}

/// `pg_stat_database` columns: (column, metric, help, counter?).
const STAT_DATABASE: &[(&str, &str, bool)] = &[
    (
        "numbackends",
        "Number of backends currently connected to this database. This is the only column in this view that returns a value reflecting current state; all other columns return the accumulated values since the last reset.",
        false,
    ),
    (
        "xact_commit",
        "Number of transactions in this database that have been committed",
        true,
    ),
    (
        "xact_rollback",
        "Number of transactions in this database that have been rolled back",
        true,
    ),
    (
        "blks_read",
        "Number of disk blocks read in this database",
        true,
    ),
    (
        "blks_hit",
        "Number of times disk blocks were found already in the buffer cache, so that a read was not necessary (this only includes hits in the PostgreSQL buffer cache, not the operating system's file system cache)",
        true,
    ),
    (
        "tup_returned",
        "Number of rows returned by queries in this database",
        true,
    ),
    (
        "tup_fetched",
        "Number of rows fetched by queries in this database",
        true,
    ),
    (
        "tup_inserted",
        "Number of rows inserted by queries in this database",
        true,
    ),
    (
        "tup_updated",
        "Number of rows updated by queries in this database",
        true,
    ),
    (
        "tup_deleted",
        "Number of rows deleted by queries in this database",
        true,
    ),
    (
        "conflicts",
        "Number of queries canceled due to conflicts with recovery in this database. (Conflicts occur only on standby servers; see pg_stat_database_conflicts for details.)",
        true,
    ),
    (
        "temp_files",
        "Number of temporary files created by queries in this database. All temporary files are counted, regardless of why the temporary file was created (e.g., sorting or hashing), and regardless of the log_temp_files setting.",
        true,
    ),
    (
        "temp_bytes",
        "Total amount of data written to temporary files by queries in this database. All temporary files are counted, regardless of why the temporary file was created, and regardless of the log_temp_files setting.",
        true,
    ),
    (
        "deadlocks",
        "Number of deadlocks detected in this database",
        true,
    ),
    (
        "blk_read_time",
        "Time spent reading data file blocks by backends in this database, in milliseconds",
        true,
    ),
    (
        "blk_write_time",
        "Time spent writing data file blocks by backends in this database, in milliseconds",
        true,
    ),
];

/// postgres_exporter's metric name of a `pg_stat_database` column.
fn stat_database_name(column: &str) -> &'static str {
    match column {
        "numbackends" => "pg_stat_database_numbackends",
        "xact_commit" => "pg_stat_database_xact_commit",
        "xact_rollback" => "pg_stat_database_xact_rollback",
        "blks_read" => "pg_stat_database_blks_read",
        "blks_hit" => "pg_stat_database_blks_hit",
        "tup_returned" => "pg_stat_database_tup_returned",
        "tup_fetched" => "pg_stat_database_tup_fetched",
        "tup_inserted" => "pg_stat_database_tup_inserted",
        "tup_updated" => "pg_stat_database_tup_updated",
        "tup_deleted" => "pg_stat_database_tup_deleted",
        "conflicts" => "pg_stat_database_conflicts",
        "temp_files" => "pg_stat_database_temp_files",
        "temp_bytes" => "pg_stat_database_temp_bytes",
        "deadlocks" => "pg_stat_database_deadlocks",
        "blk_read_time" => "pg_stat_database_blk_read_time",
        _ => "pg_stat_database_blk_write_time",
    }
}

fn apply_stat_database(row: &Row, f: &mut Families) {
    let datid = text(row, 0);
    let datname = text(row, 1);
    let labels = [("datid", datid.as_str()), ("datname", datname.as_str())];
    for (i, (column, help, counter)) in STAT_DATABASE.iter().enumerate() {
        let v = num(row, i + 2);
        if *counter {
            f.counter(stat_database_name(column), help, &labels, v);
        } else {
            f.gauge(stat_database_name(column), help, &labels, v);
        }
    }
}

fn apply_activity(row: &Row, f: &mut Families) {
    let (datname, state) = (text(row, 0), text(row, 1));
    let labels = [("datname", datname.as_str()), ("state", state.as_str())];
    f.gauge(
        "pg_stat_activity_count",
        "number of connections in this state",
        &labels,
        num(row, 2),
    );
    f.gauge(
        "pg_stat_activity_max_tx_duration",
        "max duration in seconds any active transaction has been running",
        &labels,
        num(row, 3),
    );
}

fn apply_locks(row: &Row, f: &mut Families) {
    let (datname, mode) = (text(row, 0), text(row, 1));
    f.gauge(
        "pg_locks_count",
        "Number of locks",
        &[("datname", &datname), ("mode", &mode)],
        num(row, 2),
    );
}

fn apply_database_size(row: &Row, f: &mut Families) {
    let datname = text(row, 0);
    f.gauge(
        "pg_database_size_bytes",
        "Disk space used by the database",
        &[("datname", &datname)],
        num(row, 1),
    );
}

fn apply_server(row: &Row, f: &mut Families) {
    f.gauge(
        "pg_settings_max_connections",
        "Sets the maximum number of concurrent connections.",
        &[],
        num(row, 0),
    );
    f.gauge(
        "pg_postmaster_start_time_seconds",
        "Time at which postmaster started",
        &[],
        num(row, 1),
    );
    let is_replica = row.try_get::<_, bool>(2).unwrap_or(false);
    f.gauge(
        "pg_replication_is_replica",
        "Indicates if the server is a replica",
        &[],
        if is_replica { 1.0 } else { 0.0 },
    );
    f.gauge(
        "pg_replication_lag_seconds",
        "Replication lag behind master in seconds",
        &[],
        num(row, 3),
    );
    let (short, long) = (text(row, 4), text(row, 5));
    f.gauge(
        "pg_static",
        "Version string as reported by postgres",
        &[("short_version", &short), ("version", &long)],
        1.0,
    );
}

/// `pg_stat_bgwriter` columns and postgres_exporter's names for them.
const BGWRITER: &[(&str, &str)] = &[
    (
        "pg_stat_bgwriter_checkpoints_timed_total",
        "Number of scheduled checkpoints that have been performed",
    ),
    (
        "pg_stat_bgwriter_checkpoints_req_total",
        "Number of requested checkpoints that have been performed",
    ),
    (
        "pg_stat_bgwriter_checkpoint_write_time_total",
        "Total amount of time that has been spent in the portion of checkpoint processing where files are written to disk, in milliseconds",
    ),
    (
        "pg_stat_bgwriter_checkpoint_sync_time_total",
        "Total amount of time that has been spent in the portion of checkpoint processing where files are synchronized to disk, in milliseconds",
    ),
    (
        "pg_stat_bgwriter_buffers_checkpoint_total",
        "Number of buffers written during checkpoints",
    ),
    (
        "pg_stat_bgwriter_buffers_clean_total",
        "Number of buffers written by the background writer",
    ),
    (
        "pg_stat_bgwriter_maxwritten_clean_total",
        "Number of times the background writer stopped a cleaning scan because it had written too many buffers",
    ),
    (
        "pg_stat_bgwriter_buffers_backend_total",
        "Number of buffers written directly by a backend",
    ),
    (
        "pg_stat_bgwriter_buffers_backend_fsync_total",
        "Number of times a backend had to execute its own fsync call (normally the background writer handles those even when the backend does its own write)",
    ),
    (
        "pg_stat_bgwriter_buffers_alloc_total",
        "Number of buffers allocated",
    ),
];

fn apply_bgwriter(row: &Row, f: &mut Families) {
    for (i, (name, help)) in BGWRITER.iter().enumerate() {
        let v = num(row, i);
        // NULL: a column this server version no longer has.
        if !v.is_nan() {
            f.counter(name, help, &[], v);
        }
    }
}

fn apply_replication(row: &Row, f: &mut Families) {
    let (app, addr, state) = (text(row, 0), text(row, 1), text(row, 2));
    let labels = [
        ("application_name", app.as_str()),
        ("client_addr", addr.as_str()),
        ("state", state.as_str()),
    ];
    f.gauge(
        "pg_stat_replication_pg_wal_lsn_diff",
        "Lag in bytes between master and slave",
        &labels,
        num(row, 3),
    );
    f.gauge(
        "pg_stat_replication_replay_lag_seconds",
        "Time elapsed between flushing recent WAL locally and receiving notification that this standby server has written, flushed and applied it",
        &labels,
        num(row, 4),
    );
}

fn apply_statements(row: &Row, f: &mut Families) {
    let (rolname, datname, queryid) = (text(row, 0), text(row, 1), text(row, 2));
    let labels = [
        ("datname", datname.as_str()),
        ("queryid", queryid.as_str()),
        ("rolname", rolname.as_str()),
    ];
    f.counter(
        "pg_stat_statements_calls",
        "Number of times executed",
        &labels,
        num(row, 3),
    );
    f.counter(
        "pg_stat_statements_total_time_seconds",
        "Total time spent executing the statement, in seconds",
        &labels,
        num(row, 4),
    );
    f.gauge(
        "pg_stat_statements_mean_time_seconds",
        "Mean time spent executing the statement, in seconds",
        &labels,
        num(row, 5),
    );
    f.counter(
        "pg_stat_statements_rows",
        "Total number of rows retrieved or affected by the statement",
        &labels,
        num(row, 6),
    );
    f.counter(
        "pg_stat_statements_shared_blks_hit",
        "Total number of shared block cache hits by the statement",
        &labels,
        num(row, 7),
    );
    f.counter(
        "pg_stat_statements_shared_blks_read",
        "Total number of shared blocks read by the statement",
        &labels,
        num(row, 8),
    );
    let query = redact_statement(&text(row, 9));
    f.gauge(
        "pg_stat_statements_query_info",
        "The normalised text of a top statement (truncated to 200 characters); always 1",
        &[
            ("datname", &datname),
            ("query", &query),
            ("queryid", &queryid),
            ("rolname", &rolname),
        ],
        1.0,
    );
}

/// Statement text as exported: passwords written as literals (`PASSWORD '…'`,
/// `password=…` in connection strings) removed, at most 200 characters.
fn redact_statement(sql: &str) -> String {
    static QUOTED: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?i)(password\s*=?\s*)'(?:[^']|'')*'").expect("valid regex")
    });
    static BARE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?i)(password\s*=\s*)[^\s';]+").expect("valid regex")
    });
    let quoted = QUOTED.replace_all(sql, "${1}'<redacted>'");
    let bare = BARE.replace_all(&quoted, "${1}<redacted>");
    bare.chars().take(200).collect()
}

/// The top-statements query of one pg_stat_statements version: its total and mean time
/// columns and an extra filter.
macro_rules! statements_query {
    ($total:literal, $mean:literal, $filter:literal, $versions:expr) => {
        Query {
            name: "stat_statements",
            sql: concat!(
                "SELECT r.rolname::text, d.datname::text, s.queryid::text, s.calls::float8, (s.",
                $total,
                " / 1000)::float8, (s.",
                $mean,
                " / 1000)::float8, s.rows::float8, s.shared_blks_hit::float8, \
                 s.shared_blks_read::float8, \
                 left(regexp_replace(s.query, '[[:space:]]+', ' ', 'g'), 400) \
                 FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid \
                 JOIN pg_database d ON d.oid = s.dbid WHERE s.queryid IS NOT NULL",
                $filter,
                " ORDER BY s.",
                $total,
                " DESC LIMIT $1"
            ),
            param: Param::Statements,
            needs_extension: Some("pg_stat_statements"),
            versions: $versions,
            apply: apply_statements,
        }
    };
}

/// The collection, in order; each query is independent of the others.
const QUERIES: &[Query] = &[
    Query {
        name: "server",
        sql: "SELECT current_setting('max_connections')::float8, \
              EXTRACT(EPOCH FROM pg_postmaster_start_time())::float8, pg_is_in_recovery(), \
              CASE WHEN NOT pg_is_in_recovery() THEN 0 \
                   WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
                   ELSE GREATEST(0, EXTRACT(EPOCH FROM (now() - pg_last_xact_replay_timestamp()))) END::float8, \
              (current_setting('server_version_num')::int / 10000)::text || '.' || \
              (current_setting('server_version_num')::int % 10000)::text || '.0', version()",
        param: Param::None,
        needs_extension: None,
        versions: ALL,
        apply: apply_server,
    },
    Query {
        name: "stat_database",
        sql: "SELECT datid::text, datname::text, numbackends::float8, xact_commit::float8, \
              xact_rollback::float8, blks_read::float8, blks_hit::float8, tup_returned::float8, \
              tup_fetched::float8, tup_inserted::float8, tup_updated::float8, tup_deleted::float8, \
              conflicts::float8, temp_files::float8, temp_bytes::float8, deadlocks::float8, \
              blk_read_time::float8, blk_write_time::float8 \
              FROM pg_stat_database ORDER BY datname NULLS LAST LIMIT $1",
        param: Param::Databases,
        needs_extension: None,
        versions: ALL,
        apply: apply_stat_database,
    },
    Query {
        name: "stat_activity",
        sql: "SELECT d.datname::text, s.state, COALESCE(a.count, 0)::float8, \
              COALESCE(a.max_tx_duration, 0)::float8 \
              FROM (VALUES ('active'), ('idle'), ('idle in transaction'), \
                           ('idle in transaction (aborted)'), ('fastpath function call'), ('disabled')) AS s(state) \
              CROSS JOIN (SELECT datname FROM pg_database ORDER BY datname LIMIT $1) d \
              LEFT JOIN (SELECT datname, state, count(*) AS count, \
                         MAX(EXTRACT(EPOCH FROM now() - xact_start)) AS max_tx_duration \
                         FROM pg_stat_activity GROUP BY datname, state) a \
              ON a.state = s.state AND a.datname = d.datname",
        param: Param::Databases,
        needs_extension: None,
        versions: ALL,
        apply: apply_activity,
    },
    Query {
        name: "locks",
        sql: "SELECT d.datname::text, m.mode, COALESCE(l.count, 0)::float8 \
              FROM (VALUES ('accesssharelock'), ('rowsharelock'), ('rowexclusivelock'), \
                           ('shareupdateexclusivelock'), ('sharelock'), ('sharerowexclusivelock'), \
                           ('exclusivelock'), ('accessexclusivelock'), ('sireadlock')) AS m(mode) \
              CROSS JOIN (SELECT oid, datname FROM pg_database ORDER BY datname LIMIT $1) d \
              LEFT JOIN (SELECT database, lower(mode) AS mode, count(*) AS count FROM pg_locks \
                         WHERE database IS NOT NULL GROUP BY database, lower(mode)) l \
              ON l.mode = m.mode AND l.database = d.oid",
        param: Param::Databases,
        needs_extension: None,
        versions: ALL,
        apply: apply_locks,
    },
    Query {
        name: "database_size",
        sql: "SELECT datname::text, \
              CASE WHEN has_database_privilege(oid, 'CONNECT') THEN pg_database_size(oid) END::float8 \
              FROM pg_database ORDER BY datname LIMIT $1",
        param: Param::Databases,
        needs_extension: None,
        versions: ALL,
        apply: apply_database_size,
    },
    Query {
        name: "stat_bgwriter",
        sql: "SELECT checkpoints_timed::float8, checkpoints_req::float8, checkpoint_write_time::float8, \
              checkpoint_sync_time::float8, buffers_checkpoint::float8, buffers_clean::float8, \
              maxwritten_clean::float8, buffers_backend::float8, buffers_backend_fsync::float8, \
              buffers_alloc::float8 FROM pg_stat_bgwriter",
        param: Param::None,
        needs_extension: None,
        versions: (0, 170000),
        apply: apply_bgwriter,
    },
    // PostgreSQL 17 moved the checkpoint columns to pg_stat_checkpointer and the backend
    // writes to pg_stat_io (not exported: NULL here).
    Query {
        name: "stat_bgwriter",
        sql: "SELECT c.num_timed::float8, c.num_requested::float8, c.write_time::float8, \
              c.sync_time::float8, c.buffers_written::float8, b.buffers_clean::float8, \
              b.maxwritten_clean::float8, NULL::float8, NULL::float8, b.buffers_alloc::float8 \
              FROM pg_stat_checkpointer c, pg_stat_bgwriter b",
        param: Param::None,
        needs_extension: None,
        versions: (170000, i32::MAX),
        apply: apply_bgwriter,
    },
    Query {
        name: "stat_replication",
        sql: "SELECT COALESCE(application_name, ''), COALESCE(host(client_addr), ''), COALESCE(state, ''), \
              (CASE WHEN pg_is_in_recovery() THEN NULL \
                    ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) END)::float8, \
              EXTRACT(EPOCH FROM replay_lag)::float8 \
              FROM pg_stat_replication ORDER BY application_name, client_addr LIMIT $1",
        param: Param::Databases,
        needs_extension: None,
        versions: ALL,
        apply: apply_replication,
    },
    // total_time became total_exec_time in 13; 14 added `toplevel` (nested statements
    // of pg_stat_statements.track = all would repeat a queryid).
    statements_query!("total_time", "mean_time", "", (0, 130000)),
    statements_query!("total_exec_time", "mean_exec_time", "", (130000, 140000)),
    statements_query!(
        "total_exec_time",
        "mean_exec_time",
        " AND s.toplevel",
        (140000, i32::MAX)
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml: &str) -> Config {
        Config::from_toml(toml).expect("valid config")
    }

    #[test]
    fn the_own_database_is_watched_unless_turned_off() {
        let c = config("database_url = \"postgres://wp:secret@db:5432/watchpost\"\n");
        let t = targets(&c);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].name, OWN);
        assert_eq!(t[0].interval, Duration::from_secs(15));
        // The table form turns it off and lists targets.
        let c = config(
            "database_url = \"postgres://wp:secret@db:5432/watchpost\"\n[postgres]\nmonitor_own = false\n\
             [[postgres.targets]]\nname = \"orders\"\nurl = \"postgres://mon@orders:5432/orders\"\n",
        );
        let t = targets(&c);
        assert_eq!(
            t.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["orders"]
        );
        // The list form adds to the own database; SQLite has no own target.
        let c = config(
            "[[postgres]]\nname = \"orders\"\nurl = \"postgres://mon@orders/orders\"\n\
             interval = \"30s\"\nstatements_top = 5\n",
        );
        let t = targets(&c);
        assert_eq!(t.len(), 1);
        assert_eq!(
            (t[0].interval, t[0].statements_top),
            (Duration::from_secs(30), 5)
        );
    }

    #[test]
    fn validation_names_the_target_and_key() {
        let mut c = Config::default();
        let mut bad = PostgresTarget::new("orders", "mysql://x");
        bad.timeout = Duration::from_secs(20);
        c.postgres.targets = vec![bad, PostgresTarget::new("orders", "postgres://x/y")];
        let p = validate(&c).join("\n");
        for needle in [
            "postgres[0].url",
            "postgres[0].timeout",
            "postgres[1].name: \"orders\" is used twice",
        ] {
            assert!(p.contains(needle), "{needle} in {p}");
        }
        let err =
            Config::from_toml("[[postgres]]\nname = \"a\"\nurl = \"postgres://x\"\ntypo = 1\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("typo"), "{err}");
    }

    #[test]
    fn statement_text_loses_its_passwords() {
        for (sql, shown) in [
            (
                "ALTER ROLE app PASSWORD 'hunter2'",
                "ALTER ROLE app PASSWORD '<redacted>'",
            ),
            (
                "CREATE USER x WITH ENCRYPTED password 'it''s secret' VALID UNTIL $1",
                "CREATE USER x WITH ENCRYPTED password '<redacted>' VALID UNTIL $1",
            ),
            (
                "CREATE SUBSCRIPTION s CONNECTION 'host=db password=hunter2 user=r' PUBLICATION p",
                "CREATE SUBSCRIPTION s CONNECTION 'host=db password=<redacted> user=r' PUBLICATION p",
            ),
            (
                "SELECT * FROM t WHERE id = $1",
                "SELECT * FROM t WHERE id = $1",
            ),
        ] {
            assert_eq!(redact_statement(sql), shown);
        }
        assert_eq!(redact_statement(&"x".repeat(500)).len(), 200);
    }

    #[test]
    fn the_password_never_shows() {
        let c = config(
            "[[postgres]]\nname = \"orders\"\nurl = \"postgres://mon:hunter2@orders/orders\"\n",
        );
        let shown = format!(
            "{:?} {}",
            c.postgres,
            serde_json::to_string(&c.postgres).unwrap()
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
