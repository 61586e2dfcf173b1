//! DNS service discovery: backends named by host name, re-resolved while
//! the gateway runs (Envoy's STRICT_DNS and LOGICAL_DNS clusters).
//!
//! `app-1.internal:3002` is one backend at the name's first address;
//! `{dns: admin.svc.cluster.local, port: 3002}` is one backend per A and
//! AAAA record. Each pool with such names has one task that resolves them
//! every `resolve_interval_ms`, sooner when a record's TTL is shorter, with
//! hickory-resolver (the system's `/etc/resolv.conf` and hosts file, or
//! the nameservers of conf.yaml's `dns`). An address that appears joins
//! the pool on probation, picked once its first health check passed; one
//! that is gone gets no new request while those in flight finish. A
//! resolution that fails, or answers no address, keeps the name's last
//! good set and is logged and counted: DNS trouble never empties a pool.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, NameServerConfigGroup, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;
use log::{info, warn};
use prometheus::IntCounter;

use super::health::{self, HealthSpec};
use super::pool::Pool;

/// The shortest wait between two resolutions, whatever the TTL says.
const MIN_REFRESH: Duration = Duration::from_secs(1);

/// The `result` label values of `gatehouse_dns_resolutions_total`, in the
/// order of [`Discovery::counters`].
pub const RESULTS: [&str; 3] = ["ok", "error", "empty"];

/// Which resolver answers: the system's, or given nameservers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverSpec {
    /// `ip:port` of each nameserver; empty: `/etc/resolv.conf`.
    pub nameservers: Vec<SocketAddr>,
    /// Longest one query may take (each nameserver, UDP then TCP).
    pub timeout: Duration,
}

impl ResolverSpec {
    /// A resolver as specified. Addresses are asked for as the target
    /// wants them: the first (IPv4 first), or every A and AAAA record.
    /// Nothing is cached: the pool's own schedule decides when to ask.
    fn resolver(&self, every_record: bool) -> Result<TokioResolver, String> {
        let provider = TokioConnectionProvider::default();
        let mut builder = if self.nameservers.is_empty() {
            TokioResolver::builder(provider).map_err(|e| format!("system resolver: {e}"))?
        } else {
            let mut group = NameServerConfigGroup::new();
            for &addr in &self.nameservers {
                group.push(NameServerConfig::new(addr, Protocol::Udp));
                group.push(NameServerConfig::new(addr, Protocol::Tcp));
            }
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], group),
                provider,
            )
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = self.timeout;
        opts.attempts = 1;
        opts.cache_size = 0;
        opts.ip_strategy = if every_record {
            LookupIpStrategy::Ipv4AndIpv6
        } else {
            LookupIpStrategy::Ipv4thenIpv6
        };
        Ok(builder.build())
    }
}

/// One backend entry given by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsTarget {
    /// The host name.
    pub name: String,
    /// The port of every address it resolves to.
    pub port: u16,
    /// The weight of each of its backends.
    pub weight: u32,
    /// Every A/AAAA record (`{dns, port}`), or the first (`host:port`).
    pub every_record: bool,
}

/// What one resolution of a target found.
#[derive(Debug)]
pub enum Resolved {
    /// These addresses, valid this long.
    Found(Vec<SocketAddr>, Duration),
    /// The name exists but has no address, or does not exist.
    Empty,
    /// The resolver failed (timeout, refused, unreachable).
    Failed(String),
}

/// Resolves `target` once with `resolver`.
async fn resolve(resolver: &TokioResolver, target: &DnsTarget) -> Resolved {
    match resolver.lookup_ip(target.name.as_str()).await {
        Ok(lookup) => {
            let ttl = lookup
                .valid_until()
                .saturating_duration_since(Instant::now());
            let ips: Vec<IpAddr> = lookup.iter().collect();
            let ips = if target.every_record {
                &ips[..]
            } else {
                &ips[..ips.len().min(1)]
            };
            if ips.is_empty() {
                return Resolved::Empty;
            }
            let mut addrs: Vec<SocketAddr> = ips
                .iter()
                .map(|&ip| SocketAddr::new(ip, target.port))
                .collect();
            addrs.sort();
            addrs.dedup();
            Resolved::Found(addrs, ttl)
        }
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => Resolved::Empty,
        Err(e) => Resolved::Failed(e.to_string()),
    }
}

/// Resolves every target once, blocking the caller (config compilation
/// runs outside any Tokio task) for at most a little over `spec.timeout`.
pub fn resolve_now(spec: &ResolverSpec, targets: &[DnsTarget]) -> Vec<Resolved> {
    let n = targets.len();
    let spec = spec.clone();
    let targets = targets.to_vec();
    let budget = spec.timeout * 2 + Duration::from_millis(500);
    let run = move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let mut out = Vec::with_capacity(targets.len());
            for t in &targets {
                let resolver = spec.resolver(t.every_record)?;
                out.push(
                    tokio::time::timeout(budget, resolve(&resolver, t))
                        .await
                        .unwrap_or_else(|_| Resolved::Failed("timed out".into())),
                );
            }
            Ok::<_, String>(out)
        })
    };
    // A thread of its own: the caller may itself be on a Tokio runtime.
    match std::thread::spawn(run).join() {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => (0..n).map(|_| Resolved::Failed(e.clone())).collect(),
        Err(_) => (0..n)
            .map(|_| Resolved::Failed("resolver thread panicked".into()))
            .collect(),
    }
}

/// A pool's names to re-resolve, and what they resolved to last.
#[derive(Debug)]
pub struct Discovery {
    /// The names.
    pub targets: Vec<DnsTarget>,
    /// The pool's backends given by address, kept whatever DNS says.
    pub statics: Vec<(SocketAddr, u32)>,
    /// Longest time between two resolutions.
    pub interval: Duration,
    /// Who answers.
    pub resolver: ResolverSpec,
    /// `gatehouse_dns_resolutions_total` of the pool, by [`RESULTS`] index.
    pub counters: [IntCounter; RESULTS.len()],
    /// Each target's last good addresses (empty until one resolution
    /// succeeded), and whether its last resolution failed.
    last: Mutex<Vec<(Vec<SocketAddr>, bool)>>,
}

impl Discovery {
    /// Discovery of pool `pool`'s `targets`, starting from the `first`
    /// resolution of each.
    pub fn new(
        pool: &str,
        targets: Vec<DnsTarget>,
        statics: Vec<(SocketAddr, u32)>,
        interval: Duration,
        resolver: ResolverSpec,
        counters: [IntCounter; RESULTS.len()],
        first: &[Resolved],
    ) -> Discovery {
        let d = Discovery {
            last: Mutex::new(vec![(Vec::new(), false); targets.len()]),
            targets,
            statics,
            interval,
            resolver,
            counters,
        };
        d.absorb(pool, first);
        d
    }

    /// The pool's backends as last resolved: the static ones, then each
    /// target's addresses, each address once.
    pub fn members(&self) -> Vec<(SocketAddr, u32)> {
        let mut out = self.statics.clone();
        let Ok(last) = self.last.lock() else {
            return out;
        };
        for (t, (addrs, _)) in self.targets.iter().zip(last.iter()) {
            for &a in addrs {
                if !out.iter().any(|(x, _)| *x == a) {
                    out.push((a, t.weight));
                }
            }
        }
        out
    }

    /// Takes in one resolution of every target (in order): found
    /// addresses replace the target's, anything else keeps them, and is
    /// counted and logged (once per failing streak, and at its end).
    /// Returns the shortest TTL found.
    fn absorb(&self, pool: &str, results: &[Resolved]) -> Option<Duration> {
        let mut ttl: Option<Duration> = None;
        let Ok(mut last) = self.last.lock() else {
            return None;
        };
        for ((t, result), (addrs, failing)) in self.targets.iter().zip(results).zip(last.iter_mut())
        {
            let (index, why) = match result {
                Resolved::Found(found, valid) => {
                    if *failing {
                        info!("upstream {pool}: {} resolves again", t.name);
                    }
                    *failing = false;
                    addrs.clone_from(found);
                    ttl = Some(ttl.map_or(*valid, |t| t.min(*valid)));
                    self.counters[0].inc();
                    continue;
                }
                Resolved::Failed(e) => (1, e.clone()),
                Resolved::Empty => (2, "no address".to_string()),
            };
            self.counters[index].inc();
            if !*failing {
                warn!(
                    "upstream {pool}: resolving {} failed ({why}); the pool keeps its last {} address(es) of it",
                    t.name,
                    addrs.len()
                );
            }
            *failing = true;
        }
        ttl
    }
}

/// Starts the re-resolution task of `pool` (which has [`Discovery`]) on
/// the current Tokio runtime; new backends get probes of `spec`. The task
/// holds a weak reference: it ends when a reload drops the pool.
pub fn spawn(pool: &Arc<Pool>, spec: HealthSpec) {
    let Some(d) = &pool.discovery else {
        return;
    };
    let resolvers: Result<Vec<TokioResolver>, String> = d
        .targets
        .iter()
        .map(|t| d.resolver.resolver(t.every_record))
        .collect();
    let resolvers = match resolvers {
        Ok(r) => r,
        Err(e) => {
            warn!(
                "upstream {}: no DNS resolver ({e}); its names stay as resolved at load",
                pool.name
            );
            return;
        }
    };
    tokio::spawn(run(Arc::downgrade(pool), resolvers, spec, d.interval));
}

async fn run(
    pool: Weak<Pool>,
    resolvers: Vec<TokioResolver>,
    spec: HealthSpec,
    interval: Duration,
) {
    let mut wait = interval;
    loop {
        tokio::time::sleep(wait).await;
        let Some(p) = pool.upgrade() else {
            return;
        };
        let Some(d) = &p.discovery else {
            return;
        };
        let targets = d.targets.clone();
        drop(p);
        let mut results = Vec::with_capacity(targets.len());
        for (t, r) in targets.iter().zip(&resolvers) {
            results.push(resolve(r, t).await);
        }
        let Some(p) = pool.upgrade() else {
            return;
        };
        let Some(d) = &p.discovery else {
            return;
        };
        let ttl = d.absorb(&p.name, &results);
        let change = p.set_members(&d.members());
        for b in &change.added {
            info!(
                "upstream {}: backend {} appears in DNS; it joins once a health check passes",
                p.name, b.label
            );
        }
        for b in &change.removed {
            info!(
                "upstream {}: backend {} is gone from DNS; drained ({} in flight)",
                p.name,
                b.label,
                b.in_flight()
            );
        }
        health::spawn(&p, &spec, &change.added);
        wait = ttl.map_or(interval, |t| t.clamp(MIN_REFRESH.min(interval), interval));
    }
}
