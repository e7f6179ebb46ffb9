//! The Kafka receiver: each notification as one JSON record (Alertmanager's webhook
//! payload with `"type": "notification"`), keyed by its group key so that a group's
//! records stay in order on one partition; with `alert_changes`, one `"type": "alert"`
//! record per alert after it, in the same batch.
//!
//! Rows are `kafka` outbox rows with target `kafka:TOPIC#LANE` (the lane from the
//! key's hash): one send at a time per lane, in order. Each record carries an `idempotency-key` header (the outbox row's
//! key) so consumers can drop a copy written again after an ambiguous send. The
//! producer ([`producer`]) is watchpost's own, on the `kafka-protocol` codec: pure
//! Rust, idempotent, gzip or snappy, SASL PLAIN/SCRAM, TLS by rustls.

pub mod conn;
pub mod murmur;
pub mod producer;
pub mod sasl;
pub mod tls;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::records::Compression;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::outbox::OutboxRow;
use super::policy::Attempt;
use super::sender::{OutboxTransport, Started};
use crate::config::{Config, KafkaAcks, KafkaCompression, KafkaReceiver};
use crate::dispatch::Notification;
use producer::{Batch, OutRecord, Producer, ProducerConfig};

/// Outbox lanes per topic (rows of different lanes are sent concurrently).
pub const LANES: i32 = 8;
/// Longest topic name Kafka accepts.
const MAX_TOPIC_LEN: usize = 249;

/// What a Kafka receiver renders (the connection settings live in its transport).
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaTarget {
    /// Topic.
    pub topic: String,
    /// Record key template; `None`: the group key.
    pub key: Option<String>,
    /// One `alert` record per alert besides the notification.
    pub alert_changes: bool,
}

impl KafkaTarget {
    /// The target of `cfg`.
    pub fn new(cfg: &KafkaReceiver) -> KafkaTarget {
        KafkaTarget {
            topic: cfg.topic.clone(),
            key: cfg.key.clone(),
            alert_changes: cfg.alert_changes,
        }
    }

    /// The outbox target of records keyed `key`: `kafka:TOPIC#LANE`, one of
    /// [`LANES`] lanes by the key's hash. Rows of one lane go out one at a time, in
    /// order, so a key's (a group's) records keep their order; lanes overlap.
    pub fn outbox_target(&self, key: &str) -> String {
        let lane = murmur::partition_for(key.as_bytes(), LANES);
        format!("kafka:{}#{lane}", self.topic)
    }
}

/// An outbox row's payload: the record key and the record values, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KafkaPayload {
    /// The key of every record (the group key, or the key template's output).
    pub key: String,
    /// Record values: the notification, then one per alert with `alert_changes`.
    pub records: Vec<Value>,
}

impl KafkaPayload {
    /// The payload for `n`.
    pub fn new(n: &Notification, target: &KafkaTarget, external_url: &str) -> KafkaPayload {
        let mut notification = super::webhook::webhook_payload(n, external_url);
        notification["type"] = "notification".into();
        let key = target
            .key
            .as_deref()
            .and_then(|t| render_key(t, &notification, external_url, &n.receiver))
            .unwrap_or_else(|| n.group_key.clone());
        let mut records = Vec::new();
        if target.alert_changes
            && let Some(alerts) = notification["alerts"].as_array()
        {
            for a in alerts {
                records.push(serde_json::json!({
                    "type": "alert",
                    "groupKey": n.group_key,
                    "receiver": n.receiver,
                    "status": a["status"],
                    "alert": a,
                }));
            }
        }
        records.insert(0, notification);
        KafkaPayload { key, records }
    }

    /// The records to write; each has an `idempotency-key` header: the row's key (the
    /// notification) or `KEY#N` (the Nth alert record).
    pub fn records(&self, row_key: &str) -> Vec<OutRecord> {
        self.records
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let id = match i {
                    0 => row_key.to_string(),
                    i => format!("{row_key}#{i}"),
                };
                OutRecord {
                    key: Bytes::from(self.key.clone()),
                    value: Bytes::from(v.to_string()),
                    headers: vec![("idempotency-key".into(), Bytes::from(id))],
                }
            })
            .collect()
    }
}

/// The key template's output over the notification data; `None` (the group key is
/// used) when it fails or is empty.
fn render_key(
    template: &str,
    payload: &Value,
    external_url: &str,
    receiver: &str,
) -> Option<String> {
    let ctx = crate::rules::template::Context {
        external_url,
        query: None,
        escape: None,
        ..Default::default()
    };
    let rendered = super::template::parse(template).and_then(|t| {
        t.execute_value(&ctx, super::template::template_data(payload))
            .map_err(|e| e.to_string())
    });
    match rendered {
        Ok(k) if !k.trim().is_empty() => Some(k.trim().to_string()),
        Ok(_) => {
            tracing::warn!(%receiver, "kafka key template rendered nothing; using the group key");
            None
        }
        Err(e) => {
            tracing::warn!(%receiver, error = %e, "kafka key template failed; using the group key");
            None
        }
    }
}

/// Config problems of a Kafka receiver; `key` is its path (`receivers[0].kafka`).
pub fn validate(key: &str, cfg: &KafkaReceiver) -> Vec<String> {
    let mut problems = Vec::new();
    if cfg.brokers.is_empty() {
        problems.push(format!("{key}.brokers: at least one broker is needed"));
    }
    for (i, b) in cfg.brokers.iter().enumerate() {
        if let Err(why) = check_broker(b) {
            problems.push(format!(
                "{key}.brokers[{i}]: bad broker address {b:?}: {why}"
            ));
        }
    }
    if let Err(why) = check_topic(&cfg.topic) {
        problems.push(format!("{key}.topic: {why}"));
    }
    if cfg.idempotent && cfg.acks != KafkaAcks::All {
        problems.push(format!(
            "{key}.acks: must be \"all\" for the idempotent producer (or set idempotent = false)"
        ));
    }
    if let Some(sasl) = &cfg.sasl {
        if !sasl::MECHANISMS.contains(&sasl.mechanism.as_str()) {
            problems.push(format!(
                "{key}.sasl.mechanism: unknown mechanism {:?} (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)",
                sasl.mechanism
            ));
        }
        if sasl.username.is_empty() {
            problems.push(format!("{key}.sasl.username: must not be empty"));
        }
    }
    if let Some(t) = &cfg.key
        && let Err(e) = super::template::parse(t)
    {
        problems.push(format!("{key}.key: {e}"));
    }
    // What the transport builds at start, so check-config and start agree.
    if let Some(t) = &cfg.tls
        && let Err(e) = tls::connector_tls(t)
    {
        problems.push(format!("{key}.{e}"));
    }
    problems
}

/// `host:port` with a port in 1..=65535 (`[v6]:port` for IPv6).
fn check_broker(addr: &str) -> Result<(), String> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err("missing port".into());
    };
    if host.is_empty() || host == "[]" {
        return Err("missing host".into());
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err("an IPv6 address needs brackets: [addr]:port".into());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("bad port {port:?}")),
    }
}

/// Kafka's topic name rules: 1–249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("must not be empty".into());
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(format!("longer than {MAX_TOPIC_LEN} characters"));
    }
    if topic == "." || topic == ".." {
        return Err(format!("{topic:?} is not a valid topic name"));
    }
    if let Some(c) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{topic:?} has {c:?}; topic names use only a-z, A-Z, 0-9, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Why a send to Kafka failed; [`KafkaError::attempt`] is its verdict.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// No connection (nothing was sent).
    #[error("cannot connect to {addr}: {why}")]
    Connect {
        /// Broker.
        addr: String,
        /// Why.
        why: String,
    },
    /// The request could not be written (the broker never processes a partial one).
    #[error("{addr}: the request could not be sent: {why}")]
    Send {
        /// Broker.
        addr: String,
        /// Why.
        why: String,
    },
    /// A request other than a produce got no answer.
    #[error("{addr}: no answer to {api}: {why}")]
    NoAnswer {
        /// Broker.
        addr: String,
        /// The request.
        api: String,
        /// Why.
        why: String,
    },
    /// Records went out but no answer came back: they may or may not be written.
    #[error("no answer after the records were sent: {0}")]
    Unanswered(String),
    /// The broker answered with an error code.
    #[error("{api}: {} (Kafka error {})", error_name(error), error.code())]
    Broker {
        /// The request.
        api: &'static str,
        /// The error.
        error: ResponseError,
        /// The broker's message, if any.
        message: Option<String>,
    },
    /// The topic's partitions or leaders are not known (yet).
    #[error("metadata: {0}")]
    Metadata(String),
    /// Authentication failed.
    #[error("SASL: {0}")]
    Sasl(String),
    /// The TLS handshake failed on a certificate (or the settings are wrong).
    #[error("TLS: {0}")]
    Tls(String),
    /// The broker does not speak a version watchpost needs.
    #[error("the broker does not support {0}")]
    Unsupported(String),
    /// A request could not be encoded.
    #[error("cannot encode the request: {0}")]
    Encode(String),
    /// The broker lost or fenced this producer: retried under a new producer id.
    #[error(
        "the broker no longer knows this producer ({0}); it is sent again under a new producer id"
    )]
    ProducerState(String),
    /// This node stopped leading before the request went out.
    #[error("not sent: this node stopped leading the cluster")]
    NotLeading,
    /// An unanswered batch on the same partition must be resolved (resent) first: the
    /// broker remembers only a producer's last five batches per partition.
    #[error("not sent: partition {0} waits for the resend of an unanswered batch")]
    Waiting(i32),
}

/// Kafka's name of an error: `MessageTooLarge` → `MESSAGE_TOO_LARGE`.
pub fn error_name(e: &ResponseError) -> String {
    let camel = e.to_string();
    if matches!(e, ResponseError::Unknown(_)) {
        return camel;
    }
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

impl KafkaError {
    /// A broker error answer to `api`.
    pub fn broker(api: &'static str, error: ResponseError, message: Option<String>) -> Self {
        KafkaError::Broker {
            api,
            error,
            message: message.filter(|m| !m.is_empty()),
        }
    }

    /// A lost answer to records sent: ambiguous.
    pub fn unanswered(e: KafkaError) -> KafkaError {
        match e {
            KafkaError::Unanswered(_) => e,
            other => KafkaError::Unanswered(other.to_string()),
        }
    }

    /// An error while connecting (ApiVersions, SASL): nothing was sent yet.
    pub fn before_sending(self) -> KafkaError {
        match self {
            KafkaError::Send { addr, why } | KafkaError::NoAnswer { addr, why, .. } => {
                KafkaError::Connect { addr, why }
            }
            other => other,
        }
    }

    /// Whether trying again later may succeed.
    pub fn retriable(&self) -> bool {
        match self {
            KafkaError::Connect { .. }
            | KafkaError::Send { .. }
            | KafkaError::NoAnswer { .. }
            | KafkaError::Metadata(_)
            | KafkaError::ProducerState(_)
            | KafkaError::NotLeading
            | KafkaError::Waiting(_)
            | KafkaError::Unanswered(_) => true,
            KafkaError::Broker { error, .. } => {
                error.is_retriable()
                    && !matches!(
                        error,
                        ResponseError::CorruptMessage | ResponseError::InvalidRecord
                    )
            }
            KafkaError::Sasl(_)
            | KafkaError::Tls(_)
            | KafkaError::Unsupported(_)
            | KafkaError::Encode(_) => false,
        }
    }

    /// The verdict: lost answers are ambiguous, retriable errors transient, the rest
    /// rejected (with Kafka's error name and the broker's message).
    pub fn attempt(&self) -> Attempt {
        let text = match self {
            KafkaError::Broker {
                message: Some(m), ..
            } => format!("{self}: {m}"),
            _ => self.to_string(),
        };
        match self {
            KafkaError::NotLeading => super::sender::not_leading(),
            KafkaError::Unanswered(_) => Attempt::Ambiguous(text),
            e if e.retriable() => Attempt::Transient(text),
            _ => Attempt::Rejected(text),
        }
    }
}

/// Sends `kafka` rows with each receiver's producer.
pub struct KafkaTransport {
    producers: HashMap<String, Arc<Producer>>,
}

impl KafkaTransport {
    /// Producers for the config's Kafka receivers (`None` when there are none); each
    /// send may take `timeout`.
    pub fn from_config(config: &Config, timeout: Duration) -> Result<Option<Self>, String> {
        let mut producers = HashMap::new();
        for (i, r) in config.receivers.iter().enumerate() {
            if let Some(k) = &r.kafka {
                let p =
                    producer_config(k, timeout).map_err(|e| format!("receivers[{i}].kafka.{e}"))?;
                producers.insert(r.name.clone(), Arc::new(Producer::new(p)));
            }
        }
        Ok((!producers.is_empty()).then_some(KafkaTransport { producers }))
    }
}

/// The producer settings of `k`; an error names the key below `kafka.`.
fn producer_config(k: &KafkaReceiver, timeout: Duration) -> Result<ProducerConfig, String> {
    let tls = k.tls.as_ref().map(tls::connector_tls).transpose()?;
    Ok(ProducerConfig {
        brokers: k.brokers.clone(),
        topic: k.topic.clone(),
        acks: match k.acks {
            KafkaAcks::All => -1,
            KafkaAcks::Leader => 1,
            KafkaAcks::None => 0,
        },
        compression: match k.compression {
            KafkaCompression::None => Compression::None,
            KafkaCompression::Gzip => Compression::Gzip,
            KafkaCompression::Snappy => Compression::Snappy,
        },
        idempotent: k.idempotent,
        timeout,
        connector: conn::Connector {
            tls,
            sasl: k.sasl.as_ref().map(|s| conn::Sasl {
                mechanism: s.mechanism.clone(),
                username: s.username.clone(),
                password: s.password.expose().to_string(),
            }),
            client_id: "watchpost".into(),
        },
    })
}

#[async_trait::async_trait]
impl OutboxTransport for KafkaTransport {
    async fn send(&self, row: &OutboxRow, started: &Started) -> Attempt {
        let Some(producer) = self.producers.get(&row.receiver) else {
            return Attempt::Rejected(format!(
                "kafka receiver {:?} is not configured",
                row.receiver
            ));
        };
        let payload: KafkaPayload = match serde_json::from_str(&row.payload) {
            Ok(p) => p,
            Err(e) => return Attempt::Rejected(format!("bad kafka payload: {e}")),
        };
        let records = payload.records(&row.idempotency_key);
        let batch = Batch {
            id: &row.idempotency_key,
            key: payload.key.as_bytes(),
            records: &records,
        };
        match producer.send(&batch, || started.mark()).await {
            Ok(w) => Attempt::Delivered(Some(match (w.offset, w.duplicate) {
                (_, true) => format!("partition {} (already written)", w.partition),
                (Some(o), _) => format!("partition {} offset {o}", w.partition),
                (None, _) => format!("partition {} (acks = none)", w.partition),
            })),
            Err(e) => e.attempt(),
        }
    }
}

#[cfg(test)]
mod tests;
