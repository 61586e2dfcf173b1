//! An upstream pool: its backends, their health, and backend selection.
//!
//! Selection is lock-free: health and in-flight counts are atomics on each
//! backend, round-robin positions are one atomic counter, and the weighted
//! schedule and the hash ring are built once when the config compiles.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use ahash::AHashMap;
use pingora_ketama::{Bucket, Continuum};
use prometheus::IntGauge;

use crate::config::file::Balance;

/// Which backends a request has already tried (by index), so a retry goes elsewhere.
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

/// One backend server of a pool.
#[derive(Debug)]
pub struct Backend {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `addr` as text: the `backend` label and the status page key.
    pub label: String,
    /// Relative share for `weighted` and `least_conn`.
    pub weight: u32,
    /// Up or down, as the last active check or connect failure said.
    healthy: AtomicBool,
    /// Requests now being proxied to it (for `least_conn`).
    in_flight: AtomicUsize,
    /// `gatehouse_upstream_backend_healthy{upstream, backend}`.
    gauge: IntGauge,
    /// Attempts sent to it, ever.
    attempts: AtomicU64,
    /// Attempts that failed (connect error, 5xx, timeout), ever.
    failures: AtomicU64,
    /// (attempts, failures) at the last health round, for the recent error rate.
    last_round: AtomicU64,
    /// Failure ratio over the last health-check interval, in parts per million.
    recent_error_ppm: AtomicU64,
}

impl Backend {
    /// Whether it may be picked.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Relaxed)
    }

    /// Requests now in flight to it.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Relaxed)
    }

    /// Records how one attempt on this backend ended.
    pub fn record(&self, failed: bool) {
        self.attempts.fetch_add(1, Relaxed);
        if failed {
            self.failures.fetch_add(1, Relaxed);
        }
    }

    /// Closes a measuring window (each health-check round): the error rate
    /// of the attempts since the previous one becomes the recent rate.
    pub fn roll_window(&self) {
        let (a, f) = (self.attempts.load(Relaxed), self.failures.load(Relaxed));
        let packed = (a & 0xFFFF_FFFF) << 32 | (f & 0xFFFF_FFFF);
        let prev = self.last_round.swap(packed, Relaxed);
        let (pa, pf) = (prev >> 32, prev & 0xFFFF_FFFF);
        let da = (a & 0xFFFF_FFFF).wrapping_sub(pa) & 0xFFFF_FFFF;
        let df = (f & 0xFFFF_FFFF).wrapping_sub(pf) & 0xFFFF_FFFF;
        let ppm = (df * 1_000_000).checked_div(da).unwrap_or(0);
        self.recent_error_ppm.store(ppm, Relaxed);
    }

    /// Failed share of the attempts in the last window (0.0–1.0).
    pub fn recent_error_rate(&self) -> f64 {
        self.recent_error_ppm.load(Relaxed) as f64 / 1e6
    }
}

/// Timeouts and retry policy for one pool.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Per connect attempt.
    pub connect_timeout: Duration,
    /// Longest silence while reading from the backend.
    pub read_timeout: Duration,
    /// Further attempts after a connect failure, each on another backend.
    pub retries: u32,
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

/// An upstream pool.
#[derive(Debug)]
pub struct Pool {
    /// Name from the route file; the `upstream` label.
    pub name: String,
    /// The backends, in config order.
    pub backends: Box<[Backend]>,
    /// Timeouts, retries, TLS.
    pub settings: PoolSettings,
    /// Balance as configured (for the status page).
    pub balance: Balance,
    selector: Selector,
    cursor: AtomicUsize,
}

/// A backend picked for a request: keeps its in-flight count up until dropped.
#[derive(Debug)]
pub struct Lease {
    pool: Arc<Pool>,
    index: usize,
}

impl Lease {
    /// Index of the backend in its pool.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The backend.
    pub fn backend(&self) -> &Backend {
        &self.pool.backends[self.index]
    }

    /// The pool it belongs to.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool.backends[self.index]
            .in_flight
            .fetch_sub(1, Relaxed);
    }
}

impl Pool {
    /// Builds a pool; every backend starts healthy until a check says otherwise.
    /// `gauge_for(label)` gives each backend its health gauge.
    pub fn new(
        name: String,
        backends: Vec<(SocketAddr, u32)>,
        balance: Balance,
        settings: PoolSettings,
        gauge_for: impl Fn(&str) -> IntGauge,
    ) -> Pool {
        let backends: Box<[Backend]> = backends
            .into_iter()
            .map(|(addr, weight)| {
                let label = addr.to_string();
                let gauge = gauge_for(&label);
                gauge.set(1);
                Backend {
                    addr,
                    label,
                    weight: weight.max(1),
                    healthy: AtomicBool::new(true),
                    in_flight: AtomicUsize::new(0),
                    gauge,
                    attempts: AtomicU64::new(0),
                    failures: AtomicU64::new(0),
                    last_round: AtomicU64::new(0),
                    recent_error_ppm: AtomicU64::new(0),
                }
            })
            .collect();
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
        Pool {
            name,
            backends,
            settings,
            balance,
            selector,
            cursor: AtomicUsize::new(0),
        }
    }

    /// Picks a healthy backend not in `tried`; `key` feeds `hash` balancing.
    /// `None` when no healthy backend is left.
    pub fn select(self: &Arc<Self>, key: &[u8], tried: Tried) -> Option<Lease> {
        let usable = |i: usize| self.backends[i].is_healthy() && !tried.contains(i);
        let n = self.backends.len();
        let index = match &self.selector {
            Selector::RoundRobin => {
                let start = self.cursor.fetch_add(1, Relaxed);
                (0..n).map(|k| (start + k) % n).find(|&i| usable(i))
            }
            Selector::Weighted(schedule) => {
                let start = self.cursor.fetch_add(1, Relaxed);
                let len = schedule.len();
                (0..len)
                    .map(|k| schedule[(start + k) % len] as usize)
                    .find(|&i| usable(i))
            }
            Selector::LeastConn => {
                let start = self.cursor.fetch_add(1, Relaxed);
                (0..n)
                    .map(|k| (start + k) % n)
                    .filter(|&i| usable(i))
                    .min_by_key(|&i| {
                        let b = &self.backends[i];
                        (b.in_flight() as u64 * 1_000_000) / b.weight as u64
                    })
            }
            Selector::Hash(h) => h
                .ring
                .node_iter(key)
                .take(h.points)
                .filter_map(|addr| h.index.get(addr).copied())
                .find(|&i| usable(i)),
        }?;
        self.backends[index].in_flight.fetch_add(1, Relaxed);
        Some(Lease {
            pool: Arc::clone(self),
            index,
        })
    }

    /// Records a health verdict for backend `i`; returns whether it changed.
    pub fn set_health(&self, i: usize, healthy: bool) -> bool {
        let b = &self.backends[i];
        let changed = b.healthy.swap(healthy, Relaxed) != healthy;
        if changed {
            b.gauge.set(healthy as i64);
        }
        changed
    }

    /// Healthy and total backend counts.
    pub fn health_counts(&self) -> (usize, usize) {
        let healthy = self.backends.iter().filter(|b| b.is_healthy()).count();
        (healthy, self.backends.len())
    }
}

/// Smooth weighted round-robin (as nginx does it): for weights 5,1,1 the
/// schedule is a a b a c a a, never five a's in a row.
fn weighted_schedule(backends: &[Backend]) -> Box<[u16]> {
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

    fn pool(balance: Balance, weights: &[u32]) -> Arc<Pool> {
        let backends = weights
            .iter()
            .enumerate()
            .map(|(i, w)| (format!("127.0.0.1:{}", 9000 + i).parse().unwrap(), *w))
            .collect();
        let settings = PoolSettings {
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            retries: 1,
            tls: false,
            sni: String::new(),
            hash_key: HashKey::Ip,
            http2: false,
            tls_identity: UpstreamTls::default(),
        };
        let gauge = |_: &str| IntGauge::new("g", "g").unwrap();
        Arc::new(Pool::new("p".into(), backends, balance, settings, gauge))
    }

    fn picks(p: &Arc<Pool>, n: usize, key: &[u8]) -> Vec<usize> {
        (0..n)
            .map(|_| p.select(key, Tried::default()).unwrap().index())
            .collect()
    }

    #[test]
    fn round_robin_skips_unhealthy() {
        let p = pool(Balance::RoundRobin, &[1, 5, 1]);
        assert_eq!(picks(&p, 6, b""), [0, 1, 2, 0, 1, 2]);
        p.set_health(1, false);
        let after = picks(&p, 6, b"");
        assert!(!after.contains(&1) && after.contains(&0) && after.contains(&2));
    }

    #[test]
    fn weighted_is_smooth_and_proportional() {
        let p = pool(Balance::Weighted, &[5, 1, 1]);
        assert_eq!(picks(&p, 7, b""), [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn least_conn_prefers_idle_backends() {
        let p = pool(Balance::LeastConn, &[1, 1, 1]);
        let a = p.select(b"", Tried::default()).unwrap();
        let b = p.select(b"", Tried::default()).unwrap();
        assert_ne!(a.index(), b.index());
        let c = p.select(b"", Tried::default()).unwrap();
        let busy = [a.index(), b.index()];
        assert!(!busy.contains(&c.index()));
        drop(b);
        let d = p.select(b"", Tried::default()).unwrap();
        assert_eq!(d.index(), busy[1]);
    }

    #[test]
    fn hash_is_sticky_and_fails_over() {
        let p = pool(Balance::Hash, &[1, 1, 1]);
        let first = picks(&p, 5, b"user-42");
        assert!(first.iter().all(|&i| i == first[0]));
        p.set_health(first[0], false);
        let second = picks(&p, 5, b"user-42");
        assert!(second.iter().all(|&i| i == second[0] && i != first[0]));
    }

    #[test]
    fn recent_error_rate_covers_the_last_window() {
        let p = pool(Balance::RoundRobin, &[1]);
        let b = &p.backends[0];
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
    fn retries_avoid_tried_backends_and_none_when_all_down() {
        let p = pool(Balance::RoundRobin, &[1, 1]);
        let mut tried = Tried::default();
        tried.add(0);
        assert_eq!(p.select(b"", tried).unwrap().index(), 1);
        tried.add(1);
        assert!(p.select(b"", tried).is_none());
        p.set_health(0, false);
        p.set_health(1, false);
        assert!(p.select(b"", Tried::default()).is_none());
        assert_eq!(p.health_counts(), (0, 2));
    }
}
