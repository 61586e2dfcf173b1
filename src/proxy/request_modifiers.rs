//! `upstream_request_filter`'s edits: the request the backend receives.

use std::net::IpAddr;

use http::header::{self, HeaderName};
use http::HeaderValue;
use pingora_core::Result;
use pingora_http::RequestHeader;

use super::ctx::RequestCtx;
use super::header_sweep::{connection_tokens, listed, pick};
use crate::client_ip::{ip_text, is_trusted};
use crate::config::{Route, Settings};
use crate::oauth::OauthClient;

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
    let trusted = peer.is_some_and(|p| is_trusted(settings, p));
    strip_client_headers(req, identity_headers, &route.headers.request_set, trusted);
    join_cookies(req)?;
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
/// `for=` the peer (`peer`, its address as text; IPv6 quoted in brackets),
/// `host=` the canonical Host, `proto=`. One allocation.
fn forwarded_element(
    earlier: Option<&str>,
    peer: Option<(IpAddr, &str)>,
    host: Option<&HeaderValue>,
    tls: bool,
) -> String {
    let host = host.and_then(|h| h.to_str().ok());
    let mut out =
        String::with_capacity(earlier.map_or(0, |e| e.len() + 2) + 64 + host.map_or(0, str::len));
    if let Some(e) = earlier {
        out.push_str(e);
        out.push_str(", ");
    }
    match peer {
        Some((IpAddr::V6(_), text)) => {
            out.push_str("for=\"[");
            out.push_str(text);
            out.push_str("]\"");
        }
        Some((IpAddr::V4(_), text)) => {
            out.push_str("for=");
            out.push_str(text);
        }
        None => out.push_str("for=unknown"),
    }
    if let Some(host) = host {
        out.push_str(";host=\"");
        out.push_str(host);
        out.push('"');
    }
    out.push_str(if tls { ";proto=https" } else { ";proto=http" });
    out
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

/// `Forwarded` (RFC 7239), named once. Pingora's header maps take a
/// name as text: a static one is neither copied nor allocated.
const FORWARDED: &str = "forwarded";

/// `X-Forwarded-For`, named once.
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// Whether `name` is a header the gateway sets on every upstream request.
fn gateway_sets(name: &str) -> bool {
    matches!(
        name,
        "x-forwarded-for"
            | "x-forwarded-proto"
            | "x-forwarded-host"
            | "forwarded"
            | "x-request-id"
            | "traceparent"
    )
}

/// Whether `name` is what only a trusted proxy may tell the upstream about
/// the client or the original request: frameworks believe these (Spring
/// prefers `Forwarded`, IIS and Symfony honour `X-Original-URL`), so an
/// untrusted peer's copies are removed, in every spelling.
fn client_claims(name: &str) -> bool {
    matches!(
        name,
        "forwarded"
            | "x-real-ip"
            | "true-client-ip"
            | "x-client-ip"
            | "x-forwarded-port"
            | "x-forwarded-prefix"
            | "x-original-url"
            | "x-rewrite-url"
    )
}

/// Removes, in one pass over the request's header names, what the client
/// may not send upstream:
/// - hop-by-hop headers (RFC 9110 §7.6.1) and those `Connection` lists;
///   `Connection`/`Upgrade` stay on an upgrade, `TE: trailers` stays (gRPC
///   needs it);
/// - `Expect`: the gateway answered the expectation itself (or ignored it,
///   for HTTP/1.0), the body is on its way;
/// - the identity headers the gateway owns, and every header it sets (its
///   own and the route's `request_set`), also spelled with `_` (which
///   some upstreams read as `-`): SPEC §6;
/// - from an untrusted peer, [`client_claims`] in either spelling.
fn strip_client_headers(
    req: &mut RequestHeader,
    identity_headers: &[HeaderName],
    route_set: &[(HeaderName, HeaderValue)],
    trusted: bool,
) {
    let tokens = connection_tokens(&req.headers);
    let upgrade = req.headers.contains_key(header::UPGRADE)
        && tokens.iter().any(|t| t.eq_ignore_ascii_case("upgrade"));
    let te_trailers_only = req
        .headers
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    let doomed = pick(&req.headers, |name| {
        let n = name.as_str();
        match n {
            "keep-alive"
            | "proxy-connection"
            | "proxy-authorization"
            | "proxy-authenticate"
            | "trailer"
            | "expect" => true,
            "te" => !te_trailers_only || listed(n, &tokens),
            "connection" | "upgrade" => !upgrade,
            _ if client_claims(n) => !trusted || listed(n, &tokens),
            // Rare: the names it may stand for are spelled out to compare.
            _ if n.contains('_') => {
                let dashed = n.replace('_', "-");
                let d = dashed.as_str();
                gateway_sets(d)
                    || (!trusted && client_claims(d))
                    || identity_headers.iter().any(|o| o.as_str() == d)
                    || route_set.iter().any(|(o, _)| o.as_str() == d)
            }
            _ => identity_headers.contains(name) || listed(n, &tokens),
        }
    });
    for name in &doomed {
        req.remove_header(name);
    }
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
    let peer_text = peer.map(ip_text).unwrap_or_default();
    if settings.forwarded_header {
        let earlier = req
            .headers
            .get(FORWARDED)
            .filter(|_| trusted)
            .and_then(|v| v.to_str().ok());
        let this_hop = peer.map(|p| (p, peer_text.as_str()));
        let value = forwarded_element(earlier, this_hop, req.headers.get(header::HOST), ctx.tls);
        req.insert_header(FORWARDED, value)?;
    }
    let mut hops_before = req
        .headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter(|_| trusted)
        .filter_map(|v| v.to_str().ok())
        .peekable();
    let xff = if hops_before.peek().is_some() {
        let mut chain = String::with_capacity(64);
        for hop in hops_before {
            chain.push_str(hop);
            chain.push_str(", ");
        }
        chain.push_str(&peer_text);
        chain
    } else {
        peer_text
    };
    req.insert_header(X_FORWARDED_FOR, xff)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The names left after [`strip_client_headers`] of `sent`.
    fn left_after(sent: &[(&str, &str)], trusted: bool) -> Vec<String> {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in sent {
            r.append_header(k.to_string(), *v).unwrap();
        }
        let identity = [HeaderName::from_static("x-user-id")];
        let set = [(
            HeaderName::from_static("x-tenant"),
            HeaderValue::from_static("a"),
        )];
        strip_client_headers(&mut r, &identity, &set, trusted);
        let mut left: Vec<String> = r.headers.keys().map(|k| k.to_string()).collect();
        left.sort();
        left
    }

    #[test]
    fn identity_and_gateway_headers_go_in_every_spelling() {
        let sent = [
            ("X-User-Id", "a"),
            ("x_user_id", "b"),
            ("X_User_Id", "c"),
            ("x-user-idx", "keep"),
            ("X_Forwarded_For", "1.2.3.4"),
            ("x_request_id", "r"),
            ("X_Tenant", "evil"),
            ("x-real-ip", "1.2.3.4"),
            ("Forwarded", "for=1.2.3.4"),
            ("x_original_url", "/admin"),
        ];
        assert_eq!(left_after(&sent, false), ["x-user-idx"]);
        assert_eq!(
            left_after(&sent, true),
            ["forwarded", "x-real-ip", "x-user-idx", "x_original_url"],
            "a trusted proxy may tell where the client is"
        );
    }

    #[test]
    fn hop_by_hop_headers_go_unless_an_upgrade_keeps_them() {
        let sent = [
            ("Connection", "keep-alive, X-Hop, Content-Length"),
            ("X-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Authorization", "Basic eA=="),
            ("TE", "gzip"),
            ("Expect", "100-continue"),
            ("Content-Length", "0"),
            ("Accept", "*/*"),
        ];
        assert_eq!(left_after(&sent, false), ["accept", "content-length"]);
        let upgrade = [
            ("Connection", "Upgrade, X-Hop"),
            ("Upgrade", "websocket"),
            ("X-Hop", "1"),
            ("TE", "trailers"),
        ];
        assert_eq!(left_after(&upgrade, false), ["connection", "te", "upgrade"]);
    }
}
