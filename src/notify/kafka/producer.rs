//! A small Kafka producer on the `kafka-protocol` wire codec: bootstrap and metadata
//! (partitions and their leaders), the idempotent producer's id and per-partition
//! sequence numbers (`InitProducerId`), and one produce request at a time.
//!
//! Idempotence and the outbox: within one send, a lost answer is retried at once on a
//! new connection with the same bytes (same producer id, epoch and sequence), so the
//! broker writes the batch once. When that fails too, the batch is kept as *pending*
//! under its outbox row's key and its sequence numbers stay reserved: later batches take
//! the next ones, and when the outbox sends the row again exactly those bytes go out,
//! so the broker writes it at most once whatever went out in between. If the pending
//! batch was never written, the next batch on its partition is refused as out of order;
//! the producer then takes a new producer id and that batch is retried (the pending one
//! keeps its old id, which the broker still accepts in order). A copy can only be
//! written twice when watchpost restarts between the two sends (pending batches live in
//! memory); consumers drop it by its `idempotency-key` header.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, TopicName, metadata_request::MetadataRequestTopic,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::KafkaError;
use super::conn::{Conn, Connector};
use super::murmur::partition_for;

/// Longest an unanswered batch holds its partition for its resend.
const PENDING_HOLD: Duration = Duration::from_secs(15 * 60);

/// Produce versions watchpost speaks (v3: record batches; v9 and later add nothing
/// it needs, v13 drops topic names).
const PRODUCE: (i16, i16) = (3, 9);
/// Metadata versions (v4+: topic auto-creation is asked for).
const METADATA: (i16, i16) = (1, 9);
/// InitProducerId versions.
const INIT_PRODUCER_ID: (i16, i16) = (0, 4);
/// Connections idle this long are closed before use (brokers close theirs after
/// `connections.max.idle.ms`, 10 minutes by default; a request written into a socket
/// the broker already closed would have an unknown outcome).
const MAX_IDLE: Duration = Duration::from_secs(240);
/// Metadata lookups while a topic is being created or a leader elected.
const METADATA_TRIES: u32 = 4;
/// Sends of one batch within one call when its answer was lost (idempotent only).
const PRODUCE_TRIES: u32 = 3;
/// Unresolved batches kept for a resend (the oldest is forgotten beyond).
const MAX_PENDING: usize = 256;

/// A producer's settings.
#[derive(Clone)]
pub struct ProducerConfig {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    /// Topic.
    pub topic: String,
    /// `acks`: -1 (all), 1 (leader), 0 (none).
    pub acks: i16,
    /// Batch compression.
    pub compression: Compression,
    /// Idempotent producer (producer id and sequence numbers).
    pub idempotent: bool,
    /// How long one send may take, metadata and connections included.
    pub timeout: Duration,
    /// TLS, SASL and client id.
    pub connector: Connector,
}

/// One record of a batch.
#[derive(Debug, Clone)]
pub struct OutRecord {
    /// Record key.
    pub key: Bytes,
    /// Record value.
    pub value: Bytes,
    /// Record headers.
    pub headers: Vec<(String, Bytes)>,
}

/// A batch to write: its identity (the outbox row), partitioning key and records.
pub struct Batch<'a> {
    /// Identity: the same id is the same batch (resent with the same sequence).
    pub id: &'a str,
    /// The partitioning key.
    pub key: &'a [u8],
    /// The records, in order.
    pub records: &'a [OutRecord],
}

/// Where a batch was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// Partition.
    pub partition: i32,
    /// Offset of its first record (`None` with `acks = 0`, or a duplicate).
    pub offset: Option<i64>,
    /// The broker already had it (a resend after a lost answer).
    pub duplicate: bool,
}

/// The topic's partitions and brokers.
struct Meta {
    /// Broker addresses by node id.
    brokers: HashMap<i32, String>,
    /// Leader node of each partition, by index.
    leaders: Vec<i32>,
}

/// The idempotent producer's identity and next sequence per partition.
struct Session {
    producer_id: i64,
    epoch: i16,
    next_seq: HashMap<i32, i32>,
}

/// An encoded batch about to go out, or one that may have gone out (pending).
#[derive(Clone)]
struct Pending {
    partition: i32,
    records: Bytes,
    count: i32,
    producer_id: i64,
    /// A pending batch sent again (its sequence numbers are reserved already).
    resent: bool,
    since: Instant,
}

#[derive(Default)]
struct State {
    meta_conn: Option<(Conn, Instant)>,
    conns: HashMap<i32, (Conn, Instant)>,
    meta: Option<Meta>,
    session: Option<Session>,
    /// Unresolved batches by outbox row key.
    pending: HashMap<String, Pending>,
}

/// A producer for one topic; one send at a time (a partition's records stay in order).
pub struct Producer {
    cfg: ProducerConfig,
    state: Mutex<State>,
}

impl Producer {
    /// A producer; it connects on the first send.
    pub fn new(cfg: ProducerConfig) -> Producer {
        Producer {
            cfg,
            state: Mutex::new(State::default()),
        }
    }

    /// Writes `batch` to the partition of its key. `mark` is called right before the
    /// produce request goes out; when it answers `false` nothing is sent.
    pub async fn send(
        &self,
        batch: &Batch<'_>,
        mark: impl FnOnce() -> bool,
    ) -> Result<Written, KafkaError> {
        let deadline = Instant::now() + self.cfg.timeout;
        let mut st = self.state.lock().await;
        self.metadata(&mut st, deadline).await?;
        let prepared = match st.pending.get(batch.id) {
            Some(p) => Pending {
                resent: true,
                ..p.clone()
            },
            None => {
                let p = self.prepare(&mut st, batch, deadline).await?;
                // Later batches would push an unanswered one out of the broker's memory
                // of the last five: its resend would then be written twice. One never
                // resent (dropped by `notify.ambiguous = drop`) stops holding after a while.
                st.pending.retain(|_, q| q.since.elapsed() < PENDING_HOLD);
                if st
                    .pending
                    .values()
                    .any(|q| q.partition == p.partition && q.producer_id == p.producer_id)
                {
                    return Err(KafkaError::Waiting(p.partition));
                }
                p
            }
        };
        if !mark() {
            return Err(KafkaError::NotLeading);
        }
        let result = self.produce(&mut st, &prepared, deadline).await;
        self.settle(&mut st, batch.id, &prepared, &result);
        result
    }

    /// Sequence bookkeeping after a send of `p` (row `id`): a written batch advances
    /// its partition's sequence (unless it was reserved already); an unanswered one
    /// reserves it and is kept for a resend.
    fn settle(&self, st: &mut State, id: &str, p: &Pending, result: &Result<Written, KafkaError>) {
        let reserve = |st: &mut State| {
            if let Some(s) = st
                .session
                .as_mut()
                .filter(|s| s.producer_id == p.producer_id)
            {
                let seq = s.next_seq.entry(p.partition).or_insert(0);
                *seq = seq.wrapping_add(p.count) & i32::MAX;
            }
        };
        match result {
            Ok(_) => {
                st.pending.remove(id);
                if !p.resent {
                    reserve(st);
                }
            }
            Err(KafkaError::Unanswered(_)) if self.cfg.idempotent && !p.resent => {
                reserve(st);
                if st.pending.len() >= MAX_PENDING
                    && let Some(oldest) = st
                        .pending
                        .iter()
                        .min_by_key(|(_, p)| p.since)
                        .map(|(k, _)| k.clone())
                {
                    st.pending.remove(&oldest);
                }
                st.pending.insert(id.to_string(), p.clone());
            }
            Err(KafkaError::ProducerState(_)) => {
                st.pending.remove(id);
            }
            // Not written this time; a pending batch may still have been, earlier.
            Err(_) => {}
        }
    }

    /// Encodes `batch` for its partition under the current producer id.
    async fn prepare(
        &self,
        st: &mut State,
        batch: &Batch<'_>,
        deadline: Instant,
    ) -> Result<Pending, KafkaError> {
        let partitions = st.meta.as_ref().map_or(0, |m| m.leaders.len()) as i32;
        let partition = partition_for(batch.key, partitions);
        let (producer_id, epoch, base) = if self.cfg.idempotent {
            let s = self.session(st, deadline).await?;
            let seq = s.next_seq.get(&partition).copied().unwrap_or(0);
            (s.producer_id, s.epoch, seq)
        } else {
            (-1, -1, -1)
        };
        let records = encode(
            batch.records,
            producer_id,
            epoch,
            base,
            self.cfg.compression,
        )?;
        Ok(Pending {
            partition,
            records,
            count: batch.records.len() as i32,
            producer_id,
            resent: false,
            since: Instant::now(),
        })
    }

    /// Sends `p`, again on a fresh connection while its answer is lost (idempotent).
    async fn produce(
        &self,
        st: &mut State,
        p: &Pending,
        deadline: Instant,
    ) -> Result<Written, KafkaError> {
        let mut lost: Option<KafkaError> = None;
        let mut attempt = p.clone();
        for _ in 0..PRODUCE_TRIES {
            match self.produce_once(st, &attempt, deadline).await {
                Ok(r) => {
                    return match self.outcome(st, &attempt, r) {
                        // An earlier try may have been written: still unknown.
                        Err(e) if lost.is_some() && !matches!(e, KafkaError::ProducerState(_)) => {
                            Err(KafkaError::unanswered(e))
                        }
                        other => other,
                    };
                }
                Err(e @ KafkaError::NoAnswer { .. }) => {
                    st.meta = None;
                    // From now on the broker may know this batch: a duplicate answer
                    // means it was written.
                    attempt.resent = true;
                    let again = self.cfg.idempotent && Instant::now() < deadline;
                    lost = Some(e);
                    if !again {
                        break;
                    }
                    tracing::debug!(topic = %self.cfg.topic, "answer lost; sending the same batch again");
                    if self.metadata(st, deadline).await.is_err() {
                        break;
                    }
                }
                // Not written now; but an earlier try may have been.
                Err(e) => return Err(lost.map_or(e, KafkaError::unanswered)),
            }
        }
        Err(lost.map_or_else(
            || KafkaError::Unanswered("no answer".into()),
            KafkaError::unanswered,
        ))
    }

    /// One produce request to the partition's leader; `None` with `acks = 0`.
    async fn produce_once(
        &self,
        st: &mut State,
        p: &Pending,
        deadline: Instant,
    ) -> Result<Option<ProduceResponse>, KafkaError> {
        let leader = st
            .meta
            .as_ref()
            .and_then(|m| m.leaders.get(p.partition as usize).copied())
            .ok_or_else(|| {
                KafkaError::Metadata(format!("no leader for partition {}", p.partition))
            })?;
        let req = ProduceRequest::default()
            .with_transactional_id(None)
            .with_acks(self.cfg.acks)
            .with_timeout_ms(self.cfg.timeout.as_millis().min(i32::MAX as u128) as i32)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(topic_name(&self.cfg.topic))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(p.partition)
                            .with_records(Some(p.records.clone())),
                    ]),
            ]);
        let conn = self.leader_conn(st, leader, deadline).await?;
        let result = match conn.version(ApiKey::Produce, PRODUCE) {
            Err(e) => Err(e),
            Ok(v) if self.cfg.acks == 0 => conn.write(&req, v, deadline).await.map(|_| None),
            Ok(v) => conn.call(&req, v, deadline).await.map(Some),
        };
        if matches!(
            result,
            Err(KafkaError::Send { .. } | KafkaError::NoAnswer { .. })
        ) {
            st.conns.remove(&leader);
        }
        result
    }

    /// The verdict of the broker's answer; a written batch advances the sequence.
    fn outcome(
        &self,
        st: &mut State,
        p: &Pending,
        resp: Option<ProduceResponse>,
    ) -> Result<Written, KafkaError> {
        let Some(resp) = resp else {
            return Ok(written(p, None, false));
        };
        let part = resp
            .responses
            .iter()
            .filter(|t| t.name.0.as_str() == self.cfg.topic)
            .flat_map(|t| t.partition_responses.iter())
            .find(|r| r.index == p.partition)
            .ok_or_else(|| KafkaError::Unanswered("the answer lacks the partition".into()))?;
        let message = part.error_message.as_ref().map(|m| m.to_string());
        match ResponseError::try_from_code(part.error_code) {
            None => Ok(written(p, Some(part.base_offset), false)),
            Some(ResponseError::DuplicateSequenceNumber) if p.resent => Ok(written(p, None, true)),
            Some(
                e @ (ResponseError::DuplicateSequenceNumber
                | ResponseError::OutOfOrderSequenceNumber
                | ResponseError::UnknownProducerId
                | ResponseError::InvalidProducerEpoch
                | ResponseError::ProducerFenced),
            ) => {
                // The broker's sequence for this producer is not ours (a pending batch
                // was never written, or the broker lost or fenced the producer): this
                // batch was not written; it goes out again under a new producer id.
                st.session = None;
                Err(KafkaError::ProducerState(e.to_string()))
            }
            // Answered, but possibly appended already: as if unanswered (the sequence
            // stays reserved and the same batch goes out again).
            Some(
                e @ (ResponseError::RequestTimedOut | ResponseError::NotEnoughReplicasAfterAppend),
            ) if self.cfg.idempotent => Err(KafkaError::Unanswered(format!(
                "{} (it may have been appended)",
                super::error_name(&e)
            ))),
            Some(e) => {
                if matches!(
                    e,
                    ResponseError::NotLeaderOrFollower
                        | ResponseError::LeaderNotAvailable
                        | ResponseError::UnknownTopicOrPartition
                ) {
                    st.meta = None;
                }
                Err(KafkaError::broker("Produce", e, message))
            }
        }
    }

    /// The producer id, asked for when there is none.
    async fn session<'s>(
        &self,
        st: &'s mut State,
        deadline: Instant,
    ) -> Result<&'s Session, KafkaError> {
        if st.session.is_none() {
            let req = InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(i32::MAX)
                .with_producer_id((-1).into())
                .with_producer_epoch(-1);
            let conn = self.meta_conn(st, deadline).await?;
            let v = conn.version(ApiKey::InitProducerId, INIT_PRODUCER_ID)?;
            let resp = conn.call(&req, v, deadline).await;
            let resp = resp.inspect_err(|_| st.meta_conn = None)?;
            if let Some(e) = ResponseError::try_from_code(resp.error_code) {
                return Err(KafkaError::broker("InitProducerId", e, None));
            }
            tracing::debug!(topic = %self.cfg.topic, producer_id = resp.producer_id.0, epoch = resp.producer_epoch, "idempotent producer id");
            st.session = Some(Session {
                producer_id: resp.producer_id.0,
                epoch: resp.producer_epoch,
                next_seq: HashMap::new(),
            });
        }
        st.session
            .as_ref()
            .ok_or_else(|| KafkaError::ProducerState("no producer id".into()))
    }

    /// Makes sure the topic's partitions and leaders are known (the topic is created
    /// when the broker auto-creates topics).
    async fn metadata(&self, st: &mut State, deadline: Instant) -> Result<(), KafkaError> {
        if st.meta.is_some() {
            return Ok(());
        }
        let mut tries = 0;
        loop {
            tries += 1;
            let resp = self.metadata_call(st, deadline).await?;
            match parse_metadata(&resp, &self.cfg.topic) {
                Ok(meta) => {
                    st.meta = Some(meta);
                    return Ok(());
                }
                Err(e) if e.retriable() && tries < METADATA_TRIES => {
                    let pause = Duration::from_millis(200 * u64::from(tries));
                    if Instant::now() + pause >= deadline {
                        return Err(e);
                    }
                    tokio::time::sleep(pause).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn metadata_call(
        &self,
        st: &mut State,
        deadline: Instant,
    ) -> Result<MetadataResponse, KafkaError> {
        let req = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name(&self.cfg.topic))),
            ]))
            .with_allow_auto_topic_creation(true);
        let conn = self.meta_conn(st, deadline).await?;
        let v = conn.version(ApiKey::Metadata, METADATA)?;
        let resp = conn.call(&req, v, deadline).await;
        resp.inspect_err(|_| st.meta_conn = None)
    }

    /// A connection for metadata and producer ids: the bootstrap brokers in order,
    /// then the brokers the metadata named.
    async fn meta_conn<'s>(
        &self,
        st: &'s mut State,
        deadline: Instant,
    ) -> Result<&'s mut Conn, KafkaError> {
        if st
            .meta_conn
            .as_ref()
            .is_some_and(|(_, used)| used.elapsed() >= MAX_IDLE)
        {
            st.meta_conn = None;
        }
        if st.meta_conn.is_none() {
            let known = st.meta.iter().flat_map(|m| m.brokers.values().cloned());
            let candidates: Vec<String> = self.cfg.brokers.iter().cloned().chain(known).collect();
            let mut last = None;
            for addr in candidates {
                match self.cfg.connector.connect(&addr, deadline).await {
                    Ok(c) => {
                        st.meta_conn = Some((c, Instant::now()));
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(broker = %addr, error = %e, "cannot connect to a bootstrap broker");
                        let permanent = !e.retriable();
                        last = Some(e);
                        if permanent {
                            break;
                        }
                    }
                }
            }
            if st.meta_conn.is_none() {
                return Err(last.unwrap_or(KafkaError::Metadata("no brokers".into())));
            }
        }
        match st.meta_conn.as_mut() {
            Some((c, used)) => {
                *used = Instant::now();
                Ok(c)
            }
            None => Err(KafkaError::Metadata("no brokers".into())),
        }
    }

    /// The connection to broker `node`, made when needed.
    async fn leader_conn<'s>(
        &self,
        st: &'s mut State,
        node: i32,
        deadline: Instant,
    ) -> Result<&'s mut Conn, KafkaError> {
        if st
            .conns
            .get(&node)
            .is_some_and(|(_, used)| used.elapsed() >= MAX_IDLE)
        {
            st.conns.remove(&node);
        }
        if !st.conns.contains_key(&node) {
            let addr = st
                .meta
                .as_ref()
                .and_then(|m| m.brokers.get(&node).cloned())
                .ok_or_else(|| KafkaError::Metadata(format!("broker {node} is not known")))?;
            let conn = self.cfg.connector.connect(&addr, deadline).await?;
            st.conns.insert(node, (conn, Instant::now()));
        }
        match st.conns.get_mut(&node) {
            Some((c, used)) => {
                *used = Instant::now();
                Ok(c)
            }
            None => Err(KafkaError::Metadata(format!("broker {node} is not known"))),
        }
    }
}

fn written(p: &Pending, offset: Option<i64>, duplicate: bool) -> Written {
    Written {
        partition: p.partition,
        offset,
        duplicate,
    }
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// The topic's brokers and partition leaders from a metadata answer.
fn parse_metadata(resp: &MetadataResponse, topic: &str) -> Result<Meta, KafkaError> {
    let t = resp
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .ok_or_else(|| KafkaError::Metadata(format!("topic {topic:?} is not in the metadata")))?;
    if let Some(e) = ResponseError::try_from_code(t.error_code) {
        return Err(KafkaError::broker("Metadata", e, None));
    }
    if t.partitions.is_empty() {
        return Err(KafkaError::Metadata(format!(
            "topic {topic:?} has no partitions yet"
        )));
    }
    let mut leaders = vec![-1; t.partitions.len()];
    for p in &t.partitions {
        let slot = usize::try_from(p.partition_index)
            .ok()
            .and_then(|i| leaders.get_mut(i))
            .ok_or_else(|| {
                KafkaError::Metadata(format!("partition {} out of range", p.partition_index))
            })?;
        *slot = p.leader_id.0;
    }
    let brokers: HashMap<i32, String> = resp
        .brokers
        .iter()
        .map(|b| (b.node_id.0, join_host_port(b.host.as_str(), b.port)))
        .collect();
    if let Some(p) = leaders.iter().position(|l| !brokers.contains_key(l)) {
        return Err(KafkaError::Metadata(format!(
            "no leader for partition {p} of {topic:?}"
        )));
    }
    Ok(Meta { brokers, leaders })
}

fn join_host_port(host: &str, port: i32) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// One record batch (v2) of `records`, sequence numbers from `base` (-1: none).
fn encode(
    records: &[OutRecord],
    producer_id: i64,
    epoch: i16,
    base: i32,
    compression: Compression,
) -> Result<Bytes, KafkaError> {
    let now = chrono::Utc::now().timestamp_millis();
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // Without idempotence the base is -1 (none) and offset - sequence stays
            // constant, which keeps the records in one batch.
            sequence: base.wrapping_add(i as i32),
            timestamp: now,
            key: Some(r.key.clone()),
            value: Some(r.value.clone()),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), Some(v.clone())))
                .collect::<IndexMap<_, _>>(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options)
        .map_err(|e| KafkaError::Encode(e.to_string()))?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    fn rec(key: &str, value: &str) -> OutRecord {
        OutRecord {
            key: Bytes::from(key.to_string()),
            value: Bytes::from(value.to_string()),
            headers: vec![("idempotency-key".into(), Bytes::from_static(b"k1"))],
        }
    }

    #[test]
    fn batches_carry_producer_id_and_sequences() {
        for compression in [Compression::None, Compression::Gzip, Compression::Snappy] {
            let bytes = encode(&[rec("g", "a"), rec("g", "b")], 42, 3, 7, compression).unwrap();
            let mut b = bytes.clone();
            let sets = RecordBatchDecoder::decode_all(&mut b).unwrap();
            assert_eq!(sets.len(), 1, "one batch");
            let r = &sets[0].records;
            assert_eq!(sets[0].compression, compression);
            assert_eq!(r.len(), 2);
            assert_eq!((r[0].producer_id, r[0].producer_epoch), (42, 3));
            assert_eq!((r[0].sequence, r[1].sequence), (7, 8));
            assert_eq!(r[1].value.as_deref(), Some(&b"b"[..]));
            assert_eq!(
                r[0].headers
                    .get(&StrBytes::from_static_str("idempotency-key")),
                Some(&Some(Bytes::from_static(b"k1")))
            );
        }
        // Without idempotence: no producer id, no sequence, still one batch.
        let mut b = encode(
            &[rec("g", "a"), rec("g", "b")],
            -1,
            -1,
            -1,
            Compression::None,
        )
        .unwrap();
        let sets = RecordBatchDecoder::decode_all(&mut b).unwrap();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].records[0].sequence, -1);
    }

    #[test]
    fn hosts_are_joined() {
        assert_eq!(join_host_port("h", 9092), "h:9092");
        assert_eq!(join_host_port("::1", 9092), "[::1]:9092");
    }
}
