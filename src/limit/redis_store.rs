//! The shared store: one bucket per key in Redis (one node, or a Redis
//! Cluster), so several gateway instances enforce one limit.
//!
//! Each decision is one atomic server-side script (GCRA, the same math as
//! the local store) that reads the clock of the Redis server, so gateway
//! clocks never matter, and sets the key to expire once its bucket is full
//! again. Keys are hash-tagged (`gatehouse:rl:{…}`), so in a cluster the
//! script's single key decides the node.
//!
//! Round trips: one per limit that applies, limits of one request in
//! parallel. Two things keep them off the latency path: a refusal is
//! remembered locally until its Retry-After (a client hammering a closed
//! bucket costs no round trip; other instances can only drain the bucket
//! further, never refill it sooner), and after three failures in a row the
//! store is skipped for a second so a dead Redis adds no timeout to every
//! request.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use log::warn;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use tinyufo::TinyUfo;

use super::gcra::{Bucket, Decision};

/// GCRA on the server: KEYS[1] bucket, ARGV[1] interval µs, ARGV[2] burst.
/// Returns {allowed, retry_after_us, remaining, until_full_us}.
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
if tat < now then tat = now end
local new_tat = tat + interval
local limit = burst * interval
if new_tat - now > limit then
  return {0, new_tat - now - limit, 0, tat - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0, math.floor((limit - (new_tat - now)) / interval), new_tat - now}
"#;

/// How long the store is skipped once it has failed [`BREAKER_AFTER`] times in a row.
const BREAKER: Duration = Duration::from_secs(1);

/// Consecutive failures that open the breaker: one slow answer on a busy
/// machine costs `on_error` for that request only.
const BREAKER_AFTER: u32 = 3;

/// Where the store lives.
pub enum Target {
    /// One Redis node.
    Single(Box<redis::Client>),
    /// Redis Cluster seed nodes.
    Cluster(Box<redis::cluster::ClusterClient>),
}

enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// What the shared store answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The server decided.
    Decided(Decision, u64),
    /// A refusal remembered from an earlier answer.
    CachedDeny(u64),
    /// The store failed, timed out, or is being skipped after a failure.
    Failed,
}

/// The Redis-backed store.
pub struct RedisStore {
    target: Target,
    timeout: Duration,
    conn: OnceLock<Conn>,
    script: redis::Script,
    denied: TinyUfo<u64, u64>,
    epoch: Instant,
    skip_until_us: AtomicU64,
    failures_in_a_row: AtomicU32,
    health: AtomicU8,
}

impl RedisStore {
    /// A store that connects once [`RedisStore::start`] runs.
    pub fn new(target: Target, timeout: Duration) -> RedisStore {
        RedisStore {
            target,
            timeout,
            conn: OnceLock::new(),
            script: redis::Script::new(SCRIPT),
            denied: TinyUfo::new(65_536, 65_536),
            epoch: Instant::now(),
            skip_until_us: AtomicU64::new(0),
            failures_in_a_row: AtomicU32::new(0),
            health: AtomicU8::new(0),
        }
    }

    /// Connects in the background on the current runtime (a single node
    /// lazily, a cluster once its seeds answer), then keeps health fresh.
    pub fn start(self: &Arc<Self>) {
        tokio::spawn(connect_and_watch(Arc::downgrade(self)));
    }

    /// `Some(true)` healthy, `Some(false)` failing, `None` not known yet.
    pub fn healthy(&self) -> Option<bool> {
        match self.health.load(Relaxed) {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        }
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Decides one request for bucket `key` (`hash` is its local hash).
    pub async fn decide(&self, key: &str, hash: u64, bucket: Bucket) -> Answer {
        let now = self.now_us();
        if let Some(until) = self.denied.get(&hash) {
            if until > now {
                return Answer::CachedDeny(until - now);
            }
        }
        if self.skip_until_us.load(Relaxed) > now {
            return Answer::Failed;
        }
        let Some(conn) = self.conn.get() else {
            return Answer::Failed;
        };
        let mut invocation = self.script.key(key);
        invocation.arg(bucket.interval_us).arg(bucket.burst);
        let call = async {
            match conn {
                Conn::Single(c) => {
                    invocation
                        .invoke_async::<(u8, u64, u64, u64)>(&mut c.clone())
                        .await
                }
                Conn::Cluster(c) => {
                    invocation
                        .invoke_async::<(u8, u64, u64, u64)>(&mut c.clone())
                        .await
                }
            }
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok((allowed, retry_after_us, remaining, until_full_us))) => {
                self.health.store(1, Relaxed);
                self.failures_in_a_row.store(0, Relaxed);
                if allowed == 1 {
                    Answer::Decided(Decision::Allow { tat: 0, remaining }, until_full_us)
                } else {
                    self.denied.put(hash, now + retry_after_us, 1);
                    Answer::Decided(Decision::Deny { retry_after_us }, until_full_us)
                }
            }
            Ok(Err(e)) => self.fail(now, &e.to_string()),
            Err(_) => self.fail(now, "timed out"),
        }
    }

    fn fail(&self, now: u64, why: &str) -> Answer {
        if self.failures_in_a_row.fetch_add(1, Relaxed) + 1 >= BREAKER_AFTER {
            if self.health.swap(2, Relaxed) != 2 {
                warn!(
                    "rate-limit store failing ({why}); applying on_error for {BREAKER:?} at a time"
                );
            }
            self.skip_until_us
                .store(now + BREAKER.as_micros() as u64, Relaxed);
        }
        Answer::Failed
    }
}

async fn connect_and_watch(store: Weak<RedisStore>) {
    loop {
        let Some(s) = store.upgrade() else { return };
        if s.conn.get().is_none() {
            let conn = match &s.target {
                Target::Single(client) => {
                    let config = redis::aio::ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(s.timeout.max(Duration::from_millis(200))))
                        .set_response_timeout(Some(s.timeout))
                        .set_number_of_retries(1)
                        .set_max_delay(Duration::from_secs(1));
                    ConnectionManager::new_lazy_with_config((**client).clone(), config)
                        .map(Conn::Single)
                        .map_err(|e| e.to_string())
                }
                Target::Cluster(client) => client
                    .get_async_connection()
                    .await
                    .map(Conn::Cluster)
                    .map_err(|e| e.to_string()),
            };
            match conn {
                Ok(c) => {
                    let _ = s.conn.set(c);
                }
                Err(e) => {
                    s.health.store(2, Relaxed);
                    warn!("rate-limit store: cannot connect: {e}");
                }
            }
        }
        if let Some(conn) = s.conn.get() {
            let ping = async {
                let cmd = redis::cmd("PING");
                match conn {
                    Conn::Single(c) => c.clone().req_packed_command(&cmd).await.map(|_| ()),
                    Conn::Cluster(c) => c.clone().req_packed_command(&cmd).await.map(|_| ()),
                }
            };
            let ok = matches!(
                tokio::time::timeout(Duration::from_secs(1), ping).await,
                Ok(Ok(()))
            );
            s.health.store(if ok { 1 } else { 2 }, Relaxed);
        }
        drop(s);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
