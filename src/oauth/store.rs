//! What the OAuth client keeps in TokenginX: sessions, pending logins and
//! refresh locks. Keys carry a SHA-256 of the session id or state, never
//! the value itself; every call is bounded by TokenginX's `timeout_ms`.
//! Without `tokenginx` the records stay in this process (one gateway
//! instance only), bounded in number and expiring like TokenginX's keys.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::secrets::digest;
use crate::auth::tokenginx::Tokenginx;

/// A logged-in browser: who it is and the tokens the gateway holds for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The user (`sub`).
    pub sub: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Roles from the roles claim.
    pub roles: Vec<String>,
    /// The identity's claims, for `forward_identity` headers.
    pub claims: serde_json::Value,
    /// The current access token.
    pub access_token: String,
    /// Unix time the access token expires.
    pub access_expires_at: u64,
    /// The current refresh token.
    pub refresh_token: Option<String>,
    /// The id_token of the login (RP-initiated logout's `id_token_hint`).
    pub id_token: Option<String>,
    /// Unix time the login ends, refreshed or not.
    pub expires_at: u64,
}

/// A login in progress, between the redirect to the server and the
/// callback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingLogin {
    /// The PKCE code verifier.
    pub verifier: String,
    /// The id_token's expected `nonce`.
    pub nonce: String,
    /// Digest of the browser-binding cookie.
    pub binding: String,
    /// Local URL to return to.
    pub return_to: String,
    /// The `redirect_uri` sent (it must be repeated at the token endpoint).
    pub redirect_uri: String,
}

/// How long a login may take, and its binding cookie lives.
pub const LOGIN_TTL_SECONDS: u64 = 600;

/// Most records a process keeps without TokenginX.
const MEMORY_MAX_RECORDS: usize = 100_000;

/// Where the records live.
enum Backend {
    /// TokenginX, shared by every gateway instance.
    Tokenginx(Arc<Tokenginx>),
    /// This process: key -> (value, expiry).
    Memory(Mutex<HashMap<String, (String, Instant)>>),
}

/// The OAuth records, in TokenginX or in this process.
pub struct Store {
    backend: Backend,
}

/// TokenginX failed or did not answer in time (or, in memory, is full).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreError;

impl Store {
    /// Records on `tokenginx`'s connection, or in this process without it.
    pub fn new(tokenginx: Option<Arc<Tokenginx>>) -> Store {
        Store {
            backend: match tokenginx {
                Some(t) => Backend::Tokenginx(t),
                None => Backend::Memory(Mutex::new(HashMap::new())),
            },
        }
    }

    /// Whether every gateway instance sees the same records.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Tokenginx(_))
    }

    fn session_key(id: &str) -> String {
        format!("gatehouse:oauth:session:{}", digest(id))
    }

    fn login_key(state: &str) -> String {
        format!("gatehouse:oauth:state:{}", digest(state))
    }

    fn lock_key(id: &str) -> String {
        format!("gatehouse:oauth:lock:{}", digest(id))
    }

    async fn run<T: redis::FromRedisValue>(
        t: &Tokenginx,
        cmd: redis::Cmd,
    ) -> Result<T, StoreError> {
        let mut conn: ConnectionManager = t.connection().ok_or(StoreError)?;
        match tokio::time::timeout(t.settings.timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            _ => Err(StoreError),
        }
    }

    /// The in-memory map, expired records dropped from the answer.
    fn memory<R>(
        map: &Mutex<HashMap<String, (String, Instant)>>,
        f: impl FnOnce(&mut HashMap<String, (String, Instant)>, Instant) -> R,
    ) -> Result<R, StoreError> {
        let mut map = map.lock().map_err(|_| StoreError)?;
        let now = Instant::now();
        if map.len() >= MEMORY_MAX_RECORDS {
            map.retain(|_, (_, expiry)| *expiry > now);
        }
        Ok(f(&mut map, now))
    }

    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        match &self.backend {
            Backend::Tokenginx(t) => {
                let mut cmd = redis::cmd("GET");
                cmd.arg(key);
                Self::run(t, cmd).await
            }
            Backend::Memory(m) => Self::memory(m, |map, now| {
                map.get(key)
                    .filter(|(_, e)| *e > now)
                    .map(|(v, _)| v.clone())
            }),
        }
    }

    /// Sets `key` for `ttl`; with `only_new`, only if it does not exist
    /// (whether it was set is the answer).
    async fn set(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        only_new: bool,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Tokenginx(t) => {
                let mut cmd = redis::cmd("SET");
                cmd.arg(key)
                    .arg(value)
                    .arg("PX")
                    .arg(ttl.as_millis().max(1) as u64);
                if only_new {
                    cmd.arg("NX");
                }
                let set: Option<String> = Self::run(t, cmd).await?;
                Ok(set.is_some())
            }
            Backend::Memory(m) => Self::memory(m, |map, now| {
                if only_new && map.get(key).is_some_and(|(_, e)| *e > now) {
                    return Ok(false);
                }
                if map.len() >= MEMORY_MAX_RECORDS && !map.contains_key(key) {
                    return Err(StoreError);
                }
                map.insert(key.to_string(), (value.to_string(), now + ttl));
                Ok(true)
            })?,
        }
    }

    /// Removes `key`; with `read`, answers what it held (GETDEL).
    async fn take(&self, key: &str, read: bool) -> Result<Option<String>, StoreError> {
        match &self.backend {
            Backend::Tokenginx(t) if read => {
                let mut cmd = redis::cmd("GETDEL");
                cmd.arg(key);
                Self::run(t, cmd).await
            }
            Backend::Tokenginx(t) => {
                let mut cmd = redis::cmd("DEL");
                cmd.arg(key);
                Self::run::<i64>(t, cmd).await.map(|_| None)
            }
            Backend::Memory(m) => Self::memory(m, |map, now| {
                map.remove(key).filter(|(_, e)| *e > now).map(|(v, _)| v)
            }),
        }
    }

    fn parse<T: DeserializeOwned>(text: Option<String>) -> Option<T> {
        text.and_then(|t| serde_json::from_str(&t).ok())
    }

    /// The session of id `id`, if it lives.
    pub async fn session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        Ok(Self::parse(self.get(&Self::session_key(id)).await?))
    }

    /// Writes the session of `id`; it expires with the login.
    pub async fn put_session(
        &self,
        id: &str,
        record: &SessionRecord,
        now: u64,
    ) -> Result<(), StoreError> {
        let ttl = Duration::from_secs(record.expires_at.saturating_sub(now).max(1));
        let json = serde_json::to_string(record).map_err(|_| StoreError)?;
        self.set(&Self::session_key(id), &json, ttl, false)
            .await
            .map(drop)
    }

    /// Deletes the session of `id`.
    pub async fn delete_session(&self, id: &str) -> Result<(), StoreError> {
        self.take(&Self::session_key(id), false).await.map(drop)
    }

    /// Remembers a login started with `state`.
    pub async fn put_login(&self, state: &str, login: &PendingLogin) -> Result<(), StoreError> {
        let json = serde_json::to_string(login).map_err(|_| StoreError)?;
        let ttl = Duration::from_secs(LOGIN_TTL_SECONDS);
        self.set(&Self::login_key(state), &json, ttl, false)
            .await
            .map(drop)
    }

    /// The login started with `state`, removed in the same step, so a state
    /// serves one callback only.
    pub async fn take_login(&self, state: &str) -> Result<Option<PendingLogin>, StoreError> {
        Ok(Self::parse(self.take(&Self::login_key(state), true).await?))
    }

    /// Takes the refresh lock of session `id` for `ttl_ms`, if no one
    /// (on any gateway instance) holds it; `owner` identifies the holder.
    pub async fn lock(&self, id: &str, owner: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        self.set(
            &Self::lock_key(id),
            owner,
            Duration::from_millis(ttl_ms),
            true,
        )
        .await
    }

    /// Releases the refresh lock of `id` if `owner` still holds it.
    pub async fn unlock(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        let key = Self::lock_key(id);
        if self.get(&key).await?.as_deref() == Some(owner) {
            self.take(&key, false).await?;
        }
        Ok(())
    }
}
