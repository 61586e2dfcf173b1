//! `upstream_request_filter`'s edits: the request the backend receives.

use std::net::IpAddr;

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};
use pingora_core::Result;
use pingora_http::RequestHeader;

use super::ctx::RequestCtx;
use crate::auth::strip_identity_headers;
use crate::client_ip::is_trusted;
use crate::config::{Route, Settings};
use crate::oauth::OauthClient;

/// Hop-by-hop headers (RFC 9110 §7.6.1) that never go upstream as the
/// client sent them. `TE: trailers` survives: gRPC needs it.
const HOP_BY_HOP: &[&str] = &[
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "trailer",
];

/// Rewrites `req` for the backend: path, hop-by-hop headers, identity
/// headers (the client's copies always removed, the verified ones added),
/// forwarding headers, request id, trace context, the route's header edits.
pub fn prepare(
    req: &mut RequestHeader,
    ctx: &RequestCtx,
    route: &Route,
    settings: &Settings,
    identity_headers: &[HeaderName],
    oauth: Option<&OauthClient>,
    peer: Option<IpAddr>,
) -> Result<()> {
    rewrite_path(req, ctx, route)?;
    if let Some(host) = &ctx.canonical_host {
        req.insert_header(header::HOST, host.clone())?;
    }
    strip_hop_by_hop(req);
    // The gateway answered the expectation itself (or ignored it, for
    // HTTP/1.0): the body is on its way.
    req.remove_header(&header::EXPECT);
    join_cookies(req)?;
    strip_identity_headers(req, identity_headers);
    let trusted = peer.is_some_and(|p| is_trusted(settings, p));
    strip_spoofed_names(req, route, trusted);
    if let Some(identity) = &ctx.identity {
        for (name, value) in &identity.headers {
            req.insert_header(name.clone(), value.clone())?;
        }
    }
    if let Some(oauth) = oauth {
        crate::oauth::cookies::strip(req, oauth.gateway_cookies());
    }
    if let Some(bearer) = &ctx.oauth_authorization {
        req.insert_header(header::AUTHORIZATION, bearer.clone())?;
    }
    forwarded_headers(req, ctx, settings, peer, trusted)?;
    req.insert_header("x-request-id", ctx.request_id.as_str())?;
    if let Some(t) = &ctx.trace {
        req.insert_header("traceparent", t.header())?;
    }
    for name in &route.headers.request_remove {
        req.remove_header(name);
    }
    for (name, value) in &route.headers.request_set {
        req.insert_header(name.clone(), value.clone())?;
    }
    Ok(())
}

/// The backend sees the normalised path (as `rewrite` made it, or minus
/// the prefix with `strip_prefix`), always in origin form (an absolute-form target is
/// rewritten; its host was checked against Host already, and Host is
/// replaced by the canonical host when the client spelled it otherwise).
fn rewrite_path(req: &mut RequestHeader, ctx: &RequestCtx, route: &Route) -> Result<()> {
    let original = req.uri.path();
    let mut path = ctx
        .upstream_path
        .as_deref()
        .or(ctx.normalized_path.as_deref())
        .unwrap_or(original);
    if route.strip_prefix && route.prefix != "/" {
        path = path.strip_prefix(route.prefix.as_str()).unwrap_or(path);
        if path.is_empty() {
            path = "/";
        }
    }
    if path == original && req.raw_path().first() == Some(&b'/') {
        return Ok(());
    }
    let mut target = String::with_capacity(path.len() + 64);
    target.push_str(path);
    if let Some(q) = req.uri.query() {
        target.push('?');
        target.push_str(q);
    }
    let uri = target.parse().map_err(|e| {
        pingora_core::Error::because(
            pingora_core::ErrorType::InvalidHTTPHeader,
            "rewritten path",
            e,
        )
    })?;
    req.set_uri(uri);
    Ok(())
}

/// `Forwarded`: the `earlier` elements (a trusted peer's), then this hop's:
/// `for=` the peer (IPv6 quoted in brackets), `host=` the canonical Host,
/// `proto=`. One allocation.
fn forwarded_element(
    earlier: Option<&str>,
    peer: Option<IpAddr>,
    host: Option<&HeaderValue>,
    tls: bool,
) -> String {
    use std::fmt::Write;
    let host = host.and_then(|h| h.to_str().ok());
    let mut out =
        String::with_capacity(earlier.map_or(0, |e| e.len() + 2) + 64 + host.map_or(0, str::len));
    if let Some(e) = earlier {
        out.push_str(e);
        out.push_str(", ");
    }
    // Writing into a String cannot fail.
    let _ = match peer {
        Some(IpAddr::V6(v6)) => write!(out, "for=\"[{v6}]\""),
        Some(ip) => write!(out, "for={ip}"),
        None => write!(out, "for=unknown"),
    };
    if let Some(host) = host {
        out.push_str(";host=\"");
        out.push_str(host);
        out.push('"');
    }
    out.push_str(if tls { ";proto=https" } else { ";proto=http" });
    out
}

fn strip_hop_by_hop(req: &mut RequestHeader) {
    let upgrade = req.headers.get(header::UPGRADE).is_some()
        && connection_tokens(&req.headers).any(|t| t.eq_ignore_ascii_case("upgrade"));
    let listed: Vec<HeaderName> = connection_tokens(&req.headers)
        .filter(|t| !(upgrade && t.eq_ignore_ascii_case("upgrade")))
        .filter_map(listed_header)
        .collect();
    for name in listed {
        req.remove_header(&name);
    }
    for name in HOP_BY_HOP {
        req.remove_header(*name);
    }
    let te_trailers_only = req
        .headers
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if !te_trailers_only {
        req.remove_header(&header::TE);
    }
    if !upgrade {
        req.remove_header(&header::CONNECTION);
        req.remove_header(&header::UPGRADE);
    }
}

/// Several `cookie` fields (how browsers send cookies over HTTP/2) become
/// one, joined with `; ` (RFC 9113 §8.2.3): an HTTP/1.1 app reads only one
/// `Cookie` header (RFC 6265 §5.4).
fn join_cookies(req: &mut RequestHeader) -> Result<()> {
    let mut values = req.headers.get_all(header::COOKIE).iter();
    if values.next().is_none() || values.next().is_none() {
        return Ok(());
    }
    let mut joined = Vec::new();
    for value in req.headers.get_all(header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(value.as_bytes());
    }
    let joined = HeaderValue::from_bytes(&joined).map_err(|e| {
        pingora_core::Error::because(pingora_core::ErrorType::InvalidHTTPHeader, "cookie", e)
    })?;
    req.insert_header(header::COOKIE, joined)
}

/// `Forwarded` (RFC 7239), named once.
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Headers the gateway sets on every upstream request.
const GATEWAY_SET: [&str; 6] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-request-id",
    "traceparent",
];

/// What only a trusted proxy may tell the upstream about the client or
/// the original request: frameworks believe these (Spring prefers
/// `Forwarded`, IIS and Symfony honour `X-Original-URL`), so an untrusted
/// peer's copies are removed, in every spelling.
const CLIENT_CLAIMS: [&str; 8] = [
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-original-url",
    "x-rewrite-url",
];

/// Removes, in one pass over the request's header names (removing only
/// what is there: most requests carry none of these), the client headers
/// spelled with `_` that some upstreams read as the `-` header the gateway
/// sets (`X_Forwarded_For`, `X_Request_Id`, a route's `request_set`
/// names): SPEC §6, every injected header; and, from an untrusted peer,
/// [`CLIENT_CLAIMS`] in either spelling.
fn strip_spoofed_names(req: &mut RequestHeader, route: &Route, trusted: bool) {
    let spoofed: Vec<HeaderName> = req
        .headers
        .keys()
        .filter(|k| {
            let name = k.as_str();
            if !name.contains('_') {
                return !trusted && CLIENT_CLAIMS.contains(&name);
            }
            let dashed = name.replace('_', "-");
            GATEWAY_SET.contains(&dashed.as_str())
                || (!trusted && CLIENT_CLAIMS.contains(&dashed.as_str()))
                || route
                    .headers
                    .request_set
                    .iter()
                    .any(|(n, _)| n.as_str() == dashed)
        })
        .cloned()
        .collect();
    for name in spoofed {
        req.remove_header(&name);
    }
}

/// Framing headers are Pingora's to manage, never removed by name games.
fn is_framing(name: &HeaderName) -> bool {
    name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING || name == header::HOST
}

/// The header a `Connection` token names, if it is one to remove: not a
/// framing header, and not the `close`/`keep-alive` options every browser
/// sends (checked first, so the common request parses no name).
pub(super) fn listed_header(token: &str) -> Option<HeaderName> {
    if token.eq_ignore_ascii_case("close") || token.eq_ignore_ascii_case("keep-alive") {
        return None;
    }
    HeaderName::try_from(token).ok().filter(|n| !is_framing(n))
}

/// The header names listed in `Connection` (RFC 9110 §7.6.1).
pub(super) fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// X-Forwarded-For/-Proto/-Host and `Forwarded` (RFC 7239). A trusted
/// peer's chain is extended; an untrusted peer's claims are replaced by
/// what the gateway saw.
fn forwarded_headers(
    req: &mut RequestHeader,
    ctx: &RequestCtx,
    settings: &Settings,
    peer: Option<IpAddr>,
    trusted: bool,
) -> Result<()> {
    if settings.forwarded_header {
        let earlier = req
            .headers
            .get(FORWARDED)
            .filter(|_| trusted)
            .and_then(|v| v.to_str().ok());
        let value = forwarded_element(earlier, peer, req.headers.get(header::HOST), ctx.tls);
        req.insert_header(FORWARDED, value)?;
    }
    let peer_text = peer.map(|p| p.to_string()).unwrap_or_default();
    let existing: Vec<String> = req
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let xff = if trusted && !existing.is_empty() {
        format!("{}, {peer_text}", existing.join(", "))
    } else {
        peer_text
    };
    req.insert_header("x-forwarded-for", xff)?;
    if !(trusted && req.headers.contains_key("x-forwarded-proto")) {
        let proto = HeaderValue::from_static(if ctx.tls { "https" } else { "http" });
        req.insert_header("x-forwarded-proto", proto)?;
    }
    if !(trusted && req.headers.contains_key("x-forwarded-host")) {
        // Host is canonical by now (set from the target's authority when
        // the client sent none); the value is shared, not copied.
        match req.headers.get(header::HOST).cloned() {
            Some(h) => req.insert_header("x-forwarded-host", h)?,
            None => {
                req.remove_header("x-forwarded-host");
            }
        }
    }
    Ok(())
}
