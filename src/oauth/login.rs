//! Starting a login (the redirect to the authorization endpoint) and its
//! callback (state, code exchange, id_token, the new session).

use log::warn;
use pingora_http::RequestHeader;
use serde_json::Value;

use super::cookies;
use super::secrets::{challenge, digest, is_random_shaped, random, same};
use super::store::{PendingLogin, SessionRecord, LOGIN_TTL_SECONDS};
use super::token_endpoint::{exchange_code, CallError, Tokens};
use super::{is_local, OauthClient, OauthError, Redirect, STATE_COOKIE};
use crate::auth::identity::{roles_at, scopes_of};

/// Access-token lifetime assumed when the server names none.
const DEFAULT_ACCESS_TTL: u64 = 300;

/// The value of query parameter `name` of `query`, decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

impl OauthClient {
    /// Sends the browser to the authorization endpoint, to come back to
    /// `return_to` (a local path) once logged in.
    pub async fn begin_login(
        &self,
        req: &RequestHeader,
        origin: &str,
        return_to: &str,
    ) -> Result<Redirect, OauthError> {
        if !is_local(return_to) {
            return Err(OauthError::NotLocal);
        }
        let md = self.metadata()?;
        let jar = Self::jar(origin);
        // One binding per browser, so logins in several tabs all complete.
        let binding = cookies::get(req, &jar.name(STATE_COOKIE))
            .filter(|b| is_random_shaped(b))
            .map_or_else(random, str::to_string);
        let (state, verifier, nonce) = (random(), random(), random());
        let redirect_uri = format!("{origin}{}", self.settings.callback_path);
        let login = PendingLogin {
            verifier,
            nonce,
            binding: digest(&binding),
            return_to: return_to.to_string(),
            redirect_uri,
        };
        self.store
            .put_login(&state, &login)
            .await
            .map_err(|_| OauthError::Unavailable)?;
        let mut url =
            url::Url::parse(&md.authorization_endpoint).map_err(|_| OauthError::Unavailable)?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.settings.client_id)
                .append_pair("redirect_uri", &login.redirect_uri)
                .append_pair("scope", &self.settings.scopes.join(" "))
                .append_pair("state", &state)
                .append_pair("code_challenge", &challenge(&login.verifier))
                .append_pair("code_challenge_method", "S256");
            if self.asks_openid() {
                q.append_pair("nonce", &login.nonce);
            }
        }
        Ok(Redirect {
            status: 302,
            location: url.into(),
            cookies: vec![jar.set(STATE_COOKIE, &binding, LOGIN_TTL_SECONDS)],
        })
    }

    fn asks_openid(&self) -> bool {
        self.settings.scopes.iter().any(|s| s == "openid")
    }

    /// The callback: checks the state against this browser, exchanges the
    /// code, verifies the id_token, creates the session and sends the
    /// browser back where it was going.
    pub async fn callback(
        &self,
        req: &RequestHeader,
        origin: &str,
        now: u64,
    ) -> Result<Redirect, OauthError> {
        let result = self.complete(req, origin, now).await;
        let label = match &result {
            Ok(_) => "ok",
            Err(OauthError::Denied) => "denied",
            Err(OauthError::InvalidState) => "invalid_state",
            Err(_) => "error",
        };
        self.metrics.logins.with_label_values(&[label]).inc();
        result
    }

    async fn complete(
        &self,
        req: &RequestHeader,
        origin: &str,
        now: u64,
    ) -> Result<Redirect, OauthError> {
        let query = req.uri.query();
        let state = query_param(query, "state").filter(|s| is_random_shaped(s));
        let jar = Self::jar(origin);
        if query_param(query, "error").is_some() {
            // Consume the state so the login cannot be completed later.
            if let Some(state) = &state {
                let _ = self.store.take_login(state).await;
            }
            return Err(OauthError::Denied);
        }
        let state = state.ok_or(OauthError::InvalidState)?;
        let login = self
            .store
            .take_login(&state)
            .await
            .map_err(|_| OauthError::Unavailable)?
            .ok_or(OauthError::InvalidState)?;
        let bound = cookies::get(req, &jar.name(STATE_COOKIE))
            .is_some_and(|b| same(&digest(b), &login.binding));
        if !bound {
            return Err(OauthError::InvalidState);
        }
        let code = query_param(query, "code").ok_or(OauthError::InvalidState)?;
        let md = self.metadata()?;
        let tokens = exchange_code(
            &self.http,
            &self.settings,
            &md.token_endpoint,
            &code,
            &login.redirect_uri,
            &login.verifier,
        )
        .await
        .map_err(|e| match e {
            CallError::Unavailable(why) => {
                warn!("oauth: the token endpoint failed: {why}");
                OauthError::Unavailable
            }
            CallError::InvalidGrant | CallError::Refused(_) => OauthError::InvalidState,
        })?;
        let claims = self.id_claims(&md, &tokens, &login.nonce, now).await?;
        let record = self.record(tokens, claims, None, now);
        let id = random();
        self.store
            .put_session(&id, &record, now)
            .await
            .map_err(|_| OauthError::Unavailable)?;
        Ok(Redirect {
            status: 303,
            location: login.return_to,
            cookies: vec![jar.set(&self.settings.cookie, &id, self.settings.session_ttl)],
        })
    }

    /// The verified id_token's claims (required when `openid` is asked),
    /// with the nonce of this login.
    async fn id_claims(
        &self,
        md: &super::Metadata,
        tokens: &Tokens,
        nonce: &str,
        now: u64,
    ) -> Result<Value, OauthError> {
        let Some(id_token) = &tokens.id_token else {
            return if self.asks_openid() {
                Err(OauthError::InvalidState)
            } else {
                Ok(Value::Null)
            };
        };
        let verifier = self.id_verifier(md).ok_or(OauthError::Unavailable)?;
        let (_, claims) = verifier
            .1
            .verify_claims(id_token, now)
            .await
            .map_err(|f| match f {
                crate::auth::Failure::Unavailable(_) => OauthError::Unavailable,
                _ => OauthError::InvalidState,
            })?;
        let sent = claims.get("nonce").and_then(Value::as_str);
        if self.asks_openid() && !sent.is_some_and(|n| same(n, nonce)) {
            return Err(OauthError::InvalidState);
        }
        Ok(claims)
    }

    /// The session record of fresh `tokens`: identity from the id_token's
    /// `claims` (or those `previous` kept), access token and its expiry.
    pub(super) fn record(
        &self,
        tokens: Tokens,
        claims: Value,
        previous: Option<&SessionRecord>,
        now: u64,
    ) -> SessionRecord {
        let claims = match (claims, previous) {
            (Value::Null, Some(p)) => p.claims.clone(),
            (c, _) => c,
        };
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| previous.map(|p| p.sub.clone()))
            .unwrap_or_default();
        let scopes = match &tokens.scope {
            Some(s) => s.split_whitespace().map(str::to_string).collect(),
            None => previous.map_or_else(|| scopes_of(&claims), |p| p.scopes.clone()),
        };
        let scopes = if scopes.is_empty() {
            self.settings.scopes.clone()
        } else {
            scopes
        };
        let roles = roles_at(&claims, &self.settings.roles_claim);
        let lifetime = tokens.expires_in.unwrap_or(DEFAULT_ACCESS_TTL);
        SessionRecord {
            sub,
            scopes,
            roles,
            claims,
            access_token: tokens.access_token,
            access_expires_at: now.saturating_add(lifetime),
            refresh_token: tokens
                .refresh_token
                .or_else(|| previous.and_then(|p| p.refresh_token.clone())),
            id_token: tokens
                .id_token
                .or_else(|| previous.and_then(|p| p.id_token.clone())),
            expires_at: previous.map_or(now.saturating_add(self.settings.session_ttl), |p| {
                p.expires_at
            }),
        }
    }
}
