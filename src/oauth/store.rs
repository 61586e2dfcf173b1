//! What the OAuth client keeps in TokenginX: sessions, pending logins and
//! refresh locks. Keys carry a SHA-256 of the session id or state, never
//! the value itself; every call is bounded by TokenginX's `timeout_ms`.

use std::sync::Arc;

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

/// The OAuth records on TokenginX's connection.
pub struct Store {
    tokenginx: Arc<Tokenginx>,
}

/// TokenginX failed or did not answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreError;

impl Store {
    /// Records on `tokenginx`'s connection.
    pub fn new(tokenginx: Arc<Tokenginx>) -> Store {
        Store { tokenginx }
    }

    fn session_key(id: &str) -> String {
        format!("gatehouse:oauth:session:{}", digest(id))
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, StoreError> {
        let mut conn: ConnectionManager = self.tokenginx.connection().ok_or(StoreError)?;
        let timeout = self.tokenginx.settings.timeout;
        match tokio::time::timeout(timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            _ => Err(StoreError),
        }
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        cmd: redis::Cmd,
    ) -> Result<Option<T>, StoreError> {
        let text: Option<String> = self.run(cmd).await?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// The session of id `id`, if it lives.
    pub async fn session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(Self::session_key(id));
        self.get_json(cmd).await
    }

    /// Writes the session of `id`; it expires with the login.
    pub async fn put_session(
        &self,
        id: &str,
        record: &SessionRecord,
        now: u64,
    ) -> Result<(), StoreError> {
        let ttl = record.expires_at.saturating_sub(now).max(1);
        let json = serde_json::to_string(record).map_err(|_| StoreError)?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(Self::session_key(id)).arg(json).arg("EX").arg(ttl);
        self.run::<()>(cmd).await
    }

    /// Deletes the session of `id`.
    pub async fn delete_session(&self, id: &str) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(Self::session_key(id));
        self.run::<i64>(cmd).await.map(drop)
    }

    /// Remembers a login started with `state`.
    pub async fn put_login(&self, state: &str, login: &PendingLogin) -> Result<(), StoreError> {
        let json = serde_json::to_string(login).map_err(|_| StoreError)?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(format!("gatehouse:oauth:state:{}", digest(state)))
            .arg(json)
            .arg("EX")
            .arg(LOGIN_TTL_SECONDS);
        self.run::<()>(cmd).await
    }

    /// The login started with `state`, removed in the same step, so a state
    /// serves one callback only.
    pub async fn take_login(&self, state: &str) -> Result<Option<PendingLogin>, StoreError> {
        let mut cmd = redis::cmd("GETDEL");
        cmd.arg(format!("gatehouse:oauth:state:{}", digest(state)));
        self.get_json(cmd).await
    }

    /// Takes the refresh lock of session `id` for `ttl_ms`, if no one
    /// (on any gateway instance) holds it; `owner` identifies the holder.
    pub async fn lock(&self, id: &str, owner: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(format!("gatehouse:oauth:lock:{}", digest(id)))
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms);
        let set: Option<String> = self.run(cmd).await?;
        Ok(set.is_some())
    }

    /// Releases the refresh lock of `id` if `owner` still holds it.
    pub async fn unlock(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        let key = format!("gatehouse:oauth:lock:{}", digest(id));
        let mut get = redis::cmd("GET");
        get.arg(&key);
        let holder: Option<String> = self.run(get).await?;
        if holder.as_deref() == Some(owner) {
            let mut del = redis::cmd("DEL");
            del.arg(&key);
            self.run::<i64>(del).await?;
        }
        Ok(())
    }
}
