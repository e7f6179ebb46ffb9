//! Agents: a real `watchpost serve` and two real `watchpost agent` processes. Both
//! hosts' series are queryable under their `instance`; kill -9 of one agent raises
//! `AgentDown` after `agents.grace`, delivered to the fake Bot API, and its restart
//! resolves it; the server stopped for 60 s, or paused (SIGSTOP) for 35 s, loses
//! nothing (the agents back-fill, no gap in the raw samples) and raises nothing. On
//! SQLite and PostgreSQL.
//!
//! And the server's refusals (in process): wrong tokens and roles, unknown protocol
//! versions, duplicate names, oversized and malformed messages, a per-agent series
//! limit, and a thousand agents connecting at once, with the server healthy after.

mod common;
#[path = "support/fake_telegram.rs"]
mod fake_telegram;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};
use watchpost::agent::protocol::{self, Hello};
use watchpost::remote_write::proto::{Label, Sample, TimeSeries, WriteRequest};

use common::faults::{Conf, Proc, mentioning};
use common::prom::raw_matrix;
use common::{TestApp, command, databases, free_port, sqlite_db, test_config_with};
use fake_telegram::FakeTelegram;

const BOT_TOKEN: &str = "42:agents";
const CHAT: i64 = 7300;
/// `agents.grace` in the process tests.
const GRACE: Duration = Duration::from_secs(3);

/// A running `watchpost agent`, killed when dropped.
struct AgentProc {
    child: Child,
    name: String,
}

impl AgentProc {
    fn start(dir: &Path, base: &str, name: &str) -> AgentProc {
        let log = std::fs::File::create(dir.join(format!("agent-{name}.log"))).unwrap();
        let child = command(dir)
            .args(["agent", "--server", base, "--name", name])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn watchpost agent");
        AgentProc {
            child,
            name: name.into(),
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

async fn agents_of(p: &Proc) -> Vec<Value> {
    match p.get_json("/api/v1/agents").await {
        Some((200, Value::Array(a))) => a,
        other => panic!("{}: GET /api/v1/agents: {other:?}", p.tag),
    }
}

async fn query(p: &Proc, q: &str) -> Value {
    let path = format!(
        "/api/v1/query?{}",
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("query", q)
            .finish()
    );
    match p.get_json(&path).await {
        Some((200, v)) => v,
        other => panic!("{}: {q}: {other:?}", p.tag),
    }
}

/// Polls `f` every 200 ms until it gives `Some`, at most `within`.
async fn until<T>(what: &str, within: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The texts the fake Bot API delivered that mention `needle`.
fn texts(fake: &FakeTelegram, needle: &str) -> Vec<String> {
    mentioning(fake.delivered().iter().map(|c| c.text()), needle)
}

async fn scenario(tag: String, db_url: &str) {
    let fake = FakeTelegram::start(BOT_TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let mut conf = Conf::telegram(db_url, &fake.url, BOT_TOKEN, &[CHAT]);
    conf.listen = Some(format!("127.0.0.1:{}", free_port()));
    conf.extra = format!("\n[agents]\ngrace = \"{}s\"\n", GRACE.as_secs());
    let mut server = Proc::start(&tag, dir.path(), &conf).await;
    let base = server.base.clone();
    let _a = AgentProc::start(dir.path(), &base, "host-a");
    let mut b = AgentProc::start(dir.path(), &base, "host-b");

    // Both hosts' series, under their instance and job="agent".
    until(
        &format!("{tag}: both agents' series"),
        Duration::from_secs(20),
        async || {
            let v = query(
                &server,
                "count by (instance, job) (system_memory_total_bytes{job=\"agent\"})",
            )
            .await;
            let mut got: Vec<String> = v["data"]["result"]
                .as_array()?
                .iter()
                .filter_map(|r| r["metric"]["instance"].as_str().map(str::to_string))
                .collect();
            got.sort();
            (got == ["host-a", "host-b"]).then_some(())
        },
    )
    .await;
    let listed = agents_of(&server).await;
    assert_eq!(listed.len(), 2, "{tag}: {listed:?}");
    for a in &listed {
        assert_eq!(a["connected"], true, "{tag}: {a}");
        assert_eq!(a["host"], watchpost::hostname(), "{tag}: {a}");
        assert!(a["samples_received"].as_i64().unwrap() > 0, "{tag}: {a}");
        assert!(
            a["connected_since"].is_string() && a["last_seen"].is_string(),
            "{tag}: {a}"
        );
        assert!(
            a["address"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{tag}: {a}"
        );
    }
    // The default host rules see the agents' hosts too: the CPU series carries instance.
    let cpu = query(&server, "system_cpu_usage_ratio{instance=\"host-b\"}").await;
    assert_eq!(
        cpu["data"]["result"].as_array().unwrap().len(),
        1,
        "{tag}: {cpu}"
    );

    // kill -9 one agent: AgentDown after the grace, to Telegram; nothing for the other.
    let killed = Instant::now();
    b.kill9();
    let down = until(
        &format!("{tag}: AgentDown for host-b delivered"),
        Duration::from_secs(30),
        async || {
            let t = texts(&fake, "host-b");
            (!t.is_empty()).then_some(t)
        },
    )
    .await;
    assert!(
        killed.elapsed() >= GRACE,
        "{tag}: AgentDown before the grace: {down:?}"
    );
    assert!(
        killed.elapsed() < GRACE + Duration::from_secs(10),
        "{tag}: AgentDown took {:?}",
        killed.elapsed()
    );
    assert!(
        down[0].contains("AgentDown") && down[0].contains("FIRING"),
        "{tag}: {down:?}"
    );
    let listed = agents_of(&server).await;
    let hb = listed.iter().find(|a| a["name"] == "host-b").unwrap();
    assert_eq!(
        (hb["connected"].clone(), hb["down"].clone()),
        (Value::Bool(false), Value::Bool(true)),
        "{tag}: {hb}"
    );
    assert!(texts(&fake, "host-a").is_empty(), "{tag}");

    // Restarted: resolved.
    let _b = AgentProc::start(dir.path(), &base, &b.name);
    until(
        &format!("{tag}: AgentDown for host-b resolved"),
        Duration::from_secs(30),
        async || {
            texts(&fake, "host-b")
                .iter()
                .any(|t| t.contains("RESOLVED"))
                .then_some(())
        },
    )
    .await;

    // The server stopped for 60 s: the agents buffer, reconnect and back-fill.
    let stopped_at = watchpost::store::now_ms();
    server.terminate(Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let restarted_at = watchpost::store::now_ms();
    server.restart().await;
    assert_eq!(server.base, base, "{tag}: same address");
    for name in ["host-a", "host-b"] {
        // From the stop (the store is in memory: what the server had acked before is
        // gone with it) to after the restart.
        assert_no_gap(&server, &tag, name, stopped_at, restarted_at).await;
    }

    // The server paused (SIGSTOP) longer than the agents wait for an answer: they give
    // up on the connection, buffer, and reconnect once it runs again.
    let paused_at = watchpost::store::now_ms();
    server.signal("STOP");
    tokio::time::sleep(Duration::from_secs(35)).await;
    let resumed_at = watchpost::store::now_ms();
    server.signal("CONT");
    for name in ["host-a", "host-b"] {
        assert_no_gap(&server, &tag, name, paused_at - 5_000, resumed_at).await;
    }
    // Reconnecting to a restarted or resumed server is not an outage.
    tokio::time::sleep(GRACE + Duration::from_secs(2)).await;
    let fired: usize = ["host-a", "host-b"]
        .iter()
        .map(|n| {
            texts(&fake, n)
                .iter()
                .filter(|t| t.contains("FIRING"))
                .count()
        })
        .sum();
    assert_eq!(fired, 1, "{tag}: only host-b's kill fired AgentDown");
    server.terminate(Duration::from_secs(20)).await;
}

/// Waits until agent `name`'s raw samples cover `from_ms` to after `to_ms`, then
/// asserts they have no gap (collection is every second).
async fn assert_no_gap(server: &Proc, tag: &str, name: &str, from_ms: i64, to_ms: i64) {
    let window_s = (watchpost::store::now_ms() - from_ms) / 1000 + 10;
    let q = format!("system_memory_total_bytes{{instance=\"{name}\"}}[{window_s}s]");
    let samples = until(
        &format!("{tag}: {name} back-filled"),
        Duration::from_secs(40),
        async || {
            let m = raw_matrix(&query(server, &q).await);
            let ts: Vec<i64> = m
                .values()
                .next()?
                .iter()
                .map(|(t, _)| (t.parse::<f64>().unwrap() * 1000.0) as i64)
                .filter(|&t| t >= from_ms)
                .collect();
            (ts.first().is_some_and(|&t| t <= from_ms + 3_000)
                && ts.last().is_some_and(|&t| t > to_ms + 2_000))
            .then_some(ts)
        },
    )
    .await;
    let gaps: Vec<(i64, i64)> = samples
        .windows(2)
        .filter(|w| w[1] - w[0] > 1_500)
        .map(|w| (w[0], w[1]))
        .collect();
    assert!(
        gaps.is_empty(),
        "{tag}: {name}: gaps in the raw samples from {from_ms} to {to_ms}: {gaps:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agents_stream_fire_agent_down_and_back_fill_a_server_outage() {
    // Side by side (not spawned: the scenarios borrow their processes across awaits).
    let dbs = databases().await;
    futures_util::future::join_all(dbs.iter().map(|db| scenario(db.kind.to_string(), &db.url)))
        .await;
}

// ---- refusals, in process -------------------------------------------------------

const AGENT_TOKEN: &str = "agent-token-1";

fn hello(name: &str) -> Hello {
    Hello {
        protocol: protocol::VERSION,
        name: name.into(),
        host: "test-host".into(),
        version: "test".into(),
        session: format!("session-{name}"),
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects with `token`; the upgraded socket, or the refusal's status and JSON body.
async fn connect(app: &TestApp, url: &str, token: Option<&str>) -> Result<Ws, (u16, Value)> {
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let _ = app;
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(r)) => {
            let body = r
                .body()
                .as_deref()
                .map(|b| serde_json::from_slice(b).unwrap_or(Value::Null))
                .unwrap_or(Value::Null);
            Err((r.status().as_u16(), body))
        }
        Err(e) => panic!("connect {url}: {e}"),
    }
}

fn url_of(app: &TestApp, h: &Hello) -> String {
    h.url(&app.base).unwrap()
}

fn batch(seq: u64, series: usize, t_ms: i64) -> Vec<u8> {
    let timeseries = (0..series)
        .map(|i| TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: "agent_test_value".into(),
                },
                Label {
                    name: "n".into(),
                    value: i.to_string(),
                },
                Label {
                    name: "instance".into(),
                    value: "spoofed".into(),
                },
            ],
            samples: vec![Sample {
                value: i as f64,
                timestamp: t_ms,
            }],
            ..TimeSeries::default()
        })
        .collect();
    let raw = prost::Message::encode_to_vec(&WriteRequest {
        timeseries,
        metadata: vec![],
    });
    protocol::encode_batch(seq, &snap::raw::Encoder::new().compress_vec(&raw).unwrap())
}

async fn next_text(ws: &mut Ws) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer")
        {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(t.as_str()).unwrap(),
            Some(Ok(Message::Close(f))) => panic!("closed: {f:?}"),
            Some(Ok(_)) => continue,
            other => panic!("no answer: {other:?}"),
        }
    }
}

/// The close frame the server ends with (code, reason).
async fn close_of(ws: &mut Ws) -> (u16, String) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a close")
        {
            Some(Ok(Message::Close(Some(f)))) => return (u16::from(f.code), f.reason.to_string()),
            Some(Ok(Message::Close(None))) | None => panic!("closed without a reason"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("error instead of a close frame: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_agents_get_clear_refusals_and_the_server_stays_healthy() {
    let db = sqlite_db();
    let mut config = test_config_with(
        &db.url,
        "[agents]\nmax_connected = 50\nmax_series = 5\nmax_message_bytes = 65536\n",
    );
    config.auth.tokens = common::role_tokens();
    config.auth.tokens.push(watchpost::config::TokenConfig {
        token: watchpost::config::Secret(AGENT_TOKEN.into()),
        role: watchpost::config::Role::Agent,
        name: Some("agents".into()),
    });
    let app = TestApp::start(config).await;

    // Tokens and roles.
    let url = url_of(&app, &hello("t1"));
    let (status, body) = connect(&app, &url, None).await.err().unwrap();
    assert_eq!(status, 401, "{body}");
    let (status, body) = connect(&app, &url, Some("wrong-token"))
        .await
        .err()
        .unwrap();
    assert_eq!(status, 401, "{body}");
    let (status, body) = connect(&app, &url, Some("viewer-token-1"))
        .await
        .err()
        .unwrap();
    assert_eq!(status, 403, "{body}");

    // Protocol versions and names.
    let v2 = url.replace("protocol=1", "protocol=2");
    let (status, body) = connect(&app, &v2, Some(AGENT_TOKEN)).await.err().unwrap();
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unsupported agent protocol \"2\""),
        "{body}"
    );
    let bad_name = url.replace("name=t1", "name=a%2Fb");
    let (status, body) = connect(&app, &bad_name, Some(AGENT_TOKEN))
        .await
        .err()
        .unwrap();
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().starts_with("name:"),
        "{body}"
    );

    // One agent: acked batches, labels set by the server, a per-agent series limit.
    let mut ws = connect(&app, &url, Some(AGENT_TOKEN)).await.unwrap();
    let now = watchpost::store::now_ms();
    ws.send(Message::Binary(batch(1, 3, now).into()))
        .await
        .unwrap();
    let ack = next_text(&mut ws).await;
    assert_eq!(
        (
            ack["type"].as_str(),
            ack["seq"].as_u64(),
            ack["appended"].as_u64(),
            ack["refused"].as_u64()
        ),
        (Some("ack"), Some(1), Some(3), Some(0)),
        "{ack}"
    );
    ws.send(Message::Binary(batch(2, 8, now + 1).into()))
        .await
        .unwrap();
    let ack = next_text(&mut ws).await;
    assert_eq!(
        (ack["appended"].as_u64(), ack["refused"].as_u64()),
        (Some(5), Some(3)),
        "{ack}"
    );
    assert!(
        ack["error"].as_str().unwrap().contains("agents.max_series"),
        "{ack}"
    );
    let (_, v) = common_query(&app, "count by (instance, job) (agent_test_value)").await;
    assert_eq!(
        v["data"]["result"][0]["metric"],
        serde_json::json!({"instance": "t1", "job": "agent"}),
        "{v}"
    );
    assert_eq!(v["data"]["result"][0]["value"][1], "5", "{v}");

    // The same name from another process: 409 naming the holder.
    let mut other = hello("t1");
    other.session = "another-process".into();
    let (status, body) = connect(&app, &url_of(&app, &other), Some(AGENT_TOKEN))
        .await
        .err()
        .unwrap();
    assert_eq!(status, 409);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("already connected"),
        "{body}"
    );
    // The same process reconnecting replaces its old connection.
    let mut again = connect(&app, &url, Some(AGENT_TOKEN)).await.unwrap();
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, 1001, "{reason}");
    assert!(reason.contains("replaced"), "{reason}");
    // A batch resent after a lost ack (it was applied) is acked without a refusal.
    again
        .send(Message::Binary(batch(1, 3, now).into()))
        .await
        .unwrap();
    let ack = next_text(&mut again).await;
    assert_eq!(
        (
            ack["seq"].as_u64(),
            ack["appended"].as_u64(),
            ack["refused"].as_u64()
        ),
        (Some(1), Some(0), Some(0)),
        "{ack}"
    );

    // The replaced connection's end does not mark the agent disconnected.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t1 = agents_listed(&app)
        .await
        .into_iter()
        .find(|a| a["name"] == "t1")
        .unwrap();
    assert_eq!(t1["connected"], true, "{t1}");

    // Oversized, malformed and text messages: closed with a reason, nothing stored.
    again
        .send(Message::Binary(vec![7u8; 100_000].into()))
        .await
        .ok();
    let (code, reason) = close_of(&mut again).await;
    assert_eq!(code, 1009, "{reason}");
    assert!(reason.contains("agents.max_message_bytes"), "{reason}");
    let mut ws = until(
        "reconnect after the close",
        Duration::from_secs(10),
        async || connect(&app, &url, Some(AGENT_TOKEN)).await.ok(),
    )
    .await;
    ws.send(Message::Binary(
        protocol::encode_batch(9, b"not snappy").into(),
    ))
    .await
    .unwrap();
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, 1007, "{reason}");
    assert!(reason.contains("batch 9"), "{reason}");
    let mut ws = until(
        "reconnect after the close",
        Duration::from_secs(10),
        async || connect(&app, &url, Some(AGENT_TOKEN)).await.ok(),
    )
    .await;
    ws.send(Message::Text("hello".into())).await.unwrap();
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, 1003, "{reason}");
    // A JSON hello of another protocol version is told which one this server speaks.
    let mut ws = until(
        "reconnect after the close",
        Duration::from_secs(10),
        async || connect(&app, &url, Some(AGENT_TOKEN)).await.ok(),
    )
    .await;
    ws.send(Message::Text(r#"{"type":"hello","protocol":7}"#.into()))
        .await
        .unwrap();
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, 1002, "{reason}");
    assert!(reason.contains("unsupported agent protocol 7"), "{reason}");
    drop(ws);
    // The version as a WebSocket subprotocol: an unknown one is refused before the upgrade.
    let bare = url
        .replace("protocol=1&", "")
        .replace("name=t1", "name=sub");
    let mut req = bare.as_str().into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {AGENT_TOKEN}").parse().unwrap(),
    );
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "watchpost-agent.v9".parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(req).await {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 400),
        other => panic!("a v9 subprotocol must be refused: {:?}", other.map(|_| ())),
    }

    // A thousand agents at once: 50 admitted (agents.max_connected), the rest 503.
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let url = url_of(&app, &hello(&format!("crowd-{i}")));
            let base = app.base.clone();
            tokio::spawn(async move {
                let mut req = url.into_client_request().unwrap();
                req.headers_mut().insert(
                    "authorization",
                    format!("Bearer {AGENT_TOKEN}").parse().unwrap(),
                );
                let _ = base;
                match tokio_tungstenite::connect_async(req).await {
                    Ok((ws, _)) => (101u16, Some(ws)),
                    Err(tungstenite::Error::Http(r)) => (r.status().as_u16(), None),
                    Err(e) => panic!("{e}"),
                }
            })
        })
        .collect();
    let mut held = Vec::new();
    let mut counts = std::collections::BTreeMap::new();
    for t in tasks {
        let (status, ws) = t.await.unwrap();
        *counts.entry(status).or_insert(0) += 1;
        held.extend(ws);
    }
    // t1 may still count until its last close is processed; at most 50 in all.
    let admitted = counts.get(&101).copied().unwrap_or(0);
    assert!((49..=50).contains(&admitted), "{counts:?}");
    assert_eq!(
        admitted + counts.get(&503).copied().unwrap_or(0),
        1000,
        "only 101 or 503: {counts:?}"
    );
    let (status, _) = app.get_json("/health").await;
    assert_eq!(status, 200);
    let r = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        r.contains(&format!("watchpost_agents_connected {admitted}")),
        "gauge"
    );
    assert!(
        r.contains("watchpost_agents_refused_total{reason=\"full\"}"),
        "refusals counted"
    );
    // Forgetting agents (admin): a connected one is refused, a disconnected one goes.
    let delete = async |name: &str, token: &str| {
        let r = app
            .client
            .delete(app.url(&format!("/api/v1/agents/{name}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        r.status().as_u16()
    };
    assert_eq!(delete("t1", "viewer-token-1").await, 403);
    let connected = agents_listed(&app)
        .await
        .into_iter()
        .find(|a| a["connected"] == true)
        .unwrap();
    assert_eq!(
        delete(connected["name"].as_str().unwrap(), "admin-token-1").await,
        409
    );
    assert_eq!(delete("t1", "admin-token-1").await, 204);
    assert_eq!(delete("t1", "admin-token-1").await, 404);
    assert!(agents_listed(&app).await.iter().all(|a| a["name"] != "t1"));
    drop(held);
    app.stop().await;
}

async fn agents_listed(app: &TestApp) -> Vec<Value> {
    let r = app
        .client
        .get(app.url("/api/v1/agents"))
        .bearer_auth("viewer-token-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Vec<Value>>().await.unwrap()
}

async fn common_query(app: &TestApp, q: &str) -> (u16, Value) {
    let r = app
        .client
        .get(app.url("/api/v1/query"))
        .bearer_auth("viewer-token-1")
        .query(&[("query", q)])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}
