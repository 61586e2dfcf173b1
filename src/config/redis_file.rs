//! The TLS keys of a Redis or TokenginX connection (`tokenginx.tls`,
//! `rate_limit.redis_tls`), shared by both sections.

use serde::Deserialize;

/// CA and client certificate of `rediss://` connections.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RedisTlsFile {
    /// PEM CA certificate(s) that sign the server's certificate; absent:
    /// the system's roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// PEM client certificate chain, for servers that demand mTLS.
    #[serde(default)]
    pub client_cert: Option<String>,
    /// PEM private key of `client_cert`.
    #[serde(default)]
    pub client_key: Option<String>,
}
