//! The built-in PostgreSQL collector against real clusters started here: values agree
//! with direct catalog queries, a stopped server is `pg_up 0` and `PostgresDown`, a
//! replica pair gives the replication series, and Debian's postgres_exporter on the same
//! cluster exports the same names, labels and values.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{PgCluster, TestApp, eventually, free_port, sqlite_db, test_config};
use watchpost::config::PostgresTarget;

const WAIT: Duration = Duration::from_secs(30);

/// One exposition line: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition format (label values with escapes included).
fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = match line.rsplit_once(' ') {
            Some(p) => p,
            None => continue,
        };
        let value: f64 = match value {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or(f64::NAN),
        };
        let (name, rest) = series.split_once('{').unwrap_or((series, ""));
        let mut labels = BTreeMap::new();
        let mut chars = rest.chars().peekable();
        loop {
            let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
            let key = key.trim_start_matches(',').to_string();
            if key.is_empty() || key == "}" {
                break;
            }
            chars.next(); // opening quote
            let mut val = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some('n') => val.push('\n'),
                        Some(o) => val.push(o),
                        None => {}
                    },
                    '"' => break,
                    c => val.push(c),
                }
            }
            labels.insert(key, val);
        }
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    out
}

async fn scrape(app: &TestApp) -> Vec<Sample> {
    let (_, text) = app.get_text("/metrics").await;
    parse(&text)
}

/// The value of `name` whose labels include `want`.
fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && want
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
        })
        .map(|s| s.value)
}

async fn until_value(
    app: &TestApp,
    name: &str,
    want: &[(&str, &str)],
    ok: impl Fn(f64) -> bool,
) -> f64 {
    eventually(WAIT, || async {
        value(&scrape(app).await, name, want).filter(|v| ok(*v))
    })
    .await
    .unwrap_or_else(|| panic!("{name}{want:?} never satisfied the condition"))
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
}

async fn one(client: &tokio_postgres::Client, sql: &str) -> f64 {
    client
        .query_one(sql, &[])
        .await
        .expect(sql)
        .get::<_, f64>(0)
}

fn target(name: &str, url: &str) -> PostgresTarget {
    PostgresTarget {
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(800),
        ..PostgresTarget::new(name, url)
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_agree_with_the_catalog_and_a_stopped_server_alerts() {
    let Some(pg) = PgCluster::start_with(&["shared_preload_libraries=pg_stat_statements"]) else {
        return;
    };
    let admin = connect(&pg.url()).await;
    admin
        .batch_execute(
            "CREATE EXTENSION pg_stat_statements; CREATE TABLE t (id int); \
             INSERT INTO t SELECT generate_series(1, 1000)",
        )
        .await
        .unwrap();
    for _ in 0..10 {
        admin
            .query("SELECT pg_sleep(0.05), count(*) FROM t", &[])
            .await
            .unwrap();
    }
    // pg_stat_statements keeps this literal: it must never reach /metrics.
    admin
        .batch_execute("CREATE ROLE app LOGIN PASSWORD 'hunter2-in-sql'")
        .await
        .unwrap();

    let mut cfg = test_config(&sqlite_db().url);
    let mut capped = target("capped", &pg.url());
    capped.max_databases = 1;
    capped.statements_top = 0;
    let mut main = target("main", &pg.url());
    main.statements_top = 100;
    cfg.postgres.targets = vec![main, capped];
    cfg.rules.files = vec![format!("{}/alerts/postgres.yml", repo().display())];
    cfg.rules.evaluation_interval = Duration::from_millis(500);
    let app = TestApp::start(cfg).await;
    let main = [("server", "main")];
    until_value(&app, "pg_up", &main, |v| v == 1.0).await;

    // Settings and sizes: equal to what the catalog says.
    let s = scrape(&app).await;
    assert_eq!(
        value(&s, "pg_settings_max_connections", &main),
        Some(one(&admin, "SELECT current_setting('max_connections')::float8").await)
    );
    let started = one(
        &admin,
        "SELECT EXTRACT(EPOCH FROM pg_postmaster_start_time())::float8",
    )
    .await;
    let got = value(&s, "pg_postmaster_start_time_seconds", &main).unwrap();
    assert!((got - started).abs() < 0.001, "{got} vs {started}");
    let size = one(&admin, "SELECT pg_database_size('postgres')::float8").await;
    let got = value(
        &s,
        "pg_database_size_bytes",
        &[("server", "main"), ("datname", "postgres")],
    )
    .unwrap();
    assert!((got - size).abs() / size < 0.05, "{got} vs {size}");
    assert_eq!(value(&s, "pg_replication_is_replica", &main), Some(0.0));

    // Counters: between two direct reads around the collection.
    let before = one(
        &admin,
        "SELECT xact_commit::float8 FROM pg_stat_database WHERE datname = 'postgres'",
    )
    .await;
    let db = [("server", "main"), ("datname", "postgres")];
    let got = until_value(&app, "pg_stat_database_xact_commit", &db, |v| v >= before).await;
    let after = one(
        &admin,
        "SELECT xact_commit::float8 FROM pg_stat_database WHERE datname = 'postgres'",
    )
    .await;
    assert!(got <= after, "{before} <= {got} <= {after}");

    // A session holding a lock in an open transaction.
    let holder = connect(&pg.url()).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let lock = [
        ("server", "main"),
        ("datname", "postgres"),
        ("mode", "accessexclusivelock"),
    ];
    let got = until_value(&app, "pg_locks_count", &lock, |v| v >= 1.0).await;
    let direct = one(
        &admin,
        "SELECT count(*)::float8 FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
         WHERE d.datname = 'postgres' AND l.mode = 'AccessExclusiveLock'",
    )
    .await;
    assert_eq!(got, direct);
    let idle_tx = [
        ("server", "main"),
        ("datname", "postgres"),
        ("state", "idle in transaction"),
    ];
    until_value(&app, "pg_stat_activity_count", &idle_tx, |v| v >= 1.0).await;
    until_value(&app, "pg_stat_activity_max_tx_duration", &idle_tx, |v| {
        v > 1.0
    })
    .await;
    holder.batch_execute("ROLLBACK").await.unwrap();

    // pg_stat_statements: at most statements_top, the text only in the _info series.
    let s = eventually(WAIT, || async {
        let s = scrape(&app).await;
        s.iter()
            .any(|x| {
                x.name == "pg_stat_statements_query_info" && x.labels["query"].contains("pg_sleep")
            })
            .then_some(s)
    })
    .await
    .expect("the sleeping statement among the top ones");
    let calls: Vec<&Sample> = s
        .iter()
        .filter(|x| x.name == "pg_stat_statements_calls" && x.labels["server"] == "main")
        .collect();
    assert!(!calls.is_empty() && calls.len() <= 100, "{}", calls.len());
    let (_, text) = app.get_text("/metrics").await;
    assert!(!text.contains("hunter2-in-sql"), "a password in /metrics");
    assert!(
        s.iter().any(|x| x.name == "pg_stat_statements_query_info"
            && x.labels["query"].contains("PASSWORD '<redacted>'")),
        "the CREATE ROLE statement is listed, without its password"
    );
    let info = s
        .iter()
        .find(|x| {
            x.name == "pg_stat_statements_query_info" && x.labels["query"].contains("pg_sleep")
        })
        .unwrap();
    let queryid = info.labels["queryid"].clone();
    assert!(info.labels["query"].len() <= 200);
    let sleeper = [("server", "main"), ("queryid", queryid.as_str())];
    assert_eq!(value(&s, "pg_stat_statements_calls", &sleeper), Some(10.0));
    let total = value(&s, "pg_stat_statements_total_time_seconds", &sleeper).unwrap();
    assert!((0.45..5.0).contains(&total), "10 × 50 ms: {total}");
    assert!(
        !calls.iter().any(|c| c.labels.contains_key("query")),
        "no query text on the counters"
    );

    // Cardinality is set by configuration: one database, no statements.
    let capped_dbs: BTreeSet<&str> = s
        .iter()
        .filter(|x| x.name == "pg_stat_database_numbackends" && x.labels["server"] == "capped")
        .map(|x| x.labels["datname"].as_str())
        .collect();
    assert_eq!(capped_dbs.len(), 1, "{capped_dbs:?}");
    assert!(
        !s.iter()
            .any(|x| x.name.starts_with("pg_stat_statements") && x.labels["server"] == "capped")
    );

    // Both formats keep postgres_exporter's names (no `_total` added by OpenMetrics),
    // and promtool has nothing to say about them.
    let om = app
        .client
        .get(app.url("/metrics"))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        om.contains("\npg_stat_database_xact_commit{"),
        "OpenMetrics keeps the name"
    );
    assert!(!om.contains("pg_stat_database_xact_commit_total"));
    if let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        let (_, text) = app.get_text("/metrics").await;
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let findings = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        // postgres_exporter's own names pg_locks_count and pg_stat_activity_count are
        // linted for their `_count` suffix; they are kept for the dashboards' sake.
        let pg: Vec<&str> = findings
            .lines()
            .filter(|l| l.contains("pg_"))
            .filter(|l| {
                !l.starts_with("pg_locks_count ") && !l.starts_with("pg_stat_activity_count ")
            })
            .collect();
        assert!(pg.is_empty(), "promtool: {findings}");
    }

    // Stopped mid-run: pg_up 0 at once, then PostgresDown; back to 1 after a restart.
    pg.stop_server();
    until_value(&app, "pg_up", &main, |v| v == 0.0).await;
    let firing = eventually(Duration::from_secs(45), || async {
        let (_, body) = app.get_json("/api/v1/alerts?state=firing").await;
        body["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == "PostgresDown" && a["labels"]["server"] == "main")
            .cloned()
    })
    .await
    .expect("PostgresDown fires");
    assert_eq!(firing["labels"]["severity"], "critical", "{firing}");
    pg.start_server();
    until_value(&app, "pg_up", &main, |v| v == 1.0).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_and_its_streaming_replica() {
    let Some(primary) = PgCluster::start() else {
        return;
    };
    let replica = PgCluster::replica_of(&primary).expect("replica");
    let mut cfg = test_config(&sqlite_db().url);
    cfg.postgres.targets = vec![
        target("primary", &primary.url()),
        target("replica", &replica.url()),
    ];
    let app = TestApp::start(cfg).await;
    until_value(
        &app,
        "pg_replication_is_replica",
        &[("server", "replica")],
        |v| v == 1.0,
    )
    .await;
    until_value(
        &app,
        "pg_replication_is_replica",
        &[("server", "primary")],
        |v| v == 0.0,
    )
    .await;
    let admin = connect(&primary.url()).await;
    admin
        .batch_execute("CREATE TABLE r AS SELECT generate_series(1, 10000) AS id")
        .await
        .unwrap();
    let streaming = [
        ("server", "primary"),
        ("state", "streaming"),
        ("client_addr", "127.0.0.1"),
    ];
    let diff = until_value(
        &app,
        "pg_stat_replication_pg_wal_lsn_diff",
        &streaming,
        |v| v >= 0.0,
    )
    .await;
    assert!(
        diff < 64.0 * 1024.0 * 1024.0,
        "a local replica keeps up: {diff}"
    );
    let direct = one(
        &admin,
        "SELECT count(*)::float8 FROM pg_stat_replication WHERE state = 'streaming'",
    )
    .await;
    assert_eq!(direct, 1.0);
    // The replica replays the primary's writes: its lag is a small finite number.
    let lag = until_value(
        &app,
        "pg_replication_lag_seconds",
        &[("server", "replica")],
        |v| v.is_finite(),
    )
    .await;
    assert!((0.0..60.0).contains(&lag), "{lag}");
    app.stop().await;
}

/// Debian's prometheus-postgres-exporter on `url`, listening on a free port.
struct Exporter {
    child: Child,
    port: u16,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn exporter(url: &str) -> Option<Exporter> {
    let bin = "/usr/bin/prometheus-postgres-exporter";
    if !std::path::Path::new(bin).exists() {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "CI=true but prometheus-postgres-exporter is not installed (scripts/test.sh installs it)"
        );
        eprintln!("prometheus-postgres-exporter not installed: skipping");
        return None;
    }
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .env("DATA_SOURCE_NAME", format!("{url}?sslmode=disable"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("exporter starts");
    Some(Exporter { child, port })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_names_labels_and_values_as_postgres_exporter() {
    let Some(pg) = PgCluster::start() else {
        return;
    };
    let admin = connect(&pg.url()).await;
    // A database nobody uses: its series do not move between the two reads.
    admin.batch_execute("CREATE DATABASE quiet").await.unwrap();
    let Some(exp) = exporter(&pg.url()) else {
        return;
    };
    // The exporter labels its series server="host:port": name the target the same.
    let server = format!("127.0.0.1:{}", pg.port);
    let mut cfg = test_config(&sqlite_db().url);
    cfg.postgres.targets = vec![target(&server, &pg.url())];
    let app = TestApp::start(cfg).await;
    until_value(&app, "pg_up", &[("server", &server)], |v| v == 1.0).await;
    let client = common::client();
    let theirs = eventually(WAIT, || async {
        let r = client
            .get(format!("http://127.0.0.1:{}/metrics", exp.port))
            .send()
            .await
            .ok()?;
        let s = parse(&r.text().await.ok()?);
        s.iter()
            .any(|x| x.name == "pg_up" && x.value == 1.0)
            .then_some(s)
    })
    .await
    .expect("the exporter answers with pg_up 1");
    let ours = scrape(&app).await;

    let names = |s: &[Sample]| -> BTreeSet<String> {
        s.iter()
            .filter(|x| x.name.starts_with("pg_"))
            .map(|x| x.name.clone())
            .collect()
    };
    let shared: Vec<String> = names(&ours)
        .intersection(&names(&theirs))
        .cloned()
        .collect();
    // Every name watchpost exports is the exporter's, or one of the additions the
    // exporter only has with extra query files or newer versions.
    let additions = [
        "pg_postmaster_start_time_seconds",
        "pg_replication_is_replica",
        "pg_replication_lag_seconds",
    ];
    for name in names(&ours) {
        assert!(
            shared.contains(&name) || additions.contains(&name.as_str()),
            "{name}: not a postgres_exporter name"
        );
    }
    for must in [
        "pg_up",
        "pg_stat_database_xact_commit",
        "pg_stat_database_numbackends",
        "pg_stat_activity_count",
        "pg_stat_activity_max_tx_duration",
        "pg_locks_count",
        "pg_database_size_bytes",
        "pg_settings_max_connections",
        "pg_stat_bgwriter_buffers_alloc_total",
        "pg_static",
    ] {
        assert!(
            shared.iter().any(|n| n == must),
            "{must} shared: {shared:?}"
        );
    }
    let key = |x: &Sample| {
        let mut l = x.labels.clone();
        // The exporter's `version` also names the build; compare short_version only.
        l.remove("version");
        // Its pg_up alone has no `server`.
        if x.name == "pg_up" {
            l.remove("server");
        }
        l
    };
    for name in &shared {
        let label_sets = |s: &[Sample]| -> BTreeSet<BTreeMap<String, String>> {
            s.iter().filter(|x| &x.name == name).map(key).collect()
        };
        let (a, b) = (label_sets(&ours), label_sets(&theirs));
        assert_eq!(a, b, "{name}: the same series (labels)");
        // Values: equal wherever nothing moves between the reads (the quiet database,
        // settings, sizes of untouched databases).
        for x in ours.iter().filter(|x| &x.name == name) {
            let stable = x.labels.get("datname").is_some_and(|d| d == "quiet")
                || name == "pg_settings_max_connections"
                || name == "pg_up"
                || name == "pg_static";
            if !stable {
                continue;
            }
            let y = theirs
                .iter()
                .find(|y| &y.name == name && key(y) == key(x))
                .unwrap();
            assert!(
                x.value == y.value || (x.value.is_nan() && y.value.is_nan()),
                "{name}{:?}: watchpost {} vs exporter {}",
                x.labels,
                x.value,
                y.value
            );
        }
    }
    eprintln!(
        "{} metric names shared with postgres_exporter",
        shared.len()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_own_database_is_watched_by_default() {
    let Some(db) = common::postgres_db().await else {
        return;
    };
    let mut cfg = test_config(&db.url);
    cfg.postgres.monitor_own = true;
    let app = TestApp::start(cfg).await;
    until_value(&app, "pg_up", &[("server", "watchpost")], |v| v == 1.0).await;
    let (_, text) = app.get_text("/metrics").await;
    assert!(!text.contains("password"), "no credentials in labels");
    app.stop().await;
}

/// A session that holds a lock in an idle transaction longer than the rule's threshold
/// and `for` fires PostgresLongTransaction (about two minutes: the shipped rule's own
/// timing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_in_an_open_transaction_fires_the_long_transaction_alert() {
    let Some(pg) = PgCluster::start() else {
        return;
    };
    let admin = connect(&pg.url()).await;
    admin
        .batch_execute("CREATE TABLE jobs (id int)")
        .await
        .unwrap();
    let mut cfg = test_config(&sqlite_db().url);
    cfg.postgres.targets = vec![target("main", &pg.url())];
    cfg.rules.files = vec![format!("{}/alerts/postgres.yml", repo().display())];
    cfg.rules.evaluation_interval = Duration::from_secs(1);
    let app = TestApp::start(cfg).await;
    let holder = connect(&pg.url()).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let fired = eventually(Duration::from_secs(180), || async {
        let (_, body) = app.get_json("/api/v1/alerts?state=firing").await;
        body["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == "PostgresLongTransaction")
            .cloned()
    })
    .await
    .expect("PostgresLongTransaction fires");
    assert_eq!(fired["labels"]["server"], "main", "{fired}");
    assert_eq!(fired["labels"]["datname"], "postgres", "{fired}");
    holder.batch_execute("ROLLBACK").await.unwrap();
    app.stop().await;
}
