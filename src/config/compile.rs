//! Validation and compilation of the config files into a [`Runtime`].
//!
//! Every check runs and every failure is collected, each naming its file,
//! line and key, so one `gatehouse check` shows all that is wrong. The
//! result holds parsed addresses, CIDRs, header names, durations, built
//! pools and the route table: the request path never parses config.

use std::collections::{hash_map::DefaultHasher, BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use ipnet::IpNet;
use pingora_core::server::configuration::ServerConf;
use serde::de::DeserializeOwned;

pub use super::compile_transform::Rewrite;
use super::error::{ConfigError, ConfigErrors};
use super::file::{Balance, LogFormat, MainFile, PathParams, RouteEntry, RouteFile, UpstreamFile};
use super::yaml::MarkedDoc;
use crate::access_log::{AccessLog, Destination};
use crate::acme::Acme;
use crate::auth::{ApiKeys, Auth, RoutePolicy};
use crate::cors::Cors;
use crate::dashboard::{Dashboard, RouteSeries};
use crate::limit::{Limiter, RouteLimits};
use crate::metrics::{Metrics, RouteMetrics, NO_ROUTE};
use crate::otlp::{Exporter, TracingSpec};
use crate::proxy::aggregate::Aggregate;
use crate::proxy::fallback::Fallback;
use crate::reason::Reason;
use crate::routing::{canonical_prefix, normalize, RouteTable};
use crate::tls::CertSet;
use crate::upstream::discovery::{self, Discovery, ResolverSpec, RESULTS};
use crate::upstream::pool::{HashKey, UpstreamTls};
use crate::upstream::{BackendMetrics, EjectionPolicy, HealthSpec, Pool, PoolSettings};
use crate::validate::BodySchema;
use pingora_core::tls::x509::X509;

/// Settings that only a restart or graceful upgrade can change.
#[derive(Debug)]
pub struct ServerSettings {
    /// Pingora's server configuration.
    pub pingora: ServerConf,
    /// Public listeners.
    pub listeners: Vec<Listener>,
    /// Certificates of each TLS listener, loaded and checked.
    pub certs: HashMap<SocketAddr, Arc<CertSet>>,
    /// Admin service address.
    pub admin: Option<SocketAddr>,
    /// HTTP/2 without TLS on plain listeners.
    pub h2c: bool,
}

/// A public listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Address to bind.
    pub addr: SocketAddr,
    /// Certificate and key paths (resolved) of a TLS listener, the default first.
    pub tls: Option<Vec<(PathBuf, PathBuf)>>,
}

/// Request-path settings shared by every route.
#[derive(Debug)]
pub struct Settings {
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Header naming the client IP (from trusted peers only).
    pub client_ip_header: Option<HeaderName>,
    /// Add security headers to responses.
    pub security_headers: bool,
    /// Largest request body accepted.
    pub max_request_body_bytes: u64,
    /// Longest request target accepted.
    pub max_uri_bytes: usize,
    /// Largest total of header names and values accepted.
    pub max_header_bytes: usize,
    /// Per-read wait for request body bytes.
    pub client_body_timeout: Duration,
    /// Whole wait for a request head, from its first byte.
    pub client_header_timeout: Duration,
    /// `;` path parameters pass (`path_params: allow`).
    pub allow_path_params: bool,
    /// Set `Forwarded` beside X-Forwarded-*.
    pub forwarded_header: bool,
    /// Idle limit of a kept-alive client connection, in seconds.
    pub keepalive_timeout_seconds: u64,
}

/// Header edits of a route, parsed.
#[derive(Debug, Default)]
pub struct HeaderRules {
    /// Set on the upstream request.
    pub request_set: Vec<(HeaderName, HeaderValue)>,
    /// Removed from the upstream request.
    pub request_remove: Vec<HeaderName>,
    /// Set on the response.
    pub response_set: Vec<(HeaderName, HeaderValue)>,
    /// Removed from the response.
    pub response_remove: Vec<HeaderName>,
}

/// A compiled route.
pub struct Route {
    /// Unique name; the `route` metric label.
    pub name: String,
    /// Canonical prefix (no trailing slash, except `/`).
    pub prefix: String,
    /// Host pattern, lower-case.
    pub host: Option<String>,
    /// Allowed methods; `None` allows all.
    pub methods: Option<Vec<Method>>,
    /// Where requests go.
    pub pool: Arc<Pool>,
    /// Remove the prefix before forwarding.
    pub strip_prefix: bool,
    /// Deadline of the whole request, from its arrival, retries included.
    pub deadline: Option<Duration>,
    /// Client networks allowed (empty: all).
    pub ip_allow: Vec<IpNet>,
    /// Client networks refused.
    pub ip_deny: Vec<IpNet>,
    /// Header edits.
    pub headers: HeaderRules,
    /// Who may call it.
    pub policy: RoutePolicy,
    /// Its rate limits.
    pub limits: Option<RouteLimits>,
    /// What it serves when its upstream cannot answer.
    pub fallback: Option<Fallback>,
    /// Its cross-origin policy.
    pub cors: Option<Cors>,
    /// Its path rewrite.
    pub rewrite: Option<Rewrite>,
    /// The schema its request bodies must match.
    pub validate: Option<BodySchema>,
    /// The parts it answers with, instead of proxying.
    pub aggregate: Option<Aggregate>,
    /// Metric handles of this route.
    pub metrics: RouteMetrics,
    /// Its dashboard series, when the dashboard is on.
    pub live: Option<Arc<RouteSeries>>,
    /// Which file defines it.
    pub file: PathBuf,
}

impl Route {
    /// Whether this route accepts `method`.
    pub fn allows(&self, method: &Method) -> bool {
        self.methods.as_ref().is_none_or(|m| m.contains(method))
    }
}

/// Everything the gateway serves with, built from one consistent set of files.
pub struct Runtime {
    /// Short hash of every file's bytes: changes when anything changes.
    pub version: String,
    /// Listener and process settings.
    pub server: ServerSettings,
    /// Request-path settings.
    pub settings: Settings,
    /// Authentication: issuers, key stores, caches, TokenginX.
    pub auth: Arc<Auth>,
    /// Rate-limit stores.
    pub limiter: Arc<Limiter>,
    /// Routes; the table's ids index this list.
    pub routes: Vec<Route>,
    /// Host and prefix index over `routes`.
    pub table: RouteTable,
    /// Upstream pools with their health-check spec, by name.
    pub pools: Pools,
    /// Every file read, conf.yaml first.
    pub files: Vec<PathBuf>,
    /// The routes directory (watched for new files).
    pub routes_dir: PathBuf,
    /// API-key consumers and where keys are found.
    pub api_keys: Arc<ApiKeys>,
    /// The trace exporter, with `tracing`.
    pub traces: Option<Arc<Exporter>>,
    /// The live dashboard's rings, with `dashboard.enabled`.
    pub dashboard: Option<Arc<Dashboard>>,
    /// The ACME client and the certificates it obtained, with `acme`.
    pub acme: Option<Arc<Acme>>,
    /// The consumers directory (watched for new files).
    pub consumers_dir: PathBuf,
    /// Where access-log lines go; `None` when `format: off`.
    pub access_log: Option<AccessLogSpec>,
    /// The running access-log writer (set by [`super::reload::prepare`]).
    pub log: Option<Arc<AccessLog>>,
    /// What each reusable part was built from.
    pub fingerprints: Fingerprints,
}

/// Access-log settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogSpec {
    /// stdout or a file.
    pub dest: Destination,
    /// Query parameters never written.
    pub redact_query: Vec<String>,
}

/// Fingerprints of the config each reusable part was built from.
#[derive(Debug, Default)]
pub struct Fingerprints {
    /// `jwt`, `tokenginx`, `forward_identity`.
    pub auth: u64,
    /// `rate_limit`.
    pub limiter: u64,
    /// Each upstream's section.
    pub pools: HashMap<String, u64>,
    /// `acme` and the `tokenginx` store it may keep certificates in.
    pub acme: u64,
}

impl Runtime {
    /// Routes in match order: host-specific before wildcard before any,
    /// longer prefixes first.
    pub fn routes_in_match_order(&self) -> Vec<&Route> {
        let mut routes: Vec<&Route> = self.routes.iter().collect();
        routes.sort_by_key(|r| {
            let host_rank = match &r.host {
                Some(h) if !h.starts_with('*') => 0,
                Some(_) => 1,
                None => 2,
            };
            (
                host_rank,
                std::cmp::Reverse(r.prefix.len()),
                r.prefix.clone(),
            )
        });
        routes
    }

    /// The route table as `gatehouse check` prints it.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "{:<24} {:<20} {:<32} {:<10} {}\n",
            "ROUTE", "HOST", "PREFIX", "METHODS", "UPSTREAM"
        );
        for r in self.routes_in_match_order() {
            let methods = r.methods.as_ref().map_or("*".to_string(), |m| {
                m.iter().map(Method::as_str).collect::<Vec<_>>().join(",")
            });
            let members = r.pool.members();
            let backends: Vec<&str> = members.backends.iter().map(|b| b.label.as_str()).collect();
            out.push_str(&format!(
                "{:<24} {:<20} {:<32} {:<10} {} [{}]{}\n",
                r.name,
                r.host.as_deref().unwrap_or("*"),
                r.prefix,
                methods,
                r.pool.name,
                backends.join(", "),
                if r.strip_prefix { " strip_prefix" } else { "" }
            ));
        }
        out
    }
}

/// Loads and compiles `conf_path` and its route files, reading environment
/// variables from the process. Every error is returned, not just the first.
pub fn load(conf_path: &Path, metrics: &Metrics) -> Result<Runtime, ConfigErrors> {
    load_with_env(conf_path, metrics, &|name| std::env::var(name).ok())
}

/// Loads a new config for a running gateway: the parts whose config did
/// not change — upstream pools (with their health state), authentication
/// (key stores, caches, TokenginX connection), rate-limit stores (with
/// their buckets) and the access log — are taken over from `previous`.
pub fn load_reusing(
    conf_path: &Path,
    metrics: &Metrics,
    previous: &Runtime,
) -> Result<Runtime, ConfigErrors> {
    compile_with(
        conf_path,
        metrics,
        &|name| std::env::var(name).ok(),
        Some(previous),
    )
}

/// [`load`] with an explicit environment (for tests).
pub fn load_with_env(
    conf_path: &Path,
    metrics: &Metrics,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Runtime, ConfigErrors> {
    compile_with(conf_path, metrics, env, None)
}

fn compile_with(
    conf_path: &Path,
    metrics: &Metrics,
    env: &dyn Fn(&str) -> Option<String>,
    previous: Option<&Runtime>,
) -> Result<Runtime, ConfigErrors> {
    let mut c = Compiler {
        errors: Vec::new(),
        base: conf_path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        hasher: DefaultHasher::new(),
        extra_files: Vec::new(),
        env,
        previous,
    };
    let runtime = c.compile(conf_path, metrics);
    match runtime {
        Some(r) if c.errors.is_empty() => Ok(r),
        _ => Err(ConfigErrors(c.errors)),
    }
}

pub(super) struct Compiler<'e> {
    pub(super) errors: Vec<ConfigError>,
    /// Directory of conf.yaml: relative paths in every file start here.
    pub(super) base: PathBuf,
    /// Hash of every byte read, the config's version.
    pub(super) hasher: DefaultHasher,
    /// Files read besides conf.yaml, route files and certificates
    /// (fallback bodies): watched like them.
    pub(super) extra_files: Vec<PathBuf>,
    env: &'e dyn Fn(&str) -> Option<String>,
    /// The running config, whose unchanged parts are reused.
    pub(super) previous: Option<&'e Runtime>,
}

/// Upstream pools with their health-check spec, by name.
pub type Pools = BTreeMap<String, (Arc<Pool>, HealthSpec)>;

/// What routes are compiled against.
struct RouteInputs<'a> {
    /// Valid pools by name.
    pools: &'a Pools,
    /// Every upstream name defined, valid or not (no cascade of errors).
    defined: HashSet<&'a str>,
    /// conf.yaml, for what auth modes need.
    main: &'a MainFile,
    /// For per-route handles.
    metrics: &'a Metrics,
    /// For per-route series.
    dashboard: Option<&'a Dashboard>,
}

/// One parsed file: its path, its positions, its typed content.
pub(super) struct Parsed<T> {
    pub(super) path: PathBuf,
    pub(super) doc: MarkedDoc,
    pub(super) content: T,
}

impl<T> Parsed<T> {
    /// A fingerprint of the (expanded) values at these top-level keys, and
    /// of `extra`: equal fingerprints mean the same config for that part.
    pub(super) fn fingerprint(&self, keys: &[&str], extra: &str) -> u64 {
        let mut h = DefaultHasher::new();
        for k in keys {
            let v = self.doc.value.get(k).cloned().unwrap_or_default();
            serde_yaml::to_string(&v).unwrap_or_default().hash(&mut h);
        }
        extra.hash(&mut h);
        h.finish()
    }
}

impl<T> Parsed<T> {
    pub(super) fn err(&self, key: &str, message: impl std::fmt::Display) -> ConfigError {
        ConfigError::at(self.doc.position(key), format!("`{key}`: {message}")).in_file(&self.path)
    }
}

impl Compiler<'_> {
    pub(super) fn read<T: DeserializeOwned>(&mut self, path: &Path) -> Option<Parsed<T>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                self.errors
                    .push(ConfigError::file(path, format!("cannot read: {e}")));
                return None;
            }
        };
        text.hash(&mut self.hasher);
        let doc = match MarkedDoc::parse(&text, self.env) {
            Ok(d) => d,
            Err(errs) => {
                self.errors
                    .extend(errs.into_iter().map(|e| e.in_file(path)));
                return None;
            }
        };
        let value = if doc.value.is_null() {
            serde_yaml::Value::Mapping(Default::default())
        } else {
            doc.value.clone()
        };
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(content) => Some(Parsed {
                path: path.to_path_buf(),
                doc,
                content,
            }),
            Err(e) => {
                let path_text = e.path().to_string();
                let key = if path_text == "." {
                    String::new()
                } else {
                    path_text
                };
                let inner = e.into_inner().to_string();
                let shown = if key.is_empty() {
                    "(top level)".to_string()
                } else {
                    key.clone()
                };
                self.errors.push(
                    ConfigError::at(doc.position(&key), format!("`{shown}`: {inner}"))
                        .in_file(path),
                );
                None
            }
        }
    }

    fn compile(&mut self, conf_path: &Path, metrics: &Metrics) -> Option<Runtime> {
        let main: Parsed<MainFile> = self.read(conf_path)?;
        let base = conf_path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let server = self.server_settings(&main, &base);
        let settings = self.settings(&main);
        let auth_print = main.fingerprint(&["jwt", "tokenginx", "oauth", "forward_identity"], "");
        let auth = match self.previous.filter(|p| p.fingerprints.auth == auth_print) {
            Some(p) => Arc::clone(&p.auth),
            None => Arc::new(self.auth(&main, metrics)),
        };
        let limiter_print = main.fingerprint(&["rate_limit"], "");
        let limiter = match self
            .previous
            .filter(|p| p.fingerprints.limiter == limiter_print)
        {
            Some(p) => Arc::clone(&p.limiter),
            None => Arc::new(self.limiter(&main, metrics)),
        };
        let access_log = self.access_log(&main, &base);
        let routes_dir = resolve(&base, &main.content.routes_dir);
        let mut files = vec![conf_path.to_path_buf()];
        // Certificate files are watched too: a renewed certificate reloads.
        files.extend(
            server
                .listeners
                .iter()
                .flat_map(|l| l.tls.iter().flatten())
                .flat_map(|(c, k)| [c.clone(), k.clone()]),
        );
        let route_paths = match list_yaml(&routes_dir) {
            Ok(p) => p,
            Err(e) => {
                self.errors.push(main.err(
                    "routes_dir",
                    format!("cannot list {}: {e}", routes_dir.display()),
                ));
                Vec::new()
            }
        };
        let mut parsed_routes: Vec<Parsed<RouteFile>> = Vec::new();
        for p in route_paths {
            files.push(p.clone());
            if let Some(parsed) = self.read::<RouteFile>(&p) {
                parsed_routes.push(parsed);
            }
        }
        let dashboard = self.dashboard(&main);
        let resolver = self.resolver_spec(&main);
        let (pools, pool_prints) = self.pools(&parsed_routes, metrics, &resolver);
        let inputs = RouteInputs {
            pools: &pools,
            defined: parsed_routes
                .iter()
                .flat_map(|f| f.content.upstreams.keys().map(String::as_str))
                .collect(),
            main: &main.content,
            metrics,
            dashboard: dashboard.as_deref(),
        };
        let (routes, table) = self.routes(&parsed_routes, &inputs);
        let (api_keys, consumers_dir) = self.api_keys(&main, &base, &mut files);
        let traces = self.tracing(&main, metrics);
        let acme_print = main.fingerprint(&["acme", "tokenginx"], "");
        let acme = self.acme(&main, &server, &auth, metrics, acme_print);
        files.append(&mut self.extra_files);
        let running = self.previous.map_or(0, |p| p.routes.len());
        if routes.is_empty()
            && running > 0
            && !main.content.allow_empty_routes
            && self.errors.is_empty()
        {
            self.errors.push(main.err(
                "routes_dir",
                format!(
                    "{} holds no route while {running} are serving; refused (set `allow_empty_routes: true` to allow)",
                    routes_dir.display()
                ),
            ));
        }
        Some(Runtime {
            version: format!("{:016x}", self.hasher.finish()),
            server,
            settings,
            auth,
            limiter,
            access_log,
            log: None,
            routes,
            table,
            pools,
            files,
            routes_dir,
            api_keys,
            consumers_dir,
            traces,
            dashboard,
            acme,
            fingerprints: Fingerprints {
                auth: auth_print,
                limiter: limiter_print,
                pools: pool_prints,
                acme: acme_print,
            },
        })
    }

    fn server_settings(&mut self, main: &Parsed<MainFile>, base: &Path) -> ServerSettings {
        let m = &main.content;
        let mut conf = ServerConf::default();
        let path_of = |s: &String| resolve(base, s).to_string_lossy().into_owned();
        if let Some(v) = m.version {
            conf.version = v;
        }
        if let Some(v) = m.daemon {
            conf.daemon = v;
        }
        conf.error_log = m.error_log.as_ref().map(path_of);
        if let Some(v) = &m.pid_file {
            conf.pid_file = path_of(v);
        }
        if let Some(v) = &m.upgrade_sock {
            conf.upgrade_sock = path_of(v);
        }
        conf.user.clone_from(&m.user);
        conf.group.clone_from(&m.group);
        match m.threads {
            Some(0) => self.errors.push(main.err("threads", "must be at least 1")),
            Some(t) => conf.threads = t,
            None => {}
        }
        if let Some(v) = m.work_stealing {
            conf.work_stealing = v;
        }
        conf.grace_period_seconds = m.grace_period_seconds;
        conf.graceful_shutdown_timeout_seconds = m.graceful_shutdown_timeout_seconds;
        if let Some(v) = m.upstream_keepalive_pool_size {
            conf.upstream_keepalive_pool_size = v;
        }
        conf.ca_file = m.ca_file.as_ref().map(path_of);

        let mut listeners = Vec::new();
        let mut certs = HashMap::new();
        if m.listeners.is_empty() {
            self.errors
                .push(main.err("listeners", "at least one listener is required"));
        }
        for (i, l) in m.listeners.iter().enumerate() {
            let key = format!("listeners[{i}].addr");
            let Some(addr) = self.socket_addr(main, &key, &l.addr) else {
                continue;
            };
            let tls = l.tls.as_ref().map(|t| {
                std::iter::once((&t.cert, &t.key))
                    .chain(t.certificates.iter().map(|c| (&c.cert, &c.key)))
                    .map(|(c, k)| (resolve(base, c), resolve(base, k)))
                    .collect::<Vec<_>>()
            });
            if let Some(pairs) = &tls {
                match CertSet::load(pairs) {
                    Ok(set) => {
                        certs.insert(addr, Arc::new(set));
                    }
                    Err(e) => self
                        .errors
                        .push(main.err(&format!("listeners[{i}].tls"), e)),
                }
            }
            listeners.push(Listener { addr, tls });
        }
        let admin = m
            .admin
            .as_ref()
            .and_then(|a| self.socket_addr(main, "admin", a));
        if let (Some(a), true) = (admin, listeners.iter().any(|l| Some(l.addr) == admin)) {
            self.errors
                .push(main.err("admin", format!("{a} is also a public listener")));
        }
        ServerSettings {
            pingora: conf,
            listeners,
            certs,
            admin,
            h2c: m.h2c,
        }
    }

    fn socket_addr<T>(&mut self, file: &Parsed<T>, key: &str, text: &str) -> Option<SocketAddr> {
        match text.to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(a)) => Some(a),
            Ok(None) | Err(_) => {
                self.errors
                    .push(file.err(key, format!("`{text}` is not a valid ip:port")));
                None
            }
        }
    }

    fn settings(&mut self, main: &Parsed<MainFile>) -> Settings {
        let m = &main.content;
        let trusted_proxies = self.cidrs(main, "trusted_proxies", &m.trusted_proxies);
        let client_ip_header = m.client_ip_header.as_ref().and_then(|h| {
            HeaderName::try_from(h.as_str())
                .map_err(|_| {
                    self.errors
                        .push(main.err("client_ip_header", "not a valid header name"))
                })
                .ok()
        });
        if m.max_header_bytes < 1024 {
            self.errors
                .push(main.err("max_header_bytes", "must be at least 1024"));
        }
        if m.max_uri_bytes < 16 {
            self.errors
                .push(main.err("max_uri_bytes", "must be at least 16"));
        }
        self.millis(
            main,
            "client_body_timeout_ms",
            m.client_body_timeout_ms,
            100,
            3_600_000,
        );
        self.millis(
            main,
            "client_header_timeout_ms",
            m.client_header_timeout_ms,
            100,
            3_600_000,
        );
        if !(1..=3600).contains(&m.keepalive_timeout_seconds) {
            self.errors
                .push(main.err("keepalive_timeout_seconds", "must be between 1 and 3600"));
        }
        if m.max_request_body_bytes == 0 {
            self.errors
                .push(main.err("max_request_body_bytes", "must be greater than 0"));
        }
        Settings {
            trusted_proxies,
            client_ip_header,
            security_headers: m.security_headers,
            max_request_body_bytes: m.max_request_body_bytes,
            max_uri_bytes: m.max_uri_bytes,
            max_header_bytes: m.max_header_bytes,
            client_body_timeout: Duration::from_millis(m.client_body_timeout_ms),
            client_header_timeout: Duration::from_millis(m.client_header_timeout_ms),
            allow_path_params: m.path_params == PathParams::Allow,
            forwarded_header: m.forwarded_header,
            keepalive_timeout_seconds: m.keepalive_timeout_seconds,
        }
    }

    fn cidrs<T>(&mut self, file: &Parsed<T>, key: &str, items: &[String]) -> Vec<IpNet> {
        let mut out = Vec::new();
        for (i, text) in items.iter().enumerate() {
            match parse_cidr(text) {
                Some(net) => out.push(net),
                None => self.errors.push(file.err(
                    &format!("{key}[{i}]"),
                    format!("`{text}` is not a valid IP or CIDR"),
                )),
            }
        }
        out
    }

    fn pools(
        &mut self,
        files: &[Parsed<RouteFile>],
        metrics: &Metrics,
        resolver: &ResolverSpec,
    ) -> (Pools, HashMap<String, u64>) {
        let mut pools = BTreeMap::new();
        let mut prints = HashMap::new();
        let mut defined_in: HashMap<&str, &Path> = HashMap::new();
        for f in files {
            for (name, up) in &f.content.upstreams {
                let key = format!("upstreams.{name}");
                if let Some(other) = defined_in.insert(name, &f.path) {
                    self.errors.push(f.err(
                        &key,
                        format!(
                            "upstream `{name}` is already defined in {}",
                            other.display()
                        ),
                    ));
                    continue;
                }
                let print = {
                    let mut h = DefaultHasher::new();
                    let v = f
                        .doc
                        .value
                        .get("upstreams")
                        .and_then(|u| u.get(name))
                        .cloned()
                        .unwrap_or_default();
                    serde_yaml::to_string(&v).unwrap_or_default().hash(&mut h);
                    // A pool resolving names is rebuilt when the resolver changes.
                    format!("{resolver:?}").hash(&mut h);
                    h.finish()
                };
                prints.insert(name.clone(), print);
                let reused = self
                    .previous
                    .filter(|p| p.fingerprints.pools.get(name) == Some(&print))
                    .and_then(|p| p.pools.get(name))
                    .map(|(pool, spec)| (Arc::clone(pool), spec.clone()));
                if let Some(pool) =
                    reused.or_else(|| self.pool(f, &key, name, up, metrics, resolver))
                {
                    pools.insert(name.clone(), pool);
                }
            }
        }
        (pools, prints)
    }

    fn upstream_tls(&mut self, f: &Parsed<RouteFile>, key: &str, up: &UpstreamFile) -> UpstreamTls {
        let uses_tls = up.ca_file.is_some()
            || up.client_cert.is_some()
            || up.client_key.is_some()
            || !up.verify;
        if uses_tls && !up.tls {
            self.errors.push(f.err(
                key,
                "`ca_file`, `client_cert`, `client_key` and `verify` need `tls: true`",
            ));
        }
        let ca = up.ca_file.as_ref().and_then(|p| {
            let path = resolve(&self.base, p);
            let certs = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|pem| X509::stack_from_pem(&pem).map_err(|e| e.to_string()))
                .and_then(|c| {
                    if c.is_empty() {
                        Err("no certificate in it".into())
                    } else {
                        Ok(c)
                    }
                });
            certs
                .map_err(|e| {
                    self.errors.push(f.err(
                        &format!("{key}.ca_file"),
                        format!("{}: {e}", path.display()),
                    ))
                })
                .ok()
                .map(|c| Arc::new(c.into_boxed_slice()))
        });
        let client_cert = match (&up.client_cert, &up.client_key) {
            (Some(c), Some(k)) => {
                let (c, k) = (resolve(&self.base, c), resolve(&self.base, k));
                match crate::tls::CertKey::load(&c, &k) {
                    Ok(ck) => Some(Arc::new(ck.into_pingora())),
                    Err(e) => {
                        self.errors.push(f.err(&format!("{key}.client_cert"), e));
                        None
                    }
                }
            }
            (None, None) => None,
            _ => {
                self.errors
                    .push(f.err(key, "`client_cert` and `client_key` go together"));
                None
            }
        };
        UpstreamTls {
            ca,
            client_cert,
            verify: up.verify,
        }
    }

    /// conf.yaml's `tracing`: the running exporter when its settings did
    /// not change (its queue and task go on), else a new one.
    fn tracing(&mut self, main: &Parsed<MainFile>, metrics: &Metrics) -> Option<Arc<Exporter>> {
        let t = main.content.tracing.as_ref()?;
        let ok = t
            .otlp_endpoint
            .parse::<http::Uri>()
            .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
        if !ok {
            self.errors.push(main.err(
                "tracing.otlp_endpoint",
                format!("`{}` is not an http(s) URL", t.otlp_endpoint),
            ));
        }
        if !(0.0..=1.0).contains(&t.sample_ratio) {
            self.errors
                .push(main.err("tracing.sample_ratio", "must be between 0 and 1"));
        }
        if t.queue_size == 0 || t.queue_size > 1_000_000 {
            self.errors
                .push(main.err("tracing.queue_size", "must be between 1 and 1000000"));
        }
        self.millis(main, "tracing.timeout_ms", t.timeout_ms, 1, 60_000);
        let spec = TracingSpec {
            endpoint: t.otlp_endpoint.clone(),
            sample_ratio: t.sample_ratio,
            queue: t.queue_size,
            service_name: t.service_name.clone(),
            timeout: Duration::from_millis(t.timeout_ms),
        };
        if let Some(running) = self
            .previous
            .and_then(|p| p.traces.as_ref())
            .filter(|e| e.spec == spec)
        {
            return Some(Arc::clone(running));
        }
        let exports = ["ok", "error"].map(|r| metrics.trace_exports.with_label_values(&[r]));
        Some(Arc::new(Exporter::new(
            spec,
            metrics.trace_spans_dropped.clone(),
            exports,
        )))
    }

    fn access_log(&mut self, main: &Parsed<MainFile>, base: &Path) -> Option<AccessLogSpec> {
        let f = &main.content.access_log;
        if f.format == LogFormat::Off {
            return None;
        }
        let dest = match &f.path {
            Some(p) if p.is_empty() => {
                self.errors
                    .push(main.err("access_log.path", "must not be empty (use null for stdout)"));
                Destination::Stdout
            }
            Some(p) => Destination::File(resolve(base, p)),
            None => Destination::Stdout,
        };
        let mut redact_query = f.redact_query.clone();
        // The login callback's code and state are secrets whatever the
        // operator's list says (SPEC §6).
        for always in ["code", "state"] {
            if !redact_query.iter().any(|r| r == always) {
                redact_query.push(always.to_string());
            }
        }
        Some(AccessLogSpec { dest, redact_query })
    }

    fn pool(
        &mut self,
        f: &Parsed<RouteFile>,
        key: &str,
        name: &str,
        up: &UpstreamFile,
        metrics: &Metrics,
        resolver: &ResolverSpec,
    ) -> Option<(Arc<Pool>, HealthSpec)> {
        let before = self.errors.len();
        if !is_label_safe(name) {
            self.errors.push(f.err(
                key,
                "upstream names may use only letters, digits, `_`, `-` and `.`",
            ));
        }
        if up.backends.is_empty() {
            self.errors.push(f.err(
                &format!("{key}.backends"),
                "at least one backend is required",
            ));
        }
        let (backends, targets) = self.backend_entries(f, key, up);
        let hash_key = match (&up.balance, &up.hash_key) {
            (Balance::Hash, None) => {
                self.errors
                    .push(f.err(&format!("{key}.balance"), "`hash` needs `hash_key`"));
                None
            }
            (Balance::Hash, Some(k)) => HashKey::parse(k).or_else(|| {
                self.errors.push(f.err(
                    &format!("{key}.hash_key"),
                    format!("`{k}` is not one of ip, user, header:NAME, cookie:NAME"),
                ));
                None
            }),
            (_, Some(_)) => {
                self.errors
                    .push(f.err(&format!("{key}.hash_key"), "only used with `balance: hash`"));
                None
            }
            (_, None) => None,
        };
        self.millis(
            f,
            &format!("{key}.connect_timeout_ms"),
            up.connect_timeout_ms,
            1,
            600_000,
        );
        self.millis(
            f,
            &format!("{key}.read_timeout_ms"),
            up.read_timeout_ms,
            1,
            86_400_000,
        );
        if up.max_ejected_percent > 100 {
            self.errors.push(f.err(
                &format!("{key}.max_ejected_percent"),
                format!("{} is not a percentage (0..=100)", up.max_ejected_percent),
            ));
        }
        if up.eject_after_failures == 0 {
            self.errors
                .push(f.err(&format!("{key}.eject_after_failures"), "must be at least 1"));
        }
        if !(1..=3600).contains(&up.eject_window_seconds) {
            self.errors.push(f.err(
                &format!("{key}.eject_window_seconds"),
                format!("{} s is outside 1..=3600 s", up.eject_window_seconds),
            ));
        }
        for (k, limit) in [
            ("max_in_flight", up.max_in_flight),
            ("max_in_flight_per_backend", up.max_in_flight_per_backend),
        ] {
            if limit == Some(0) {
                self.errors.push(f.err(
                    &format!("{key}.{k}"),
                    "must be at least 1 (omit it for no limit)",
                ));
            }
        }
        let breaker = self.breaker_policy(f, key, up);
        let retry = self.retry_policy(f, key, up);
        let tls_identity = self.upstream_tls(f, key, up);
        if up.sni.is_some() && !up.tls {
            self.errors
                .push(f.err(&format!("{key}.sni"), "only used with `tls: true`"));
        }
        let health = match &up.health_check {
            Some(h) => {
                let hkey = format!("{key}.health_check");
                self.millis(
                    f,
                    &format!("{hkey}.interval_ms"),
                    h.interval_ms,
                    100,
                    3_600_000,
                );
                self.millis(f, &format!("{hkey}.timeout_ms"), h.timeout_ms, 1, 600_000);
                if let Some(p) = &h.path {
                    if !p.starts_with('/') || p.parse::<http::Uri>().is_err() {
                        self.errors
                            .push(f.err(&format!("{hkey}.path"), "must be a path starting with /"));
                    }
                }
                HealthSpec {
                    path: h.path.clone(),
                    host: h.host.clone().unwrap_or_else(|| "localhost".into()),
                    interval: Duration::from_millis(h.interval_ms),
                    timeout: Duration::from_millis(h.timeout_ms),
                }
            }
            None => HealthSpec {
                path: None,
                host: "localhost".into(),
                interval: Duration::from_secs(2),
                timeout: Duration::from_secs(1),
            },
        };
        if self.errors.len() > before {
            return None;
        }
        let settings = PoolSettings {
            connect_timeout: Duration::from_millis(up.connect_timeout_ms),
            read_timeout: Duration::from_millis(up.read_timeout_ms),
            retry,
            ejection: EjectionPolicy {
                max_ejected_percent: up.max_ejected_percent,
                after_timeouts: up.eject_after_failures,
                window: Duration::from_secs(up.eject_window_seconds),
            },
            tls: up.tls,
            sni: up.sni.clone().unwrap_or_default(),
            hash_key: hash_key.unwrap_or(HashKey::Ip),
            http2: up.http2,
            tls_identity,
            max_in_flight: up.max_in_flight.unwrap_or(usize::MAX),
            max_in_flight_per_backend: up.max_in_flight_per_backend.unwrap_or(usize::MAX),
            breaker,
        };
        // The retry series start at zero, one per reason the policy names.
        for failure in settings.retry.on.failures() {
            metrics
                .upstream_retries
                .with_label_values(&[name, &failure.label()]);
        }
        metrics.upstream_retry_overflow.with_label_values(&[name]);
        let panics = metrics.upstream_panic.with_label_values(&[name]);
        let shed = metrics.upstream_shed.with_label_values(&[name]);
        let discovery = (!targets.is_empty()).then(|| {
            let first = discovery::resolve_now(resolver, &targets);
            Discovery::new(
                name,
                targets,
                backends.clone(),
                Duration::from_millis(up.resolve_interval_ms),
                resolver.clone(),
                RESULTS.map(|r| metrics.dns_resolutions.with_label_values(&[name, r])),
                &first,
            )
        });
        let members = discovery.as_ref().map_or(backends, Discovery::members);
        let mut pool = Pool::new(
            name.to_string(),
            members,
            up.balance,
            settings,
            BackendMetrics::of(name, metrics),
            [panics, shed],
        );
        if let Some(d) = discovery {
            pool = pool.with_discovery(d);
        }
        Some((Arc::new(pool), health))
    }

    pub(super) fn millis<T>(&mut self, f: &Parsed<T>, key: &str, value: u64, min: u64, max: u64) {
        if !(min..=max).contains(&value) {
            self.errors
                .push(f.err(key, format!("{value} ms is outside {min}..={max} ms")));
        }
    }

    fn routes(
        &mut self,
        files: &[Parsed<RouteFile>],
        inputs: &RouteInputs,
    ) -> (Vec<Route>, RouteTable) {
        let mut routes: Vec<Route> = Vec::new();
        let mut names: HashMap<String, PathBuf> = HashMap::new();
        let mut table = RouteTable::default();
        let mut by_host_prefix: HashMap<(Option<String>, String), Vec<usize>> = HashMap::new();
        for f in files {
            for (i, entry) in f.content.routes.iter().enumerate() {
                let key = format!("routes[{i}]");
                if let Some(other) = names.insert(entry.name.clone(), f.path.clone()) {
                    self.errors.push(f.err(
                        &format!("{key}.name"),
                        format!(
                            "route `{}` is already defined in {}",
                            entry.name,
                            other.display()
                        ),
                    ));
                    continue;
                }
                let Some(route) = self.route(f, &key, entry, inputs) else {
                    continue;
                };
                let slot = by_host_prefix
                    .entry((route.host.clone(), route.prefix.clone()))
                    .or_default();
                if let Some(&clash) = slot.iter().find(|&&o| methods_overlap(&routes[o], &route)) {
                    self.errors.push(f.err(
                        &format!("{key}.prefix"),
                        format!(
                            "route `{}` has the same host, prefix and methods as route `{}`",
                            route.name, routes[clash].name
                        ),
                    ));
                    continue;
                }
                slot.push(routes.len());
                table.insert(route.host.as_deref(), &route.prefix, routes.len());
                routes.push(route);
            }
        }
        (routes, table)
    }

    fn route(
        &mut self,
        f: &Parsed<RouteFile>,
        key: &str,
        e: &RouteEntry,
        inputs: &RouteInputs,
    ) -> Option<Route> {
        let before = self.errors.len();
        if !is_label_safe(&e.name) || e.name == NO_ROUTE {
            self.errors.push(f.err(
                &format!("{key}.name"),
                format!(
                    "`{}`: use letters, digits, `_`, `-`, `.` (and not `{NO_ROUTE}`)",
                    e.name
                ),
            ));
        }
        match normalize(&e.prefix) {
            Ok(n) if n == e.prefix.as_str() => {}
            Ok(n) => self.errors.push(f.err(
                &format!("{key}.prefix"),
                format!("`{}` is not in normal form; write `{n}`", e.prefix),
            )),
            Err(err) => self
                .errors
                .push(f.err(&format!("{key}.prefix"), err.message())),
        }
        let host = e.host.as_ref().map(|h| h.to_ascii_lowercase());
        if let Some(h) = &host {
            let bare = h.strip_prefix("*.").unwrap_or(h);
            if bare.is_empty() || bare.contains('*') || bare.contains(':') || bare.contains('/') {
                self.errors.push(f.err(
                    &format!("{key}.host"),
                    format!("`{h}` is not a host name or `*.suffix` wildcard"),
                ));
            }
        }
        let methods = e.methods.as_ref().map(|list| {
            list.iter()
                .enumerate()
                .filter_map(|(j, m)| {
                    let upper = m.to_ascii_uppercase();
                    Method::from_bytes(upper.as_bytes())
                        .map_err(|_| {
                            self.errors.push(f.err(
                                &format!("{key}.methods[{j}]"),
                                format!("`{m}` is not a method"),
                            ))
                        })
                        .ok()
                })
                .collect::<Vec<_>>()
        });
        let aggregate = self.route_aggregate(f, key, e, inputs.metrics, |this, k, name| {
            this.pool_named(f, k, name, inputs)
        });
        let pool = match (&e.upstream, &aggregate) {
            (Some(name), _) => self.pool_named(f, &format!("{key}.upstream"), name, inputs),
            // An aggregate's metrics and logs name its first part's upstream.
            (None, Some(a)) => a.parts.first().map(|p| Arc::clone(&p.pool)),
            (None, None) => {
                if e.aggregate.is_none() {
                    self.errors.push(f.err(
                        key,
                        "`upstream` is required (unless the route has `aggregate`)",
                    ));
                }
                None
            }
        };
        let fallback_pool = e
            .fallback_upstream
            .as_ref()
            .and_then(|name| self.pool_named(f, &format!("{key}.fallback_upstream"), name, inputs));
        let fallback = self.route_fallback(f, key, e, fallback_pool, inputs.metrics);
        let cors = self.route_cors(f, key, e, methods.as_deref());
        let rewrite = self.route_rewrite(f, key, e);
        let validate = self.route_schema(f, key, e);
        let ip_allow = self.cidrs(f, &format!("{key}.ip_allow"), &e.ip_allow);
        let ip_deny = self.cidrs(f, &format!("{key}.ip_deny"), &e.ip_deny);
        let headers = self.header_rules(f, &format!("{key}.headers"), e);
        let policy = self.route_policy(f, key, e, inputs.main);
        let limits = self.route_limits(f, key, e, inputs.metrics);
        let pool = pool?;
        if self.errors.len() > before {
            return None;
        }
        if let Some(ms) = e.timeout_ms {
            self.millis(f, &format!("{key}.timeout_ms"), ms, 1, 86_400_000);
        }
        let mut reasons = Vec::new();
        if policy.mode != crate::auth::AuthMode::None {
            reasons.extend(Reason::TOKEN);
        }
        if policy.api_key {
            reasons.push(Reason::ApiKey);
        }
        if !ip_allow.is_empty() || !ip_deny.is_empty() {
            reasons.push(Reason::Ip);
        }
        Some(Route {
            metrics: inputs.metrics.route(&e.name, &pool.name, &reasons),
            live: inputs.dashboard.map(|d| d.route(&e.name)),
            name: e.name.clone(),
            prefix: canonical_prefix(&e.prefix),
            host,
            methods,
            pool,
            strip_prefix: e.strip_prefix,
            deadline: e.timeout_ms.map(Duration::from_millis),
            ip_allow,
            ip_deny,
            headers,
            policy,
            limits,
            fallback,
            cors,
            rewrite,
            validate,
            aggregate,
            file: f.path.clone(),
        })
    }

    /// The valid pool called `name`, or an error at `key` if none is.
    fn pool_named(
        &mut self,
        f: &Parsed<RouteFile>,
        key: &str,
        name: &str,
        inputs: &RouteInputs,
    ) -> Option<Arc<Pool>> {
        match inputs.pools.get(name) {
            Some((p, _)) => Some(Arc::clone(p)),
            // Defined but invalid: its own errors are reported already.
            None if inputs.defined.contains(name) => None,
            None => {
                self.errors
                    .push(f.err(key, format!("no upstream named `{name}`")));
                None
            }
        }
    }

    fn header_rules(&mut self, f: &Parsed<RouteFile>, key: &str, e: &RouteEntry) -> HeaderRules {
        let h = &e.headers;
        HeaderRules {
            request_set: self.header_pairs(f, &format!("{key}.request_set"), &h.request_set),
            request_remove: self.header_names(
                f,
                &format!("{key}.request_remove"),
                &h.request_remove,
            ),
            response_set: self.header_pairs(f, &format!("{key}.response_set"), &h.response_set),
            response_remove: self.header_names(
                f,
                &format!("{key}.response_remove"),
                &h.response_remove,
            ),
        }
    }

    fn header_pairs(
        &mut self,
        f: &Parsed<RouteFile>,
        key: &str,
        map: &BTreeMap<String, String>,
    ) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        for (name, value) in map {
            let k = format!("{key}.{name}");
            match (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) {
                (Ok(n), Ok(v)) => out.push((n, v)),
                (Err(_), _) => self.errors.push(f.err(&k, "not a valid header name")),
                (_, Err(_)) => self.errors.push(f.err(&k, "not a valid header value")),
            }
        }
        out
    }

    fn header_names(
        &mut self,
        f: &Parsed<RouteFile>,
        key: &str,
        list: &[String],
    ) -> Vec<HeaderName> {
        let mut out = Vec::new();
        for (i, name) in list.iter().enumerate() {
            match HeaderName::try_from(name.as_str()) {
                Ok(n) => out.push(n),
                Err(_) => self
                    .errors
                    .push(f.err(&format!("{key}[{i}]"), "not a valid header name")),
            }
        }
        out
    }
}

fn methods_overlap(a: &Route, b: &Route) -> bool {
    match (&a.methods, &b.methods) {
        (Some(x), Some(y)) => x.iter().any(|m| y.contains(m)),
        _ => true,
    }
}

/// Metric label values come from config; keep them plain.
fn is_label_safe(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// `10.0.0.0/8`, or a bare address meaning that one host.
pub fn parse_cidr(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

pub(super) fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Every `*.yaml`/`*.yml` in `dir` that is not a directory, in name order.
/// A dangling or unreadable one is listed too, so that reading it fails
/// loudly instead of its routes vanishing.
pub(super) fn list_yaml(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_route_file_name(p) && !p.is_dir())
        .collect();
    out.sort();
    Ok(out)
}

/// Whether `path` names a route file: `*.yaml` or `*.yml`, not hidden (a
/// Kubernetes ConfigMap volume keeps its versions in `..data` and
/// `..<timestamp>` beside the links to them; editors keep `.name.swp`).
pub fn is_route_file_name(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"))
}
