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
        let mut stored = BTreeSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let url = match &cursor {
                Some(c) => format!("{base}/api/v1/alerts?limit=1000&cursor={c}"),
                None => format!("{base}/api/v1/alerts?limit=1000"),
            };
            let page: Value = client.get(url).send().await.unwrap().json().await.unwrap();
            for a in page["alerts"].as_array().unwrap() {
                stored.insert(a["id"].as_i64().unwrap());
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
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

async fn get_json(client: &reqwest::Client, url: String) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// Bytes in the journal files under `dir`.
fn journal_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "wal"))
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
