//! Typed configuration: built-in defaults < TOML file < `WATCHPOST_*` environment.
//!
//! Every struct rejects unknown keys, so a typo is an error that names the key.
//! Secrets are wrapped in [`Secret`] and never printed.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Environment variables with the `WATCHPOST_` prefix that are not configuration keys
/// (`WATCHPOST_DASHBOARD_BUILD` steers the build script).
const NON_CONFIG_ENV: &[&str] = &[
    "config",
    "test_database_url",
    "test_pg_bin",
    "dashboard_build",
];

/// A configuration problem; the message names the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file given with `--config` or `WATCHPOST_CONFIG` does not exist.
    #[error("config file {0} does not exist")]
    Missing(PathBuf),
    /// Parsing or type errors, one line per problem.
    #[error("{0}")]
    Invalid(String),
}

/// The whole configuration. Field names are the contract's keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    pub listen: String,
    /// `sqlite://path` (default) or `postgres://…`.
    pub database_url: Secret,
    /// Base URL used in links of notifications; defaults to `http://<listen>`.
    pub external_url: Option<String>,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[serde(with = "human_duration")]
    pub shutdown_timeout: Duration,
    /// Connection pool and query instrumentation.
    pub database: DatabaseConfig,
    /// Host and self metric collection.
    pub collect: CollectConfig,
    /// Rule files and their evaluation.
    pub rules: RulesConfig,
    /// The in-memory time-series store.
    pub tsdb: TsdbConfig,
    /// Telegram notifications and bot.
    pub telegram: TelegramConfig,
    /// Bearer tokens and roles.
    pub auth: AuthConfig,
    /// Logging.
    pub log: LogConfig,
    /// Alert ingest, storage and retention.
    pub alerts: AlertsConfig,
    /// Notification routing tree (Alertmanager's `route`).
    pub route: Option<RouteConfig>,
    /// Notification receivers.
    pub receivers: Vec<ReceiverConfig>,
    /// Inhibition rules; `None` means the built-in default.
    pub inhibit_rules: Option<Vec<InhibitRule>>,
    /// Scheduled reports.
    pub reports: ReportsConfig,
    /// Delivery of notifications: timeouts, backoff, ambiguous sends.
    pub notify: NotifyConfig,
    /// This node's identity (claims on notifications name it).
    pub cluster: ClusterConfig,
    /// PromQL evaluation limits.
    pub query: QueryConfig,
    /// HTTP server limits: header and request timeouts, connections.
    pub http: HttpConfig,
    /// PostgreSQL servers to monitor (`[[postgres]]`).
    pub postgres: PostgresConfig,
    /// Flap damping of notifications.
    pub flap: FlapConfig,
    /// The classifier's vocabulary.
    pub classify: ClassifyConfig,
    /// Long-term stores every appended sample is shipped to (`[[remote_write]]`).
    pub remote_write: Vec<RemoteWriteConfig>,
    /// Jobs that must ping on time (`[[heartbeats]]`).
    pub heartbeats: Vec<HeartbeatConfig>,
    /// Server side of `watchpost agent` connections.
    pub agents: AgentsConfig,
    /// `watchpost agent`: where to stream this host's metrics.
    pub agent: AgentConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            database_url: Secret("sqlite://data/watchpost.db".into()),
            external_url: None,
            shutdown_timeout: Duration::from_secs(10),
            database: DatabaseConfig::default(),
            collect: CollectConfig::default(),
            rules: RulesConfig::default(),
            tsdb: TsdbConfig::default(),
            telegram: TelegramConfig::default(),
            auth: AuthConfig::default(),
            log: LogConfig::default(),
            alerts: AlertsConfig::default(),
            route: None,
            receivers: Vec::new(),
            inhibit_rules: None,
            reports: ReportsConfig::default(),
            notify: NotifyConfig::default(),
            cluster: ClusterConfig::default(),
            query: QueryConfig::default(),
            http: HttpConfig::default(),
            postgres: PostgresConfig::default(),
            flap: FlapConfig::default(),
            remote_write: Vec::new(),
            heartbeats: Vec::new(),
            agents: AgentsConfig::default(),
            agent: AgentConfig::default(),
            classify: ClassifyConfig::default(),
        }
    }
}

/// `[flap]`: an alert that changes state more than `max_transitions` times in `window`
/// is flapping: its notifications are held until it is stable for `window / 3`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlapConfig {
    /// State changes (fired or resolved) allowed in `window`; 0 turns damping off.
    pub max_transitions: usize,
    /// The window transitions are counted in.
    #[serde(with = "human_duration")]
    pub window: Duration,
}

impl Default for FlapConfig {
    fn default() -> Self {
        Self {
            max_transitions: 4,
            window: Duration::from_secs(30 * 60),
        }
    }
}

/// `[classify]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifyConfig {
    /// A TOML vocabulary that replaces or extends the built-in one (technology → type).
    pub vocabulary_file: Option<PathBuf>,
}

/// `[query]`: limits of one PromQL evaluation (Prometheus' `--query.*` flags).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// Longest one query may run, queueing included (`--query.timeout`).
    #[serde(with = "human_duration")]
    pub timeout: Duration,
    /// Most samples one query may load (`--query.max-samples`).
    pub max_samples: usize,
    /// Queries evaluated at once through the HTTP API; others wait (`--query.max-concurrency`).
    pub max_concurrency: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
            max_concurrency: 20,
        }
    }
}

/// `[http]`: what one client may hold of the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Time to send a request's headers, from the connection's start or their first
    /// byte (slowloris).
    #[serde(with = "human_duration")]
    pub header_timeout: Duration,
    /// How long an idle keep-alive connection stays open; longer than clients keep
    /// pooled connections (90 s in Go and reqwest), so none is reused as it closes.
    #[serde(with = "human_duration")]
    pub idle_timeout: Duration,
    /// Longest a request may take before it is answered 408 (queries have `query.timeout`).
    #[serde(with = "human_duration")]
    pub request_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// `[database]`: pool and instrumentation settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Queries slower than this are counted and logged.
    #[serde(with = "human_duration")]
    pub slow_query_threshold: Duration,
    /// How long to keep retrying an unreachable database at start.
    #[serde(with = "human_duration")]
    pub connect_timeout: Duration,
    /// Maximum pool size.
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            slow_query_threshold: Duration::from_millis(100),
            connect_timeout: Duration::from_secs(30),
            max_connections: 8,
        }
    }
}

/// `[collect]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectConfig {
    /// How often host and self metrics are sampled.
    #[serde(with = "human_duration")]
    pub interval: Duration,
}

impl Default for CollectConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
        }
    }
}

/// `[rules]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Glob patterns of Prometheus rule files.
    #[serde(deserialize_with = "one_or_many")]
    pub files: Vec<String>,
    /// Default interval of groups that do not set their own.
    #[serde(with = "human_duration")]
    pub evaluation_interval: Duration,
    /// Labels added to every alert and exposed as `$externalLabels`.
    pub external_labels: BTreeMap<String, String>,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            files: vec!["alerts/*.yml".into()],
            evaluation_interval: Duration::from_secs(5),
            external_labels: Default::default(),
        }
    }
}

/// `[tsdb]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TsdbConfig {
    /// How long samples are kept in memory at full resolution.
    #[serde(with = "human_duration")]
    pub retention: Duration,
    /// Most series held; samples of new series beyond it are refused and counted.
    pub max_series: usize,
    /// Largest remote-write body, compressed or decompressed, in bytes.
    pub max_write_bytes: usize,
    /// Most labels on one remote-written series.
    pub max_labels_per_series: usize,
    /// Longest label name or value of a remote-written series, in bytes.
    pub max_label_length: usize,
}

impl Default for TsdbConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(3600),
            max_series: 1_000_000,
            max_write_bytes: 32 * 1024 * 1024,
            max_labels_per_series: 64,
            max_label_length: 4096,
        }
    }
}

/// `[telegram]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelegramConfig {
    /// Bot token from BotFather; unset means Telegram is off.
    pub bot_token: Option<Secret>,
    /// Bot API base URL (a local server in tests).
    pub api_url: String,
    /// Default chats; also the only chats whose commands are obeyed.
    #[serde(deserialize_with = "one_or_many")]
    pub chat_ids: Vec<i64>,
    /// If set, only these users may command the bot.
    #[serde(deserialize_with = "one_or_many")]
    pub admin_user_ids: Vec<i64>,
    /// Give up retrying a notification after this long.
    #[serde(with = "human_duration")]
    pub max_retry: Duration,
    /// The bot's `getUpdates` long-poll timeout (whole seconds, 1–50). A new cluster
    /// leader waits this long before polling, so it never overlaps the last poll of the
    /// leader it replaced.
    #[serde(with = "human_duration")]
    pub poll_timeout: Duration,
    /// Send a PNG chart of the rule's expression with alerts from watchpost's rules.
    pub charts: bool,
    /// Time span of those charts, ending now (or at the resolve).
    #[serde(with = "human_duration")]
    pub chart_window: Duration,
    /// Chart size in pixels, `WIDTHxHEIGHT`.
    pub chart_size: String,
}

impl Default for TelegramConfig {
    fn default() -> Self {
        Self {
            bot_token: None,
            api_url: "https://api.telegram.org".into(),
            chat_ids: Vec::new(),
            admin_user_ids: Vec::new(),
            max_retry: Duration::from_secs(3600),
            poll_timeout: Duration::from_secs(25),
            charts: true,
            chart_window: Duration::from_secs(3600),
            chart_size: "800x450".into(),
        }
    }
}

/// What to do with a send whose outcome is unknown: the request went out and no answer
/// came back (timeout, connection cut, crash or shutdown deadline mid-request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AmbiguousPolicy {
    /// Send it once more: the receiver may see it twice, but never zero times.
    Retry,
    /// Do not send it again: never twice, but possibly never.
    Drop,
}

/// `[notify]`: how notifications are delivered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// A send that timed out after the request went out: `retry` once, or `drop`.
    pub ambiguous: AmbiguousPolicy,
    /// Per-request timeout of a send (Telegram, webhook).
    #[serde(with = "human_duration")]
    pub timeout: Duration,
    /// First retry delay after a transient failure (doubles per attempt, with jitter).
    #[serde(with = "human_duration")]
    pub min_backoff: Duration,
    /// Largest retry delay.
    #[serde(with = "human_duration")]
    pub max_backoff: Duration,
    /// IANA time zone of every time in messages, reports and templates.
    pub timezone: String,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            ambiguous: AmbiguousPolicy::Retry,
            timeout: Duration::from_secs(30),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            timezone: "UTC".into(),
        }
    }
}

/// `[cluster]`: this node's identity and membership timers (several nodes share one
/// PostgreSQL database; with SQLite there is one node).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This node's id; unset = `<hostname>:<port>` of the bound address.
    pub node_id: Option<String>,
    /// How other nodes and users reach this node; unset = `external_url`.
    pub advertise_url: Option<String>,
    /// How often this node refreshes its heartbeat.
    #[serde(with = "human_duration")]
    pub heartbeat_interval: Duration,
    /// A node whose heartbeat is older than this is dead; a leader is replaced within it.
    #[serde(with = "human_duration")]
    pub node_timeout: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            node_id: None,
            advertise_url: None,
            heartbeat_interval: Duration::from_secs(1),
            node_timeout: Duration::from_secs(5),
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Bearer tokens and their roles.
    pub tokens: Vec<TokenConfig>,
    /// JWTs from an identity provider, beside the static tokens.
    pub jwt: Option<JwtConfig>,
}

impl AuthConfig {
    /// Whether callers must authenticate (static tokens or JWTs are configured).
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty() || self.jwt.is_some()
    }
}

/// `[auth.jwt]`: bearer JWTs signed by an identity provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// Required `iss`; unset accepts any issuer.
    pub issuer: Option<String>,
    /// Accepted `aud` values (a string or a list); unset accepts any audience.
    pub audience: Option<OneOrMany>,
    /// A JWKS endpoint: fetched at start, cached, re-fetched on an unknown `kid`.
    pub jwks_url: Option<String>,
    /// A JWKS file, read like `jwks_url`.
    pub jwks_file: Option<PathBuf>,
    /// The shared secret of HS256 tokens.
    pub hs256_secret: Option<Secret>,
    /// Accepted algorithms, among RS256, ES256, EdDSA and HS256.
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(with = "human_duration")]
    pub leeway: Duration,
    /// The claim holding the role(s): a string or a list, or a dotted path such as
    /// `realm_access.roles`.
    pub role_claim: String,
    /// Claim values to roles; without it, the values `viewer`, `operator`, `admin` and
    /// `agent` name their role.
    pub role_map: BTreeMap<String, Role>,
    /// Least time between two JWKS fetches (unknown `kid`s do not hammer the provider).
    #[serde(with = "human_duration")]
    pub jwks_min_refresh: Duration,
    /// JWKS age after which it is re-fetched in the background.
    #[serde(with = "human_duration")]
    pub jwks_refresh: Duration,
    /// Timeout of one JWKS fetch.
    #[serde(with = "human_duration")]
    pub jwks_timeout: Duration,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            jwks_url: None,
            jwks_file: None,
            hs256_secret: None,
            algorithms: ["RS256", "ES256", "EdDSA", "HS256"]
                .map(String::from)
                .to_vec(),
            leeway: Duration::from_secs(60),
            role_claim: "watchpost_role".into(),
            role_map: BTreeMap::new(),
            jwks_min_refresh: Duration::from_secs(60),
            jwks_refresh: Duration::from_secs(600),
            jwks_timeout: Duration::from_secs(5),
        }
    }
}

/// A string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One value.
    One(String),
    /// Several values.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values.
    pub fn values(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// One bearer token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The token itself (compared in constant time, never logged).
    pub token: Secret,
    /// What the token may do.
    pub role: Role,
    /// A name for audit logs; defaults to the role.
    #[serde(default)]
    pub name: Option<String>,
}

/// Roles: viewer, operator and admin each include the ones before them; `agent` may
/// only connect and push (admins may too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `watchpost agent`: connect and push only.
    Agent,
    /// Reads.
    Viewer,
    /// Reads, acks, silences, ingests.
    Operator,
    /// Everything, including reloads and deletes.
    Admin,
}

/// PostgreSQL servers to monitor: `[[postgres]]` targets, or the table form
/// `[postgres]` with `monitor_own` and `[[postgres.targets]]`.
#[derive(Debug, Clone, Serialize)]
pub struct PostgresConfig {
    /// With a `postgres://` `database_url`, monitor watchpost's own database too.
    pub monitor_own: bool,
    /// The servers.
    pub targets: Vec<PostgresTarget>,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            monitor_own: true,
            targets: Vec::new(),
        }
    }
}

impl<'de> Deserialize<'de> for PostgresConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            #[serde(default = "yes")]
            monitor_own: bool,
            #[serde(default)]
            targets: Vec<PostgresTarget>,
        }
        fn yes() -> bool {
            true
        }
        struct Either;
        impl<'de> serde::de::Visitor<'de> for Either {
            type Value = PostgresConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a list of [[postgres]] targets, or a table with monitor_own and targets",
                )
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                a: A,
            ) -> Result<Self::Value, A::Error> {
                Ok(PostgresConfig {
                    targets: Vec::deserialize(SeqAccessDeserializer::new(a))?,
                    ..PostgresConfig::default()
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                a: A,
            ) -> Result<Self::Value, A::Error> {
                let t = Table::deserialize(MapAccessDeserializer::new(a))?;
                Ok(PostgresConfig {
                    monitor_own: t.monitor_own,
                    targets: t.targets,
                })
            }
        }
        d.deserialize_any(Either)
    }
}

/// One `[[heartbeats]]` entry: a job that pings at least every `period`; a ping later
/// than `period + grace` raises `HeartbeatMissing`, a `/fail` `HeartbeatFailed`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// The name in `/api/v1/heartbeats/{name}` and the alerts' `heartbeat` label.
    pub name: String,
    /// Longest time between two pings.
    #[serde(with = "human_duration")]
    pub period: Duration,
    /// How long a late ping is waited for before the alert.
    #[serde(default = "HeartbeatConfig::default_grace", with = "human_duration")]
    pub grace: Duration,
    /// Labels added to its alerts.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Severity of its alerts.
    #[serde(default = "HeartbeatConfig::default_severity")]
    pub severity: String,
}

impl HeartbeatConfig {
    /// Grace when none is given.
    pub fn default_grace() -> Duration {
        Duration::from_secs(5 * 60)
    }
    /// Severity when none is given: a job that stopped running is an incident.
    pub fn default_severity() -> String {
        "critical".into()
    }
}

/// `[agents]`: agents (`watchpost agent` on other hosts) connected to this server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsConfig {
    /// An agent disconnected longer than this raises `AgentDown{instance}`.
    #[serde(with = "human_duration")]
    pub grace: Duration,
    /// Agents connected to this node at once; more are refused (503).
    pub max_connected: usize,
    /// Series one agent may create; new series past it are refused.
    pub max_series: usize,
    /// Largest message (one compressed batch) an agent may send.
    pub max_message_bytes: usize,
    /// Samples per second one agent may push (its reads are slowed past it; back-fill
    /// included).
    pub max_samples_per_second: u32,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(30),
            max_connected: 1000,
            max_series: 10_000,
            max_message_bytes: 4 << 20,
            max_samples_per_second: 50_000,
        }
    }
}

/// `[agent]`: `watchpost agent` collects this host's metrics and streams them to `server`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// The watchpost server, e.g. `http://watchpost.example:8080`.
    pub server: Option<String>,
    /// A bearer token with the `agent` role (none needed for a loopback server without tokens).
    pub token: Option<Secret>,
    /// This agent's name: its series' `instance` label (default: the host name).
    pub name: Option<String>,
    /// Samples kept while disconnected, back-filled in order after reconnecting.
    #[serde(with = "human_duration")]
    pub buffer: Duration,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            server: None,
            token: None,
            name: None,
            buffer: Duration::from_secs(15 * 60),
        }
    }
}

/// One `[[remote_write]]` endpoint (Prometheus' `remote_write` with its `queue_config`
/// flattened): every sample the store appends is sent there, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// The receiver, e.g. `http://prometheus:9090/api/v1/write`.
    pub url: String,
    /// Extra request headers (e.g. `X-Scope-OrgID` for Mimir or Cortex).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `Authorization: Bearer …`.
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    /// HTTP basic auth.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// Samples held for the endpoint while it is slow or down; past it the oldest are
    /// dropped (and counted).
    #[serde(default = "RemoteWriteConfig::default_queue_capacity")]
    pub queue_capacity: usize,
    /// Most samples in one request.
    #[serde(default = "RemoteWriteConfig::default_max_samples_per_send")]
    pub max_samples_per_send: usize,
    /// Longest a sample waits for its request to fill up.
    #[serde(
        default = "RemoteWriteConfig::default_deadline",
        with = "human_duration"
    )]
    pub batch_send_deadline: Duration,
    /// First wait after a failed send (doubling up to `max_backoff`).
    #[serde(
        default = "RemoteWriteConfig::default_min_backoff",
        with = "human_duration"
    )]
    pub min_backoff: Duration,
    /// Longest wait between retries.
    #[serde(
        default = "RemoteWriteConfig::default_max_backoff",
        with = "human_duration"
    )]
    pub max_backoff: Duration,
    /// Longest one request may take.
    #[serde(
        default = "RemoteWriteConfig::default_timeout",
        with = "human_duration"
    )]
    pub remote_timeout: Duration,
    /// Only metrics whose name matches this regular expression (anchored) are sent.
    #[serde(default)]
    pub keep_metrics: Option<String>,
    /// Metrics whose name matches this regular expression (anchored) are not sent.
    #[serde(default)]
    pub drop_metrics: Option<String>,
}

/// `basic_auth = { username, password }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// Password.
    pub password: Secret,
}

impl RemoteWriteConfig {
    fn default_queue_capacity() -> usize {
        500_000
    }
    fn default_max_samples_per_send() -> usize {
        2_000
    }
    fn default_deadline() -> Duration {
        Duration::from_secs(5)
    }
    fn default_min_backoff() -> Duration {
        Duration::from_millis(30)
    }
    fn default_max_backoff() -> Duration {
        Duration::from_secs(5)
    }
    fn default_timeout() -> Duration {
        Duration::from_secs(30)
    }
    /// An endpoint with the defaults.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.into(),
            headers: BTreeMap::new(),
            bearer_token: None,
            basic_auth: None,
            queue_capacity: Self::default_queue_capacity(),
            max_samples_per_send: Self::default_max_samples_per_send(),
            batch_send_deadline: Self::default_deadline(),
            min_backoff: Self::default_min_backoff(),
            max_backoff: Self::default_max_backoff(),
            remote_timeout: Self::default_timeout(),
            keep_metrics: None,
            drop_metrics: None,
        }
    }
}

/// One PostgreSQL server to monitor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresTarget {
    /// The `server` label of its metrics.
    pub name: String,
    /// `postgres://user:password@host:port/db?sslmode=…` (the password is never shown).
    pub url: Secret,
    /// Time between two collections.
    #[serde(default = "PostgresTarget::default_interval", with = "human_duration")]
    pub interval: Duration,
    /// How many `pg_stat_statements` entries (by total time) are exported.
    #[serde(default = "PostgresTarget::default_statements_top")]
    pub statements_top: usize,
    /// Connect and statement timeout.
    #[serde(default = "PostgresTarget::default_timeout", with = "human_duration")]
    pub timeout: Duration,
    /// Most databases with per-database series (by name), whatever the server holds.
    #[serde(default = "PostgresTarget::default_max_databases")]
    pub max_databases: usize,
}

impl PostgresTarget {
    fn default_interval() -> Duration {
        Duration::from_secs(15)
    }
    fn default_statements_top() -> usize {
        20
    }
    fn default_timeout() -> Duration {
        Duration::from_secs(5)
    }
    fn default_max_databases() -> usize {
        64
    }
    /// A target with the defaults.
    pub fn new(name: &str, url: &str) -> Self {
        Self {
            name: name.into(),
            url: Secret(url.into()),
            interval: Self::default_interval(),
            statements_top: Self::default_statements_top(),
            timeout: Self::default_timeout(),
            max_databases: Self::default_max_databases(),
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `pretty` or `json`; unset picks pretty on a TTY, else JSON.
    pub format: Option<LogFormat>,
    /// A `RUST_LOG`-style filter; `RUST_LOG` wins when set.
    pub level: Option<String>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, coloured.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `[alerts]`: ingest limits, batching and retention.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// How long resolved alerts and their events are kept.
    #[serde(with = "human_duration")]
    pub retention: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Most alerts accepted in one request.
    pub max_alerts_per_request: usize,
    /// Batch writer: most alerts in one transaction.
    pub batch_max_size: usize,
    /// Batch writer: longest wait before a partial batch is committed.
    #[serde(with = "human_duration")]
    pub batch_max_delay: Duration,
    /// Batch writer: queue capacity in alerts; beyond it ingest answers 503.
    pub queue_capacity: usize,
    /// Ingest requests per second allowed per token or client address.
    pub rate_limit_per_second: u32,
    /// Burst size for the ingest rate limit.
    pub rate_limit_burst: u32,
    /// Shared secret ntopng must send (`sharedsecret`); unset means not checked.
    pub ntopng_shared_secret: Option<Secret>,
    /// Folder of the receipt journal (durable repeats between checkpoints): unset = a
    /// `journal` folder next to the SQLite file, or `data/journal` with PostgreSQL;
    /// empty = no journal (every repeat updates its row in its batch).
    pub journal_dir: Option<PathBuf>,
    /// How often journaled repeats are written to the database (reads that need them
    /// write them first).
    #[serde(with = "human_duration")]
    pub checkpoint_interval: Duration,
    /// Most alerts firing at once; beyond, requests that would fire new alerts are
    /// answered 503 with `Retry-After` and their new alerts are not stored (their
    /// repeats and resolves are). 0 = no limit.
    pub max_firing: usize,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(90 * 86400),
            max_body_bytes: 1024 * 1024,
            max_alerts_per_request: 10_000,
            batch_max_size: 2_000,
            batch_max_delay: Duration::from_millis(5),
            queue_capacity: 50_000,
            rate_limit_per_second: 200,
            rate_limit_burst: 400,
            ntopng_shared_secret: None,
            journal_dir: None,
            checkpoint_interval: Duration::from_secs(5),
            max_firing: 1_000_000,
        }
    }
}

/// `[route]`: a node of Alertmanager's routing tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Receiver name; inherited from the parent when unset.
    #[serde(default)]
    pub receiver: Option<String>,
    /// Label matchers such as `severity="critical"` (children only).
    #[serde(default)]
    pub matchers: Vec<String>,
    /// Labels that split alerts into notification groups.
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    /// Wait before the first notification of a new group.
    #[serde(default, with = "human_duration::option")]
    pub group_wait: Option<Duration>,
    /// Wait between notifications of a changed group.
    #[serde(default, with = "human_duration::option")]
    pub group_interval: Option<Duration>,
    /// Wait before repeating an unchanged notification.
    #[serde(default, with = "human_duration::option")]
    pub repeat_interval: Option<Duration>,
    /// Keep matching siblings after this route matched.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    /// Child routes.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

/// `[[receivers]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// Name referenced by routes.
    pub name: String,
    /// Telegram delivery.
    #[serde(default)]
    pub telegram: Option<TelegramReceiver>,
    /// Generic webhook delivery (Alertmanager payload).
    #[serde(default)]
    pub webhook: Option<WebhookReceiver>,
    /// E-mail delivery (SMTP).
    #[serde(default)]
    pub email: Option<EmailReceiver>,
    /// Kafka delivery (one JSON record per notification).
    #[serde(default)]
    pub kafka: Option<KafkaReceiver>,
}

/// An e-mail receiver; Alertmanager's `email_configs` field names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailReceiver {
    /// Recipients: a list, or one comma-separated string as in Alertmanager.
    #[serde(default, deserialize_with = "one_or_many")]
    pub to: Vec<String>,
    /// Sender address.
    #[serde(default)]
    pub from: String,
    /// SMTP server, `host:port`; port 465 means implicit TLS (SMTPS).
    #[serde(default)]
    pub smarthost: String,
    /// Name sent in EHLO; default: this host's name.
    #[serde(default)]
    pub hello: Option<String>,
    /// SMTP AUTH user (PLAIN/LOGIN).
    #[serde(default)]
    pub auth_username: Option<String>,
    /// SMTP AUTH password.
    #[serde(default)]
    pub auth_password: Option<Secret>,
    /// Require STARTTLS (default true); false upgrades only when the server offers it.
    #[serde(default = "yes")]
    pub require_tls: bool,
    /// TLS settings (a private CA, the expected server name).
    #[serde(default)]
    pub tls_config: TlsClientConfig,
    /// Subject template; default: `[FIRING:N] group labels`.
    #[serde(default)]
    pub subject: Option<String>,
    /// HTML body template; default: the built-in message.
    #[serde(default)]
    pub html: Option<String>,
    /// Plain-text body template; default: the built-in message as text.
    #[serde(default)]
    pub text: Option<String>,
    /// Extra headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// TLS client settings of a receiver.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsClientConfig {
    /// PEM file of the CA to trust in addition to the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// Name expected in the server's certificate; default: the host connected to.
    pub server_name: Option<String>,
    /// Accept any certificate (tests only).
    pub insecure_skip_verify: bool,
}

/// A Kafka receiver: each notification as one JSON record, keyed by its group key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaReceiver {
    /// Bootstrap brokers, `host:port` (a list or a comma-separated string).
    #[serde(deserialize_with = "one_or_many")]
    pub brokers: Vec<String>,
    /// Topic the records go to.
    pub topic: String,
    /// Record key template; default: the group key (a group's records stay in order on
    /// one partition).
    #[serde(default)]
    pub key: Option<String>,
    /// `all` (default, required by the idempotent producer), `leader` or `none`.
    #[serde(default)]
    pub acks: KafkaAcks,
    /// `none`, `gzip` or `snappy` (default `none`).
    #[serde(default)]
    pub compression: KafkaCompression,
    /// SASL authentication.
    #[serde(default)]
    pub sasl: Option<KafkaSasl>,
    /// TLS to the brokers; unset = plaintext.
    #[serde(default)]
    pub tls: Option<TlsClientConfig>,
    /// Idempotent producer (default true): a retried batch is written once.
    #[serde(default = "yes")]
    pub idempotent: bool,
    /// Also send one record per alert state change (`alert` records) besides the
    /// notification.
    #[serde(default)]
    pub alert_changes: bool,
}

/// Kafka `acks`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KafkaAcks {
    /// All in-sync replicas (-1).
    #[default]
    All,
    /// The partition leader only (1).
    Leader,
    /// No acknowledgement (0).
    None,
}

/// Kafka record batch compression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KafkaCompression {
    /// Uncompressed.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
}

/// Kafka SASL settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSasl {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    #[serde(default = "sasl_plain")]
    pub mechanism: String,
    /// User name.
    pub username: String,
    /// Password.
    pub password: Secret,
}

fn sasl_plain() -> String {
    "PLAIN".into()
}

fn yes() -> bool {
    true
}

/// A Telegram receiver.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelegramReceiver {
    /// Chats to send to; empty means `telegram.chat_ids`.
    #[serde(deserialize_with = "one_or_many")]
    pub chat_ids: Vec<i64>,
    /// Forum topic.
    pub message_thread_id: Option<i64>,
    /// Send silently.
    pub disable_notification: bool,
    /// Message template overriding the built-in one.
    pub template: Option<String>,
    /// Charts with rule alerts; unset = `telegram.charts`.
    pub charts: Option<bool>,
}

/// A webhook receiver.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookReceiver {
    /// Where to POST; printed reduced to `scheme://host/…` (the path may be a secret).
    #[serde(serialize_with = "endpoint")]
    pub url: String,
}

impl fmt::Debug for WebhookReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookReceiver")
            .field("url", &crate::redact::endpoint(&self.url))
            .finish()
    }
}

/// `[[inhibit_rules]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitRule {
    /// Matchers an inhibiting alert must satisfy.
    #[serde(default)]
    pub source_matchers: Vec<String>,
    /// Matchers an inhibited alert must satisfy.
    #[serde(default)]
    pub target_matchers: Vec<String>,
    /// Labels that must be equal in source and target.
    #[serde(default)]
    pub equal: Vec<String>,
}

/// `[reports]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportsConfig {
    /// Cron expression for the Telegram report; unset = off.
    pub telegram_schedule: Option<String>,
    /// Window of the scheduled report.
    #[serde(with = "human_duration")]
    pub window: Duration,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        Self {
            telegram_schedule: None,
            window: Duration::from_secs(86400),
        }
    }
}

/// A secret string: deserializes normally, debug-prints as `<redacted>`, serializes as
/// [`crate::redact::secret`] shows it (a URL without its passwords, else `<redacted>`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    /// The secret value; use only where it is needed.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::redact::secret(&self.0))
    }
}

/// Serializes a receiver URL as [`crate::redact::endpoint`] shows it.
fn endpoint<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::redact::endpoint(url))
}

/// Durations in the config: read as humantime strings (`90s`, `1h 30m`, `7d`), written
/// in the largest whole unit (`90d`, not `2months 29days 2h 52m 48s`).
mod human_duration {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    const UNITS: [(u64, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
    ];

    /// `d`, `h`, `m`, `s` or `ms`, whichever divides the duration exactly.
    pub fn format(d: &Duration) -> String {
        let ms = d.as_millis() as u64;
        if !d.subsec_nanos().is_multiple_of(1_000_000) {
            return humantime::format_duration(*d).to_string();
        }
        match UNITS
            .iter()
            .find(|(unit, _)| ms > 0 && ms.is_multiple_of(*unit))
        {
            Some((unit, name)) => format!("{}{name}", ms / unit),
            None => format!("{ms}ms"),
        }
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        humantime_serde::deserialize(d)
    }

    pub mod option {
        use std::time::Duration;

        use serde::{Deserializer, Serializer};

        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_some(&super::format(d)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            humantime_serde::option::deserialize(d)
        }
    }
}

/// Accepts a list, a single value, or a comma-separated string (handy in env vars).
fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + std::str::FromStr,
    T::Err: fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        Many(Vec<T>),
        Text(String),
        One(T),
    }
    match OneOrMany::<T>::deserialize(d)? {
        OneOrMany::Many(v) => Ok(v),
        OneOrMany::Text(s) => s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| p.parse::<T>().map_err(serde::de::Error::custom))
            .collect(),
        OneOrMany::One(v) => Ok(vec![v]),
    }
}

impl Config {
    /// Loads defaults < `file` (or `WATCHPOST_CONFIG`, or `./watchpost.toml`) < environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let file = match file {
            Some(f) => Some(f.to_path_buf()),
            None => std::env::var_os("WATCHPOST_CONFIG").map(PathBuf::from),
        };
        let mut figment = Figment::new();
        match file {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError::Missing(path));
                }
                figment = figment.merge(Toml::file_exact(path));
            }
            None => {
                if Path::new("watchpost.toml").exists() {
                    figment = figment.merge(Toml::file_exact("watchpost.toml"));
                }
            }
        }
        figment = figment.merge(
            Env::prefixed("WATCHPOST_")
                .split("__")
                .ignore(NON_CONFIG_ENV),
        );
        let config: Config = figment.extract().map_err(|e| {
            let lines: Vec<String> = e.into_iter().map(|e| describe_figment_error(&e)).collect();
            ConfigError::Invalid(lines.join("\n"))
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML string on top of the defaults (no environment); for tests and tools.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = Figment::new()
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| {
                let lines: Vec<String> =
                    e.into_iter().map(|e| describe_figment_error(&e)).collect();
                ConfigError::Invalid(lines.join("\n"))
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values serde cannot: addresses, URLs, ranges, the security default. The
    /// routing tree and the receivers are checked by their owners
    /// ([`crate::validate_config`] runs everything).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        match self.listen_addr() {
            Ok(addr) if !addr.ip().is_loopback() && !self.auth.enabled() => problems.push(format!(
                "listen: refusing to listen on non-loopback address {addr} without auth.tokens or auth.jwt; \
                 add [[auth.tokens]] or [auth.jwt], or listen on 127.0.0.1"
            )),
            Ok(_) => {}
            Err(e) => problems.push(e),
        }
        let url = self.database_url.expose();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            problems.push(format!(
                "database_url: unsupported scheme in {:?}; use sqlite://PATH or postgres://…",
                crate::redact::dsn(url)
            ));
        }
        for (key, d) in [
            ("notify.timeout", self.notify.timeout),
            ("notify.min_backoff", self.notify.min_backoff),
            ("collect.interval", self.collect.interval),
            ("flap.window", self.flap.window),
            ("rules.evaluation_interval", self.rules.evaluation_interval),
            ("tsdb.retention", self.tsdb.retention),
            ("alerts.batch_max_delay", self.alerts.batch_max_delay),
            (
                "alerts.checkpoint_interval",
                self.alerts.checkpoint_interval,
            ),
            ("query.timeout", self.query.timeout),
            ("http.header_timeout", self.http.header_timeout),
            ("http.idle_timeout", self.http.idle_timeout),
            ("http.request_timeout", self.http.request_timeout),
        ] {
            if d.is_zero() {
                problems.push(format!("{key}: must be greater than 0"));
            }
        }
        for (key, n) in [
            ("tsdb.max_series", self.tsdb.max_series),
            ("tsdb.max_write_bytes", self.tsdb.max_write_bytes),
            (
                "tsdb.max_labels_per_series",
                self.tsdb.max_labels_per_series,
            ),
            ("tsdb.max_label_length", self.tsdb.max_label_length),
        ] {
            if n == 0 {
                problems.push(format!("{key}: must be greater than 0"));
            }
        }
        if !(1..=50).contains(&self.telegram.poll_timeout.as_secs()) {
            problems.push("telegram.poll_timeout: must be between 1s and 50s".into());
        }
        if self.notify.max_backoff < self.notify.min_backoff {
            problems.push("notify.max_backoff: must not be less than notify.min_backoff".into());
        }
        for (key, d) in [
            ("query.timeout", self.query.timeout),
            ("http.header_timeout", self.http.header_timeout),
            ("http.idle_timeout", self.http.idle_timeout),
            ("http.request_timeout", self.http.request_timeout),
        ] {
            if d > Duration::from_secs(86_400) {
                problems.push(format!("{key}: must be at most 1d"));
            }
        }
        for (key, n) in [
            ("query.max_samples", self.query.max_samples),
            ("query.max_concurrency", self.query.max_concurrency),
            ("http.max_connections", self.http.max_connections),
        ] {
            if n == 0 {
                problems.push(format!("{key}: must be at least 1"));
            }
        }
        if self.database.max_connections == 0 {
            problems.push("database.max_connections: must be at least 1".into());
        }
        for (i, t) in self.auth.tokens.iter().enumerate() {
            if t.token.expose().len() < 8 {
                problems.push(format!(
                    "auth.tokens[{i}].token: must be at least 8 characters"
                ));
            }
        }
        if !(self.telegram.api_url.starts_with("http://")
            || self.telegram.api_url.starts_with("https://"))
        {
            problems.push(format!(
                "telegram.api_url: not an http(s) URL: {:?}",
                self.telegram.api_url
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems.join("\n")))
        }
    }

    /// The parsed `listen` address.
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        self.listen.parse::<SocketAddr>().map_err(|e| {
            format!(
                "listen: {:?} is not an address like 127.0.0.1:8080: {e}",
                self.listen
            )
        })
    }

    /// `external_url`, or `http://<listen>` when unset.
    pub fn external_url(&self) -> String {
        self.external_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_string()
    }

    /// The effective configuration as TOML with secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// Renders one figment error as `key: problem (source)`.
fn describe_figment_error(e: &figment::Error) -> String {
    let key = e.path.join(".");
    let source = e
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            _ if m.name.contains("environment") && !e.path.is_empty() => {
                format!(
                    " (from environment variable WATCHPOST_{})",
                    e.path.join("__").to_uppercase()
                )
            }
            Some(src) => format!(" (in {} {src})", m.name),
            None => format!(" (in {})", m.name),
        })
        .unwrap_or_default();
    let kind = describe_kind(&e.kind);
    if key.is_empty() {
        format!("{kind}{source}")
    } else {
        format!("{key}: {kind}{source}")
    }
}

fn describe_kind(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    match kind {
        Kind::UnknownField(field, expected) => {
            format!(
                "unknown key `{field}`, expected one of: {}",
                expected.join(", ")
            )
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_print_in_their_largest_whole_unit() {
        use super::human_duration::format;
        assert_eq!(format(&Duration::from_secs(90 * 86400)), "90d");
        assert_eq!(format(&Duration::from_secs(5400)), "90m");
        assert_eq!(format(&Duration::from_millis(1500)), "1500ms");
        assert_eq!(format(&Duration::from_secs(5)), "5s");
        assert_eq!(format(&Duration::ZERO), "0ms");
    }

    use super::*;

    #[test]
    fn defaults_are_the_contract() {
        let c = Config::default();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert_eq!(c.database_url.expose(), "sqlite://data/watchpost.db");
        assert_eq!(c.collect.interval, Duration::from_secs(1));
        assert_eq!(c.rules.files, vec!["alerts/*.yml"]);
        assert_eq!(c.rules.evaluation_interval, Duration::from_secs(5));
        assert_eq!(c.tsdb.retention, Duration::from_secs(3600));
        assert_eq!(c.telegram.api_url, "https://api.telegram.org");
        assert_eq!(c.external_url(), "http://127.0.0.1:8080");
        c.validate().unwrap();
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("[collect]\nintervall = \"1s\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("intervall"), "{err}");
        assert!(err.contains("collect"), "{err}");
    }

    #[test]
    fn bad_duration_is_named() {
        let err = Config::from_toml("[collect]\ninterval = \"fast\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("collect.interval"), "{err}");
    }

    #[test]
    fn report_window_is_bounded() {
        let valid = |toml: &str| crate::validate_config(&Config::from_toml(toml).unwrap());
        valid("[reports]\nwindow = \"366d\"\n").unwrap();
        let err = valid("[reports]\nwindow = \"367d\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("reports.window: must be at most 366d"),
            "{err}"
        );
    }

    #[test]
    fn non_loopback_without_tokens_is_refused() {
        let err = Config::from_toml("listen = \"0.0.0.0:8080\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("listen") && err.contains("auth.tokens"),
            "{err}"
        );
        Config::from_toml(
            "listen = \"0.0.0.0:8080\"\n[[auth.tokens]]\ntoken = \"0123456789\"\nrole = \"admin\"\n",
        )
        .unwrap(); // JWTs alone are authentication too; keys and roles parse from TOML.
        let c = Config::from_toml(
            "listen = \"0.0.0.0:8080\"\n[auth.jwt]\nissuer = \"https://sso/realms/ops\"\n\
             audience = [\"account\", \"watchpost\"]\n\
             jwks_url = \"https://sso/realms/ops/protocol/openid-connect/certs\"\n\
             role_claim = \"realm_access.roles\"\n[auth.jwt.role_map]\n\"wp-admins\" = \"admin\"\n",
        )
        .unwrap();
        let jwt = c.auth.jwt.expect("auth.jwt");
        assert_eq!(jwt.role_map["wp-admins"], Role::Admin);
        assert_eq!(jwt.leeway, Duration::from_secs(60));
        assert_eq!(
            jwt.audience,
            Some(OneOrMany::Many(vec!["account".into(), "watchpost".into()]))
        );
    }

    #[test]
    fn secrets_are_redacted() {
        let c = Config::from_toml(
            "database_url = \"postgres://u:hunter2@db/x?password=hunter3\"\n\
             [telegram]\nbot_token = \"123:SECRET\"\n\
             [[receivers]]\nname = \"hook\"\n\
             webhook = { url = \"https://u:hunter4@hooks.example/services/T0/B0/HOOKSECRET\" }\n",
        )
        .unwrap();
        let out = c.to_redacted_toml();
        for secret in ["hunter2", "hunter3", "hunter4", "SECRET"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(
            out.contains("postgres://u:<redacted>@db/x?password=<redacted>"),
            "{out}"
        );
        assert!(out.contains("https://hooks.example/…"), "{out}");
        assert!(!format!("{c:?}").contains("SECRET"));
    }

    #[test]
    fn lists_accept_comma_separated_strings() {
        let c = Config::from_toml("[telegram]\nchat_ids = \"1, -100200\"\n").unwrap();
        assert_eq!(c.telegram.chat_ids, vec![1, -100200]);
        let c = Config::from_toml("[telegram]\nchat_ids = 42\n").unwrap();
        assert_eq!(c.telegram.chat_ids, vec![42]);
    }

    #[test]
    fn route_tree_parses() {
        let c = Config::from_toml(
            r#"
[telegram]
bot_token = "1:x"
chat_ids = [1]
[route]
receiver = "telegram"
group_by = ["alertname", "instance"]
group_wait = "10s"
[[route.routes]]
matchers = ["severity=\"critical\""]
receiver = "oncall"
continue = true
[[receivers]]
name = "oncall"
webhook = { url = "http://127.0.0.1:9/hook" }
[[inhibit_rules]]
source_matchers = ["severity=\"critical\""]
target_matchers = ["severity=\"warning\""]
equal = ["alertname"]
"#,
        )
        .unwrap();
        let route = c.route.unwrap();
        assert_eq!(route.group_wait, Some(Duration::from_secs(10)));
        assert!(route.routes[0].continue_matching);
        assert_eq!(c.receivers[0].name, "oncall");
    }
}
