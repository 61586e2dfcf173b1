//! Authentication and authorization of a request, run by `request_filter`
//! after the route is known.
//!
//! | module | holds |
//! |---|---|
//! | [`api_key`] | API keys: consumers by key hash, from files or TokenginX |
//! | [`extract`] | the token: `Authorization: Bearer` or cookies, per `token_sources` |
//! | [`jwt`] | JWT verification per issuer |
//! | [`jwks`] | issuers' public keys, fetched and refreshed |
//! | [`token_cache`] | verified tokens, so a token is verified cryptographically once |
//! | [`tokenginx`] | session and opaque-token lookups in TokenginX |
//! | [`identity`] | who the token speaks for; scopes, roles, forwarded headers |
//! | [`template`] | TokenginX key templates |
//!
//! Order of work for one request: find the token (no token: 401); a JWT
//! is looked up in the verified-token cache, else verified (signature,
//! issuer, audience, times); a route with `session: required` then asks
//! TokenginX whether the session lives; an opaque token is looked up in
//! TokenginX; last, scopes and roles. Every refusal is a [`Failure`].

pub mod api_key;
pub mod extract;
pub mod identity;
pub mod jwks;
pub mod jwt;
pub mod template;
pub mod token_cache;
pub mod tokenginx;

use std::sync::Arc;

use http::HeaderName;
use pingora_http::RequestHeader;

pub use crate::config::auth_file::AuthMode;
pub use crate::reason::Reason;
pub use api_key::ApiKeys;
pub use identity::Identity;

use crate::config::auth_file::{OnError, SessionMode};
use extract::{Found, TokenSource};
use token_cache::TokenCache;
use tokenginx::{Tokenginx, Verdict};

/// An authentication or authorization refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// 401 (or a login redirect for browsers).
    Unauthenticated(Reason),
    /// 403: a scope is missing; carries the route's required scopes.
    InsufficientScope(String),
    /// 403: no accepted role.
    InsufficientRole,
    /// 503: a dependency (JWKS, TokenginX) could not answer.
    Unavailable(&'static str),
    /// 503: the authorization server could not refresh an expired access
    /// token.
    OauthUnavailable,
}

impl Failure {
    /// The metric reason, if this failure is counted as an auth failure.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Failure::Unauthenticated(r) => Some(*r),
            Failure::InsufficientScope(_) => Some(Reason::Scope),
            Failure::InsufficientRole => Some(Reason::Role),
            Failure::Unavailable(_) | Failure::OauthUnavailable => None,
        }
    }
}

/// What a route requires of its callers.
#[derive(Debug, Clone, Default)]
pub struct RoutePolicy {
    /// How callers authenticate (`api_key` when keys are the only way).
    pub mode: AuthMode,
    /// Whether an API key will do (alone, or beside `mode`).
    pub api_key: bool,
    /// Whether a JWT's session must be alive in TokenginX.
    pub session: SessionMode,
    /// Every one required.
    pub scopes: Vec<String>,
    /// Any one suffices.
    pub roles: Vec<String>,
    /// Where unauthenticated browser navigations go instead of a 401
    /// (`{uri}` is replaced by the URL-encoded original URI).
    pub login_redirect: Option<String>,
    /// Whether unauthenticated browser navigations start the gateway's
    /// own login (`on_unauthenticated: login`).
    pub login: bool,
}

/// Authentication machinery shared by every route of a config.
pub struct Auth {
    /// Where tokens are looked for.
    pub sources: Vec<TokenSource>,
    /// Longer tokens are refused unparsed.
    pub max_token_bytes: usize,
    /// JWT issuers, if `jwt` is configured.
    pub verifier: Option<jwt::Verifier>,
    /// Verified JWTs.
    pub cache: TokenCache,
    /// Session store, if `tokenginx` is configured.
    pub tokenginx: Option<Arc<Tokenginx>>,
    /// Headers the gateway injects upstream (stripped from every client request).
    pub identity_headers: Vec<HeaderName>,
    /// Counter of requests let through because TokenginX failed under `on_error: allow`.
    pub allowed_on_error: prometheus::IntCounter,
    /// The gateway's own OAuth client, if `oauth` is configured.
    pub oauth: Option<Arc<crate::oauth::OauthClient>>,
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    crate::lifecycle::unix_now()
}

impl Auth {
    /// Authenticates and authorizes a request for a route with `policy`.
    /// `Ok(None)` for public routes. A route that takes API keys checks a
    /// key when the request presents one, its token mode otherwise.
    pub async fn check(
        &self,
        req: &RequestHeader,
        policy: &RoutePolicy,
        keys: Option<&ApiKeys>,
    ) -> Result<Option<Arc<Identity>>, Failure> {
        if policy.mode == AuthMode::None {
            return Ok(None);
        }
        if policy.api_key {
            if let Some((keys, key)) = keys.and_then(|k| Some((k, k.find(req)?))) {
                let identity = keys.identify(key, self.tokenginx.as_deref()).await?;
                authorize(&identity, policy)?;
                return Ok(Some(identity));
            }
            if policy.mode == AuthMode::ApiKey {
                return Err(Failure::Unauthenticated(Reason::Missing));
            }
        }
        let token = match extract::find(req, &self.sources) {
            Found::Token(t) => t,
            Found::Missing => return Err(Failure::Unauthenticated(Reason::Missing)),
            Found::Malformed => return Err(Failure::Unauthenticated(Reason::Malformed)),
        };
        if token.len() > self.max_token_bytes {
            return Err(Failure::Unauthenticated(Reason::Malformed));
        }
        let now = now();
        let as_jwt = match policy.mode {
            AuthMode::Jwt | AuthMode::Oauth => true,
            AuthMode::Opaque => false,
            _ => looks_like_jwt(token),
        };
        let identity = if as_jwt {
            let identity = self.jwt(token, now).await?;
            if policy.session == SessionMode::Required {
                self.session(&identity).await?;
            }
            identity
        } else {
            self.opaque(token, now).await?
        };
        authorize(&identity, policy)?;
        Ok(Some(identity))
    }

    /// The identity of a JWT of a configured issuer, from the
    /// verified-token cache or verified now.
    pub async fn jwt(&self, token: &str, now: u64) -> Result<Arc<Identity>, Failure> {
        if let Some(hit) = self.cache.get(token, now) {
            return Ok(hit);
        }
        let verifier = self
            .verifier
            .as_ref()
            .ok_or(Failure::Unauthenticated(Reason::Issuer))?;
        let identity = Arc::new(verifier.verify(token, now).await?);
        self.cache.put(token, Arc::clone(&identity));
        Ok(identity)
    }

    async fn session(&self, identity: &Identity) -> Result<(), Failure> {
        let store = self
            .tokenginx
            .as_ref()
            .ok_or(Failure::Unavailable("no session store is configured"))?;
        let key = identity
            .session_key
            .as_deref()
            .ok_or(Failure::Unauthenticated(Reason::Session))?;
        match store.session(key).await {
            Verdict::Found(_) => Ok(()),
            Verdict::Missing => Err(Failure::Unauthenticated(Reason::Session)),
            Verdict::Error => self.on_store_error(store),
        }
    }

    async fn opaque(&self, token: &str, now: u64) -> Result<Arc<Identity>, Failure> {
        let store = self
            .tokenginx
            .as_ref()
            .ok_or(Failure::Unauthenticated(Reason::Malformed))?;
        match store.opaque(token, now).await {
            Verdict::Found(Some(identity)) => Ok(identity),
            Verdict::Found(None) | Verdict::Missing => {
                Err(Failure::Unauthenticated(Reason::Session))
            }
            // Without its record an opaque token proves nothing, so even
            // `on_error: allow` cannot let it through.
            Verdict::Error => Err(Failure::Unavailable("the session store is unavailable")),
        }
    }

    fn on_store_error(&self, store: &Tokenginx) -> Result<(), Failure> {
        match store.settings.on_error {
            OnError::Deny => Err(Failure::Unavailable("the session store is unavailable")),
            OnError::Allow => {
                self.allowed_on_error.inc();
                Ok(())
            }
        }
    }

    /// Each JWKS issuer with the state of its keys.
    pub fn jwks_status(&self) -> Vec<(&str, jwks::JwksStatus)> {
        self.verifier
            .iter()
            .flat_map(|v| &v.issuers)
            .filter_map(|i| match &i.keys {
                jwt::IssuerKeys::Jwks(store) => Some((i.issuer.as_str(), store.status())),
                _ => None,
            })
            .collect()
    }

    /// Starts background work: JWKS refreshers and the TokenginX connection.
    pub fn start(&self) {
        if let Some(v) = &self.verifier {
            for issuer in &v.issuers {
                if let jwt::IssuerKeys::Jwks(store) = &issuer.keys {
                    store.spawn_refresher();
                }
            }
        }
        if let Some(t) = &self.tokenginx {
            t.start();
        }
        if let Some(o) = &self.oauth {
            o.start();
        }
    }
}

/// The route's scope and role requirements, checked against `identity`.
pub fn authorize(identity: &Identity, policy: &RoutePolicy) -> Result<(), Failure> {
    if !identity.has_scopes(&policy.scopes) {
        return Err(Failure::InsufficientScope(policy.scopes.join(" ")));
    }
    if !identity.has_any_role(&policy.roles) {
        return Err(Failure::InsufficientRole);
    }
    Ok(())
}

/// Three base64url segments: a JWS compact serialization.
pub fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|&b| b == b'.').count() == 2 && token.starts_with("ey")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("eyJhbGciOi.eyJzdWIi.sig"));
        assert!(!looks_like_jwt("opaque-token-123"));
        assert!(!looks_like_jwt("a.b.c"));
    }
}
