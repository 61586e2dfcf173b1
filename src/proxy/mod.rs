//! The gateway's `ProxyHttp` implementation: each phase is a thin
//! dispatcher into the module that owns the concern.
//!
//! | phase | module |
//! |---|---|
//! | `request_filter` | [`request_filters`] — route, IP rules, body size; [`crate::validate`] — body schema |
//! | `upstream_peer` | [`crate::upstream`] — backend choice, timeouts |
//! | `upstream_request_filter` | [`request_modifiers`] — path, forwarding headers |
//! | `response_filter` | [`response_modifiers`] — security headers |
//! | `fail_to_connect` / `error_while_proxy` / `upstream_response_filter` | passive health, [`retrying`] |
//! | `fail_to_proxy` | [`crate::reject`] |
//! | `logging` | [`crate::metrics`], [`log_line`] |
//!
//! [`connection`] holds the service's connection loop around it.

pub mod aggregate;
pub mod connection;
pub mod ctx;
pub mod fallback;
pub mod header_sweep;
pub mod log_line;
pub mod oauth_filters;
pub mod request_filters;
pub mod request_head;
pub mod request_modifiers;
pub mod response_modifiers;
pub mod retrying;
pub mod rewound;
pub mod spans;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use log::warn;
use pingora_core::upstreams::peer::{HttpPeer, Peer};
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

pub use ctx::RequestCtx;

use crate::client_ip::ClientIp;
use crate::config::{Route, Runtime};
use crate::lifecycle::{InFlight, Lifecycle};
use crate::metrics::{method_index, Metrics};
use crate::reject::{Rejection, CIRCUIT_OPEN, DEADLINE, LOCAL_ERROR, RETRY_STATUS, SHED};
use crate::upstream::connect_failure::{ConnectFailure, LOCAL_KINDS};
use crate::upstream::pool::{HashKey, NoPick};
use crate::upstream::retry::Failure as RetryFailure;
use crate::upstream::upgrade_gate::GatedConnect;
use crate::upstream::Pick;

/// Concurrent streams multiplexed on one HTTP/2 upstream connection.
const H2_STREAMS_PER_CONNECTION: usize = 100;

/// The pool group of upgrade connections, apart from all others.
const UPGRADE_POOL_GROUP: u64 = 0x7570_6772_6164_6521;

/// How long an idle upstream connection is kept for reuse.
const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The least wait before retrying a backend tried already, after the `n`th
/// retry: 25 ms doubling to at most 400 ms, jittered to 50-100 %.
fn same_backend_backoff(n: u32) -> Duration {
    let full = (25u64 << n.saturating_sub(1).min(4)).min(400);
    Duration::from_millis(full / 2 + fastrand::u64(0..=full / 2))
}

/// Why no backend of a pool could be picked, as the error that answers it.
fn no_pick_error(no: NoPick) -> Box<Error> {
    match no {
        NoPick::Empty => Error::explain(ErrorType::HTTPStatus(503), "no backend"),
        NoPick::Full => Error::explain(ErrorType::Custom(SHED), "the upstream is at max_in_flight"),
        NoPick::Open => Error::explain(
            ErrorType::Custom(CIRCUIT_OPEN),
            "every backend's circuit breaker is open",
        ),
    }
}

/// Writes an answer the gateway made itself for `route` (a fallback, an
/// aggregate): the route's response edits and CORS headers as on a
/// proxied response, no body for HEAD.
async fn write_answer(
    session: &mut Session,
    ctx: &RequestCtx,
    route: &Route,
    rt: &Runtime,
    mut header: ResponseHeader,
    body: Bytes,
) -> Result<()> {
    response_modifiers::prepare(
        &mut header,
        &ctx.request_id,
        ctx.tls,
        Some(route),
        ctx.cors_origin.as_ref(),
        &rt.settings,
    )?;
    let head_only = session.req_header().method == http::Method::HEAD || body.is_empty();
    session
        .write_response_header(Box::new(header), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// The request body limit of the config serving `ctx`.
fn runtime_body_limit(ctx: &RequestCtx) -> usize {
    ctx.runtime
        .as_ref()
        .map_or(0, |rt| rt.settings.max_request_body_bytes)
        .try_into()
        .unwrap_or(usize::MAX)
}

/// What is left of the request's deadline (`Duration::MAX` without one),
/// or the error that answers a request past it.
fn remaining(ctx: &RequestCtx) -> Result<Duration> {
    match ctx.deadline() {
        Some(d) => d
            .checked_sub(ctx.started.elapsed())
            .filter(|left| !left.is_zero())
            .ok_or_else(|| {
                Error::explain(ErrorType::Custom(DEADLINE), "past the route's timeout_ms")
            }),
        None => Ok(Duration::MAX),
    }
}

/// The proxy: the live config, the metrics it records into, and the
/// process lifecycle (to stop keep-alive while draining).
pub struct Gateway {
    live: Arc<ArcSwap<Runtime>>,
    metrics: Arc<Metrics>,
    lifecycle: Arc<Lifecycle>,
}

impl Gateway {
    /// A gateway serving whatever config `live` holds at each request.
    pub fn new(
        live: Arc<ArcSwap<Runtime>>,
        metrics: Arc<Metrics>,
        lifecycle: Arc<Lifecycle>,
    ) -> Gateway {
        Gateway {
            live,
            metrics,
            lifecycle,
        }
    }

    /// Writes a refusal (SPEC §4) and remembers it for logging.
    async fn reject(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        r: Rejection,
    ) -> Result<()> {
        if ctx.expect_continue || r == Rejection::UnsupportedTransferCoding {
            // The client holds its body back, or sent one the gateway
            // cannot read: the connection cannot carry a next request.
            session.set_keepalive(None);
        }
        let (mut header, body) = r.response(&ctx.request_id);
        if let Some(rt) = &ctx.runtime {
            if rt.settings.security_headers {
                response_modifiers::add_security_headers(&mut header, ctx.tls)?;
            }
        }
        // A script on an allowed origin may read the gateway's refusals too.
        if let Some(cors) = ctx.route().and_then(|r| r.cors.as_ref()) {
            if !matches!(r, Rejection::CorsPreflight(_) | Rejection::CorsRejected) {
                cors.decorate(&mut header, ctx.cors_origin.as_ref())?;
            }
        }
        ctx.rejection = Some(r);
        session
            .write_response_header(Box::new(header), false)
            .await?;
        session.write_response_body(Some(body), true).await
    }

    /// Answers an aggregate route's request with its parts (see
    /// [`aggregate`]), or the refusal a required part's failure means.
    async fn aggregate(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        let Some(rt) = ctx.runtime.clone() else {
            return Ok(());
        };
        let Some(route) = ctx.route.map(|i| &rt.routes[i]) else {
            return Ok(());
        };
        let Some(agg) = &route.aggregate else {
            return Ok(());
        };
        ctx.upstream_started = Some(Instant::now());
        let query = session.req_header().uri.query().map(str::to_string);
        match aggregate::answer(agg, ctx, query.as_deref()).await {
            Ok((header, body)) => write_answer(session, ctx, route, &rt, header, body).await,
            Err(r) => self.reject(session, ctx, r).await,
        }
    }

    fn hash_key<'a>(
        session: &'a Session,
        ctx: &'a RequestCtx,
        key: &HashKey,
        buf: &'a mut [u8; 16],
    ) -> &'a [u8] {
        let ip_bytes = |buf: &'a mut [u8; 16]| -> &'a [u8] {
            match ctx.client_ip.map(ClientIp::key) {
                Some(std::net::IpAddr::V4(v4)) => {
                    buf[..4].copy_from_slice(&v4.octets());
                    &buf[..4]
                }
                Some(std::net::IpAddr::V6(v6)) => {
                    *buf = v6.octets();
                    &buf[..]
                }
                None => &[],
            }
        };
        match key {
            HashKey::User => match &ctx.identity {
                Some(id) => id.subject.as_bytes(),
                None => ip_bytes(buf),
            },
            HashKey::Ip => ip_bytes(buf),
            HashKey::Header(name) => session
                .req_header()
                .headers
                .get(name)
                .map_or(&[][..], |v| v.as_bytes()),
            HashKey::Cookie(name) => cookie(session.req_header(), name).unwrap_or(&[]),
        }
    }
}

/// The value of cookie `name`, if the request carries it.
fn cookie<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a [u8]> {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let (k, v) = pair.split_at(pair.iter().position(|&b| b == b'=')?);
            (k == name.as_bytes()).then(|| &v[1..])
        })
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(InFlight::start(&self.lifecycle))
    }

    /// Decides whether the request goes on. `Ok(true)` means the gateway
    /// already answered (a refusal of SPEC §4) and the request is over.
    /// While the process drains, every response closes its connection.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let runtime = self.live.load_full();
        if self
            .lifecycle
            .draining
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            session.set_keepalive(None);
        } else if session.get_keepalive().is_some() {
            // Pingora keeps an HTTP/1.1 connection open forever by default,
            // and then also waits forever for the next request's head.
            session.set_keepalive(Some(runtime.settings.keepalive_timeout_seconds));
        }
        let downstream = session.as_downstream_mut();
        downstream.set_read_timeout(Some(runtime.settings.client_body_timeout));
        // Pipelined requests are served in order (the setting carries over
        // to the connection's next requests). Not behind an upgrade: the
        // bytes after it belong to the new protocol, and Pingora would
        // take a WebSocket frame that races the 101 for the next request.
        // An upgraded connection is closed after it anyway.
        ctx.upgrade = downstream.is_upgrade_req();
        downstream.set_pipelining_enabled(!ctx.upgrade);
        ctx.http10 =
            !downstream.is_http2() && downstream.req_header().version == http::Version::HTTP_10;
        if ctx.http10 {
            downstream.set_ignore_info_resp(true);
        }
        ctx.runtime = Some(runtime);
        match request_filters::admit(session, ctx).await {
            Ok(()) => {
                if ctx.expect_continue {
                    // Pingora gives up keep-alive for any response written
                    // before the body is read; a 100 is not one of those.
                    let downstream = session.as_downstream_mut();
                    downstream.set_close_on_response_before_downstream_finish(false);
                    downstream.write_continue_response().await?;
                    downstream.set_close_on_response_before_downstream_finish(true);
                }
                let schema = ctx.route().and_then(|r| r.validate.clone());
                if let Some(schema) = schema {
                    let limit = runtime_body_limit(ctx);
                    if let Err(r) = crate::validate::check(session, &schema, limit).await {
                        // The body may be left unread: the connection ends.
                        session.set_keepalive(None);
                        self.reject(session, ctx, r).await?;
                        return Ok(true);
                    }
                }
                if ctx.route().is_some_and(|r| r.aggregate.is_some()) {
                    self.aggregate(session, ctx).await?;
                    return Ok(true);
                }
                Ok(false)
            }
            Err(r) => {
                self.reject(session, ctx, r).await?;
                Ok(true)
            }
        }
    }

    /// Counts body bytes as they stream; a body over the limit ends the request with 413.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let (Some(b), Some(rt)) = (body.as_ref(), ctx.runtime.as_ref()) {
            ctx.body_bytes += b.len() as u64;
            if ctx.body_bytes > rt.settings.max_request_body_bytes {
                return Error::e_explain(ErrorType::HTTPStatus(413), "request body over the limit");
            }
        }
        Ok(())
    }

    /// Picks a backend of the route's pool: a healthy one this request has
    /// not tried, else a healthy one again; with none healthy, any (panic
    /// mode, counted). A granted retry first waits out its backoff. A pool
    /// that can pick none (breakers open, shed, empty), or a request past
    /// the route's deadline, goes on to the route's fallback upstream.
    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let (pool, lease, left) = loop {
            let pool = Arc::clone(
                ctx.pool()
                    .ok_or_else(|| Error::new(ErrorType::InternalError))?,
            );
            let picked = {
                let mut buf = [0u8; 16];
                let key = Self::hash_key(session, ctx, &pool.settings.hash_key, &mut buf);
                pool.select(key, ctx.tried).map_err(no_pick_error)
            };
            let (lease, pick) = match picked {
                Ok(picked) => picked,
                Err(e) if fallback::divert(ctx, &Rejection::from_proxy_error(&e)) => continue,
                Err(e) => return Err(e),
            };
            ctx.panic = pick == Pick::Panic;
            if ctx.panic {
                pool.panics.inc();
            }
            // Pingora also retries a request whose reused keep-alive
            // connection the backend had closed: that is the connection's
            // fault, and it goes again at once. A retry of the policy waits
            // its backoff, with the failed backend's in-flight slot given
            // back meanwhile; one on a backend tried already waits at least
            // long enough for a full listen backlog to drain.
            if let Some(wait) = ctx.backoff.take() {
                ctx.lease = None;
                let wait = match pick {
                    Pick::Fresh => wait,
                    Pick::Again | Pick::Panic => wait.max(same_backend_backoff(ctx.retries)),
                };
                if let Ok(left) = remaining(ctx) {
                    tokio::time::sleep(wait.min(left)).await;
                }
            }
            match remaining(ctx) {
                Ok(left) => break (pool, lease, left),
                Err(_) if fallback::divert(ctx, &Rejection::GatewayTimeout) => continue,
                Err(e) => return Err(e),
            }
        };
        let s = &pool.settings;
        // Each attempt waits at most what is left of the route's deadline;
        // a connect cut short by it is the deadline's doing, not the backend's.
        ctx.deadline_bound = left < s.connect_timeout;
        let mut peer = HttpPeer::new(lease.backend().addr, s.tls, s.sni.clone());
        peer.options.connection_timeout = Some(s.connect_timeout.min(left));
        peer.options.read_timeout = Some(s.read_timeout.min(left));
        peer.options.write_timeout = Some(s.read_timeout.min(left));
        peer.options.idle_timeout = Some(UPSTREAM_IDLE_TIMEOUT);
        if s.tls {
            let t = &s.tls_identity;
            peer.options.verify_cert = t.verify;
            peer.options.verify_hostname = t.verify;
            peer.options.ca.clone_from(&t.ca);
            peer.client_cert_key.clone_from(&t.client_cert);
        }
        if s.http2 {
            // Over TLS, ALPN offers h2 first; in plain text, h2c with prior knowledge.
            peer.options.set_http_version(2, if s.tls { 1 } else { 2 });
            peer.options.max_h2_streams = H2_STREAMS_PER_CONNECTION;
        }
        // A WebSocket handshake (an upgrade with an empty body) over plain
        // HTTP/1: its response is read only after Pingora has sent the
        // request's own end, or Pingora may take that end for the end of the
        // tunnel (see `upgrade_gate`). Such connections are never reused:
        // they get a pool group of their own and no idle time in it.
        if ctx.upgrade && !s.tls && !s.http2 && session.as_downstream_mut().is_body_empty() {
            peer.options.custom_l4 = Some(GatedConnect::new(s.connect_timeout));
            peer.group_key = UPGRADE_POOL_GROUP;
            peer.options.idle_timeout = Some(Duration::ZERO);
        }
        if ctx.runtime.as_ref().is_some_and(|rt| rt.traces.is_some()) {
            ctx.attempt_log
                .push((Instant::now(), lease.backend().addr, false));
        }
        ctx.tried.add(lease.index());
        ctx.attempts += 1;
        ctx.lease = Some(lease);
        ctx.outcome_recorded = false;
        ctx.upstream_started.get_or_insert_with(Instant::now);
        Ok(Box::new(peer))
    }

    /// Weighs a failed connect against its backend (which may eject it, see
    /// [`crate::upstream::pool`]) and retries while the policy allows, then
    /// on the route's fallback upstream. A failure on the gateway's own
    /// side is counted, answered 503 and never held against the backend.
    fn fail_to_connect(
        &self,
        session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let Some(lease) = &ctx.lease else {
            return e;
        };
        let pool = lease.pool();
        if let Some(last) = ctx.attempt_log.last_mut() {
            last.2 = true;
        }
        let failure = ConnectFailure::of(&e);
        if let ConnectFailure::Local(kind) = failure {
            let counter = &self.metrics.local_errors_by_kind[kind];
            counter.inc();
            // Logged at 1, 2, 4, 8, … occurrences: a descriptor shortage
            // must not also flood the log.
            if counter.get().is_power_of_two() {
                warn!(
                    "upstream {}: cannot connect to {} for lack of local resources ({}; {} so far): not held against the backend",
                    pool.name,
                    peer.address(),
                    LOCAL_KINDS[kind],
                    counter.get()
                );
            }
            return Error::because(ErrorType::Custom(LOCAL_ERROR), "local connect failure", e);
        }
        if ctx.deadline_bound && matches!(failure, ConnectFailure::Weak) {
            let mut e = Error::because(
                ErrorType::Custom(DEADLINE),
                "connect cut short by timeout_ms",
                e,
            );
            e.set_retry(fallback::divert(ctx, &Rejection::GatewayTimeout));
            return e;
        }
        lease.backend().record(true);
        if pool.connect_failed(lease.backend(), failure) {
            warn!(
                "upstream {} backend {} ejected: {}",
                pool.name,
                peer.address(),
                e.etype().as_str()
            );
        }
        ctx.outcome_recorded = true;
        let retry = retrying::grant(session, ctx, RetryFailure::ConnectFailure, &self.metrics);
        // Tried anyway and failed too: the pool is down, as the checks said.
        let cause = if ctx.panic {
            Rejection::NoHealthyBackend
        } else {
            Rejection::from_proxy_error(&e)
        };
        if retry || fallback::divert(ctx, &cause) {
            e.set_retry(true);
            return e;
        }
        e.set_retry(false);
        if ctx.panic {
            return Error::because(ErrorType::HTTPStatus(503), "no healthy backend", e);
        }
        e
    }

    /// An attempt failed after its connection was made: Pingora's retry of
    /// a stale keep-alive connection stands (for a request that may go
    /// twice); anything else goes again only as the retry policy says, or
    /// to the route's fallback upstream once the policy is spent.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        if let Some(last) = ctx.attempt_log.last_mut() {
            last.2 = true;
        }
        if e.etype() == &ErrorType::Custom(RETRY_STATUS) {
            return e;
        }
        e.retry.decide_reuse(client_reused);
        if e.retry() && retrying::replayable(session) {
            return e;
        }
        let retry = retrying::failure_of(&e)
            .is_some_and(|failure| retrying::grant(session, ctx, failure, &self.metrics))
            || (retrying::replayable(session)
                && fallback::divert(ctx, &Rejection::from_proxy_error(&e)));
        e.set_retry(retry);
        e
    }

    /// A response whose status the retry policy names is not passed on
    /// while a retry is granted: the attempt ends as a retryable error.
    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let status = upstream_response.status.as_u16();
        if retrying::grant(session, ctx, RetryFailure::Status(status), &self.metrics) {
            let mut e = Error::explain(
                ErrorType::Custom(RETRY_STATUS),
                format!("the backend answered {status}"),
            );
            e.set_retry(true);
            e.as_up();
            return Err(e);
        }
        Ok(())
    }

    /// The backend's request: path, forwarding and identity headers.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let rt = ctx
            .runtime
            .clone()
            .ok_or_else(|| Error::new(ErrorType::InternalError))?;
        let route = ctx
            .route()
            .ok_or_else(|| Error::new(ErrorType::InternalError))?;
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        if ctx.identity.as_ref().is_some_and(|i| i.consumer) {
            rt.api_keys.strip(upstream_request);
        }
        request_modifiers::prepare(
            upstream_request,
            ctx,
            route,
            &rt.settings,
            &rt.auth.identity_headers,
            rt.auth.oauth.as_deref(),
            peer,
        )
    }

    /// The client's response: security headers, request id, route edits.
    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(rt) = ctx.runtime.clone() else {
            return Ok(());
        };
        if upstream_response.status == http::StatusCode::SWITCHING_PROTOCOLS && !ctx.upgrade {
            let mut e = Error::explain(
                ErrorType::InvalidHTTPHeader,
                "the upstream switched protocols without being asked to",
            );
            e.as_up();
            return Err(e);
        }
        if !session.is_http2() {
            // The gateway speaks its own version (RFC 9110 §2.5), whatever
            // an HTTP/1.0 upstream wrote.
            upstream_response.set_version(http::Version::HTTP_11);
        }
        if ctx.http10
            && response_modifiers::unframe_for_http10(
                upstream_response,
                &session.req_header().method,
            )
        {
            session.set_keepalive(None);
        }
        if let Some(lease) = &ctx.lease {
            lease.backend().reached();
        }
        if let Some(limits) = &ctx.limit_headers {
            crate::reject::add_limit_headers(upstream_response, limits);
        }
        fallback::mark_diverted(upstream_response, ctx)?;
        response_modifiers::prepare(
            upstream_response,
            &ctx.request_id,
            ctx.tls,
            ctx.route(),
            ctx.cors_origin.as_ref(),
            &rt.settings,
        )
    }

    /// Answers a failed proxy attempt with the JSON of SPEC §4, unless the
    /// response already started or the client is gone. Pingora closes the
    /// connection after a failed proxy attempt, so the answer says
    /// `Connection: close` (RFC 9112 §9.6) instead of promising keep-alive.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let client_gone = e.esource() == &ErrorSource::Downstream
            && matches!(
                e.etype(),
                ErrorType::WriteError
                    | ErrorType::ReadError
                    | ErrorType::ConnectionClosed
                    | ErrorType::H2Error
            );
        let rejection = Rejection::from_proxy_error(e);
        let status = rejection.status();
        if rejection == Rejection::ClientTimeout {
            self.metrics
                .client_timeouts
                .with_label_values(&["body"])
                .inc();
        }
        if client_gone {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        if session
            .response_written()
            .is_none_or(|r| r.status.is_informational())
        {
            if ctx.request_id.is_empty() {
                ctx.request_id = crate::trace::request_id(None);
            }
            session.set_keepalive(None);
            if let Some(status) = fallback::answer(session, ctx, &rejection).await {
                return FailToProxy {
                    error_code: status,
                    can_reuse_downstream: false,
                };
            }
            if let Err(write_err) = self.reject(session, ctx, rejection).await {
                warn!("could not send error response: {write_err}");
            }
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    /// Records the request's metrics.
    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session
            .response_written()
            .filter(|r| !r.status.is_informational() || r.status == 101)
            .map(|r| r.status.as_u16())
            .or_else(|| ctx.rejection.as_ref().map(Rejection::status))
            .unwrap_or(0);
        let method = method_index(&session.req_header().method);
        let now = std::time::Instant::now();
        let took = now.saturating_duration_since(ctx.started);
        let elapsed = took.as_secs_f64();
        match ctx.route() {
            Some(route) => {
                route.metrics.requests.inc(method, status);
                route.metrics.duration.observe(elapsed);
                if let Some(live) = &route.live {
                    live.record(now, took, status);
                }
                if let Some(t) = ctx.upstream_started {
                    route
                        .metrics
                        .upstream_duration
                        .observe(t.elapsed().as_secs_f64());
                }
            }
            None => {
                self.metrics.unmatched_requests.inc(method, status);
                self.metrics.unmatched_duration.observe(elapsed);
            }
        }
        if let Some(lease) = &ctx.lease {
            if ctx.rejection != Some(Rejection::LocalResources) && !ctx.outcome_recorded {
                lease.backend().record(status >= 500 || status == 0);
            }
        }
        if let (Some(rejection), Some(dashboard)) = (
            &ctx.rejection,
            ctx.runtime.as_ref().and_then(|r| r.dashboard.as_ref()),
        ) {
            dashboard.refused(now, rejection);
        }
        if let Some(log) = ctx.runtime.as_ref().and_then(|r| r.log.as_ref()) {
            log.write(log_line::line(session, ctx, status, &log.redact_query));
        }
        if let Some(traces) = ctx.runtime.as_ref().and_then(|r| r.traces.as_ref()) {
            spans::export(traces, session, ctx, status);
        }
        ctx.lease = None;
    }

    /// Client hang-ups are routine for a proxy: not error-log material.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, e: &Error) -> bool {
        e.esource() == &ErrorSource::Downstream
            && matches!(
                e.etype(),
                ErrorType::ConnectionClosed
                    | ErrorType::ReadError
                    | ErrorType::WriteError
                    | ErrorType::ReadTimedout
                    | ErrorType::H2Error
            )
    }

    /// What Pingora's own error lines say about a request: method, host
    /// (canonical once known) and path, never the query (it may carry
    /// tokens) or a header.
    fn request_summary(&self, session: &Session, ctx: &RequestCtx) -> String {
        let req = session.req_header();
        let host = ctx
            .canonical_host
            .as_ref()
            .or_else(|| req.headers.get(http::header::HOST))
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        format!("{} {}{}", req.method, host, req.uri.path())
    }
}
