//! What one request learned, carried from `request_filter` to `logging`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auth::Identity;
use crate::client_ip::ClientIp;
use crate::config::{Route, Runtime};
use crate::lifecycle::InFlight;
use crate::limit::LimitHeaders;
use crate::reject::Rejection;
use crate::trace::TraceContext;
use crate::upstream::retry::RetryPermit;
use crate::upstream::{Lease, Pool, Tried};

/// Per-request state. Each field is set once, by the phase that decides it.
pub struct RequestCtx {
    /// When the request arrived (the clock of the request duration).
    pub started: Instant,
    /// The config this request is served with, loaded once so a reload in
    /// the middle of the request cannot mix two configs.
    pub runtime: Option<Arc<Runtime>>,
    /// Index of the matched route in `runtime.routes`.
    pub route: Option<usize>,
    /// X-Request-Id, kept or generated.
    pub request_id: String,
    /// Trace context forwarded upstream.
    pub trace: Option<TraceContext>,
    /// Client IP after the trusted-proxy walk.
    pub client_ip: Option<ClientIp>,
    /// Normalised path, when it differs from what the client sent.
    pub normalized_path: Option<String>,
    /// The path the upstream receives, when the route's `rewrite` changed it.
    pub upstream_path: Option<String>,
    /// Canonical Host for the upstream, when it differs from what the
    /// client sent.
    pub canonical_host: Option<http::HeaderValue>,
    /// Whether the client connection is TLS.
    pub tls: bool,
    /// Whether the request asks for a protocol upgrade (WebSocket).
    pub upgrade: bool,
    /// Whether the client speaks HTTP/1.0: no chunked body and no 1xx
    /// reach it (RFC 9112 §6.1, RFC 9110 §15.2).
    pub http10: bool,
    /// `Bearer <access token>` of the request's OAuth session, for the
    /// upstream (`forward_access_token`).
    pub oauth_authorization: Option<http::HeaderValue>,
    /// Whether the current attempt's connect timeout was cut short by the
    /// route's deadline (so a timeout there says nothing of the backend).
    pub deadline_bound: bool,
    /// Whether an HTTP/1.1 client waits for `100 Continue` before sending
    /// its body; the gateway answers it once the request is admitted.
    pub expect_continue: bool,
    /// The backend now serving the request; dropping it ends its in-flight count.
    pub lease: Option<Lease>,
    /// Backends already tried, so retries go elsewhere.
    pub tried: Tried,
    /// Connect attempts so far.
    pub attempts: u32,
    /// Retries the upstream's policy granted so far.
    pub retries: u32,
    /// The wait before the next attempt, when a retry was granted.
    pub backoff: Option<Duration>,
    /// Counts the request's retry against its upstream's budget.
    pub retry_permit: Option<RetryPermit>,
    /// Whether the current attempt's outcome was charged to its backend.
    pub outcome_recorded: bool,
    /// The last backend was picked while none was healthy (panic mode).
    pub panic: bool,
    /// Whether the request went on to the route's `fallback_upstream`.
    pub diverted: bool,
    /// Why a fallback answers, as an index into
    /// [`super::fallback::REASONS`].
    pub fallback: Option<usize>,
    /// Each upstream attempt's start, backend and failure, kept only while
    /// traces are exported (one client span each).
    pub attempt_log: Vec<(Instant, std::net::SocketAddr, bool)>,
    /// When the first backend was picked.
    pub upstream_started: Option<Instant>,
    /// Request body bytes seen so far.
    pub body_bytes: u64,
    /// Set when the gateway answered the request itself.
    pub rejection: Option<Rejection>,
    /// The verified caller, on authenticated routes.
    pub identity: Option<Arc<Identity>>,
    /// `Access-Control-Allow-Origin` for a request from an origin the
    /// route's CORS policy allows.
    pub cors_origin: Option<http::HeaderValue>,
    /// RateLimit headers of a rate-limited route.
    pub limit_headers: Option<LimitHeaders>,
    /// Keeps the request counted as in flight until the context is dropped
    /// (a draining process exits once none is left).
    _in_flight: InFlight,
}

impl RequestCtx {
    /// A fresh context for a request arriving now.
    pub fn new(in_flight: InFlight) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            runtime: None,
            route: None,
            request_id: String::new(),
            trace: None,
            client_ip: None,
            normalized_path: None,
            canonical_host: None,
            upstream_path: None,
            tls: false,
            upgrade: false,
            http10: false,
            expect_continue: false,
            deadline_bound: false,
            oauth_authorization: None,
            lease: None,
            tried: Tried::default(),
            attempts: 0,
            retries: 0,
            backoff: None,
            retry_permit: None,
            outcome_recorded: false,
            panic: false,
            diverted: false,
            fallback: None,
            upstream_started: None,
            attempt_log: Vec::new(),
            body_bytes: 0,
            rejection: None,
            identity: None,
            limit_headers: None,
            cors_origin: None,
            _in_flight: in_flight,
        }
    }

    /// The matched route.
    pub fn route(&self) -> Option<&Route> {
        Some(&self.runtime.as_ref()?.routes[self.route?])
    }

    /// The pool serving the request: the route's own, or its fallback
    /// upstream once the request was diverted there.
    pub fn pool(&self) -> Option<&Arc<Pool>> {
        let route = self.route()?;
        match &route.fallback {
            Some(f) if self.diverted => f.upstream.as_ref(),
            _ => Some(&route.pool),
        }
    }

    /// The route's `timeout_ms`, which bounds its own upstream: a request
    /// diverted to the fallback upstream has its own timeouts only.
    pub fn deadline(&self) -> Option<Duration> {
        self.route()?.deadline.filter(|_| !self.diverted)
    }
}
