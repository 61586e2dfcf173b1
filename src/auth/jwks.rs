//! An issuer's public keys, fetched from its JWKS URL and kept fresh.
//!
//! Lookups are lock-free (the key set sits behind an atomic pointer). A
//! background task refreshes the set as the response's Cache-Control
//! allows (bounded by `jwks_refresh_seconds`). A token with an unknown
//! `kid` triggers one refetch, single-flight and at most once per
//! `jwks_min_refetch_seconds`, so key rotation needs no restart and a flood
//! of made-up key ids cannot flood the issuer. A failed fetch keeps the
//! last good keys. Only the JWKS URL from config is ever fetched: `jku`,
//! `x5u`, `jwk` and `x5c` token headers are never looked at.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use log::{info, warn};
use prometheus::IntCounter;

/// Largest JWKS document read: real ones are a few KiB, so a bigger body is
/// a misconfigured URL or a hostile server, not keys.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// One usable public key.
pub struct KeyEntry {
    /// `kid` of the JWK.
    pub kid: Option<String>,
    /// `alg` the JWK is pinned to, if it says.
    pub alg: Option<Algorithm>,
    /// The key.
    pub key: DecodingKey,
}

impl KeyEntry {
    /// Whether this key may verify a token signed with `alg`.
    fn fits(&self, alg: Algorithm) -> bool {
        self.alg.is_none_or(|a| a == alg) && self.key.family() == alg.family()
    }
}

/// Result of a key lookup.
pub enum Lookup {
    /// The key to verify with.
    Found(Arc<KeyEntry>),
    /// A key with this `kid` exists but not for this algorithm.
    WrongAlgorithm,
    /// No such key.
    Unknown,
    /// No keys at all: the JWKS has never been fetched successfully.
    Empty,
}

/// How current an issuer's keys are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwksState {
    /// No fetch has finished yet.
    NeverFetched,
    /// The last fetch worked, recently enough.
    Ok,
    /// Keys from an earlier fetch are served: the latest failed, or none
    /// got through for twice the refresh interval.
    Stale,
    /// No fetch has ever worked: tokens of this issuer cannot be verified.
    Failing,
}

impl JwksState {
    /// The word the admin service reports.
    pub fn as_str(self) -> &'static str {
        match self {
            JwksState::NeverFetched => "never_fetched",
            JwksState::Ok => "ok",
            JwksState::Stale => "stale",
            JwksState::Failing => "failing",
        }
    }
}

/// An issuer's key store as the admin service reports it.
#[derive(Debug, Clone)]
pub struct JwksStatus {
    /// Overall state.
    pub state: JwksState,
    /// Keys held now.
    pub keys: usize,
    /// Time since the last successful fetch.
    pub last_success_age: Option<Duration>,
    /// Why the last fetch failed, if it did.
    pub last_error: Option<String>,
}

/// Counters of `gatehouse_jwks_refreshes_total{issuer, result}`.
#[derive(Clone)]
pub struct RefreshCounters {
    /// Fetches that produced a key set.
    pub ok: IntCounter,
    /// Fetches that failed (the old keys stay).
    pub error: IntCounter,
}

/// The keys of one issuer.
pub struct KeyStore {
    issuer: String,
    url: String,
    http: reqwest::Client,
    timeout: Duration,
    min_refetch: Duration,
    max_refresh: Duration,
    keys: ArcSwap<Vec<Arc<KeyEntry>>>,
    /// Milliseconds since `epoch` of the last fetch attempt.
    last_attempt_ms: AtomicU64,
    /// Milliseconds since `epoch` of the last successful fetch (0: never).
    last_ok_ms: AtomicU64,
    /// Why the last fetch failed; `None` after a success.
    last_error: std::sync::Mutex<Option<String>>,
    epoch: Instant,
    refetch: tokio::sync::Mutex<()>,
    counters: RefreshCounters,
}

impl KeyStore {
    /// A store for `issuer`'s keys at `url`; nothing is fetched until
    /// [`KeyStore::spawn_refresher`] or a lookup asks.
    pub fn new(
        issuer: &str,
        url: &str,
        timeout: Duration,
        min_refetch: Duration,
        max_refresh: Duration,
        counters: RefreshCounters,
    ) -> KeyStore {
        KeyStore {
            issuer: issuer.to_string(),
            url: url.to_string(),
            http: crate::http_client::builder()
                .timeout(timeout)
                .no_proxy()
                .build()
                .unwrap_or_default(),
            timeout,
            min_refetch,
            max_refresh,
            keys: ArcSwap::from_pointee(Vec::new()),
            last_attempt_ms: AtomicU64::new(0),
            last_ok_ms: AtomicU64::new(0),
            last_error: std::sync::Mutex::new(None),
            epoch: Instant::now(),
            refetch: tokio::sync::Mutex::new(()),
            counters,
        }
    }

    /// The key for a token's `kid` and `alg`, without any I/O.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Lookup {
        let keys = self.keys.load();
        if keys.is_empty() {
            return Lookup::Empty;
        }
        match kid {
            Some(kid) => match keys.iter().find(|k| k.kid.as_deref() == Some(kid)) {
                Some(k) if k.fits(alg) => Lookup::Found(Arc::clone(k)),
                Some(_) => Lookup::WrongAlgorithm,
                None => Lookup::Unknown,
            },
            None => keys
                .iter()
                .find(|k| k.fits(alg))
                .map_or(Lookup::Unknown, |k| Lookup::Found(Arc::clone(k))),
        }
    }

    /// Like [`KeyStore::find`], refetching once if the key is unknown (or no
    /// keys were ever loaded) and the last attempt is old enough.
    pub async fn find_or_refetch(&self, kid: Option<&str>, alg: Algorithm) -> Lookup {
        match self.find(kid, alg) {
            Lookup::Unknown | Lookup::Empty => {}
            found => return found,
        }
        // Waits for a fetch already in flight (the refresher's first one, or
        // another request's), so a request never sees "no keys" while they
        // are on their way.
        let _flight = self.refetch.lock().await;
        match self.find(kid, alg) {
            Lookup::Unknown | Lookup::Empty => {}
            found => return found,
        }
        if !self.recently_attempted() {
            let _ = self.fetch_locked().await;
        }
        self.find(kid, alg)
    }

    fn recently_attempted(&self) -> bool {
        let last = self.last_attempt_ms.load(Relaxed);
        last != 0 && self.now_ms().saturating_sub(last) < self.min_refetch.as_millis() as u64
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Fetches the JWKS once (one fetch at a time); on success the new keys
    /// replace the old and the Cache-Control max-age comes back.
    pub async fn fetch(&self) -> Result<Option<Duration>, String> {
        let _flight = self.refetch.lock().await;
        self.fetch_locked().await
    }

    async fn fetch_locked(&self) -> Result<Option<Duration>, String> {
        self.last_attempt_ms.store(self.now_ms(), Relaxed);
        match self.fetch_inner().await {
            Ok((keys, max_age)) => {
                info!(
                    "jwks of issuer {}: {} keys from {}",
                    self.issuer,
                    keys.len(),
                    self.url
                );
                self.keys.store(Arc::new(keys));
                self.counters.ok.inc();
                self.last_ok_ms.store(self.now_ms(), Relaxed);
                self.set_last_error(None);
                Ok(max_age)
            }
            Err(e) => {
                warn!(
                    "jwks of issuer {} from {}: {e}; keeping the last good keys",
                    self.issuer, self.url
                );
                self.counters.error.inc();
                self.set_last_error(Some(e.clone()));
                Err(e)
            }
        }
    }

    async fn fetch_inner(&self) -> Result<(Vec<Arc<KeyEntry>>, Option<Duration>), String> {
        let resp = tokio::time::timeout(self.timeout, self.http.get(&self.url).send())
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status()));
        }
        let max_age = resp
            .headers()
            .get(http::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let body = tokio::time::timeout(self.timeout, bounded_body(resp))
            .await
            .map_err(|_| "timed out".to_string())??;
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| format!("not a JWKS: {e}"))?;
        let keys = keys_of(&set);
        if keys.is_empty() {
            return Err("the JWKS has no usable signing key".into());
        }
        Ok((keys, max_age))
    }

    fn set_last_error(&self, e: Option<String>) {
        match self.last_error.lock() {
            Ok(mut last) => *last = e,
            Err(p) => *p.into_inner() = e,
        }
    }

    /// Where the keys stand, for `/health/ready` and `/status` (admin only,
    /// never on the request path).
    pub fn status(&self) -> JwksStatus {
        let last_ok = self.last_ok_ms.load(Relaxed);
        let error = self
            .last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        let keys = self.keys.load().len();
        let age = (last_ok != 0).then(|| Duration::from_millis(self.now_ms() - last_ok));
        let state = match (&error, age) {
            (None, None) => JwksState::NeverFetched,
            (Some(_), None) => JwksState::Failing,
            (Some(_), Some(_)) => JwksState::Stale,
            // Refreshed no later than max_refresh; twice that means the
            // refresher has stopped getting through.
            (None, Some(age)) if age > self.max_refresh * 2 => JwksState::Stale,
            (None, Some(_)) => JwksState::Ok,
        };
        JwksStatus {
            state,
            keys,
            last_success_age: age,
            last_error: error,
        }
    }

    /// Starts the background refresh on the current runtime. The task ends
    /// when the store is dropped.
    pub fn spawn_refresher(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(refresh_loop(weak));
    }
}

/// The body of `resp`, refused as soon as it passes [`MAX_JWKS_BYTES`].
async fn bounded_body(mut resp: reqwest::Response) -> Result<Vec<u8>, String> {
    let too_big = || format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes");
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
    {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn refresh_loop(store: Weak<KeyStore>) {
    let mut failures = 0u32;
    loop {
        let Some(s) = store.upgrade() else { return };
        let wait = match s.fetch().await {
            Ok(max_age) => {
                failures = 0;
                max_age
                    .unwrap_or(s.max_refresh)
                    .clamp(s.min_refetch, s.max_refresh)
            }
            Err(_) => {
                failures = failures.saturating_add(1);
                (s.min_refetch / 2 * failures.min(16)).min(s.max_refresh)
            }
        };
        drop(s);
        tokio::time::sleep(wait.max(Duration::from_millis(100))).await;
    }
}

/// `max-age=N` of a Cache-Control value.
fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control
        .split(',')
        .filter_map(|d| d.trim().strip_prefix("max-age="))
        .find_map(|n| n.trim().parse().ok())
        .map(Duration::from_secs)
}

/// The signature keys of a set: encryption keys and symmetric (`oct`) keys
/// are skipped — an HMAC key published next to public keys would let
/// anyone who can read the JWKS sign tokens.
fn keys_of(set: &JwkSet) -> Vec<Arc<KeyEntry>> {
    set.keys
        .iter()
        .filter(|jwk| !matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)))
        .filter(|jwk| jwk.common.public_key_use != Some(PublicKeyUse::Encryption))
        .filter_map(|jwk| {
            let key = DecodingKey::from_jwk(jwk).ok()?;
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok());
            Some(Arc::new(KeyEntry {
                kid: jwk.common.key_id.clone(),
                alg,
                key,
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age() {
        assert_eq!(
            max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age("no-cache"), None);
    }

    #[test]
    fn symmetric_and_encryption_keys_are_skipped() {
        let set: JwkSet = serde_json::from_value(serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "kid": "h"},
            {"kty": "EC", "crv": "P-256", "use": "enc", "kid": "e",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "crv": "P-256", "kid": "s", "alg": "ES256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
        ]}))
        .unwrap();
        let keys = keys_of(&set);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("s"));
        assert!(keys[0].fits(Algorithm::ES256));
        assert!(!keys[0].fits(Algorithm::HS256));
        assert!(!keys[0].fits(Algorithm::ES384));
    }
}
