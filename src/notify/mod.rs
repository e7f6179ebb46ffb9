//! Notification delivery: receivers (Telegram, webhook), messages, the outbox and its
//! sender.
//!
//! [`Notifier`] is the dispatcher's [`NotificationSink`]: it renders a flushed group for
//! its receiver and writes the messages to the outbox together with the notification
//! log, in one transaction; [`OutboxSender`] then delivers them. [`Notifications`]
//! assembles everything from the config.

pub mod chart;
pub mod email;
pub mod events;
pub mod kafka;
pub mod message;
pub mod outbox;
pub mod policy;
pub mod ratelimit;
pub mod sender;
pub mod split;
pub mod telegram;
pub mod template;
pub mod webhook;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{Notify, broadcast};

use crate::cluster::Cluster;
use crate::config::Config;
use crate::dispatch::{
    AlertState, DispatchHandle, Dispatcher, Notification, NotificationSink, NotifyLogEntry,
};
use crate::metrics::AlertingMetrics;
use crate::store::{Backend, Db, StoreError};
use crate::supervisor::Supervisor;
pub use message::{MessageBuilder, TemplateEngine};
pub use outbox::{NewOutboxRow, Outbox, OutboxFilter, OutboxRow, Verdict};
pub use policy::RetryPolicy;
pub use ratelimit::{Limits, RateLimiter};
pub use sender::{
    Attempt, DeliveryOutcome, DeliveryReport, OutboxSender, SenderOptions, claimer_id,
};
pub use telegram::TelegramPayload;

/// Notification-log entries unused this long are deleted at start. Long: an entry is
/// rewritten only when its group notifies, and an acknowledged alert in a quiet group
/// may fire for weeks before its resolve must be announced (groups that empty delete
/// their entry themselves).
const LOG_MAX_AGE: Duration = Duration::from_secs(90 * 86400);

/// A Telegram destination.
#[derive(Debug, Clone, PartialEq)]
pub struct TelegramTarget {
    /// Chats.
    pub chat_ids: Vec<i64>,
    /// Forum topic.
    pub message_thread_id: Option<i32>,
    /// Silent messages.
    pub disable_notification: bool,
    /// User template.
    pub template: Option<String>,
    /// Charts with alerts of watchpost's rules (`sendPhoto`).
    pub charts: bool,
}

/// One way a receiver delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Telegram chats.
    Telegram(TelegramTarget),
    /// A webhook URL (Alertmanager payload).
    Webhook {
        /// Where to POST.
        url: String,
    },
    /// E-mail over SMTP.
    Email(email::EmailTarget),
    /// A Kafka topic (one JSON record per notification).
    Kafka(kafka::KafkaTarget),
}

impl Target {
    /// The outbox row kind (and transport) of this target.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Telegram(_) => "telegram",
            Target::Webhook { .. } => "webhook",
            Target::Email(_) => email::KIND,
            Target::Kafka(_) => "kafka",
        }
    }
}

/// A receiver: every target it delivers to (Alertmanager's `*_configs`), any mix.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Receiver {
    /// Its targets, in config order.
    pub targets: Vec<Target>,
}

impl Receiver {
    /// The Telegram target, if any.
    pub fn telegram(&self) -> Option<&TelegramTarget> {
        self.targets.iter().find_map(|t| match t {
            Target::Telegram(t) => Some(t),
            _ => None,
        })
    }
}

/// The receivers of the config: `[[receivers]]`, plus an implicit `telegram` receiver
/// (the default chats) when `telegram.bot_token` is set and none is declared.
pub fn receivers(config: &Config) -> Result<HashMap<String, Receiver>, Vec<String>> {
    let mut out = HashMap::new();
    let mut problems = Vec::new();
    for (i, r) in config.receivers.iter().enumerate() {
        let key = format!("receivers[{i}]");
        if r.name.is_empty() {
            problems.push(format!("{key}.name: must not be empty"));
        }
        if out.contains_key(&r.name) {
            problems.push(format!("{key}.name: duplicate receiver {:?}", r.name));
        }
        let mut receiver = Receiver::default();
        if let Some(t) = &r.telegram {
            receiver
                .targets
                .push(telegram_target(config, &key, t, &mut problems));
        }
        if let Some(w) = &r.webhook {
            if reqwest::Url::parse(&w.url).is_err()
                || !(w.url.starts_with("http://") || w.url.starts_with("https://"))
            {
                problems.push(format!(
                    "{key}.webhook.url: not an http(s) URL: {:?}",
                    crate::redact::endpoint(&w.url)
                ));
            }
            receiver
                .targets
                .push(Target::Webhook { url: w.url.clone() });
        }
        if let Some(e) = &r.email {
            problems.extend(email::validate(&format!("{key}.email"), e));
            receiver
                .targets
                .push(Target::Email(email::EmailTarget::from_config(e)));
        }
        if let Some(k) = &r.kafka {
            problems.extend(kafka::validate(&format!("{key}.kafka"), k));
            receiver
                .targets
                .push(Target::Kafka(kafka::KafkaTarget::new(k)));
        }
        if receiver.targets.is_empty() {
            problems.push(format!(
                "{key}: no target; set one or more of `telegram`, `webhook`, `email`, `kafka`"
            ));
            continue;
        }
        out.insert(r.name.clone(), receiver);
    }
    if config.telegram.bot_token.is_some()
        && !out.contains_key(crate::dispatch::route::DEFAULT_RECEIVER)
    {
        out.insert(
            crate::dispatch::route::DEFAULT_RECEIVER.to_string(),
            Receiver {
                targets: vec![Target::Telegram(TelegramTarget {
                    chat_ids: config.telegram.chat_ids.clone(),
                    message_thread_id: None,
                    disable_notification: false,
                    template: None,
                    charts: config.telegram.charts,
                })],
            },
        );
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// The Telegram target of `receivers[i]` (`key`), its problems pushed to `problems`.
fn telegram_target(
    config: &Config,
    key: &str,
    t: &crate::config::TelegramReceiver,
    problems: &mut Vec<String>,
) -> Target {
    if config.telegram.bot_token.is_none() {
        problems.push(format!(
            "{key}.telegram: needs telegram.bot_token (WATCHPOST_TELEGRAM__BOT_TOKEN)"
        ));
    }
    let chat_ids = if t.chat_ids.is_empty() {
        config.telegram.chat_ids.clone()
    } else {
        t.chat_ids.clone()
    };
    if chat_ids.is_empty() {
        problems.push(format!(
            "{key}.telegram.chat_ids: no chats (set it or telegram.chat_ids)"
        ));
    }
    if let Some(source) = &t.template
        && let Err(e) = template::parse(source)
    {
        problems.push(format!("{key}.telegram.template: {e}"));
    }
    let thread = match t.message_thread_id.map(i32::try_from) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => {
            problems.push(format!("{key}.telegram.message_thread_id: out of range"));
            None
        }
    };
    Target::Telegram(TelegramTarget {
        chat_ids,
        message_thread_id: thread,
        disable_notification: t.disable_notification,
        template: t.template.clone(),
        charts: t.charts.unwrap_or(config.telegram.charts),
    })
}

/// The zone of every time in messages, reports and templates (`notify.timezone`,
/// checked by [`validate`]; UTC when it is not a zone).
pub fn timezone(config: &Config) -> chrono_tz::Tz {
    crate::rules::template::time::parse_zone(&config.notify.timezone).unwrap_or_default()
}

/// Config problems of receivers, routes' receiver names, the time zone and the report
/// schedule.
pub fn validate(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = crate::rules::template::time::parse_zone(&config.notify.timezone) {
        problems.push(format!("notify.timezone: {e}"));
    }
    let receivers = match receivers(config) {
        Ok(r) => r,
        Err(p) => {
            problems.extend(p);
            HashMap::new()
        }
    };
    if let Ok(Some(route)) = crate::dispatch::route::build(config) {
        for r in route.walk() {
            let name = &r.opts.receiver;
            if !receivers.contains_key(name) && problems.is_empty() {
                problems.push(format!(
                    "route: unknown receiver {name:?} (declare it in [[receivers]]{})",
                    if name == crate::dispatch::route::DEFAULT_RECEIVER {
                        " or set telegram.bot_token"
                    } else {
                        ""
                    }
                ));
            }
        }
    }
    problems.extend(chart::validate(config));
    problems.dedup();
    problems
}

fn short_hash(s: &str) -> String {
    let d = Sha256::digest(s.as_bytes());
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Renders flushed groups into outbox rows; the dispatcher's sink.
pub struct Notifier {
    outbox: Outbox,
    receivers: HashMap<String, Receiver>,
    builder: MessageBuilder,
    external_url: String,
    wake: Arc<Notify>,
}

impl Notifier {
    /// A notifier writing to `outbox` and waking the sender through `wake`.
    pub fn new(
        outbox: Outbox,
        receivers: HashMap<String, Receiver>,
        builder: MessageBuilder,
        external_url: String,
        wake: Arc<Notify>,
    ) -> Self {
        Notifier {
            outbox,
            receivers,
            builder,
            external_url,
            wake,
        }
    }

    /// The outbox rows of `n`: for each of its receiver's targets, one per chat and
    /// part (Telegram) or one per notification (the others).
    pub fn rows_for(&self, n: &Notification) -> Result<Vec<NewOutboxRow>, String> {
        let receiver = self
            .receivers
            .get(&n.receiver)
            .ok_or_else(|| format!("unknown receiver {:?}", n.receiver))?;
        let rows = RowBase::of(n);
        let mut out = Vec::new();
        for target in &receiver.targets {
            out.extend(self.target_rows(&rows, n, target)?);
        }
        Ok(out)
    }

    fn target_rows(
        &self,
        rows: &RowBase,
        n: &Notification,
        target: &Target,
    ) -> Result<Vec<NewOutboxRow>, String> {
        match target {
            Target::Webhook { url } => {
                let body = webhook::webhook_payload(n, &self.external_url).to_string();
                Ok(vec![rows.row(
                    "webhook",
                    format!("webhook:{url}"),
                    &body,
                    (1, 1),
                    body.clone(),
                )])
            }
            Target::Telegram(t) => self.telegram_rows(rows, n, t),
            Target::Kafka(k) => {
                let payload = kafka::KafkaPayload::new(n, k, &self.external_url);
                let json = serde_json::to_string(&payload).map_err(|e| e.to_string())?;
                Ok(vec![rows.row(
                    "kafka",
                    k.outbox_target(&payload.key),
                    &json,
                    (1, 1),
                    json.clone(),
                )])
            }
            Target::Email(t) => {
                let p = email::payload(n, t, &self.builder, &self.external_url);
                let json = serde_json::to_string(&p).map_err(|e| e.to_string())?;
                Ok(vec![rows.row(
                    email::KIND,
                    t.outbox_target(),
                    &p.text,
                    (1, 1),
                    json,
                )])
            }
        }
    }

    fn telegram_rows(
        &self,
        rows: &RowBase,
        n: &Notification,
        t: &TelegramTarget,
    ) -> Result<Vec<NewOutboxRow>, String> {
        let text = self.builder.render(n, t.template.as_deref());
        let chart = t.charts.then(|| chart::chart_of(n)).flatten();
        let parts = match chart {
            Some(_) => split::split_caption(&text, split::CAPTION_LIMIT, split::TELEGRAM_LIMIT),
            None => split::split_html(&text, split::TELEGRAM_LIMIT),
        };
        let firing_ids: Vec<i64> = n.firing.iter().map(|a| a.id).collect();
        let silence_labels = if !n.group_labels.is_empty() {
            n.group_labels.clone()
        } else {
            n.common_labels()
        };
        let mut out = Vec::new();
        for chat in &t.chat_ids {
            // With a chart, the first part is the photo's caption and the rest replies
            // to it.
            let mut photo_key: Option<String> = None;
            for (i, part) in parts.iter().enumerate() {
                let last = i + 1 == parts.len();
                let buttons = last && n.status == AlertState::Firing && !firing_ids.is_empty();
                let payload = TelegramPayload {
                    chat_id: *chat,
                    text: part.clone(),
                    message_thread_id: t.message_thread_id,
                    disable_notification: t.disable_notification,
                    buttons,
                    ack_ids: if buttons { firing_ids.clone() } else { vec![] },
                    silence_labels: if buttons {
                        silence_labels.clone()
                    } else {
                        Default::default()
                    },
                    chart: chart.clone().filter(|_| i == 0),
                    reply_to: photo_key.clone(),
                };
                let json = serde_json::to_string(&payload).map_err(|e| e.to_string())?;
                let row = rows.row(
                    "telegram",
                    format!("telegram:{chat}"),
                    &text,
                    (i + 1, parts.len()),
                    json,
                );
                if chart.is_some() && i == 0 {
                    photo_key = Some(row.idempotency_key.clone());
                }
                out.push(row);
            }
        }
        if out.is_empty() {
            tracing::warn!(receiver = %n.receiver, "telegram receiver has no chats; notification dropped");
        }
        Ok(out)
    }
}

/// What every outbox row of one notification shares; [`RowBase::row`] makes a row.
pub struct RowBase<'a> {
    n: &'a Notification,
    group: String,
    alert_ids: Vec<i64>,
}

impl<'a> RowBase<'a> {
    /// The shared part of `n`'s rows.
    pub fn of(n: &'a Notification) -> Self {
        RowBase {
            n,
            group: short_hash(&n.group_key),
            alert_ids: n.alert_ids(),
        }
    }

    /// A row of `kind` to `target`; its idempotency key names the receiver, group,
    /// episode and notification, target, part and a hash of `content` (what the user
    /// sees).
    pub fn row(
        &self,
        kind: &str,
        target: String,
        content: &str,
        (part, parts): (usize, usize),
        payload: String,
    ) -> NewOutboxRow {
        let n = self.n;
        NewOutboxRow {
            // The episode tells a group's notifications apart after it emptied and
            // refilled (its `seq` starts again at 1, and the text may be the same).
            idempotency_key: format!(
                "{}|{}|{}.{}|{}|{target}|{part}/{parts}",
                n.receiver,
                self.group,
                n.episode_ms,
                n.seq,
                short_hash(content)
            ),
            receiver: n.receiver.clone(),
            kind: kind.into(),
            target,
            group_key: n.group_key.clone(),
            status: n.status.as_str().into(),
            part: part as i64,
            parts: parts as i64,
            payload,
            alert_ids: self.alert_ids.clone(),
        }
    }
}

#[async_trait::async_trait]
impl NotificationSink for Notifier {
    async fn load_log(&self) -> anyhow::Result<Vec<(String, String, NotifyLogEntry)>> {
        Ok(self.outbox.load_log(LOG_MAX_AGE.as_millis() as i64).await?)
    }

    async fn notify(&self, n: &Notification, entry: &NotifyLogEntry) -> anyhow::Result<()> {
        let rows = self.rows_for(n).map_err(anyhow::Error::msg)?;
        let result = self
            .outbox
            .enqueue(&rows, Some((&n.group_key, &n.receiver, entry)))
            .await;
        // Also after an error: a commit whose answer was lost may have written them.
        self.wake.notify_one();
        let inserted = result?;
        tracing::debug!(group = %n.group_key, rows = rows.len(), inserted, "outbox rows written");
        Ok(())
    }

    async fn notify_batch(&self, batch: &[(Notification, NotifyLogEntry)]) -> anyhow::Result<()> {
        let mut rows = Vec::new();
        let mut logs = Vec::with_capacity(batch.len());
        for (n, entry) in batch {
            // One notification that cannot be rendered must not hold back the others:
            // it is logged as told (so it is not retried forever) and skipped.
            match self.rows_for(n) {
                Ok(r) => rows.extend(r),
                Err(e) => {
                    tracing::error!(group = %n.group_key, receiver = %n.receiver, error = %e, "notification dropped: it cannot be delivered")
                }
            }
            logs.push((n.group_key.as_str(), n.receiver.as_str(), entry));
        }
        let result = self.outbox.enqueue_many(&rows, &logs).await;
        // Also after an error: a commit whose answer was lost may have written them.
        self.wake.notify_one();
        let inserted = result?;
        tracing::debug!(
            notifications = batch.len(),
            rows = rows.len(),
            inserted,
            "outbox rows written"
        );
        Ok(())
    }

    async fn save_log(&self, g: &str, r: &str, e: &NotifyLogEntry) -> anyhow::Result<()> {
        Ok(self.outbox.save_log(g, r, e).await?)
    }

    async fn forget(&self, g: &str, r: &str) -> anyhow::Result<()> {
        Ok(self.outbox.delete_log(g, r).await?)
    }
}

/// What the API and the bot need: the outbox, queue depths and delivery reports.
#[derive(Clone)]
pub struct NotifyHandle {
    outbox: Outbox,
    reports: broadcast::Sender<DeliveryReport>,
    wake: Arc<Notify>,
    dispatch: Option<DispatchHandle>,
}

impl NotifyHandle {
    /// The outbox.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Outbox rows, newest first.
    pub async fn list(&self, f: &OutboxFilter) -> Result<Vec<OutboxRow>, StoreError> {
        self.outbox.list(f).await
    }

    /// Pending rows per receiver.
    pub async fn queue_depths(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.outbox.depth_by_receiver().await
    }

    /// Delivered and failed notifications from now on (for `notified` alert events).
    pub fn subscribe(&self) -> broadcast::Receiver<DeliveryReport> {
        self.reports.subscribe()
    }

    /// Enqueues ready-made rows (scheduled reports) and wakes the sender.
    pub async fn enqueue(&self, rows: &[NewOutboxRow]) -> Result<u64, StoreError> {
        let result = self.outbox.enqueue(rows, None).await;
        // Also after an error: a commit whose answer was lost may have written them.
        self.wake.notify_one();
        result
    }

    /// The dispatcher (aggregation groups), when routing is configured.
    pub fn dispatch(&self) -> Option<&DispatchHandle> {
        self.dispatch.as_ref()
    }
}

/// HTTP timeout of the bot's own requests (long polls of `getUpdates` included).
const BOT_TIMEOUT: Duration = Duration::from_secs(60);

/// The sender's settings from `config`: retries and backoff (`notify.*`,
/// `telegram.max_retry`), this process's claimer id, which claims are known dead, and
/// the shutdown drain.
fn sender_options(config: &Config, backend: Backend, base: SenderOptions) -> SenderOptions {
    let node = config.cluster.node_id.as_deref().unwrap_or("local");
    SenderOptions {
        retry: RetryPolicy {
            max_retry: config.telegram.max_retry,
            min_backoff: config.notify.min_backoff,
            max_backoff: config.notify.max_backoff,
            ambiguous: config.notify.ambiguous,
        },
        claimer: claimer_id(node),
        // One process owns a SQLite file; on PostgreSQL, earlier runs of this node.
        stale_claims: match backend {
            Backend::Sqlite => "%".into(),
            Backend::Postgres => format!("{node}#%"),
        },
        drain_timeout: config.shutdown_timeout,
        ..base
    }
}

/// Tunables that tests shorten; the defaults are the production values.
#[derive(Debug, Clone, Default)]
pub struct NotifyOptions {
    /// Telegram's limits.
    pub limits: Limits,
    /// Outbox sender settings (`poll_interval`, `retention`; the rest comes from the
    /// config).
    pub sender: SenderOptions,
    /// Long-polling timeout of the bot (`getUpdates`), seconds; 0 = `telegram.poll_timeout`.
    pub poll_timeout_secs: u32,
    /// Draws the charts of rows that have one (none: such rows go out as text).
    pub charts: Option<chart::source::Charts>,
}

/// Everything notification-related, assembled from the config.
pub struct Notifications {
    /// The dispatcher (route tree, groups and timers).
    pub dispatcher: Dispatcher,
    /// The outbox sender.
    pub sender: OutboxSender,
    /// For the API and the bot.
    pub handle: NotifyHandle,
    /// The Telegram bot, when `telegram.bot_token` is set.
    pub bot: Option<teloxide::Bot>,
    /// The limiter shared by notifications and bot replies.
    pub limiter: Arc<RateLimiter>,
    /// Options in effect.
    pub options: NotifyOptions,
}

impl Notifications {
    /// Builds dispatcher, notifier and sender from `config`; problems name the key.
    pub fn new(
        config: &Config,
        db: Db,
        metrics: AlertingMetrics,
        engine: Option<Arc<dyn TemplateEngine>>,
        mut options: NotifyOptions,
    ) -> Result<Notifications, String> {
        let problems = validate(config);
        if !problems.is_empty() {
            return Err(problems.join("\n"));
        }
        let receivers = receivers(config).map_err(|p| p.join("\n"))?;
        let outbox = Outbox::new(db).with_fence(options.sender.fence.clone());
        let wake = Arc::new(Notify::new());
        let external_url = config.external_url();
        let builder = MessageBuilder::new(&external_url, engine).with_timezone(timezone(config));
        for (name, r) in &receivers {
            if let Some(t) = r.telegram() {
                if t.template.is_some() && !builder.has_engine() {
                    tracing::warn!(receiver = %name, "receiver template set but no template engine is available; the built-in message is used");
                }
                if t.chat_ids.is_empty() {
                    tracing::warn!(receiver = %name, "telegram receiver without chats (set telegram.chat_ids)");
                }
            }
        }
        let receiver_names: Vec<String> = receivers.keys().cloned().collect();
        let notifier = Notifier::new(
            outbox.clone(),
            receivers,
            builder,
            external_url,
            wake.clone(),
        );
        let mut dispatcher = Dispatcher::from_config(config, Arc::new(notifier))?
            .with_source(Arc::new(crate::dispatch::changes::StoredAlerts(
                outbox.db().clone(),
            )))
            .with_flap(&config.flap, metrics.alerts_flapping.clone());
        // Several nodes share a PostgreSQL database: the leader learns of every node's
        // changes from the database's change feed.
        if let crate::cluster::Fence::Cluster(c) = &options.sender.fence
            && outbox.db().backend() == Backend::Postgres
        {
            dispatcher =
                dispatcher.with_feed(Arc::new(crate::dispatch::changes::StoredChanges::new(
                    outbox.db().clone(),
                    c.alert_changes(),
                )));
        }

        let limiter = Arc::new(RateLimiter::new(options.limits));
        let mut transports: HashMap<String, Arc<dyn sender::OutboxTransport>> = HashMap::new();
        transports.insert(
            "webhook".into(),
            Arc::new(webhook::WebhookTransport::new(config.notify.timeout)),
        );
        let emails = config
            .receivers
            .iter()
            .filter_map(|r| Some((r.name.as_str(), r.email.as_ref()?)));
        transports.insert(
            email::KIND.into(),
            Arc::new(email::EmailTransport::new(emails, config.notify.timeout)?),
        );
        if let Some(k) = kafka::KafkaTransport::from_config(config, config.notify.timeout)? {
            transports.insert("kafka".into(), Arc::new(k));
        }
        let bot = match &config.telegram.bot_token {
            Some(token) => {
                // Notifications wait `notify.timeout`; the bot's long polls need longer.
                let sends = telegram::make_bot(
                    token.expose(),
                    &config.telegram.api_url,
                    config.notify.timeout,
                )?;
                let mut transport = telegram::TelegramTransport::new(sends, limiter.clone());
                if let Some(charts) = &options.charts {
                    transport = transport.with_charts(charts.0.clone(), outbox.clone());
                }
                transports.insert("telegram".into(), Arc::new(transport));
                Some(telegram::make_bot(
                    token.expose(),
                    &config.telegram.api_url,
                    BOT_TIMEOUT,
                )?)
            }
            None => None,
        };
        options.sender = sender_options(config, outbox.db().backend(), options.sender);
        let (reports, _) = broadcast::channel(1024);
        let sender = OutboxSender::new(
            outbox.clone(),
            transports,
            options.sender.clone(),
            metrics,
            wake.clone(),
            reports.clone(),
            receiver_names,
        );
        let handle = NotifyHandle {
            outbox,
            reports,
            wake,
            dispatch: Some(dispatcher.handle()),
        };
        Ok(Notifications {
            dispatcher,
            sender,
            handle,
            bot,
            limiter,
            options,
        })
    }

    /// Starts the dispatcher, the sender, and (with a bot token) the bot and the
    /// scheduled reports, on `supervisor` (a single node: no cluster).
    pub fn spawn(
        &self,
        config: &Arc<Config>,
        supervisor: &mut Supervisor,
        backend: Arc<dyn crate::bot::BotBackend>,
    ) {
        self.spawn_dispatcher(supervisor, None);
        self.spawn_sender(supervisor, None);
        self.spawn_bot(config, supervisor, backend, None);
    }

    /// Starts the dispatcher on `supervisor`; in a `cluster`, on the leader only (each
    /// term rebuilds the groups from the database).
    pub fn spawn_dispatcher(&self, supervisor: &mut Supervisor, cluster: Option<&Cluster>) {
        let dispatcher = self.dispatcher.clone();
        supervisor.spawn_leading("dispatch", cluster.cloned(), move |term, _| {
            dispatcher.clone().run(term)
        });
    }

    /// Whether the dispatcher reads the database's change feed (then the pipeline's
    /// in-process changes need not be forwarded).
    pub fn reads_feed(&self) -> bool {
        self.dispatcher.reads_feed()
    }

    /// Starts the outbox sender on `supervisor`; in a `cluster`, on the leader only.
    pub fn spawn_sender(&self, supervisor: &mut Supervisor, cluster: Option<&Cluster>) {
        let sender = self.sender.clone();
        supervisor.spawn_leading("notify-outbox", cluster.cloned(), move |term, shutdown| {
            sender.clone().run_term(term, shutdown)
        });
    }

    /// With a bot token: starts the bot and the scheduled reports on `supervisor`; in a
    /// `cluster`, on the leader only (Telegram allows one `getUpdates` per bot).
    pub fn spawn_bot(
        &self,
        config: &Arc<Config>,
        supervisor: &mut Supervisor,
        backend: Arc<dyn crate::bot::BotBackend>,
        cluster: Option<&Cluster>,
    ) {
        if let Some(bot) = &self.bot {
            let service = crate::bot::BotService::new(
                bot.clone(),
                config.clone(),
                backend.clone(),
                self.handle.clone(),
                self.limiter.clone(),
                match self.options.poll_timeout_secs {
                    0 => config.telegram.poll_timeout.as_secs() as u32,
                    n => n,
                },
            );
            let service = match cluster {
                Some(c) => service.with_leader(crate::cluster::LeaderGate::of(c)),
                None => service,
            };
            let c = cluster.cloned();
            supervisor.spawn_leading("telegram-bot", cluster.cloned(), move |token, _| {
                let (service, c) = (service.clone(), c.clone());
                async move {
                    if let Some(c) = c
                        && let Some(previous) = c.term().previous
                    {
                        // The previous leader's last getUpdates may still be open at
                        // Telegram (it was paused or cut off): a second poll would
                        // conflict (409). It ends within one poll timeout.
                        let wait = service.poll_timeout() + Duration::from_secs(2);
                        tracing::info!(%previous, ?wait, "took over the bot: polling after the previous leader's last poll ended");
                        tokio::select! {
                            _ = token.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                    service.run(token).await
                }
            });
            if config.reports.telegram_schedule.is_some() {
                let reports = crate::bot::schedule::ReportSchedule::new(
                    config.clone(),
                    backend,
                    self.handle.clone(),
                );
                if let Ok(reports) = reports {
                    supervisor.spawn_leading(
                        "telegram-reports",
                        cluster.cloned(),
                        move |token, _| reports.clone().run(token),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every problem `validate_config` finds in `toml`.
    fn problems(toml: &str) -> String {
        crate::validate_config(&Config::from_toml(toml).unwrap())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn row_keys_differ_between_episodes_of_a_group() {
        let n = |episode_ms| Notification {
            group_key: "{}:{alertname=\"A\"}".into(),
            receiver: "r".into(),
            group_labels: Default::default(),
            status: AlertState::Firing,
            firing: vec![crate::dispatch::AlertNotice::test(1, "fp", "A")],
            resolved: Vec::new(),
            flapping: Vec::new(),
            stable: Default::default(),
            seq: 1,
            at_ms: 0,
            episode_ms,
        };
        let (first, second) = (n(1000), n(9000));
        let key = |n: &Notification| {
            RowBase::of(n)
                .row(
                    "email",
                    "email:x".into(),
                    "same text",
                    (1, 1),
                    String::new(),
                )
                .idempotency_key
        };
        assert_eq!(key(&first), key(&n(1000)), "stable for one notification");
        assert_ne!(
            key(&first),
            key(&second),
            "a refilled group's first notification is not the old one"
        );
    }

    #[test]
    fn receivers_and_validation() {
        let c = Config::from_toml(
            r#"
[telegram]
bot_token = "1:x"
chat_ids = [10, -20]
[[receivers]]
name = "ops"
telegram = { chat_ids = [30], message_thread_id = 7, disable_notification = true }
[[receivers]]
name = "hook"
webhook = { url = "http://127.0.0.1:9/x" }
"#,
        )
        .unwrap();
        let r = receivers(&c).unwrap();
        assert_eq!(
            r["telegram"].targets,
            vec![Target::Telegram(TelegramTarget {
                chat_ids: vec![10, -20],
                message_thread_id: None,
                disable_notification: false,
                template: None,
                charts: true
            })],
            "implicit default receiver"
        );
        let ops = r["ops"].telegram().unwrap();
        assert_eq!(ops.message_thread_id, Some(7));
        assert!(ops.disable_notification);

        let err = problems(
            "[route]\nreceiver = \"nope\"\n[[receivers]]\nname = \"x\"\nwebhook = { url = \"ftp://x\" }\n",
        );
        assert!(err.contains("receivers[0].webhook.url"), "{err}");

        let err = problems("[route]\nreceiver = \"nope\"\n");
        assert!(err.contains("unknown receiver \"nope\""), "{err}");

        let err = problems("[[receivers]]\nname = \"t\"\ntelegram = {}\n");
        assert!(
            err.contains("receivers[0].telegram: needs telegram.bot_token"),
            "{err}"
        );

        let err = problems(
            "[telegram]\nbot_token = \"1:x\"\nchat_ids = [1]\n[[receivers]]\nname = \"t\"\ntelegram = { template = \"{{ if .Status }}x\" }\n",
        );
        assert!(
            err.contains("receivers[0].telegram.template: line 1"),
            "{err}"
        );

        let err = problems("[notify]\ntimezone = \"Mars/Olympus\"\n");
        assert!(
            err.contains("notify.timezone: unknown time zone \"Mars/Olympus\""),
            "{err}"
        );

        let err = problems("[[receivers]]\nname = \"empty\"\n");
        assert!(err.contains("receivers[0]: no target"), "{err}");
    }
}
