//! Calls to the authorization server's token and revocation endpoints,
//! with the configured client authentication and timeout.

use serde::Deserialize;

use super::OauthSettings;
use crate::config::oauth_file::ClientAuth;

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Deserialize)]
pub struct Tokens {
    /// The access token (a JWT or opaque).
    pub access_token: String,
    /// Seconds the access token lives.
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// The refresh token; a rotating server sends a new one each time.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// The OpenID Connect id_token.
    #[serde(default)]
    pub id_token: Option<String>,
    /// Granted scopes, when they differ from those asked for.
    #[serde(default)]
    pub scope: Option<String>,
}

/// Why a call failed.
#[derive(Debug, PartialEq, Eq)]
pub enum CallError {
    /// The server refused the grant (`invalid_grant`: a used, revoked or
    /// expired code or refresh token).
    InvalidGrant,
    /// The server answered with another OAuth error; its code.
    Refused(String),
    /// The server could not be reached, timed out or sent garbage.
    Unavailable(String),
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

/// The client authentication of `settings` on a form POST to `url`.
fn post(
    http: &reqwest::Client,
    settings: &OauthSettings,
    url: &str,
    mut form: Vec<(&'static str, String)>,
) -> reqwest::RequestBuilder {
    let secret = settings.client_secret.clone().unwrap_or_default();
    let req = http.post(url).timeout(settings.timeout);
    match settings.client_auth {
        ClientAuth::ClientSecretBasic => req
            .basic_auth(form_encode(&settings.client_id), Some(form_encode(&secret)))
            .form(&form),
        ClientAuth::ClientSecretPost => {
            form.push(("client_id", settings.client_id.clone()));
            form.push(("client_secret", secret));
            req.form(&form)
        }
    }
}

/// RFC 6749 §2.3.1: the id and secret are form-encoded before Basic.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn tokens(req: reqwest::RequestBuilder) -> Result<Tokens, CallError> {
    let resp = req
        .send()
        .await
        .map_err(|e| CallError::Unavailable(e.without_url().to_string()))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| CallError::Unavailable(e.without_url().to_string()))?;
    if status.is_success() {
        return serde_json::from_slice(&body)
            .map_err(|e| CallError::Unavailable(format!("not a token response: {e}")));
    }
    match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(e) if e.error == "invalid_grant" => Err(CallError::InvalidGrant),
        Ok(e) if status.is_client_error() => Err(CallError::Refused(e.error)),
        _ => Err(CallError::Unavailable(format!("status {status}"))),
    }
}

/// Exchanges an authorization code (with its PKCE verifier).
pub async fn exchange_code(
    http: &reqwest::Client,
    settings: &OauthSettings,
    endpoint: &str,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> Result<Tokens, CallError> {
    let form = vec![
        ("grant_type", "authorization_code".to_string()),
        ("code", code.to_string()),
        ("redirect_uri", redirect_uri.to_string()),
        ("code_verifier", verifier.to_string()),
    ];
    tokens(post(http, settings, endpoint, form)).await
}

/// Exchanges a refresh token for new tokens.
pub async fn refresh(
    http: &reqwest::Client,
    settings: &OauthSettings,
    endpoint: &str,
    refresh_token: &str,
) -> Result<Tokens, CallError> {
    let form = vec![
        ("grant_type", "refresh_token".to_string()),
        ("refresh_token", refresh_token.to_string()),
    ];
    tokens(post(http, settings, endpoint, form)).await
}

/// Revokes a refresh token (RFC 7009); whether the server said yes.
pub async fn revoke(
    http: &reqwest::Client,
    settings: &OauthSettings,
    endpoint: &str,
    refresh_token: &str,
) -> bool {
    let form = vec![
        ("token", refresh_token.to_string()),
        ("token_type_hint", "refresh_token".to_string()),
    ];
    post(http, settings, endpoint, form)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}
