//! One connection to a Kafka broker: TCP (or TLS), the API versions both sides speak,
//! SASL, and framed requests with correlation ids.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, InitProducerIdRequest, InitProducerIdResponse,
    MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, RequestHeader,
    ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::KafkaError;
use super::sasl::Exchange;

/// Largest response accepted (a produce or metadata answer is a few KB).
const MAX_RESPONSE: usize = 16 << 20;
/// How long a TCP connect (and TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A request watchpost sends, and its answer (the codec's own `Request` trait needs
/// its broker half too).
pub trait Api: Encodable {
    /// The API key.
    const KEY: ApiKey;
    /// The answer.
    type Response: Decodable;
}

macro_rules! apis {
    ($($req:ty => $resp:ty, $key:ident;)*) => {$(
        impl Api for $req {
            const KEY: ApiKey = ApiKey::$key;
            type Response = $resp;
        }
    )*};
}

apis! {
    ApiVersionsRequest => ApiVersionsResponse, ApiVersions;
    SaslHandshakeRequest => SaslHandshakeResponse, SaslHandshake;
    SaslAuthenticateRequest => SaslAuthenticateResponse, SaslAuthenticate;
    MetadataRequest => MetadataResponse, Metadata;
    InitProducerIdRequest => InitProducerIdResponse, InitProducerId;
    ProduceRequest => ProduceResponse, Produce;
}

/// A byte stream to a broker, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// TLS settings of a receiver's broker connections.
#[derive(Clone, Debug)]
pub struct Tls {
    /// The rustls client configuration (roots, verification).
    pub config: Arc<rustls::ClientConfig>,
    /// Name expected in certificates; `None`: the host connected to.
    pub server_name: Option<String>,
}

/// SASL credentials.
#[derive(Clone)]
pub struct Sasl {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// User.
    pub username: String,
    /// Password.
    pub password: String,
}

/// How connections are made.
#[derive(Clone, Default)]
pub struct Connector {
    /// TLS, or plaintext.
    pub tls: Option<Tls>,
    /// SASL, or none.
    pub sasl: Option<Sasl>,
    /// `client.id` sent with every request.
    pub client_id: String,
}

/// A connected, authenticated broker session.
pub struct Conn {
    stream: Box<dyn Io>,
    addr: String,
    next_id: i32,
    client_id: StrBytes,
    /// The broker's version ranges by API key.
    versions: HashMap<i16, (i16, i16)>,
}

impl Connector {
    /// Connects to `addr` (`host:port`), learns its API versions and authenticates,
    /// before `deadline`.
    pub async fn connect(&self, addr: &str, deadline: Instant) -> Result<Conn, KafkaError> {
        let connect_by = deadline.min(Instant::now() + CONNECT_TIMEOUT);
        let fail = |why: String| KafkaError::Connect {
            addr: addr.to_string(),
            why,
        };
        let tcp = tokio::time::timeout_at(connect_by, TcpStream::connect(addr))
            .await
            .map_err(|_| fail("timed out".into()))?
            .map_err(|e| fail(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Io> = match &self.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = tls.server_name.as_deref().unwrap_or(host).to_string();
                let name = rustls::pki_types::ServerName::try_from(name)
                    .map_err(|e| KafkaError::Tls(format!("server name: {e}")))?;
                let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                let s = tokio::time::timeout_at(connect_by, connector.connect(name, tcp))
                    .await
                    .map_err(|_| fail("TLS handshake timed out".into()))?
                    .map_err(|e| tls_error(addr, e))?;
                Box::new(s)
            }
        };
        let mut conn = Conn {
            stream,
            addr: addr.to_string(),
            next_id: 1,
            client_id: StrBytes::from_string(self.client_id.clone()),
            versions: HashMap::new(),
        };
        conn.api_versions(deadline).await?;
        if let Some(sasl) = &self.sasl {
            conn.authenticate(sasl, deadline).await?;
        }
        Ok(conn)
    }
}

/// A failed TLS handshake: a certificate problem is permanent, a cut connection is not.
fn tls_error(addr: &str, e: std::io::Error) -> KafkaError {
    let is_tls = e
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
    if is_tls {
        KafkaError::Tls(format!("{addr}: {e}"))
    } else {
        KafkaError::Connect {
            addr: addr.to_string(),
            why: format!("TLS handshake: {e}"),
        }
    }
}

impl Conn {
    /// The broker's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The highest version of `api` both sides speak, within `ours`.
    pub fn version(&self, api: ApiKey, ours: (i16, i16)) -> Result<i16, KafkaError> {
        let (min, max) = self
            .versions
            .get(&(api as i16))
            .copied()
            .ok_or_else(|| KafkaError::Unsupported(format!("{api:?}")))?;
        let v = max.min(ours.1);
        if v < min.max(ours.0) {
            return Err(KafkaError::Unsupported(format!(
                "{api:?} v{}..v{} (the broker speaks v{min}..v{max})",
                ours.0, ours.1
            )));
        }
        Ok(v)
    }

    /// Sends `req` as `version` and waits for its answer until `deadline`. A request
    /// that could not be written is [`KafkaError::Send`]; one without an answer,
    /// [`KafkaError::NoAnswer`].
    pub async fn call<R: Api>(
        &mut self,
        req: &R,
        version: i16,
        deadline: Instant,
    ) -> Result<R::Response, KafkaError> {
        let id = self.write(req, version, deadline).await?;
        self.read::<R>(id, version, deadline).await
    }

    /// Writes `req` as `version` (for `acks = 0` produce requests, which get no
    /// answer); returns the correlation id.
    pub async fn write<R: Api>(
        &mut self,
        req: &R,
        version: i16,
        deadline: Instant,
    ) -> Result<i32, KafkaError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let frame = self.frame(req, version, id)?;
        let written = async {
            self.stream.write_all(&frame).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout_at(deadline, written).await {
            Ok(Ok(())) => Ok(id),
            Ok(Err(e)) => Err(self.send_error(e.to_string())),
            Err(_) => Err(self.send_error("timed out while writing".into())),
        }
    }

    fn send_error(&self, why: String) -> KafkaError {
        KafkaError::Send {
            addr: self.addr.clone(),
            why,
        }
    }

    /// The length-prefixed request: header (with this connection's client id) + body.
    fn frame<R: Api>(&self, req: &R, version: i16, id: i32) -> Result<Bytes, KafkaError> {
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY as i16)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(self.client_id.clone()));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        let encoded = header
            .encode(&mut buf, R::KEY.request_header_version(version))
            .and_then(|_| req.encode(&mut buf, version));
        encoded.map_err(|e| KafkaError::Encode(e.to_string()))?;
        let len = i32::try_from(buf.len() - 4)
            .map_err(|_| KafkaError::Encode("request too large".into()))?;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        Ok(buf.freeze())
    }

    /// Reads the answer to request `id` of type `R`.
    async fn read<R: Api>(
        &mut self,
        id: i32,
        version: i16,
        deadline: Instant,
    ) -> Result<R::Response, KafkaError> {
        let api = R::KEY;
        let no_answer = |addr: &str, why: String| KafkaError::NoAnswer {
            addr: addr.to_string(),
            api: format!("{api:?}"),
            why,
        };
        let mut body = match tokio::time::timeout_at(deadline, self.read_frame()).await {
            Ok(Ok(b)) => b,
            Ok(Err(why)) => return Err(no_answer(&self.addr, why)),
            Err(_) => return Err(no_answer(&self.addr, "timed out".into())),
        };
        let header = ResponseHeader::decode(&mut body, api.response_header_version(version))
            .map_err(|e| no_answer(&self.addr, format!("bad response header: {e}")))?;
        if header.correlation_id != id {
            return Err(no_answer(
                &self.addr,
                format!(
                    "answer to request {} while waiting for {id}",
                    header.correlation_id
                ),
            ));
        }
        R::Response::decode(&mut body, version)
            .map_err(|e| no_answer(&self.addr, format!("bad {api:?} response: {e}")))
    }

    async fn read_frame(&mut self) -> Result<Bytes, String> {
        let len = self.stream.read_i32().await.map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "connection closed".to_string(),
            _ => e.to_string(),
        })?;
        let len = usize::try_from(len).map_err(|_| format!("bad frame length {len}"))?;
        if len > MAX_RESPONSE {
            return Err(format!("response of {len} bytes is too large"));
        }
        let mut buf = vec![0u8; len];
        self.stream
            .read_exact(&mut buf)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Bytes::from(buf))
    }

    /// ApiVersions v0 (every broker answers it): the version ranges of each API.
    async fn api_versions(&mut self, deadline: Instant) -> Result<(), KafkaError> {
        let resp = self
            .call(&ApiVersionsRequest::default(), 0, deadline)
            .await
            .map_err(|e| e.before_sending())?;
        if let Some(e) = ResponseError::try_from_code(resp.error_code) {
            return Err(KafkaError::broker("ApiVersions", e, None));
        }
        self.versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(())
    }

    /// SASL handshake and authentication (KIP-152: the exchange in SaslAuthenticate).
    async fn authenticate(&mut self, sasl: &Sasl, deadline: Instant) -> Result<(), KafkaError> {
        let mut exchange = Exchange::new(&sasl.mechanism, &sasl.username, &sasl.password)
            .map_err(|e| KafkaError::Sasl(e.to_string()))?;
        let v = self.version(ApiKey::SaslHandshake, (1, 1))?;
        let hs = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_string(sasl.mechanism.clone()));
        let resp = self
            .call(&hs, v, deadline)
            .await
            .map_err(|e| e.before_sending())?;
        if resp.error_code != 0 {
            let offered: Vec<&str> = resp.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(KafkaError::Sasl(format!(
                "the broker does not accept {} (it offers {})",
                sasl.mechanism,
                offered.join(", ")
            )));
        }
        let v = self.version(ApiKey::SaslAuthenticate, (0, 2))?;
        let mut server = Bytes::new();
        while let Some(msg) = exchange
            .step(&server)
            .map_err(|e| KafkaError::Sasl(e.to_string()))?
        {
            let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(msg));
            let resp = self
                .call(&req, v, deadline)
                .await
                .map_err(|e| e.before_sending())?;
            if resp.error_code != 0 {
                let code = ResponseError::try_from_code(resp.error_code)
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                let why = resp.error_message.map(|m| m.to_string()).unwrap_or(code);
                return Err(KafkaError::Sasl(format!(
                    "authentication as {:?} failed: {why}",
                    sasl.username
                )));
            }
            server = resp.auth_bytes;
            if matches!(exchange, Exchange::Plain(_)) {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;

    #[test]
    fn frames_carry_length_header_and_client_id() {
        let conn_frame = {
            let c = Conn {
                stream: Box::new(tokio::io::empty()),
                addr: "h:1".into(),
                next_id: 1,
                client_id: StrBytes::from_static_str("watchpost"),
                versions: HashMap::new(),
            };
            c.frame(&MetadataRequest::default(), 1, 7).unwrap()
        };
        let mut b = conn_frame.clone();
        let len = b.get_i32() as usize;
        assert_eq!(len, conn_frame.len() - 4);
        assert_eq!(b.get_i16(), ApiKey::Metadata as i16);
        assert_eq!(b.get_i16(), 1);
        assert_eq!(b.get_i32(), 7);
        assert_eq!(b.get_i16(), 9, "client id length");
        assert_eq!(&b[..9], b"watchpost");
    }

    #[test]
    fn versions_are_negotiated() {
        let c = Conn {
            stream: Box::new(tokio::io::empty()),
            addr: "h:1".into(),
            next_id: 1,
            client_id: StrBytes::from_static_str("w"),
            versions: HashMap::from([(ApiKey::Produce as i16, (0, 7))]),
        };
        assert_eq!(c.version(ApiKey::Produce, (3, 9)).unwrap(), 7);
        assert!(c.version(ApiKey::Produce, (8, 9)).is_err());
        assert!(c.version(ApiKey::Metadata, (1, 9)).is_err());
    }
}
