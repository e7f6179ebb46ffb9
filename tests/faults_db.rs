//! Fault injection, database side, on the real binary under steady ingest of new alerts
//! (3 a second, one alert and one notification group each): the test's own PostgreSQL
//! cluster stopped for 60 s, and a SQLite write lock held by another connection for
//! 10 s. Ingest answers only 202 (durable) or 503, never 500 and never slower than the
//! client's 15 s timeout; `/ready` follows the database (PostgreSQL); once the database
//! is back, without a restart of watchpost, every alert answered 202 is stored and
//! notified exactly once (webhook receiver, so Telegram's rate limits do not pace it).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::faults::{
    Conf, FakeHook, Posted, Proc, SqliteWriteLock, get_json, pg_start, pg_stop, post_alert, token,
};
use common::{PgCluster, create_pg_database, sqlite_db};

/// New alerts per second.
const RATE: u64 = 3;

/// Posts a new alert every `1/RATE` s (each request in its own task, so a slow answer
/// does not slow the stream) until stopped; returns every answer.
struct Ingest {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Posted>>,
}

impl Ingest {
    fn start(base: &str, prefix: &str) -> Ingest {
        let stop = Arc::new(AtomicBool::new(false));
        let (base, prefix, flag) = (base.to_string(), prefix.to_string(), stop.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut posts = Vec::new();
            for i in 0.. {
                tick.tick().await;
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let (base, t) = (base.clone(), format!("{prefix}_{i:05}"));
                posts.push(tokio::spawn(
                    async move { post_alert(&base, &t, false).await },
                ));
            }
            let mut out = Vec::new();
            for p in posts {
                out.push(p.await.expect("post task"));
            }
            out
        });
        Ingest { stop, task }
    }

    async fn stop(self) -> Vec<Posted> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("ingest task")
    }
}

/// Polls `/ready` every 200 ms; records when each answer came and its status (`None`:
/// no answer within the client timeout).
struct ReadyPoller {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(Instant, Option<u16>)>>,
}

impl ReadyPoller {
    fn start(base: &str) -> ReadyPoller {
        let stop = Arc::new(AtomicBool::new(false));
        let (url, flag) = (format!("{base}/ready"), stop.clone());
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                let status = get_json(&url).await.map(|(s, _)| s);
                seen.push((Instant::now(), status));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            seen
        });
        ReadyPoller { stop, task }
    }

    async fn stop(self) -> Vec<(Instant, Option<u16>)> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("ready poller")
    }
}

/// Waits until `/ready` answers 200.
async fn wait_ready(p: &Proc, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let r = p.get_json("/ready").await;
        if matches!(r, Some((200, _))) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: /ready not 200 within {timeout:?} after the database came back (no restart): {r:?}",
            p.tag
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The shared checks: only 202/503 (503s with `Retry-After`), each within 10 s, all
/// alerts sent `settled` or later answered 202, every 202 stored and notified exactly
/// once, nothing notified twice. Returns every problem found (empty = fine).
async fn check_ingest(
    p: &Proc,
    hook: &FakeHook,
    posts: &[Posted],
    settled: Instant,
    mut problems: Vec<String>,
) {
    let tag = &p.tag;
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for x in posts {
        let key = match &x.status {
            Ok(s) => s.to_string(),
            Err(_) => "no answer".into(),
        };
        *by_status.entry(key).or_default() += 1;
    }
    let slowest = posts.iter().map(|x| x.took).max().unwrap_or_default();
    eprintln!("{tag}: ingest answers {by_status:?}, slowest {slowest:?}");
    let bad: Vec<&Posted> = posts
        .iter()
        .filter(|x| !matches!(x.status, Ok(202) | Ok(503)))
        .collect();
    if !bad.is_empty() {
        problems.push(format!(
            "ingest must answer only 202 or 503 within 15 s; {} of {} did not ({by_status:?}, {} of them sent after the database was back); first: {:?}",
            bad.len(),
            posts.len(),
            bad.iter().filter(|x| x.at >= settled).count(),
            bad[0]
        ));
    }
    if let Some(x) = posts
        .iter()
        .find(|x| x.status == Ok(503) && x.retry_after.is_none())
    {
        problems.push(format!("every 503 must carry Retry-After: {x:?}"));
    }
    // watchpost answers within its ingest timeout (8 s), under Prometheus' 10 s.
    if slowest > Duration::from_secs(10) {
        problems.push(format!(
            "every ingest request is answered within 10 s; the slowest took {slowest:?}"
        ));
    }
    let late: Vec<&Posted> = posts
        .iter()
        .filter(|x| x.at >= settled && x.status != Ok(202))
        .collect();
    if !late.is_empty() {
        problems.push(format!(
            "once the database is back, ingest answers 202 again: {} of {} later requests did not; first: {:?}",
            late.len(),
            posts.iter().filter(|x| x.at >= settled).count(),
            late[0]
        ));
    }
    let accepted: Vec<(&str, i64)> = posts
        .iter()
        .filter_map(|x| x.id.map(|id| (x.token.as_str(), id)))
        .collect();
    if accepted.len() < 20 {
        problems.push(format!("too few 202s to judge ({by_status:?})"));
    }

    // Stored.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut unstored = Vec::new();
    for (t, id) in &accepted {
        loop {
            let r = p.get_json(&format!("/api/v1/alerts/{id}")).await;
            match &r {
                Some((200, a)) if a["message"].as_str().is_some_and(|m| m.contains(t)) => break,
                _ if Instant::now() >= deadline => {
                    unstored.push(format!("{id} ({t}): {r:?}"));
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
    if !unstored.is_empty() {
        problems.push(format!(
            "{} of {} alerts answered 202 are not stored; first: {:?}",
            unstored.len(),
            accepted.len(),
            &unstored[..unstored.len().min(3)]
        ));
    }

    // Notified exactly once.
    let deadline = Instant::now() + Duration::from_secs(120);
    let missing = loop {
        let counts = hook.counts("firing");
        let missing: Vec<&str> = accepted
            .iter()
            .filter(|(t, _)| !counts.contains_key(*t))
            .map(|(t, _)| *t)
            .collect();
        if missing.is_empty() || Instant::now() >= deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    if !missing.is_empty() {
        problems.push(format!(
            "{} of {} alerts answered 202 never notified within 120 s; first: {:?}",
            missing.len(),
            accepted.len(),
            &missing[..missing.len().min(5)]
        ));
    }
    // Long enough for a duplicate: a few group_intervals.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let counts = hook.counts("firing");
    let twice: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    if !twice.is_empty() {
        problems.push(format!(
            "{} alerts notified more than once: {:?}",
            twice.len(),
            &twice[..twice.len().min(5)]
        ));
    }
    assert!(
        problems.is_empty(),
        "{tag}: {} problem(s):\n- {}",
        problems.len(),
        problems.join("\n- ")
    );
}

/// The test's own PostgreSQL stopped for 60 s under ingest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_stopped_for_60s_under_ingest() {
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let cluster = Arc::new(cluster);
    let db = create_pg_database(&cluster.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let hook = FakeHook::start().await;
    let p = Proc::start(
        "postgres stopped 60s",
        dir.path(),
        &Conf::webhook(&db.url, &hook.url),
    )
    .await;
    let ready = ReadyPoller::start(&p.base);
    let ingest = Ingest::start(&p.base, &token("PgDown"));
    tokio::time::sleep(Duration::from_secs(5)).await;

    pg_stop(&cluster).await;
    let stopped = Instant::now();
    tokio::time::sleep(Duration::from_secs(60)).await;
    pg_start(&cluster, &db.url).await;
    let started = Instant::now();
    wait_ready(&p, Duration::from_secs(30)).await;
    let ready_again = started.elapsed();
    // Alerts sent from 5 s after /ready came back must be accepted.
    let settled = Instant::now() + Duration::from_secs(5);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let posts = ingest.stop().await;
    let readiness = ready.stop().await;
    eprintln!("postgres: /ready 200 again {ready_again:?} after the restart of PostgreSQL");

    let mut problems = Vec::new();
    let first_down = readiness
        .iter()
        .find(|(at, s)| *at >= stopped && *s == Some(503))
        .map(|(at, _)| at.duration_since(stopped));
    if first_down.is_none_or(|d| d > Duration::from_secs(4)) {
        problems.push(format!(
            "/ready must answer 503 within ~3 s of the database stopping; first 503 after {first_down:?}; answers in the first 10 s: {:?}",
            readiness
                .iter()
                .filter(|(at, _)| *at >= stopped
                    && at.duration_since(stopped) < Duration::from_secs(10))
                .map(|(at, s)| (at.duration_since(stopped), *s))
                .collect::<Vec<_>>()
        ));
    }
    let unanswered = readiness.iter().filter(|(_, s)| s.is_none()).count();
    if unanswered > 0 {
        problems.push(format!(
            "/ready must always answer within 15 s; {unanswered} did not"
        ));
    }
    check_ingest(&p, &hook, &posts, settled, problems).await;
}

/// Another connection holds the SQLite write lock for 10 s under ingest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_write_lock_held_for_10s_under_ingest() {
    let db = sqlite_db();
    let dir = tempfile::tempdir().unwrap();
    let hook = FakeHook::start().await;
    let p = Proc::start(
        "sqlite locked 10s",
        dir.path(),
        &Conf::webhook(&db.url, &hook.url),
    )
    .await;
    let ingest = Ingest::start(&p.base, &token("SqliteLock"));
    tokio::time::sleep(Duration::from_secs(5)).await;

    let lock = SqliteWriteLock::take(&db.url).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    lock.release().await;
    wait_ready(&p, Duration::from_secs(30)).await;
    let settled = Instant::now() + Duration::from_secs(5);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let posts = ingest.stop().await;
    check_ingest(&p, &hook, &posts, settled, Vec::new()).await;
}
