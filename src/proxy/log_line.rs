//! The access-log line of a finished request (see [`crate::access_log`]).

use pingora_proxy::Session;

use super::ctx::RequestCtx;
use super::fallback::REASONS;
use crate::access_log::{redacted_target, rfc3339_now, Line};
use crate::auth::AuthMode;
use crate::client_ip::ClientIp;
use crate::reject::Rejection;

/// One JSON line: who asked what, where it went, how it ended, how long
/// it took. Never a header value, token or cookie.
pub fn line(session: &Session, ctx: &RequestCtx, status: u16, redact: &[String]) -> String {
    let req = session.req_header();
    let route = ctx.route();
    let path = ctx.normalized_path.as_deref().unwrap_or(req.uri.path());
    let mut l = Line::new();
    l.str("time", &rfc3339_now())
        .str("request_id", &ctx.request_id)
        .opt("trace_id", ctx.trace.as_ref().map(|t| t.trace_id()))
        .opt(
            "client_ip",
            ctx.client_ip
                .and_then(ClientIp::address)
                .map(crate::client_ip::ip_text)
                .as_deref(),
        )
        .str("method", req.method.as_str())
        .str("path", &redacted_target(path, req.uri.query(), redact))
        .opt("route", route.map(|r| r.name.as_str()))
        .opt("upstream", ctx.pool().map(|p| p.name.as_str()))
        .opt(
            "backend",
            ctx.lease.as_ref().map(|l| l.backend().label.as_str()),
        )
        .num("status", status)
        .num("bytes_sent", session.as_ref().body_bytes_sent())
        .num("bytes_received", ctx.body_bytes)
        .num("duration_ms", ms(ctx.started.elapsed()))
        .num(
            "upstream_ms",
            ctx.upstream_started.map_or(0.0, |t| ms(t.elapsed())),
        )
        .num("attempts", ctx.attempts)
        .opt("user", ctx.identity.as_ref().map(|i| i.subject.as_str()))
        .str("auth", auth_decision(ctx))
        .opt("limit", limit_decision(ctx))
        .opt("error", ctx.rejection.as_ref().map(Rejection::code))
        .opt("fallback", ctx.fallback.map(|i| REASONS[i]));
    l.finish()
}

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn auth_decision(ctx: &RequestCtx) -> &'static str {
    match &ctx.rejection {
        Some(Rejection::Unauthenticated(r)) => r.as_str(),
        Some(Rejection::LoginRedirect(_) | Rejection::Redirect(_)) => "login_redirect",
        Some(Rejection::CsrfRejected) => "csrf",
        Some(Rejection::OauthUnavailable) => "unavailable",
        Some(Rejection::InsufficientScope(_)) => "scope",
        Some(Rejection::InsufficientRole) => "role",
        Some(Rejection::AuthUnavailable(_)) => "unavailable",
        _ if ctx.identity.is_some() => "ok",
        _ if ctx.route().is_some_and(|r| r.policy.mode != AuthMode::None) => "not_checked",
        _ => "public",
    }
}

fn limit_decision(ctx: &RequestCtx) -> Option<&'static str> {
    match &ctx.rejection {
        Some(Rejection::RateLimited(_)) => Some("limited"),
        Some(Rejection::RateLimitUnavailable) => Some("unavailable"),
        _ => ctx.limit_headers.as_ref().map(|_| "ok"),
    }
}
