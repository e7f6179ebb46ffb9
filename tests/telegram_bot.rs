//! The Telegram bot against a fake Bot API (long polling `getUpdates`), with an
//! in-process [`BotBackend`] standing in for the alert service: commands from an allowed
//! chat reach the backend with the Telegram user; anyone else gets "not authorized";
//! inline buttons ack and silence; scheduled reports go out.

mod common;
#[path = "support/fake_telegram.rs"]
mod fake_telegram;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use fake_telegram::{Call, FakeTelegram};
use tokio_util::sync::CancellationToken;
use watchpost::bot::{
    Actor, AlertDetailInfo, AlertInfo, BackendError, BotBackend, EventInfo, ReportInfo,
    SilenceInfo, StatusInfo,
};
use watchpost::config::{Config, Secret};
use watchpost::dispatch::{AlertNotice, Matcher, MatcherJson};
use watchpost::metrics::Metrics;
use watchpost::notify::{Notifications, NotifyOptions};
use watchpost::store::Db;
use watchpost::supervisor::Supervisor;

const TOKEN: &str = "777:bot-token";
const ALLOWED: i64 = -1001;
const OTHER: i64 = 555;
const USER: i64 = 7;

/// (matchers, duration, actor, comment) of a silence request.
type SilenceCall = (Vec<String>, Duration, Actor, Option<String>);

#[derive(Default)]
struct TestBackend {
    list_calls: Mutex<Vec<Option<String>>>,
    gets: Mutex<Vec<i64>>,
    acks: Mutex<Vec<(i64, Actor, Option<String>)>>,
    silences: Mutex<Vec<SilenceCall>>,
    unsilences: Mutex<Vec<(String, Actor)>>,
    reports: Mutex<Vec<Duration>>,
}

fn alert(id: i64) -> AlertInfo {
    AlertInfo {
        id,
        alertname: Some("HighCpu".into()),
        message: "CPU at 97% on <web-1>".into(),
        severity: "critical".into(),
        state: "firing".into(),
        labels: BTreeMap::from([
            ("alertname".into(), "HighCpu".into()),
            ("instance".into(), "web-1".into()),
        ]),
        annotations: BTreeMap::new(),
        starts_at: Utc::now(),
        ends_at: None,
        count: 3,
        silenced: false,
        acknowledged_by: None,
    }
}

#[async_trait::async_trait]
impl BotBackend for TestBackend {
    async fn list_alerts(
        &self,
        severity: Option<&str>,
        _limit: usize,
    ) -> Result<Vec<AlertInfo>, BackendError> {
        self.list_calls
            .lock()
            .unwrap()
            .push(severity.map(str::to_string));
        Ok(vec![alert(5)])
    }
    async fn get_alert(&self, id: i64) -> Result<Option<AlertDetailInfo>, BackendError> {
        self.gets.lock().unwrap().push(id);
        Ok((id == 5).then(|| AlertDetailInfo {
            alert: alert(5),
            events: vec![EventInfo {
                kind: "fired".into(),
                at: Utc::now(),
                detail: None,
            }],
            alert_type: "database".into(),
            type_reason: "database (score 12): 'postgres' in alertname".into(),
            severity_reason: "critical: 'down' in alertname".into(),
            flapping: true,
        }))
    }
    async fn ack(
        &self,
        id: i64,
        actor: &Actor,
        comment: Option<&str>,
    ) -> Result<AlertInfo, BackendError> {
        self.acks
            .lock()
            .unwrap()
            .push((id, actor.clone(), comment.map(str::to_string)));
        Ok(alert(id))
    }
    async fn silence(
        &self,
        matchers: &[Matcher],
        duration: Duration,
        actor: &Actor,
        comment: Option<&str>,
    ) -> Result<SilenceInfo, BackendError> {
        self.silences.lock().unwrap().push((
            matchers.iter().map(|m| m.to_string()).collect(),
            duration,
            actor.clone(),
            comment.map(str::to_string),
        ));
        Ok(SilenceInfo {
            id: "sil-1".into(),
            matchers: matchers.iter().map(MatcherJson::from).collect(),
            starts_at: Utc::now(),
            ends_at: Utc::now() + chrono::Duration::from_std(duration).unwrap(),
            created_by: actor.audit_name(),
            comment: comment.map(str::to_string),
        })
    }
    async fn unsilence(&self, id: &str, actor: &Actor) -> Result<(), BackendError> {
        if id == "missing" {
            return Err(BackendError::NotFound(format!("silence {id}")));
        }
        self.unsilences
            .lock()
            .unwrap()
            .push((id.to_string(), actor.clone()));
        Ok(())
    }
    async fn report(&self, window: Duration) -> Result<ReportInfo, BackendError> {
        self.reports.lock().unwrap().push(window);
        Ok(ReportInfo {
            window,
            total: 12,
            firing: 2,
            resolved: 10,
            by_severity: vec![("critical".into(), 4), ("warning".into(), 8)],
            top_alerts: vec![("HighCpu".into(), 6)],
            noisiest_sources: vec![("rules".into(), 9)],
            mean_time_to_resolve: Some(Duration::from_secs(900)),
        })
    }
    async fn status(&self) -> Result<StatusInfo, BackendError> {
        Ok(StatusInfo {
            version: "test".into(),
            healthy: true,
            database: true,
            rules_loaded: 14,
            rules_failing: 0,
            firing_alerts: 2,
            cluster: None,
        })
    }
    async fn heartbeats(&self) -> Result<Vec<watchpost::heartbeat::Heartbeat>, BackendError> {
        let hb = |name: &str, status, last_ping_ms| watchpost::heartbeat::Heartbeat {
            name: name.into(),
            ping_key: "secret-key".into(),
            period_ms: 3_600_000,
            grace_ms: 300_000,
            severity: "critical".into(),
            labels: BTreeMap::new(),
            configured: true,
            status,
            created_ms: 0,
            last_ping_ms,
            last_start_ms: None,
            last_duration_ms: None,
            next_due_ms: None,
            changed_ms: 0,
        };
        use watchpost::heartbeat::Status;
        Ok(vec![
            hb("db-dump", Status::Up, Some(1_796_600_000_000)),
            hb("nightly<backup>", Status::Down, None),
        ])
    }
}

struct Bot {
    fake: FakeTelegram,
    backend: Arc<TestBackend>,
    notices: tokio::sync::mpsc::Sender<AlertNotice>,
    token: CancellationToken,
    _db: common::TestDb,
}

impl Drop for Bot {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

async fn start_bot(telegram_extra: &str, extra: &str) -> Bot {
    common::init_logs();
    let fake = FakeTelegram::start(TOKEN).await;
    let db = common::sqlite_db();
    let mut config = Config::from_toml(&format!(
        r#"
[telegram]
bot_token = "{TOKEN}"
api_url = "{}"
chat_ids = [{ALLOWED}]
{telegram_extra}
[route]
receiver = "telegram"
group_wait = "100ms"
group_interval = "300ms"
{extra}
"#,
        fake.url
    ))
    .unwrap();
    config.database_url = Secret(db.url.clone());
    let metrics = Metrics::new().unwrap();
    let store = Db::connect(&config, metrics.db.clone()).await.unwrap();
    store.migrate().await.unwrap();
    let options = NotifyOptions {
        poll_timeout_secs: 1,
        ..Default::default()
    };
    let n = Notifications::new(&config, store, metrics.alerting.clone(), None, options).unwrap();
    let backend = Arc::new(TestBackend::default());
    let token = CancellationToken::new();
    let mut supervisor = Supervisor::new(token.clone());
    n.spawn(&Arc::new(config), &mut supervisor, backend.clone());
    let notices = n.dispatcher.sender();
    // Keep the supervisor alive for the test's duration.
    let t = token.clone();
    tokio::spawn(async move {
        t.cancelled().await;
        supervisor.join(Duration::from_secs(2)).await;
    });
    Bot {
        fake,
        backend,
        notices,
        token,
        _db: db,
    }
}

fn to_chat(calls: &[Call], chat: i64) -> Vec<Call> {
    calls
        .iter()
        .filter(|c| c.method == "sendmessage" && c.chat_id() == Some(chat))
        .cloned()
        .collect()
}

async fn reply(bot: &Bot, chat: i64, n: usize) -> Call {
    let calls = bot
        .fake
        .wait_until(Duration::from_secs(15), |c| to_chat(c, chat).len() >= n)
        .await;
    to_chat(&calls, chat)[n - 1].clone()
}

#[tokio::test]
async fn ack_and_silence_from_the_allowed_chat_reach_the_backend() {
    let bot = start_bot("", "").await;
    bot.fake
        .push_message(ALLOWED, USER, "/ack 5 looking into it");
    let r = reply(&bot, ALLOWED, 1).await;
    assert!(
        r.text().contains("Acknowledged <b>#5 HighCpu</b>"),
        "{}",
        r.text()
    );
    assert_eq!(r.params["parse_mode"], "HTML");
    {
        let acks = bot.backend.acks.lock().unwrap();
        assert_eq!(acks.len(), 1);
        let (id, actor, comment) = &acks[0];
        assert_eq!(*id, 5);
        assert_eq!(comment.as_deref(), Some("looking into it"));
        assert_eq!(actor.user_id, USER);
        assert_eq!(actor.chat_id, ALLOWED);
        assert_eq!(actor.audit_name(), format!("telegram:@user{USER} ({USER})"));
    }

    bot.fake.push_message(
        ALLOWED,
        USER,
        r#"/silence@watchpost_bot alertname="HighCpu" instance=~"web-.*" 2h deploy of v2"#,
    );
    let r = reply(&bot, ALLOWED, 2).await;
    assert!(
        r.text().contains("Silence <code>sil-1</code>"),
        "{}",
        r.text()
    );
    {
        let s = bot.backend.silences.lock().unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(
            s[0].0,
            vec![
                r#"alertname="HighCpu""#.to_string(),
                r#"instance=~"web-.*""#.to_string()
            ]
        );
        assert_eq!(s[0].1, Duration::from_secs(7200));
        assert_eq!(s[0].2.user_id, USER);
        assert_eq!(s[0].3.as_deref(), Some("deploy of v2"));
    }

    bot.fake.push_message(ALLOWED, USER, "/unsilence sil-1");
    let r = reply(&bot, ALLOWED, 3).await;
    assert!(r.text().contains("expired"), "{}", r.text());
    assert_eq!(bot.backend.unsilences.lock().unwrap()[0].0, "sil-1");

    bot.fake.push_message(ALLOWED, USER, "/unsilence missing");
    let r = reply(&bot, ALLOWED, 4).await;
    assert!(r.text().contains("not found"), "{}", r.text());

    bot.fake.push_message(ALLOWED, USER, "/silence 2h");
    let r = reply(&bot, ALLOWED, 5).await;
    assert!(r.text().contains("usage"), "{}", r.text());
    assert_eq!(
        bot.backend.silences.lock().unwrap().len(),
        1,
        "bad input changes nothing"
    );
}

#[tokio::test]
async fn read_commands_answer() {
    let bot = start_bot("", "").await;
    bot.fake.push_message(ALLOWED, USER, "/alerts critical");
    let r = reply(&bot, ALLOWED, 1).await;
    assert!(r.text().contains("#5"), "{}", r.text());
    assert!(
        r.text().contains("CPU at 97% on &lt;web-1&gt;"),
        "escaped: {}",
        r.text()
    );
    assert_eq!(
        *bot.backend.list_calls.lock().unwrap(),
        vec![Some("critical".to_string())]
    );

    bot.fake.push_message(ALLOWED, USER, "/alert 5");
    let r = reply(&bot, ALLOWED, 2).await;
    assert!(
        r.text().contains("instance=<code>web-1</code>"),
        "{}",
        r.text()
    );
    assert!(r.text().contains("fired"), "events: {}", r.text());
    assert!(
        r.text().contains(
            "<b>Type:</b> database · <i>database (score 12): 'postgres' in alertname</i>"
        ),
        "classification explained: {}",
        r.text()
    );
    assert!(r.text().contains("critical: "), "{}", r.text());
    assert!(r.text().contains("🔁 flapping"), "{}", r.text());

    bot.fake.push_message(ALLOWED, USER, "/report 7d");
    let r = reply(&bot, ALLOWED, 3).await;
    assert!(
        r.text().contains("Report of the last 7days"),
        "{}",
        r.text()
    );
    assert!(r.text().contains("6 × HighCpu"), "{}", r.text());
    assert_eq!(
        *bot.backend.reports.lock().unwrap(),
        vec![Duration::from_secs(7 * 86400)]
    );

    bot.fake.push_message(ALLOWED, USER, "/status");
    let r = reply(&bot, ALLOWED, 4).await;
    assert!(
        r.text().contains("rules: 14 loaded, 0 failing"),
        "{}",
        r.text()
    );
    assert!(r.text().contains("notification queue: 0"), "{}", r.text());

    bot.fake.push_message(ALLOWED, USER, "/help");
    let r = reply(&bot, ALLOWED, 5).await;
    assert!(
        r.text().contains("/silence MATCHERS DURATION"),
        "{}",
        r.text()
    );

    // Addressed to another bot in the group: ignored.
    bot.fake
        .push_message(ALLOWED, USER, "/status@some_other_bot");
    bot.fake.push_message(ALLOWED, USER, "/help");
    let r = reply(&bot, ALLOWED, 6).await;
    assert!(
        r.text().contains("/silence"),
        "the /help, not a /status: {}",
        r.text()
    );
}

#[tokio::test]
async fn heartbeats_command_lists_missed_ones_first() {
    let bot = start_bot("", "").await;
    bot.fake.push_message(ALLOWED, USER, "/heartbeats");
    let r = reply(&bot, ALLOWED, 1).await;
    let text = r.text();
    let down = text
        .find("🔴 <b>nightly&lt;backup&gt;</b> — down")
        .expect(&text);
    let up = text.find("🟢 <b>db-dump</b> — up · every 1h").expect(&text);
    assert!(down < up, "missed first: {text}");
    assert!(
        text.contains("never pinged") && !text.contains("secret-key"),
        "{text}"
    );
}

#[tokio::test]
async fn anyone_else_gets_not_authorized_and_nothing_else() {
    let bot = start_bot("", "").await;
    bot.fake.push_message(OTHER, USER, "/alerts");
    bot.fake.push_message(OTHER, USER, "/ack 5");
    bot.fake
        .push_message(OTHER, USER, r#"/silence alertname="x" 1h"#);
    let calls = bot
        .fake
        .wait_until(Duration::from_secs(15), |c| to_chat(c, OTHER).len() >= 3)
        .await;
    for c in to_chat(&calls, OTHER) {
        assert_eq!(c.text(), "not authorized");
        assert!(c.params.get("parse_mode").is_none());
    }
    let cb = bot.fake.push_callback(OTHER, USER, "ack:1");
    let calls = bot
        .fake
        .wait_until(Duration::from_secs(15), |c| {
            c.iter().any(|c| c.method == "answercallbackquery")
        })
        .await;
    let answer = calls
        .iter()
        .find(|c| c.method == "answercallbackquery")
        .unwrap();
    assert_eq!(answer.params["callback_query_id"], cb.as_str());
    assert_eq!(answer.params["text"], "not authorized");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(to_chat(&bot.fake.calls(), OTHER).len(), 3, "nothing more");
    assert!(
        bot.backend.list_calls.lock().unwrap().is_empty(),
        "no data read"
    );
    assert!(bot.backend.acks.lock().unwrap().is_empty());
    assert!(bot.backend.silences.lock().unwrap().is_empty());
}

#[tokio::test]
async fn admin_user_ids_restrict_who_commands() {
    let bot = start_bot(&format!("admin_user_ids = [{USER}]"), "").await;
    bot.fake.push_message(ALLOWED, 8, "/ack 5");
    bot.fake.push_message(ALLOWED, USER, "/ack 6");
    let calls = bot
        .fake
        .wait_until(Duration::from_secs(15), |c| to_chat(c, ALLOWED).len() >= 2)
        .await;
    let replies = to_chat(&calls, ALLOWED);
    assert_eq!(replies[0].text(), "not authorized");
    assert!(
        replies[1].text().contains("Acknowledged"),
        "{}",
        replies[1].text()
    );
    let acks = bot.backend.acks.lock().unwrap().clone();
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].0, 6);
}

#[tokio::test]
async fn buttons_on_alert_messages_ack_and_silence() {
    let bot = start_bot("", "").await;
    let mut n = AlertNotice::test(41, "fp41", "HighCpu");
    n.labels.insert("instance".into(), "web-1".into());
    bot.notices.send(n).await.unwrap();
    let msg = reply(&bot, ALLOWED, 1).await;
    let keyboard = &msg.params["reply_markup"]["inline_keyboard"][0];
    let ack = keyboard[0]["callback_data"].as_str().unwrap().to_string();
    let silence = keyboard[1]["callback_data"].as_str().unwrap().to_string();
    assert_eq!(keyboard[1]["text"], "🔕 Silence 1h");

    bot.fake.push_callback(ALLOWED, USER, &ack);
    let calls = bot
        .fake
        .wait_until(Duration::from_secs(15), |c| {
            c.iter().any(|c| c.method == "answercallbackquery")
        })
        .await;
    let answer = calls
        .iter()
        .find(|c| c.method == "answercallbackquery")
        .unwrap();
    assert_eq!(answer.params["text"], "Acknowledged #41");
    let acks = bot.backend.acks.lock().unwrap().clone();
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].0, 41);
    assert_eq!(acks[0].1.user_id, USER);
    let announced = reply(&bot, ALLOWED, 2).await;
    assert!(
        announced.text().contains("@user7 acknowledged #41"),
        "{}",
        announced.text()
    );

    bot.fake.push_callback(ALLOWED, USER, &silence);
    bot.fake
        .wait_until(Duration::from_secs(15), |c| {
            c.iter()
                .filter(|c| c.method == "answercallbackquery")
                .count()
                >= 2
        })
        .await;
    let s = bot.backend.silences.lock().unwrap().clone();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].0, vec![r#"alertname="HighCpu""#.to_string()]);
    assert_eq!(s[0].1, Duration::from_secs(3600));
    assert_eq!(s[0].2.user_id, USER);
}

#[tokio::test]
async fn scheduled_report_goes_to_the_default_chats() {
    let bot = start_bot(
        "",
        "[reports]\ntelegram_schedule = \"* * * * * *\"\nwindow = \"1h\"\n",
    )
    .await;
    let r = reply(&bot, ALLOWED, 1).await;
    assert!(r.text().contains("Report of the last 1h"), "{}", r.text());
    assert!(r.text().contains("<b>12</b> alerts"), "{}", r.text());
    assert_eq!(r.params["disable_notification"], true);
    assert_eq!(
        bot.backend.reports.lock().unwrap()[0],
        Duration::from_secs(3600)
    );
}
