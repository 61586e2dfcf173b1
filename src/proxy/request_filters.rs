//! `request_filter`'s checks: each either lets the request on or returns
//! the [`Rejection`] that ends it. Cheap checks come first.

use std::net::IpAddr;

use pingora_proxy::Session;

use super::ctx::RequestCtx;
use crate::client_ip::client_ip;
use crate::config::{Route, Runtime};
use crate::reject::Rejection;
use crate::routing::{host_key, normalize};
use crate::trace::{request_id, TraceContext};

/// Runs the checks in order:
/// 1. request id and trace context (so every answer, even a 400, carries them);
/// 2. path normalisation (400 when ambiguous);
/// 3. route match on host and normalised path (404), then method (405);
/// 4. client IP rules of the route (403);
/// 5. declared body size (413).
pub fn admit(session: &Session, ctx: &mut RequestCtx) -> Result<(), Rejection> {
    let req = session.req_header();
    ctx.request_id = request_id(req.headers.get("x-request-id").map(|v| v.as_bytes()));
    ctx.trace = Some(TraceContext::continue_or_start(
        req.headers.get("traceparent").map(|v| v.as_bytes()),
    ));
    let runtime = ctx.runtime.clone().ok_or(Rejection::Internal)?;
    let digest = session.digest();
    ctx.tls = digest.is_some_and(|d| d.ssl_digest.is_some());
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let client = client_ip(&runtime.settings, peer, req);
    ctx.client_ip = Some(client);

    let path = normalize(req.uri.path()).map_err(Rejection::BadPath)?;
    let host = req
        .uri
        .host()
        .or_else(|| {
            req.headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or("");
    let id = match_route(&runtime, &host_key(host), &path, &req.method)?;
    if let std::borrow::Cow::Owned(p) = path {
        ctx.normalized_path = Some(p);
    }
    ctx.route = Some(id);
    let route = &runtime.routes[id];

    check_ip(route, client)?;
    check_declared_body(&runtime, session)
}

fn match_route(
    runtime: &Runtime,
    host: &str,
    path: &str,
    method: &http::Method,
) -> Result<usize, Rejection> {
    let ids = runtime.table.lookup(host, path).ok_or(Rejection::NoRoute)?;
    if let Some(&id) = ids.iter().find(|&&id| runtime.routes[id].allows(method)) {
        return Ok(id);
    }
    let mut allow: Vec<&str> = ids
        .iter()
        .flat_map(|&id| {
            runtime.routes[id]
                .methods
                .iter()
                .flatten()
                .map(|m| m.as_str())
        })
        .collect();
    allow.sort_unstable();
    allow.dedup();
    Err(Rejection::MethodNotAllowed(allow.join(", ")))
}

fn check_ip(route: &Route, client: IpAddr) -> Result<(), Rejection> {
    if route.ip_deny.iter().any(|n| n.contains(&client)) {
        return Err(Rejection::IpDenied);
    }
    if !route.ip_allow.is_empty() && !route.ip_allow.iter().any(|n| n.contains(&client)) {
        return Err(Rejection::IpDenied);
    }
    Ok(())
}

fn check_declared_body(runtime: &Runtime, session: &Session) -> Result<(), Rejection> {
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > runtime.settings.max_request_body_bytes => Err(Rejection::BodyTooLarge),
        _ => Ok(()),
    }
}
