//! SASL client exchanges for Kafka: `PLAIN` (RFC 4616) and `SCRAM-SHA-256` /
//! `SCRAM-SHA-512` (RFC 5802, RFC 7677), as Kafka brokers run them (no SASLprep, user
//! names escaped with `=2C` and `=3D`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

/// The mechanisms watchpost speaks, as Kafka names them.
pub const MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum SaslError {
    /// The mechanism is not one of [`MECHANISMS`].
    #[error("unsupported SASL mechanism {0:?} (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")]
    Mechanism(String),
    /// The server's message did not follow the protocol.
    #[error("bad SCRAM server message: {0}")]
    Protocol(&'static str),
    /// The server's final signature did not match: it does not know the password.
    #[error("the broker's SCRAM signature does not match (wrong server or password)")]
    ServerSignature,
    /// The server reported an error in its final message.
    #[error("SCRAM authentication failed: {0}")]
    Server(String),
}

/// One client side of a SASL exchange: the messages to send, in order.
pub enum Exchange {
    /// `PLAIN`: one message.
    Plain(Option<Vec<u8>>),
    /// SCRAM: client-first, then client-final, then the server's signature is checked.
    Scram(Scram),
}

impl Exchange {
    /// An exchange for `mechanism` with these credentials.
    pub fn new(mechanism: &str, user: &str, password: &str) -> Result<Exchange, SaslError> {
        match mechanism {
            "PLAIN" => Ok(Exchange::Plain(Some(plain(user, password)))),
            "SCRAM-SHA-256" => Ok(Exchange::Scram(Scram::new(
                Hash::Sha256,
                user,
                password,
                &nonce(),
            ))),
            "SCRAM-SHA-512" => Ok(Exchange::Scram(Scram::new(
                Hash::Sha512,
                user,
                password,
                &nonce(),
            ))),
            other => Err(SaslError::Mechanism(other.to_string())),
        }
    }

    /// The next message to send after the server answered `server` (empty before the
    /// first message); `None` when the exchange is complete.
    pub fn step(&mut self, server: &[u8]) -> Result<Option<Vec<u8>>, SaslError> {
        match self {
            Exchange::Plain(first) => Ok(first.take()),
            Exchange::Scram(s) => s.step(server),
        }
    }
}

/// The `PLAIN` message: `\0user\0password`.
pub fn plain(user: &str, password: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(user.len() + password.len() + 2);
    m.push(0);
    m.extend_from_slice(user.as_bytes());
    m.push(0);
    m.extend_from_slice(password.as_bytes());
    m
}

/// A random client nonce (printable, no commas).
fn nonce() -> String {
    let bytes: [u8; 18] = rand::random();
    B64.encode(bytes)
}

/// The SCRAM hash function.
#[derive(Debug, Clone, Copy)]
pub enum Hash {
    /// SHA-256.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl Hash {
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => mac::<Hmac<Sha256>>(key, data),
            Hash::Sha512 => mac::<Hmac<Sha512>>(key, data),
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// RFC 5802's `Hi`: PBKDF2 with this HMAC, one block.
    fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut first = salt.to_vec();
        first.extend_from_slice(&1u32.to_be_bytes());
        let mut u = self.hmac(password, &first);
        let mut out = u.clone();
        for _ in 1..iterations {
            u = self.hmac(password, &u);
            out.iter_mut().zip(&u).for_each(|(o, b)| *o ^= b);
        }
        out
    }
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length.
    let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// Where a SCRAM exchange stands.
enum ScramState {
    Start,
    SentFirst,
    SentFinal { server_signature: Vec<u8> },
    Done,
}

/// The client side of SCRAM.
pub struct Scram {
    hash: Hash,
    password: String,
    client_first_bare: String,
    nonce: String,
    state: ScramState,
}

/// Largest iteration count accepted from a server (a hostile one could ask for more
/// than a sender can spend).
const MAX_ITERATIONS: u32 = 1_000_000;

impl Scram {
    /// A SCRAM client with this client nonce.
    pub fn new(hash: Hash, user: &str, password: &str, nonce: &str) -> Scram {
        let user = user.replace('=', "=3D").replace(',', "=2C");
        Scram {
            hash,
            password: password.to_string(),
            client_first_bare: format!("n={user},r={nonce}"),
            nonce: nonce.to_string(),
            state: ScramState::Start,
        }
    }

    fn step(&mut self, server: &[u8]) -> Result<Option<Vec<u8>>, SaslError> {
        match std::mem::replace(&mut self.state, ScramState::Done) {
            ScramState::Start => {
                self.state = ScramState::SentFirst;
                Ok(Some(format!("n,,{}", self.client_first_bare).into_bytes()))
            }
            ScramState::SentFirst => {
                let (message, server_signature) = self.client_final(server)?;
                self.state = ScramState::SentFinal { server_signature };
                Ok(Some(message.into_bytes()))
            }
            ScramState::SentFinal { server_signature } => {
                verify_final(server, &server_signature)?;
                Ok(None)
            }
            ScramState::Done => Ok(None),
        }
    }

    /// The client-final message for `server_first`, and the server signature expected.
    fn client_final(&self, server_first: &[u8]) -> Result<(String, Vec<u8>), SaslError> {
        let server_first =
            std::str::from_utf8(server_first).map_err(|_| SaslError::Protocol("not UTF-8"))?;
        let attr = |name: &str| {
            server_first
                .split(',')
                .find_map(|a| a.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
        };
        let nonce = attr("r").ok_or(SaslError::Protocol("no nonce"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() <= self.nonce.len() {
            return Err(SaslError::Protocol("the nonce does not extend ours"));
        }
        let salt = attr("s")
            .and_then(|s| B64.decode(s).ok())
            .ok_or(SaslError::Protocol("no salt"))?;
        let iterations: u32 = attr("i")
            .and_then(|i| i.parse().ok())
            .filter(|i| (1..=MAX_ITERATIONS).contains(i))
            .ok_or(SaslError::Protocol("bad iteration count"))?;
        let h = self.hash;
        let salted = h.hi(self.password.as_bytes(), &salt, iterations);
        let client_key = h.hmac(&salted, b"Client Key");
        let stored_key = h.digest(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = h.hmac(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = h.hmac(&salted, b"Server Key");
        let server_signature = h.hmac(&server_key, auth.as_bytes());
        Ok((
            format!("{without_proof},p={}", B64.encode(proof)),
            server_signature,
        ))
    }
}

/// Checks the server-final message (`v=signature` or `e=error`).
fn verify_final(server: &[u8], expected: &[u8]) -> Result<(), SaslError> {
    let s = std::str::from_utf8(server).map_err(|_| SaslError::Protocol("not UTF-8"))?;
    if let Some(e) = s.strip_prefix("e=") {
        return Err(SaslError::Server(e.to_string()));
    }
    let v = s
        .split(',')
        .find_map(|a| a.strip_prefix("v="))
        .and_then(|v| B64.decode(v).ok())
        .ok_or(SaslError::Protocol("no server signature"))?;
    if v == expected {
        Ok(())
    } else {
        Err(SaslError::ServerSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_message() {
        assert_eq!(plain("alice", "pw"), b"\0alice\0pw");
        assert!(matches!(
            Exchange::new("GSSAPI", "u", "p"),
            Err(SaslError::Mechanism(_))
        ));
        let mut e = Exchange::new("PLAIN", "u", "p").unwrap();
        assert_eq!(e.step(b"").unwrap().unwrap(), b"\0u\0p");
        assert_eq!(e.step(b"").unwrap(), None);
    }

    /// RFC 7677 section 3: the SCRAM-SHA-256 example exchange.
    #[test]
    fn scram_sha256_matches_rfc7677() {
        let mut s = Scram::new(Hash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(
            s.step(b"").unwrap().unwrap(),
            b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
        );
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let last = s.step(server_first).unwrap().unwrap();
        assert_eq!(
            String::from_utf8(last).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(
            s.step(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
                .unwrap(),
            None
        );
    }

    /// RFC 5802 section 5 (SCRAM-SHA-1) has no SHA-512 vector; a wrong server
    /// signature and a server error must fail, a short nonce too.
    #[test]
    fn scram_rejects_bad_servers() {
        let mut s = Scram::new(Hash::Sha512, "us,er=", "pw", "abc");
        let first = String::from_utf8(s.step(b"").unwrap().unwrap()).unwrap();
        assert_eq!(first, "n,,n=us=2Cer=3D,r=abc");
        assert!(s.step(b"r=abcdef,s=c2FsdA==,i=10").unwrap().is_some());
        assert!(matches!(s.step(b"v=AAAA"), Err(SaslError::ServerSignature)));

        let mut s = Scram::new(Hash::Sha512, "u", "pw", "abc");
        s.step(b"").unwrap();
        assert!(matches!(
            s.step(b"r=xyz,s=c2FsdA==,i=10"),
            Err(SaslError::Protocol(_))
        ));
        let mut s = Scram::new(Hash::Sha512, "u", "pw", "abc");
        s.step(b"").unwrap();
        s.step(b"r=abcd,s=c2FsdA==,i=10").unwrap();
        assert!(matches!(
            s.step(b"e=invalid-proof"),
            Err(SaslError::Server(_))
        ));
    }
}
