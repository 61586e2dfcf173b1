//! Putting a compiled config into service, at startup and on every reload.
//!
//! A reload (file change or SIGHUP) compiles the whole new config first;
//! only when it is valid is it swapped in, atomically, with one pointer
//! store that requests pick up on their next `load`. Parts whose config did
//! not change are taken over from the running config (see
//! [`super::load_reusing`]), so health state, JWKS keys, token and session
//! caches, rate-limit buckets and the access-log writer survive. Settings
//! that only a restart can change (listeners, threads, …) are named in the
//! log with the hint to use a graceful upgrade.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use log::{error, info, warn};

use super::{load_reusing, ConfigError, ConfigErrors, Runtime, ServerSettings};
use crate::access_log::{AccessLog, Reopen};
use crate::lifecycle::{unix_now, Lifecycle, ReloadOutcome};
use crate::metrics::Metrics;
use crate::tls::CertStore;
use crate::upstream::{discovery, health};

/// Opens what a compiled config needs before it serves (the access-log
/// writer, unless `previous` has the same one).
pub fn prepare(
    runtime: &mut Runtime,
    previous: Option<&Runtime>,
    metrics: &Metrics,
    reopen: &Arc<Reopen>,
) -> Result<(), ConfigErrors> {
    let same = previous.filter(|p| p.access_log == runtime.access_log);
    runtime.log = match (same, &runtime.access_log) {
        (Some(p), _) => p.log.clone(),
        (None, None) => None,
        (None, Some(spec)) => {
            let log = AccessLog::start(
                spec.dest.clone(),
                spec.redact_query.clone(),
                metrics.access_log_dropped.clone(),
                Arc::clone(reopen),
            )
            .map_err(|e| {
                let file = runtime.files.first().cloned().unwrap_or_default();
                ConfigErrors(vec![ConfigError::file(
                    &file,
                    format!("access_log: cannot open {:?}: {e}", spec.dest),
                )])
            })?;
            Some(Arc::new(log))
        }
    };
    record_certificate_expiry(runtime, metrics);
    Ok(())
}

/// Sets `gatehouse_tls_certificate_expiry_timestamp_seconds` to the
/// certificates `runtime` serves, forgetting names it no longer serves.
fn record_certificate_expiry(runtime: &Runtime, metrics: &Metrics) {
    let gauge = &metrics.tls_certificate_expiry;
    gauge.reset();
    let files = runtime.server.certs.values().flat_map(|set| set.expiries());
    let acme = runtime.acme.iter().flat_map(|a| a.expiries());
    for (name, at) in files.chain(acme) {
        gauge.with_label_values(&[&name]).set(at);
    }
}

/// Starts the background work of the parts `runtime` did not take over
/// from `previous`: health checkers and DNS re-resolution of new pools,
/// JWKS refreshers and the
/// TokenginX connection of a new auth config, the rate-limit store's
/// connection. Must run on a Tokio runtime.
pub fn activate(runtime: &Runtime, previous: Option<&Runtime>) {
    for (name, (pool, spec)) in &runtime.pools {
        let reused = previous
            .and_then(|p| p.pools.get(name))
            .is_some_and(|(old, _)| Arc::ptr_eq(old, pool));
        if !reused {
            health::spawn(pool, spec, &pool.members().backends);
            discovery::spawn(pool, spec.clone());
        }
    }
    if let Some(t) = &runtime.traces {
        t.start();
    }
    if let Some(a) = &runtime.acme {
        a.start();
    }
    if let Some(d) = &runtime.dashboard {
        let names: Vec<&str> = runtime.routes.iter().map(|r| r.name.as_str()).collect();
        d.retain(&names);
    }
    if !previous.is_some_and(|p| Arc::ptr_eq(&p.auth, &runtime.auth)) {
        runtime.auth.start();
    }
    if !previous.is_some_and(|p| Arc::ptr_eq(&p.limiter, &runtime.limiter)) {
        runtime.limiter.start();
    }
}

/// Reloads the config file into the live pointer.
pub struct Reloader {
    conf: PathBuf,
    live: Arc<ArcSwap<Runtime>>,
    metrics: Arc<Metrics>,
    lifecycle: Arc<Lifecycle>,
    reopen: Arc<Reopen>,
    /// The certificate stores of the TLS listeners, by address.
    certs: HashMap<SocketAddr, Arc<CertStore>>,
}

impl Reloader {
    /// A reloader of `conf` into `live`.
    pub fn new(
        conf: PathBuf,
        live: Arc<ArcSwap<Runtime>>,
        metrics: Arc<Metrics>,
        lifecycle: Arc<Lifecycle>,
        reopen: Arc<Reopen>,
        certs: HashMap<SocketAddr, Arc<CertStore>>,
    ) -> Reloader {
        Reloader {
            conf,
            live,
            metrics,
            lifecycle,
            reopen,
            certs,
        }
    }

    /// The config file it reloads.
    pub fn conf(&self) -> &PathBuf {
        &self.conf
    }

    /// Compiles the config files and swaps them in if they are valid;
    /// otherwise logs every error and keeps serving the running config.
    pub fn reload(&self, why: &str) -> bool {
        let started = Instant::now();
        let old = self.live.load_full();
        let result = load_reusing(&self.conf, &self.metrics, &old).and_then(|mut new| {
            prepare(&mut new, Some(&old), &self.metrics, &self.reopen)?;
            Ok(new)
        });
        match result {
            Ok(new) => {
                warn_fixed_settings(&old.server, &new.server);
                activate(&new, Some(&old));
                forget_removed_backends(&old, &new, &self.metrics);
                for (addr, store) in &self.certs {
                    if let Some(set) = new.server.certs.get(addr) {
                        store.replace(Arc::clone(set));
                    }
                }
                let version = new.version.clone();
                self.live.store(Arc::new(new));
                let took = started.elapsed();
                self.metrics
                    .config_reload_duration
                    .observe(took.as_secs_f64());
                info!(
                    "config reloaded ({why}) in {:.1} ms: version {} -> {}",
                    took.as_secs_f64() * 1e3,
                    old.version,
                    version
                );
                self.record("ok", None);
                true
            }
            Err(errors) => {
                error!(
                    "config reload ({why}) failed; still serving version {}:\n{errors}",
                    old.version
                );
                self.record("error", Some(errors.to_string()));
                false
            }
        }
    }

    fn record(&self, result: &'static str, error: Option<String>) {
        self.metrics
            .config_reloads
            .with_label_values(&[result])
            .inc();
        self.metrics
            .config_last_reload_success
            .set(i64::from(result == "ok"));
        let outcome = ReloadOutcome {
            result,
            at: unix_now(),
            error,
        };
        match self.lifecycle.last_reload.lock() {
            Ok(mut r) => *r = outcome,
            Err(p) => *p.into_inner() = outcome,
        }
    }
}

/// Logs each setting that differs but cannot change in a running process.
fn warn_fixed_settings(old: &ServerSettings, new: &ServerSettings) {
    let (a, b) = (&old.pingora, &new.pingora);
    let mut changed = Vec::new();
    if old.listeners != new.listeners {
        changed.push("listeners");
    }
    if old.admin != new.admin {
        changed.push("admin");
    }
    let fixed = [
        ("threads", a.threads != b.threads),
        ("work_stealing", a.work_stealing != b.work_stealing),
        ("pid_file", a.pid_file != b.pid_file),
        ("upgrade_sock", a.upgrade_sock != b.upgrade_sock),
        ("user", a.user != b.user),
        ("group", a.group != b.group),
        ("daemon", a.daemon != b.daemon),
        ("error_log", a.error_log != b.error_log),
        ("ca_file", a.ca_file != b.ca_file),
        (
            "upstream_keepalive_pool_size",
            a.upstream_keepalive_pool_size != b.upstream_keepalive_pool_size,
        ),
        (
            "grace_period_seconds",
            a.grace_period_seconds != b.grace_period_seconds,
        ),
        (
            "graceful_shutdown_timeout_seconds",
            a.graceful_shutdown_timeout_seconds != b.graceful_shutdown_timeout_seconds,
        ),
    ];
    changed.extend(fixed.iter().filter(|(_, c)| *c).map(|(n, _)| *n));
    if !changed.is_empty() {
        warn!(
            "config reload: {} changed but cannot change in a running process; the old values stay until a restart or a graceful upgrade (start the new process with -u, then send SIGQUIT to this one)",
            changed.join(", ")
        );
    }
}

/// Drops the health gauges of backends the new config no longer has.
fn forget_removed_backends(old: &Runtime, new: &Runtime, metrics: &Metrics) {
    for (name, (pool, _)) in &old.pools {
        let kept = new.pools.get(name).map(|(p, _)| p);
        for b in pool.members().backends.iter() {
            let still =
                kept.is_some_and(|p| p.members().backends.iter().any(|nb| nb.label == b.label));
            if !still {
                let _ = metrics
                    .backend_healthy
                    .remove_label_values(&[name, &b.label]);
            }
        }
    }
}
