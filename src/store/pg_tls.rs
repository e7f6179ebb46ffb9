//! Direct `tokio-postgres` sessions (the cluster's, the PostgreSQL collector's) from a
//! libpq-style URL: the URL options `tokio-postgres` understands, and TLS as libpq's
//! `sslmode` means it
//! (`disable`: plain; `prefer`/`require`: encrypted, certificate not checked;
//! `verify-ca`/`verify-full`: checked against `sslrootcert`, else the web PKI roots).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// URL options passed on to `tokio-postgres` (others, such as sqlx's, are dropped).
const KNOWN: &[&str] = &[
    "user",
    "password",
    "dbname",
    "options",
    "application_name",
    "host",
    "hostaddr",
    "port",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
];

/// How the cluster connection is made.
pub struct Plan {
    /// The URL as `tokio-postgres` accepts it.
    pub url: String,
    /// `None`: plain TCP; else TLS with this configuration.
    pub tls: Option<rustls::ClientConfig>,
}

/// A session's connection task: drive it (spawn it) for the client to work.
pub type Connection = Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send>>;

/// Connects to `url` (TLS by its `sslmode`) within `timeout`; errors name the server
/// without its password.
pub async fn connect(
    url: &str,
    timeout: Duration,
) -> anyhow::Result<(tokio_postgres::Client, Connection)> {
    let shown = crate::redact::dsn(url);
    let plan = plan(url)?;
    let connecting = async {
        match plan.tls {
            None => tokio_postgres::connect(&plan.url, tokio_postgres::NoTls)
                .await
                .map(|(c, conn)| (c, Box::pin(conn) as Connection)),
            Some(tls) => {
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
                tokio_postgres::connect(&plan.url, tls)
                    .await
                    .map(|(c, conn)| (c, Box::pin(conn) as Connection))
            }
        }
    };
    tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| anyhow::anyhow!("connecting to {shown} timed out"))?
        .map_err(|e| anyhow::anyhow!("connecting to {shown}: {e}"))
}

/// The plan for `url`.
pub fn plan(url: &str) -> anyhow::Result<Plan> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept = Vec::new();
    let mut mode = "prefer".to_string();
    let mut root: Option<String> = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslmode" => mode = v.to_ascii_lowercase(),
            "sslrootcert" => root = Some(decode(v)),
            k if KNOWN.contains(&k) => kept.push(pair),
            _ => {}
        }
    }
    // What tokio-postgres is told, and how the TLS session checks the server.
    let (sslmode, tls) = match mode.as_str() {
        "disable" => ("sslmode=disable", None),
        "allow" | "prefer" => ("sslmode=prefer", Some(unverified()?)),
        "require" => ("sslmode=require", Some(unverified()?)),
        "verify-ca" | "verify-full" => ("sslmode=require", Some(verified(root.as_deref())?)),
        other => anyhow::bail!("unknown sslmode {other:?}"),
    };
    kept.push(sslmode);
    Ok(Plan {
        url: format!("{base}?{}", kept.join("&")),
        tls,
    })
}

/// Percent-decodes a URL value (paths of certificate files).
fn decode(v: &str) -> String {
    percent_encoding::percent_decode_str(v)
        .decode_utf8_lossy()
        .into_owned()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Certificates checked against `root` (a PEM file) or the web PKI roots.
fn verified(root: Option<&str>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = RootCertStore::empty();
    match root {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| anyhow::anyhow!("sslrootcert {path}: {e}"))?
            {
                let cert = cert.map_err(|e| anyhow::anyhow!("sslrootcert {path}: {e}"))?;
                roots.add(cert)?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Encrypted, certificate not checked (libpq's `require`).
pub(crate) fn unverified() -> anyhow::Result<rustls::ClientConfig> {
    let provider = provider();
    Ok(
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    )
}

/// Accepts any server certificate; still checks the handshake signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_tokio_postgres_knows_and_maps_sslmode() {
        let p = plan("postgres://u:p@db:5432/wp?sslmode=disable&statement-cache-capacity=10&application_name=x")
            .unwrap();
        assert_eq!(
            p.url,
            "postgres://u:p@db:5432/wp?application_name=x&sslmode=disable"
        );
        assert!(p.tls.is_none());
        let p = plan("postgres://db/wp").unwrap();
        assert_eq!(p.url, "postgres://db/wp?sslmode=prefer");
        assert!(p.tls.is_some());
        let p = plan("postgres://db/wp?sslmode=verify-full").unwrap();
        assert_eq!(p.url, "postgres://db/wp?sslmode=require");
        assert!(p.tls.is_some());
        assert!(plan("postgres://db/wp?sslmode=bogus").is_err());
        assert!(plan("postgres://db/wp?sslmode=verify-ca&sslrootcert=/nonexistent.pem").is_err());
        assert_eq!(decode("%2Fetc%2Fca.pem"), "/etc/ca.pem");
    }
}
