//! conf.yaml's `acme` section as operators write it: where certificates
//! are ordered, for which names, and where they are kept.

use serde::Deserialize;

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Certificates ordered and renewed by the gateway (RFC 8555).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeFile {
    /// The ACME server's directory URL.
    #[serde(default = "default_directory")]
    pub directory_url: String,
    /// PEM CA bundle for the ACME server's own HTTPS; absent: the
    /// system's roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Account contacts (`mailto:` URLs), one or a list.
    #[serde(default)]
    pub contact: Contacts,
    /// The names to hold certificates for: one certificate each.
    pub domains: Vec<String>,
    /// How the ACME server checks that the gateway answers for a name.
    #[serde(default)]
    pub challenge: ChallengeKind,
    /// A directory (relative to conf.yaml), or `redis` for the TokenginX
    /// store, which several instances share.
    #[serde(default = "default_storage")]
    pub storage: String,
    /// Renew when a certificate expires within this many days.
    #[serde(default = "default_renew_before_days")]
    pub renew_before_days: u32,
    /// First wait after a failed order; it doubles up to six hours.
    #[serde(default = "default_retry_seconds")]
    pub retry_seconds: u64,
}

/// `contact`: one URL or several.
#[derive(Debug, Deserialize, Default)]
#[serde(untagged)]
pub enum Contacts {
    /// No contact.
    #[default]
    None,
    /// One URL.
    One(String),
    /// Several URLs.
    Many(Vec<String>),
}

impl Contacts {
    /// The URLs.
    pub fn urls(&self) -> Vec<String> {
        match self {
            Contacts::None => Vec::new(),
            Contacts::One(u) => vec![u.clone()],
            Contacts::Many(v) => v.clone(),
        }
    }
}

/// The ACME challenge the gateway answers.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChallengeKind {
    /// A file at `/.well-known/acme-challenge/<token>` on a plain listener.
    #[default]
    #[serde(rename = "http-01")]
    Http01,
    /// A self-signed certificate for ALPN `acme-tls/1` on a TLS listener.
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

fn default_directory() -> String {
    LETS_ENCRYPT.into()
}
fn default_storage() -> String {
    "acme/".into()
}
fn default_renew_before_days() -> u32 {
    30
}
fn default_retry_seconds() -> u64 {
    60
}
