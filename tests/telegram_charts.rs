//! Charts with rule alerts, end to end on SQLite and PostgreSQL: a rule over a metric
//! pushed with `POST /api/v1/write` (an hour of history) fires and resolves; the fake
//! Bot API receives `sendPhoto` whose PNG decodes, has the configured size and shows the
//! data; `charts = false` sends text; a long text follows the photo as a reply; the
//! same chart at `GET /api/v1/alerts/{id}/chart.png`; a non-rule alert has none; a
//! chart that cannot be drawn leaves the text message.

mod common;
#[path = "support/fake_telegram.rs"]
mod fake_telegram;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::{TestApp, databases, test_config_with};
use fake_telegram::{Call, FakeTelegram, Fault};
use prost::Message;
use serde_json::Value;
use watchpost::config::Config;
use watchpost::notify::chart::source::{ChartRef, ChartRenderer, SourceError};
use watchpost::notify::sender::{OutboxTransport, Started};
use watchpost::notify::telegram::{TelegramTransport, make_bot};
use watchpost::notify::{Attempt, Limits, Outbox, OutboxRow, RateLimiter, TelegramPayload};
use watchpost::remote_write::proto::{Label, Sample, TimeSeries, WriteRequest};

const TOKEN: &str = "123456:TEST-token";
const CHAT: i64 = 100;
const WAIT: Duration = Duration::from_secs(30);
/// The alert's own series, as the chart draws it (Tableau blue) and the threshold (red).
const OWN_BLUE: [u8; 3] = [31, 119, 180];
const THRESHOLD_RED: [u8; 3] = [214, 39, 40];

/// A rule file in a temporary folder.
struct Rules {
    dir: tempfile::TempDir,
}

impl Rules {
    fn new(rules: &str) -> Rules {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("groups:\n- name: load\n  interval: 200ms\n  rules:\n{rules}");
        std::fs::write(dir.path().join("load.yml"), text).unwrap();
        Rules { dir }
    }
    fn glob(&self) -> String {
        format!("{}/*.yml", self.dir.path().display())
    }
}

const HIGH_LOAD: &str = r#"  - alert: HighLoad
    expr: test_load > 5
    labels:
      severity: critical
    annotations:
      summary: "load {{ $value }} on {{ $labels.instance }}"
"#;

/// A config sending to the fake Telegram, with `extra` TOML appended.
fn config(db_url: &str, fake: &FakeTelegram, rules: &Rules, extra: &str) -> Config {
    let mut c = test_config_with(
        db_url,
        &format!(
            r#"
external_url = "https://watchpost.example"
[tsdb]
retention = "3h"
[telegram]
bot_token = "{TOKEN}"
api_url = "{}"
chat_ids = [{CHAT}]
chart_size = "720x400"
[route]
receiver = "telegram"
group_by = ["alertname"]
group_wait = "200ms"
group_interval = "500ms"
repeat_interval = "1h"
{extra}
"#,
            fake.url
        ),
    );
    c.rules.files = vec![rules.glob()];
    c.rules.evaluation_interval = Duration::from_millis(200);
    c
}

fn series(instance: &str, points: &[(i64, f64)]) -> TimeSeries {
    let label = |name: &str, value: &str| Label {
        name: name.into(),
        value: value.into(),
    };
    TimeSeries {
        labels: vec![
            label("__name__", "test_load"),
            label("instance", instance),
            label("job", "node"),
        ],
        samples: points
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
        ..TimeSeries::default()
    }
}

/// Pushes `series` with remote write; asserts it was accepted.
async fn push(app: &TestApp, timeseries: Vec<TimeSeries>) {
    let raw = WriteRequest {
        timeseries,
        metadata: vec![],
    }
    .encode_to_vec();
    let body = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
    let r = app
        .client
        .post(app.url("/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert!(
        status < 300,
        "{status}: {}",
        r.text().await.unwrap_or_default()
    );
}

/// An hour of `test_load` for three hosts, every 15 s up to now: `web-3` climbs over 5
/// in the last quarter hour, the others stay low.
async fn push_history(app: &TestApp) -> i64 {
    let now = chrono::Utc::now().timestamp_millis();
    let at = |k: i64| now - 3_600_000 + k * 15_000;
    let wave = |k: i64, base: f64| base + (k as f64 / 12.0).sin();
    let low = |base: f64| {
        (0..=240)
            .map(|k| (at(k), wave(k, base)))
            .collect::<Vec<_>>()
    };
    let climbing: Vec<(i64, f64)> = (0..=240)
        .map(|k| (at(k), wave(k, 2.0) + if k > 180 { 5.0 } else { 0.0 }))
        .collect();
    push(
        app,
        vec![
            series("web-1", &low(1.0)),
            series("web-2", &low(2.5)),
            series("web-3", &climbing),
        ],
    )
    .await;
    now
}

/// Drops `web-3` back to 1: the alert resolves.
async fn calm_down(app: &TestApp) {
    let now = chrono::Utc::now().timestamp_millis();
    push(app, vec![series("web-3", &[(now, 1.0)])]).await;
}

/// A PNG's size and its RGB pixels.
fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<[u8; 3]>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).expect("PNG data");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let pixels = buf[..info.buffer_size()]
        .chunks(3)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    (info.width, info.height, pixels)
}

/// Asserts `png_bytes` is a `w`×`h` chart that shows something: many colours, the
/// plot area well covered, the alert's own series and the threshold line drawn.
fn assert_chart(png_bytes: &[u8], w: u32, h: u32) {
    let (width, height, pixels) = decode(png_bytes);
    assert_eq!((width, height), (w, h));
    let colours: HashSet<[u8; 3]> = pixels.iter().copied().collect();
    assert!(colours.len() > 40, "only {} colours", colours.len());
    // The middle of the plot area: lines, grid, shading — not background.
    let (w, h) = (w as usize, h as usize);
    let middle: Vec<[u8; 3]> = (h / 4..h * 3 / 4)
        .flat_map(|y| (w / 4..w * 3 / 4).map(move |x| (x, y)))
        .map(|(x, y)| pixels[y * w + x])
        .collect();
    let drawn = middle.iter().filter(|p| **p != [255, 255, 255]).count();
    assert!(
        drawn * 20 > middle.len(),
        "plot area nearly blank: {drawn} of {}",
        middle.len()
    );
    let count = |c: [u8; 3]| pixels.iter().filter(|p| **p == c).count();
    assert!(
        count(OWN_BLUE) > 200,
        "the alert's series: {}",
        count(OWN_BLUE)
    );
    assert!(
        count(THRESHOLD_RED) > 100,
        "the threshold line: {}",
        count(THRESHOLD_RED)
    );
}

/// The id of the firing (or last) `HighLoad` alert.
async fn rule_alert_id(app: &TestApp) -> i64 {
    common::eventually(WAIT, || async {
        let (_, body) = app.get_json("/api/v1/alerts?source=watchpost").await;
        body["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["alertname"] == "HighLoad")
            .and_then(|a| a["id"].as_i64())
    })
    .await
    .expect("the rule's alert is stored")
}

fn photos_where(calls: &[Call], pred: impl Fn(&Call) -> bool) -> usize {
    calls
        .iter()
        .filter(|c| c.method == "sendphoto" && c.status == 200 && pred(c))
        .count()
}

#[tokio::test]
async fn a_rule_alert_and_its_resolve_come_with_a_chart() {
    for db in databases().await {
        let fake = FakeTelegram::start(TOKEN).await;
        let rules = Rules::new(HIGH_LOAD);
        let app = TestApp::start(config(&db.url, &fake, &rules, "")).await;
        push_history(&app).await;

        let calls = fake
            .wait_until(WAIT, |c| {
                photos_where(c, |p| p.caption().contains("FIRING")) >= 1
            })
            .await;
        let photo = calls
            .iter()
            .find(|c| c.method == "sendphoto" && c.status == 200)
            .unwrap();
        assert_eq!(photo.chat_id(), Some(CHAT), "{}", db.kind);
        assert_eq!(photo.params["parse_mode"], "HTML");
        let caption = photo.caption();
        assert!(caption.encode_utf16().count() <= 1024, "{caption}");
        assert!(
            caption.contains("HighLoad") && caption.contains("web-3"),
            "{caption}"
        );
        // One part: the Ack / Silence buttons are on the photo.
        assert!(
            photo.params["reply_markup"]["inline_keyboard"].is_array(),
            "{}",
            photo.params
        );
        let png_bytes = photo.file("photo").expect("the photo's bytes");
        assert_chart(png_bytes, 720, 400);
        if let Ok(path) = std::env::var("WATCHPOST_CHART_PNG") {
            std::fs::write(PathBuf::from(path), png_bytes).unwrap();
        }
        assert!(
            fake.delivered().is_empty(),
            "no text message besides the photo"
        );

        // The chart API: the same chart at any size.
        let id = rule_alert_id(&app).await;
        let r = app
            .client
            .get(app.url(&format!(
                "/api/v1/alerts/{id}/chart.png?width=640&height=360&window=30m"
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.headers()["content-type"], "image/png");
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert_chart(&r.bytes().await.unwrap(), 640, 360);
        let (status, body) = app
            .get_json(&format!("/api/v1/alerts/{id}/chart.png?width=5000"))
            .await;
        assert_eq!(status, 400);
        assert!(
            body["error"].as_str().unwrap().starts_with("width"),
            "{body}"
        );
        let (status, body) = app.get_json("/api/v1/alerts/999999/chart.png").await;
        assert_eq!(status, 404, "{body}");

        calm_down(&app).await;
        let calls = fake
            .wait_until(WAIT, |c| {
                photos_where(c, |p| p.caption().contains("RESOLVED")) >= 1
            })
            .await;
        let resolved = calls
            .iter()
            .find(|c| c.method == "sendphoto" && c.caption().contains("RESOLVED"))
            .unwrap();
        let (w, h, _) = decode(resolved.file("photo").unwrap());
        assert_eq!((w, h), (720, 400));
        assert!(resolved.caption().encode_utf16().count() <= 1024);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_receiver_without_charts_gets_text() {
    for db in databases().await {
        let fake = FakeTelegram::start(TOKEN).await;
        let rules = Rules::new(HIGH_LOAD);
        let extra = "[[receivers]]\nname = \"ops\"\ntelegram = { charts = false }\n";
        let mut c = config(&db.url, &fake, &rules, extra);
        c.route.as_mut().unwrap().receiver = Some("ops".into());
        let app = TestApp::start(c).await;
        push_history(&app).await;
        let sent = fake.wait_delivered(1, WAIT).await;
        assert!(sent[0].text().contains("HighLoad"), "{}", db.kind);
        assert!(fake.calls_of("sendPhoto").is_empty(), "{}", db.kind);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_photo_telegram_refuses_leaves_the_text() {
    for db in databases().await {
        let fake = FakeTelegram::start(TOKEN).await;
        fake.fail_next(
            "sendPhoto",
            Fault::Error(400, "Bad Request: PHOTO_INVALID_DIMENSIONS".into()),
        );
        let rules = Rules::new(HIGH_LOAD);
        let app = TestApp::start(config(&db.url, &fake, &rules, "")).await;
        push_history(&app).await;
        let sent = fake.wait_delivered(1, WAIT).await;
        assert!(sent[0].text().contains("HighLoad"), "{}", db.kind);
        let photos = fake.calls_of("sendPhoto");
        assert_eq!(photos.len(), 1, "{}", db.kind);
        assert_eq!(photos[0].status, 400);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_long_message_follows_its_photo_as_a_reply() {
    let long = "disk pressure and more; ".repeat(80);
    let rule = format!(
        "{HIGH_LOAD}      description: \"{long}\"\n      runbook_url: \"https://runbooks.example/load\"\n"
    );
    for db in databases().await {
        let fake = FakeTelegram::start(TOKEN).await;
        let rules = Rules::new(&rule);
        let app = TestApp::start(config(&db.url, &fake, &rules, "")).await;
        push_history(&app).await;
        let calls = fake
            .wait_until(WAIT, |c| {
                c.iter()
                    .any(|m| m.method == "sendmessage" && m.status == 200)
            })
            .await;
        let photo = calls.iter().find(|c| c.method == "sendphoto").unwrap();
        let reply = calls.iter().find(|c| c.method == "sendmessage").unwrap();
        assert_eq!((photo.status, reply.status), (200, 200), "{}", db.kind);
        assert!(photo.message_id.is_some());
        let (w, h, _) = decode(photo.file("photo").unwrap());
        assert_eq!((w, h), (720, 400));
        assert!(photo.at <= reply.at, "{}", db.kind);
        let caption = photo.caption();
        assert!(caption.encode_utf16().count() <= 1024, "{caption}");
        assert!(caption.starts_with("(1/2)"), "{caption}");
        assert!(reply.text().starts_with("(2/2)"), "{}", reply.text());
        assert_eq!(reply.reply_to(), photo.message_id, "{}", reply.params);
        // The buttons are on the last message only.
        assert!(photo.params["reply_markup"].is_null(), "{}", photo.params);
        assert!(reply.params["reply_markup"]["inline_keyboard"].is_array());
        app.stop().await;
    }
}

#[tokio::test]
async fn an_alert_not_from_a_rule_has_no_chart() {
    for db in databases().await {
        let fake = FakeTelegram::start(TOKEN).await;
        let rules = Rules::new(HIGH_LOAD);
        let app = TestApp::start(config(&db.url, &fake, &rules, "")).await;
        let (status, body) = app
            .post_json(
                "/api/v1/alerts",
                &serde_json::json!({
                    "message": "backup failed on db-1",
                    "severity": "critical",
                    "labels": {"alertname": "BackupFailed"}
                }),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        let id = body["ids"][0].as_i64().unwrap();
        let sent = fake.wait_delivered(1, WAIT).await;
        assert!(sent[0].text().contains("backup failed"), "{}", db.kind);
        assert!(fake.calls_of("sendPhoto").is_empty());
        let (status, body): (u16, Value) = app
            .get_json(&format!("/api/v1/alerts/{id}/chart.png"))
            .await;
        assert_eq!(status, 422, "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("not from a watchpost rule"),
            "{body}"
        );
        app.stop().await;
    }
}

/// A renderer whose data is never readable.
struct Broken;

#[async_trait::async_trait]
impl ChartRenderer for Broken {
    async fn render(&self, _: &ChartRef) -> Result<Vec<u8>, SourceError> {
        Err(SourceError::Query("the store is unavailable".into()))
    }
}

#[tokio::test]
async fn a_chart_that_cannot_be_drawn_falls_back_to_text() {
    for db in databases().await {
        let fake = FakeTelegram::start(TOKEN).await;
        let metrics = watchpost::metrics::Metrics::new().unwrap();
        let store =
            watchpost::store::Db::connect(&common::test_config(&db.url), metrics.db.clone())
                .await
                .unwrap();
        store.migrate().await.unwrap();
        let bot = make_bot(TOKEN, &fake.url, Duration::from_secs(10)).unwrap();
        let transport = TelegramTransport::new(bot, Arc::new(RateLimiter::new(Limits::default())))
            .with_charts(Arc::new(Broken), Outbox::new(store));
        let payload = TelegramPayload {
            chat_id: CHAT,
            text: "🔴 <b>FIRING</b> · <b>HighLoad</b>".into(),
            message_thread_id: None,
            disable_notification: false,
            buttons: false,
            ack_ids: vec![],
            silence_labels: Default::default(),
            chart: Some(ChartRef {
                alert_id: 7,
                alertname: "HighLoad".into(),
                expr: "test_load > 5".into(),
                labels: Default::default(),
                starts_at_ms: 0,
                resolved_at_ms: None,
                end_ms: 3_600_000,
            }),
            reply_to: None,
        };
        let row = OutboxRow {
            id: 1,
            idempotency_key: "k".into(),
            receiver: "telegram".into(),
            kind: "telegram".into(),
            target: format!("telegram:{CHAT}"),
            group_key: "g".into(),
            status: "firing".into(),
            part: 1,
            parts: 1,
            payload: serde_json::to_string(&payload).unwrap(),
            alert_ids: vec![7],
            state: "pending".into(),
            attempts: 0,
            created_ms: 0,
            next_attempt_ms: 0,
            updated_ms: 0,
            delivered_ms: None,
            last_error: None,
            response: None,
            claimed_by: None,
            lease_until_ms: None,
            ambiguous: 0,
            claim_epoch: None,
        };
        let attempt = transport
            .send(&row, &Started::new(watchpost::cluster::Fence::None))
            .await;
        assert!(
            matches!(attempt, Attempt::Delivered(_)),
            "{}: {attempt:?}",
            db.kind
        );
        let sent = fake.delivered();
        assert_eq!(sent.len(), 1);
        assert!(sent[0].text().contains("HighLoad"));
        assert!(fake.calls_of("sendPhoto").is_empty());
    }
}
