//! The Telegram bot: long polling (`getUpdates`) with teloxide, commands and the inline
//! Ack / Silence 1h buttons of alert messages.
//!
//! Commands are obeyed only in `telegram.chat_ids`, and only from
//! `telegram.admin_user_ids` when that is set; anyone else gets "not authorized" and
//! nothing else. The bot calls the same service functions as the REST API through
//! [`BotBackend`]; every state change carries the Telegram user ([`Actor`]) for the
//! audit log.

pub mod backend;
pub mod commands;
pub mod format;
pub mod schedule;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use teloxide::RequestError;
use teloxide::prelude::*;
use teloxide::types::{
    AllowedUpdate, CallbackQuery, ChatId, MaybeInaccessibleMessage, ParseMode, ThreadId, UpdateKind,
};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::notify::split::{TELEGRAM_LIMIT, split_html};
use crate::notify::telegram::{ACK_PREFIX, SILENCE_PREFIX, TelegramPayload, make_bot};
use crate::notify::{NotifyHandle, RateLimiter};
use crate::silence::{Matcher, MatcherJson};
use commands::Command;

/// The exact answer to anyone not allowed to command the bot.
pub const NOT_AUTHORIZED: &str = "not authorized";
/// How long the Silence button silences.
pub const BUTTON_SILENCE: Duration = Duration::from_secs(3600);

/// The Telegram user behind a command, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    /// Telegram user id.
    pub user_id: i64,
    /// `@username`, if the user has one.
    pub username: Option<String>,
    /// First and last name.
    pub name: String,
    /// The chat the command came from.
    pub chat_id: i64,
}

impl Actor {
    /// `telegram:@user (12345)` — the audit log's actor.
    pub fn audit_name(&self) -> String {
        match &self.username {
            Some(u) => format!("telegram:@{u} ({})", self.user_id),
            None => format!("telegram:{} ({})", self.name, self.user_id),
        }
    }

    /// `telegram chat <id>` — the audit log's "from where".
    pub fn origin(&self) -> String {
        format!("telegram chat {}", self.chat_id)
    }

    /// The caller as the REST API's service functions see it (operator role; the name
    /// carries the Telegram user and chat for the audit log).
    pub fn principal(&self) -> crate::api::auth::Principal {
        crate::api::auth::Principal {
            name: format!("{} in {}", self.audit_name(), self.origin()),
            role: crate::config::Role::Operator,
            remote_addr: None,
            identity: None,
        }
    }

    fn display(&self) -> String {
        match &self.username {
            Some(u) => format!("@{u}"),
            None => self.name.clone(),
        }
    }

    fn from_user(u: &teloxide::types::User, chat_id: i64) -> Actor {
        Actor {
            user_id: u.id.0 as i64,
            username: u.username.clone(),
            name: match &u.last_name {
                Some(l) => format!("{} {l}", u.first_name),
                None => u.first_name.clone(),
            },
            chat_id,
        }
    }
}

/// An alert as the bot shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertInfo {
    /// Id.
    pub id: i64,
    /// `alertname` label.
    pub alertname: Option<String>,
    /// Message / summary.
    pub message: String,
    /// Severity.
    pub severity: String,
    /// `firing` or `resolved`.
    pub state: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End.
    pub ends_at: Option<DateTime<Utc>>,
    /// How often it was seen.
    pub count: i64,
    /// Silenced.
    pub silenced: bool,
    /// Who acknowledged it.
    pub acknowledged_by: Option<String>,
}

/// One event of an alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventInfo {
    /// `fired`, `acked`, `notified`, …
    pub kind: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Who / what, if known.
    pub detail: Option<String>,
}

/// `/alert ID`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertDetailInfo {
    /// The alert.
    pub alert: AlertInfo,
    /// Its events, oldest first.
    pub events: Vec<EventInfo>,
    /// Its type.
    pub alert_type: String,
    /// Why its type (the classifier's explanation).
    pub type_reason: String,
    /// Why its severity.
    pub severity_reason: String,
    /// Flapping: its notifications are held.
    pub flapping: bool,
}

/// A silence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SilenceInfo {
    /// Id.
    pub id: String,
    /// Matchers.
    pub matchers: Vec<MatcherJson>,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End.
    pub ends_at: DateTime<Utc>,
    /// Creator.
    pub created_by: String,
    /// Comment.
    pub comment: Option<String>,
}

/// A report of a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReportInfo {
    /// The window.
    pub window: Duration,
    /// Alerts in the window.
    pub total: u64,
    /// Still firing.
    pub firing: u64,
    /// Resolved.
    pub resolved: u64,
    /// Counts by severity.
    pub by_severity: Vec<(String, u64)>,
    /// Most frequent alerts.
    pub top_alerts: Vec<(String, u64)>,
    /// Sources with the most alerts.
    pub noisiest_sources: Vec<(String, u64)>,
    /// Mean time to resolve.
    pub mean_time_to_resolve: Option<Duration>,
}

/// Service health for `/status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusInfo {
    /// Version.
    pub version: String,
    /// The service runs.
    pub healthy: bool,
    /// The database answers.
    pub database: bool,
    /// Rules loaded.
    pub rules_loaded: u64,
    /// Rules whose last evaluation failed.
    pub rules_failing: u64,
    /// Firing alerts.
    pub firing_alerts: u64,
    /// Members and leader, when known.
    pub cluster: Option<crate::cluster::ClusterStatus>,
}

/// A backend failure; the message is shown to the user.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackendError {
    /// No such alert / silence.
    #[error("not found: {0}")]
    NotFound(String),
    /// Bad input.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The service cannot do it now.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// The service functions the bot calls — the same ones the REST API uses.
#[async_trait::async_trait]
pub trait BotBackend: Send + Sync + 'static {
    /// Firing alerts, most severe first, at most `limit`.
    async fn list_alerts(
        &self,
        severity: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AlertInfo>, BackendError>;
    /// One alert with its events.
    async fn get_alert(&self, id: i64) -> Result<Option<AlertDetailInfo>, BackendError>;
    /// Acknowledges an alert (audit: `actor`).
    async fn ack(
        &self,
        id: i64,
        actor: &Actor,
        comment: Option<&str>,
    ) -> Result<AlertInfo, BackendError>;
    /// Creates a silence from now for `duration` (audit: `actor`).
    async fn silence(
        &self,
        matchers: &[Matcher],
        duration: Duration,
        actor: &Actor,
        comment: Option<&str>,
    ) -> Result<SilenceInfo, BackendError>;
    /// Expires a silence (audit: `actor`).
    async fn unsilence(&self, id: &str, actor: &Actor) -> Result<(), BackendError>;
    /// The report of the last `window`.
    async fn report(&self, window: Duration) -> Result<ReportInfo, BackendError>;
    /// Health, database, rules, firing alerts.
    async fn status(&self) -> Result<StatusInfo, BackendError>;
    /// Every heartbeat with its status now.
    async fn heartbeats(&self) -> Result<Vec<crate::heartbeat::Heartbeat>, BackendError> {
        Err(BackendError::Unavailable(
            "heartbeats are not available".into(),
        ))
    }
    /// Every agent with its state now.
    async fn agents(&self) -> Result<Vec<crate::agent::registry::AgentView>, BackendError> {
        Err(BackendError::Unavailable("agents are not available".into()))
    }
}

/// The backend until the alert pipeline is wired in: read commands answer that the
/// pipeline is unavailable; `/status` and `/help` work.
pub struct UnavailableBackend;

const UNAVAILABLE: &str = "the alert pipeline is not available";

#[async_trait::async_trait]
impl BotBackend for UnavailableBackend {
    async fn list_alerts(&self, _: Option<&str>, _: usize) -> Result<Vec<AlertInfo>, BackendError> {
        Err(BackendError::Unavailable(UNAVAILABLE.into()))
    }
    async fn get_alert(&self, _: i64) -> Result<Option<AlertDetailInfo>, BackendError> {
        Err(BackendError::Unavailable(UNAVAILABLE.into()))
    }
    async fn ack(&self, _: i64, _: &Actor, _: Option<&str>) -> Result<AlertInfo, BackendError> {
        Err(BackendError::Unavailable(UNAVAILABLE.into()))
    }
    async fn silence(
        &self,
        _: &[Matcher],
        _: Duration,
        _: &Actor,
        _: Option<&str>,
    ) -> Result<SilenceInfo, BackendError> {
        Err(BackendError::Unavailable(UNAVAILABLE.into()))
    }
    async fn unsilence(&self, _: &str, _: &Actor) -> Result<(), BackendError> {
        Err(BackendError::Unavailable(UNAVAILABLE.into()))
    }
    async fn report(&self, _: Duration) -> Result<ReportInfo, BackendError> {
        Err(BackendError::Unavailable(UNAVAILABLE.into()))
    }
    async fn status(&self) -> Result<StatusInfo, BackendError> {
        Ok(StatusInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            healthy: true,
            database: true,
            rules_loaded: 0,
            rules_failing: 0,
            firing_alerts: 0,
            cluster: None,
        })
    }
}

/// Default `getUpdates` long-polling timeout (seconds).
const DEFAULT_POLL_TIMEOUT: u32 = 25;

/// The bot's polling loop and handlers. Cheap to clone.
#[derive(Clone)]
pub struct BotService {
    bot: Bot,
    config: Arc<Config>,
    backend: Arc<dyn BotBackend>,
    notify: NotifyHandle,
    limiter: Arc<RateLimiter>,
    poll_timeout: u32,
    username: Arc<Mutex<Option<String>>>,
    offset: Arc<Mutex<i32>>,
    leader: crate::cluster::LeaderGate,
}

impl BotService {
    /// A bot on `bot`'s token and API URL (a client with a long timeout is made for
    /// polling), answering through `backend`.
    pub fn new(
        bot: Bot,
        config: Arc<Config>,
        backend: Arc<dyn BotBackend>,
        notify: NotifyHandle,
        limiter: Arc<RateLimiter>,
        poll_timeout_secs: u32,
    ) -> BotService {
        let poll_timeout = if poll_timeout_secs == 0 {
            DEFAULT_POLL_TIMEOUT
        } else {
            poll_timeout_secs
        };
        let bot = make_bot(
            bot.token(),
            bot.api_url().as_str(),
            Duration::from_secs(poll_timeout as u64 + 15),
        )
        .unwrap_or(bot);
        BotService {
            bot,
            config,
            backend,
            notify,
            limiter,
            poll_timeout,
            username: Arc::new(Mutex::new(None)),
            offset: Arc::new(Mutex::new(0)),
            leader: crate::cluster::LeaderGate::single_node(),
        }
    }

    /// Polls only while `leader` answers true (a cluster's leader).
    pub fn with_leader(mut self, leader: crate::cluster::LeaderGate) -> Self {
        self.leader = leader;
        self
    }

    /// The `getUpdates` long-polling timeout.
    pub fn poll_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.poll_timeout))
    }

    /// Polls `getUpdates` until `shutdown`, handling each update in order.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        match tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            me = self.bot.get_me() => me,
        } {
            Ok(me) => {
                tracing::info!(bot = ?me.user.username, "telegram bot polling for commands");
                if let Ok(mut u) = self.username.lock() {
                    *u = me.user.username.clone();
                }
            }
            Err(e) => {
                tracing::warn!(error = %self.shown(&e), "getMe failed; commands addressed to any bot name are accepted")
            }
        }
        let mut backoff = Duration::from_secs(1);
        loop {
            // A node that stopped leading (its lease lapsed) polls no more, even before
            // its term is cancelled: Telegram allows one getUpdates per bot.
            if !self.leader.is_leader() {
                tracing::info!("no longer the cluster leader: the bot stops polling");
                break;
            }
            let offset = self.offset.lock().map(|o| *o).unwrap_or(0);
            let started = tokio::time::Instant::now();
            let request = self
                .bot
                .get_updates()
                .offset(offset)
                .timeout(self.poll_timeout)
                .allowed_updates([AllowedUpdate::Message, AllowedUpdate::CallbackQuery]);
            let result = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = request.send() => r,
            };
            match result {
                Ok(updates) => {
                    backoff = Duration::from_secs(1);
                    let empty = updates.is_empty();
                    for u in updates {
                        if let Ok(mut o) = self.offset.lock() {
                            *o = (*o).max(u.id.0 as i32 + 1);
                        }
                        self.handle_update(u).await;
                    }
                    // A server that does not long-poll must not make us spin.
                    if empty && started.elapsed() < Duration::from_millis(200) {
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %self.shown(&e), retry_in = ?backoff, "getUpdates failed");
                    let wait = match &e {
                        RequestError::RetryAfter(s) => s.duration().max(backoff),
                        _ => backoff,
                    };
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        // Confirm what was handled so a restart does not handle it again.
        let offset = self.offset.lock().map(|o| *o).unwrap_or(0);
        if offset > 0 {
            let confirm = self.bot.get_updates().offset(offset).timeout(0).limit(1);
            let _ = tokio::time::timeout(Duration::from_secs(2), confirm.send()).await;
        }
        Ok(())
    }

    /// Handles one update (exposed for tests).
    pub async fn handle_update(&self, update: Update) {
        match update.kind {
            UpdateKind::Message(msg) => self.handle_message(&msg).await,
            UpdateKind::CallbackQuery(q) => self.handle_callback(&q).await,
            _ => {}
        }
    }

    fn authorized(&self, chat_id: i64, user_id: Option<i64>) -> bool {
        let t = &self.config.telegram;
        t.chat_ids.contains(&chat_id)
            && (t.admin_user_ids.is_empty()
                || user_id.is_some_and(|u| t.admin_user_ids.contains(&u)))
    }

    async fn handle_message(&self, msg: &Message) {
        let Some(text) = msg.text() else { return };
        let Some((name, addressed, args)) = commands::split_command(text) else {
            return;
        };
        if let Some(to) = addressed {
            let me = self.username.lock().ok().and_then(|u| u.clone());
            if me.is_some_and(|me| !me.eq_ignore_ascii_case(&to)) {
                return; // addressed to another bot in the group
            }
        }
        let chat = msg.chat.id.0;
        let thread = msg.thread_id;
        let user = msg.from.as_ref();
        if !self.authorized(chat, user.map(|u| u.id.0 as i64)) {
            tracing::warn!(chat, user = ?user.map(|u| u.id.0), command = %name, "command from an unauthorized chat or user");
            self.reply_plain(chat, thread, NOT_AUTHORIZED).await;
            return;
        }
        let actor = match user {
            Some(u) => Actor::from_user(u, chat),
            None => Actor {
                user_id: 0,
                username: None,
                name: msg.chat.title().unwrap_or("channel").to_string(),
                chat_id: chat,
            },
        };
        let reply = match commands::parse(&name, &args) {
            Ok(cmd) => {
                tracing::info!(chat, user = %actor.audit_name(), command = %name, "bot command");
                self.execute(cmd, &actor).await
            }
            Err(usage) => crate::notify::message::escape(&usage),
        };
        self.reply(chat, thread, &reply).await;
    }

    /// Runs a command; the answer is HTML.
    pub async fn execute(&self, cmd: Command, actor: &Actor) -> String {
        use crate::notify::message::escape;
        let ext = self.config.external_url();
        let failed = |e: BackendError| format!("⚠️ {}", escape(&e.to_string()));
        match cmd {
            Command::Help => commands::HELP.to_string(),
            Command::Alerts { severity } => {
                match self.backend.list_alerts(severity.as_deref(), 30).await {
                    Ok(list) => format::alert_list(&list, severity.as_deref(), &ext),
                    Err(e) => failed(e),
                }
            }
            Command::Alert { id } => match self.backend.get_alert(id).await {
                Ok(Some(d)) => {
                    format::alert_detail(&d, &ext, crate::notify::timezone(&self.config))
                }
                Ok(None) => format!("No alert #{id}."),
                Err(e) => failed(e),
            },
            Command::Ack { id, comment } => {
                match self.backend.ack(id, actor, comment.as_deref()).await {
                    Ok(a) => format::acked(&a, &actor.display()),
                    Err(e) => failed(e),
                }
            }
            Command::Silence {
                matchers,
                duration,
                comment,
            } => match self
                .backend
                .silence(&matchers, duration, actor, comment.as_deref())
                .await
            {
                Ok(s) => format::silenced(&s, crate::notify::timezone(&self.config)),
                Err(e) => failed(e),
            },
            Command::Unsilence { id } => match self.backend.unsilence(&id, actor).await {
                Ok(()) => format!("🔔 Silence <code>{}</code> expired.", escape(&id)),
                Err(e) => failed(e),
            },
            Command::Report { window } => {
                let window = window.unwrap_or(self.config.reports.window);
                match self.backend.report(window).await {
                    Ok(r) => format::report(&r, crate::notify::timezone(&self.config)),
                    Err(e) => failed(e),
                }
            }
            Command::Heartbeats => match self.backend.heartbeats().await {
                Ok(list) => format::heartbeats(&list),
                Err(e) => failed(e),
            },
            Command::Agents => match self.backend.agents().await {
                Ok(list) => format::agents(&list),
                Err(e) => failed(e),
            },
            Command::Status => {
                let depths = self.notify.queue_depths().await.unwrap_or_default();
                let groups = self.notify.dispatch().map_or(0, |d| d.group_count());
                match self.backend.status().await {
                    Ok(s) => format::status(&s, &depths, groups),
                    Err(e) => failed(e),
                }
            }
        }
    }

    async fn handle_callback(&self, q: &CallbackQuery) {
        let chat = q.message.as_ref().map(|m| match m {
            MaybeInaccessibleMessage::Regular(m) => m.chat.id.0,
            MaybeInaccessibleMessage::Inaccessible(m) => m.chat.id.0,
        });
        let user = q.from.id.0 as i64;
        let Some(chat) = chat.filter(|c| self.authorized(*c, Some(user))) else {
            tracing::warn!(chat = ?chat, user, "button press from an unauthorized chat or user");
            self.answer_callback(q, NOT_AUTHORIZED, true).await;
            return;
        };
        let actor = Actor::from_user(&q.from, chat);
        let data = q.data.as_deref().unwrap_or("");
        let (text, announce) = self.button(data, &actor).await;
        self.answer_callback(q, &text, false).await;
        if let Some(html) = announce {
            let thread = q
                .message
                .as_ref()
                .and_then(|m| m.regular_message())
                .and_then(|m| m.thread_id);
            self.reply(chat, thread, &html).await;
        }
    }

    /// Runs a button: the short answer for the button and an optional chat message.
    async fn button(&self, data: &str, actor: &Actor) -> (String, Option<String>) {
        use crate::notify::message::escape;
        let (kind, id) = if let Some(id) = data.strip_prefix(ACK_PREFIX) {
            ("ack", id)
        } else if let Some(id) = data.strip_prefix(SILENCE_PREFIX) {
            ("silence", id)
        } else {
            return ("unknown button".into(), None);
        };
        let Ok(row_id) = id.parse::<i64>() else {
            return ("unknown button".into(), None);
        };
        let payload = match self.notify.outbox().get(row_id).await {
            Ok(Some(row)) => serde_json::from_str::<TelegramPayload>(&row.payload).ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the outbox for a button");
                return ("database unavailable, try again".into(), None);
            }
        };
        let Some(p) = payload else {
            return ("this notification is no longer known".into(), None);
        };
        if kind == "ack" {
            let mut done = Vec::new();
            let mut errors = Vec::new();
            for id in &p.ack_ids {
                match self
                    .backend
                    .ack(*id, actor, Some("acknowledged from Telegram"))
                    .await
                {
                    Ok(_) => done.push(format!("#{id}")),
                    Err(e) => errors.push(format!("#{id}: {e}")),
                }
            }
            if done.is_empty() {
                return (format!("not acknowledged: {}", errors.join("; ")), None);
            }
            let answer = format!("Acknowledged {}", done.join(", "));
            let html = format!(
                "✔ {} acknowledged {} — no re-notification until resolved or escalated.",
                escape(&actor.display()),
                escape(&done.join(", "))
            );
            (answer, Some(html))
        } else {
            let matchers: Vec<Matcher> = p
                .silence_labels
                .iter()
                .map(|(k, v)| Matcher::equal(k.clone(), v.clone()))
                .collect();
            if matchers.is_empty() {
                return ("nothing to silence".into(), None);
            }
            match self
                .backend
                .silence(
                    &matchers,
                    BUTTON_SILENCE,
                    actor,
                    Some("silenced for 1h from Telegram"),
                )
                .await
            {
                Ok(s) => (
                    format!("Silenced for 1h ({})", s.id),
                    Some(format!(
                        "{}\n(by button)",
                        format::silenced(&s, crate::notify::timezone(&self.config))
                    )),
                ),
                Err(e) => (format!("not silenced: {e}"), None),
            }
        }
    }

    /// A Telegram error as it may be logged: no URL, no bot token (a proxy in front of
    /// the Bot API may echo the request path in its answer).
    fn shown(&self, e: &RequestError) -> String {
        crate::redact::without(&crate::redact::error(e), self.bot.token())
    }

    async fn answer_callback(&self, q: &CallbackQuery, text: &str, alert: bool) {
        let text: String = text.chars().take(190).collect();
        let req = self
            .bot
            .answer_callback_query(q.id.clone())
            .text(text)
            .show_alert(alert);
        if let Err(e) = req.await {
            tracing::warn!(error = %self.shown(&e), "answerCallbackQuery failed");
        }
    }

    async fn reply_plain(&self, chat: i64, thread: Option<ThreadId>, text: &str) {
        self.send(chat, thread, text, false).await;
    }

    /// Sends an HTML reply, split when long.
    pub async fn reply(&self, chat: i64, thread: Option<ThreadId>, html: &str) {
        for part in split_html(html, TELEGRAM_LIMIT) {
            self.send(chat, thread, &part, true).await;
        }
    }

    async fn send(&self, chat: i64, thread: Option<ThreadId>, text: &str, html: bool) {
        for attempt in 0..3 {
            let result = {
                let _permit = self.limiter.acquire(chat).await;
                let mut req = self
                    .bot
                    .send_message(ChatId(chat), text)
                    .link_preview_options(crate::notify::telegram::no_link_preview());
                if html {
                    req = req.parse_mode(ParseMode::Html);
                }
                if let Some(t) = thread {
                    req = req.message_thread_id(t);
                }
                req.await
            };
            match result {
                Ok(_) => return,
                Err(RequestError::RetryAfter(s))
                    if attempt < 2 && s.duration() <= Duration::from_secs(60) =>
                {
                    self.limiter
                        .block(chat, tokio::time::Instant::now() + s.duration());
                }
                Err(e) => {
                    tracing::warn!(chat, error = %self.shown(&e), "bot reply failed");
                    return;
                }
            }
        }
    }
}
