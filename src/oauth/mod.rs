//! The gateway as the OAuth 2.1 / OpenID Connect client of every app
//! (backend for frontend): it logs browsers in with the authorization code
//! flow and PKCE, keeps their tokens in TokenginX behind an opaque session
//! cookie, refreshes access tokens before they expire, and logs out.
//!
//! | module | holds |
//! |---|---|
//! | [`discovery`] | the server's metadata, fetched and refreshed |
//! | [`token_endpoint`] | code exchange, refresh and revocation calls |
//! | [`store`] | sessions, pending logins and refresh locks in TokenginX |
//! | [`cookies`] | reading and writing the gateway's cookies |
//! | [`secrets`] | random ids, PKCE, digests |
//! | [`login`] | starting a login and its callback |
//! | [`session`] | a request's session: cached lookup and single-flight refresh |
//! | [`logout`] | ending a session here and at the server |
//!
//! Browsers only ever hold the session id; TokenginX holds the tokens
//! under a digest of it, so every gateway instance serves every session.

pub mod cookies;
pub mod discovery;
pub mod login;
pub mod logout;
pub mod secrets;
pub mod session;
pub mod store;
pub mod token_endpoint;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::HeaderName;
use pingora_http::RequestHeader;
use prometheus::{IntCounter, IntCounterVec};
use tinyufo::TinyUfo;

use crate::auth::jwks::{KeyStore, RefreshCounters};
use crate::auth::jwt::{Issuer, IssuerKeys, Verifier};
use crate::config::oauth_file::ClientAuth;
use discovery::{Discovery, DiscoveryState, Metadata};
use store::Store;

/// The compiled `oauth:` block.
#[derive(Debug, Clone)]
pub struct OauthSettings {
    /// The server's issuer URL.
    pub issuer: String,
    /// The gateway's client id.
    pub client_id: String,
    /// Its secret.
    pub client_secret: Option<String>,
    /// How it authenticates at the token endpoint.
    pub client_auth: ClientAuth,
    /// Scopes asked for.
    pub scopes: Vec<String>,
    /// The redirect URI's path.
    pub callback_path: String,
    /// `POST` here logs out.
    pub logout_path: String,
    /// `GET` here (`?next=/local/path`) starts a login.
    pub login_path: String,
    /// Local path after logout.
    pub post_logout_redirect: String,
    /// The public origin, when configured.
    pub external_url: Option<String>,
    /// Session cookie base name.
    pub cookie: String,
    /// Absolute session lifetime, seconds.
    pub session_ttl: u64,
    /// Refresh margin, seconds.
    pub refresh_before: u64,
    /// Whether upstreams get the access token.
    pub forward_access_token: bool,
    /// Bound of every call to the server.
    pub timeout: Duration,
    /// Claim path of the roles.
    pub roles_claim: String,
    /// Clock skew tolerated on id_tokens.
    pub leeway_seconds: u64,
    /// `claim -> header` of `forward_identity`.
    pub forward: Vec<(String, HeaderName)>,
}

/// Most sessions cached in the process.
const SESSION_CACHE_ENTRIES: usize = 8192;

/// Base name of the cookie that binds a pending login to its browser.
pub const STATE_COOKIE: &str = "gatehouse_oauth_state";

/// `gatehouse_oauth_*` handles.
pub struct OauthMetrics {
    /// `gatehouse_oauth_logins_total{result}`.
    pub logins: IntCounterVec,
    /// `gatehouse_oauth_refreshes_total{result}`.
    pub refreshes: IntCounterVec,
    /// `gatehouse_oauth_logouts_total`.
    pub logouts: IntCounter,
    /// The JWKS fetch counters of the id_token keys.
    pub jwks: RefreshCounters,
}

/// Why an OAuth endpoint of the gateway refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OauthError {
    /// Unknown, used, expired or foreign `state`, or a code or id_token
    /// that does not hold up (400 `invalid_oauth_state`).
    InvalidState,
    /// The user or the server refused the login (403 `oauth_denied`).
    Denied,
    /// The server or TokenginX could not answer (503 `oauth_unavailable`).
    Unavailable,
    /// A return URL that is not a local path (400 `invalid_return_url`).
    NotLocal,
    /// A cross-site unsafe request (403 `csrf_rejected`).
    Csrf,
}

/// A redirect the gateway answers with, and the cookies it sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// 302 or 303.
    pub status: u16,
    /// Where to.
    pub location: String,
    /// `Set-Cookie` values.
    pub cookies: Vec<String>,
}

/// A looked-up session, shared by the requests that use it.
pub struct CachedSession {
    id: Box<str>,
    at: std::time::Instant,
    live: Arc<session::LiveSession>,
}

/// The OAuth client of a config.
pub struct OauthClient {
    /// Its settings.
    pub settings: OauthSettings,
    /// The server's metadata.
    pub discovery: Arc<Discovery>,
    http: reqwest::Client,
    store: Store,
    cache: TinyUfo<u64, Arc<CachedSession>>,
    cache_ttl: Duration,
    seed: ahash::RandomState,
    id_verifier: ArcSwapOption<(String, Verifier)>,
    metrics: OauthMetrics,
    gateway_cookies: [String; 4],
}

impl OauthClient {
    /// A client of `settings` keeping sessions in `tokenginx` (in this
    /// process without it).
    pub fn new(
        settings: OauthSettings,
        tokenginx: Option<Arc<crate::auth::tokenginx::Tokenginx>>,
        metrics: OauthMetrics,
    ) -> OauthClient {
        let http = crate::http_client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap_or_default();
        // Only sessions active within `cache_ms` need a slot; more of them
        // are looked up in TokenginX. TinyUFO's sketch grows with the slot
        // count (about 150 bytes each), so the count is kept modest.
        let entries = tokenginx
            .as_ref()
            .map_or(SESSION_CACHE_ENTRIES, |t| t.settings.cache_entries)
            .clamp(16, SESSION_CACHE_ENTRIES);
        let gateway_cookies = [
            settings.cookie.clone(),
            format!("__Host-{}", settings.cookie),
            STATE_COOKIE.to_string(),
            format!("__Host-{STATE_COOKIE}"),
        ];
        // In memory the store keeps each session as JSON, and every change
        // to it goes through this client, which updates the cache (a login
        // is new, a refresh remembers, a logout or expiry forgets): there
        // the cache never goes stale, and saves a parse per request.
        let cache_ttl = tokenginx
            .as_ref()
            .map_or(Duration::MAX, |t| t.settings.cache_ttl);
        OauthClient {
            discovery: Arc::new(Discovery::new(&settings.issuer, http.clone())),
            settings,
            http,
            store: Store::new(tokenginx),
            cache: TinyUfo::new(entries, entries),
            cache_ttl,
            seed: ahash::RandomState::new(),
            id_verifier: ArcSwapOption::empty(),
            metrics,
            gateway_cookies,
        }
    }

    /// Starts discovery (retried until it works).
    pub fn start(&self) {
        self.discovery.spawn(|_| {});
    }

    /// Discovery's state, for readiness and the status page.
    pub fn discovery_state(&self) -> DiscoveryState {
        self.discovery.state()
    }

    fn metadata(&self) -> Result<Arc<Metadata>, OauthError> {
        self.discovery.metadata().ok_or(OauthError::Unavailable)
    }

    /// The id_token verifier for the server's current `jwks_uri`.
    fn id_verifier(&self, md: &Metadata) -> Option<Arc<(String, Verifier)>> {
        let url = md.jwks_uri.as_deref()?;
        if let Some(v) = self.id_verifier.load_full().filter(|v| v.0 == url) {
            return Some(v);
        }
        let store = KeyStore::new(
            &self.settings.issuer,
            url,
            self.settings.timeout,
            Duration::from_secs(10),
            Duration::from_secs(300),
            self.metrics.jwks.clone(),
        );
        let mut algorithms: Vec<jsonwebtoken::Algorithm> = md
            .id_token_signing_alg_values_supported
            .iter()
            .filter_map(|a| a.parse().ok())
            .filter(|a: &jsonwebtoken::Algorithm| {
                !matches!(
                    a,
                    jsonwebtoken::Algorithm::HS256
                        | jsonwebtoken::Algorithm::HS384
                        | jsonwebtoken::Algorithm::HS512
                )
            })
            .collect();
        if algorithms.is_empty() {
            algorithms.push(jsonwebtoken::Algorithm::RS256);
        }
        let verifier = Verifier {
            issuers: vec![Issuer {
                issuer: md.issuer.clone(),
                audiences: vec![self.settings.client_id.clone()],
                algorithms,
                keys: IssuerKeys::Jwks(Arc::new(store)),
                roles_claim: self.settings.roles_claim.clone(),
            }],
            leeway_seconds: self.settings.leeway_seconds,
            forward: self.settings.forward.clone(),
            session_key: None,
        };
        let v = Arc::new((url.to_string(), verifier));
        self.id_verifier.store(Some(Arc::clone(&v)));
        Some(v)
    }

    /// The cookie attributes for a public `origin`.
    pub fn jar(origin: &str) -> cookies::Jar {
        cookies::Jar {
            secure: origin.starts_with("https://"),
        }
    }

    /// The session cookie's name as sent to an HTTPS origin or not, without
    /// building the origin.
    pub fn session_cookie(&self, secure: bool) -> &str {
        &self.gateway_cookies[usize::from(secure)]
    }

    /// Whether the public origin of a request is HTTPS (what [`Self::origin`]
    /// would start with), computed without allocating.
    pub fn is_secure(&self, req: &RequestHeader, tls: bool, trusted: bool) -> bool {
        if let Some(url) = &self.settings.external_url {
            return url.starts_with("https://");
        }
        let proto = trusted
            .then(|| req.headers.get("x-forwarded-proto"))
            .flatten()
            .map(|v| {
                v.as_bytes()
                    .split(|&b| b == b',')
                    .next()
                    .unwrap_or(b"")
                    .trim_ascii()
            });
        match proto {
            Some(p) if p.eq_ignore_ascii_case(b"https") => true,
            Some(p) if p.eq_ignore_ascii_case(b"http") => false,
            _ => tls,
        }
    }

    /// The names of the gateway's cookies, in both spellings: never
    /// forwarded to an upstream.
    pub fn gateway_cookies(&self) -> &[String] {
        &self.gateway_cookies
    }

    /// The public origin of a request: `external_url`, else the scheme
    /// and canonical host the client used (X-Forwarded-Proto and -Host
    /// believed from trusted proxies only).
    pub fn origin(&self, req: &RequestHeader, tls: bool, trusted: bool, host: &str) -> String {
        if let Some(url) = &self.settings.external_url {
            return url.clone();
        }
        let forwarded = |name: &str| {
            trusted
                .then(|| req.headers.get(name))
                .flatten()
                .and_then(|v| v.to_str().ok())
                .map(|v| {
                    v.split(',')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase()
                })
                .filter(|v| !v.is_empty())
        };
        let scheme = if self.is_secure(req, tls, trusted) {
            "https"
        } else {
            "http"
        };
        let host = forwarded("x-forwarded-host")
            .filter(|h| crate::routing::parse_authority(h).is_ok())
            .unwrap_or_else(|| host.to_string());
        format!("{scheme}://{host}")
    }
}

/// Whether a cookie-carried request comes from the gateway's own origin:
/// `Origin` equal to it, or `Sec-Fetch-Site: same-origin`.
pub fn same_origin(req: &RequestHeader, origin: &str) -> bool {
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    if header("sec-fetch-site").is_some_and(|s| s.eq_ignore_ascii_case("same-origin")) {
        return true;
    }
    header("origin").is_some_and(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// Whether `target` is a path on this origin (`/x`, never `//host`,
/// `/\host` or anything with a scheme): the only place a login or logout
/// may send the browser back to.
pub fn is_local(target: &str) -> bool {
    target.starts_with('/')
        && !target.starts_with("//")
        && !target.starts_with("/\\")
        && !target.bytes().any(|b| b < 0x21 || b == 0x7f || b == b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_targets_only() {
        for ok in ["/", "/admin?x=1", "/a/b#f"] {
            assert!(is_local(ok), "{ok}");
        }
        for bad in [
            "//evil.com",
            "/\\evil.com",
            "https://evil.com",
            "evil",
            "",
            "/a\r\nSet-Cookie: x",
            "/\t/evil.com",
        ] {
            assert!(!is_local(bad), "{bad:?}");
        }
    }

    #[test]
    fn same_origin_by_origin_or_fetch_metadata() {
        let mut r = RequestHeader::build("POST", b"/x", None).unwrap();
        assert!(!same_origin(&r, "https://apps.example.com"));
        r.insert_header("origin", "https://evil.example.com")
            .unwrap();
        assert!(!same_origin(&r, "https://apps.example.com"));
        r.insert_header("origin", "https://apps.example.com")
            .unwrap();
        assert!(same_origin(&r, "https://apps.example.com"));
        r.remove_header("origin");
        r.insert_header("sec-fetch-site", "same-origin").unwrap();
        assert!(same_origin(&r, "https://apps.example.com"));
        r.insert_header("sec-fetch-site", "cross-site").unwrap();
        assert!(!same_origin(&r, "https://apps.example.com"));
    }
}
