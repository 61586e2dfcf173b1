//! Degraded answers: what a route serves instead of an error when its
//! upstream cannot answer (route keys `fallback` and `fallback_upstream`).
//!
//! Only the gateway's own failures are replaced: every breaker open, the
//! pool shed at `max_in_flight`, no healthy backend, the route's deadline
//! or an attempt's timeout, a refused or reset connection. A response the
//! app itself wrote, a 503 included, is passed on as it is. The fallback
//! upstream is tried first (once per request, with its own timeouts and
//! retry policy: the route's `timeout_ms` bounds the route's own
//! upstream), the static answer last. Either carries
//! `X-Gatehouse-Fallback: <reason>`, the SPEC §4 error code it replaces,
//! and is counted in `gatehouse_fallbacks_total{route, reason}`.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use pingora_core::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use prometheus::IntCounter;

use super::RequestCtx;
use crate::reject::Rejection;
use crate::upstream::{Pool, Tried};

/// The response header naming why a fallback answered.
pub const FALLBACK_HEADER: &str = "x-gatehouse-fallback";

/// The failures a fallback replaces, by their SPEC §4 error code: the
/// `reason` label values, in the order of [`Fallback::counters`].
pub const REASONS: [&str; 5] = [
    "bad_gateway",
    "circuit_open",
    "gateway_timeout",
    "no_healthy_backend",
    "upstream_overloaded",
];

/// The index in [`REASONS`] of a refusal a fallback replaces.
fn reason_index(r: &Rejection) -> Option<usize> {
    let code = match r {
        Rejection::BadGateway
        | Rejection::CircuitOpen
        | Rejection::GatewayTimeout
        | Rejection::NoHealthyBackend
        | Rejection::UpstreamOverloaded => r.code(),
        _ => return None,
    };
    REASONS.iter().position(|&c| c == code)
}

/// A route's fallbacks, compiled.
pub struct Fallback {
    /// The static answer, served last.
    pub answer: Option<FallbackAnswer>,
    /// The pool that serves when the route's own cannot.
    pub upstream: Option<Arc<Pool>>,
    /// `gatehouse_fallbacks_total` of the route, by [`REASONS`] index.
    pub counters: [IntCounter; REASONS.len()],
}

/// A static degraded answer, read once at load.
pub struct FallbackAnswer {
    /// Its status.
    pub status: StatusCode,
    /// Its `Content-Type`.
    pub content_type: HeaderValue,
    /// Its body.
    pub body: Bytes,
}

/// Sends the request to the route's fallback upstream instead of its own,
/// when the route has one, has not used it yet, and `cause` is a failure a
/// fallback replaces. The fallback starts afresh: no backend tried, no
/// retry spent, no backoff pending.
pub fn divert(ctx: &mut RequestCtx, cause: &Rejection) -> bool {
    let has_upstream = ctx
        .route()
        .and_then(|r| r.fallback.as_ref())
        .is_some_and(|f| f.upstream.is_some());
    let Some(reason) = reason_index(cause).filter(|_| has_upstream && !ctx.diverted) else {
        return false;
    };
    ctx.diverted = true;
    ctx.fallback = Some(reason);
    ctx.tried = Tried::default();
    ctx.retries = 0;
    ctx.backoff = None;
    true
}

/// Marks a response of the fallback upstream and counts it.
pub fn mark_diverted(resp: &mut ResponseHeader, ctx: &RequestCtx) -> Result<()> {
    let (Some(reason), Some(f)) = (ctx.fallback, ctx.route().and_then(|r| r.fallback.as_ref()))
    else {
        return Ok(());
    };
    f.counters[reason].inc();
    resp.insert_header(FALLBACK_HEADER, REASONS[reason])
}

/// Serves the route's static answer in place of `cause`, when it has one
/// and `cause` is a failure a fallback replaces. Returns the status it
/// answered with.
pub async fn answer(session: &mut Session, ctx: &mut RequestCtx, cause: &Rejection) -> Option<u16> {
    let rt = ctx.runtime.clone()?;
    let route = &rt.routes[ctx.route?];
    let f = route.fallback.as_ref()?;
    let a = f.answer.as_ref()?;
    let reason = reason_index(cause)?;
    // The reason the route's own upstream was given up, if the fallback
    // upstream then failed as well.
    let reason = ctx.fallback.unwrap_or(reason);
    let header = build_header(a, REASONS[reason]).ok()?;
    let written = super::write_answer(session, ctx, route, &rt, header, a.body.clone()).await;
    // Nothing went out (the header could not be prepared): the refusal
    // answers instead. A client gone mid-write is Pingora's to log.
    if written.is_err() && session.response_written().is_none() {
        return None;
    }
    f.counters[reason].inc();
    ctx.fallback = Some(reason);
    Some(a.status.as_u16())
}

fn build_header(a: &FallbackAnswer, reason: &str) -> Result<ResponseHeader> {
    let mut h = ResponseHeader::build(a.status, Some(4))?;
    if !a.body.is_empty() {
        h.insert_header(http::header::CONTENT_TYPE, a.content_type.clone())?;
    }
    h.insert_header(http::header::CONTENT_LENGTH, a.body.len())?;
    // A degraded answer must not outlive the outage in a cache.
    h.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    h.insert_header(FALLBACK_HEADER, reason)?;
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_upstreams_failures_have_a_reason() {
        for r in [
            Rejection::BadGateway,
            Rejection::CircuitOpen,
            Rejection::GatewayTimeout,
            Rejection::NoHealthyBackend,
            Rejection::UpstreamOverloaded,
        ] {
            assert_eq!(reason_index(&r).map(|i| REASONS[i]), Some(r.code()));
        }
        for r in [
            Rejection::LocalResources,
            Rejection::BadRequest,
            Rejection::Internal,
            Rejection::ClientTimeout,
            Rejection::NoRoute,
        ] {
            assert_eq!(reason_index(&r), None, "{r:?}");
        }
    }
}
