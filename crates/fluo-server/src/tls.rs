//! TLS for the `wss://` listener (KMS's secure WebSocket port).

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls;

/// Loaded TLS settings.
#[derive(Clone)]
pub struct TlsSettings(Arc<rustls::ServerConfig>);

impl TlsSettings {
    /// Reads a PEM file holding the certificate chain and the private key (as KMS's
    /// `secure.certificate`).
    pub fn from_pem_file(path: &Path) -> std::io::Result<TlsSettings> {
        let bad = |what: String| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("certificate file {}: {what}", path.display()),
            )
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no CERTIFICATE block".into()));
        }
        let key = PrivateKeyDer::from_pem_file(path)
            .map_err(|e| bad(format!("no usable private key ({e})")))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| bad(e.to_string()))?;
        Ok(TlsSettings(Arc::new(config)))
    }

    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.0.clone())
    }
}
