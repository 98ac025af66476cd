//! HTTPS: the server's certificate and key ([`TlsIdentity`]), a local CA that
//! issues them ([`ca::LocalCa`]), the state folder that keeps them between
//! starts ([`store`]), and the handshake of each connection ([`accept`]).
//!
//! Every route is served over TLS when [`crate::ServerConfig::tls`] is set, and
//! every absolute URL the server emits is then `https` (they all derive from the
//! origin the server was started with). Clients that refuse plain http (CLI-032)
//! trust the local CA's certificate.

pub(crate) mod accept;
pub mod ca;
pub mod store;

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// What went wrong with a certificate or a key; each names the file (or source) at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{name}: {source}")]
    Io {
        /// The file.
        name: String,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file that holds no usable certificate or key.
    #[error("{name}: {reason}")]
    Invalid {
        /// The file.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Generating a key or certificate failed.
    #[error("generating a TLS certificate failed: {0}")]
    Generate(String),
}

/// A server certificate chain and its private key, ready to serve.
#[derive(Clone)]
pub struct TlsIdentity {
    chain_pem: String,
    config: Arc<rustls::ServerConfig>,
    /// The CA that issued the certificate (PEM), when it is a local CA: what clients trust.
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity").field("local_ca", &self.ca_pem.is_some()).finish_non_exhaustive()
    }
}

/// The certificates of a PEM document; an error naming `name` when there are none or one is damaged.
pub(crate) fn parse_certs(pem: &[u8], name: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid { name: name.into(), reason: format!("damaged PEM: {e}") })?;
    if certs.is_empty() {
        return Err(TlsError::Invalid {
            name: name.into(),
            reason: "no certificate in it (expected PEM `-----BEGIN CERTIFICATE-----`)".into(),
        });
    }
    Ok(certs)
}

/// The crypto provider of every TLS configuration here: aws-lc, as reqwest's.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl TlsIdentity {
    /// A certificate chain (leaf first) and its private key (PKCS#8, PKCS#1 or
    /// SEC1), both PEM; `cert_name` and `key_name` name them in errors.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8], cert_name: &str, key_name: &str) -> Result<Self, TlsError> {
        let chain = parse_certs(chain_pem, cert_name)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Invalid {
            name: key_name.into(),
            reason: format!("no private key in it (expected PEM `-----BEGIN PRIVATE KEY-----`): {e}"),
        })?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Generate(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Invalid {
                name: format!("{cert_name} and {key_name}"),
                reason: format!("the key does not fit the certificate: {e}"),
            })?;
        // The server speaks HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let chain_pem = String::from_utf8_lossy(chain_pem).into_owned();
        Ok(TlsIdentity { chain_pem, config: Arc::new(config), ca_pem: None })
    }

    /// A certificate chain and key from PEM files; errors name the file.
    pub fn load(cert: &std::path::Path, key: &std::path::Path) -> Result<Self, TlsError> {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|source| TlsError::Io { name: path.display().to_string(), source })
        };
        Self::from_pem(&read(cert)?, &read(key)?, &cert.display().to_string(), &key.display().to_string())
    }

    /// A certificate for `localhost`, `127.0.0.1` and `::1` from a fresh local CA
    /// held in memory only (the test handle's `tls()`); the CA is [`ca_pem`](Self::ca_pem).
    pub fn ephemeral() -> Result<Self, TlsError> {
        ca::LocalCa::generate()?.issue(&ca::local_hosts([]))
    }

    /// The certificate chain served (PEM, leaf first).
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// The acceptor of this identity's connections.
    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(Arc::clone(&self.config))
    }
}

/// Serves any router over TLS with `identity` on `listener` until `shutdown`
/// completes, with the server's own accept loop (e.g. a JWKS host for tests).
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    identity: &TlsIdentity,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let listener = crate::transport::ResettableListener::new(listener, Arc::default());
    let limits = crate::limits::Limits::default();
    crate::conn::run(listener, app, &limits, Some(identity.acceptor()), shutdown).await;
}
