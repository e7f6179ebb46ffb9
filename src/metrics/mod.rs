//! The metric registry: every metric family watchpost exports, in one place.
//!
//! Each app owns its registry (not the prometheus crate's global one), so tests can run
//! several apps in one process. Families are grouped by concern; the groups are cheap
//! to clone and are handed to the code that records into them.

mod expose;
pub mod http;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

pub use expose::{OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, encode_openmetrics, encode_text};

/// Latency buckets for HTTP requests (seconds).
pub const HTTP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Latency buckets for DB queries and batch flushes (seconds).
pub const DB_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A metric could not be created or registered (a programming error, caught by tests).
pub type MetricsError = prometheus::Error;

/// All metric families of one app.
#[derive(Clone)]
pub struct Metrics {
    /// The registry `/metrics` and the tsdb read from.
    pub registry: Registry,
    /// HTTP middleware.
    pub http: HttpMetrics,
    /// Database query path and pool.
    pub db: DbMetrics,
    /// moka caches.
    pub cache: CacheMetrics,
    /// Batch queues.
    pub batch: BatchMetrics,
    /// Host (sysinfo).
    pub system: SystemMetrics,
    /// Rules, alerts and notifications.
    pub alerting: AlertingMetrics,
    /// Cluster membership and leadership.
    pub cluster: ClusterMetrics,
}

/// `watchpost_cluster_*`.
#[derive(Clone)]
pub struct ClusterMetrics {
    /// `watchpost_cluster_leader`: 1 while this node leads.
    pub leader: IntGauge,
    /// `watchpost_cluster_nodes{state="alive|dead"}`.
    pub nodes: IntGaugeVec,
    /// `watchpost_cluster_node_alive{node}`: 1 per live member, 0 per dead one.
    pub node_alive: IntGaugeVec,
    /// `watchpost_cluster_leader_changes_total`: leadership terms this node saw begin.
    pub leader_changes: IntCounter,
    /// `watchpost_cluster_epoch`: the fencing epoch this node last saw.
    pub epoch: IntGauge,
}

/// `watchpost_http_*`.
#[derive(Clone)]
pub struct HttpMetrics {
    /// `watchpost_http_requests_total{method,route,status}`.
    pub requests: IntCounterVec,
    /// `watchpost_http_request_duration_seconds{method,route}`.
    pub duration: HistogramVec,
}

/// `watchpost_db_*`.
#[derive(Clone)]
pub struct DbMetrics {
    /// `watchpost_db_queries_total{query,outcome}`.
    pub queries: IntCounterVec,
    /// `watchpost_db_query_duration_seconds{query}`.
    pub duration: HistogramVec,
    /// `watchpost_db_slow_queries_total{query}`.
    pub slow: IntCounterVec,
    /// `watchpost_db_pool_connections{state}`.
    pub pool: IntGaugeVec,
}

/// `watchpost_cache_*`.
#[derive(Clone)]
pub struct CacheMetrics {
    /// `watchpost_cache_requests_total{cache,result}`.
    pub requests: IntCounterVec,
    /// `watchpost_cache_entries{cache}`.
    pub entries: IntGaugeVec,
    /// `watchpost_cache_evictions_total{cache}`.
    pub evictions: IntCounterVec,
}

/// `watchpost_batch_*`.
#[derive(Clone)]
pub struct BatchMetrics {
    /// `watchpost_batch_queue_depth{queue}`.
    pub depth: IntGaugeVec,
    /// `watchpost_batch_queue_capacity{queue}`.
    pub capacity: IntGaugeVec,
    /// `watchpost_batch_flush_duration_seconds{queue}`.
    pub flush_duration: HistogramVec,
    /// `watchpost_batch_items_total{queue,outcome}`.
    pub items: IntCounterVec,
    /// `watchpost_batch_retries_total{queue}`.
    pub retries: IntCounterVec,
}

/// `system_*` host metrics.
#[derive(Clone)]
pub struct SystemMetrics {
    /// `system_cpu_usage_ratio`.
    pub cpu_usage: Gauge,
    /// `system_cpu_core_usage_ratio{core}`.
    pub cpu_core_usage: GaugeVec,
    /// `system_load1`.
    pub load1: Gauge,
    /// `system_load5`.
    pub load5: Gauge,
    /// `system_load15`.
    pub load15: Gauge,
    /// `system_memory_total_bytes`.
    pub memory_total: IntGauge,
    /// `system_memory_used_bytes`.
    pub memory_used: IntGauge,
    /// `system_memory_available_bytes`.
    pub memory_available: IntGauge,
    /// `system_swap_total_bytes`.
    pub swap_total: IntGauge,
    /// `system_swap_used_bytes`.
    pub swap_used: IntGauge,
    /// `system_disk_total_bytes{mount}`.
    pub disk_total: IntGaugeVec,
    /// `system_disk_used_bytes{mount}`.
    pub disk_used: IntGaugeVec,
    /// `system_network_received_bytes_total{interface}`.
    pub net_received: IntCounterVec,
    /// `system_network_transmitted_bytes_total{interface}`.
    pub net_transmitted: IntCounterVec,
    /// `system_uptime_seconds`.
    pub uptime: IntGauge,
}

impl SystemMetrics {
    /// The host families (`system_*`), registered in `registry`: the whole of what
    /// `watchpost agent` exports.
    pub fn register(registry: &Registry) -> Result<SystemMetrics, MetricsError> {
        let b = Builder { registry };
        Ok(SystemMetrics {
            cpu_usage: b.gauge(
                "system_cpu_usage_ratio",
                "CPU busy ratio of all cores (0-1).",
            )?,
            cpu_core_usage: b.gauge_vec(
                "system_cpu_core_usage_ratio",
                "CPU busy ratio per core (0-1).",
                &["core"],
            )?,
            load1: b.gauge("system_load1", "1-minute load average.")?,
            load5: b.gauge("system_load5", "5-minute load average.")?,
            load15: b.gauge("system_load15", "15-minute load average.")?,
            memory_total: b.int_gauge("system_memory_total_bytes", "Physical memory.")?,
            memory_used: b.int_gauge("system_memory_used_bytes", "Physical memory in use.")?,
            memory_available: b.int_gauge(
                "system_memory_available_bytes",
                "Physical memory available to new processes.",
            )?,
            swap_total: b.int_gauge("system_swap_total_bytes", "Swap space.")?,
            swap_used: b.int_gauge("system_swap_used_bytes", "Swap space in use.")?,
            disk_total: b.int_gauge_vec(
                "system_disk_total_bytes",
                "File system size per mount point.",
                &["mount"],
            )?,
            disk_used: b.int_gauge_vec(
                "system_disk_used_bytes",
                "File system space not available to users, per mount point.",
                &["mount"],
            )?,
            net_received: b.counter_vec(
                "system_network_received_bytes_total",
                "Bytes received per network interface.",
                &["interface"],
            )?,
            net_transmitted: b.counter_vec(
                "system_network_transmitted_bytes_total",
                "Bytes transmitted per network interface.",
                &["interface"],
            )?,
            uptime: b.int_gauge("system_uptime_seconds", "Seconds since the host booted.")?,
        })
    }
}

/// Every `source` of alerts: ingest formats, and watchpost's own rules, heartbeats and
/// agents (`watchpost`).
pub const ALERT_SOURCES: [&str; 5] = ["api", "prometheus", "alertmanager", "ntopng", "watchpost"];

/// Every `severity` label value.
pub const SEVERITIES: [&str; 3] = ["critical", "warning", "info"];

/// Rules, alerts and notifications.
#[derive(Clone)]
pub struct AlertingMetrics {
    /// `watchpost_alerts_active{severity}`.
    pub alerts_active: IntGaugeVec,
    /// `watchpost_alerts_received_total{source}`.
    pub alerts_received: IntCounterVec,
    /// `watchpost_alerts_fired_total{severity,source}`: alerts that started firing.
    pub alerts_fired: IntCounterVec,
    /// `watchpost_alerts_refused_total{reason}`: alerts the writer refused.
    pub alerts_refused: IntCounterVec,
    /// `watchpost_alerts_flapping`: alerts whose notifications flap damping holds.
    pub alerts_flapping: IntGauge,
    /// `watchpost_rule_evaluations_total`.
    pub rule_evaluations: IntCounter,
    /// `watchpost_rule_evaluation_failures_total`.
    pub rule_evaluation_failures: IntCounter,
    /// `watchpost_rule_evaluation_duration_seconds`.
    pub rule_evaluation_duration: Histogram,
    /// `watchpost_rules_last_reload_success` (1 or 0).
    pub rules_last_reload_success: IntGauge,
    /// `watchpost_rules_last_reload_success_timestamp_seconds`.
    pub rules_last_reload_success_timestamp: Gauge,
    /// `watchpost_notifications_total{receiver,outcome}`.
    pub notifications: IntCounterVec,
    /// `watchpost_notification_queue_depth{receiver}`.
    pub notification_queue_depth: IntGaugeVec,
}

/// Registers metrics as they are built.
struct Builder<'a> {
    registry: &'a Registry,
}

impl Builder<'_> {
    fn reg<C: Collector + Clone + 'static>(&self, c: C) -> Result<C, MetricsError> {
        self.registry.register(Box::new(c.clone()))?;
        Ok(c)
    }
    fn counter(&self, name: &str, help: &str) -> Result<IntCounter, MetricsError> {
        self.reg(IntCounter::new(name, help)?)
    }
    fn counter_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, MetricsError> {
        self.reg(IntCounterVec::new(Opts::new(name, help), labels)?)
    }
    fn gauge(&self, name: &str, help: &str) -> Result<Gauge, MetricsError> {
        self.reg(Gauge::new(name, help)?)
    }
    fn int_gauge(&self, name: &str, help: &str) -> Result<IntGauge, MetricsError> {
        self.reg(IntGauge::new(name, help)?)
    }
    fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> Result<GaugeVec, MetricsError> {
        self.reg(GaugeVec::new(Opts::new(name, help), labels)?)
    }
    fn int_gauge_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntGaugeVec, MetricsError> {
        self.reg(IntGaugeVec::new(Opts::new(name, help), labels)?)
    }
    fn histogram(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
    ) -> Result<Histogram, MetricsError> {
        self.reg(Histogram::with_opts(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        )?)
    }
    fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> Result<HistogramVec, MetricsError> {
        self.reg(HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            labels,
        )?)
    }
}

impl Metrics {
    /// Registers families owned by another room (`what` names them in the log); one
    /// already registered (a second instance sharing the registry) is kept.
    pub fn register_all(&self, what: &str, collectors: Vec<Box<dyn prometheus::core::Collector>>) {
        for c in collectors {
            if let Err(e) = self.registry.register(c) {
                tracing::debug!(error = %e, "{what} metrics already registered");
            }
        }
    }

    /// Builds and registers every family in a fresh registry.
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let b = Builder {
            registry: &registry,
        };
        let http = HttpMetrics {
            requests: b.counter_vec(
                "watchpost_http_requests_total",
                "HTTP requests served, by method, matched route template and status code.",
                &["method", "route", "status"],
            )?,
            duration: b.histogram_vec(
                "watchpost_http_request_duration_seconds",
                "Time to produce the HTTP response headers, by method and route template.",
                &["method", "route"],
                HTTP_BUCKETS,
            )?,
        };
        let db = DbMetrics {
            queries: b.counter_vec(
                "watchpost_db_queries_total",
                "Database queries by stable query name and outcome (ok, error).",
                &["query", "outcome"],
            )?,
            duration: b.histogram_vec(
                "watchpost_db_query_duration_seconds",
                "Database query latency by query name.",
                &["query"],
                DB_BUCKETS,
            )?,
            slow: b.counter_vec(
                "watchpost_db_slow_queries_total",
                "Queries slower than database.slow_query_threshold, by query name.",
                &["query"],
            )?,
            pool: b.int_gauge_vec(
                "watchpost_db_pool_connections",
                "Database pool connections by state (idle, active).",
                &["state"],
            )?,
        };
        let cache = CacheMetrics {
            requests: b.counter_vec(
                "watchpost_cache_requests_total",
                "Cache lookups by cache and result (hit, miss).",
                &["cache", "result"],
            )?,
            entries: b.int_gauge_vec(
                "watchpost_cache_entries",
                "Entries held per cache.",
                &["cache"],
            )?,
            evictions: b.counter_vec(
                "watchpost_cache_evictions_total",
                "Entries evicted (size, expiry or invalidation) per cache.",
                &["cache"],
            )?,
        };
        let batch = BatchMetrics {
            depth: b.int_gauge_vec(
                "watchpost_batch_queue_depth",
                "Items waiting in a batch queue.",
                &["queue"],
            )?,
            capacity: b.int_gauge_vec(
                "watchpost_batch_queue_capacity",
                "Capacity of a batch queue in items.",
                &["queue"],
            )?,
            flush_duration: b.histogram_vec(
                "watchpost_batch_flush_duration_seconds",
                "Time to commit one batch, retries included.",
                &["queue"],
                DB_BUCKETS,
            )?,
            items: b.counter_vec(
                "watchpost_batch_items_total",
                "Items leaving a batch queue by outcome (committed, failed, rejected).",
                &["queue", "outcome"],
            )?,
            retries: b.counter_vec(
                "watchpost_batch_retries_total",
                "Batch commits retried after a transient error.",
                &["queue"],
            )?,
        };
        let system = SystemMetrics::register(&registry)?;
        let alerting = AlertingMetrics {
            alerts_active: b.int_gauge_vec(
                "watchpost_alerts_active",
                "Firing, unresolved alerts by severity.",
                &["severity"],
            )?,
            alerts_received: b.counter_vec(
                "watchpost_alerts_received_total",
                "Alerts accepted by ingest, by source.",
                &["source"],
            )?,
            alerts_fired: b.counter_vec(
                "watchpost_alerts_fired_total",
                "Alerts that started firing (new, or firing again after resolving), by severity and source.",
                &["severity", "source"],
            )?,
            alerts_refused: b.counter_vec(
                "watchpost_alerts_refused_total",
                "Alerts in requests refused by the writer, by reason (max_firing: alerts.max_firing alerts were firing).",
                &["reason"],
            )?,
            alerts_flapping: b.int_gauge(
                "watchpost_alerts_flapping",
                "Alerts flapping (more than flap.max_transitions state changes in flap.window); their notifications are held. Set by the leader.",
            )?,
            rule_evaluations: b.counter("watchpost_rule_evaluations_total", "Rule evaluations.")?,
            rule_evaluation_failures: b.counter(
                "watchpost_rule_evaluation_failures_total",
                "Rule evaluations that failed.",
            )?,
            rule_evaluation_duration: b.histogram(
                "watchpost_rule_evaluation_duration_seconds",
                "Time to evaluate one rule.",
                DB_BUCKETS,
            )?,
            rules_last_reload_success: b.int_gauge(
                "watchpost_rules_last_reload_success",
                "Whether the last rule reload succeeded (1) or failed (0).",
            )?,
            rules_last_reload_success_timestamp: b.gauge(
                "watchpost_rules_last_reload_success_timestamp_seconds",
                "Time of the last successful rule reload, Unix seconds.",
            )?,
            notifications: b.counter_vec(
                "watchpost_notifications_total",
                "Notification attempts by receiver and outcome (delivered, rejected, transient, ambiguous, failed).",
                &["receiver", "outcome"],
            )?,
            notification_queue_depth: b.int_gauge_vec(
                "watchpost_notification_queue_depth",
                "Notifications waiting in the outbox, per receiver.",
                &["receiver"],
            )?,
        };
        let cluster = ClusterMetrics {
            leader: b.int_gauge(
                "watchpost_cluster_leader",
                "1 while this node is the cluster leader (dispatch, sending, the bot), else 0.",
            )?,
            nodes: b.int_gauge_vec(
                "watchpost_cluster_nodes",
                "Cluster nodes by state (alive: heartbeat within cluster.node_timeout).",
                &["state"],
            )?,
            node_alive: b.int_gauge_vec(
                "watchpost_cluster_node_alive",
                "Per cluster member: 1 while its heartbeat is within cluster.node_timeout, 0 once it is \
                 dead (a node stopped cleanly leaves the list).",
                &["node"],
            )?,
            leader_changes: b.counter(
                "watchpost_cluster_leader_changes_total",
                "Changes of the cluster leader (new fencing epochs) seen by this node.",
            )?,
            epoch: b.int_gauge(
                "watchpost_cluster_epoch",
                "The fencing epoch of the current leadership term, as this node last saw it.",
            )?,
        };
        for state in ["alive", "dead"] {
            cluster.nodes.with_label_values(&[state]).set(0);
        }
        for state in ["idle", "active"] {
            db.pool.with_label_values(&[state]).set(0);
        }
        // Known children start at zero, so the very first scrape lists them.
        for route in ["/health", "/ready", "/metrics"] {
            http.requests.with_label_values(&["GET", route, "200"]);
            http.duration.with_label_values(&["GET", route]);
        }
        for source in ALERT_SOURCES {
            alerting.alerts_received.with_label_values(&[source]);
            for severity in SEVERITIES {
                alerting.alerts_fired.with_label_values(&[severity, source]);
            }
        }
        for severity in SEVERITIES {
            alerting.alerts_active.with_label_values(&[severity]).set(0);
        }
        let build = b.int_gauge_vec(
            "watchpost_build_info",
            "Always 1; labels carry the version.",
            &["version"],
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        registry.register(Box::new(LogEventsCollector::new()?))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Metrics {
            registry,
            http,
            db,
            cache,
            batch,
            system,
            alerting,
            cluster,
        })
    }

    /// Everything registered, sorted by name (what `/metrics` and the tsdb see).
    pub fn gather(&self) -> Vec<MetricFamily> {
        self.registry.gather()
    }
}

/// Exposes the process-wide log event counts of [`crate::telemetry`].
struct LogEventsCollector {
    desc: Desc,
}

impl LogEventsCollector {
    const NAME: &'static str = "watchpost_log_events_total";
    const HELP: &'static str = "Log events emitted, by level.";

    fn new() -> Result<Self, MetricsError> {
        let desc = Desc::new(
            Self::NAME.into(),
            Self::HELP.into(),
            vec!["level".into()],
            Default::default(),
        )?;
        Ok(Self { desc })
    }
}

impl Collector for LogEventsCollector {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let metrics = crate::telemetry::LEVELS
            .iter()
            .zip(crate::telemetry::LOG_EVENTS.iter())
            .map(|(level, count)| {
                let mut label = LabelPair::default();
                label.set_name("level".into());
                label.set_value((*level).into());
                let mut counter = Counter::default();
                counter.set_value(count.load(std::sync::atomic::Ordering::Relaxed) as f64);
                let mut m = Metric::from_label(vec![label]);
                m.set_counter(counter);
                m
            })
            .collect();
        let mut family = MetricFamily::default();
        family.set_name(Self::NAME.into());
        family.set_help(Self::HELP.into());
        family.set_field_type(MetricType::COUNTER);
        family.set_metric(metrics);
        vec![family]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_apps_have_independent_registries() {
        let a = Metrics::new().unwrap();
        let b = Metrics::new().unwrap();
        a.alerting.rule_evaluations.inc();
        assert_eq!(a.alerting.rule_evaluations.get(), 1);
        assert_eq!(b.alerting.rule_evaluations.get(), 0);
    }

    #[test]
    fn log_events_always_exposes_every_level() {
        let m = Metrics::new().unwrap();
        let text = encode_text(&m.gather());
        for level in crate::telemetry::LEVELS {
            assert!(
                text.contains(&format!("watchpost_log_events_total{{level=\"{level}\"}}")),
                "{level} missing"
            );
        }
    }
}
