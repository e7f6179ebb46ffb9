//! Several `watchpost serve` processes on one PostgreSQL (real processes, a private
//! PostgreSQL server, the fake Bot API): exactly one leader that all agree on; kill -9
//! of the leader and a new one within `node_timeout` + 2 s; a leader paused with SIGSTOP
//! is fenced out and rejoins as a follower; PostgreSQL restarted under the cluster. In
//! every case each notification is sent once and no two `getUpdates` overlap. One
//! alert received by all three nodes at once is decided in the database: its count is
//! every receipt, a resolve or an ack on one node is never undone by another; a source
//! alert or a silence on one node mutes an alert arriving on another, and the leader
//! resolves an alert whose node died once its `ends_at` passes. And with
//! SQLite, a second process on the same file is refused.

mod common;
#[path = "support/fake_telegram.rs"]
mod fake_telegram;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::faults::{Conf, Proc, mentioning, pg_start, pg_stop, token};
use common::{PgCluster, command, create_pg_database, sqlite_db};
use fake_telegram::FakeTelegram;
use serde_json::Value;

const BOT_TOKEN: &str = "42:cluster";
const CHAT: i64 = 7100;
/// `cluster.node_timeout` in these tests.
const NODE_TIMEOUT: Duration = Duration::from_secs(3);
/// What the issue allows for a failover: `node_timeout` + 2 s.
const FAILOVER: Duration = Duration::from_secs(5);

fn conf(db_url: &str, fake: &FakeTelegram, node: &str) -> Conf {
    let mut c = Conf::telegram(db_url, &fake.url, BOT_TOKEN, &[CHAT]);
    c.node_id = node.into();
    c.cluster = vec![
        ("heartbeat_interval".into(), "\"500ms\"".into()),
        (
            "node_timeout".into(),
            format!("\"{}s\"", NODE_TIMEOUT.as_secs()),
        ),
    ];
    c.telegram = vec![("poll_timeout".into(), "\"2s\"".into())];
    c.alerts = vec![("checkpoint_interval".into(), "\"1s\"".into())];
    c.rules = vec![format!("{}/alerts/cluster.yml", env!("CARGO_MANIFEST_DIR"))];
    c.group_wait = "3s".into();
    c
}

/// Three nodes `n1`..`n3` on a private PostgreSQL, each in its own directory, sending
/// to one fake Bot API.
struct Nodes {
    pg: Arc<PgCluster>,
    url: String,
    fake: FakeTelegram,
    procs: Vec<Proc>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Nodes {
    /// Starts them with `group_wait`; `None` without PostgreSQL binaries.
    async fn start(tag: &str, group_wait: &str) -> Option<Nodes> {
        let pg = Arc::new(PgCluster::start()?);
        let url = create_pg_database(&pg.url()).await.url;
        let fake = FakeTelegram::start(BOT_TOKEN).await;
        let mut procs = Vec::new();
        let mut dirs = Vec::new();
        for n in 1..=3 {
            let dir = tempfile::tempdir().unwrap();
            let node = format!("n{n}");
            let mut c = conf(&url, &fake, &node);
            c.group_wait = group_wait.into();
            procs.push(Proc::start(&format!("{tag} {node}"), dir.path(), &c).await);
            dirs.push(dir);
        }
        Some(Nodes {
            pg,
            url,
            fake,
            procs,
            _dirs: dirs,
        })
    }
}

/// `GET /api/v1/cluster` of `p`, when it answers 200.
async fn status(p: &Proc) -> Option<Value> {
    match p.get_json("/api/v1/cluster").await {
        Some((200, v)) => Some(v),
        _ => None,
    }
}

/// Waits until every node of `procs` names the same live leader, other than `not`, and
/// lists `alive` live nodes; returns the leader's id and the epoch.
async fn agreed_leader(
    procs: &[&Proc],
    not: Option<&str>,
    alive: usize,
    timeout: Duration,
) -> (String, i64) {
    let deadline = Instant::now() + timeout;
    let mut last = Vec::new();
    loop {
        last.clear();
        for p in procs {
            last.push(status(p).await);
        }
        let leaders: Vec<Option<(String, i64, usize)>> = last
            .iter()
            .map(|s| {
                let s = s.as_ref()?;
                let live = s["nodes"]
                    .as_array()?
                    .iter()
                    .filter(|n| n["alive"] == true)
                    .count();
                Some((
                    s["leader"].as_str()?.to_string(),
                    s["epoch"].as_i64()?,
                    live,
                ))
            })
            .collect();
        if let Some(Some((leader, epoch, _))) = leaders.first()
            && leaders.iter().all(|l| {
                l.as_ref()
                    .is_some_and(|(l, e, n)| l == leader && e == epoch && *n == alive)
            })
            && Some(leader.as_str()) != not
        {
            return (leader.clone(), *epoch);
        }
        assert!(
            Instant::now() < deadline,
            "no agreed leader (other than {not:?}, {alive} alive) within {timeout:?}: {last:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The leader the nodes `procs` all agree on (all three alive), and the epoch.
async fn nodes_leader(procs: &[Proc]) -> (String, i64) {
    let all: Vec<&Proc> = procs.iter().collect();
    agreed_leader(&all, None, 3, Duration::from_secs(15)).await
}

/// The index of node `id` (`n1` → 0).
fn index(id: &str) -> usize {
    id.trim_start_matches('n')
        .parse::<usize>()
        .expect("node id nN")
        - 1
}

/// Delivered sendMessage texts and sendPhoto captions (rule alerts come with a chart)
/// mentioning `needle`.
fn sent(fake: &FakeTelegram, needle: &str) -> Vec<String> {
    let texts = fake.delivered().into_iter().map(|c| c.text());
    let captions = fake.photos().into_iter().map(|c| c.caption());
    mentioning(texts.chain(captions), needle)
}

/// Waits until each of `tokens` was delivered at least once, then a quiet while, and
/// asserts each exactly once.
async fn delivered_once(tag: &str, fake: &FakeTelegram, tokens: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while tokens.iter().any(|t| sent(fake, t).is_empty()) {
        assert!(
            Instant::now() < deadline,
            "{tag}: not every alert notified within 40 s: {:#?}",
            tokens
                .iter()
                .map(|t| (t, sent(fake, t).len()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for t in tokens {
        assert_eq!(sent(fake, t).len(), 1, "{tag}: {t} notified once");
    }
}

/// Waits until a `getUpdates` reached the fake after `since` (the bot polls again).
async fn polled_after(tag: &str, fake: &FakeTelegram, since: Instant, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !fake.calls_of("getupdates").iter().any(|c| c.at > since) {
        assert!(
            Instant::now() < deadline,
            "{tag}: no getUpdates within {timeout:?} after the failover"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_agree_on_one_leader_and_fail_over_after_kill9() {
    let tag = "kill -9";
    let Some(mut nodes) = Nodes::start(tag, "3s").await else {
        return;
    };
    let (fake, procs) = (&nodes.fake, &mut nodes.procs);
    let (leader, epoch) = nodes_leader(procs).await;
    let mut on = Vec::new();
    for p in procs.iter() {
        on.push(p.metric("watchpost_cluster_leader", &[]).await);
    }
    let want: Vec<f64> = (0..3)
        .map(|i| if i == index(&leader) { 1.0 } else { 0.0 })
        .collect();
    assert_eq!(
        on, want,
        "{tag}: watchpost_cluster_leader is 1 on the leader ({leader}) only"
    );

    // Alerts on all three nodes, then the leader is killed before group_wait ends.
    let li = index(&leader);
    let followers: Vec<usize> = (0..3).filter(|i| *i != li).collect();
    let mut tokens = Vec::new();
    for (i, p) in procs.iter().enumerate() {
        let t = token(&format!("Kill9N{i}"));
        p.fire(&t).await;
        tokens.push(t);
    }
    let killed = Instant::now();
    procs[li].kill9().await;
    let rest: Vec<&Proc> = followers.iter().map(|&i| &procs[i]).collect();
    let (next, next_epoch) = agreed_leader(&rest, Some(&leader), 2, FAILOVER).await;
    let took = killed.elapsed();
    assert!(next_epoch > epoch, "{tag}: a takeover increments the epoch");
    eprintln!("{tag}: {leader} killed; {next} leads (epoch {next_epoch}) after {took:?}");
    assert!(took <= FAILOVER, "{tag}: failover took {took:?}");

    delivered_once(tag, fake, &tokens).await;
    // The bot moved to the new leader, never two polls at once.
    polled_after(tag, fake, killed, Duration::from_secs(15)).await;
    assert_eq!(fake.conflicts(), 0, "{tag}: two getUpdates overlapped");
    // The killed node is listed, dead.
    let s = status(rest[0]).await.expect("cluster status");
    let dead: Vec<&Value> = s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["id"] == leader.as_str())
        .collect();
    assert_eq!(dead.len(), 1, "{tag}: {s}");
    assert_eq!(dead[0]["alive"], false, "{tag}: {s}");
    assert_eq!(
        rest[0]
            .metric("watchpost_cluster_nodes", &[("state", "dead")])
            .await,
        1.0,
        "{tag}"
    );
    assert_eq!(
        rest[0]
            .metric("watchpost_cluster_node_alive", &[("node", leader.as_str())])
            .await,
        0.0,
        "{tag}"
    );
    // The default ClusterNodeDown rule (alerts/cluster.yml, `for: 15s`), evaluated by
    // both survivors, is one alert naming the killed node, notified once.
    let deadline = Instant::now() + Duration::from_secs(40);
    let down = || {
        sent(fake, "ClusterNodeDown")
            .into_iter()
            .filter(|m| m.contains(&leader))
            .count()
    };
    while down() == 0 {
        assert!(
            Instant::now() < deadline,
            "{tag}: no ClusterNodeDown for {leader} within 40 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        down(),
        1,
        "{tag}: ClusterNodeDown for {leader} notified once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_leader_is_fenced_out_and_rejoins_as_a_follower() {
    let tag = "SIGSTOP";
    let Some(mut nodes) = Nodes::start(tag, "3s").await else {
        return;
    };
    let (fake, procs) = (&nodes.fake, &mut nodes.procs);
    let (leader, epoch) = nodes_leader(procs).await;
    let li = index(&leader);
    let followers: Vec<usize> = (0..3).filter(|i| *i != li).collect();

    procs[li].signal("STOP");
    let paused = Instant::now();
    let t = token("Paused");
    procs[followers[0]].fire(&t).await;
    let rest: Vec<&Proc> = followers.iter().map(|&i| &procs[i]).collect();
    let (next, next_epoch) = agreed_leader(&rest, Some(&leader), 2, FAILOVER + NODE_TIMEOUT).await;
    assert!(next_epoch > epoch, "{tag}");
    eprintln!(
        "{tag}: {leader} paused; {next} leads (epoch {next_epoch}) after {:?}",
        paused.elapsed()
    );
    let pause = NODE_TIMEOUT * 3;
    tokio::time::sleep(pause.saturating_sub(paused.elapsed())).await;
    let resumed = Instant::now();
    procs[li].signal("CONT");

    // It rejoins as a follower of the new leader; all three agree.
    let all: Vec<&Proc> = procs.iter().collect();
    let (after, after_epoch) = agreed_leader(&all, Some(&leader), 3, Duration::from_secs(15)).await;
    assert_eq!(
        (after.as_str(), after_epoch),
        (next.as_str(), next_epoch),
        "{tag}"
    );
    assert_eq!(
        procs[li].metric("watchpost_cluster_leader", &[]).await,
        0.0,
        "{tag}"
    );

    // Nothing was claimed or sent under the old epoch after the takeover: every row
    // delivered since carries the new one; the alert went out once.
    delivered_once(tag, fake, std::slice::from_ref(&t)).await;
    let t2 = token("AfterResume");
    procs[li].fire(&t2).await;
    delivered_once(tag, fake, std::slice::from_ref(&t2)).await;
    for row in procs[followers[0]].outbox().await {
        assert!(
            row["epoch"].as_i64().is_some_and(|e| e >= next_epoch),
            "{tag}: a row sent after the takeover under an older epoch: {row}"
        );
    }
    polled_after(tag, fake, resumed, Duration::from_secs(15)).await;
    assert_eq!(fake.conflicts(), 0, "{tag}: two getUpdates overlapped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarted_under_three_nodes() {
    let tag = "PostgreSQL restart";
    let Some(nodes) = Nodes::start(tag, "3s").await else {
        return;
    };
    let (pg, url, fake, procs) = (&nodes.pg, &nodes.url, &nodes.fake, &nodes.procs);
    let all: Vec<&Proc> = procs.iter().collect();
    let (_, epoch) = nodes_leader(procs).await;
    let before = token("BeforeRestart");
    procs[0].fire(&before).await;
    delivered_once(tag, fake, std::slice::from_ref(&before)).await;

    pg_stop(pg).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for p in procs {
        assert_eq!(
            p.metric("watchpost_cluster_leader", &[]).await,
            0.0,
            "{tag}: nobody leads without the database"
        );
    }
    let down = Instant::now();
    pg_start(pg, url).await;
    let (_, again) = agreed_leader(&all, None, 3, Duration::from_secs(15)).await;
    eprintln!(
        "{tag}: a leader again {:?} after the restart began",
        down.elapsed()
    );
    assert!(again > epoch, "{tag}: a new term after the restart");
    let after = token("AfterRestart");
    procs[1].fire(&after).await;
    delivered_once(tag, fake, &[before, after]).await;
    assert_eq!(fake.conflicts(), 0, "{tag}: two getUpdates overlapped");
}

/// `GET /api/v1/alerts/{id}` on `p`.
async fn alert(p: &Proc, id: i64) -> Value {
    match p.get_json(&format!("/api/v1/alerts/{id}")).await {
        Some((200, v)) => v,
        other => panic!("GET alert {id}: {other:?}"),
    }
}

/// Waits until alert `id` read on `p` satisfies `ok` (checkpoints run every second).
async fn alert_until(p: &Proc, id: i64, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let a = alert(p, id).await;
        if ok(&a) {
            return a;
        }
        assert!(Instant::now() < deadline, "{what}: {a:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Fires `token` on `p` `n` times in a row.
async fn repeat(p: &Proc, token: &str, n: usize) {
    for _ in 0..n {
        p.fire(token).await;
    }
}

fn fired_events(a: &Value) -> usize {
    a["events"]
        .as_array()
        .map_or(0, |e| e.iter().filter(|e| e["kind"] == "fired").count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_alert_on_every_node_is_decided_in_the_database() {
    let tag = "multi-writer";
    let Some(nodes) = Nodes::start(tag, "1s").await else {
        return;
    };
    let procs = &nodes.procs;
    nodes_leader(procs).await;
    let t = token("MultiWriter");
    // The same new alert on all three nodes at once: one row, one `fired`.
    let (a, b, c) = tokio::join!(procs[0].fire(&t), procs[1].fire(&t), procs[2].fire(&t));
    assert!(a == b && b == c, "{tag}: one alert, one id: {a} {b} {c}");
    let id = a;
    // Repeats on every node, concurrently: the count is every receipt (3 + 3 x 10).
    tokio::join!(
        repeat(&procs[0], &t, 10),
        repeat(&procs[1], &t, 10),
        repeat(&procs[2], &t, 10)
    );
    let v = alert_until(&procs[0], id, "every receipt counted", |a| a["count"] == 33).await;
    assert_eq!(v["state"], "firing", "{tag}: {v:#}");
    assert_eq!(fired_events(&v), 1, "{tag}: fired once: {v:#}");

    // Resolved on n2, firing again on n1 (whose memory still says firing): a re-fire.
    procs[1].resolve(&t).await;
    alert_until(&procs[2], id, "resolved", |a| a["state"] == "resolved").await;
    procs[0].fire(&t).await;
    let v = alert_until(&procs[1], id, "fired again on n1", |a| {
        a["state"] == "firing"
    })
    .await;
    assert_eq!(
        fired_events(&v),
        2,
        "{tag}: the re-fire is a new incident: {v:#}"
    );
    assert_eq!(v["count"], 34, "{tag}: {v:#}");

    // Acknowledged on n3; a changed message on n1 (a full write) keeps the ack.
    let r = common::faults::reqwest_client()
        .post(procs[2].url(&format!("/api/v1/alerts/{id}/ack")))
        .json(&serde_json::json!({"by": "alice", "comment": "on it"}))
        .send()
        .await
        .expect("ack");
    assert_eq!(r.status().as_u16(), 200, "{tag}: ack");
    post_one(
        &procs[0],
        serde_json::json!({"message": format!("{t} changed on n1"), "severity": "critical",
            "labels": {"alertname": t}}),
    )
    .await;
    let v = alert_until(&procs[1], id, "message changed", |a| {
        a["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("changed on n1"))
    })
    .await;
    assert_eq!(
        v["acknowledged"]["by"], "alice",
        "{tag}: the ack stays: {v:#}"
    );
    assert_eq!(v["state"], "firing", "{tag}: {v:#}");
    assert_eq!(v["count"], 35, "{tag}: {v:#}");
    // The groups live on the leader; every node answers them (followers ask it).
    let mut seen = Vec::new();
    for p in procs {
        let (code, groups) = p
            .get_json("/api/v1/alerts/groups")
            .await
            .expect("GET groups");
        assert_eq!(code, 200, "{tag}: groups on {}: {groups}", p.tag);
        // Group labels and alert fingerprints (timestamps move with every flush).
        let mut members: Vec<String> =
            groups
                .as_array()
                .expect("a list of groups")
                .iter()
                .flat_map(|g| {
                    g["alerts"].as_array().into_iter().flatten().map(move |a| {
                        format!("{} {} {}", g["labels"], a["fingerprint"], a["labels"])
                    })
                })
                .collect();
        members.sort();
        seen.push(members.join("\n"));
    }
    assert!(
        seen[0].contains(&t),
        "{tag}: the alert's group: {}",
        seen[0]
    );
    assert!(seen.iter().all(|g| *g == seen[0]), "{tag}: {seen:#?}");
}

/// POSTs `body` (one generic alert) to `p`; asserts 202 and returns the id.
async fn post_one(p: &Proc, body: Value) -> i64 {
    let r = common::faults::reqwest_client()
        .post(p.url("/api/v1/alerts"))
        .json(&body)
        .send()
        .await
        .expect("POST alert");
    assert_eq!(r.status().as_u16(), 202, "POST {body} to {}", p.tag);
    let v: Value = r.json().await.expect("ids");
    v["ids"][0].as_i64().expect("id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inhibition_silences_and_expiry_span_the_nodes() {
    let tag = "shared state";
    let Some(mut nodes) = Nodes::start(tag, "1s").await else {
        return;
    };
    let (leader, _) = nodes_leader(&nodes.procs).await;
    let li = index(&leader);
    let (f1, f2) = match li {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };
    let procs = &nodes.procs;

    // A critical on one follower inhibits a warning that arrives on the other.
    let t = token("Inhibit");
    post_one(
        &procs[f1],
        serde_json::json!({"message": format!("{t} source"), "severity": "critical",
            "labels": {"alertname": t, "instance": "db-1", "part": "source"}}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let target = post_one(
        &procs[f2],
        serde_json::json!({"message": format!("{t} target"), "severity": "warning",
            "labels": {"alertname": t, "instance": "db-1", "part": "target"}}),
    )
    .await;
    let v = alert(&procs[f2], target).await;
    assert_eq!(
        v["inhibited"], true,
        "{tag}: inhibited at ingest on {f2}: {v:#}"
    );

    // A silence made on one node mutes an alert that arrives on another.
    let s = token("Silenced");
    let ends = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let r = common::faults::reqwest_client()
        .post(procs[f1].url("/api/v1/silences"))
        .json(
            &serde_json::json!({"matchers": [{"name": "alertname", "value": s,
            "isRegex": false, "isEqual": true}], "endsAt": ends, "createdBy": "ann",
            "comment": "maintenance"}),
        )
        .send()
        .await
        .expect("silence");
    assert_eq!(r.status().as_u16(), 200, "{tag}: silence");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let silenced = post_one(
        &procs[f2],
        serde_json::json!({"message": format!("{s} muted"), "severity": "critical",
            "labels": {"alertname": s}}),
    )
    .await;
    let v = alert(&procs[f2], silenced).await;
    assert_eq!(
        v["silenced"], true,
        "{tag}: silenced at ingest on {f2}: {v:#}"
    );

    // An alert whose node died resolves when its ends_at passes (the leader expires it).
    let e = token("Expires");
    let ends = (chrono::Utc::now() + chrono::Duration::seconds(2))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let expiring = post_one(
        &procs[f2],
        serde_json::json!({"message": format!("{e} expiring"), "severity": "critical",
            "labels": {"alertname": e}, "ends_at": ends}),
    )
    .await;
    nodes.procs[f2].kill9().await;
    let v = alert_until(&nodes.procs[li], expiring, "resolved by the leader", |a| {
        a["state"] == "resolved"
    })
    .await;
    assert_eq!(v["state"], "resolved", "{tag}: {v:#}");

    // Muted alerts were never sent; the expired one was sent firing, then resolved.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        sent(&nodes.fake, &format!("{t} target")).is_empty(),
        "{tag}: the inhibited warning was notified"
    );
    assert!(
        sent(&nodes.fake, &s).is_empty(),
        "{tag}: the silenced alert was notified"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_one_sqlite_file_is_refused() {
    let db = sqlite_db();
    let dir = tempfile::tempdir().unwrap();
    let hook = "http://127.0.0.1:9/unused";
    let mut first = Proc::start("sqlite first", dir.path(), &Conf::webhook(&db.url, hook)).await;
    let s = status(&first).await.expect("cluster status");
    assert_eq!(s["leader"], s["self"], "{s}");
    assert_eq!(s["nodes"].as_array().map(Vec::len), Some(1), "{s}");
    let epoch = s["epoch"].as_i64().expect("epoch");

    let other = tempfile::tempdir().unwrap();
    let config = other.path().join("watchpost.toml");
    std::fs::write(&config, Conf::webhook(&db.url, hook).toml()).unwrap();
    let mut cmd = command(other.path());
    cmd.arg("serve").arg("--config").arg(&config);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run watchpost"))
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "second process: {stderr}");
    assert!(
        stderr.contains("is in use by another process (pid"),
        "the refusal names the holder: {stderr}"
    );
    // The first one is untouched, and once it stopped the file is free again.
    assert!(status(&first).await.is_some());
    first.terminate(Duration::from_secs(10)).await;
    let second = Proc::start("sqlite second", other.path(), &Conf::webhook(&db.url, hook)).await;
    let s = status(&second).await.expect("cluster status");
    assert_eq!(
        s["epoch"].as_i64(),
        Some(epoch + 1),
        "every start is a new term: {s}"
    );
}

/// Failover time, for BENCHMARKS.md (`cargo test --release --test cluster --
/// --ignored --nocapture failover_time`): three nodes; ten times, the leader is killed
/// and an alert posted at once to a survivor; the time from kill -9 to its notification
/// (sent by the new leader, `group_wait` 100 ms). The killed node is started again
/// before the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: run on demand"]
async fn failover_time() {
    let Some(mut nodes) = Nodes::start("bench", "100ms").await else {
        return;
    };
    let (fake, procs) = (&nodes.fake, &mut nodes.procs);
    let mut times = Vec::new();
    for run in 0..10 {
        let (l, _) = nodes_leader(procs).await;
        let li = index(&l);
        let survivor = (li + 1) % 3;
        let t = token(&format!("Failover{run}"));
        let killed = Instant::now();
        procs[li].kill9().await;
        procs[survivor].fire(&t).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while sent(fake, &t).is_empty() {
            assert!(
                Instant::now() < deadline,
                "run {run}: no notification within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let took = killed.elapsed();
        eprintln!("failover run {run}: {l} killed, first notification after {took:?}");
        times.push(took);
        procs[li].restart().await;
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "failover over {} runs: min {:.0} ms, median {:.0} ms, max {:.0} ms",
        times.len(),
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    );
    assert_eq!(fake.conflicts(), 0);
}
