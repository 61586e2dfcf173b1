//! Validation and compilation of the authentication keys into
//! [`Auth`] (issuers, key stores, caches, the TokenginX client) and each
//! route's [`RoutePolicy`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use super::auth_file::{AuthMode, JwtFile, SessionMode, TokenginxFile};
use super::compile::{Compiler, Parsed};
use super::file::{MainFile, RouteEntry, RouteFile};
use crate::auth::extract::TokenSource;
use crate::auth::jwks::{KeyStore, RefreshCounters};
use crate::auth::jwt::{Issuer, IssuerKeys, Verifier};
use crate::auth::template::Template;
use crate::auth::token_cache::TokenCache;
use crate::auth::tokenginx::{LookupMetrics, Tokenginx, TokenginxSettings};
use crate::auth::{Auth, RoutePolicy};
use crate::metrics::Metrics;

/// Bounds of the verified-token cache (64 KiB to 1 GiB).
const MIN_CACHE_BYTES: usize = 64 * 1024;
const MAX_CACHE_BYTES: usize = 1 << 30;

/// Most TokenginX lookup results kept.
const MAX_CACHE_ENTRIES: usize = 10_000_000;

/// RFC 7518 §3.2: an HMAC key at least as long as the hash output.
const MIN_SECRET_BYTES: usize = 32;

/// `forward_identity` when the config says nothing.
const DEFAULT_FORWARD: [(&str, &str); 3] = [
    ("sub", "x-user-id"),
    ("scope", "x-user-scopes"),
    ("roles", "x-user-roles"),
];

impl Compiler<'_> {
    /// Builds the authentication machinery of `main`.
    pub(super) fn auth(&mut self, main: &Parsed<MainFile>, metrics: &Metrics) -> Auth {
        let m = &main.content;
        let forward = self.forward_identity(main);
        let sources = match &m.jwt {
            Some(j) => self.token_sources(main, j),
            None => vec![TokenSource::Header],
        };
        let verifier = m
            .jwt
            .as_ref()
            .map(|j| self.verifier(main, j, &forward, metrics));
        let tokenginx = m
            .tokenginx
            .as_ref()
            .and_then(|t| self.tokenginx(main, t, &forward, metrics));
        let verifier = verifier.map(|mut v| {
            v.session_key = tokenginx.as_ref().map(|t| t.settings.session_key.clone());
            v
        });
        let jwt = m.jwt.as_ref();
        if let Some(j) = jwt {
            if !(MIN_CACHE_BYTES..=MAX_CACHE_BYTES).contains(&j.cache_max_bytes) {
                self.errors.push(main.err(
                    "jwt.cache_max_bytes",
                    format!("must be between {MIN_CACHE_BYTES} and {MAX_CACHE_BYTES}"),
                ));
            }
        }
        let cache_bytes = jwt
            .map_or(1 << 20, |j| j.cache_max_bytes)
            .clamp(MIN_CACHE_BYTES, MAX_CACHE_BYTES);
        let tokenginx = tokenginx.map(Arc::new);
        let oauth = m
            .oauth
            .as_ref()
            .and_then(|o| self.oauth(main, o, tokenginx.as_ref(), &forward, metrics))
            .map(Arc::new);
        Auth {
            sources,
            max_token_bytes: jwt.map_or(8192, |j| j.max_token_bytes),
            cache: TokenCache::new(cache_bytes),
            verifier,
            tokenginx,
            oauth,
            // X-Consumer-Id is the gateway's whether or not keys are in use.
            identity_headers: forward
                .iter()
                .map(|(_, h)| h.clone())
                .chain([crate::auth::api_key::CONSUMER_HEADER])
                .collect(),
            allowed_on_error: metrics.auth_allowed_on_error.clone(),
        }
    }

    pub(super) fn forward_identity(
        &mut self,
        main: &Parsed<MainFile>,
    ) -> Vec<(String, HeaderName)> {
        let map: BTreeMap<String, String> = match &main.content.forward_identity {
            Some(m) => m.clone(),
            None => DEFAULT_FORWARD
                .iter()
                .map(|(c, h)| (c.to_string(), h.to_string()))
                .collect(),
        };
        let mut out = Vec::new();
        for (claim, header) in map {
            match HeaderName::try_from(header.as_str()) {
                Ok(h) if out.iter().any(|(_, o)| *o == h) => self.errors.push(main.err(
                    &format!("forward_identity.{claim}"),
                    format!("header `{header}` is used twice"),
                )),
                Ok(h) => out.push((claim, h)),
                Err(_) => self.errors.push(main.err(
                    &format!("forward_identity.{claim}"),
                    format!("`{header}` is not a valid header name"),
                )),
            }
        }
        out
    }

    fn token_sources(&mut self, main: &Parsed<MainFile>, j: &JwtFile) -> Vec<TokenSource> {
        if j.token_sources.is_empty() {
            self.errors
                .push(main.err("jwt.token_sources", "at least one source is required"));
        }
        j.token_sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                TokenSource::parse(s).or_else(|| {
                    self.errors.push(main.err(
                        &format!("jwt.token_sources[{i}]"),
                        format!("`{s}` is not `header` or `cookie:NAME`"),
                    ));
                    None
                })
            })
            .collect()
    }

    fn verifier(
        &mut self,
        main: &Parsed<MainFile>,
        j: &JwtFile,
        forward: &[(String, HeaderName)],
        metrics: &Metrics,
    ) -> Verifier {
        if j.issuers.is_empty() {
            self.errors
                .push(main.err("jwt.issuers", "at least one issuer is required"));
        }
        if j.max_token_bytes == 0 {
            self.errors
                .push(main.err("jwt.max_token_bytes", "must be greater than 0"));
        }
        let mut issuers: Vec<Issuer> = Vec::new();
        for (i, f) in j.issuers.iter().enumerate() {
            let key = format!("jwt.issuers[{i}]");
            if issuers.iter().any(|x| x.issuer == f.issuer) {
                self.errors.push(main.err(
                    &format!("{key}.issuer"),
                    format!("issuer `{}` is listed twice", f.issuer),
                ));
                continue;
            }
            let algorithms = self.algorithms(main, &key, &f.algorithms);
            let hmac = algorithms
                .iter()
                .any(|a| a.family() == AlgorithmFamily::Hmac);
            let public = algorithms
                .iter()
                .any(|a| a.family() != AlgorithmFamily::Hmac);
            let keys = match (&f.secret, &f.jwks_url) {
                (Some(_), Some(_)) | (None, None) => {
                    self.errors
                        .push(main.err(&key, "give exactly one of `secret` and `jwks_url`"));
                    continue;
                }
                (Some(secret), None) => {
                    if public {
                        self.errors.push(main.err(
                            &format!("{key}.algorithms"),
                            "an issuer with a `secret` allows only HS256/HS384/HS512",
                        ));
                    }
                    if secret.len() < MIN_SECRET_BYTES {
                        self.errors.push(main.err(
                            &format!("{key}.secret"),
                            format!("HMAC secrets need at least {MIN_SECRET_BYTES} bytes (RFC 7518 §3.2)"),
                        ));
                    }
                    IssuerKeys::Secret(DecodingKey::from_secret(secret.as_bytes()))
                }
                (None, Some(url)) => {
                    if hmac {
                        self.errors.push(main.err(
                            &format!("{key}.algorithms"),
                            "HS* algorithms need a `secret`; keys from a JWKS are public",
                        ));
                    }
                    if !matches!(reqwest::Url::parse(url), Ok(u) if matches!(u.scheme(), "http" | "https"))
                    {
                        self.errors.push(main.err(
                            &format!("{key}.jwks_url"),
                            format!("`{url}` is not an http(s) URL"),
                        ));
                    }
                    self.millis(
                        main,
                        &format!("{key}.jwks_timeout_ms"),
                        f.jwks_timeout_ms,
                        1,
                        60_000,
                    );
                    let counters = RefreshCounters {
                        ok: metrics.jwks_refreshes.with_label_values(&[&f.issuer, "ok"]),
                        error: metrics
                            .jwks_refreshes
                            .with_label_values(&[&f.issuer, "error"]),
                    };
                    IssuerKeys::Jwks(Arc::new(KeyStore::new(
                        &f.issuer,
                        url,
                        Duration::from_millis(f.jwks_timeout_ms),
                        Duration::from_secs(f.jwks_min_refetch_seconds.max(1)),
                        Duration::from_secs(
                            f.jwks_refresh_seconds
                                .max(f.jwks_min_refetch_seconds)
                                .max(1),
                        ),
                        counters,
                    )))
                }
            };
            if f.roles_claim.is_empty() {
                self.errors
                    .push(main.err(&format!("{key}.roles_claim"), "must not be empty"));
            }
            issuers.push(Issuer {
                issuer: f.issuer.clone(),
                audiences: f.audiences.clone(),
                algorithms,
                keys,
                roles_claim: f.roles_claim.clone(),
            });
        }
        Verifier {
            issuers,
            leeway_seconds: j.leeway_seconds,
            forward: forward.to_vec(),
            session_key: None,
        }
    }

    fn algorithms(
        &mut self,
        main: &Parsed<MainFile>,
        key: &str,
        names: &[String],
    ) -> Vec<Algorithm> {
        if names.is_empty() {
            self.errors.push(main.err(
                &format!("{key}.algorithms"),
                "at least one algorithm is required",
            ));
        }
        names
            .iter()
            .enumerate()
            .filter_map(|(i, name)| {
                let k = format!("{key}.algorithms[{i}]");
                if name.eq_ignore_ascii_case("none") {
                    self.errors.push(main.err(&k, "`none` is never allowed"));
                    return None;
                }
                name.parse::<Algorithm>()
                    .map_err(|_| {
                        self.errors
                            .push(main.err(&k, format!("`{name}` is not a JWS algorithm")))
                    })
                    .ok()
            })
            .collect()
    }

    fn tokenginx(
        &mut self,
        main: &Parsed<MainFile>,
        t: &TokenginxFile,
        forward: &[(String, HeaderName)],
        metrics: &Metrics,
    ) -> Option<Tokenginx> {
        let before = self.errors.len();
        let client = self
            .redis_info(main, "tokenginx.url", &t.url)
            .and_then(|info| {
                let info = match &t.password {
                    Some(pw) => {
                        let redis = info.redis_settings().clone().set_password(pw);
                        info.set_redis_settings(redis)
                    }
                    None => info,
                };
                let tls = match &t.tls {
                    Some(tls) => Some(self.redis_tls(main, "tokenginx.tls", tls)?),
                    None => None,
                };
                self.redis_client(main, "tokenginx.url", info, tls)
            });
        let session_key = Template::parse(&t.session_key, &["jti", "sid", "sub"])
            .map_err(|e| self.errors.push(main.err("tokenginx.session_key", e)))
            .ok();
        let opaque_key = Template::parse(&t.opaque_key, &["token"])
            .map_err(|e| self.errors.push(main.err("tokenginx.opaque_key", e)))
            .ok();
        self.millis(main, "tokenginx.timeout_ms", t.timeout_ms, 1, 10_000);
        self.millis(main, "tokenginx.cache_ms", t.cache_ms, 0, 3_600_000);
        if !(1..=MAX_CACHE_ENTRIES).contains(&t.cache_entries) {
            self.errors.push(main.err(
                "tokenginx.cache_entries",
                format!("must be between 1 and {MAX_CACHE_ENTRIES}"),
            ));
        }
        if self.errors.len() > before {
            return None;
        }
        let settings = TokenginxSettings {
            client: client?,
            session_key: session_key?,
            opaque_key: opaque_key?,
            timeout: Duration::from_millis(t.timeout_ms),
            cache_ttl: Duration::from_millis(t.cache_ms),
            cache_entries: t.cache_entries,
            on_error: t.on_error,
            forward: forward.to_vec(),
        };
        Some(Tokenginx::new(settings, LookupMetrics::new(metrics)))
    }

    /// The auth policy of a route, checked against what conf.yaml configures.
    pub(super) fn route_policy(
        &mut self,
        f: &Parsed<RouteFile>,
        key: &str,
        e: &RouteEntry,
        main: &MainFile,
    ) -> RoutePolicy {
        let mode = e.auth.token_mode();
        let api_key = e.auth.accepts_api_keys();
        let tokens = e
            .auth
            .modes()
            .iter()
            .filter(|m| **m != AuthMode::ApiKey)
            .count();
        if tokens > 1 || e.auth.modes().contains(&AuthMode::None) && e.auth.modes().len() > 1 {
            self.errors.push(f.err(
                &format!("{key}.auth"),
                "list `api_key` with at most one of jwt, opaque, any, oauth (and never `none`)",
            ));
        }
        if mode == AuthMode::Oauth && main.oauth.is_none() {
            self.errors.push(f.err(
                &format!("{key}.auth"),
                "needs the `oauth` section in conf.yaml",
            ));
        }
        let needs_jwt = matches!(mode, AuthMode::Jwt | AuthMode::Any);
        let needs_store = matches!(mode, AuthMode::Opaque | AuthMode::Any);
        if needs_jwt && main.jwt.is_none() {
            self.errors.push(f.err(
                &format!("{key}.auth"),
                "needs the `jwt` section in conf.yaml",
            ));
        }
        if needs_store && main.tokenginx.is_none() {
            self.errors.push(f.err(
                &format!("{key}.auth"),
                "needs the `tokenginx` section in conf.yaml",
            ));
        }
        if e.session == SessionMode::Required {
            if !needs_jwt {
                self.errors.push(f.err(
                    &format!("{key}.session"),
                    "session checks apply to JWTs: use `auth: jwt` or `any`",
                ));
            }
            if main.tokenginx.is_none() {
                self.errors.push(f.err(
                    &format!("{key}.session"),
                    "`required` needs the `tokenginx` section in conf.yaml",
                ));
            }
        }
        if mode == AuthMode::None {
            for (k, set) in [
                ("scopes", !e.scopes.is_empty()),
                ("roles", !e.roles.is_empty()),
            ] {
                if set {
                    self.errors
                        .push(f.err(&format!("{key}.{k}"), "needs `auth` other than `none`"));
                }
            }
        }
        for (k, list) in [("scopes", &e.scopes), ("roles", &e.roles)] {
            if let Some(i) = list
                .iter()
                .position(|s| s.is_empty() || s.contains(char::is_whitespace))
            {
                self.errors
                    .push(f.err(&format!("{key}.{k}[{i}]"), "must be one word"));
            }
        }
        let login = e.on_unauthenticated.as_deref() == Some("login");
        if login && mode != AuthMode::Oauth {
            self.errors.push(f.err(
                &format!("{key}.on_unauthenticated"),
                "`login` starts the gateway's own login: use `auth: oauth`",
            ));
        }
        let login_redirect = match e.on_unauthenticated.as_deref() {
            None | Some("401") | Some("login") => None,
            Some(other) => match other.strip_prefix("redirect:") {
                Some(target)
                    if target.starts_with('/')
                        || target.starts_with("http://")
                        || target.starts_with("https://") =>
                {
                    Some(target.to_string())
                }
                _ => {
                    self.errors.push(f.err(
                        &format!("{key}.on_unauthenticated"),
                        format!("`{other}` is not `401`, `login` or `redirect:/path?next={{uri}}`"),
                    ));
                    None
                }
            },
        };
        RoutePolicy {
            mode,
            api_key,
            session: e.session,
            scopes: e.scopes.clone(),
            roles: e.roles.clone(),
            login_redirect,
            login,
        }
    }
}
