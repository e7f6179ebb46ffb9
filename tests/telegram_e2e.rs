//! Telegram end to end through the REAL paths, on SQLite and PostgreSQL: alerts ingested
//! over HTTP (`/api/v1/alerts`, `/api/v2/alerts`) and firing rules go through the alert
//! pipeline, the dispatcher, the outbox and the sender to a fake Telegram Bot API; the
//! bot (fake `getUpdates`) acts on the real alert service. Nothing is injected.

mod common;
#[path = "support/fake_telegram.rs"]
mod fake_telegram;

use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use common::{TestApp, databases, eventually, test_config_with};
use fake_telegram::{Call, FakeTelegram};
use serde_json::{Value, json};
use watchpost::config::Config;

const TOKEN: &str = "4242:e2e-token";
/// The configured chat (`telegram.chat_ids`).
const CHAT: i64 = -100777;
/// A chat the bot must not obey.
const STRANGER_CHAT: i64 = 555;
const USER: i64 = 7;
const WAIT: Duration = Duration::from_secs(20);
const EXTERNAL: &str = "https://watchpost.example";

/// A config sending everything to the fake Telegram with short timers; `extra` is
/// appended to the TOML (more `[route]` keys, receivers, …).
fn config(db_url: &str, fake: &FakeTelegram, route_extra: &str, extra: &str) -> Config {
    test_config_with(
        db_url,
        &format!(
            r#"
external_url = "{EXTERNAL}"
[telegram]
bot_token = "{TOKEN}"
api_url = "{}"
chat_ids = [{CHAT}]
[route]
receiver = "telegram"
group_by = ["alertname"]
group_wait = "200ms"
group_interval = "400ms"
{route_extra}
{extra}
"#,
            fake.url
        ),
    )
}

/// sendMessage calls to `CHAT` that succeeded.
fn to_chat(calls: &[Call], chat: i64) -> Vec<Call> {
    calls
        .iter()
        .filter(|c| c.method == "sendmessage" && c.status == 200 && c.chat_id() == Some(chat))
        .cloned()
        .collect()
}

/// Delivered messages whose text contains `needle`.
fn messages_with(fake: &FakeTelegram, needle: &str) -> Vec<Call> {
    to_chat(&fake.calls(), CHAT)
        .into_iter()
        .filter(|c| c.text().contains(needle))
        .collect()
}

/// Delivered notifications (not bot replies) of the group `name`.
fn notifications(fake: &FakeTelegram, name: &str) -> Vec<Call> {
    let firing = format!("<b>FIRING</b> · <b>{name}</b>");
    let resolved = format!("<b>RESOLVED</b> · <b>{name}</b>");
    to_chat(&fake.calls(), CHAT)
        .into_iter()
        .filter(|c| {
            let t = c.text();
            t.contains(&firing) || t.contains(&resolved)
        })
        .collect()
}

/// Waits until `n` delivered messages contain `needle`; returns them.
async fn wait_messages(fake: &FakeTelegram, needle: &str, n: usize) -> Vec<Call> {
    let needle = needle.to_string();
    fake.wait_until(WAIT, |calls| {
        to_chat(calls, CHAT)
            .iter()
            .filter(|c| c.text().contains(&needle))
            .count()
            >= n
    })
    .await;
    messages_with(fake, &needle)
}

/// Lets several group intervals pass (for "nothing more is sent" checks).
async fn quiet_period() {
    tokio::time::sleep(Duration::from_millis(2500)).await;
}

/// POSTs and expects `status`.
async fn post(app: &TestApp, path: &str, body: Value, status: u16) -> Value {
    let (got, body) = app.post_json(path, &body).await;
    assert_eq!(got, status, "POST {path}: {body}");
    body
}

/// POSTs one generic alert; returns its id.
async fn ingest(app: &TestApp, alert: Value) -> i64 {
    let body = post(app, "/api/v1/alerts", alert, 202).await;
    body["ids"][0].as_i64().expect("an id")
}

/// The alert detail once `pred` holds for it.
async fn alert_when(app: &TestApp, id: i64, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let path = format!("/api/v1/alerts/{id}");
    let found = eventually(WAIT, || async {
        let (status, body) = app.get_json(&path).await;
        (status == 200 && pred(&body)).then_some(body)
    })
    .await;
    match found {
        Some(b) => b,
        None => panic!("alert {id}: {what}; last: {}", app.get_json(&path).await.1),
    }
}

/// Waits until every notification of alert `id` in the outbox is delivered and no new
/// one was enqueued for a few group intervals; returns how many there are. Repeats
/// enqueued before an ack may still wait behind the chat's rate limit.
async fn settled_outbox(app: &TestApp, id: i64) -> usize {
    let path = format!("/api/v1/notifications?alert_id={id}&limit=1000");
    let delivered = || async {
        let (status, body) = app.get_json(&path).await;
        let rows = body["notifications"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (status == 200 && rows.iter().all(|r| r["state"] == "delivered")).then_some(rows.len())
    };
    let mut last = None;
    loop {
        let n = eventually(WAIT, delivered)
            .await
            .unwrap_or_else(|| panic!("alert {id}: outbox not drained within {WAIT:?}"));
        if last == Some(n) {
            return n;
        }
        last = Some(n);
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
}

fn notified_events(alert: &Value) -> Vec<Value> {
    alert["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == "notified")
        .cloned()
        .collect()
}

/// The id of the only alert with `alertname`.
async fn id_by_alertname(app: &TestApp, name: &str) -> i64 {
    let path = format!("/api/v1/alerts?label=alertname={name}");
    eventually(WAIT, || async {
        let (_, body) = app.get_json(&path).await;
        body["alerts"][0]["id"].as_i64()
    })
    .await
    .unwrap_or_else(|| panic!("no alert named {name}"))
}

#[tokio::test]
async fn an_ingested_alert_notifies_once_repeats_nothing_and_resolves_once() {
    for db in databases().await {
        let kind = db.kind;
        let fake = FakeTelegram::start(TOKEN).await;
        let app = TestApp::start(config(&db.url, &fake, "repeat_interval = \"1h\"", "")).await;
        let alert = json!({
            "message": "disk almost full on <db-1> & friends",
            "severity": "critical",
            "source": "scripts",
            "labels": {"alertname": "DiskFull", "instance": "db-1", "mount": "/var"},
            "annotations": {"summary": "Disk /var at 97% on <db-1> & friends"},
        });
        let id = ingest(&app, alert.clone()).await;

        let sent = wait_messages(&fake, "DiskFull", 1).await;
        let m = &sent[0];
        assert_eq!(m.params["parse_mode"], "HTML", "{kind}");
        let text = m.text();
        assert!(
            text.starts_with("🔴 <b>FIRING</b> · <b>DiskFull</b>"),
            "{kind}: {text}"
        );
        assert!(
            text.contains("Disk /var at 97% on &lt;db-1&gt; &amp; friends"),
            "{kind}: summary escaped: {text}"
        );
        assert!(text.contains("🔴 critical"), "{kind}: {text}");
        assert!(
            text.contains("instance=<code>db-1</code>"),
            "{kind}: {text}"
        );
        assert!(text.contains("mount=<code>/var</code>"), "{kind}: {text}");
        assert!(
            text.contains(&format!(
                "<a href=\"{EXTERNAL}/alerts/{id}\">Alert #{id}</a>"
            )),
            "{kind}: link to the alert: {text}"
        );
        let ack = m.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
            .as_str()
            .unwrap_or_default();
        assert!(ack.starts_with("ack:"), "{kind}: Ack button: {}", m.params);

        // The same alert again, well within repeat_interval: nothing new.
        ingest(&app, alert.clone()).await;
        ingest(&app, alert.clone()).await;
        quiet_period().await;
        assert_eq!(
            notifications(&fake, "DiskFull").len(),
            1,
            "{kind}: repeats within repeat_interval are not re-notified"
        );

        // The alert's timeline records the delivery.
        let detail = alert_when(&app, id, "a notified event", |a| {
            !notified_events(a).is_empty()
        })
        .await;
        let ev = &notified_events(&detail)[0];
        assert_eq!(ev["receiver"], "telegram", "{kind}: {ev}");
        assert_eq!(ev["outcome"], "delivered", "{kind}: {ev}");
        assert_eq!(ev["status"], "firing", "{kind}: {ev}");
        assert_eq!(ev["target"], format!("telegram:{CHAT}"), "{kind}: {ev}");

        // ends_at in the past resolves it: exactly one resolved message.
        let mut resolved = alert.clone();
        resolved["ends_at"] = json!((Utc::now() - chrono::Duration::seconds(5)).to_rfc3339());
        assert_eq!(ingest(&app, resolved).await, id, "{kind}: same alert");
        let sent = wait_messages(&fake, "RESOLVED", 1).await;
        let text = sent[0].text();
        assert!(
            text.starts_with("✅ <b>RESOLVED</b> · <b>DiskFull</b>"),
            "{kind}: {text}"
        );
        assert!(
            sent[0].params.get("reply_markup").is_none(),
            "{kind}: no buttons on a resolved message"
        );
        quiet_period().await;
        assert_eq!(notifications(&fake, "DiskFull").len(), 2, "{kind}");
        assert_eq!(messages_with(&fake, "RESOLVED").len(), 1, "{kind}");

        let detail = alert_when(&app, id, "a resolved notified event", |a| {
            notified_events(a).iter().any(|e| e["status"] == "resolved")
        })
        .await;
        assert_eq!(detail["state"], "resolved", "{kind}");
        app.stop().await;
    }
}

#[tokio::test]
async fn an_alertmanager_v2_alert_notifies_once_and_resolves_once() {
    for db in databases().await {
        let kind = db.kind;
        let fake = FakeTelegram::start(TOKEN).await;
        let app = TestApp::start(config(&db.url, &fake, "repeat_interval = \"1h\"", "")).await;
        let starts = (Utc::now() - chrono::Duration::minutes(3)).to_rfc3339();
        let alert = json!([{
            "labels": {"alertname": "TargetDown", "severity": "warning", "job": "node", "instance": "web-2:9100"},
            "annotations": {"summary": "web-2 is down", "description": "no scrape for 3m"},
            "startsAt": starts,
            "generatorURL": "http://prometheus:9090/graph?g0.expr=up%3D%3D0",
        }]);
        post(&app, "/api/v2/alerts", alert.clone(), 200).await;
        let sent = wait_messages(&fake, "TargetDown", 1).await;
        let id = id_by_alertname(&app, "TargetDown").await;
        let text = sent[0].text();
        assert!(
            text.starts_with("🟠 <b>FIRING</b> · <b>TargetDown</b>"),
            "{kind}: {text}"
        );
        assert!(text.contains("web-2 is down"), "{kind}: {text}");
        assert!(text.contains("<i>no scrape for 3m</i>"), "{kind}: {text}");
        assert!(text.contains("🟠 warning"), "{kind}: {text}");
        assert!(
            text.contains("instance=<code>web-2:9100</code>")
                && text.contains("job=<code>node</code>"),
            "{kind}: {text}"
        );
        assert!(
            text.contains(&format!("{EXTERNAL}/alerts/{id}")),
            "{kind}: {text}"
        );
        assert!(
            text.contains("<a href=\"http://prometheus:9090/graph?g0.expr=up%3D%3D0\">Source</a>"),
            "{kind}: generatorURL: {text}"
        );

        // Prometheus re-sends firing alerts every evaluation: nothing new.
        post(&app, "/api/v2/alerts", alert.clone(), 200).await;
        quiet_period().await;
        assert_eq!(notifications(&fake, "TargetDown").len(), 1, "{kind}");

        let mut resolved = alert.clone();
        resolved[0]["endsAt"] = json!((Utc::now() - chrono::Duration::seconds(1)).to_rfc3339());
        post(&app, "/api/v2/alerts", resolved, 200).await;
        let sent = wait_messages(&fake, "RESOLVED", 1).await;
        assert!(
            sent[0]
                .text()
                .starts_with("✅ <b>RESOLVED</b> · <b>TargetDown</b>"),
            "{kind}: {}",
            sent[0].text()
        );
        quiet_period().await;
        assert_eq!(notifications(&fake, "TargetDown").len(), 2, "{kind}");
        let detail = alert_when(&app, id, "notified twice", |a| {
            notified_events(a).len() >= 2
        })
        .await;
        let outcomes: Vec<(String, String)> = notified_events(&detail)
            .iter()
            .map(|e| {
                (
                    e["status"].as_str().unwrap_or("").to_string(),
                    e["outcome"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        assert_eq!(
            outcomes,
            vec![
                ("firing".to_string(), "delivered".to_string()),
                ("resolved".to_string(), "delivered".to_string())
            ],
            "{kind}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_refused_delivery_is_a_failed_notified_event() {
    for db in databases().await {
        let kind = db.kind;
        let fake = FakeTelegram::start(TOKEN).await;
        fake.fail_chat(
            CHAT,
            fake_telegram::Fault::Error(
                403,
                "Forbidden: bot was kicked from the group chat".into(),
            ),
        );
        let app = TestApp::start(config(&db.url, &fake, "", "")).await;
        let id = ingest(
            &app,
            json!({"message": "nobody hears this", "labels": {"alertname": "Lonely"}}),
        )
        .await;
        let detail = alert_when(&app, id, "a failed notified event", |a| {
            notified_events(a).iter().any(|e| e["outcome"] == "failed")
        })
        .await;
        let ev = &notified_events(&detail)[0];
        assert_eq!(ev["receiver"], "telegram", "{kind}: {ev}");
        assert!(
            ev["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("bot was kicked"),
            "{kind}: {ev}"
        );
        assert_eq!(ev["attempts"], 1, "{kind}: not retried: {ev}");
        app.stop().await;
    }
}

/// A receiver template in Alertmanager's template language.
const TEMPLATE: &str = r#"{{ if eq .Status "firing" }}🚨{{ else }}✅{{ end }} <b>{{ .CommonLabels.alertname }}</b> · {{ len .Alerts.Firing }} firing, {{ len .Alerts.Resolved }} resolved
{{ range .Alerts }}• {{ .Labels.instance }}: {{ .Annotations.summary }} [{{ .Severity | toUpper }}] <a href="{{ .URL }}">#{{ .ID }}</a>
{{ end }}{{ with .CommonLabels.Remove .GroupLabels.Names }}common: {{ range .SortedPairs }}{{ .Name }}={{ .Value }} {{ end }}{{ end }}"#;

#[tokio::test]
async fn a_receiver_template_renders_alertmanager_data() {
    for db in databases().await {
        let kind = db.kind;
        let fake = FakeTelegram::start(TOKEN).await;
        let receiver = format!(
            "[[receivers]]\nname = \"telegram\"\ntelegram = {{ template = {} }}\n",
            toml_string(TEMPLATE)
        );
        let app = TestApp::start(config(
            &db.url,
            &fake,
            "repeat_interval = \"1h\"",
            &receiver,
        ))
        .await;
        let alerts = |ends: Option<String>| {
            let one = |instance: &str| {
                let mut a = json!({
                    "message": format!("replication lag on {instance}"),
                    "severity": "critical",
                    "labels": {"alertname": "ReplicationLag", "instance": instance, "team": "db"},
                    "annotations": {"summary": format!("lag > 30s on {instance}")},
                });
                if let Some(e) = &ends {
                    a["ends_at"] = json!(e);
                }
                a
            };
            json!([one("db-<1>"), one("db-2")])
        };
        let body = post(&app, "/api/v1/alerts", alerts(None), 202).await;
        let ids: Vec<i64> = body["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();

        let sent = wait_messages(&fake, "<b>ReplicationLag</b>", 1).await;
        let text = sent[0].text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0], "🚨 <b>ReplicationLag</b> · 2 firing, 0 resolved",
            "{kind}: {text}"
        );
        assert_eq!(
            lines[1],
            format!(
                "• db-&lt;1&gt;: lag &gt; 30s on db-&lt;1&gt; [CRITICAL] <a href=\"{EXTERNAL}/alerts/{}\">#{}</a>",
                ids[0], ids[0]
            ),
            "{kind}: user values escaped: {text}"
        );
        assert!(
            lines[2].starts_with("• db-2: lag &gt; 30s on db-2 [CRITICAL]"),
            "{kind}: {text}"
        );
        assert!(
            lines[3].contains("team=db")
                && lines[3].contains("severity=critical")
                && !lines[3].contains("alertname"),
            "{kind}: {text}"
        );
        assert_eq!(sent[0].params["parse_mode"], "HTML");
        assert!(
            sent[0].params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
                .as_str()
                .is_some_and(|d| d.starts_with("ack:")),
            "{kind}: buttons on templated messages too"
        );

        let past = (Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
        post(&app, "/api/v1/alerts", alerts(Some(past)), 202).await;
        let sent = wait_messages(&fake, "✅ <b>ReplicationLag</b>", 1).await;
        assert!(
            sent[0]
                .text()
                .starts_with("✅ <b>ReplicationLag</b> · 0 firing, 2 resolved"),
            "{kind}: {}",
            sent[0].text()
        );
        quiet_period().await;
        assert_eq!(
            messages_with(&fake, "<b>ReplicationLag</b>").len(),
            2,
            "{kind}"
        );
        app.stop().await;
    }
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("a JSON string is a TOML basic string")
}

/// A folder with one rule file.
struct RulesDir(tempfile::TempDir);

impl RulesDir {
    fn new(content: &str) -> RulesDir {
        let d = RulesDir(tempfile::tempdir().expect("tempdir"));
        d.write(content);
        d
    }
    fn file(&self) -> PathBuf {
        self.0.path().join("e2e.yml")
    }
    fn write(&self, content: &str) {
        std::fs::write(self.file(), content).expect("write rules");
    }
    fn glob(&self) -> String {
        format!("{}/*.yml", self.0.path().display())
    }
}

fn rule_file(expr: &str) -> String {
    format!(
        r#"groups:
- name: e2e
  interval: 200ms
  rules:
  - alert: AlwaysOn
    expr: {expr}
    for: 1s
    labels:
      severity: critical
      team: ops
    annotations:
      summary: "always on, value {{{{ $value }}}}"
"#
    )
}

#[tokio::test]
async fn a_firing_rule_notifies_once_and_its_resolution_once() {
    for db in databases().await {
        let kind = db.kind;
        let fake = FakeTelegram::start(TOKEN).await;
        let rules = RulesDir::new(&rule_file("vector(1) > 0"));
        let mut c = config(&db.url, &fake, "repeat_interval = \"1h\"", "");
        // The text as `sendMessage`; the photo with a chart: tests/telegram_charts.rs.
        c.telegram.charts = false;
        c.rules.files = vec![rules.glob()];
        c.rules.evaluation_interval = Duration::from_millis(200);
        let app = TestApp::start(c).await;

        let sent = wait_messages(&fake, "AlwaysOn", 1).await;
        let text = sent[0].text();
        assert!(
            text.starts_with("🔴 <b>FIRING</b> · <b>AlwaysOn</b>"),
            "{kind}: {text}"
        );
        assert!(text.contains("always on, value 1"), "{kind}: {text}");
        assert!(text.contains("team=<code>ops</code>"), "{kind}: {text}");
        assert!(
            text.contains("<b>Value:</b> <code>1</code>"),
            "{kind}: {text}"
        );
        let id = id_by_alertname(&app, "AlwaysOn").await;
        assert!(
            text.contains(&format!("{EXTERNAL}/alerts/{id}")),
            "{kind}: {text}"
        );
        // The rule keeps firing (and re-sending to the pipeline): one message.
        quiet_period().await;
        assert_eq!(notifications(&fake, "AlwaysOn").len(), 1, "{kind}");

        // The condition ends: the rule resolves, and so does the alert.
        rules.write(&rule_file("vector(1) < 0"));
        app.app.rules().reload().await.expect("reload");
        let sent = wait_messages(&fake, "RESOLVED", 1).await;
        assert!(
            sent[0]
                .text()
                .starts_with("✅ <b>RESOLVED</b> · <b>AlwaysOn</b>"),
            "{kind}: {}",
            sent[0].text()
        );
        quiet_period().await;
        assert_eq!(notifications(&fake, "AlwaysOn").len(), 2, "{kind}");
        let detail = alert_when(&app, id, "resolved and notified twice", |a| {
            a["state"] == "resolved" && notified_events(a).len() >= 2
        })
        .await;
        assert_eq!(detail["source"], "watchpost", "{kind}");
        app.stop().await;
    }
}

/// Whether a message is a notification (not a bot reply).
fn is_notification(c: &Call) -> bool {
    let t = c.text();
    t.contains("<b>FIRING</b> · ") || t.contains("<b>RESOLVED</b> · ")
}

/// Sends a command from `USER` in `chat` and returns the bot's answer: the next message
/// to that chat that is not a notification.
async fn command(fake: &FakeTelegram, chat: i64, text: &str) -> String {
    let before = to_chat(&fake.calls(), chat).len();
    fake.push_message(chat, USER, text);
    let calls = fake
        .wait_until(WAIT, |c| {
            to_chat(c, chat)
                .iter()
                .skip(before)
                .any(|c| !is_notification(c))
        })
        .await;
    to_chat(&calls, chat)
        .into_iter()
        .skip(before)
        .find(|c| !is_notification(c))
        .map(|c| c.text())
        .unwrap_or_default()
}

async fn silences(app: &TestApp) -> Vec<Value> {
    let (status, body) = app.get_json("/api/v2/silences").await;
    assert_eq!(status, 200, "{body}");
    body.as_array().cloned().unwrap_or_default()
}

async fn audit(app: &TestApp, action: &str) -> Vec<Value> {
    let (status, body) = app
        .get_json(&format!("/api/v1/audit?action={action}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["entries"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn bot_commands_act_on_the_real_alerts() {
    for db in databases().await {
        let kind = db.kind;
        let fake = FakeTelegram::start(TOKEN).await;
        // A short repeat_interval, so "not re-notified" means the ack held it back.
        let app = TestApp::start(config(&db.url, &fake, "repeat_interval = \"1s\"", "")).await;
        let id = ingest(
            &app,
            json!({"message": "queue backlog on <mq-1>", "severity": "warning",
                   "labels": {"alertname": "QueueBacklog", "instance": "mq-1"}}),
        )
        .await;
        wait_messages(&fake, "QueueBacklog", 1).await;

        // /alerts lists it (escaped).
        let text = command(&fake, CHAT, "/alerts").await;
        assert!(text.contains(&format!("#{id}")), "{kind}: {text}");
        assert!(text.contains("QueueBacklog"), "{kind}: {text}");
        assert!(
            text.contains("queue backlog on &lt;mq-1&gt;"),
            "{kind}: {text}"
        );

        // /alert ID shows it with its timeline, deliveries included.
        alert_when(&app, id, "notified", |a| !notified_events(a).is_empty()).await;
        let text = command(&fake, CHAT, &format!("/alert {id}")).await;
        assert!(
            text.contains("instance=<code>mq-1</code>"),
            "{kind}: {text}"
        );
        assert!(text.contains("notified"), "{kind}: {text}");
        assert!(text.contains("receiver: telegram"), "{kind}: {text}");
        assert!(text.contains("outcome: delivered"), "{kind}: {text}");

        // /status answers.
        let text = command(&fake, CHAT, "/status").await;
        assert!(text.contains("rules:"), "{kind}: {text}");
        assert!(text.contains("notification queue"), "{kind}: {text}");
        // One node (SQLite or a lone PostgreSQL node): it leads.
        let (_, cluster) = app.get_json("/api/v1/cluster").await;
        let me = cluster["self"].as_str().unwrap_or_default().to_string();
        assert!(
            text.contains(&format!("leader: <code>{me}</code>"))
                && text.contains("1/1 nodes alive"),
            "{kind}: /status names the leader ({cluster}): {text}"
        );

        // A stranger changes nothing and learns nothing.
        let text = command(&fake, STRANGER_CHAT, &format!("/ack {id} mine")).await;
        assert_eq!(text, "not authorized", "{kind}");
        let text = command(&fake, STRANGER_CHAT, "/alerts").await;
        assert_eq!(text, "not authorized", "{kind}");
        let text = command(&fake, STRANGER_CHAT, "/silence alertname=QueueBacklog 1h").await;
        assert_eq!(text, "not authorized", "{kind}");
        let (_, a) = app.get_json(&format!("/api/v1/alerts/{id}")).await;
        assert!(a["acknowledged"].is_null(), "{kind}: {a}");
        assert!(silences(&app).await.is_empty(), "{kind}");

        // /ack ID comment acknowledges the real alert, with the Telegram user.
        let text = command(&fake, CHAT, &format!("/ack {id} looking into it")).await;
        assert!(
            text.contains(&format!("Acknowledged <b>#{id}")),
            "{kind}: {text}"
        );
        let a = alert_when(&app, id, "acknowledged", |a| !a["acknowledged"].is_null()).await;
        let by = a["acknowledged"]["by"].as_str().unwrap_or_default();
        assert!(
            by.contains(&format!("telegram:@user{USER} ({USER})")),
            "{kind}: {a}"
        );
        assert_eq!(a["acknowledged"]["comment"], "looking into it", "{kind}");
        let entries = audit(&app, "alert.ack").await;
        assert_eq!(entries.len(), 1, "{kind}: {entries:?}");
        assert_eq!(entries[0]["target"], id.to_string(), "{kind}");
        assert!(
            entries[0]["actor"]
                .as_str()
                .unwrap_or_default()
                .contains(&format!("telegram:@user{USER}")),
            "{kind}: {}",
            entries[0]
        );

        // Acknowledged: not re-notified while it fires, though repeat_interval (1s)
        // passes and the alert keeps coming. A control alert in another group is.
        let queued = settled_outbox(&app, id).await;
        let before = notifications(&fake, "QueueBacklog").len();
        assert_eq!(
            before, queued,
            "{kind}: every enqueued notification was sent"
        );
        let backlog = json!({"message": "queue backlog on <mq-1>", "severity": "warning",
                             "labels": {"alertname": "QueueBacklog", "instance": "mq-1"}});
        let control = json!({"message": "control", "severity": "info",
                             "labels": {"alertname": "Control"}});
        ingest(&app, control.clone()).await;
        for _ in 0..3 {
            ingest(&app, backlog.clone()).await;
            tokio::time::sleep(Duration::from_millis(800)).await;
        }
        wait_messages(&fake, "<b>FIRING</b> · <b>Control</b>", 2).await;
        assert_eq!(
            notifications(&fake, "QueueBacklog").len(),
            before,
            "{kind}: an acknowledged alert is not re-notified"
        );
        assert_eq!(
            settled_outbox(&app, id).await,
            queued,
            "{kind}: nothing enqueued for the acknowledged alert"
        );
        // The control alert resolves (and stops repeating).
        let mut done = control.clone();
        done["ends_at"] = json!((Utc::now() - chrono::Duration::seconds(1)).to_rfc3339());
        ingest(&app, done).await;
        wait_messages(&fake, "<b>RESOLVED</b> · <b>Control</b>", 1).await;

        // /silence alertname=X 1h reason: visible in the API, mutes the next alert.
        let text = command(&fake, CHAT, "/silence alertname=DbDown 1h planned failover").await;
        assert!(text.contains("Silence <code>"), "{kind}: {text}");
        let list = silences(&app).await;
        assert_eq!(list.len(), 1, "{kind}: {list:?}");
        let s = &list[0];
        let sid = s["id"].as_str().expect("silence id").to_string();
        assert!(
            text.contains(&sid),
            "{kind}: the answer names the silence: {text}"
        );
        assert_eq!(s["status"]["state"], "active", "{kind}: {s}");
        assert_eq!(s["comment"], "planned failover", "{kind}: {s}");
        assert_eq!(
            s["matchers"],
            json!([{"name": "alertname", "value": "DbDown", "isRegex": false, "isEqual": true}]),
            "{kind}"
        );
        assert!(
            s["createdBy"]
                .as_str()
                .unwrap_or_default()
                .contains("telegram:@user7"),
            "{kind}: {s}"
        );
        let muted = ingest(
            &app,
            json!({"message": "db down", "severity": "critical", "labels": {"alertname": "DbDown"}}),
        )
        .await;
        alert_when(&app, muted, "silenced", |a| a["silenced"] == true).await;
        quiet_period().await;
        assert!(
            notifications(&fake, "DbDown").is_empty(),
            "{kind}: a silenced alert is not notified"
        );
        assert_eq!(audit(&app, "silence.create").await.len(), 1, "{kind}");

        // /unsilence ID expires it.
        let text = command(&fake, CHAT, &format!("/unsilence {sid}")).await;
        assert!(text.contains("expired"), "{kind}: {text}");
        let list = silences(&app).await;
        assert_eq!(list[0]["status"]["state"], "expired", "{kind}: {list:?}");
        assert_eq!(audit(&app, "silence.expire").await.len(), 1, "{kind}");
        // Unmuted, the alert is announced now.
        wait_messages(&fake, "<b>FIRING</b> · <b>DbDown</b>", 1).await;
        app.stop().await;
    }
}

#[tokio::test]
async fn the_ack_button_acknowledges_the_real_alert() {
    for db in databases().await {
        let kind = db.kind;
        let fake = FakeTelegram::start(TOKEN).await;
        let app = TestApp::start(config(&db.url, &fake, "repeat_interval = \"1s\"", "")).await;
        let alert = json!({"message": "cert expires in 3 days", "severity": "warning",
                           "labels": {"alertname": "CertExpiry", "domain": "example.com"}});
        let id = ingest(&app, alert.clone()).await;
        let sent = wait_messages(&fake, "CertExpiry", 1).await;
        let keyboard = &sent[0].params["reply_markup"]["inline_keyboard"][0];
        let ack = keyboard[0]["callback_data"].as_str().expect("Ack button");

        // A stranger's press is refused.
        let refused = fake.push_callback(STRANGER_CHAT, USER, ack);
        let calls = fake
            .wait_until(WAIT, |c| {
                c.iter().any(|c| {
                    c.method == "answercallbackquery" && c.params["callback_query_id"] == refused
                })
            })
            .await;
        let answer = calls
            .iter()
            .find(|c| c.method == "answercallbackquery")
            .unwrap();
        assert_eq!(answer.params["text"], "not authorized", "{kind}");
        let (_, a) = app.get_json(&format!("/api/v1/alerts/{id}")).await;
        assert!(a["acknowledged"].is_null(), "{kind}: {a}");

        let pressed = fake.push_callback(CHAT, USER, ack);
        let calls = fake
            .wait_until(WAIT, |c| {
                c.iter().any(|c| {
                    c.method == "answercallbackquery" && c.params["callback_query_id"] == pressed
                })
            })
            .await;
        let answer = calls
            .iter()
            .find(|c| c.method == "answercallbackquery" && c.params["callback_query_id"] == pressed)
            .unwrap();
        assert_eq!(
            answer.params["text"],
            format!("Acknowledged #{id}"),
            "{kind}"
        );
        let a = alert_when(&app, id, "acknowledged", |a| !a["acknowledged"].is_null()).await;
        assert!(
            a["acknowledged"]["by"]
                .as_str()
                .unwrap_or_default()
                .contains("telegram:@user7"),
            "{kind}: {a}"
        );
        assert!(
            a["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["kind"] == "acknowledged"),
            "{kind}: {a}"
        );
        let announced = wait_messages(&fake, "acknowledged", 1).await;
        assert!(
            announced[0]
                .text()
                .contains(&format!("@user7 acknowledged #{id}")),
            "{kind}: {}",
            announced[0].text()
        );

        // Repeats past repeat_interval stay quiet now (a repeat enqueued before the
        // press may still have been sent: count from the settled outbox).
        let queued = settled_outbox(&app, id).await;
        for _ in 0..3 {
            ingest(&app, alert.clone()).await;
            tokio::time::sleep(Duration::from_millis(800)).await;
        }
        assert_eq!(notifications(&fake, "CertExpiry").len(), queued, "{kind}");
        assert_eq!(settled_outbox(&app, id).await, queued, "{kind}");
        app.stop().await;
    }
}
