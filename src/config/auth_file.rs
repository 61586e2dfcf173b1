//! The authentication keys of the config files, as operators write them:
//! `jwt`, `tokenginx` and `forward_identity` in conf.yaml, and each route's
//! `auth`, `session`, `scopes`, `roles`, `on_unauthenticated`.

use serde::Deserialize;

use super::redis_file::RedisTlsFile;

/// `jwt:` — how bearer tokens are found and verified.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtFile {
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// Longer tokens are refused before any parsing.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// Where tokens are looked for, in order: `header`, `cookie:NAME`.
    #[serde(default = "default_sources")]
    pub token_sources: Vec<String>,
    /// Memory cap of the verified-token cache.
    #[serde(default = "default_cache_bytes")]
    pub cache_max_bytes: usize,
    /// Trusted issuers.
    pub issuers: Vec<IssuerFile>,
}

fn default_leeway() -> u64 {
    60
}
fn default_max_token_bytes() -> usize {
    8192
}
fn default_sources() -> Vec<String> {
    vec!["header".into()]
}
fn default_cache_bytes() -> usize {
    16 * 1024 * 1024
}

/// One trusted issuer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerFile {
    /// Must equal the token's `iss`.
    pub issuer: String,
    /// When set, the token's `aud` must contain one of them.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Where the issuer publishes its public keys.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// HMAC secret (HS256/384/512), at least 32 bytes.
    #[serde(default)]
    pub secret: Option<String>,
    /// Allowed `alg` values.
    pub algorithms: Vec<String>,
    /// Claim path of the roles list (`roles`, `realm_access.roles`, …).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Longest time between JWKS refreshes (a shorter Cache-Control max-age wins).
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_seconds: u64,
    /// Shortest time between refetches caused by unknown key ids.
    #[serde(default = "default_jwks_min_refetch")]
    pub jwks_min_refetch_seconds: u64,
    /// Longest a JWKS fetch may take.
    #[serde(default = "default_jwks_timeout")]
    pub jwks_timeout_ms: u64,
}

fn default_roles_claim() -> String {
    "roles".into()
}
fn default_jwks_refresh() -> u64 {
    300
}
fn default_jwks_min_refetch() -> u64 {
    10
}
fn default_jwks_timeout() -> u64 {
    2000
}

/// What the gateway does when TokenginX cannot answer.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Refuse with 503.
    #[default]
    Deny,
    /// Let the request through (counted in metrics).
    Allow,
}

/// `tokenginx:` — the session store.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenginxFile {
    /// `redis://host:port[/db]` or `rediss://…`; a password may be in the URL.
    pub url: String,
    /// Password, when not in the URL.
    #[serde(default)]
    pub password: Option<String>,
    /// CA and client certificate of a `rediss://` connection (mTLS).
    #[serde(default)]
    pub tls: Option<RedisTlsFile>,
    /// Key that must exist for a JWT's session (`{jti}`, `{sid}`, `{sub}`).
    #[serde(default = "default_session_key")]
    pub session_key: String,
    /// Key of an opaque token's record (`{token}`).
    #[serde(default = "default_opaque_key")]
    pub opaque_key: String,
    /// Longest a lookup may take.
    #[serde(default = "default_tokenginx_timeout")]
    pub timeout_ms: u64,
    /// How long a lookup result may be reused.
    #[serde(default = "default_cache_ms")]
    pub cache_ms: u64,
    /// Most lookup results kept.
    #[serde(default = "default_cache_entries")]
    pub cache_entries: usize,
    /// Policy when TokenginX fails or times out.
    #[serde(default)]
    pub on_error: OnError,
}

fn default_session_key() -> String {
    "oauth:token:{jti}".into()
}
fn default_opaque_key() -> String {
    "oauth:token:{token}".into()
}
fn default_tokenginx_timeout() -> u64 {
    50
}
fn default_cache_ms() -> u64 {
    1000
}
fn default_cache_entries() -> usize {
    100_000
}

/// How a route authenticates.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Public.
    #[default]
    None,
    /// A JWT from a configured issuer.
    Jwt,
    /// An opaque token known to TokenginX.
    Opaque,
    /// Either: a JWT if it looks like one, else opaque.
    Any,
    /// The gateway's own login session (cookie), or a bearer JWT of a
    /// configured issuer.
    Oauth,
    /// An API key of a consumer.
    ApiKey,
}

/// A route's `auth`: one mode, or a list of modes any of which will do
/// (`[jwt, api_key]`).
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(untagged)]
pub enum AuthSpec {
    /// `auth: jwt`.
    One(AuthMode),
    /// `auth: [jwt, api_key]`.
    Any(Vec<AuthMode>),
}

impl Default for AuthSpec {
    fn default() -> Self {
        AuthSpec::One(AuthMode::None)
    }
}

impl AuthSpec {
    /// Every mode listed.
    pub fn modes(&self) -> &[AuthMode] {
        match self {
            AuthSpec::One(m) => std::slice::from_ref(m),
            AuthSpec::Any(list) => list,
        }
    }

    /// The mode other than `api_key` (`api_key` when it is the only one,
    /// `none` for an empty list).
    pub fn token_mode(&self) -> AuthMode {
        let modes = self.modes();
        modes
            .iter()
            .copied()
            .find(|m| *m != AuthMode::ApiKey)
            .or(modes.first().copied())
            .unwrap_or(AuthMode::None)
    }

    /// Whether API keys are accepted.
    pub fn accepts_api_keys(&self) -> bool {
        self.modes().contains(&AuthMode::ApiKey)
    }
}

/// Whether a JWT's session must be alive in TokenginX.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum SessionMode {
    /// No session check.
    #[default]
    Off,
    /// The `session_key` must exist.
    Required,
}
