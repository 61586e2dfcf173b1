//! The config files as operators write them: serde types that refuse
//! unknown keys. Nothing here is validated beyond its type; `compile` does
//! the rest and turns these into runtime structures.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::auth_file::{AuthSpec, JwtFile, SessionMode, TokenginxFile};
use super::limit_file::{RateLimitFile, RouteLimitsFile};
use super::oauth_file::OauthFile;

/// `conf.yaml`: Pingora's server keys and the gateway's own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MainFile {
    /// Pingora: config format version.
    #[serde(default)]
    pub version: Option<usize>,
    /// Pingora: run in the background (`-d` does the same).
    #[serde(default)]
    pub daemon: Option<bool>,
    /// Pingora: where the daemon writes its error log.
    #[serde(default)]
    pub error_log: Option<String>,
    /// Pingora: pid file of the daemon.
    #[serde(default)]
    pub pid_file: Option<String>,
    /// Pingora: Unix socket over which listeners are handed to a `-u` process.
    #[serde(default)]
    pub upgrade_sock: Option<String>,
    /// Pingora: user to drop to after binding.
    #[serde(default)]
    pub user: Option<String>,
    /// Pingora: group to drop to after binding.
    #[serde(default)]
    pub group: Option<String>,
    /// Pingora: worker threads per service.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Pingora: let idle threads steal work.
    #[serde(default)]
    pub work_stealing: Option<bool>,
    /// Pingora: seconds a stopping server keeps accepting before it closes listeners.
    #[serde(default)]
    pub grace_period_seconds: Option<u64>,
    /// Pingora: seconds in-flight requests get to finish after the grace period.
    #[serde(default)]
    pub graceful_shutdown_timeout_seconds: Option<u64>,
    /// Pingora: idle upstream connections kept for reuse.
    #[serde(default)]
    pub upstream_keepalive_pool_size: Option<usize>,
    /// Pingora: CA bundle for verifying upstream certificates.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Public listeners.
    pub listeners: Vec<ListenerFile>,
    /// Address of the admin service (`/metrics`, `/health/*`, `/status`).
    #[serde(default)]
    pub admin: Option<String>,
    /// Directory of route files, relative to conf.yaml.
    #[serde(default = "default_routes_dir")]
    pub routes_dir: String,
    /// Accept a reload that leaves no route while the running config has
    /// some (otherwise refused: an emptied directory is a mistake far more
    /// often than an intent).
    #[serde(default)]
    pub allow_empty_routes: bool,
    /// CIDRs whose X-Forwarded-For is believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Set `Forwarded` (RFC 7239) beside X-Forwarded-*.
    #[serde(default = "yes")]
    pub forwarded_header: bool,
    /// Header that carries the client IP, believed only from trusted proxies.
    #[serde(default)]
    pub client_ip_header: Option<String>,
    /// Adds nosniff, frame-options, referrer-policy (and HSTS on TLS).
    #[serde(default = "yes")]
    pub security_headers: bool,
    /// Largest request body accepted.
    #[serde(default = "default_max_body")]
    pub max_request_body_bytes: u64,
    /// Accept HTTP/2 without TLS (h2c, prior knowledge) on plain listeners.
    #[serde(default = "yes")]
    pub h2c: bool,
    /// Longest request target (path and query) accepted; longer gets 414.
    #[serde(default = "default_max_uri")]
    pub max_uri_bytes: usize,
    /// Whether `;` path parameters (`/a;x=1/b`) are forwarded or refused.
    #[serde(default)]
    pub path_params: PathParams,
    /// Largest total of request header names and values; larger gets 431.
    #[serde(default = "default_max_headers")]
    pub max_header_bytes: usize,
    /// Longest wait for the next bytes of a request body; slower gets 408.
    #[serde(default = "default_body_timeout")]
    pub client_body_timeout_ms: u64,
    /// Longest a request head (or an HTTP/2 preface and SETTINGS) may take
    /// to arrive, from its first byte; slower gets 408 and is closed.
    #[serde(default = "default_header_timeout")]
    pub client_header_timeout_ms: u64,
    /// Longest a client connection may sit idle between two requests (and
    /// wait for each read of the next request's head) before it is closed.
    #[serde(default = "default_keepalive_timeout")]
    pub keepalive_timeout_seconds: u64,
    /// Bearer-token verification.
    #[serde(default)]
    pub jwt: Option<JwtFile>,
    /// Session store.
    #[serde(default)]
    pub tokenginx: Option<TokenginxFile>,
    /// The resolver of backends given by name.
    #[serde(default)]
    pub dns: Option<DnsFile>,
    /// API keys: where they are found, consumers, TokenginX lookup.
    #[serde(default)]
    pub api_keys: Option<ApiKeysFile>,
    /// Trace export over OTLP/HTTP.
    #[serde(default)]
    pub tracing: Option<TracingFile>,
    /// The admin service's live dashboard.
    #[serde(default)]
    pub dashboard: DashboardFile,
    /// Certificates ordered and renewed over ACME.
    #[serde(default)]
    pub acme: Option<super::acme_file::AcmeFile>,
    /// The gateway as the OAuth 2.1 client of every app.
    #[serde(default)]
    pub oauth: Option<OauthFile>,
    /// Rate-limit store.
    #[serde(default)]
    pub rate_limit: Option<RateLimitFile>,
    /// The JSON access log.
    #[serde(default)]
    pub access_log: AccessLogFile,
    /// Claim -> upstream header; absent means `sub: X-User-Id`,
    /// `scope: X-User-Scopes`, `roles: X-User-Roles`.
    #[serde(default)]
    pub forward_identity: Option<BTreeMap<String, String>>,
}

fn default_routes_dir() -> String {
    "routes".into()
}
fn yes() -> bool {
    true
}
fn default_max_uri() -> usize {
    8192
}
fn default_max_headers() -> usize {
    32 * 1024
}
fn default_body_timeout() -> u64 {
    60_000
}
fn default_header_timeout() -> u64 {
    10_000
}
fn default_keepalive_timeout() -> u64 {
    60
}
fn default_max_body() -> u64 {
    10 * 1024 * 1024
}

/// What to do with `;` path parameters.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum PathParams {
    /// 400: Java servers strip them per segment and see another path.
    #[default]
    Refuse,
    /// Forwarded as they are (a dot-segment with one is still refused).
    Allow,
}

/// Access-log format.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// No access log.
    Off,
}

/// `access_log:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogFile {
    /// `json` or `off`.
    #[serde(default)]
    pub format: LogFormat,
    /// File to append to (relative to conf.yaml); absent: stdout.
    #[serde(default)]
    pub path: Option<String>,
    /// Query parameters whose values are replaced by `REDACTED`.
    #[serde(default = "default_redact")]
    pub redact_query: Vec<String>,
}

impl Default for AccessLogFile {
    fn default() -> Self {
        AccessLogFile {
            format: LogFormat::Json,
            path: None,
            redact_query: default_redact(),
        }
    }
}

fn default_redact() -> Vec<String> {
    [
        "access_token",
        "id_token",
        "refresh_token",
        "token",
        "code",
        "state",
        "password",
        "secret",
        "api_key",
        "apikey",
        "key",
        "sig",
        "signature",
    ]
    .map(String::from)
    .to_vec()
}

/// `circuit_breaker:` of an upstream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerFile {
    /// Failed share of a window that opens a backend's breaker.
    #[serde(default = "default_error_ratio")]
    pub error_ratio: f64,
    /// Requests a window needs before its ratio counts.
    #[serde(default = "default_min_requests")]
    pub min_requests: u32,
    /// Length of the measuring window.
    #[serde(default = "default_breaker_window")]
    pub window_seconds: u64,
    /// How long an open breaker lets nothing through.
    #[serde(default = "default_open_seconds")]
    pub open_seconds: u64,
    /// Trial requests of a half-open breaker.
    #[serde(default = "default_half_open")]
    pub half_open_requests: u32,
    /// Failures in a row that open a breaker at once, whatever the
    /// window's ratio (0: only the ratio).
    #[serde(default = "default_consecutive_failures")]
    pub consecutive_failures: u32,
}

fn default_consecutive_failures() -> u32 {
    5
}

fn default_error_ratio() -> f64 {
    0.5
}
fn default_min_requests() -> u32 {
    20
}
fn default_breaker_window() -> u64 {
    10
}
fn default_open_seconds() -> u64 {
    5
}
fn default_half_open() -> u32 {
    3
}

/// One public listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerFile {
    /// `ip:port` to bind.
    pub addr: String,
    /// Certificate and key for TLS termination.
    #[serde(default)]
    pub tls: Option<ListenerTlsFile>,
}

/// Certificate files of a TLS listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsFile {
    /// PEM certificate chain, relative to conf.yaml: the default certificate.
    pub cert: String,
    /// PEM private key, relative to conf.yaml.
    pub key: String,
    /// More certificates, chosen by SNI from the names they carry.
    #[serde(default)]
    pub certificates: Vec<CertFile>,
}

/// One more certificate of a TLS listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertFile {
    /// PEM certificate chain.
    pub cert: String,
    /// PEM private key.
    pub key: String,
}

/// One `routes/*.yaml` file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    /// Upstream pools defined in this file (usable from every file).
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamFile>,
    /// Routes, in the order written (match order is by host and prefix length).
    #[serde(default)]
    pub routes: Vec<RouteEntry>,
}

/// How a pool picks a backend.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// In turn, weights ignored.
    #[default]
    RoundRobin,
    /// In turn, in proportion to weights.
    Weighted,
    /// Fewest requests in flight (relative to weight).
    LeastConn,
    /// Consistent hashing on `hash_key`.
    Hash,
}

/// An upstream's `retry` policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryFile {
    /// What is retried: `connect_failure`, `reset`, `timeout`, statuses.
    #[serde(default = "default_retry_on")]
    pub on: Vec<RetryOnEntry>,
    /// Further attempts per request.
    #[serde(default = "default_retry_max")]
    pub max: u32,
    /// Backoff ceilings: the first, doubling up to the largest.
    #[serde(default)]
    pub backoff_ms: BackoffFile,
    /// Retries in flight as a share of the requests in flight.
    #[serde(default = "default_budget_percent")]
    pub budget_percent: u32,
}

/// One entry of `retry.on`: a failure name or a status.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RetryOnEntry {
    /// A status such as 503.
    Status(u64),
    /// `connect_failure`, `reset` or `timeout` (or a quoted status).
    Name(String),
}

impl std::fmt::Display for RetryOnEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RetryOnEntry::Status(s) => write!(f, "{s}"),
            RetryOnEntry::Name(n) => f.write_str(n),
        }
    }
}

/// `retry.backoff_ms`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffFile {
    /// Ceiling of the first retry's wait.
    #[serde(default = "default_backoff_base")]
    pub base: u64,
    /// Largest ceiling.
    #[serde(default = "default_backoff_max")]
    pub max: u64,
}

impl Default for BackoffFile {
    fn default() -> Self {
        BackoffFile {
            base: default_backoff_base(),
            max: default_backoff_max(),
        }
    }
}

fn default_retry_on() -> Vec<RetryOnEntry> {
    ["connect_failure", "reset", "timeout"]
        .map(|n| RetryOnEntry::Name(n.into()))
        .into()
}
fn default_retry_max() -> u32 {
    DEFAULT_RETRIES
}
fn default_backoff_base() -> u64 {
    25
}
fn default_backoff_max() -> u64 {
    250
}
fn default_budget_percent() -> u32 {
    20
}

/// An upstream pool.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    /// The servers of the pool.
    pub backends: Vec<BackendFile>,
    /// Longest time between two DNS resolutions of backends given by name.
    #[serde(default = "default_resolve_interval_ms")]
    pub resolve_interval_ms: u64,
    /// Selection algorithm.
    #[serde(default)]
    pub balance: Balance,
    /// For `hash`: `ip`, `user`, `header:NAME` or `cookie:NAME`.
    #[serde(default)]
    pub hash_key: Option<String>,
    /// Active health check; absent means a TCP connect check.
    #[serde(default)]
    pub health_check: Option<HealthCheckFile>,
    /// Connect timeout per attempt.
    #[serde(default = "default_connect_ms")]
    pub connect_timeout_ms: u64,
    /// Longest wait for the next bytes from the backend.
    #[serde(default = "default_read_ms")]
    pub read_timeout_ms: u64,
    /// Short form of `retry`: further attempts after a connect failure.
    #[serde(default)]
    pub retries: Option<u32>,
    /// Retry policy: what is retried, how often, backoff and budget.
    #[serde(default)]
    pub retry: Option<RetryFile>,
    /// Failed connects eject at most this share of the backends at once
    /// (never the last healthy one).
    #[serde(default = "default_max_ejected_percent")]
    pub max_ejected_percent: u32,
    /// Connect timeouts in a row (within `eject_window_seconds`) that eject a
    /// backend; a refused connect ejects at once.
    #[serde(default = "default_eject_after_failures")]
    pub eject_after_failures: u32,
    /// The window of `eject_after_failures`.
    #[serde(default = "default_eject_window_seconds")]
    pub eject_window_seconds: u64,
    /// Requests the pool may have in flight; more are answered 503 at once.
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    /// Requests each backend may have in flight; a backend at it is
    /// skipped, and with every backend at it the request is answered 503.
    #[serde(default)]
    pub max_in_flight_per_backend: Option<usize>,
    /// A circuit breaker per backend.
    #[serde(default)]
    pub circuit_breaker: Option<CircuitBreakerFile>,
    /// TLS to the backends.
    #[serde(default)]
    pub tls: bool,
    /// SNI (and certificate name) for TLS to the backends.
    #[serde(default)]
    pub sni: Option<String>,
    /// Speak HTTP/2 to the backends (gRPC): ALPN h2 over TLS, h2c (prior
    /// knowledge) over plain TCP.
    #[serde(default)]
    pub http2: bool,
    /// CA bundle (PEM) the backends' certificates must chain to; absent:
    /// the server's `ca_file` or the system roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Client certificate (PEM chain) for mutual TLS to the backends.
    #[serde(default)]
    pub client_cert: Option<String>,
    /// Key of `client_cert`.
    #[serde(default)]
    pub client_key: Option<String>,
    /// Verify the backends' certificates and names (turn off only for tests).
    #[serde(default = "yes")]
    pub verify: bool,
}

fn default_connect_ms() -> u64 {
    1000
}
fn default_read_ms() -> u64 {
    30_000
}
/// Further attempts of the default retry policy.
pub const DEFAULT_RETRIES: u32 = 2;
fn default_max_ejected_percent() -> u32 {
    50
}
fn default_eject_after_failures() -> u32 {
    3
}
fn default_eject_window_seconds() -> u64 {
    10
}

/// conf.yaml's `dashboard`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardFile {
    /// Whether requests feed the dashboard's per-route rings (only with
    /// an `admin` address, where the dashboard is served).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The most routes with a ring (68 KB each, allocated on the route's
    /// first request).
    #[serde(default = "default_dashboard_routes")]
    pub max_routes: usize,
}

impl Default for DashboardFile {
    fn default() -> Self {
        DashboardFile {
            enabled: true,
            max_routes: default_dashboard_routes(),
        }
    }
}

fn default_dashboard_routes() -> usize {
    100
}

/// conf.yaml's `tracing`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingFile {
    /// `http://collector:4318/v1/traces`.
    pub otlp_endpoint: String,
    /// Share of new traces sampled.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    /// Spans queued for export before new ones are dropped.
    #[serde(default = "default_trace_queue")]
    pub queue_size: usize,
    /// The `service.name` of the spans.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Longest one export may take.
    #[serde(default = "default_export_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_sample_ratio() -> f64 {
    1.0
}
fn default_trace_queue() -> usize {
    4096
}
fn default_service_name() -> String {
    "gatehouse".into()
}
fn default_export_timeout_ms() -> u64 {
    2000
}

/// conf.yaml's `api_keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeysFile {
    /// Where keys are looked for, in order: `header:NAME`, `authorization:SCHEME`.
    #[serde(default = "default_key_sources")]
    pub sources: Vec<String>,
    /// Directory of the consumer files, relative to conf.yaml.
    #[serde(default = "default_consumers_dir")]
    pub consumers_dir: String,
    /// TokenginX key of a consumer record (`{sha256}` of the key).
    #[serde(default)]
    pub lookup_key: Option<String>,
}

/// Where keys are looked for without `api_keys.sources`.
pub fn default_key_sources() -> Vec<String> {
    vec!["header:X-Api-Key".into(), "authorization:ApiKey".into()]
}

/// The consumers directory without `api_keys.consumers_dir`.
pub fn default_consumers_dir() -> String {
    "consumers".into()
}

/// One `consumers/*.yaml` file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConsumersFile {
    /// Its consumers.
    #[serde(default)]
    pub consumers: Vec<ConsumerEntry>,
}

/// One consumer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerEntry {
    /// Unique name: the identity and `X-Consumer-Id`.
    pub name: String,
    /// Lower-case hex SHA-256 of its key (`gatehouse hash-key`).
    pub key_sha256: String,
    /// Granted scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Roles.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// conf.yaml's `dns`: who resolves backends given by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsFile {
    /// `ip:port` of each nameserver; absent: `/etc/resolv.conf`.
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// Longest one query may take.
    #[serde(default = "default_dns_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_dns_timeout_ms() -> u64 {
    2000
}

fn default_resolve_interval_ms() -> u64 {
    5000
}

/// A backend: `ip:port` or `host:port`, `{addr, weight}`, or
/// `{dns, port, weight}` for every address of a name.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum BackendFile {
    /// `ip:port` with weight 1.
    Addr(String),
    /// `ip:port` with a weight.
    Weighted {
        /// `ip:port`.
        addr: String,
        /// Relative share of traffic.
        #[serde(default = "one")]
        weight: u32,
    },
    /// A backend per A/AAAA record of `dns`.
    Dns {
        /// The name.
        dns: String,
        /// The port of every address.
        port: u16,
        /// Relative share of traffic of each address.
        #[serde(default = "one")]
        weight: u32,
    },
}

fn one() -> u32 {
    1
}

/// Active health check of a pool.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckFile {
    /// HTTP path to GET; absent means a TCP connect check.
    #[serde(default)]
    pub path: Option<String>,
    /// Time between checks.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Longest a check may take.
    #[serde(default = "default_check_timeout_ms")]
    pub timeout_ms: u64,
    /// Host header of HTTP checks.
    #[serde(default)]
    pub host: Option<String>,
}

fn default_interval_ms() -> u64 {
    2000
}
fn default_check_timeout_ms() -> u64 {
    1000
}

/// One route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteEntry {
    /// Unique name; the `route` label in metrics.
    pub name: String,
    /// Path prefix, matched on segment boundaries.
    pub prefix: String,
    /// Exact host or `*.suffix` wildcard.
    #[serde(default)]
    pub host: Option<String>,
    /// Allowed methods; absent allows all.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Name of the upstream pool (an `aggregate` route may leave it out).
    #[serde(default)]
    pub upstream: Option<String>,
    /// Remove the prefix before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Deadline of the whole request, retries included (504 after it).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Client CIDRs allowed; empty allows everyone.
    #[serde(default)]
    pub ip_allow: Vec<String>,
    /// Client CIDRs refused.
    #[serde(default)]
    pub ip_deny: Vec<String>,
    /// Header edits.
    #[serde(default)]
    pub headers: HeadersFile,
    /// How callers authenticate.
    #[serde(default)]
    pub auth: AuthSpec,
    /// Whether a JWT's session must be alive in TokenginX.
    #[serde(default)]
    pub session: SessionMode,
    /// Scopes, all required.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Roles, any one suffices.
    #[serde(default)]
    pub roles: Vec<String>,
    /// `401`, or `redirect:URL` for browser navigations (`{uri}` = original URI).
    #[serde(default)]
    pub on_unauthenticated: Option<String>,
    /// Token-bucket limits.
    #[serde(default)]
    pub rate_limit: Option<RouteLimitsFile>,
    /// The answer served when the upstream cannot give one.
    #[serde(default)]
    pub fallback: Option<FallbackFile>,
    /// The upstream that serves when the route's own cannot.
    #[serde(default)]
    pub fallback_upstream: Option<String>,
    /// Cross-origin resource sharing.
    #[serde(default)]
    pub cors: Option<CorsFile>,
    /// A regex rewrite of the normalised path, after matching.
    #[serde(default)]
    pub rewrite: Option<RewriteFile>,
    /// A JSON Schema the request body must match.
    #[serde(default)]
    pub validate: Option<ValidateFile>,
    /// Answer GETs with the JSON of several upstream paths at once.
    #[serde(default)]
    pub aggregate: Option<AggregateFile>,
}

/// A route's `aggregate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateFile {
    /// The parts, fetched in parallel.
    pub parts: Vec<AggregatePartFile>,
    /// Longest the whole fan-out may take.
    #[serde(default = "default_aggregate_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_aggregate_timeout_ms() -> u64 {
    2000
}

/// One part of an `aggregate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregatePartFile {
    /// Its key in the answer.
    pub name: String,
    /// The upstream it is fetched from.
    pub upstream: String,
    /// The upstream path.
    pub path: String,
    /// Whether its failure fails the request (else it becomes `null`).
    #[serde(default = "default_required")]
    pub required: bool,
}

fn default_required() -> bool {
    true
}

/// A route's `validate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateFile {
    /// The schema file (JSON), relative to conf.yaml.
    pub json_schema: String,
}

/// A route's `cors` policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsFile {
    /// `https://app.example.com`, `https://*.example.com`, or `*`.
    pub allow_origins: Vec<String>,
    /// Methods of actual requests; absent: the route's, or GET, HEAD, POST.
    #[serde(default)]
    pub allow_methods: Option<Vec<String>>,
    /// Request headers allowed; absent: those the preflight names.
    #[serde(default)]
    pub allow_headers: Option<Vec<String>>,
    /// Response headers scripts may read beyond the safelisted ones.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Whether cookies and HTTP authentication may come along.
    #[serde(default)]
    pub allow_credentials: bool,
    /// How long browsers may cache a preflight's answer.
    #[serde(default = "default_cors_max_age")]
    pub max_age_seconds: u64,
}

fn default_cors_max_age() -> u64 {
    600
}

/// A route's `rewrite` of the path.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteFile {
    /// Matched against the normalised path (the `regex` crate's syntax).
    pub regex: String,
    /// The new path; `$1`, `${name}` insert capture groups.
    pub replacement: String,
}

/// A route's static `fallback` answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackFile {
    /// Its status.
    #[serde(default = "default_fallback_status")]
    pub status: u16,
    /// The file its body is read from (at load; absent: no body).
    #[serde(default)]
    pub body_file: Option<String>,
    /// Its `Content-Type`; absent, guessed from `body_file`'s extension.
    #[serde(default)]
    pub content_type: Option<String>,
}

fn default_fallback_status() -> u16 {
    200
}

/// Per-route header edits.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HeadersFile {
    /// Set on the upstream request.
    #[serde(default)]
    pub request_set: BTreeMap<String, String>,
    /// Removed from the upstream request.
    #[serde(default)]
    pub request_remove: Vec<String>,
    /// Set on the response.
    #[serde(default)]
    pub response_set: BTreeMap<String, String>,
    /// Removed from the response.
    #[serde(default)]
    pub response_remove: Vec<String>,
}
