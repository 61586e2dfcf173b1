//! An upstream pool: its backends, their health, and backend selection.
//!
//! Selection is lock-free: health and in-flight counts are atomics on each
//! backend, round-robin positions are one atomic counter, and the weighted
//! schedule and the hash ring are built once when the config compiles.
//!
//! A backend is healthy when its last active check passed and no failed
//! connect has ejected it since. Passive ejection is bounded the way Envoy
//! bounds outlier detection: it never takes the last healthy backend, nor
//! more than `max_ejected_percent` of the pool, and a connect timeout (weak
//! evidence: a full listen backlog drops SYNs of a healthy server) ejects
//! only after `eject_after_failures` in a row within the window. When no
//! backend is healthy the pool still picks one ("panic", as Envoy and nginx
//! do): the checks may be wrong, and an attempt may succeed where a 503
//! certainly fails.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ahash::AHashMap;
use arc_swap::{ArcSwap, Guard};
use pingora_ketama::{Bucket, Continuum};
use prometheus::IntCounter;

use super::backend::{Backend, BackendMetrics};
use super::breaker::BreakerPolicy;
use super::connect_failure::ConnectFailure;
use super::discovery::Discovery;
use super::retry::{RetryBudget, RetryPermit, RetryPolicy};

use crate::config::file::Balance;

/// Which backends a request has already tried (by index), so a retry goes
/// elsewhere. After the pool's members change (DNS), an index may name
/// another backend: that only makes a retry less picky.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tried(u128);

impl Tried {
    /// Marks backend `i` as tried (pools larger than 128 reuse bits, which
    /// only makes a retry less picky).
    pub fn add(&mut self, i: usize) {
        self.0 |= 1 << (i % 128);
    }

    fn contains(self, i: usize) -> bool {
        self.0 & (1 << (i % 128)) != 0
    }
}

/// When failed connects may take a backend out of its pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EjectionPolicy {
    /// At most this share of the pool's backends is ejected at once.
    pub max_ejected_percent: u32,
    /// Connect timeouts in a row, within `window`, that eject.
    pub after_timeouts: u32,
    /// How close together those timeouts must be.
    pub window: Duration,
}

impl Default for EjectionPolicy {
    fn default() -> Self {
        EjectionPolicy {
            max_ejected_percent: 50,
            after_timeouts: 3,
            window: Duration::from_secs(10),
        }
    }
}

/// How a backend was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// A healthy backend this request had not tried.
    Fresh,
    /// A healthy backend tried already: every healthy one was.
    Again,
    /// No backend is healthy: tried anyway.
    Panic,
}

/// Timeouts and retry policy for one pool.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Per connect attempt.
    pub connect_timeout: Duration,
    /// Longest silence while reading from the backend.
    pub read_timeout: Duration,
    /// What is retried, how often, with what backoff and budget.
    pub retry: RetryPolicy,
    /// When failed connects eject a backend.
    pub ejection: EjectionPolicy,
    /// TLS to backends.
    pub tls: bool,
    /// SNI for TLS.
    pub sni: String,
    /// What `hash` balancing hashes.
    pub hash_key: HashKey,
    /// HTTP/2 to the backends.
    pub http2: bool,
    /// CA and client certificate for TLS to the backends.
    pub tls_identity: UpstreamTls,
    /// Requests the pool may have in flight (`usize::MAX`: no limit).
    pub max_in_flight: usize,
    /// Requests each backend may have in flight.
    pub max_in_flight_per_backend: usize,
    /// The backends' circuit breaker, if configured.
    pub breaker: Option<BreakerPolicy>,
}

/// Why [`Pool::select`] gave no backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoPick {
    /// The pool has no backends.
    Empty,
    /// The pool, or every backend, is at its `max_in_flight`: shed.
    Full,
    /// Every backend's circuit breaker is open.
    Open,
}

/// What TLS to the backends trusts and presents.
#[derive(Clone, Default)]
pub struct UpstreamTls {
    /// Roots the backends' certificates must chain to (`None`: defaults).
    pub ca: Option<Arc<Box<[pingora_core::tls::x509::X509]>>>,
    /// Client certificate for mutual TLS.
    pub client_cert: Option<Arc<pingora_core::utils::tls::CertKey>>,
    /// Verify certificates and names.
    pub verify: bool,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("ca", &self.ca.as_ref().map(|c| c.len()))
            .field("client_cert", &self.client_cert.is_some())
            .field("verify", &self.verify)
            .finish()
    }
}

/// The request property a `hash` pool keeps sticky.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// Client IP.
    Ip,
    /// Authenticated user id (client IP for anonymous requests).
    User,
    /// Value of a request header.
    Header(http::HeaderName),
    /// Value of a cookie.
    Cookie(String),
}

impl HashKey {
    /// Parses `ip`, `user`, `header:NAME` or `cookie:NAME`.
    pub fn parse(text: &str) -> Option<HashKey> {
        match text.split_once(':') {
            None if text == "ip" => Some(HashKey::Ip),
            None if text == "user" => Some(HashKey::User),
            Some(("header", name)) => http::HeaderName::try_from(name).ok().map(HashKey::Header),
            Some(("cookie", name)) if !name.is_empty() => Some(HashKey::Cookie(name.to_string())),
            _ => None,
        }
    }
}

/// Selection strategy with what it precomputes.
#[derive(Debug)]
enum Selector {
    RoundRobin,
    /// Smooth weighted round-robin schedule of backend indexes.
    Weighted(Box<[u16]>),
    LeastConn,
    Hash(Box<HashRing>),
}

/// Consistent-hash ring plus the map from ring address to backend index.
struct HashRing {
    ring: Continuum,
    index: AHashMap<SocketAddr, usize>,
    /// Points on the ring (ketama puts 160 per unit of weight): a walk this
    /// long has met every backend.
    points: usize,
}

impl std::fmt::Debug for HashRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashRing")
    }
}

/// The backends of a pool at one moment, with the selection structures
/// built over them; replaced whole when DNS changes the set.
#[derive(Debug)]
pub struct Members {
    /// The backends, in config (then resolution) order.
    pub backends: Box<[Arc<Backend>]>,
    selector: Selector,
}

impl Members {
    fn new(backends: Box<[Arc<Backend>]>, balance: Balance) -> Members {
        let selector = match balance {
            Balance::RoundRobin => Selector::RoundRobin,
            Balance::Weighted => Selector::Weighted(weighted_schedule(&backends)),
            Balance::LeastConn => Selector::LeastConn,
            Balance::Hash => {
                let buckets: Vec<Bucket> = backends
                    .iter()
                    .map(|b| Bucket::new(b.addr, b.weight))
                    .collect();
                let index = backends
                    .iter()
                    .enumerate()
                    .map(|(i, b)| (b.addr, i))
                    .collect();
                let points = backends.iter().map(|b| b.weight as usize * 160).sum();
                Selector::Hash(Box::new(HashRing {
                    ring: Continuum::new(&buckets),
                    index,
                    points,
                }))
            }
        };
        Members { backends, selector }
    }
}

/// An upstream pool.
#[derive(Debug)]
pub struct Pool {
    /// Name from the route file; the `upstream` label.
    pub name: String,
    /// Timeouts, retries, TLS.
    pub settings: PoolSettings,
    /// Balance as configured (for the status page).
    pub balance: Balance,
    /// `gatehouse_upstream_panic_total` of this pool.
    pub panics: IntCounter,
    /// `gatehouse_upstream_shed_total` of this pool.
    pub shed: IntCounter,
    /// The backend names re-resolved in DNS, when the pool has any.
    pub discovery: Option<Discovery>,
    members: ArcSwap<Members>,
    metrics: BackendMetrics,
    /// Requests in flight on the pool's backends together.
    in_flight: AtomicUsize,
    /// Retries in flight, held to `settings.retry.budget_percent`.
    retry_budget: RetryBudget,
    cursor: AtomicUsize,
    /// Serialises ejection decisions and membership changes, so two at
    /// once cannot both pass the floor.
    ejecting: Mutex<()>,
    /// Time zero of the backends' timeout streaks.
    epoch: Instant,
}

/// What a change of membership did.
#[derive(Debug, Default)]
pub struct MemberChange {
    /// Backends that joined (on probation until their first passing check).
    pub added: Vec<Arc<Backend>>,
    /// Backends that left (drained: requests in flight finish).
    pub removed: Vec<Arc<Backend>>,
}

/// A backend picked for a request: keeps its in-flight count up until dropped.
#[derive(Debug)]
pub struct Lease {
    pool: Arc<Pool>,
    backend: Arc<Backend>,
    index: usize,
}

impl Lease {
    /// Index of the backend among its pool's members when it was picked.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The backend.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The pool it belongs to.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.backend.in_flight.fetch_sub(1, Relaxed);
        self.pool.in_flight.fetch_sub(1, Relaxed);
    }
}

impl Pool {
    /// Builds a pool; every backend starts healthy until a check says
    /// otherwise. Its backends' series live in `metrics`; `panics` counts
    /// requests sent while no backend was healthy, `shed` those refused at
    /// `max_in_flight`.
    pub fn new(
        name: String,
        backends: Vec<(SocketAddr, u32)>,
        balance: Balance,
        settings: PoolSettings,
        metrics: BackendMetrics,
        [panics, shed]: [IntCounter; 2],
    ) -> Pool {
        let backends = backends
            .into_iter()
            .map(|(addr, weight)| {
                Arc::new(Backend::new(
                    addr,
                    weight,
                    &metrics,
                    settings.breaker,
                    false,
                ))
            })
            .collect();
        Pool {
            name,
            members: ArcSwap::from_pointee(Members::new(backends, balance)),
            settings,
            balance,
            panics,
            shed,
            discovery: None,
            metrics,
            in_flight: AtomicUsize::new(0),
            retry_budget: RetryBudget::default(),
            cursor: AtomicUsize::new(0),
            ejecting: Mutex::new(()),
            epoch: Instant::now(),
        }
    }

    /// The pool with its DNS names to re-resolve.
    pub fn with_discovery(mut self, discovery: Discovery) -> Pool {
        self.discovery = Some(discovery);
        self
    }

    /// The backends now.
    pub fn members(&self) -> Guard<Arc<Members>> {
        self.members.load()
    }

    /// Makes `wanted` the pool's backends: those it has already stay as
    /// they are (health, breaker, requests in flight), new ones join on
    /// probation (picked once a check passed, or in panic mode), and the
    /// others leave: no new request goes to them, those in flight finish.
    pub fn set_members(&self, wanted: &[(SocketAddr, u32)]) -> MemberChange {
        let Ok(_one_at_a_time) = self.ejecting.lock() else {
            return MemberChange::default();
        };
        let current = self.members.load();
        let mut change = MemberChange::default();
        let backends: Box<[Arc<Backend>]> = wanted
            .iter()
            .map(
                |&(addr, weight)| match current.backends.iter().find(|b| b.addr == addr) {
                    Some(b) => Arc::clone(b),
                    None => {
                        let b = Arc::new(Backend::new(
                            addr,
                            weight,
                            &self.metrics,
                            self.settings.breaker,
                            true,
                        ));
                        change.added.push(Arc::clone(&b));
                        b
                    }
                },
            )
            .collect();
        for b in current.backends.iter() {
            if !backends.iter().any(|k| Arc::ptr_eq(k, b)) {
                b.retire(&self.metrics);
                change.removed.push(Arc::clone(b));
            }
        }
        if !change.added.is_empty() || !change.removed.is_empty() {
            self.members
                .store(Arc::new(Members::new(backends, self.balance)));
        }
        change
    }

    /// A permit for one more retry, if the pool's retry budget has room.
    pub fn retry_permit(&self) -> Option<RetryPermit> {
        let percent = self.settings.retry.budget_percent;
        self.retry_budget
            .try_acquire(percent, self.in_flight.load(Relaxed))
    }

    /// Picks a backend for an attempt; `key` feeds `hash` balancing.
    /// A healthy backend not in `tried` first; else a healthy one again;
    /// else, with none healthy, any (untried first). Backends at
    /// `max_in_flight_per_backend` are skipped; with the pool at
    /// `max_in_flight`, or every backend at its limit, the request is shed
    /// ([`NoPick::Full`], counted), never queued.
    pub fn select(self: &Arc<Self>, key: &[u8], tried: Tried) -> Result<(Lease, Pick), NoPick> {
        let m = self.members.load();
        if m.backends.is_empty() {
            return Err(NoPick::Empty);
        }
        let s = &self.settings;
        if self.in_flight.fetch_add(1, Relaxed) >= s.max_in_flight {
            self.in_flight.fetch_sub(1, Relaxed);
            self.shed.inc();
            return Err(NoPick::Full);
        }
        let room = |b: &Backend| b.in_flight() < s.max_in_flight_per_backend && b.breaker_allows();
        let fresh = || {
            self.find(&m, key, |b, i| {
                b.is_healthy() && !tried.contains(i) && room(b)
            })
        };
        let again = || self.find(&m, key, |b, _| b.is_healthy() && room(b));
        let panic = || {
            self.find(&m, key, |b, i| !tried.contains(i) && room(b))
                .or_else(|| self.find(&m, key, |b, _| room(b)))
        };
        let picked = match fresh() {
            Some(i) => Some((i, Pick::Fresh)),
            None => match again() {
                Some(i) => Some((i, Pick::Again)),
                None => panic().map(|i| (i, Pick::Panic)),
            },
        };
        let Some((index, pick)) = picked else {
            self.in_flight.fetch_sub(1, Relaxed);
            if m.backends.iter().all(|b| !b.breaker_allows()) {
                return Err(NoPick::Open);
            }
            self.shed.inc();
            return Err(NoPick::Full);
        };
        let b = &m.backends[index];
        b.in_flight.fetch_add(1, Relaxed);
        if let Some(breaker) = &b.breaker {
            breaker.picked();
        }
        let lease = Lease {
            pool: Arc::clone(self),
            backend: Arc::clone(b),
            index,
        };
        Ok((lease, pick))
    }

    /// The backend the pool's strategy picks among those `usable` accepts.
    fn find(
        &self,
        m: &Members,
        key: &[u8],
        usable: impl Fn(&Backend, usize) -> bool,
    ) -> Option<usize> {
        let usable = |i: usize| usable(&m.backends[i], i);
        let n = m.backends.len();
        match &m.selector {
            Selector::RoundRobin => {
                let turn = self.cursor.fetch_add(1, Relaxed) % n;
                if usable(turn) {
                    return Some(turn);
                }
                spread(m, n, usable, |_| 1)
            }
            Selector::Weighted(schedule) => {
                let turn = schedule[self.cursor.fetch_add(1, Relaxed) % schedule.len()] as usize;
                if usable(turn) {
                    return Some(turn);
                }
                spread(m, n, usable, |b| u64::from(b.weight))
            }
            Selector::LeastConn => {
                let start = self.cursor.fetch_add(1, Relaxed);
                (0..n)
                    .map(|k| (start + k) % n)
                    .filter(|&i| usable(i))
                    .min_by_key(|&i| {
                        let b = &m.backends[i];
                        (b.in_flight() as u64 * 1_000_000) / b.weight as u64
                    })
            }
            Selector::Hash(h) => h
                .ring
                .node_iter(key)
                .take(h.points)
                .filter_map(|addr| h.index.get(addr).copied())
                .find(|&i| usable(i)),
        }
    }

    /// Weighs a failed connect to backend `b`; returns whether it ejected
    /// the backend. Local failures never count against a backend.
    pub fn connect_failed(&self, b: &Backend, failure: ConnectFailure) -> bool {
        let policy = &self.settings.ejection;
        match failure {
            ConnectFailure::Local(_) => return false,
            ConnectFailure::Refused => {}
            ConnectFailure::Weak => {
                let now = self.epoch.elapsed().as_millis() as u64;
                let window = policy.window.as_millis() as u64;
                if b.timeouts.add(now, window) < policy.after_timeouts {
                    return false;
                }
            }
        }
        let Ok(_one_at_a_time) = self.ejecting.lock() else {
            return false;
        };
        if !b.is_healthy() || b.is_retired() {
            return false;
        }
        let m = self.members.load();
        let healthy = m.backends.iter().filter(|b| b.is_healthy()).count();
        let ejected = m.backends.iter().filter(|b| b.is_ejected()).count();
        let allowed = (ejected + 1) * 100 <= policy.max_ejected_percent as usize * m.backends.len();
        if healthy < 2 || !allowed {
            return false;
        }
        b.ejected.store(true, Relaxed);
        b.gauge.set(0);
        true
    }

    /// Records an active check's verdict on backend `b` (a pass also ends
    /// an ejection); returns whether the backend's health changed.
    pub fn set_health(&self, b: &Backend, passed: bool) -> bool {
        let was = b.is_healthy();
        b.check_passed.store(passed, Relaxed);
        if passed {
            b.ejected.store(false, Relaxed);
            b.timeouts.clear();
        }
        let changed = was != passed;
        if changed {
            b.gauge.set(passed as i64);
        }
        changed
    }

    /// Healthy and total backend counts.
    pub fn health_counts(&self) -> (usize, usize) {
        let m = self.members.load();
        let healthy = m.backends.iter().filter(|b| b.is_healthy()).count();
        (healthy, m.backends.len())
    }
}

/// The backend that takes the turn of one that cannot: drawn at random
/// among the usable ones in proportion to `weight`, so the skipped share
/// spreads over all of them (taking the next in line would give the
/// skipped backend's successor a double share).
fn spread(
    m: &Members,
    n: usize,
    usable: impl Fn(usize) -> bool,
    weight: impl Fn(&Backend) -> u64,
) -> Option<usize> {
    let total: u64 = (0..n)
        .filter(|&i| usable(i))
        .map(|i| weight(&m.backends[i]))
        .sum();
    if total == 0 {
        return None;
    }
    let mut draw = fastrand::u64(..total);
    (0..n).filter(|&i| usable(i)).find(|&i| {
        let w = weight(&m.backends[i]);
        if draw < w {
            return true;
        }
        draw -= w;
        false
    })
}

/// Smooth weighted round-robin (as nginx does it): for weights 5,1,1 the
/// schedule is a a b a c a a, never five a's in a row.
fn weighted_schedule(backends: &[Arc<Backend>]) -> Box<[u16]> {
    let gcd = backends.iter().fold(0u32, |g, b| gcd(g, b.weight));
    let weights: Vec<i64> = backends
        .iter()
        .map(|b| (b.weight / gcd.max(1)) as i64)
        .collect();
    let total: i64 = weights.iter().sum();
    let len = total.clamp(1, 10_000) as usize;
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += w;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u16);
    }
    out.into_boxed_slice()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn pool(balance: Balance, weights: &[u32]) -> Arc<Pool> {
        limited(balance, weights, usize::MAX, usize::MAX)
    }

    fn limited(balance: Balance, weights: &[u32], total: usize, each: usize) -> Arc<Pool> {
        let backends = weights
            .iter()
            .enumerate()
            .map(|(i, w)| (format!("127.0.0.1:{}", 9000 + i).parse().unwrap(), *w))
            .collect();
        let settings = PoolSettings {
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            retry: RetryPolicy::connect_failures(1),
            ejection: EjectionPolicy::default(),
            tls: false,
            sni: String::new(),
            hash_key: HashKey::Ip,
            http2: false,
            tls_identity: UpstreamTls::default(),
            max_in_flight: total,
            max_in_flight_per_backend: each,
            breaker: None,
        };
        let counter = || IntCounter::new("c", "c").unwrap();
        Arc::new(Pool::new(
            "p".into(),
            backends,
            balance,
            settings,
            BackendMetrics::of("p", &Metrics::new()),
            [counter(), counter()],
        ))
    }

    fn picks(p: &Arc<Pool>, n: usize, key: &[u8]) -> Vec<usize> {
        (0..n)
            .map(|_| p.select(key, Tried::default()).unwrap().0.index())
            .collect()
    }

    #[test]
    fn in_flight_limits_shed_instead_of_queueing() {
        let p = limited(Balance::RoundRobin, &[1, 1, 1], 2, usize::MAX);
        let a = p.select(b"", Tried::default()).unwrap();
        let _b = p.select(b"", Tried::default()).unwrap();
        assert_eq!(p.select(b"", Tried::default()).unwrap_err(), NoPick::Full);
        drop(a);
        assert!(p.select(b"", Tried::default()).is_ok());
        assert_eq!(p.shed.get(), 1);

        // Per backend: a full backend is skipped; all full sheds.
        let p = limited(Balance::RoundRobin, &[1, 1], usize::MAX, 1);
        let first = p.select(b"", Tried::default()).unwrap().0;
        let second = p.select(b"", Tried::default()).unwrap().0;
        assert_ne!(first.index(), second.index());
        assert_eq!(p.select(b"", Tried::default()).unwrap_err(), NoPick::Full);
        drop(second);
        let again = p.select(b"", Tried::default()).unwrap().0;
        assert_ne!(again.index(), first.index());
        // Unhealthy backends (panic mode) obey the limit too.
        p.set_health(&p.members().backends[0], false);
        p.set_health(&p.members().backends[1], false);
        assert_eq!(p.select(b"", Tried::default()).unwrap_err(), NoPick::Full);
    }

    #[test]
    fn round_robin_skips_unhealthy() {
        let p = pool(Balance::RoundRobin, &[1, 5, 1]);
        assert_eq!(picks(&p, 6, b""), [0, 1, 2, 0, 1, 2]);
        p.set_health(&p.members().backends[1], false);
        let after = picks(&p, 6, b"");
        assert!(!after.contains(&1) && after.contains(&0) && after.contains(&2));
    }

    #[test]
    fn a_skipped_backends_turns_spread_over_the_others() {
        for balance in [Balance::RoundRobin, Balance::Weighted] {
            let p = pool(balance, &[1, 1, 1, 1]);
            p.set_health(&p.members().backends[2], false);
            let mut counts = [0usize; 4];
            for i in picks(&p, 4000, b"") {
                counts[i] += 1;
            }
            assert_eq!(counts[2], 0);
            // 1333 each when spread; the next in line alone would get 2000.
            for i in [0, 1, 3] {
                assert!((1150..1550).contains(&counts[i]), "{balance:?}: {counts:?}");
            }
        }
    }

    #[test]
    fn weighted_is_smooth_and_proportional() {
        let p = pool(Balance::Weighted, &[5, 1, 1]);
        assert_eq!(picks(&p, 7, b""), [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn least_conn_prefers_idle_backends() {
        let p = pool(Balance::LeastConn, &[1, 1, 1]);
        let a = p.select(b"", Tried::default()).unwrap().0;
        let b = p.select(b"", Tried::default()).unwrap().0;
        assert_ne!(a.index(), b.index());
        let c = p.select(b"", Tried::default()).unwrap().0;
        let busy = [a.index(), b.index()];
        assert!(!busy.contains(&c.index()));
        drop(b);
        let d = p.select(b"", Tried::default()).unwrap().0;
        assert_eq!(d.index(), busy[1]);
    }

    #[test]
    fn hash_is_sticky_and_fails_over() {
        let p = pool(Balance::Hash, &[1, 1, 1]);
        let first = picks(&p, 5, b"user-42");
        assert!(first.iter().all(|&i| i == first[0]));
        p.set_health(&p.members().backends[first[0]], false);
        let second = picks(&p, 5, b"user-42");
        assert!(second.iter().all(|&i| i == second[0] && i != first[0]));
    }

    #[test]
    fn recent_error_rate_covers_the_last_window() {
        let p = pool(Balance::RoundRobin, &[1]);
        let m = p.members();
        let b = &m.backends[0];
        for i in 0..10 {
            b.record(i < 5);
        }
        b.roll_window();
        assert_eq!(b.recent_error_rate(), 0.5);
        for _ in 0..4 {
            b.record(false);
        }
        b.roll_window();
        assert_eq!(b.recent_error_rate(), 0.0);
        b.roll_window();
        assert_eq!(b.recent_error_rate(), 0.0);
    }

    #[test]
    fn retries_prefer_untried_then_the_same_then_panic() {
        let p = pool(Balance::RoundRobin, &[1, 1]);
        let mut tried = Tried::default();
        tried.add(0);
        let (lease, pick) = p.select(b"", tried).unwrap();
        assert_eq!((lease.index(), pick), (1, Pick::Fresh));
        tried.add(1);
        assert_eq!(p.select(b"", tried).unwrap().1, Pick::Again);
        p.set_health(&p.members().backends[0], false);
        p.set_health(&p.members().backends[1], false);
        assert_eq!(p.health_counts(), (0, 2));
        let (lease, pick) = p.select(b"", Tried::default()).unwrap();
        assert_eq!(pick, Pick::Panic);
        let mut tried = Tried::default();
        tried.add(lease.index());
        let (other, pick) = p.select(b"", tried).unwrap();
        assert_eq!(pick, Pick::Panic);
        assert_ne!(other.index(), lease.index());
    }

    #[test]
    fn ejection_never_takes_the_last_healthy_backend() {
        let p = pool(Balance::RoundRobin, &[1]);
        assert!(!p.connect_failed(&p.members().backends[0], ConnectFailure::Refused));
        assert!(p.members().backends[0].is_healthy());
        let p = pool(Balance::RoundRobin, &[1, 1]);
        assert!(p.connect_failed(&p.members().backends[0], ConnectFailure::Refused));
        assert!(!p.connect_failed(&p.members().backends[1], ConnectFailure::Refused));
        assert_eq!(p.health_counts(), (1, 2));
        p.set_health(&p.members().backends[0], true);
        assert_eq!(p.health_counts(), (2, 2));
    }

    #[test]
    fn ejection_stops_at_max_ejected_percent() {
        let p = pool(Balance::RoundRobin, &[1, 1, 1, 1, 1]);
        let ejected = (0..5)
            .filter(|&i| p.connect_failed(&p.members().backends[i], ConnectFailure::Refused))
            .count();
        assert_eq!(ejected, 2, "50 % of 5 backends is 2");
        // An active check that fails still takes a backend down.
        p.set_health(&p.members().backends[4], false);
        assert_eq!(p.health_counts(), (2, 5));
    }

    #[test]
    fn timeouts_eject_only_in_a_row_and_local_errors_never() {
        let p = pool(Balance::RoundRobin, &[1, 1]);
        for _ in 0..10 {
            assert!(!p.connect_failed(&p.members().backends[0], ConnectFailure::Local(0)));
        }
        assert!(!p.connect_failed(&p.members().backends[0], ConnectFailure::Weak));
        assert!(!p.connect_failed(&p.members().backends[0], ConnectFailure::Weak));
        p.members().backends[0].reached();
        assert!(!p.connect_failed(&p.members().backends[0], ConnectFailure::Weak));
        assert!(!p.connect_failed(&p.members().backends[0], ConnectFailure::Weak));
        assert!(
            p.connect_failed(&p.members().backends[0], ConnectFailure::Weak),
            "third in a row"
        );
    }
}
