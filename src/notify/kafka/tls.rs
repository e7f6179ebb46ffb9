//! TLS to Kafka brokers (rustls with ring): the web PKI roots plus `ca_file`, or no
//! certificate check at all with `insecure_skip_verify` (tests only).

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::conn::Tls;
use crate::config::TlsClientConfig;

/// The rustls configuration of `t`; an error names the key (`ca_file: …`).
pub fn client_config(t: &TlsClientConfig) -> Result<rustls::ClientConfig, String> {
    if t.insecure_skip_verify {
        return crate::store::pg_tls::unverified()
            .map_err(|e| format!("insecure_skip_verify: {e}"));
    }
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &t.ca_file {
        let shown = path.display();
        let certs =
            CertificateDer::pem_file_iter(path).map_err(|e| format!("ca_file: {shown}: {e}"))?;
        let mut n = 0;
        for cert in certs {
            let cert = cert.map_err(|e| format!("ca_file: {shown}: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("ca_file: {shown}: {e}"))?;
            n += 1;
        }
        if n == 0 {
            return Err(format!("ca_file: {shown}: no certificates in it"));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The connection TLS settings of `t`.
pub fn connector_tls(t: &TlsClientConfig) -> Result<Tls, String> {
    let config = client_config(t).map_err(|e| format!("tls.{e}"))?;
    if let Some(name) = &t.server_name {
        rustls::pki_types::ServerName::try_from(name.clone())
            .map_err(|e| format!("tls.server_name: {e}"))?;
    }
    Ok(Tls {
        config: Arc::new(config),
        server_name: t.server_name.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_files_are_checked() {
        let none = TlsClientConfig::default();
        assert!(client_config(&none).is_ok());
        let missing = TlsClientConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let e = client_config(&missing).unwrap_err();
        assert!(e.starts_with("ca_file: /nonexistent/ca.pem"), "{e}");
        let dir = std::env::temp_dir().join(format!("wp-kafka-ca-{}", std::process::id()));
        std::fs::write(&dir, "not a certificate\n").unwrap();
        let empty = TlsClientConfig {
            ca_file: Some(dir.clone()),
            ..Default::default()
        };
        let e = client_config(&empty).unwrap_err();
        assert!(e.contains("no certificates"), "{e}");
        std::fs::remove_file(dir).unwrap();
        let bad_name = TlsClientConfig {
            server_name: Some("not a name!".into()),
            ..Default::default()
        };
        assert!(
            connector_tls(&bad_name)
                .unwrap_err()
                .starts_with("tls.server_name")
        );
        let insecure = TlsClientConfig {
            insecure_skip_verify: true,
            ..Default::default()
        };
        assert!(connector_tls(&insecure).is_ok());
    }
}
