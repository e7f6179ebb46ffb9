//! A scripted Kafka broker for what librdkafka's mock cannot show: it checks the
//! idempotent producer's sequence numbers as Kafka does (a duplicate is acknowledged and
//! not written again), can swallow a produce request's answer (the records are written,
//! the connection closed), answers scripted error codes, checks SASL PLAIN, and can sit
//! behind TLS.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes, decode_request_header_from_buffer};
use kafka_protocol::records::RecordBatchDecoder;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the broker does with the next produce request.
#[derive(Debug, Clone, Copy)]
pub enum Produce {
    /// Write it (sequence checked) and answer.
    Answer,
    /// Write it (sequence checked) and close the connection without an answer.
    Swallow,
    /// Answer this error code; nothing written.
    Error(i16),
    /// Close the connection without writing or answering.
    Drop,
}

/// A written batch.
#[derive(Debug, Clone)]
pub struct Written {
    /// Producer id.
    pub producer_id: i64,
    /// First sequence number.
    pub sequence: i32,
    /// (key, value) of each record.
    pub records: Vec<(String, String)>,
}

#[derive(Default)]
struct State {
    script: VecDeque<Produce>,
    log: Vec<Written>,
    expected: HashMap<i64, i32>,
    produce_requests: usize,
    next_pid: i64,
    sasl: Option<(String, String)>,
    /// `PLAIN` or `SCRAM-SHA-256`.
    mechanism: String,
    authenticated: Vec<String>,
}

/// A SCRAM-SHA-256 exchange in progress on one connection.
#[derive(Default)]
struct ScramServer {
    client_first_bare: String,
    server_first: String,
    salted: Vec<u8>,
}

/// The running broker (one node, one partition per topic).
#[derive(Clone)]
pub struct FakeKafka {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    state: Arc<Mutex<State>>,
}

impl FakeKafka {
    /// Starts the broker; with `sasl`, SASL PLAIN with these credentials is required.
    pub async fn start(sasl: Option<(&str, &str)>) -> FakeKafka {
        Self::start_with(sasl, None).await
    }

    /// Starts the broker requiring SCRAM-SHA-256 with these credentials.
    pub async fn start_scram(user: &str, password: &str) -> FakeKafka {
        let f = Self::start_with(Some((user, password)), None).await;
        f.state.lock().unwrap().mechanism = "SCRAM-SHA-256".into();
        f
    }

    /// Starts the broker behind TLS with `acceptor` (it advertises the same address).
    pub async fn start_tls(acceptor: tokio_rustls::TlsAcceptor) -> FakeKafka {
        Self::start_with(None, Some(acceptor)).await
    }

    async fn start_with(
        sasl: Option<(&str, &str)>,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> FakeKafka {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(State {
            next_pid: 1000,
            mechanism: "PLAIN".into(),
            sasl: sasl.map(|(u, p)| (u.to_string(), p.to_string())),
            ..Default::default()
        }));
        let fake = FakeKafka { addr, state };
        let f = fake.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let f = f.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => f.serve(sock).await,
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(sock).await {
                                f.serve(s).await
                            }
                        }
                    }
                });
            }
        });
        fake
    }

    /// Queues what happens to the next produce requests.
    pub fn script(&self, actions: &[Produce]) {
        self.state.lock().unwrap().script.extend(actions);
    }

    /// Batches written, in order.
    pub fn written(&self) -> Vec<Written> {
        self.state.lock().unwrap().log.clone()
    }

    /// Produce requests received.
    pub fn produce_requests(&self) -> usize {
        self.state.lock().unwrap().produce_requests
    }

    /// Users that authenticated.
    pub fn authenticated(&self) -> Vec<String> {
        self.state.lock().unwrap().authenticated.clone()
    }

    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(&self, mut sock: S) {
        let mut scram = ScramServer::default();
        loop {
            let Ok(len) = sock.read_i32().await else {
                return;
            };
            let mut buf = vec![0u8; len as usize];
            if sock.read_exact(&mut buf).await.is_err() {
                return;
            }
            let mut buf = Bytes::from(buf);
            let header = decode_request_header_from_buffer(&mut buf).unwrap();
            let key = ApiKey::try_from(header.request_api_key).unwrap();
            let v = header.request_api_version;
            let body = match key {
                ApiKey::ApiVersions => encode(&api_versions(), v),
                ApiKey::Metadata => {
                    let req = MetadataRequest::decode(&mut buf, v).unwrap();
                    encode(&self.metadata(&req), v)
                }
                ApiKey::InitProducerId => {
                    let mut st = self.state.lock().unwrap();
                    st.next_pid += 1;
                    let resp = InitProducerIdResponse::default()
                        .with_producer_id(st.next_pid.into())
                        .with_producer_epoch(0);
                    encode(&resp, v)
                }
                ApiKey::SaslHandshake => {
                    let req = SaslHandshakeRequest::decode(&mut buf, v).unwrap();
                    let mechanism = self.state.lock().unwrap().mechanism.clone();
                    let code = if req.mechanism.as_str() == mechanism {
                        0
                    } else {
                        33
                    };
                    let resp = SaslHandshakeResponse::default()
                        .with_error_code(code)
                        .with_mechanisms(vec![StrBytes::from_string(mechanism)]);
                    encode(&resp, v)
                }
                ApiKey::SaslAuthenticate => {
                    let req = SaslAuthenticateRequest::decode(&mut buf, v).unwrap();
                    let scram_on = self.state.lock().unwrap().mechanism != "PLAIN";
                    let resp = if scram_on {
                        self.scram(&mut scram, &req.auth_bytes)
                    } else {
                        self.authenticate(&req.auth_bytes)
                    };
                    encode(&resp, v)
                }
                ApiKey::Produce => {
                    let req = ProduceRequest::decode(&mut buf, v).unwrap();
                    match self.produce(&req) {
                        // acks = 0: Kafka sends no answer at all.
                        Some(_) if req.acks == 0 => continue,
                        Some(resp) => encode(&resp, v),
                        None => return,
                    }
                }
                other => panic!("fake broker: unexpected {other:?}"),
            };
            let mut frame = BytesMut::new();
            let header = ResponseHeader::default().with_correlation_id(header.correlation_id);
            frame.put_i32(0);
            header
                .encode(&mut frame, key.response_header_version(v))
                .unwrap();
            frame.put_slice(&body);
            let n = (frame.len() - 4) as i32;
            frame[..4].copy_from_slice(&n.to_be_bytes());
            if sock.write_all(&frame).await.is_err() || sock.flush().await.is_err() {
                return;
            }
        }
    }

    fn metadata(&self, req: &MetadataRequest) -> MetadataResponse {
        let (host, port) = self.addr.rsplit_once(':').unwrap();
        let topics = req
            .topics
            .iter()
            .flatten()
            .map(|t| {
                MetadataResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(vec![
                        MetadataResponsePartition::default()
                            .with_partition_index(0)
                            .with_leader_id(BrokerId(1)),
                    ])
            })
            .collect();
        MetadataResponse::default()
            .with_brokers(vec![
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(1))
                    .with_host(StrBytes::from_string(host.to_string()))
                    .with_port(port.parse().unwrap()),
            ])
            .with_topics(topics)
    }

    fn authenticate(&self, bytes: &[u8]) -> SaslAuthenticateResponse {
        let mut st = self.state.lock().unwrap();
        let (user, pass) = st.sasl.clone().unwrap_or_default();
        let want = [b"\0", user.as_bytes(), b"\0", pass.as_bytes()].concat();
        if bytes == want.as_slice() {
            st.authenticated.push(user);
            SaslAuthenticateResponse::default()
        } else {
            SaslAuthenticateResponse::default()
                .with_error_code(58)
                .with_error_message(Some(StrBytes::from_static_str(
                    "Authentication failed: Invalid username or password",
                )))
        }
    }

    /// One SCRAM-SHA-256 step (RFC 5802), server side.
    fn scram(&self, st: &mut ScramServer, msg: &[u8]) -> SaslAuthenticateResponse {
        use base64::Engine;
        use base64::engine::general_purpose::STANDARD as B64;
        use hmac::{Hmac, Mac};
        use sha2::{Digest, Sha256};
        let hmac = |key: &[u8], data: &[u8]| {
            let mut m = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(key).unwrap();
            m.update(data);
            m.finalize().into_bytes().to_vec()
        };
        let msg = String::from_utf8_lossy(msg).into_owned();
        let (user, password) = self.state.lock().unwrap().sasl.clone().unwrap_or_default();
        let reply = |b: String| SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(b));
        if let Some(bare) = msg.strip_prefix("n,,") {
            let nonce = bare
                .split(',')
                .find_map(|a| a.strip_prefix("r="))
                .unwrap_or("");
            let salt = b"fake-kafka-salt";
            let iterations = 4096;
            let mut u = hmac(
                password.as_bytes(),
                &[&salt[..], &1u32.to_be_bytes()].concat(),
            );
            let mut salted = u.clone();
            for _ in 1..iterations {
                u = hmac(password.as_bytes(), &u);
                salted.iter_mut().zip(&u).for_each(|(s, b)| *s ^= b);
            }
            st.client_first_bare = bare.to_string();
            st.server_first = format!("r={nonce}srv,s={},i={iterations}", B64.encode(salt));
            st.salted = salted;
            return reply(st.server_first.clone());
        }
        let (without_proof, proof) = msg.rsplit_once(",p=").unwrap_or((&msg, ""));
        let auth = format!(
            "{},{},{without_proof}",
            st.client_first_bare, st.server_first
        );
        let client_key = hmac(&st.salted, b"Client Key");
        let stored = Sha256::digest(&client_key).to_vec();
        let signature = hmac(&stored, auth.as_bytes());
        let proof = B64.decode(proof).unwrap_or_default();
        let recovered: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        let named = st.client_first_bare.starts_with(&format!("n={user},"));
        if !named || Sha256::digest(&recovered).to_vec() != stored {
            return SaslAuthenticateResponse::default()
                .with_error_code(58)
                .with_error_message(Some(StrBytes::from_static_str(
                    "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256",
                )));
        }
        self.state.lock().unwrap().authenticated.push(user);
        let server_sig = hmac(&hmac(&st.salted, b"Server Key"), auth.as_bytes());
        reply(format!("v={}", B64.encode(server_sig)))
    }

    /// Kafka's sequence check: the expected sequence is written, an older one is a
    /// duplicate (acknowledged, not written), a newer one is out of order.
    fn produce(&self, req: &ProduceRequest) -> Option<ProduceResponse> {
        let mut st = self.state.lock().unwrap();
        st.produce_requests += 1;
        let action = st.script.pop_front().unwrap_or(Produce::Answer);
        if let Produce::Drop = action {
            return None;
        }
        let topic = &req.topic_data[0];
        let part = &topic.partition_data[0];
        let mut records = part.records.clone().unwrap();
        let mut code = 0;
        let mut base_offset = -1;
        if let Produce::Error(c) = action {
            code = c;
        } else {
            let sets = RecordBatchDecoder::decode_all(&mut records).unwrap();
            let recs = &sets[0].records;
            let (pid, seq) = (recs[0].producer_id, recs[0].sequence);
            let expected = *st.expected.get(&pid).unwrap_or(&0);
            if pid >= 0 && seq < expected {
                code = 46; // DUPLICATE_SEQUENCE_NUMBER
            } else if pid >= 0 && seq > expected {
                code = 45; // OUT_OF_ORDER_SEQUENCE_NUMBER
            } else {
                st.expected.insert(pid, seq + recs.len() as i32);
                base_offset = st.log.len() as i64;
                let text = |b: &Option<Bytes>| {
                    String::from_utf8_lossy(b.as_deref().unwrap_or_default()).into_owned()
                };
                st.log.push(Written {
                    producer_id: pid,
                    sequence: seq,
                    records: recs
                        .iter()
                        .map(|r| (text(&r.key), text(&r.value)))
                        .collect(),
                });
            }
            if let Produce::Swallow = action {
                return None;
            }
        }
        Some(ProduceResponse::default().with_responses(vec![
                TopicProduceResponse::default()
                    .with_name(topic.name.clone())
                    .with_partition_responses(vec![
                        PartitionProduceResponse::default()
                            .with_index(0)
                            .with_error_code(code)
                            .with_base_offset(base_offset),
                    ]),
            ]))
    }
}

fn api_versions() -> ApiVersionsResponse {
    let range = |k: ApiKey, min, max| {
        ApiVersion::default()
            .with_api_key(k as i16)
            .with_min_version(min)
            .with_max_version(max)
    };
    ApiVersionsResponse::default().with_api_keys(vec![
        range(ApiKey::Produce, 3, 7),
        range(ApiKey::Metadata, 1, 7),
        range(ApiKey::ApiVersions, 0, 2),
        range(ApiKey::InitProducerId, 0, 1),
        range(ApiKey::SaslHandshake, 1, 1),
        range(ApiKey::SaslAuthenticate, 0, 1),
    ])
}

fn encode<M: Encodable>(m: &M, v: i16) -> Bytes {
    let mut b = BytesMut::new();
    m.encode(&mut b, v).unwrap();
    b.freeze()
}

/// A test CA and a server certificate for `localhost` and 127.0.0.1 signed by it, made by
/// `openssl` in `dir`; returns the CA's PEM file and the server's TLS acceptor.
pub fn tls_server(dir: &std::path::Path) -> (std::path::PathBuf, tokio_rustls::TlsAcceptor) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=watchpost test CA",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=localhost",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("leaf.pem"))
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("leaf.key")).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    (
        dir.join("ca.pem"),
        tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)),
    )
}
