//! The TLS of the gateway's own HTTP calls (JWKS, the OAuth token endpoint,
//! trace export, aggregation, ACME) and of its Redis and TokenginX
//! connections: rustls on aws-lc-rs. The proxied traffic runs on Pingora's
//! BoringSSL; these clients stay off it so that no second OpenSSL-compatible
//! library is linked beside it.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};

/// A `reqwest` client builder: rustls on aws-lc-rs, trusting the system's
/// roots (Debian: /etc/ssl/certs).
pub fn builder() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
}

/// Makes aws-lc-rs the process's rustls crypto provider, which reqwest and
/// the Redis client use; calling it again changes nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A TLS client config trusting `roots`, with rustls's safe protocol versions.
pub fn config(roots: RootCertStore) -> ClientConfig {
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth()
}
