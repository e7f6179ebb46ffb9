//! Fault injection, Telegram side, on the real binary (SQLite and PostgreSQL side by
//! side): the Bot API refusing connections then answering 502; a send that times out
//! after Telegram got the message ("ambiguous") under `notify.ambiguous = "retry"` and
//! `"drop"`; SIGTERM while such a send is in flight; and the database refusing the
//! "delivered" bookkeeping write. Every message is delivered, and none twice, except the
//! one resend the `retry` policy allows.

mod common;
#[path = "support/fake_telegram.rs"]
mod fake_telegram;

use std::sync::Arc;
use std::time::Duration;

use common::faults::{
    Conf, Proc, SqliteWriteLock, each_database, mentioning, pg_start, pg_stop, run_variants, token,
    wait_for,
};
use common::{PgCluster, TestDb, create_pg_database};
use fake_telegram::{FakeTelegram, Fault};

const BOT_TOKEN: &str = "42:faults-telegram";
const CHAT: i64 = 5000;
const RECEIVER: &str = "ops";
/// What SIGTERM may take beyond `shutdown_timeout`.
const SLACK: Duration = Duration::from_secs(4);

/// Delivered sendMessage texts that mention `needle`.
fn sent(fake: &FakeTelegram, needle: &str) -> Vec<String> {
    mentioning(fake.delivered().into_iter().map(|c| c.text()), needle)
}

/// Waits until the fake delivered `n` messages mentioning `needle`.
async fn wait_sent(tag: &str, fake: &FakeTelegram, needle: &str, n: usize, timeout: Duration) {
    wait_for(
        &format!("{tag}: {n} message(s) mentioning {needle}"),
        timeout,
        || {
            let s = sent(fake, needle);
            (s.len() >= n, s)
        },
    )
    .await;
}

// --- Bot API down -----------------------------------------------------------------------

const CHATS: [i64; 2] = [5001, 5002];

/// Alerts keep firing while the Bot API refuses connections (70 s), then answers 502
/// (50 s), then is back — two minutes of outage: every notification is delivered once to
/// each chat, in the order the alerts fired, and the outcomes are counted.
async fn bot_api_down(db: TestDb) {
    let tag = format!("{} Bot API down", db.kind);
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeTelegram::start(BOT_TOKEN).await;
    let conf = Conf::telegram(&db.url, &fake.url, BOT_TOKEN, &CHATS)
        .notify("min_backoff", "\"500ms\"")
        .notify("max_backoff", "\"5s\"");
    let p = Proc::start(&tag, dir.path(), &conf).await;
    let base = token("Down");
    let tokens: Vec<String> = (0..8).map(|i| format!("{base}_{i:02}")).collect();
    let gap = Duration::from_millis(700);
    // During the outage the alerts come spread over it.
    let outage_gap = Duration::from_secs(15);

    p.fire(&tokens[0]).await;
    wait_sent(
        &tag,
        &fake,
        &tokens[0],
        CHATS.len(),
        Duration::from_secs(20),
    )
    .await;

    // Connections refused.
    fake.go_down().await;
    let down = std::time::Instant::now();
    for t in &tokens[1..4] {
        p.fire(t).await;
        tokio::time::sleep(outage_gap).await;
    }
    tokio::time::sleep(Duration::from_secs(70).saturating_sub(down.elapsed())).await;
    // Back on the same port, answering 502 to everything.
    fake.fail_all(Fault::Error(502, "Bad Gateway".into()));
    fake.come_up().await;
    let bad = std::time::Instant::now();
    for t in &tokens[4..6] {
        p.fire(t).await;
        tokio::time::sleep(outage_gap).await;
    }
    tokio::time::sleep(Duration::from_secs(50).saturating_sub(bad.elapsed())).await;
    fake.clear_fail_all();
    for t in &tokens[6..] {
        p.fire(t).await;
        tokio::time::sleep(gap).await;
    }

    let per_chat = |chat: i64| -> Vec<String> {
        fake.delivered()
            .into_iter()
            .filter(|c| c.chat_id() == Some(chat))
            .map(|c| c.text())
            .collect()
    };
    wait_for(
        &format!("{tag}: every alert delivered to every chat"),
        Duration::from_secs(60),
        || {
            let missing: Vec<(i64, &String)> = CHATS
                .iter()
                .flat_map(|&chat| {
                    let texts = per_chat(chat);
                    tokens
                        .iter()
                        .filter(move |t| !texts.iter().any(|x| x.contains(t.as_str())))
                        .map(move |t| (chat, t))
                })
                .collect();
            (missing.is_empty(), format!("missing {missing:?}"))
        },
    )
    .await;
    // Long enough for a duplicate: more than max_backoff plus a group_interval.
    tokio::time::sleep(Duration::from_secs(8)).await;

    for chat in CHATS {
        let order: Vec<&str> = per_chat(chat)
            .iter()
            .filter_map(|text| tokens.iter().find(|t| text.contains(t.as_str())))
            .map(String::as_str)
            .collect();
        let expected: Vec<&str> = tokens.iter().map(String::as_str).collect();
        assert_eq!(
            order, expected,
            "{tag}: chat {chat}: each alert exactly once, in firing order"
        );
    }
    let bad_gateways = fake
        .calls_of("sendMessage")
        .iter()
        .filter(|c| c.status == 502)
        .count();
    assert!(
        bad_gateways > 0,
        "{tag}: the 502 phase was exercised (a send was answered 502)"
    );
    let rows = p.outbox().await;
    assert_eq!(rows.len(), tokens.len() * CHATS.len(), "{tag}: {rows:#?}");
    assert!(
        rows.iter().all(|r| r["state"] == "delivered"),
        "{tag}: every outbox row delivered: {rows:#?}"
    );
    let labels = |outcome| [("receiver", RECEIVER), ("outcome", outcome)];
    let metric = "watchpost_notifications_total";
    assert_eq!(
        p.metric(metric, &labels("delivered")).await,
        (tokens.len() * CHATS.len()) as f64,
        "{tag}: {metric}{{outcome=\"delivered\"}}"
    );
    assert!(
        p.metric(metric, &labels("transient")).await >= 1.0,
        "{tag}: {metric}{{outcome=\"transient\"}} counts the refused and 502 sends"
    );
    assert_eq!(
        p.metric(metric, &labels("failed")).await,
        0.0,
        "{tag}: nothing given up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bot_api_refusing_then_502_then_back_delivers_each_once_in_order() {
    each_database(bot_api_down).await;
}

// --- Ambiguous sends -------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Policy {
    Retry,
    Drop,
}

/// The ambiguous send's row: `failed`, the reason mentions it.
async fn assert_dropped(tag: &str, p: &Proc, id: i64) {
    let rows = p
        .wait_outbox_state(id, "failed", Duration::from_secs(30))
        .await;
    for r in &rows {
        let reason = r["last_error"].as_str().unwrap_or_default().to_lowercase();
        assert!(
            reason.contains("ambiguous"),
            "{tag}: the failed row says it was ambiguous: {r:#}"
        );
    }
}

/// A send times out (`notify.timeout` 2 s) while Telegram holds its answer for 6 s
/// after taking the message: `retry` sends it once more, `drop` never again and fails
/// the row.
async fn ambiguous_send(db: TestDb, policy: Policy) {
    let tag = format!("{} ambiguous {policy:?}", db.kind);
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeTelegram::start(BOT_TOKEN).await;
    let conf = Conf::telegram(&db.url, &fake.url, BOT_TOKEN, &[CHAT])
        .notify(
            "ambiguous",
            if policy == Policy::Retry {
                "\"retry\""
            } else {
                "\"drop\""
            },
        )
        .notify("timeout", "\"2s\"")
        .notify("min_backoff", "\"500ms\"")
        .notify("max_backoff", "\"5s\"");
    let p = Proc::start(&tag, dir.path(), &conf).await;
    fake.hold_next_sends(1, Duration::from_secs(6));
    let t = token("Ambiguous");
    let id = p.fire(&t).await;
    wait_sent(&tag, &fake, &t, 1, Duration::from_secs(20)).await;
    match policy {
        Policy::Retry => {
            wait_sent(&tag, &fake, &t, 2, Duration::from_secs(20)).await;
            p.wait_outbox_state(id, "delivered", Duration::from_secs(10))
                .await;
            tokio::time::sleep(Duration::from_secs(6)).await;
            let s = sent(&fake, &t);
            assert_eq!(s.len(), 2, "{tag}: sent once more, not again: {s:#?}");
        }
        Policy::Drop => {
            assert_dropped(&tag, &p, id).await;
            tokio::time::sleep(Duration::from_secs(6)).await;
            let s = sent(&fake, &t);
            assert_eq!(s.len(), 1, "{tag}: never sent again: {s:#?}");
        }
    }
    let ambiguous = p
        .metric(
            "watchpost_notifications_total",
            &[("receiver", RECEIVER), ("outcome", "ambiguous")],
        )
        .await;
    assert!(
        ambiguous >= 1.0,
        "{tag}: watchpost_notifications_total{{outcome=\"ambiguous\"}} = {ambiguous}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ambiguous_send_with_retry_policy_is_sent_once_more() {
    each_database(|db| ambiguous_send(db, Policy::Retry)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ambiguous_send_with_drop_policy_is_not_resent_and_fails() {
    each_database(|db| ambiguous_send(db, Policy::Drop)).await;
}

/// SIGTERM while Telegram holds the answer of a send (120 s): exit 0 within
/// `shutdown_timeout` (4 s) + slack; after the restart the row is handled per the
/// policy. The `retry` variant uses the defaults (no `[notify]` section).
async fn sigterm_while_send_held(db: TestDb, policy: Policy) {
    let tag = format!("{} SIGTERM while held, {policy:?}", db.kind);
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeTelegram::start(BOT_TOKEN).await;
    let mut conf = Conf::telegram(&db.url, &fake.url, BOT_TOKEN, &[CHAT]);
    conf.shutdown_timeout = Some("4s".into());
    if policy == Policy::Drop {
        conf = conf.notify("ambiguous", "\"drop\"");
    }
    let mut p = Proc::start(&tag, dir.path(), &conf).await;
    fake.hold_next_sends(1, Duration::from_secs(120));
    let t = token("HeldAtExit");
    let id = p.fire(&t).await;
    wait_sent(&tag, &fake, &t, 1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    p.terminate(Duration::from_secs(4) + SLACK).await;

    p.restart().await;
    match policy {
        Policy::Retry => {
            wait_sent(&tag, &fake, &t, 2, Duration::from_secs(30)).await;
            p.wait_outbox_state(id, "delivered", Duration::from_secs(10))
                .await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            let s = sent(&fake, &t);
            assert_eq!(
                s.len(),
                2,
                "{tag}: sent once more after the restart: {s:#?}"
            );
        }
        Policy::Drop => {
            assert_dropped(&tag, &p, id).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            let s = sent(&fake, &t);
            assert_eq!(s.len(), 1, "{tag}: never sent again: {s:#?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_during_a_held_send_exits_0_then_retry_policy_resends_once() {
    each_database(|db| sigterm_while_send_held(db, Policy::Retry)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_during_a_held_send_exits_0_then_drop_policy_fails_the_row() {
    each_database(|db| sigterm_while_send_held(db, Policy::Drop)).await;
}

// --- The "delivered" write fails --------------------------------------------------------

/// How the database refuses writes for a while.
enum Outage {
    /// Another connection holds the SQLite write lock.
    SqliteLock,
    /// The test's own PostgreSQL cluster is stopped.
    Postgres(Arc<PgCluster>),
}

/// Telegram takes a message and answers 3 s later; meanwhile the database starts
/// refusing writes (SQLite: a write lock held 10 s, past the 5 s busy timeout;
/// PostgreSQL: stopped for 8 s), so recording the delivery fails: the message is still
/// delivered exactly once, and its row ends `delivered` once the database is back.
async fn delivered_write_fails(db: TestDb, outage: Outage) {
    let tag = format!("{} delivered-write fails", db.kind);
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeTelegram::start(BOT_TOKEN).await;
    let conf = Conf::telegram(&db.url, &fake.url, BOT_TOKEN, &[CHAT]);
    let p = Proc::start(&tag, dir.path(), &conf).await;
    fake.hold_next_sends(1, Duration::from_secs(3));
    let t = token("Bookkeeping");
    let id = p.fire(&t).await;
    wait_sent(&tag, &fake, &t, 1, Duration::from_secs(20)).await;
    // By reference: the cluster must outlive the checks below (dropping it stops it).
    match &outage {
        Outage::SqliteLock => {
            let lock = SqliteWriteLock::take(&db.url).await;
            tokio::time::sleep(Duration::from_secs(10)).await;
            lock.release().await;
        }
        Outage::Postgres(cluster) => {
            pg_stop(cluster).await;
            tokio::time::sleep(Duration::from_secs(8)).await;
            pg_start(cluster, &db.url).await;
        }
    }
    p.wait_outbox_state(id, "delivered", Duration::from_secs(60))
        .await;
    let failed_writes = p
        .metric(
            "watchpost_db_queries_total",
            &[("query", "notify.outbox_record"), ("outcome", "error")],
        )
        .await;
    assert!(
        failed_writes >= 1.0,
        "{tag}: the delivered write really failed at least once"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let s = sent(&fake, &t);
    assert_eq!(s.len(), 1, "{tag}: delivered exactly once: {s:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_delivered_bookkeeping_write_never_causes_a_resend() {
    let mut variants = vec![(
        "sqlite".to_string(),
        Box::pin(delivered_write_fails(
            common::sqlite_db(),
            Outage::SqliteLock,
        )) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    )];
    if let Some(cluster) = PgCluster::start() {
        let cluster = Arc::new(cluster);
        let db = create_pg_database(&cluster.url()).await;
        variants.push((
            "postgres".to_string(),
            Box::pin(delivered_write_fails(db, Outage::Postgres(cluster))),
        ));
    }
    run_variants(variants).await;
}
