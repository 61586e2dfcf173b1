//! A request's session: the cookie's record from TokenginX (cached like
//! other lookups, for `cache_ms`), its identity, and the refresh of an
//! access token about to expire — single-flight across every gateway
//! instance through a TokenginX lock, so a server that rotates refresh
//! tokens and revokes a grant on reuse never sees one presented twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;
use log::warn;

use super::secrets::{is_random_shaped, random};
use super::store::SessionRecord;
use super::token_endpoint::{refresh, CallError};
use super::{CachedSession, OauthClient};
use crate::auth::identity::{forward_headers, Identity};
use crate::auth::{Failure, Reason};

/// A session as requests use it.
pub struct LiveSession {
    /// Who it is.
    pub identity: Arc<Identity>,
    /// `Bearer <access token>`, for upstreams.
    pub authorization: HeaderValue,
    /// The record it was built from.
    pub record: SessionRecord,
}

/// What waiting for another holder's refresh came to.
enum Waited {
    /// The new tokens arrived.
    Refreshed(Arc<LiveSession>),
    /// The session was deleted meanwhile (the refresh ended it, or a logout).
    Ended,
    /// Neither within the lock's lifetime.
    TimedOut,
}

/// How often a request waiting for another instance's refresh looks again.
const POLL: Duration = Duration::from_millis(25);

impl OauthClient {
    /// The live session of cookie value `id` at `now`, refreshed first
    /// when its access token expires within `refresh_before_seconds`.
    pub async fn session(&self, id: &str, now: u64) -> Result<Arc<LiveSession>, Failure> {
        if !is_random_shaped(id) {
            return Err(Failure::Unauthenticated(Reason::Session));
        }
        let live = self.lookup(id).await?;
        if now >= live.record.expires_at {
            self.forget(id);
            return Err(Failure::Unauthenticated(Reason::Session));
        }
        if live.record.access_expires_at > now.saturating_add(self.settings.refresh_before) {
            return Ok(live);
        }
        self.refreshed(id, live, now).await
    }

    async fn lookup(&self, id: &str) -> Result<Arc<LiveSession>, Failure> {
        let hash = self.seed.hash_one(id);
        if let Some(hit) = self.cache.get(&hash) {
            if *hit.id == *id && hit.at.elapsed() < self.cache_ttl {
                return Ok(Arc::clone(&hit.live));
            }
        }
        let record = self
            .store
            .session(id)
            .await
            .map_err(|_| Failure::Unavailable("the session store is unavailable"))?
            .ok_or(Failure::Unauthenticated(Reason::Session))?;
        self.remember(id, record)
    }

    /// Builds the live session of `record` and caches it.
    fn remember(&self, id: &str, record: SessionRecord) -> Result<Arc<LiveSession>, Failure> {
        let headers = forward_headers(
            &self.settings.forward,
            &record.sub,
            &record.scopes,
            &record.roles,
            &record.claims,
        )
        .ok_or(Failure::Unauthenticated(Reason::Malformed))?;
        let authorization = HeaderValue::try_from(format!("Bearer {}", record.access_token))
            .map_err(|_| Failure::Unauthenticated(Reason::Malformed))?;
        let identity = Identity {
            subject: record.sub.clone(),
            scopes: record.scopes.clone(),
            roles: record.roles.clone(),
            headers,
            expires_at: record.access_expires_at,
            session_key: None,
            consumer: false,
        };
        let live = Arc::new(LiveSession {
            identity: Arc::new(identity),
            authorization,
            record,
        });
        let entry = CachedSession {
            id: id.into(),
            at: Instant::now(),
            live: Arc::clone(&live),
        };
        self.cache.put(self.seed.hash_one(id), Arc::new(entry), 1);
        Ok(live)
    }

    /// Drops the cached copy of session `id`.
    pub(super) fn forget(&self, id: &str) {
        self.cache.remove(&self.seed.hash_one(id));
    }

    /// `live` with a fresh access token: refreshed here under the lock, or
    /// by whoever holds it. While the old token is still valid, a failed
    /// refresh falls back to it; after, the answer is 503.
    async fn refreshed(
        &self,
        id: &str,
        live: Arc<LiveSession>,
        now: u64,
    ) -> Result<Arc<LiveSession>, Failure> {
        let still_valid = live.record.access_expires_at > now;
        let fallback = |live: Arc<LiveSession>| {
            if still_valid {
                Ok(live)
            } else {
                Err(Failure::OauthUnavailable)
            }
        };
        let owner = random();
        let lock_ms = self.settings.timeout.as_millis() as u64 * 2 + 500;
        match self.store.lock(id, &owner, lock_ms).await {
            Ok(true) => {
                let result = self.refresh_locked(id, &live, now).await;
                let _ = self.store.unlock(id, &owner).await;
                match result {
                    Err(Failure::OauthUnavailable) => fallback(live),
                    other => other,
                }
            }
            Ok(false) => match self.wait_for_refresh(id, &live, now).await {
                Waited::Refreshed(fresh) => {
                    self.count("joined");
                    Ok(fresh)
                }
                Waited::Ended => {
                    self.forget(id);
                    Err(Failure::Unauthenticated(Reason::Session))
                }
                Waited::TimedOut => fallback(live),
            },
            Err(_) => fallback(live),
        }
    }

    /// Refreshes with the lock held. The record is read again first: an
    /// instance that held the lock just before may have refreshed it.
    async fn refresh_locked(
        &self,
        id: &str,
        live: &LiveSession,
        now: u64,
    ) -> Result<Arc<LiveSession>, Failure> {
        let current = self
            .store
            .session(id)
            .await
            .map_err(|_| Failure::OauthUnavailable)?
            .ok_or(Failure::Unauthenticated(Reason::Session))?;
        if current.access_token != live.record.access_token
            && current.access_expires_at > now.saturating_add(self.settings.refresh_before)
        {
            self.count("joined");
            return self.remember(id, current);
        }
        let Some(refresh_token) = current.refresh_token.clone() else {
            return Err(Failure::Unauthenticated(Reason::Expired));
        };
        let md = self.metadata().map_err(|_| Failure::OauthUnavailable)?;
        match refresh(
            &self.http,
            &self.settings,
            &md.token_endpoint,
            &refresh_token,
        )
        .await
        {
            Ok(tokens) => {
                let record = self.record(tokens, serde_json::Value::Null, Some(&current), now);
                self.store
                    .put_session(id, &record, now)
                    .await
                    .map_err(|_| Failure::OauthUnavailable)?;
                self.count("ok");
                self.remember(id, record)
            }
            Err(CallError::InvalidGrant) => {
                self.count("invalid_grant");
                let _ = self.store.delete_session(id).await;
                self.forget(id);
                Err(Failure::Unauthenticated(Reason::Session))
            }
            Err(CallError::Refused(code)) => {
                warn!("oauth: the token endpoint refused a refresh: {code}");
                self.count("error");
                Err(Failure::OauthUnavailable)
            }
            Err(CallError::Unavailable(why)) => {
                warn!("oauth: refresh failed: {why}");
                self.count("error");
                Err(Failure::OauthUnavailable)
            }
        }
    }

    /// Waits (at most the lock's worth of time) for another holder's
    /// refresh to land in TokenginX.
    async fn wait_for_refresh(&self, id: &str, live: &LiveSession, now: u64) -> Waited {
        let deadline = Instant::now() + self.settings.timeout * 2 + Duration::from_millis(500);
        while Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
            match self.store.session(id).await {
                Ok(Some(r))
                    if r.access_token != live.record.access_token && r.access_expires_at > now =>
                {
                    return match self.remember(id, r) {
                        Ok(fresh) => Waited::Refreshed(fresh),
                        Err(_) => Waited::Ended,
                    };
                }
                Ok(None) => return Waited::Ended,
                _ => {}
            }
        }
        Waited::TimedOut
    }

    fn count(&self, result: &str) {
        self.metrics.refreshes.with_label_values(&[result]).inc();
    }
}
