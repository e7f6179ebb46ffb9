//! The Telegram receiver on teloxide: sends outbox rows with `sendMessage` (HTML parse
//! mode, forum topics, silent messages, Ack / Silence 1h buttons), under the shared
//! [`RateLimiter`], and maps Telegram's answers to retry decisions.
//!
//! A row with a chart goes out with `sendPhoto`: the PNG is drawn at send time from the
//! row's [`ChartRef`] (never stored), the text is its caption. A chart that cannot be
//! drawn falls back to the text message. The rest of a caption too long for one photo
//! follows as replies to it (the photo's message id is read from its row's answer).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use teloxide::prelude::*;
use teloxide::types::{
    ChatId, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, LinkPreviewOptions, MessageId,
    ParseMode, ReplyParameters, ThreadId,
};
use teloxide::{ApiError, RequestError};

use super::chart::source::{ChartRef, ChartRenderer};
use super::outbox::{Outbox, OutboxRow};
use super::policy::Attempt;
use super::ratelimit::RateLimiter;
use super::sender::{OutboxTransport, Started};
use super::split::strip_tags;

/// What a Telegram outbox row sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TelegramPayload {
    /// Chat.
    pub chat_id: i64,
    /// HTML text (one part).
    pub text: String,
    /// Forum topic.
    #[serde(default)]
    pub message_thread_id: Option<i32>,
    /// Send silently.
    #[serde(default)]
    pub disable_notification: bool,
    /// Attach Ack / Silence 1h buttons (their callback data names this row).
    #[serde(default)]
    pub buttons: bool,
    /// Alerts the Ack button acknowledges.
    #[serde(default)]
    pub ack_ids: Vec<i64>,
    /// Labels the Silence button silences for an hour (equality matchers).
    #[serde(default)]
    pub silence_labels: std::collections::BTreeMap<String, String>,
    /// Send as a photo of this chart, `text` as its caption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<ChartRef>,
    /// Reply to the message the row with this idempotency key sent (the photo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

/// Callback data prefix of the Ack button (`ack:<outbox row id>`).
pub const ACK_PREFIX: &str = "ack:";
/// Callback data prefix of the Silence 1h button (`sil:<outbox row id>`).
pub const SILENCE_PREFIX: &str = "sil:";

/// The teloxide bot for `api_url`; proxies from the environment are honoured except
/// for a loopback API (a local Bot API server or a test fake).
pub fn make_bot(token: &str, api_url: &str, timeout: Duration) -> Result<Bot, String> {
    let url = reqwest::Url::parse(api_url).map_err(|e| format!("telegram.api_url: {e}"))?;
    let loopback = matches!(
        url.host_str(),
        Some("localhost" | "127.0.0.1" | "[::1]" | "::1")
    );
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout)
        .tcp_nodelay(true);
    if loopback {
        builder = builder.no_proxy();
    }
    let client = builder
        .build()
        .map_err(|e| format!("telegram HTTP client: {e}"))?;
    Ok(Bot::with_client(token, client).set_api_url(url))
}

/// How an error from Telegram is handled.
pub fn classify(err: &RequestError) -> Attempt {
    match err {
        RequestError::RetryAfter(s) => Attempt::RetryAfter(
            s.duration(),
            format!("429 Too Many Requests: retry after {s}"),
        ),
        RequestError::Network(e) => Attempt::network(e),
        RequestError::InvalidJson { raw, .. } => Attempt::Transient(format!(
            "unexpected answer from Telegram: {}",
            raw.chars().take(200).collect::<String>()
        )),
        RequestError::Io(e) => Attempt::Transient(format!("I/O error: {e}")),
        RequestError::MigrateToChatId(id) => Attempt::Rejected(format!(
            "group chat migrated to supergroup {id}; update chat_ids"
        )),
        RequestError::Api(api) => classify_api(api),
    }
}

fn classify_api(api: &ApiError) -> Attempt {
    match api {
        ApiError::Unknown(desc) => {
            let permanent = ["Bad Request", "Forbidden", "Unauthorized", "Not Found"]
                .iter()
                .any(|p| desc.starts_with(p));
            if permanent {
                Attempt::Rejected(desc.clone())
            } else {
                // "Internal Server Error", "Bad Gateway", flood without parameters…
                Attempt::Transient(desc.clone())
            }
        }
        ApiError::TerminatedByOtherGetUpdates => Attempt::Transient(api.to_string()),
        ApiError::BotBlocked => Attempt::Rejected(
            "403 Forbidden: the bot was blocked by the user (unblock it, or remove the chat from chat_ids)".into(),
        ),
        // Every other known error is a 400/401/403 (chat not found, kicked, …).
        other => Attempt::Rejected(other.to_string()),
    }
}

/// Whether a raw Bot API answer is `{"ok": true, …}`.
fn answered_ok(raw: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(raw)
        .is_ok_and(|v| v.get("ok") == Some(&serde_json::Value::Bool(true)))
}

/// Sends Telegram rows.
pub struct TelegramTransport {
    bot: Bot,
    limiter: Arc<RateLimiter>,
    charts: Option<Arc<dyn ChartRenderer>>,
    outbox: Option<Outbox>,
}

/// One send's settings besides the payload.
struct SendOpts<'a> {
    chat: i64,
    row_id: i64,
    html: bool,
    photo: Option<&'a [u8]>,
    reply_to: Option<i32>,
}

impl TelegramTransport {
    /// A transport over `bot`, sharing `limiter` with the bot's replies.
    pub fn new(bot: Bot, limiter: Arc<RateLimiter>) -> Self {
        TelegramTransport {
            bot,
            limiter,
            charts: None,
            outbox: None,
        }
    }

    /// Draws rows' charts with `charts`; reads from `outbox` which message a
    /// continuation replies to.
    pub fn with_charts(mut self, charts: Arc<dyn ChartRenderer>, outbox: Outbox) -> Self {
        self.charts = Some(charts);
        self.outbox = Some(outbox);
        self
    }

    /// The chart of `p` as PNG, if it has one and it can be drawn (else logged: the
    /// text goes out alone).
    async fn photo(&self, p: &TelegramPayload, row_id: i64) -> Option<Vec<u8>> {
        let chart = p.chart.as_ref()?;
        let Some(charts) = &self.charts else {
            tracing::warn!(id = row_id, "no chart renderer; sending the text alone");
            return None;
        };
        match charts.render(chart).await {
            Ok(png) => Some(png),
            Err(e) => {
                tracing::warn!(id = row_id, alert = chart.alert_id, error = %e, "chart not drawn; sending the text alone");
                None
            }
        }
    }

    /// The message id `p` replies to: the one its photo's row was answered with.
    async fn reply_target(&self, p: &TelegramPayload, row_id: i64) -> Option<i32> {
        let (key, outbox) = (p.reply_to.as_deref()?, self.outbox.as_ref()?);
        match outbox.response_of(key).await {
            Ok(answer) => answer.as_deref().and_then(message_id_of),
            Err(e) => {
                tracing::warn!(id = row_id, error = %e, "cannot read the message replied to; sending without reply");
                None
            }
        }
    }

    async fn send_once(
        &self,
        p: &TelegramPayload,
        o: &SendOpts<'_>,
        started: &Started,
    ) -> Result<Message, RequestError> {
        let _permit = self.limiter.acquire(o.chat).await;
        let text = if o.html {
            p.text.clone()
        } else {
            strip_tags(&p.text)
        };
        let markup = p
            .buttons
            .then(|| buttons(o.row_id, !p.silence_labels.is_empty()));
        let reply = o.reply_to.map(|id| ReplyParameters {
            allow_sending_without_reply: Some(true),
            ..ReplyParameters::new(MessageId(id))
        });
        let thread = p.message_thread_id.map(|t| ThreadId(MessageId(t)));
        if !started.mark() {
            return Err(RequestError::Io(Arc::new(std::io::Error::other(
                "not sent: this node stopped leading the cluster",
            ))));
        }
        let result = match o.photo {
            Some(png) => {
                let file = InputFile::memory(png.to_vec()).file_name("chart.png");
                let mut req = self
                    .bot
                    .send_photo(ChatId(o.chat), file)
                    .caption(text)
                    .disable_notification(p.disable_notification);
                if o.html {
                    req = req.parse_mode(ParseMode::Html);
                }
                req.message_thread_id = thread;
                req.reply_markup = markup.map(Into::into);
                req.reply_parameters = reply;
                req.await
            }
            None => {
                let mut req = self
                    .bot
                    .send_message(ChatId(o.chat), text)
                    .link_preview_options(no_link_preview());
                if o.html {
                    req = req.parse_mode(ParseMode::Html);
                }
                if p.disable_notification {
                    req = req.disable_notification(true);
                }
                req.message_thread_id = thread;
                req.reply_markup = markup.map(Into::into);
                req.reply_parameters = reply;
                req.await
            }
        };
        let chat = o.chat;
        if let Err(RequestError::RetryAfter(s)) = &result {
            self.limiter
                .block(chat, tokio::time::Instant::now() + s.duration());
        }
        result
    }

    /// Sends `row`: the message, or its plain-text fallback, or to a migrated chat.
    async fn attempt(&self, row: &OutboxRow, started: &Started) -> Attempt {
        let p: TelegramPayload = match serde_json::from_str(&row.payload) {
            Ok(p) => p,
            Err(e) => return Attempt::Rejected(format!("unreadable payload: {e}")),
        };
        let photo = self.photo(&p, row.id).await;
        let mut o = SendOpts {
            chat: p.chat_id,
            row_id: row.id,
            html: true,
            photo: photo.as_deref(),
            reply_to: self.reply_target(&p, row.id).await,
        };
        // At most: the message, without its photo, a plain-text fallback, a migrated chat.
        for _ in 0..4 {
            match self.send_once(&p, &o, started).await {
                Ok(msg) => {
                    let mut answer = format!("chat_id={} message_id={}", msg.chat.id.0, msg.id.0);
                    if o.photo.is_some() {
                        answer.push_str(" (photo)");
                    }
                    if !o.html {
                        answer.push_str(" (sent as plain text)");
                    }
                    return Attempt::Delivered(Some(answer));
                }
                Err(RequestError::Api(ApiError::CantParseEntities(desc))) if o.html => {
                    tracing::warn!(id = row.id, chat = o.chat, error = %desc, "Telegram rejected the HTML; sending plain text");
                    o.html = false;
                }
                Err(RequestError::MigrateToChatId(new)) if new.0 != o.chat => {
                    tracing::warn!(
                        id = row.id,
                        old = o.chat,
                        new = new.0,
                        "chat migrated to a supergroup; sending there (update chat_ids)"
                    );
                    o.chat = new.0;
                }
                // Telegram said ok but the message did not parse: it was sent; sending
                // it again would double it.
                Err(RequestError::InvalidJson { raw, .. }) if answered_ok(&raw) => {
                    return Attempt::Delivered(Some("ok (unparsed answer)".into()));
                }
                // A photo Telegram refuses must not cost the notification: the text alone.
                Err(e) if o.photo.is_some() && matches!(classify(&e), Attempt::Rejected(_)) => {
                    tracing::warn!(id = row.id, chat = o.chat, error = %e, "Telegram refused the chart; sending the text alone");
                    o.photo = None;
                }
                Err(e) => return classify(&e),
            }
        }
        Attempt::Transient(
            "too many redirects (text without photo / plain-text fallback / chat migration)".into(),
        )
    }
}

/// The message id in a delivered row's answer (`chat_id=… message_id=N…`).
pub fn message_id_of(answer: &str) -> Option<i32> {
    let rest = answer.split("message_id=").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The inline keyboard of an alert message.
pub fn buttons(row_id: i64, with_silence: bool) -> InlineKeyboardMarkup {
    let mut row = vec![InlineKeyboardButton::callback(
        "✔ Ack",
        format!("{ACK_PREFIX}{row_id}"),
    )];
    if with_silence {
        row.push(InlineKeyboardButton::callback(
            "🔕 Silence 1h",
            format!("{SILENCE_PREFIX}{row_id}"),
        ));
    }
    InlineKeyboardMarkup::new(vec![row])
}

#[async_trait::async_trait]
impl OutboxTransport for TelegramTransport {
    /// The attempt's text never holds the bot token (a proxy in front of the Bot API may
    /// echo the request path in an answer that is not JSON).
    async fn send(&self, row: &OutboxRow, started: &Started) -> Attempt {
        let token = self.bot.token();
        self.attempt(row, started)
            .await
            .map_text(|t| crate::redact::without(t, token))
    }
}

/// Link previews off: a notification's links (dashboard, runbook) are not worth a card.
pub fn no_link_preview() -> LinkPreviewOptions {
    LinkPreviewOptions {
        is_disabled: true,
        url: None,
        prefer_small_media: false,
        prefer_large_media: false,
        show_above_text: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_of_answers() {
        assert_eq!(message_id_of("chat_id=-5 message_id=42 (photo)"), Some(42));
        assert_eq!(message_id_of("ok (unparsed answer)"), None);
    }

    #[test]
    fn payloads_without_charts_keep_their_shape() {
        let p = TelegramPayload {
            chat_id: 1,
            text: "x".into(),
            message_thread_id: None,
            disable_notification: false,
            buttons: false,
            ack_ids: vec![],
            silence_labels: Default::default(),
            chart: None,
            reply_to: None,
        };
        let json = serde_json::to_string(&p).unwrap();
        assert!(
            !json.contains("chart") && !json.contains("reply_to"),
            "{json}"
        );
        let old: TelegramPayload = serde_json::from_str(r#"{"chat_id":1,"text":"x"}"#).unwrap();
        assert_eq!(old.chart, None);
    }

    #[test]
    fn classification() {
        use teloxide::types::Seconds;
        assert!(matches!(
            classify(&RequestError::RetryAfter(Seconds::from_seconds(2))),
            Attempt::RetryAfter(d, _) if d == Duration::from_secs(2)
        ));
        assert!(matches!(
            classify(&RequestError::Api(ApiError::BotBlocked)),
            Attempt::Rejected(_)
        ));
        assert!(matches!(
            classify(&RequestError::Api(ApiError::ChatNotFound)),
            Attempt::Rejected(_)
        ));
        assert!(matches!(
            classify(&RequestError::Api(ApiError::Unknown(
                "Forbidden: nope".into()
            ))),
            Attempt::Rejected(_)
        ));
        assert!(matches!(
            classify(&RequestError::Api(ApiError::Unknown(
                "Internal Server Error".into()
            ))),
            Attempt::Transient(_)
        ));
    }
}
