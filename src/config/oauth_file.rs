//! The `oauth:` block of conf.yaml, as operators write it: the gateway as
//! the OAuth 2.1 / OpenID Connect client of every app.

use serde::Deserialize;

/// How the gateway authenticates itself at the token endpoint.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (RFC 6749 §2.3.1).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// `oauth:` — the authorization server and how sessions behave.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OauthFile {
    /// The server's issuer URL; its metadata is discovered from it.
    pub issuer: String,
    /// The gateway's client id at the server.
    pub client_id: String,
    /// The client secret (write `${OAUTH_CLIENT_SECRET}`).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Token-endpoint client authentication.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Scopes asked for at login.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Where the server sends the browser back with the code.
    #[serde(default = "default_callback")]
    pub callback_path: String,
    /// `POST` here logs out.
    #[serde(default = "default_logout")]
    pub logout_path: String,
    /// Local path the browser lands on after logout.
    #[serde(default = "default_post_logout")]
    pub post_logout_redirect: String,
    /// The public origin (`https://apps.example.com`); by default the
    /// scheme and Host of each request.
    #[serde(default)]
    pub external_url: Option<String>,
    /// Session cookie name; `__Host-` is prefixed on HTTPS.
    #[serde(default = "default_cookie")]
    pub cookie: String,
    /// Absolute lifetime of a login.
    #[serde(default = "default_session_ttl")]
    pub session_ttl_seconds: u64,
    /// An access token expiring within this is refreshed first.
    #[serde(default = "default_refresh_before")]
    pub refresh_before_seconds: u64,
    /// Whether the upstream gets `Authorization: Bearer <access token>`.
    #[serde(default = "yes")]
    pub forward_access_token: bool,
    /// Longest each call to the authorization server may take.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Claim path of the roles in the id_token (or a JWT access token).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
}

fn default_scopes() -> Vec<String> {
    ["openid", "profile", "offline_access"]
        .map(String::from)
        .to_vec()
}
fn default_callback() -> String {
    "/_gatehouse/oauth/callback".into()
}
fn default_logout() -> String {
    "/_gatehouse/oauth/logout".into()
}
fn default_post_logout() -> String {
    "/".into()
}
fn default_cookie() -> String {
    "gatehouse_session".into()
}
fn default_session_ttl() -> u64 {
    28_800
}
fn default_refresh_before() -> u64 {
    30
}
fn yes() -> bool {
    true
}
fn default_timeout() -> u64 {
    2000
}
fn default_roles_claim() -> String {
    "roles".into()
}
