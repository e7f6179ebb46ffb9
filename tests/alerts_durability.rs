//! Durability: every alert answered 202 survives `kill -9` of the real binary right
//! after a burst, on SQLite and PostgreSQL; so does every repeat, which lives in the
//! receipt journal until a checkpoint.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Server, command, databases};
use serde_json::{Value, json};
use tokio::sync::Mutex;

fn spawn(dir: &std::path::Path, url: &str) -> Server {
    spawn_with(dir, url, &[])
}

fn spawn_with(dir: &std::path::Path, url: &str, env: &[(&str, &str)]) -> Server {
    let mut cmd = command(dir);
    cmd.envs(env.iter().copied());
    cmd.arg("serve")
        .env("WATCHPOST_LISTEN", "127.0.0.1:0")
        .env("WATCHPOST_DATABASE_URL", url)
        .env("WATCHPOST_RULES__FILES", "")
        .env("WATCHPOST_ALERTS__RATE_LIMIT_PER_SECOND", "0")
        .env("WATCHPOST_LOG__LEVEL", "warn,watchpost=info");
    Server::spawn(cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_accepted_alert_survives_kill_9() {
    for db in databases().await {
        let k = db.kind;
        let dir = tempfile::tempdir().unwrap();
        let mut server = spawn(dir.path(), &db.url);
        let base = server.base();
        let client = common::client();
        let accepted: Arc<Mutex<Vec<i64>>> = Arc::default();
        let answered = Arc::new(AtomicUsize::new(0));
        // 16 clients keep posting batches of 25 distinct alerts.
        let mut tasks = Vec::new();
        for c in 0..16 {
            let (client, base, accepted, answered) = (
                client.clone(),
                base.clone(),
                accepted.clone(),
                answered.clone(),
            );
            tasks.push(tokio::spawn(async move {
                for r in 0.. {
                    let batch: Vec<Value> = (0..25)
                        .map(|i| json!({"message": format!("m {c} {r} {i}"),
                                        "labels": {"client": c.to_string(), "req": r.to_string(), "i": i.to_string()}}))
                        .collect();
                    let Ok(resp) = client.post(format!("{base}/api/v1/alerts")).json(&batch).send().await else {
                        return;
                    };
                    if resp.status().as_u16() != 202 {
                        continue;
                    }
                    let Ok(body) = resp.json::<Value>().await else {
                        return;
                    };
                    let ids: Vec<i64> = body["ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
                    accepted.lock().await.extend(ids);
                    answered.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
        // Kill -9 in the middle of the burst, once plenty have been answered.
        while answered.load(Ordering::SeqCst) < 60 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server.child.kill().expect("kill -9");
        let _ = server.child.wait();
        for t in tasks {
            let _ = t.await;
        }
        let ids: BTreeSet<i64> = accepted.lock().await.iter().copied().collect();
        assert!(ids.len() >= 60 * 25, "{k}: {} accepted", ids.len());

        let server = spawn(dir.path(), &db.url);
        let base = server.base();
        let stored: BTreeSet<i64> = all_alerts(&client, &base, "")
            .await
            .iter()
            .map(|a| a["id"].as_i64().unwrap())
            .collect();
        let lost: Vec<&i64> = ids.difference(&stored).collect();
        assert!(
            lost.is_empty(),
            "{k}: {} of {} accepted alerts lost, e.g. {:?}",
            lost.len(),
            ids.len(),
            &lost[..lost.len().min(5)]
        );
        let one = ids.iter().next().unwrap();
        let a = get_json(&client, format!("{base}/api/v1/alerts/{one}")).await;
        assert_eq!(
            a["events"][0]["kind"], "fired",
            "{k}: events are as durable as alerts"
        );
    }
}

/// An alert storm: 50,000 alerts never seen before arrive at once from 8 senders in
/// Prometheus' format; `kill -9` lands in the middle of it. Every alert whose request
/// was answered 200 is stored after the restart, firing, with its first event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_of_new_alerts_survives_kill_9() {
    const SENDERS: usize = 8;
    const PER_REQUEST: usize = 500;
    const TOTAL: usize = 50_000;
    for db in databases().await {
        let k = db.kind;
        let dir = tempfile::tempdir().unwrap();
        let mut server = spawn(dir.path(), &db.url);
        let base = server.base();
        let client = common::client();
        let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let requests = TOTAL / PER_REQUEST;
        let mut tasks = Vec::new();
        for c in 0..SENDERS {
            let (client, base, acked) = (client.clone(), base.clone(), acked.clone());
            tasks.push(tokio::spawn(async move {
                for r in (c..requests).step_by(SENDERS) {
                    let instances: Vec<String> = (0..PER_REQUEST)
                        .map(|i| format!("node-{}:9100", r * PER_REQUEST + i))
                        .collect();
                    let body: Vec<Value> = instances
                        .iter()
                        .map(|inst| {
                            json!({"labels": {"alertname": "NodeDown", "instance": inst,
                                              "severity": "critical"},
                                   "annotations": {"summary": format!("{inst} is down")}})
                        })
                        .collect();
                    let Ok(resp) = client
                        .post(format!("{base}/api/v2/alerts"))
                        .json(&body)
                        .send()
                        .await
                    else {
                        return;
                    };
                    if resp.status().is_success() {
                        acked.lock().await.extend(instances);
                    }
                }
            }));
        }
        while acked.lock().await.len() < TOTAL * 3 / 5 {
            assert!(
                !tasks.iter().all(|t| t.is_finished()),
                "{k}: the senders stopped with only {} of {TOTAL} acknowledged",
                acked.lock().await.len()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        server.child.kill().expect("kill -9");
        let _ = server.child.wait();
        for t in tasks {
            let _ = t.await;
        }
        let acked = acked.lock().await.clone();
        assert!(acked.len() < TOTAL, "{k}: the kill landed after the storm");

        let server = spawn(dir.path(), &db.url);
        let base = server.base();
        let stored: BTreeSet<String> = all_alerts(&client, &base, "state=firing&")
            .await
            .iter()
            .map(|a| a["labels"]["instance"].as_str().unwrap().to_string())
            .collect();
        let lost: Vec<&String> = acked.difference(&stored).collect();
        assert!(
            lost.is_empty(),
            "{k}: {} of {} acknowledged alerts lost after kill -9 mid-storm, e.g. {:?}",
            lost.len(),
            acked.len(),
            &lost[..lost.len().min(5)]
        );
        let page = get_json(&client, format!("{base}/api/v1/alerts?limit=1")).await;
        let id = page["alerts"][0]["id"].as_i64().unwrap();
        let a = get_json(&client, format!("{base}/api/v1/alerts/{id}")).await;
        assert_eq!(a["events"][0]["kind"], "fired", "{k}: {a}");
    }
}

/// Every alert the list API returns for `filter` (`""` or `"key=value&"`), page by page.
async fn all_alerts(client: &reqwest::Client, base: &str, filter: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let url = format!("{base}/api/v1/alerts?{filter}limit=1000{cursor}");
        let page = get_json(client, url).await;
        all.extend(page["alerts"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return all,
        }
    }
}

async fn get_json(client: &reqwest::Client, url: String) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// Bytes in the journal files under `dir`.
fn journal_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "jnl"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn journaled_repeats_survive_kill_9() {
    for db in databases().await {
        let k = db.kind;
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal");
        let journal_env = journal.to_str().unwrap();
        // No checkpoint before the kill: the repeats exist only in the journal.
        let mut server = spawn_with(
            dir.path(),
            &db.url,
            &[
                ("WATCHPOST_ALERTS__JOURNAL_DIR", journal_env),
                ("WATCHPOST_ALERTS__CHECKPOINT_INTERVAL", "1h"),
            ],
        );
        let base = server.base();
        let client = common::client();
        let batch: Vec<Value> = (0..20)
            .map(|i| {
                json!({"message": format!("queue {i} backing up"),
                            "labels": {"alertname": "QueueBacklog", "queue": i.to_string()}})
            })
            .collect();
        let post = |client: reqwest::Client, base: String, batch: Vec<Value>| async move {
            let resp = client
                .post(format!("{base}/api/v1/alerts"))
                .json(&batch)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 202);
            let body: Value = resp.json().await.unwrap();
            body["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect::<Vec<i64>>()
        };
        let ids = post(client.clone(), base.clone(), batch.clone()).await;
        // 8 clients send the same 20 alerts 25 times each, all answered before the kill.
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (client, base, batch) = (client.clone(), base.clone(), batch.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..25 {
                    post(client.clone(), base.clone(), batch.clone()).await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(journal_bytes(&journal) > 0, "{k}: repeats are journaled");
        let metrics = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics
                .lines()
                .any(|l| l == "watchpost_batch_queue_depth{queue=\"journal\"} 20"),
            "{k}: the 20 alerts await a checkpoint:\n{}",
            metrics
                .lines()
                .filter(|l| l.contains("journal"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        server.child.kill().expect("kill -9");
        let _ = server.child.wait();

        let server = spawn_with(
            dir.path(),
            &db.url,
            &[("WATCHPOST_ALERTS__JOURNAL_DIR", journal_env)],
        );
        let base = server.base();
        for id in &ids {
            let a = get_json(&client, format!("{base}/api/v1/alerts/{id}")).await;
            assert_eq!(a["count"], 1 + 8 * 25, "{k}: alert {id} lost repeats: {a}");
            let kinds: Vec<&str> = a["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["kind"].as_str().unwrap())
                .collect();
            assert_eq!(
                kinds,
                ["fired", "repeated"],
                "{k}: only the first repeat of an incident is logged"
            );
        }
        assert_eq!(
            journal_bytes(&journal),
            0,
            "{k}: the replayed journal is removed"
        );
    }
}

/// A webhook receiver that records every body it is sent.
async fn recording_hook() -> (String, Arc<std::sync::Mutex<Vec<Value>>>) {
    let bodies: Arc<std::sync::Mutex<Vec<Value>>> = Arc::default();
    let b = bodies.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let b = b.clone();
            async move {
                b.lock().unwrap().push(v);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, bodies)
}

/// A receipt-journal append that fails after its batch committed (here: the file-size
/// limit, `prlimit --fsize`, as on a full disk) loses nothing: the repeats go to the
/// database instead, every request is answered 202, and the new alerts committed in the
/// same batches are announced and notified. PostgreSQL only: SQLite's own files would
/// hit the limit too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_journal_append_falls_back_to_the_database() {
    let Some(db) = common::postgres_db().await else {
        return;
    };
    let (hook, bodies) = recording_hook().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("watchpost.toml");
    std::fs::write(
        &config,
        format!(
            "[alerts]\njournal_dir = \"{}\"\ncheckpoint_interval = \"1h\"\nrate_limit_per_second = 0\n\
             [route]\nreceiver = \"hook\"\ngroup_by = [\"...\"]\ngroup_wait = \"200ms\"\ngroup_interval = \"500ms\"\n\
             [[receivers]]\nname = \"hook\"\nwebhook = {{ url = \"{hook}\" }}\n",
            dir.path().join("journal").display()
        ),
    )
    .unwrap();
    // Journal segments may grow to 50 records; checkpoints (which start new ones) are
    // an hour away.
    let mut cmd = std::process::Command::new("prlimit");
    cmd.current_dir(dir.path())
        .arg(format!("--fsize={}", 50 * 64))
        .arg("--")
        .arg(common::binary());
    for (k, _) in std::env::vars() {
        if k.starts_with("WATCHPOST_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(["serve", "--config"])
        .arg(&config)
        .env("WATCHPOST_LOG__FORMAT", "json")
        .env("WATCHPOST_LISTEN", "127.0.0.1:0")
        .env("WATCHPOST_DATABASE_URL", &db.url)
        .env("WATCHPOST_RULES__FILES", "");
    let server = Server::spawn(cmd);
    let base = server.base();
    let client = common::client();
    let post = |body: Value| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let r = client
                .post(format!("{base}/api/v1/alerts"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let repeat =
        json!({"message": "disk filling", "labels": {"alertname": "DiskFull", "host": "a"}});
    let (status, first) = post(repeat.clone()).await;
    assert_eq!(status, 202, "{first}");
    let id = first["ids"][0].as_i64().unwrap();
    // 80 repeats: past the 50th, every journal append fails. Each third request also
    // brings a new alert into the failing batch.
    for i in 0..80 {
        let mut batch = vec![repeat.clone()];
        if i % 3 == 0 {
            batch.push(json!({"message": format!("new {i}"), "labels": {"alertname": "New", "n": i.to_string()}}));
        }
        let (status, body) = post(json!(batch)).await;
        assert_eq!(status, 202, "request {i}: {body}");
    }
    let logs: Vec<String> = server.logs.try_iter().collect();
    assert!(
        logs.iter()
            .any(|l| l.contains("cannot append to the receipt journal")),
        "the journal append really failed"
    );
    // Every new alert is notified, the ones from failing batches too.
    let notified = common::eventually(Duration::from_secs(20), || {
        let bodies = bodies.clone();
        async move {
            let seen: BTreeSet<String> = bodies
                .lock()
                .unwrap()
                .iter()
                .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
                .filter_map(|a| a["labels"]["n"].as_str().map(String::from))
                .collect();
            (seen.len() == 27).then_some(seen)
        }
    })
    .await;
    assert!(
        notified.is_some(),
        "27 new alerts notified: {:?}",
        bodies.lock().unwrap().len()
    );
    // Every repeat is in the database or the journal, not only in memory: kill -9,
    // start again without the file-size limit, count.
    let mut server = server;
    server.child.kill().expect("kill -9");
    let _ = server.child.wait();
    let server = spawn_with(
        dir.path(),
        &db.url,
        &[(
            "WATCHPOST_ALERTS__JOURNAL_DIR",
            dir.path().join("journal").to_str().unwrap(),
        )],
    );
    let a = get_json(&client, format!("{}/api/v1/alerts/{id}", server.base())).await;
    assert_eq!(a["count"], 81, "every repeat is stored: {a}");
}
