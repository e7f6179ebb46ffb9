//! The real binary's outbox sender: killed with notifications pending and restarted,
//! everything is delivered, nothing twice (SQLite and PostgreSQL); two processes on one
//! PostgreSQL send each row once, in order per chat (claims).
//!
//! The outbox is filled through the library; the binary's sender drains it.

mod common;
#[path = "support/fake_telegram.rs"]
mod fake_telegram;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Server, databases, test_config};
use fake_telegram::FakeTelegram;
use watchpost::metrics::Metrics;
use watchpost::notify::{NewOutboxRow, Outbox, OutboxFilter, TelegramPayload};
use watchpost::store::Db;

const TOKEN: &str = "42:restart-token";
const CHAT: i64 = 777;
const COUNT: usize = 20;

fn spawn(dir: &std::path::Path, db_url: &str, fake: &FakeTelegram) -> Server {
    let mut cmd = common::command(dir);
    cmd.arg("serve")
        .env("WATCHPOST_LISTEN", "127.0.0.1:0")
        .env("WATCHPOST_DATABASE_URL", db_url)
        .env("WATCHPOST_RULES__FILES", "")
        .env("WATCHPOST_TELEGRAM__BOT_TOKEN", TOKEN)
        .env("WATCHPOST_TELEGRAM__API_URL", &fake.url)
        .env("WATCHPOST_TELEGRAM__CHAT_IDS", CHAT.to_string());
    Server::spawn(cmd)
}

/// The migrated database at `url` and its outbox, opened from the test.
async fn open_outbox(url: &str) -> (Db, Outbox) {
    let metrics = Metrics::new().unwrap();
    let store = Db::connect(&test_config(url), metrics.db.clone())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let outbox = Outbox::new(store.clone());
    (store, outbox)
}

/// Outbox row `i`: "message {i}" to `chat`.
fn message_row(i: usize, chat: i64) -> NewOutboxRow {
    NewOutboxRow {
        idempotency_key: format!("test|{i}"),
        receiver: "telegram".into(),
        kind: "telegram".into(),
        target: format!("telegram:{chat}"),
        group_key: format!("{{}}:{{alertname=\"A{i}\"}}"),
        status: "firing".into(),
        part: 1,
        parts: 1,
        payload: serde_json::to_string(&TelegramPayload {
            chat_id: chat,
            text: format!("message {i}"),
            message_thread_id: None,
            disable_notification: false,
            buttons: false,
            ack_ids: vec![],
            silence_labels: Default::default(),
            chart: None,
            reply_to: None,
        })
        .unwrap(),
        alert_ids: vec![i as i64],
    }
}

#[tokio::test]
async fn killed_with_pending_messages_then_restarted_delivers_each_once() {
    for db in databases().await {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeTelegram::start(TOKEN).await;

        // Migrate and fill the outbox before the service starts.
        let (store, outbox) = open_outbox(&db.url).await;
        let rows: Vec<NewOutboxRow> = (0..COUNT).map(|i| message_row(i, CHAT)).collect();
        assert_eq!(outbox.enqueue(&rows, None).await.unwrap(), COUNT as u64);
        // The same keys again are not queued twice.
        assert_eq!(outbox.enqueue(&rows, None).await.unwrap(), 0);

        let mut server = spawn(dir.path(), &db.url, &fake);
        fake.wait_delivered(5, Duration::from_secs(30)).await;
        // Kill between two sends: once every message the fake accepted is recorded as
        // delivered (the next send to this chat is at least a second away).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let delivered = fake.delivered();
            let accepted = delivered.len();
            let fresh = delivered
                .last()
                .is_some_and(|c| c.at.elapsed() < Duration::from_millis(500));
            let recorded = outbox
                .list(&OutboxFilter {
                    state: Some("delivered".into()),
                    limit: 1000,
                    ..Default::default()
                })
                .await
                .unwrap()
                .len();
            if fresh && recorded == accepted && accepted < COUNT {
                break;
            }
            assert!(Instant::now() < deadline, "{}: never caught up", db.kind);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.signal("KILL");
        server.wait_exit(Duration::from_secs(10));
        let before = fake.delivered().len();
        assert!(before < COUNT, "{}: still pending at the kill", db.kind);

        let _server = spawn(dir.path(), &db.url, &fake);
        let sent = fake.wait_delivered(COUNT, Duration::from_secs(60)).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let sent_after = fake.delivered();
        assert_eq!(
            sent_after.len(),
            sent.len(),
            "nothing more after all were sent"
        );
        let mut seen: HashMap<String, usize> = HashMap::new();
        for c in &sent_after {
            *seen.entry(c.text()).or_default() += 1;
        }
        for i in 0..COUNT {
            assert_eq!(
                seen.get(&format!("message {i}")),
                Some(&1),
                "{}: message {i} delivered exactly once: {seen:?}",
                db.kind
            );
        }
        let pending = outbox
            .list(&OutboxFilter {
                state: Some("pending".into()),
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(pending.is_empty(), "{}", db.kind);
        store.close().await;
    }
}

/// Two processes on one PostgreSQL database drain the same outbox: every row is claimed
/// by one of them, so each message is sent exactly once, in order per chat.
#[tokio::test]
async fn two_senders_on_one_database_send_each_row_once_in_order() {
    let Some(db) = common::postgres_db().await else {
        return;
    };
    let fake = FakeTelegram::start(TOKEN).await;
    let (store, outbox) = open_outbox(&db.url).await;
    let chats = [CHAT, CHAT + 1, CHAT + 2];
    let rows: Vec<NewOutboxRow> = (0..30).map(|i| message_row(i, chats[i % 3])).collect();
    assert_eq!(outbox.enqueue(&rows, None).await.unwrap(), 30);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let _one = spawn(a.path(), &db.url, &fake);
    let _two = spawn(b.path(), &db.url, &fake);
    fake.wait_delivered(30, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent = fake.delivered();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for c in &sent {
        *seen.entry(c.text()).or_default() += 1;
    }
    assert_eq!(sent.len(), 30, "each row once: {seen:?}");
    for chat in chats {
        let order: Vec<usize> = sent
            .iter()
            .filter(|c| c.chat_id() == Some(chat))
            .map(|c| c.text()["message ".len()..].parse().unwrap())
            .collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(order, sorted, "in order for chat {chat}");
    }
    store.close().await;
}
