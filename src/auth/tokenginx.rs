//! The TokenginX client: answers "is this session alive?" and "whose is
//! this opaque token?", with its own timeout, cache and failure policy.
//!
//! One multiplexed, self-reconnecting connection (redis crate's
//! `ConnectionManager`) carries every lookup. Results — found and missing
//! alike — are reused for `cache_ms`, so a revoked token is refused at most
//! `cache_ms` after its key is deleted, and a burst of requests with one
//! token costs one round trip. Errors are never cached; a lookup never
//! waits longer than `timeout_ms`.

use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use log::warn;
use prometheus::{Histogram, IntCounter};
use redis::aio::ConnectionManager;
use tinyufo::TinyUfo;

use super::identity::{forward_headers, scopes_of, Identity};
use super::template::Template;
use crate::config::auth_file::OnError;

/// The lookup cache's initial size (it holds up to `cache_entries`).
const ESTIMATED_ENTRIES: usize = 8192;

/// What a lookup found.
#[derive(Clone)]
pub enum Verdict {
    /// The key exists; for opaque tokens, the identity of its record.
    Found(Option<Arc<Identity>>),
    /// The key does not exist (or its record is not a token record).
    Missing,
    /// TokenginX failed or did not answer in time.
    Error,
}

/// `gatehouse_tokenginx_lookups_total{result}` and the duration histogram.
#[derive(Clone)]
pub struct LookupMetrics {
    /// result="found".
    pub found: IntCounter,
    /// result="missing".
    pub missing: IntCounter,
    /// result="error".
    pub error: IntCounter,
    /// result="cached".
    pub cached: IntCounter,
    /// Round-trip time of lookups that went to TokenginX.
    pub duration: Histogram,
}

impl LookupMetrics {
    /// The handles of `metrics`' TokenginX families, resolved once.
    pub fn new(metrics: &crate::metrics::Metrics) -> LookupMetrics {
        let m = &metrics.tokenginx_lookups;
        LookupMetrics {
            found: m.with_label_values(&["found"]),
            missing: m.with_label_values(&["missing"]),
            error: m.with_label_values(&["error"]),
            cached: m.with_label_values(&["cached"]),
            duration: metrics.tokenginx_lookup_duration.clone(),
        }
    }
}

/// Readiness view of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// No lookup or ping has completed yet.
    Unknown,
    /// The last lookup or ping worked.
    Ok,
    /// The last lookup or ping failed.
    Error,
}

struct Cached {
    key: Box<str>,
    at: Instant,
    verdict: Verdict,
}

/// Settings of the client.
pub struct TokenginxSettings {
    /// Connection target.
    pub client: redis::Client,
    /// Key of a JWT's session.
    pub session_key: Template,
    /// Key of an opaque token's record.
    pub opaque_key: Template,
    /// Longest a lookup may take.
    pub timeout: Duration,
    /// How long results are reused.
    pub cache_ttl: Duration,
    /// Most results kept.
    pub cache_entries: usize,
    /// Policy on errors.
    pub on_error: OnError,
    /// `claim -> header` of `forward_identity`, for opaque identities.
    pub forward: Vec<(String, http::HeaderName)>,
}

/// The client.
pub struct Tokenginx {
    /// Its settings.
    pub settings: TokenginxSettings,
    conn: OnceLock<ConnectionManager>,
    cache: TinyUfo<u64, Arc<Cached>>,
    seed: ahash::RandomState,
    health: AtomicU8,
    metrics: LookupMetrics,
}

impl Tokenginx {
    /// A client that connects once [`Tokenginx::start`] runs.
    pub fn new(settings: TokenginxSettings, metrics: LookupMetrics) -> Tokenginx {
        let entries = settings.cache_entries.max(16);
        Tokenginx {
            // TinyUFO preallocates its map and sizes its admission sketch by
            // the estimate (about 150 bytes a slot: 15 MB for 100,000); the
            // map grows past it, so start from the entries a busy second
            // touches rather than the cap.
            cache: TinyUfo::new(entries, entries.min(ESTIMATED_ENTRIES)),
            settings,
            conn: OnceLock::new(),
            seed: ahash::RandomState::new(),
            health: AtomicU8::new(0),
            metrics,
        }
    }

    /// Creates the connection (lazily connecting) on the current runtime and
    /// starts a ping every two seconds that keeps [`Tokenginx::health`] fresh.
    pub fn start(self: &Arc<Self>) {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.settings.timeout.max(Duration::from_millis(200))))
            .set_response_timeout(Some(self.settings.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        match ConnectionManager::new_lazy_with_config(self.settings.client.clone(), config) {
            Ok(c) => {
                let _ = self.conn.set(c);
            }
            Err(e) => warn!("tokenginx: cannot create the connection: {e}"),
        }
        tokio::spawn(ping_loop(Arc::downgrade(self)));
    }

    /// The shared connection, once [`Tokenginx::start`] has run: the OAuth
    /// client keeps its sessions on it.
    pub fn connection(&self) -> Option<ConnectionManager> {
        self.conn.get().cloned()
    }

    /// Last known health.
    pub fn health(&self) -> Health {
        match self.health.load(Relaxed) {
            1 => Health::Ok,
            2 => Health::Error,
            _ => Health::Unknown,
        }
    }

    fn set_health(&self, ok: bool) {
        self.health.store(if ok { 1 } else { 2 }, Relaxed);
    }

    /// Whether the session key exists.
    pub async fn session(&self, key: &str) -> Verdict {
        self.cached(key, async |conn| {
            let n: i64 = redis::cmd("EXISTS").arg(key).query_async(conn).await?;
            Ok(if n > 0 {
                Verdict::Found(None)
            } else {
                Verdict::Missing
            })
        })
        .await
    }

    /// The identity behind an opaque token: its record must exist and be
    /// TokenginX's OAuth record, JSON with `user_id` and `scope`.
    pub async fn opaque(&self, token: &str, now: u64) -> Verdict {
        let Some(key) = self.settings.opaque_key.render(|_| Some(token.to_string())) else {
            return Verdict::Missing;
        };
        let ttl = self.settings.cache_ttl.as_secs() + 1;
        self.record(&key, |v| self.opaque_identity(v, now + ttl))
            .await
    }

    /// The identity `build` reads from the JSON record at `key`: missing
    /// when there is none, or `build` finds none in it.
    pub async fn record(
        &self,
        key: &str,
        build: impl FnOnce(&serde_json::Value) -> Option<Identity>,
    ) -> Verdict {
        self.cached(key, async |conn| {
            let record: Option<String> = redis::cmd("GET").arg(key).query_async(conn).await?;
            Ok(
                match record
                    .as_deref()
                    .map(serde_json::from_str::<serde_json::Value>)
                {
                    Some(Ok(v)) => {
                        build(&v).map_or(Verdict::Missing, |id| Verdict::Found(Some(Arc::new(id))))
                    }
                    _ => Verdict::Missing,
                },
            )
        })
        .await
    }

    fn opaque_identity(&self, record: &serde_json::Value, expires_at: u64) -> Option<Identity> {
        let subject = match record.get("user_id")? {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return None,
        };
        let scopes = scopes_of(record);
        let roles = super::identity::roles_at(record, "roles");
        Some(Identity {
            headers: forward_headers(&self.settings.forward, &subject, &scopes, &roles, record)?,
            subject,
            scopes,
            roles,
            expires_at,
            session_key: None,
            consumer: false,
        })
    }

    async fn cached(
        &self,
        key: &str,
        query: impl AsyncFnOnce(&mut ConnectionManager) -> redis::RedisResult<Verdict>,
    ) -> Verdict {
        let hash = self.seed.hash_one(key);
        if let Some(hit) = self.cache.get(&hash) {
            if *hit.key == *key && hit.at.elapsed() < self.settings.cache_ttl {
                self.metrics.cached.inc();
                return hit.verdict.clone();
            }
        }
        let Some(conn) = self.conn.get() else {
            self.metrics.error.inc();
            return Verdict::Error;
        };
        let mut conn = conn.clone();
        let started = Instant::now();
        let result = tokio::time::timeout(self.settings.timeout, query(&mut conn)).await;
        self.metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        let verdict = match result {
            Ok(Ok(v)) => v,
            Ok(Err(_)) | Err(_) => Verdict::Error,
        };
        match &verdict {
            Verdict::Found(_) => self.metrics.found.inc(),
            Verdict::Missing => self.metrics.missing.inc(),
            Verdict::Error => self.metrics.error.inc(),
        }
        self.set_health(!matches!(verdict, Verdict::Error));
        if !matches!(verdict, Verdict::Error) {
            let entry = Cached {
                key: key.into(),
                at: started,
                verdict: verdict.clone(),
            };
            self.cache.put(hash, Arc::new(entry), 1);
        }
        verdict
    }
}

async fn ping_loop(client: Weak<Tokenginx>) {
    loop {
        let Some(t) = client.upgrade() else { return };
        if let Some(conn) = t.conn.get() {
            let mut conn = conn.clone();
            let cmd = redis::cmd("PING");
            let ping = cmd.query_async::<String>(&mut conn);
            let wait = t.settings.timeout.max(Duration::from_millis(500));
            let ok = matches!(tokio::time::timeout(wait, ping).await, Ok(Ok(_)));
            t.set_health(ok);
        }
        drop(t);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
