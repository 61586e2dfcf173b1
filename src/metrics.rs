//! Every metric family of SPEC §5, created once per process and held by
//! [`Metrics`] (no global registry), exposed by the admin service.
//!
//! Every family is in the exposition from the start: label sets known in
//! advance (results, reasons of the configured routes, issuers, phases,
//! upstreams) are created at 0 when the process starts or a config
//! compiles, and a family that still has no series is written as its
//! `# HELP`/`# TYPE` lines, so dashboards and `rate()` alerts can tell zero
//! from absent.
//!
//! Latency buckets start at 100 µs: the gateway's own overhead is well
//! under a millisecond, and buckets that start at 5 ms (Prometheus'
//! defaults) would hide it.

use std::sync::{Arc, OnceLock};

use crate::reason::Reason;
use crate::upstream::connect_failure::LOCAL_KINDS;

use prometheus::core::Collector;
use prometheus::proto::{MetricFamily, MetricType};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, TextEncoder,
};

/// Buckets (seconds) for request and upstream latency.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Label value for requests that matched no route.
pub const NO_ROUTE: &str = "none";

/// Results of `gatehouse_tokenginx_lookups_total`.
pub const TOKENGINX_RESULTS: [&str; 4] = ["found", "missing", "error", "cached"];

/// Results of `gatehouse_oauth_logins_total`.
pub const OAUTH_LOGIN_RESULTS: [&str; 4] = ["ok", "denied", "invalid_state", "error"];

/// Results of `gatehouse_oauth_refreshes_total`.
pub const OAUTH_REFRESH_RESULTS: [&str; 4] = ["ok", "joined", "invalid_grant", "error"];

/// Results of `gatehouse_rate_limit_store_total`.
pub const RATE_LIMIT_STORE_RESULTS: [&str; 5] = [
    "ok",
    "cached_deny",
    "error_local",
    "error_allow",
    "error_deny",
];

/// Phases of `gatehouse_client_timeouts_total`: the request head took longer
/// than `client_header_timeout_ms`, or its body stalled longer than
/// `client_body_timeout_ms`.
pub const CLIENT_TIMEOUT_PHASES: [&str; 2] = ["header", "body"];

/// The gateway's metric families.
pub struct Metrics {
    /// Every family, in exposition order.
    collectors: Vec<Box<dyn Collector>>,
    /// `gatehouse_requests_total{route, method, status}`.
    pub requests: IntCounterVec,
    /// `gatehouse_request_duration_seconds{route}`.
    pub request_duration: HistogramVec,
    /// `gatehouse_upstream_duration_seconds{route, upstream}`.
    pub upstream_duration: HistogramVec,
    /// `gatehouse_upstream_backend_healthy{upstream, backend}`.
    pub backend_healthy: IntGaugeVec,
    /// `gatehouse_upstream_retries_total{upstream, reason}`.
    pub upstream_retries: IntCounterVec,
    /// `gatehouse_upstream_retry_overflow_total{upstream}`: retries the
    /// policy allowed but the retry budget refused.
    pub upstream_retry_overflow: IntCounterVec,
    /// `gatehouse_circuit_state{upstream, backend}`: 0 closed, 1 half-open, 2 open.
    pub circuit_state: IntGaugeVec,
    /// `gatehouse_circuit_transitions_total{upstream, backend, to}`.
    pub circuit_transitions: IntCounterVec,
    /// `gatehouse_upstream_shed_total{upstream}`: requests answered 503 at
    /// once because the pool (or every backend) was at `max_in_flight`.
    pub upstream_shed: IntCounterVec,
    /// `gatehouse_dns_resolutions_total{upstream, result}`: re-resolutions
    /// of backends given by name (ok, error, empty).
    pub dns_resolutions: IntCounterVec,
    /// `gatehouse_trace_spans_dropped_total`: spans the full export queue refused.
    pub trace_spans_dropped: IntCounter,
    /// `gatehouse_trace_exports_total{result}`: OTLP export requests (ok, error).
    pub trace_exports: IntCounterVec,
    /// `gatehouse_tls_certificate_expiry_timestamp_seconds{name}`: when each
    /// served certificate (files and ACME) expires, by the name it serves.
    pub tls_certificate_expiry: IntGaugeVec,
    /// `gatehouse_acme_orders_total{result}`: ACME orders (issued, failed).
    pub acme_orders: IntCounterVec,
    /// `gatehouse_aggregate_parts_total{route, part, result}`: parts of
    /// aggregated answers (ok, error, timeout).
    pub aggregate_parts: IntCounterVec,
    /// `gatehouse_fallbacks_total{route, reason}`: degraded answers (the
    /// fallback upstream's or the static one) served in place of an error.
    pub fallbacks: IntCounterVec,
    /// `gatehouse_upstream_panic_total{upstream}`: requests sent to a pool
    /// none of whose backends was healthy.
    pub upstream_panic: IntCounterVec,
    /// `gatehouse_local_errors_total{kind}` by [`LOCAL_KINDS`] index:
    /// connects that failed on the gateway's side (descriptors, buffers,
    /// ports), never held against a backend.
    pub local_errors_by_kind: [IntCounter; LOCAL_KINDS.len()],
    /// `gatehouse_client_timeouts_total{phase}`: clients too slow to send a request.
    pub client_timeouts: IntCounterVec,
    /// `gatehouse_config_reloads_total{result}`.
    pub config_reloads: IntCounterVec,
    /// `gatehouse_config_last_reload_success`.
    pub config_last_reload_success: IntGauge,
    /// `gatehouse_config_reload_duration_seconds`: compile and swap of a
    /// successful reload.
    pub config_reload_duration: Histogram,
    /// `gatehouse_auth_failures_total{route, reason}`.
    pub auth_failures: IntCounterVec,
    /// `gatehouse_auth_allowed_on_error_total`: requests let through
    /// because TokenginX failed under `on_error: allow`.
    pub auth_allowed_on_error: IntCounter,
    /// `gatehouse_tokenginx_lookups_total{result}`.
    pub tokenginx_lookups: IntCounterVec,
    /// `gatehouse_tokenginx_lookup_duration_seconds`.
    pub tokenginx_lookup_duration: Histogram,
    /// `gatehouse_jwks_refreshes_total{issuer, result}`.
    pub jwks_refreshes: IntCounterVec,
    /// `gatehouse_oauth_logins_total{result}`: login callbacks.
    pub oauth_logins: IntCounterVec,
    /// `gatehouse_oauth_refreshes_total{result}`: access-token refreshes.
    pub oauth_refreshes: IntCounterVec,
    /// `gatehouse_oauth_logouts_total`.
    pub oauth_logouts: IntCounter,
    /// `gatehouse_rate_limited_total{route}`.
    pub rate_limited: IntCounterVec,
    /// `gatehouse_rate_limit_store_total{result}`: shared-store answers and fallbacks.
    pub rate_limit_store: IntCounterVec,
    /// `gatehouse_access_log_dropped_total`: lines dropped because the writer fell behind.
    pub access_log_dropped: IntCounter,
    /// `gatehouse_requests_total{route="none"}`: requests no route matched.
    pub unmatched_requests: RequestCounters,
    /// `gatehouse_request_duration_seconds{route="none"}`.
    pub unmatched_duration: Histogram,
}

/// Handles of one route, resolved when the config compiles so the request
/// path does no label lookup for them.
#[derive(Clone)]
pub struct RouteMetrics {
    /// `gatehouse_requests_total` of the route, by method and status.
    pub requests: Arc<RequestCounters>,
    /// Request duration histogram of the route.
    pub duration: Histogram,
    /// Upstream duration histogram of the route and its upstream.
    pub upstream_duration: Histogram,
    /// `gatehouse_auth_failures_total` of the route, by reason.
    pub auth_failures: Arc<AuthFailureCounters>,
}

impl Metrics {
    /// Registers every family, plus the standard `process_*` collector.
    pub fn new() -> Metrics {
        let latency = |name: &str, help: &str| {
            HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec())
        };
        let requests = counter_vec(
            "gatehouse_requests_total",
            "Requests answered, by route, method and status.",
            &["route", "method", "status"],
        );
        let request_duration = HistogramVec::new(
            latency(
                "gatehouse_request_duration_seconds",
                "Time from request start to the end of the response, by route.",
            ),
            &["route"],
        )
        .expect("valid metric");
        let upstream_duration = HistogramVec::new(
            latency(
                "gatehouse_upstream_duration_seconds",
                "Time from picking a backend to the end of its response.",
            ),
            &["route", "upstream"],
        )
        .expect("valid metric");
        let backend_healthy = IntGaugeVec::new(
            Opts::new(
                "gatehouse_upstream_backend_healthy",
                "1 when the backend passes health checks, else 0.",
            ),
            &["upstream", "backend"],
        )
        .expect("valid metric");
        let upstream_retries = counter_vec(
            "gatehouse_upstream_retries_total",
            "Attempts retried under the upstream's retry policy, by what failed.",
            &["upstream", "reason"],
        );
        let upstream_retry_overflow = counter_vec(
            "gatehouse_upstream_retry_overflow_total",
            "Retries the policy allowed but the retry budget refused.",
            &["upstream"],
        );
        let circuit_state = IntGaugeVec::new(
            Opts::new(
                "gatehouse_circuit_state",
                "Circuit breaker of each backend: 0 closed, 1 half-open, 2 open.",
            ),
            &["upstream", "backend"],
        )
        .expect("valid metric");
        let circuit_transitions = counter_vec(
            "gatehouse_circuit_transitions_total",
            "Circuit breaker transitions of each backend, by the state entered.",
            &["upstream", "backend", "to"],
        );
        let upstream_shed = counter_vec(
            "gatehouse_upstream_shed_total",
            "Requests answered 503 at once because the upstream was at max_in_flight (or every backend at max_in_flight_per_backend).",
            &["upstream"],
        );
        let dns_resolutions = counter_vec(
            "gatehouse_dns_resolutions_total",
            "DNS resolutions of backends given by name, by upstream and result (ok, error, empty).",
            &["upstream", "result"],
        );
        let trace_spans_dropped = IntCounter::new(
            "gatehouse_trace_spans_dropped_total",
            "Spans dropped because the export queue was full.",
        )
        .expect("valid metric");
        let trace_exports = counter_vec(
            "gatehouse_trace_exports_total",
            "OTLP trace export requests, by result (ok, error).",
            &["result"],
        );
        for r in ["ok", "error"] {
            trace_exports.with_label_values(&[r]);
        }
        let tls_certificate_expiry = IntGaugeVec::new(
            Opts::new(
                "gatehouse_tls_certificate_expiry_timestamp_seconds",
                "When each served TLS certificate expires (Unix time), by the name it serves.",
            ),
            &["name"],
        )
        .expect("valid metric");
        let acme_orders = counter_vec(
            "gatehouse_acme_orders_total",
            "ACME certificate orders, by result (issued, failed).",
            &["result"],
        );
        for r in ["issued", "failed"] {
            acme_orders.with_label_values(&[r]);
        }
        let aggregate_parts = counter_vec(
            "gatehouse_aggregate_parts_total",
            "Parts of aggregated answers, by route, part and result (ok, error, timeout).",
            &["route", "part", "result"],
        );
        let fallbacks = counter_vec(
            "gatehouse_fallbacks_total",
            "Degraded answers served in place of an upstream failure, by route and the error code replaced.",
            &["route", "reason"],
        );
        let upstream_panic = counter_vec(
            "gatehouse_upstream_panic_total",
            "Requests sent to a pool with no healthy backend (tried anyway: panic mode).",
            &["upstream"],
        );
        let local_errors = counter_vec(
            "gatehouse_local_errors_total",
            "Upstream connects that failed on the gateway's side, by kind.",
            &["kind"],
        );
        let client_timeouts = counter_vec(
            "gatehouse_client_timeouts_total",
            "Requests answered 408 because the client sent them too slowly, by phase.",
            &["phase"],
        );
        let config_reloads = counter_vec(
            "gatehouse_config_reloads_total",
            "Config loads, by result.",
            &["result"],
        );
        let config_last_reload_success = IntGauge::new(
            "gatehouse_config_last_reload_success",
            "1 when the last config load succeeded, else 0.",
        )
        .expect("valid metric");
        let config_reload_duration = Histogram::with_opts(latency(
            "gatehouse_config_reload_duration_seconds",
            "Time from reading the config files to serving them, for successful reloads.",
        ))
        .expect("valid metric");
        let auth_failures = counter_vec(
            "gatehouse_auth_failures_total",
            "Refused authentications, by route and reason.",
            &["route", "reason"],
        );
        let auth_allowed_on_error = IntCounter::new(
            "gatehouse_auth_allowed_on_error_total",
            "Requests let through because TokenginX failed and on_error is allow.",
        )
        .expect("valid metric");
        let tokenginx_lookups = counter_vec(
            "gatehouse_tokenginx_lookups_total",
            "TokenginX lookups, by result.",
            &["result"],
        );
        let tokenginx_lookup_duration = Histogram::with_opts(latency(
            "gatehouse_tokenginx_lookup_duration_seconds",
            "Round trip of TokenginX lookups that were not served from cache.",
        ))
        .expect("valid metric");
        let jwks_refreshes = counter_vec(
            "gatehouse_jwks_refreshes_total",
            "JWKS fetches, by issuer and result.",
            &["issuer", "result"],
        );
        let oauth_logins = counter_vec(
            "gatehouse_oauth_logins_total",
            "Login callbacks: ok, denied (by the user or server), invalid_state, error.",
            &["result"],
        );
        let oauth_refreshes = counter_vec(
            "gatehouse_oauth_refreshes_total",
            "Access-token refreshes: ok, joined (another request or instance refreshed), invalid_grant (the session ended), error.",
            &["result"],
        );
        let oauth_logouts =
            IntCounter::new("gatehouse_oauth_logouts_total", "Logouts.").expect("valid metric");
        let rate_limited = counter_vec(
            "gatehouse_rate_limited_total",
            "Requests refused by a rate limit, by route.",
            &["route"],
        );
        let rate_limit_store = counter_vec(
            "gatehouse_rate_limit_store_total",
            "Shared rate-limit store decisions: ok, cached_deny, error_local, error_allow, error_deny.",
            &["result"],
        );
        let access_log_dropped = IntCounter::new(
            "gatehouse_access_log_dropped_total",
            "Access-log lines dropped because the writer fell behind.",
        )
        .expect("valid metric");
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(requests.clone()),
            Box::new(request_duration.clone()),
            Box::new(upstream_duration.clone()),
            Box::new(backend_healthy.clone()),
            Box::new(upstream_retries.clone()),
            Box::new(upstream_retry_overflow.clone()),
            Box::new(upstream_panic.clone()),
            Box::new(fallbacks.clone()),
            Box::new(aggregate_parts.clone()),
            Box::new(trace_spans_dropped.clone()),
            Box::new(trace_exports.clone()),
            Box::new(tls_certificate_expiry.clone()),
            Box::new(acme_orders.clone()),
            Box::new(dns_resolutions.clone()),
            Box::new(upstream_shed.clone()),
            Box::new(circuit_state.clone()),
            Box::new(circuit_transitions.clone()),
            Box::new(local_errors.clone()),
            Box::new(client_timeouts.clone()),
            Box::new(config_reloads.clone()),
            Box::new(config_last_reload_success.clone()),
            Box::new(config_reload_duration.clone()),
            Box::new(auth_failures.clone()),
            Box::new(auth_allowed_on_error.clone()),
            Box::new(tokenginx_lookups.clone()),
            Box::new(tokenginx_lookup_duration.clone()),
            Box::new(jwks_refreshes.clone()),
            Box::new(oauth_logins.clone()),
            Box::new(oauth_refreshes.clone()),
            Box::new(oauth_logouts.clone()),
            Box::new(rate_limited.clone()),
            Box::new(rate_limit_store.clone()),
            Box::new(access_log_dropped.clone()),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ];
        for (family, values) in [
            (&config_reloads, &["ok", "error"][..]),
            (&tokenginx_lookups, &TOKENGINX_RESULTS[..]),
            (&rate_limit_store, &RATE_LIMIT_STORE_RESULTS[..]),
            (&client_timeouts, &CLIENT_TIMEOUT_PHASES[..]),
            (&oauth_logins, &OAUTH_LOGIN_RESULTS[..]),
            (&oauth_refreshes, &OAUTH_REFRESH_RESULTS[..]),
        ] {
            for v in values {
                family.with_label_values(&[v]);
            }
        }
        let local_errors_by_kind = LOCAL_KINDS.map(|kind| local_errors.with_label_values(&[kind]));
        let unmatched_requests = RequestCounters {
            route: NO_ROUTE.to_string(),
            family: requests.clone(),
            slots: OnceLock::new(),
        };
        let unmatched_duration = request_duration.with_label_values(&[NO_ROUTE]);
        Metrics {
            unmatched_requests,
            unmatched_duration,
            collectors,
            requests,
            request_duration,
            upstream_duration,
            backend_healthy,
            upstream_retries,
            upstream_retry_overflow,
            upstream_panic,
            fallbacks,
            aggregate_parts,
            trace_spans_dropped,
            trace_exports,
            tls_certificate_expiry,
            acme_orders,
            dns_resolutions,
            upstream_shed,
            circuit_state,
            circuit_transitions,
            local_errors_by_kind,
            client_timeouts,
            config_reloads,
            config_last_reload_success,
            config_reload_duration,
            auth_failures,
            auth_allowed_on_error,
            tokenginx_lookups,
            tokenginx_lookup_duration,
            jwks_refreshes,
            oauth_logins,
            oauth_refreshes,
            oauth_logouts,
            rate_limited,
            rate_limit_store,
            access_log_dropped,
        }
    }

    /// Handles for a route bound to `upstream`; the auth-failure counters
    /// of `reasons` (those the route's policy can give) start at 0.
    pub fn route(&self, route: &str, upstream: &str, reasons: &[Reason]) -> RouteMetrics {
        let auth_failures = AuthFailureCounters {
            route: route.to_string(),
            family: self.auth_failures.clone(),
            slots: Default::default(),
        };
        for &reason in reasons {
            auth_failures.init(reason);
        }
        RouteMetrics {
            requests: Arc::new(self.request_counters(route)),
            duration: self.request_duration.with_label_values(&[route]),
            upstream_duration: self.upstream_duration.with_label_values(&[route, upstream]),
            auth_failures: Arc::new(auth_failures),
        }
    }

    /// Request counters of one route (`none` for unmatched requests).
    pub fn request_counters(&self, route: &str) -> RequestCounters {
        RequestCounters {
            route: route.to_string(),
            family: self.requests.clone(),
            slots: OnceLock::new(),
        }
    }

    /// Prometheus text exposition of every family, in name order; a family
    /// without series yet is written as its `# HELP` and `# TYPE` lines.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        let mut families: Vec<MetricFamily> =
            self.collectors.iter().flat_map(|c| c.collect()).collect();
        families.sort_by(|a, b| a.name().cmp(b.name()));
        for family in &families {
            if family.get_metric().is_empty() {
                write_empty_family(family, &mut out);
            } else {
                // Encoding into a Vec cannot fail.
                let _ = TextEncoder::new().encode(std::slice::from_ref(family), &mut out);
            }
        }
        out
    }
}

/// A counter family `name` with `help`, by `labels`. Names and labels are
/// the gateway's own constants: a bad one is a bug found at start-up.
fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
}

/// `# HELP` and `# TYPE` of a family that has no series (the text encoder
/// refuses those). Help texts are ours: no character needs escaping.
fn write_empty_family(family: &MetricFamily, out: &mut Vec<u8>) {
    let kind = match family.get_field_type() {
        MetricType::COUNTER => "counter",
        MetricType::GAUGE => "gauge",
        MetricType::HISTOGRAM => "histogram",
        MetricType::SUMMARY => "summary",
        MetricType::UNTYPED => "untyped",
    };
    let name = family.name();
    out.extend_from_slice(
        format!("# HELP {name} {}\n# TYPE {name} {kind}\n", family.help()).as_bytes(),
    );
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Method labels: the standard methods, anything else `OTHER`, so a
/// client cannot create series at will.
const METHODS: [&str; 10] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "OTHER",
];

/// Statuses with a pre-resolved counter slot; others take the labelled path.
const STATUSES: [u16; 26] = [
    0, 101, 200, 201, 202, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 408,
    413, 414, 429, 431, 500, 502, 503,
];

/// Index of a method's label in [`METHODS`].
pub fn method_index(method: &http::Method) -> usize {
    match *method {
        http::Method::GET => 0,
        http::Method::POST => 1,
        http::Method::PUT => 2,
        http::Method::DELETE => 3,
        http::Method::PATCH => 4,
        http::Method::HEAD => 5,
        http::Method::OPTIONS => 6,
        http::Method::CONNECT => 7,
        http::Method::TRACE => 8,
        _ => 9,
    }
}

/// `gatehouse_auth_failures_total` of one route. A reason's counter is
/// looked up in the family on the route's first refusal for that reason,
/// then kept: a flood of refused requests only increments an atomic, and
/// reasons that never happen add no series.
pub struct AuthFailureCounters {
    route: String,
    family: IntCounterVec,
    slots: [OnceLock<IntCounter>; Reason::COUNT],
}

impl AuthFailureCounters {
    /// Counts one refusal.
    pub fn inc(&self, reason: Reason) {
        match self.slots.get(reason as usize) {
            Some(slot) => slot.get_or_init(|| self.lookup(reason)).inc(),
            None => self.lookup(reason).inc(),
        }
    }

    /// Creates the counter of `reason` at 0 and keeps it in its slot.
    fn init(&self, reason: Reason) {
        if let Some(slot) = self.slots.get(reason as usize) {
            slot.get_or_init(|| self.lookup(reason));
        }
    }

    fn lookup(&self, reason: Reason) -> IntCounter {
        self.family
            .with_label_values(&[&self.route, reason.as_str()])
    }
}

/// `gatehouse_requests_total` of one route. Each (method, status) counter
/// is looked up in the family once, then kept in a slot: the request path
/// only increments an atomic. The slot table is allocated on the route's
/// first request, so ten thousand idle routes cost nothing.
pub struct RequestCounters {
    route: String,
    family: IntCounterVec,
    slots: OnceLock<Box<[OnceLock<IntCounter>]>>,
}

impl RequestCounters {
    /// Counts one finished request.
    pub fn inc(&self, method: usize, status: u16) {
        let method = method.min(METHODS.len() - 1);
        let Some(si) = STATUSES.iter().position(|s| *s == status) else {
            let mut buf = itoa::Buffer::new();
            self.family
                .with_label_values(&[&self.route, METHODS[method], buf.format(status)])
                .inc();
            return;
        };
        let slots = self.slots.get_or_init(|| {
            (0..METHODS.len() * STATUSES.len())
                .map(|_| OnceLock::new())
                .collect()
        });
        slots[method * STATUSES.len() + si]
            .get_or_init(|| {
                let mut buf = itoa::Buffer::new();
                self.family
                    .with_label_values(&[&self.route, METHODS[method], buf.format(status)])
            })
            .inc();
    }
}
