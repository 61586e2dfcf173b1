//! The verified-token cache: a token verified once is not verified
//! cryptographically again until it expires.
//!
//! Bounded by memory (`jwt.cache_max_bytes`), lock-free (Pingora's
//! TinyUFO), keyed by a seeded hash of the token with the whole token
//! compared on a hit, so a collision can never hand out someone else's
//! identity. Revocation is TokenginX's job, not this cache's.

use std::sync::Arc;

use tinyufo::TinyUfo;

use super::identity::Identity;

/// Rough bytes an identity takes beside its token, for the memory bound.
const IDENTITY_OVERHEAD: usize = 512;

struct Entry {
    token: Box<str>,
    identity: Arc<Identity>,
}

/// Verified tokens and who they speak for.
pub struct TokenCache {
    store: TinyUfo<u64, Arc<Entry>>,
    seed: ahash::RandomState,
}

impl TokenCache {
    /// A cache holding at most about `max_bytes` of tokens and identities.
    pub fn new(max_bytes: usize) -> TokenCache {
        let estimated = (max_bytes / (1024 + IDENTITY_OVERHEAD)).max(16);
        TokenCache {
            store: TinyUfo::new(max_bytes, estimated),
            seed: ahash::RandomState::new(),
        }
    }

    /// The identity of `token` if it was verified before and has not expired at `now`.
    pub fn get(&self, token: &str, now: u64) -> Option<Arc<Identity>> {
        let entry = self.store.get(&self.seed.hash_one(token))?;
        (*entry.token == *token && entry.identity.expires_at > now)
            .then(|| Arc::clone(&entry.identity))
    }

    /// Remembers a verified token.
    pub fn put(&self, token: &str, identity: Arc<Identity>) {
        let weight = (token.len() + IDENTITY_OVERHEAD).min(u16::MAX as usize) as u16;
        let entry = Arc::new(Entry {
            token: token.into(),
            identity,
        });
        self.store.put(self.seed.hash_one(token), entry, weight);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(exp: u64) -> Arc<Identity> {
        Arc::new(Identity {
            subject: "u".into(),
            scopes: vec![],
            roles: vec![],
            headers: vec![],
            expires_at: exp,
            session_key: None,
            consumer: false,
        })
    }

    #[test]
    fn hit_until_expiry_and_exact_token_only() {
        let c = TokenCache::new(1 << 20);
        c.put("a.b.c", identity(100));
        assert!(c.get("a.b.c", 99).is_some());
        assert!(c.get("a.b.c", 100).is_none());
        assert!(c.get("a.b.d", 50).is_none());
    }

    #[test]
    fn memory_stays_bounded() {
        let c = TokenCache::new(64 * 1024);
        let token = "x".repeat(1000);
        for i in 0..10_000 {
            c.put(&format!("{token}{i}"), identity(u64::MAX));
        }
        let kept = (0..10_000)
            .filter(|i| c.get(&format!("{token}{i}"), 0).is_some())
            .count();
        assert!(kept <= 64 * 1024 / 1500 + 8, "kept {kept}");
    }
}
