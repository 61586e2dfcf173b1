//! Active health checks: one background task per pool, probing every
//! backend each interval with Pingora's HTTP or TCP check. The task holds
//! only a weak reference, so it ends by itself when a reload drops the pool.

use std::sync::{Arc, Weak};
use std::time::Duration;

use log::{info, warn};
use pingora_load_balancing::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora_load_balancing::Backend as LbBackend;

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

/// Starts the checker of `pool` on the current Tokio runtime.
pub fn spawn(pool: &Arc<Pool>, spec: HealthSpec) {
    let weak = Arc::downgrade(pool);
    let checker = spec.checker(&pool.settings);
    let targets: Vec<LbBackend> = pool
        .backends
        .iter()
        .map(|b| LbBackend {
            addr: pingora_core::protocols::l4::socket::SocketAddr::Inet(b.addr),
            weight: b.weight as usize,
            ext: Default::default(),
        })
        .collect();
    tokio::spawn(run(weak, checker, targets, spec));
}

async fn run(
    pool: Weak<Pool>,
    checker: Box<dyn HealthCheck + Send + Sync>,
    targets: Vec<LbBackend>,
    spec: HealthSpec,
) {
    let mut ticker = tokio::time::interval(spec.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if pool.strong_count() == 0 {
            return;
        }
        let probes = targets.iter().map(|t| async {
            tokio::time::timeout(spec.timeout, checker.check(t))
                .await
                .map_err(|_| "timed out".to_string())
                .and_then(|r| r.map_err(|e| describe(&e)))
        });
        let results = futures_util::future::join_all(probes).await;
        let Some(pool) = pool.upgrade() else { return };
        for b in pool.backends.iter() {
            b.roll_window();
        }
        for (i, result) in results.into_iter().enumerate() {
            let healthy = result.is_ok();
            if pool.set_health(i, healthy) {
                let backend = &pool.backends[i].label;
                match result {
                    Ok(()) => info!("upstream {} backend {backend} is healthy", pool.name),
                    Err(e) => warn!("upstream {} backend {backend} is unhealthy: {e}", pool.name),
                }
            }
        }
    }
}
