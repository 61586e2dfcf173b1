//! gatehouse: the single public entry point in front of a company's web
//! apps, built on Cloudflare's Pingora.
//!
//! # Layout
//!
//! | module | holds |
//! |---|---|
//! | [`config`] | `conf.yaml` + `routes/*.yaml`: file types, validation with file:line errors, compiled [`config::Runtime`] |
//! | [`routing`] | path normalisation and the host + longest-prefix route table |
//! | [`upstream`] | pools, balancing (round robin, weighted, least connections, consistent hash), health checks |
//! | [`proxy`] | [`proxy::Gateway`], the `ProxyHttp` implementation: thin phases calling the modules |
//! | [`oauth`] | the gateway as OAuth 2.1 client: login, sessions in TokenginX, refresh, logout |
//! | [`auth`] | tokens: extraction, JWT + JWKS, verified-token cache, TokenginX sessions and opaque tokens, scopes, roles |
//! | [`limit`] | rate limits: token buckets, local lock-free store, shared Redis store |
//! | [`client_ip`] | client address through trusted proxies |
//! | [`trace`] | request ids and W3C trace context |
//! | [`reason`] | the closed set of authentication refusal reasons |
//! | [`reject`] | refusals as values; the one place that writes error responses |
//! | [`metrics`] | every Prometheus family |
//! | [`access_log`] | the JSON access log: formatting on the request path, writing on its own thread |
//! | [`admin`] | the admin service: health, metrics, status |
//! | [`dashboard`] | the live dashboard: per-route rings fed from `logging`, its page |
//! | [`listeners`] | listening addresses: free before start, held once running |
//! | [`lifecycle`] | readiness, draining, in-flight requests, last config load |
//! | [`tls`] | TLS termination: certificates by SNI, replaced on reload |
//! | [`acme`] | ACME: certificates ordered, stored, served and renewed by the gateway |
//! | [`supervisor`] | background work: health checkers, JWKS, TokenginX, readiness, drain-then-exit |
//! | [`demo`] | `gatehouse demo` and the sample apps tests use as upstreams |
//!
//! [`build_server`] assembles a Pingora server from a config file; `main`,
//! the tests and the benchmarks all start the gateway through it.

pub mod access_log;
pub mod acme;
pub mod admin;
pub mod auth;
pub mod client_ip;
pub mod config;
pub mod cors;
pub mod dashboard;
pub mod demo;
pub mod http_client;
pub mod lifecycle;
pub mod limit;
pub mod listeners;
pub mod metrics;
pub mod oauth;
pub mod otlp;
pub mod proxy;
pub mod reason;
pub mod reject;
pub mod routing;
pub mod supervisor;
pub mod tls;
pub mod trace;
pub mod upstream;
pub mod validate;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;
use pingora_proxy::HttpProxy;
use std::collections::HashMap;
use std::net::SocketAddr;

use crate::access_log::Reopen;
use crate::admin::Admin;
use crate::config::reload::Reloader;
use crate::config::ConfigErrors;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::proxy::connection::ProxyApp;
use crate::proxy::Gateway;
use crate::supervisor::Supervisor;
use crate::tls::{CertStore, SniCallbacks};

/// Process flags that Pingora acts on.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunFlags {
    /// Run in the background.
    pub daemon: bool,
    /// Take the listeners over from a running gateway (graceful upgrade).
    pub upgrade: bool,
}

/// Socket buffers of a plain listener: none. Pingora's default puts a 64 KiB
/// read buffer in front of every connection, and the HTTP/1 session reads
/// into its own buffer, so a plain connection needs none.
const PLAIN_BUFFERS: L4BufferSettings = L4BufferSettings {
    read: Some(0),
    write: None,
};

/// Socket buffers of a TLS listener: a read buffer of one TLS record.
/// BoringSSL reads a record's 5-byte header, then its body, each with a read
/// of its own; through this buffer one `recv` brings both (and tells the
/// runtime the socket is drained), instead of three per request. The
/// vendored Pingora's read buffer holds memory only while it holds bytes
/// (vendor/README.md), and BoringSSL frees its own record buffers while
/// they are empty, so an idle TLS connection holds neither.
const TLS_BUFFERS: L4BufferSettings = L4BufferSettings {
    read: Some(17 * 1024),
    write: None,
};

/// SIGHUP and SIGUSR1 end a process that has no handler for them, and the
/// supervisor installs its handlers only once its runtime runs, after the
/// listeners serve. Until then both are ignored: a reload asked for during
/// start-up cannot kill the gateway, and the supervisor still notices files
/// changed since the config was loaded.
fn ignore_signals_until_supervised() {
    for sig in [libc::SIGHUP, libc::SIGUSR1] {
        // SAFETY: `signal` with `SIG_IGN` only sets the signal's
        // disposition; no handler runs and no memory is shared.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
}

/// Loads `conf_path` and builds the server: the proxy on every listener,
/// the admin service, and the supervisor. Config errors come back whole.
pub fn build_server(conf_path: &Path, flags: RunFlags) -> Result<Server, ConfigErrors> {
    ignore_signals_until_supervised();
    http_client::install_crypto_provider();
    let metrics = Arc::new(Metrics::new());
    let mut runtime = config::load(conf_path, &metrics)?;
    if runtime.routes.is_empty() {
        log::warn!("no route is defined: every request will get 404");
    }
    let reopen = Arc::new(Reopen::default());
    config::reload::prepare(&mut runtime, None, &metrics, &reopen)?;
    metrics.config_reloads.with_label_values(&["ok"]).inc();
    metrics.config_last_reload_success.set(1);
    // ServerConf is not Clone; the running config keeps its copy so a
    // reload can tell which fixed settings changed.
    let mut pingora_conf =
        ServerConf::from_yaml(&runtime.server.pingora.to_yaml()).map_err(|e| {
            ConfigErrors(vec![config::ConfigError::file(
                conf_path,
                format!("server settings: {e}"),
            )])
        })?;
    pingora_conf.daemon |= flags.daemon;
    let listeners = runtime.server.listeners.clone();
    let mut addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.addr).collect();
    addrs.extend(runtime.server.admin);
    // A graceful upgrade takes its sockets over from the running process.
    if !flags.upgrade {
        listeners::ensure_free(&addrs)
            .map_err(|e| ConfigErrors(vec![config::ConfigError::file(conf_path, e)]))?;
    }
    let runtime_certs = runtime.server.certs.clone();
    let mut cert_stores: HashMap<SocketAddr, Arc<CertStore>> = HashMap::new();
    let admin_addr = runtime.server.admin;
    let h2c = runtime.server.h2c;
    let live = Arc::new(ArcSwap::from_pointee(runtime));
    let lifecycle = Arc::new(Lifecycle::new());

    let opt = Opt {
        upgrade: flags.upgrade,
        daemon: flags.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, pingora_conf);
    server.bootstrap();
    // The sockets a graceful upgrade took over already serve, and the old
    // process answers ready on them: this one must too from its first
    // accept, not only once its supervisor has looked (a probe landing in
    // between would see the healthy gateway not ready).
    if flags.upgrade && listeners::missing(&addrs).is_empty() {
        lifecycle.ready.store(true, Ordering::Relaxed);
    }

    let mut gateway = HttpProxy::new(
        Gateway::new(
            Arc::clone(&live),
            Arc::clone(&metrics),
            Arc::clone(&lifecycle),
        ),
        Arc::clone(&server.configuration),
    );
    gateway.handle_init_modules();
    let mut options = HttpServerOptions::default();
    options.h2c = h2c;
    gateway.server_options = Some(options);
    let mut proxy = Service::new(
        "gatehouse proxy".to_string(),
        ProxyApp::new(
            gateway,
            Arc::clone(&live),
            metrics.client_timeouts.with_label_values(&["header"]),
        ),
    );
    for l in &listeners {
        let addr = l.addr.to_string();
        match &l.tls {
            None => proxy.add_listener(ListenerConfig::tcp(addr).l4_buffer(PLAIN_BUFFERS)),
            Some(_) => {
                let store = cert_stores
                    .entry(l.addr)
                    .or_insert_with(|| CertStore::new(Arc::clone(&runtime_certs[&l.addr])));
                let callbacks = SniCallbacks {
                    store: Arc::clone(store),
                    live: Arc::clone(&live),
                };
                let mut tls = TlsSettings::with_callbacks(Box::new(callbacks)).map_err(|e| {
                    ConfigErrors(vec![config::ConfigError::file(
                        conf_path,
                        format!("listener {addr}: {e}"),
                    )])
                })?;
                tls.set_select_certificate_callback(crate::tls::mark_acme_offer);
                tls.set_alpn_select_callback(crate::tls::select_alpn);
                proxy.add_listener(ListenerConfig::tcp(addr).tls(tls).l4_buffer(TLS_BUFFERS));
            }
        }
    }
    server.add_service(proxy);

    if let Some(addr) = admin_addr {
        let admin = Admin::new(
            Arc::clone(&live),
            Arc::clone(&metrics),
            Arc::clone(&lifecycle),
        );
        let mut service = Service::new("gatehouse admin".to_string(), admin);
        service.add_tcp(&addr.to_string());
        // Scrapes and probes are a few requests a second: one thread (and
        // its allocator heap) is plenty.
        service.threads = Some(1);
        server.add_service(service);
    }

    let phases = server.watch_execution_phase();
    let reloader = Reloader::new(
        conf_path.to_path_buf(),
        Arc::clone(&live),
        Arc::clone(&metrics),
        Arc::clone(&lifecycle),
        Arc::clone(&reopen),
        cert_stores,
    );
    let supervisor = Supervisor::new(reloader, live, lifecycle, reopen, phases);
    server.add_service(background_service("gatehouse supervisor", supervisor));
    Ok(server)
}
