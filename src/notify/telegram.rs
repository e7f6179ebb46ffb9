//! The Telegram receiver on teloxide: sends outbox rows with `sendMessage` (HTML parse
//! mode, forum topics, silent messages, Ack / Silence 1h buttons), under the shared
//! [`RateLimiter`], and maps Telegram's answers to retry decisions.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use teloxide::prelude::*;
use teloxide::types::{
    ChatId, InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions, MessageId, ParseMode,
    ThreadId,
};
use teloxide::{ApiError, RequestError};

use super::outbox::OutboxRow;
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
}

impl TelegramTransport {
    /// A transport over `bot`, sharing `limiter` with the bot's replies.
    pub fn new(bot: Bot, limiter: Arc<RateLimiter>) -> Self {
        TelegramTransport { bot, limiter }
    }

    async fn send_once(
        &self,
        p: &TelegramPayload,
        chat: i64,
        row_id: i64,
        html: bool,
        started: &Started,
    ) -> Result<Message, RequestError> {
        let _permit = self.limiter.acquire(chat).await;
        let text = if html {
            p.text.clone()
        } else {
            strip_tags(&p.text)
        };
        let mut req = self
            .bot
            .send_message(ChatId(chat), text)
            .link_preview_options(LinkPreviewOptions {
                is_disabled: true,
                url: None,
                prefer_small_media: false,
                prefer_large_media: false,
                show_above_text: false,
            });
        if html {
            req = req.parse_mode(ParseMode::Html);
        }
        if let Some(t) = p.message_thread_id {
            req = req.message_thread_id(ThreadId(MessageId(t)));
        }
        if p.disable_notification {
            req = req.disable_notification(true);
        }
        if p.buttons {
            req = req.reply_markup(buttons(row_id, !p.silence_labels.is_empty()));
        }
        if !started.mark() {
            return Err(RequestError::Io(Arc::new(std::io::Error::other(
                "not sent: this node stopped leading the cluster",
            ))));
        }
        let result = req.await;
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
        let mut chat = p.chat_id;
        let mut html = true;
        // At most: the message, a plain-text fallback, a migrated chat.
        for _ in 0..3 {
            match self.send_once(&p, chat, row.id, html, started).await {
                Ok(msg) => {
                    let mut answer = format!("chat_id={} message_id={}", msg.chat.id.0, msg.id.0);
                    if !html {
                        answer.push_str(" (sent as plain text)");
                    }
                    return Attempt::Delivered(Some(answer));
                }
                Err(RequestError::Api(ApiError::CantParseEntities(desc))) if html => {
                    tracing::warn!(id = row.id, chat, error = %desc, "Telegram rejected the HTML; sending plain text");
                    html = false;
                }
                Err(RequestError::MigrateToChatId(new)) if new.0 != chat => {
                    tracing::warn!(
                        id = row.id,
                        old = chat,
                        new = new.0,
                        "chat migrated to a supergroup; sending there (update chat_ids)"
                    );
                    chat = new.0;
                }
                // Telegram said ok but the message did not parse: it was sent; sending
                // it again would double it.
                Err(RequestError::InvalidJson { raw, .. }) if answered_ok(&raw) => {
                    return Attempt::Delivered(Some("ok (unparsed answer)".into()));
                }
                Err(e) => return classify(&e),
            }
        }
        Attempt::Transient("too many redirects (plain-text fallback / chat migration)".into())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
