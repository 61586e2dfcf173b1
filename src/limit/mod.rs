//! Rate limiting: token buckets per route and key, in the local store or
//! in Redis shared by every gateway instance.
//!
//! | module | holds |
//! |---|---|
//! | [`gcra`] | the bucket math |
//! | [`local`] | the lock-free, bounded local store |
//! | [`redis_store`] | the shared store (one node or a cluster) |
//!
//! A route may carry several limits (per user and per route, say); a
//! request passes when every one of them lets it. Limits keyed by IP,
//! header or route run before authentication (cheap refusals first);
//! limits keyed by user run after it, on the verified identity.

pub mod gcra;
pub mod local;
pub mod redis_store;

use std::fmt::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::HeaderName;
use pingora_http::RequestHeader;
use prometheus::IntCounter;

use gcra::{Bucket, Decision};
use local::LocalStore;
use redis_store::{Answer, RedisStore};

/// What a limit counts by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    /// Client IP (after the trusted-proxy walk).
    Ip,
    /// Verified user id; anonymous requests count by IP.
    User,
    /// The API key's consumer; other requests count by IP.
    Consumer,
    /// One bucket for the whole route.
    Route,
    /// A request header's value; requests without it share one bucket.
    Header(HeaderName),
}

impl LimitKey {
    /// Parses `ip`, `user`, `route` or `header:NAME`.
    pub fn parse(text: &str) -> Option<LimitKey> {
        match text.split_once(':') {
            None if text == "ip" => Some(LimitKey::Ip),
            None if text == "user" => Some(LimitKey::User),
            None if text == "consumer" => Some(LimitKey::Consumer),
            None if text == "route" => Some(LimitKey::Route),
            Some(("header", name)) => HeaderName::try_from(name).ok().map(LimitKey::Header),
            _ => None,
        }
    }

    /// Whether it counts by who authenticated (so runs after authentication).
    fn needs_identity(&self) -> bool {
        matches!(self, LimitKey::User | LimitKey::Consumer)
    }

    fn label(&self) -> String {
        match self {
            LimitKey::Ip => "ip".into(),
            LimitKey::User => "user".into(),
            LimitKey::Consumer => "consumer".into(),
            LimitKey::Route => "route".into(),
            LimitKey::Header(h) => format!("header-{h}"),
        }
    }
}

/// One limit of a route.
#[derive(Debug, Clone)]
pub struct Limit {
    /// What it counts by.
    pub key: LimitKey,
    /// Rate and burst.
    pub bucket: Bucket,
    /// Policy name in the RateLimit headers (`route-key`).
    pub name: String,
}

/// The limits of one route, with what is precomputed for them.
pub struct RouteLimits {
    /// Route name (part of every bucket key).
    pub route: String,
    /// The limits.
    pub limits: Vec<Limit>,
    /// `RateLimit-Policy` header value.
    pub policy_header: Arc<str>,
    /// `gatehouse_rate_limited_total{route}`.
    pub limited: IntCounter,
}

impl RouteLimits {
    /// Builds the route's limits and their policy header.
    pub fn new(route: &str, limits: Vec<Limit>, limited: IntCounter) -> RouteLimits {
        let policy_header = limits
            .iter()
            .map(|l| {
                let window = (l.bucket.burst * l.bucket.interval_us)
                    .div_ceil(1_000_000)
                    .max(1);
                format!("\"{}\";q={};w={window}", l.name, l.bucket.burst)
            })
            .collect::<Vec<_>>()
            .join(", ");
        RouteLimits {
            route: route.to_string(),
            limits,
            policy_header: policy_header.into(),
            limited,
        }
    }

    /// The limits that run before or after authentication.
    fn stage(&self, after_auth: bool) -> impl Iterator<Item = (usize, &Limit)> {
        self.limits
            .iter()
            .enumerate()
            .filter(move |(_, l)| l.key.needs_identity() == after_auth)
    }
}

/// What identifies the request for keying.
pub struct RequestKeys<'a> {
    /// Client IP.
    pub ip: IpAddr,
    /// Verified user id, if any.
    pub user: Option<&'a str>,
    /// The API key's consumer, if the request presented one.
    pub consumer: Option<&'a str>,
    /// The request (for header keys).
    pub req: &'a RequestHeader,
}

/// Where a decision came from, for `gatehouse_rate_limit_store_total{result}`.
#[derive(Clone)]
pub struct StoreCounters {
    /// The shared store answered.
    pub ok: IntCounter,
    /// A refusal was remembered locally, no round trip.
    pub cached_deny: IntCounter,
    /// The shared store failed: the local store decided.
    pub error_local: IntCounter,
    /// The shared store failed: the request was let through.
    pub error_allow: IntCounter,
    /// The shared store failed: the request was refused.
    pub error_deny: IntCounter,
}

/// What to do when the shared store fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Decide with the local store.
    Local,
    /// Let the request through.
    Allow,
    /// Refuse with 503.
    Deny,
}

/// Why a request may not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Over a limit: 429 with these headers.
    Limited(LimitHeaders),
    /// The shared store failed and `on_error: deny`.
    StoreUnavailable,
}

/// Headers of a limited route's response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LimitHeaders {
    /// `RateLimit-Policy`.
    pub policy: Arc<str>,
    /// `RateLimit`: remaining tokens and seconds until full, per policy.
    pub ratelimit: String,
    /// `Retry-After` seconds, when refused.
    pub retry_after: u64,
}

/// The limiter: stores shared by every route of a config.
pub struct Limiter {
    local: LocalStore,
    shared: Option<Arc<RedisStore>>,
    fallback: Fallback,
    epoch: Instant,
    seed: ahash::RandomState,
    counters: StoreCounters,
}

impl Limiter {
    /// A limiter over a local table of `max_keys` buckets and, optionally, a
    /// shared store with its failure policy.
    pub fn new(
        max_keys: usize,
        shared: Option<RedisStore>,
        fallback: Fallback,
        counters: StoreCounters,
    ) -> Limiter {
        Limiter {
            local: LocalStore::new(max_keys),
            shared: shared.map(Arc::new),
            fallback,
            epoch: Instant::now(),
            seed: ahash::RandomState::new(),
            counters,
        }
    }

    /// Starts the shared store's connection, if there is one.
    pub fn start(&self) {
        if let Some(s) = &self.shared {
            s.start();
        }
    }

    /// `off` (local only), `ok` or `error`, for readiness.
    pub fn store_health(&self) -> &'static str {
        match self.shared.as_ref().map(|s| s.healthy()) {
            None => "off",
            Some(Some(true)) => "ok",
            Some(_) => "error",
        }
    }

    /// Runs the route's limits of one stage (before or after
    /// authentication); `headers` collects the RateLimit header values.
    pub async fn check(
        &self,
        route: &RouteLimits,
        after_auth: bool,
        keys: &RequestKeys<'_>,
        headers: &mut LimitHeaders,
    ) -> Result<(), Refusal> {
        for (index, limit) in route.stage(after_auth) {
            let key = bucket_key(&route.route, index, &limit.key, keys);
            let hash = self.seed.hash_one(&key);
            let (decision, until_full_us) = self.decide(&key, hash, limit.bucket).await?;
            headers.policy = Arc::clone(&route.policy_header);
            if !headers.ratelimit.is_empty() {
                headers.ratelimit.push_str(", ");
            }
            let reset = until_full_us.div_ceil(1_000_000);
            match decision {
                Decision::Allow { remaining, .. } => {
                    let _ = write!(
                        headers.ratelimit,
                        "\"{}\";r={remaining};t={reset}",
                        limit.name
                    );
                }
                Decision::Deny { retry_after_us } => {
                    let _ = write!(headers.ratelimit, "\"{}\";r=0;t={reset}", limit.name);
                    headers.retry_after = retry_after_us.div_ceil(1_000_000).max(1);
                    route.limited.inc();
                    return Err(Refusal::Limited(headers.clone()));
                }
            }
        }
        Ok(())
    }

    async fn decide(
        &self,
        key: &str,
        hash: u64,
        bucket: Bucket,
    ) -> Result<(Decision, u64), Refusal> {
        let Some(shared) = &self.shared else {
            return Ok(self.decide_locally(hash, bucket));
        };
        match shared.decide(key, hash, bucket).await {
            Answer::Decided(d, until_full) => {
                self.counters.ok.inc();
                Ok((d, until_full))
            }
            Answer::CachedDeny(retry_after_us) => {
                self.counters.cached_deny.inc();
                Ok((Decision::Deny { retry_after_us }, retry_after_us))
            }
            Answer::Failed => match self.fallback {
                Fallback::Local => {
                    self.counters.error_local.inc();
                    Ok(self.decide_locally(hash, bucket))
                }
                Fallback::Allow => {
                    self.counters.error_allow.inc();
                    Ok((
                        Decision::Allow {
                            tat: 0,
                            remaining: 0,
                        },
                        0,
                    ))
                }
                Fallback::Deny => {
                    self.counters.error_deny.inc();
                    Err(Refusal::StoreUnavailable)
                }
            },
        }
    }

    fn decide_locally(&self, hash: u64, bucket: Bucket) -> (Decision, u64) {
        let now = self.epoch.elapsed().as_micros() as u64;
        let d = self.local.decide(hash, bucket, now);
        let until_full = match d {
            Decision::Allow { tat, .. } => bucket.until_full(tat, now),
            Decision::Deny { retry_after_us } => {
                retry_after_us + bucket.interval_us * (bucket.burst - 1)
            }
        };
        (d, until_full)
    }
}

/// The bucket's key: `gatehouse:rl:{route:index:value}` (hash-tagged as a
/// whole, so each bucket picks its own cluster node).
fn bucket_key(route: &str, index: usize, key: &LimitKey, k: &RequestKeys) -> String {
    let mut s = String::with_capacity(64);
    let _ = write!(s, "gatehouse:rl:{{{route}:{index}:");
    match key {
        LimitKey::Ip => {
            let _ = write!(s, "ip={}", k.ip);
        }
        LimitKey::User => match k.user {
            Some(u) => {
                let _ = write!(s, "user={u}");
            }
            None => {
                let _ = write!(s, "ip={}", k.ip);
            }
        },
        LimitKey::Consumer => match k.consumer {
            Some(c) => {
                let _ = write!(s, "consumer={c}");
            }
            None => {
                let _ = write!(s, "ip={}", k.ip);
            }
        },
        LimitKey::Route => s.push_str("route"),
        LimitKey::Header(name) => match k.req.headers.get(name) {
            Some(v) => {
                s.push_str("h=");
                s.push_str(&String::from_utf8_lossy(v.as_bytes()));
            }
            None => s.push_str("missing"),
        },
    }
    s.push('}');
    s
}

/// Parses a rate: `N/s`, `N/m` or `N/h` (N a positive whole number).
/// Returns microseconds per token and N.
pub fn parse_rate(text: &str) -> Option<(u64, u64)> {
    let (n, unit) = text.trim().split_once('/')?;
    let n: u64 = n.trim().parse().ok().filter(|n| *n > 0)?;
    let unit_us: u64 = match unit.trim() {
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        _ => return None,
    };
    Some(((unit_us / n).max(1), n))
}

/// The policy name of a route's limit.
pub fn limit_name(route: &str, key: &LimitKey) -> String {
    format!("{route}-{}", key.label())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("100/s"), Some((10_000, 100)));
        assert_eq!(parse_rate("6/m"), Some((10_000_000, 6)));
        assert_eq!(parse_rate("1/h"), Some((3_600_000_000, 1)));
        for bad in ["0/s", "x/s", "10/d", "10", "-1/s"] {
            assert_eq!(parse_rate(bad), None, "{bad}");
        }
    }

    #[test]
    fn keys() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-api-key", "k1").unwrap();
        let k = RequestKeys {
            ip: "10.0.0.1".parse().unwrap(),
            user: None,
            consumer: None,
            req: &req,
        };
        let h = LimitKey::parse("header:X-Api-Key").unwrap();
        assert_eq!(
            bucket_key("api", 0, &LimitKey::User, &k),
            "gatehouse:rl:{api:0:ip=10.0.0.1}"
        );
        assert_eq!(bucket_key("api", 1, &h, &k), "gatehouse:rl:{api:1:h=k1}");
        assert_eq!(
            bucket_key("api", 2, &LimitKey::Route, &k),
            "gatehouse:rl:{api:2:route}"
        );
        let none = RequestHeader::build("GET", b"/", None).unwrap();
        let k2 = RequestKeys {
            user: Some("u7"),
            req: &none,
            ..k
        };
        assert_eq!(
            bucket_key("api", 1, &h, &k2),
            "gatehouse:rl:{api:1:missing}"
        );
        assert_eq!(
            bucket_key("api", 0, &LimitKey::User, &k2),
            "gatehouse:rl:{api:0:user=u7}"
        );
    }

    #[test]
    fn policy_header() {
        let limited = IntCounter::new("x", "x").unwrap();
        let limits = vec![Limit {
            key: LimitKey::User,
            bucket: Bucket {
                interval_us: 10_000,
                burst: 50,
            },
            name: limit_name("api", &LimitKey::User),
        }];
        let r = RouteLimits::new("api", limits, limited);
        assert_eq!(&*r.policy_header, "\"api-user\";q=50;w=1");
    }
}
