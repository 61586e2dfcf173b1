//! The spans of a finished request, for [`crate::otlp`]: one server span
//! (the gateway's span of the `traceparent` it sent upstream) and one
//! client span per upstream attempt, with the attributes of the
//! OpenTelemetry HTTP semantic conventions.

use std::time::{Instant, SystemTime};

use pingora_http::RequestHeader;
use pingora_proxy::Session;

use super::RequestCtx;
use crate::otlp::{new_span_id, Attr, Exporter, SpanRecord};

/// Hands the request's spans to `exporter`, if its trace is sampled.
pub fn export(exporter: &Exporter, session: &Session, ctx: &RequestCtx, status: u16) {
    spans(session.req_header(), ctx, status, |span| {
        exporter.submit(span)
    });
}

/// The spans of request `req` that ended with `status`, each handed to
/// `emit`: none when its trace is not sampled.
pub fn spans(req: &RequestHeader, ctx: &RequestCtx, status: u16, mut emit: impl FnMut(SpanRecord)) {
    let Some(trace) = ctx.trace.as_ref().filter(|t| t.sampled()) else {
        return;
    };
    let now = Instant::now();
    let wall = SystemTime::now();
    let at = |t: Instant| wall - now.duration_since(t);
    let method = req.method.as_str().to_string();
    let route = ctx.route();
    let mut attrs = vec![
        ("http.request.method", Attr::Str(method.clone())),
        (
            "url.path",
            Attr::Str(
                ctx.normalized_path
                    .clone()
                    .unwrap_or_else(|| req.uri.path().to_string()),
            ),
        ),
        (
            "url.scheme",
            Attr::Str(if ctx.tls { "https" } else { "http" }.into()),
        ),
        ("http.response.status_code", Attr::Int(status.into())),
    ];
    if let Some(r) = route {
        attrs.push(("http.route", Attr::Str(r.prefix.clone())));
        attrs.push(("gatehouse.route", Attr::Str(r.name.clone())));
    }
    let host = ctx
        .canonical_host
        .as_ref()
        .or_else(|| req.headers.get(http::header::HOST))
        .and_then(|h| h.to_str().ok());
    if let Some(h) = host {
        attrs.push(("server.address", Attr::Str(h.to_string())));
    }
    if let Some(ip) = ctx.client_ip.and_then(crate::client_ip::ClientIp::address) {
        attrs.push(("client.address", Attr::Str(crate::client_ip::ip_text(ip))));
    }
    let name = match route {
        Some(r) => format!("{method} {}", r.prefix),
        None => method.clone(),
    };
    let (trace_id, span_id, parent_id) = trace.id_bytes();
    emit(SpanRecord {
        trace_id,
        span_id,
        parent_id,
        name,
        server: true,
        start: at(ctx.started),
        end: wall,
        attrs,
        error: status >= 500 || status == 0,
    });
    let attempts = &ctx.attempt_log;
    for (i, &(start, addr, failed)) in attempts.iter().enumerate() {
        let end = attempts.get(i + 1).map_or(now, |next| next.0);
        let last = i + 1 == attempts.len();
        let mut attrs = vec![
            ("http.request.method", Attr::Str(method.clone())),
            (
                "server.address",
                Attr::Str(crate::client_ip::ip_text(addr.ip())),
            ),
            ("server.port", Attr::Int(addr.port().into())),
            (
                "network.peer.address",
                Attr::Str(crate::client_ip::ip_text(addr.ip())),
            ),
            ("network.peer.port", Attr::Int(addr.port().into())),
        ];
        if i > 0 {
            attrs.push(("http.request.resend_count", Attr::Int(i as i64)));
        }
        if last && !failed && status != 0 {
            attrs.push(("http.response.status_code", Attr::Int(status.into())));
        }
        if failed {
            attrs.push(("error.type", Attr::Str("attempt_failed".into())));
        }
        emit(SpanRecord {
            trace_id,
            span_id: new_span_id(),
            parent_id: Some(span_id),
            name: method.clone(),
            server: false,
            start: at(start),
            end: at(end),
            attrs,
            error: failed,
        });
    }
}
