//! Active health checks: one background task per backend, each on its own
//! timer (as Envoy and nginx do), so a probe that hangs delays nobody
//! else's. Probes use Pingora's HTTP or TCP check. A probe that fails for
//! lack of the gateway's own resources (no file descriptor, no port) gives
//! no verdict: the backend keeps the health it had. The tasks hold only a
//! weak reference, so they end by themselves when a reload drops the pool
//! (or DNS takes their backend out of it).

use std::sync::{Arc, Weak};
use std::time::Duration;

use log::{info, warn};
use pingora_load_balancing::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora_load_balancing::Backend as LbBackend;

use super::backend::Backend;
use super::connect_failure::ConnectFailure;
use super::pool::{Pool, PoolSettings};

/// What to probe and how often.
#[derive(Debug, Clone)]
pub struct HealthSpec {
    /// HTTP path to GET (200 = healthy); `None` for a TCP connect check.
    pub path: Option<String>,
    /// Host header for HTTP checks.
    pub host: String,
    /// Time between rounds.
    pub interval: Duration,
    /// Longest one probe may take.
    pub timeout: Duration,
}

impl HealthSpec {
    fn checker(&self, settings: &PoolSettings) -> Box<dyn HealthCheck + Send + Sync> {
        let (tls, sni) = (settings.tls, settings.sni.as_str());
        match &self.path {
            Some(path) => {
                let host = if sni.is_empty() { &self.host } else { sni };
                let mut check = HttpHealthCheck::new(host, tls);
                check.peer_template.options.connection_timeout = Some(self.timeout);
                check.peer_template.options.read_timeout = Some(self.timeout);
                if tls {
                    let t = &settings.tls_identity;
                    check.peer_template.options.verify_cert = t.verify;
                    check.peer_template.options.verify_hostname = t.verify;
                    check.peer_template.options.ca.clone_from(&t.ca);
                    check
                        .peer_template
                        .client_cert_key
                        .clone_from(&t.client_cert);
                }
                // The path was validated as a URI when the config compiled.
                if let Ok(uri) = path.parse() {
                    check.req.set_uri(uri);
                }
                Box::new(check)
            }
            // A plain connect, also for TLS backends: a handshake without the
            // pool's client certificate would fail on mutual-TLS backends, and
            // every request checks the certificate anyway.
            None => {
                let mut check = TcpHealthCheck::new();
                check.peer_template.options.connection_timeout = Some(self.timeout);
                check
            }
        }
    }
}

/// A one-line reason: the error kind and its root cause, without the
/// peer dump Pingora puts in the context.
fn describe(e: &pingora_core::Error) -> String {
    let root = e.root_cause().to_string();
    if root.is_empty() || root == e.etype().as_str() {
        e.etype().as_str().to_string()
    } else {
        format!("{}: {root}", e.etype().as_str())
    }
}

/// Starts the checkers of `backends` (of `pool`) on the current Tokio runtime.
pub fn spawn(pool: &Arc<Pool>, spec: &HealthSpec, backends: &[Arc<Backend>]) {
    if backends.is_empty() {
        return;
    }
    let checker: Arc<dyn HealthCheck + Send + Sync> = Arc::from(spec.checker(&pool.settings));
    for b in backends {
        let target = LbBackend {
            addr: pingora_core::protocols::l4::socket::SocketAddr::Inet(b.addr),
            weight: b.weight as usize,
            ext: Default::default(),
        };
        let probe = Probe {
            pool: Arc::downgrade(pool),
            backend: Arc::clone(b),
            checker: Arc::clone(&checker),
            target,
        };
        tokio::spawn(probe.run(spec.clone()));
    }
}

/// The checker of one backend; it ends with its pool or when the backend
/// leaves it.
struct Probe {
    pool: Weak<Pool>,
    backend: Arc<Backend>,
    checker: Arc<dyn HealthCheck + Send + Sync>,
    target: LbBackend,
}

impl Probe {
    async fn run(self, spec: HealthSpec) {
        let mut ticker = tokio::time::interval(spec.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if self.pool.strong_count() == 0 || self.backend.is_retired() {
                return;
            }
            let result =
                match tokio::time::timeout(spec.timeout, self.checker.check(&self.target)).await {
                    Err(_) => Err(("timed out".to_string(), ConnectFailure::Weak)),
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err((describe(&e), ConnectFailure::of(&e))),
                };
            let Some(pool) = self.pool.upgrade() else {
                return;
            };
            let backend = &self.backend;
            backend.roll_window();
            let passed = match &result {
                Ok(()) => true,
                Err((why, ConnectFailure::Local(_))) => {
                    warn!(
                        "upstream {} backend {}: health probe could not run ({why}): the gateway lacks resources; health unchanged",
                        pool.name, backend.label
                    );
                    continue;
                }
                Err(_) => false,
            };
            if pool.set_health(backend, passed) {
                match result {
                    Ok(()) => info!(
                        "upstream {} backend {} is healthy",
                        pool.name, backend.label
                    ),
                    Err((e, _)) => warn!(
                        "upstream {} backend {} is unhealthy: {e}",
                        pool.name, backend.label
                    ),
                }
            }
        }
    }
}
