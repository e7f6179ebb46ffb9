//! Numbers at the edge of their types, against the real binary (issue 13, "overflow
//! from input"): times and scores near `i64::MAX` from ntopng, absurd RFC 3339 times,
//! silences of 300,000 years from Telegram and reports of as long. Each is refused with
//! a message naming the field or the limit (or, for a score, saturated), never a panic
//! or a wrapped value, and the service keeps answering.

mod common;
#[path = "support/fake_telegram.rs"]
mod fake_telegram;

use std::time::Duration;

use common::{Server, command};
use fake_telegram::FakeTelegram;
use serde_json::{Value, json};

const TOKEN: &str = "4242:overflow-token";
const CHAT: i64 = -1009;
const USER: i64 = 77;
const WAIT: Duration = Duration::from_secs(20);

/// `watchpost serve` on a free port with SQLite in `dir`, and Telegram when given.
fn spawn(dir: &std::path::Path, telegram: Option<&FakeTelegram>) -> Server {
    let mut cmd = command(dir);
    cmd.arg("serve")
        .env("WATCHPOST_LISTEN", "127.0.0.1:0")
        .env("WATCHPOST_RULES__FILES", "");
    if let Some(fake) = telegram {
        cmd.env("WATCHPOST_TELEGRAM__BOT_TOKEN", TOKEN)
            .env("WATCHPOST_TELEGRAM__API_URL", &fake.url)
            .env("WATCHPOST_TELEGRAM__CHAT_IDS", CHAT.to_string());
    }
    Server::spawn(cmd)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn post(base: &str, path: &str, body: &Value) -> (u16, Value) {
    let r = client()
        .post(format!("{base}{path}"))
        .json(body)
        .send()
        .await
        .expect("the service answers");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(base: &str, path: &str) -> (u16, Value) {
    let r = client()
        .get(format!("{base}{path}"))
        .send()
        .await
        .expect("the service answers");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The process runs and answers `/health`.
async fn assert_alive(server: &mut Server) {
    assert!(
        server.child.try_wait().expect("child status").is_none(),
        "the process exited"
    );
    let (status, body) = get(&server.base(), "/health").await;
    assert_eq!(status, 200, "{body}");
}

/// An ntopng host alert record engaged at `tstamp` with `score`.
fn ntopng_record(ip: &str, tstamp: Value, score: Value) -> Value {
    json!({
        "ifid": 0, "action": "engage", "alert_id": 20, "entity_id": 1,
        "entity_val": format!("{ip}@0"), "ip": ip, "vlan_id": 0, "alert_category": 1,
        "tstamp": tstamp, "tstamp_end": 0, "score": score,
        "json": {"alert_generation": {"script_key": "syn_scan", "subdir": "host"}}
    })
}

fn ntopng_batch(records: Vec<Value>) -> Value {
    json!({"version": "0.2", "timestamp": 1_700_000_000, "alerts": records})
}

async fn ntopng_alerts(base: &str) -> Vec<Value> {
    let (status, body) = get(base, "/api/v1/alerts?source=ntopng").await;
    assert_eq!(status, 200, "{body}");
    body["alerts"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ntopng_and_generic_extremes_are_named_or_saturated() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = spawn(dir.path(), None);
    let base = server.base();
    let now_s = chrono::Utc::now().timestamp();

    // One good record and one at i64::MAX: the good one is stored, the bad one named.
    let batch = ntopng_batch(vec![
        ntopng_record("192.0.2.1", json!(now_s - 60), json!(100)),
        ntopng_record("192.0.2.2", json!(i64::MAX), json!(i64::MAX)),
    ]);
    let (status, body) = post(&base, "/api/v1/webhooks/ntopng", &batch).await;
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("alerts[1].tstamp: 9223372036854775807 is not a time")
            && error.contains("9999"),
        "{error}"
    );
    assert_eq!(body["accepted"], 1, "{body}");
    let stored = ntopng_alerts(&base).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["labels"]["ip"], "192.0.2.1");
    assert_eq!(stored[0]["id"], body["ids"][0]);

    // Scores saturate: i64::MAX and 1e300 are the worst scores, not a wrap to "info".
    let batch = ntopng_batch(vec![
        ntopng_record("192.0.2.3", json!(now_s - 30), json!(i64::MAX)),
        ntopng_record("192.0.2.4", json!(now_s - 30), json!(1e300)),
    ]);
    let (status, body) = post(&base, "/api/v1/webhooks/ntopng", &batch).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 2, "{body}");
    for ip in ["192.0.2.3", "192.0.2.4"] {
        let stored = ntopng_alerts(&base).await;
        let a = stored
            .iter()
            .find(|a| a["labels"]["ip"] == ip)
            .unwrap_or_else(|| panic!("{ip} not stored: {stored:?}"));
        assert_eq!(a["risk_score"], 100, "{a}");
        assert_eq!(a["severity"], "critical", "{a}");
        assert_eq!(a["annotations"]["score"], i64::MAX.to_string(), "{a}");
    }

    // A float time of 1e300 alone: 400, nothing stored.
    let batch = ntopng_batch(vec![ntopng_record("192.0.2.5", json!(1e300), json!(1))]);
    let (status, body) = post(&base, "/api/v1/webhooks/ntopng", &batch).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("alerts[0].tstamp")),
        "{body}"
    );
    assert_eq!(body["accepted"], 0, "{body}");
    assert_eq!(ntopng_alerts(&base).await.len(), 3);

    // Generic: a start past the end of 9999 (by its offset) is named.
    let (status, body) = post(
        &base,
        "/api/v1/alerts",
        &json!({"message": "absurd", "starts_at": "9999-12-31T23:59:59-23:59"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("starts_at") && e.contains("9999-12-31T23:59:59Z")),
        "{body}"
    );
    let (status, body) = post(
        &base,
        "/api/v1/alerts",
        &json!({"message": "absurd", "starts_at": "+275760-09-13T00:00:00Z"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("starts_at")
    );
    // The last second of 9999 is a time: the start is clamped to now, the end kept.
    let (status, body) = post(
        &base,
        "/api/v1/alerts",
        &json!({"message": "far", "starts_at": "9999-12-31T23:59:59Z", "ends_at": "9999-12-31T23:59:59Z"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let (_, a) = get(&base, &format!("/api/v1/alerts/{}", body["ids"][0])).await;
    assert_eq!(a["state"], "firing", "{a}");
    assert_eq!(a["ends_at"], "9999-12-31T23:59:59.000Z", "{a}");
    assert!(a["starts_at"].as_str().unwrap_or_default() < "2200", "{a}");

    // `since` of 500 billion years means "since ever", not a wrapped time.
    let (status, body) = get(&base, "/api/v1/alerts?since=500000000000y&source=ntopng").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["alerts"].as_array().map(Vec::len), Some(3), "{body}");

    assert_alive(&mut server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_windows_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = spawn(dir.path(), None);
    let base = server.base();
    for window in ["367d", "9y", "300000y", "500000000000y"] {
        for path in ["/api/v1/reports", "/api/v1/alerts/stats"] {
            let (status, body) = get(&base, &format!("{path}?window={window}")).await;
            assert_eq!(status, 400, "{path} {window}: {body}");
            let error = body["error"].as_str().unwrap_or_default();
            assert!(
                error.starts_with("window: must be at most 366d"),
                "{path} {window}: {error}"
            );
        }
    }
    let (status, body) = get(&base, "/api/v1/reports?window=366d").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["counts"]["window_seconds"], 366 * 86400, "{body}");
    assert_alive(&mut server).await;
}

/// Sends `text` from the allowed chat and returns the bot's next reply.
async fn ask(fake: &FakeTelegram, text: &str) -> String {
    let to_chat = |calls: &[fake_telegram::Call]| {
        calls
            .iter()
            .filter(|c| c.method == "sendmessage" && c.chat_id() == Some(CHAT))
            .count()
    };
    let before = to_chat(&fake.calls());
    fake.push_message(CHAT, USER, text);
    let calls = fake.wait_until(WAIT, |c| to_chat(c) > before).await;
    calls
        .iter()
        .filter(|c| c.method == "sendmessage" && c.chat_id() == Some(CHAT))
        .nth(before)
        .map(|c| c.text())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_durations_are_bounded() {
    let fake = FakeTelegram::start(TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = spawn(dir.path(), Some(&fake));

    let reply = ask(&fake, r#"/silence alertname="x" 300000y"#).await;
    assert!(
        reply.contains("bad duration: must be at most 10y"),
        "{reply}"
    );
    let reply = ask(&fake, "/silence x 300000y").await;
    assert!(reply.contains("usage: /silence"), "{reply}");
    let reply = ask(&fake, r#"/silence alertname="x" 99999999999999999999y"#).await;
    assert!(reply.contains("must be at most 10y"), "{reply}");
    let reply = ask(&fake, "/report 300000y").await;
    assert!(reply.contains("must be at most 366d"), "{reply}");
    let reply = ask(&fake, "/ack 9223372036854775808").await;
    assert!(reply.contains("usage: /ack"), "{reply}");

    // The bound itself works: a silence of 10 years, ending in 10 years.
    let reply = ask(&fake, r#"/silence alertname="x" 10y"#).await;
    assert!(!reply.contains("⚠️") && !reply.contains("bad"), "{reply}");
    let (status, silences) = get(&server.base(), "/api/v1/silences").await;
    assert_eq!(status, 200, "{silences}");
    let ends = silences[0]["endsAt"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let ends = chrono::DateTime::parse_from_rfc3339(&ends).expect("endsAt is RFC 3339");
    let years = (ends.timestamp() - chrono::Utc::now().timestamp()) as f64 / 31_557_600.0;
    assert!((9.99..=10.01).contains(&years), "{silences}");
    assert_eq!(silences.as_array().map(Vec::len), Some(1), "{silences}");

    // Still polling and answering.
    let reply = ask(&fake, "/help").await;
    assert!(reply.contains("watchpost bot"), "{reply}");
    assert_alive(&mut server).await;
}
