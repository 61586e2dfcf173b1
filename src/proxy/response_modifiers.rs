//! `response_filter`'s edits: what the client receives.

use http::header;
use http::{HeaderValue, StatusCode};
use pingora_core::Result;
use pingora_http::ResponseHeader;

use super::header_sweep::{connection_tokens, listed, pick};
use crate::config::{Route, Settings};

/// HSTS sent on TLS listeners: one year, subdomains included.
const HSTS: &str = "max-age=31536000; includeSubDomains";

/// Removes the upstream connection's hop-by-hop headers and headers that
/// advertise the stack, adds security headers the app did not set, the
/// request id, the route's CORS headers and its response edits.
pub fn prepare(
    resp: &mut ResponseHeader,
    request_id: &str,
    tls: bool,
    route: Option<&Route>,
    cors_origin: Option<&HeaderValue>,
    settings: &Settings,
) -> Result<()> {
    normalize_framing(resp)?;
    let has = strip_hop_by_hop(resp);
    if settings.security_headers {
        add_missing(resp, tls, has)?;
    }
    resp.insert_header("x-request-id", request_id)?;
    if let Some(route) = route {
        if let Some(cors) = &route.cors {
            cors.decorate(resp, cors_origin)?;
        }
        for name in &route.headers.response_remove {
            resp.remove_header(name);
        }
        for (name, value) in &route.headers.response_set {
            resp.insert_header(name.clone(), value.clone())?;
        }
    }
    Ok(())
}

/// An HTTP/1.0 client cannot read a chunked body (RFC 9112 §6.1): the
/// body goes out as it is and ends when the connection closes. Returns
/// whether the response needs that close (a body without a length).
pub fn unframe_for_http10(resp: &mut ResponseHeader, method: &http::Method) -> bool {
    if resp.status.is_informational() {
        return false;
    }
    resp.remove_header(&header::TRANSFER_ENCODING);
    let bodyless = method == http::Method::HEAD
        || matches!(
            resp.status,
            StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
        );
    !bodyless && !resp.headers.contains_key(header::CONTENT_LENGTH)
}

/// The upstream's framing headers as the client may receive them: a 1xx
/// or 204 has no body, so no `Transfer-Encoding` (and a 204 no
/// `Content-Length`, RFC 9110 §8.6); `Transfer-Encoding: identity` (no
/// coding at all; the length framed the body) is dropped; repeated
/// identical `Content-Length` values (`5` twice, or `5, 5`) become one,
/// which Node's parser and HTTP/2 clients insist on; differing ones are a
/// 502, never forwarded.
fn normalize_framing(resp: &mut ResponseHeader) -> Result<()> {
    if resp.status == StatusCode::NO_CONTENT || resp.status.is_informational() {
        resp.remove_header(&header::TRANSFER_ENCODING);
        if resp.status == StatusCode::NO_CONTENT {
            resp.remove_header(&header::CONTENT_LENGTH);
        }
        return Ok(());
    }
    if is_identity_only(resp) {
        resp.remove_header(&header::TRANSFER_ENCODING);
    }
    let mut values = resp.headers.get_all(header::CONTENT_LENGTH).iter();
    let (Some(first), second) = (values.next(), values.next()) else {
        return Ok(());
    };
    if second.is_none() && !first.as_bytes().contains(&b',') {
        return Ok(());
    }
    let mut lengths = resp
        .headers
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii);
    let one = lengths.next().unwrap_or_default().to_vec();
    let agree = !one.is_empty() && one.iter().all(u8::is_ascii_digit) && lengths.all(|l| l == one);
    if !agree {
        let mut e = pingora_core::Error::explain(
            pingora_core::ErrorType::InvalidHTTPHeader,
            "the upstream sent conflicting Content-Length values",
        );
        e.as_up();
        return Err(e);
    }
    let value = HeaderValue::from_bytes(&one).map_err(|e| {
        pingora_core::Error::because(
            pingora_core::ErrorType::InvalidHTTPHeader,
            "Content-Length",
            e,
        )
    })?;
    resp.insert_header(header::CONTENT_LENGTH, value)
}

/// Whether the response's only transfer coding is `identity`, which
/// changes nothing (RFC 2616 §3.6; no longer registered since RFC 7230).
fn is_identity_only(resp: &ResponseHeader) -> bool {
    let mut values = resp
        .headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .peekable();
    values.peek().is_some()
        && values.all(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .all(|t| t.trim_ascii().eq_ignore_ascii_case(b"identity"))
        })
}

/// The security headers the gateway adds when the app did not set them:
/// nosniff, frame-options, referrer-policy, and HSTS (sent on TLS only,
/// the last).
const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "SAMEORIGIN"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    ("strict-transport-security", HSTS),
];

/// Which of [`SECURITY_HEADERS`] a response has, one bit each.
#[derive(Clone, Copy, Default)]
struct SecurityHeaders(u8);

impl SecurityHeaders {
    /// The bit of the security header `name`, if it is one.
    fn bit(name: &str) -> u8 {
        SECURITY_HEADERS
            .iter()
            .position(|(n, _)| *n == name)
            .map_or(0, |i| 1 << i)
    }
}

/// Removes, in one pass over the response's header names, the upstream
/// connection's hop-by-hop headers (`Keep-Alive: timeout=5` and the like
/// describe the gateway's connection to the upstream, not the client's,
/// RFC 9110 §7.6.1) and the headers that advertise the stack (`Server`,
/// `X-Powered-By`). Pingora writes the client's own `Connection`; a 101
/// keeps `Connection: upgrade`/`Upgrade`. Returns the security headers the
/// app set, seen on the way.
fn strip_hop_by_hop(resp: &mut ResponseHeader) -> SecurityHeaders {
    let upgraded = resp.status == StatusCode::SWITCHING_PROTOCOLS;
    let tokens = if upgraded {
        Vec::new()
    } else {
        connection_tokens(&resp.headers)
    };
    let mut has = SecurityHeaders::default();
    let doomed = pick(&resp.headers, |name| {
        let n = name.as_str();
        match n {
            "keep-alive" | "proxy-connection" | "server" | "x-powered-by" => true,
            "upgrade" => !upgraded,
            _ => {
                has.0 |= SecurityHeaders::bit(n);
                listed(n, &tokens)
            }
        }
    });
    for name in &doomed {
        resp.remove_header(name);
    }
    has
}

/// Adds the [`SECURITY_HEADERS`] that `has` does not hold (HSTS only on
/// TLS): an app's own choice of any of them is kept.
fn add_missing(resp: &mut ResponseHeader, tls: bool, has: SecurityHeaders) -> Result<()> {
    let count = if tls { 4 } else { 3 };
    for (i, (name, value)) in SECURITY_HEADERS[..count].iter().enumerate() {
        if has.0 & (1 << i) == 0 {
            resp.insert_header(*name, HeaderValue::from_static(value))?;
        }
    }
    Ok(())
}

/// [`SECURITY_HEADERS`] on a response the gateway wrote itself, keeping
/// any it set already.
pub fn add_security_headers(resp: &mut ResponseHeader, tls: bool) -> Result<()> {
    let mut has = SecurityHeaders::default();
    for name in resp.headers.keys() {
        has.0 |= SecurityHeaders::bit(name.as_str());
    }
    add_missing(resp, tls, has)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_hop_by_hop_headers_are_removed() {
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.insert_header("connection", "keep-alive, X-Hop").unwrap();
        r.insert_header("keep-alive", "timeout=5").unwrap();
        r.insert_header("x-hop", "1").unwrap();
        r.insert_header("content-length", "3").unwrap();
        strip_hop_by_hop(&mut r);
        for gone in ["keep-alive", "x-hop"] {
            assert!(r.headers.get(gone).is_none(), "{gone}");
        }
        assert!(r.headers.get("content-length").is_some(), "framing stays");

        let mut r = ResponseHeader::build(101, None).unwrap();
        r.insert_header("connection", "upgrade").unwrap();
        r.insert_header("upgrade", "websocket").unwrap();
        strip_hop_by_hop(&mut r);
        assert_eq!(r.headers["upgrade"], "websocket");
    }

    #[test]
    fn security_headers_fill_in_what_the_app_left_out() {
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.insert_header("Server", "nginx/1.22").unwrap();
        r.insert_header("X-Powered-By", "Next.js").unwrap();
        r.insert_header("X-Frame-Options", "DENY").unwrap();
        let has = strip_hop_by_hop(&mut r);
        add_missing(&mut r, false, has).unwrap();
        assert!(r.headers.get("server").is_none());
        assert!(r.headers.get("x-powered-by").is_none());
        assert_eq!(
            r.headers["x-frame-options"], "DENY",
            "the app's choice stays"
        );
        assert_eq!(r.headers["x-content-type-options"], "nosniff");
        assert_eq!(
            r.headers["referrer-policy"],
            "strict-origin-when-cross-origin"
        );
        assert!(
            r.headers.get("strict-transport-security").is_none(),
            "not on plain HTTP"
        );

        let mut r = ResponseHeader::build(403, None).unwrap();
        r.insert_header("referrer-policy", "no-referrer").unwrap();
        add_security_headers(&mut r, true).unwrap();
        assert_eq!(r.headers["referrer-policy"], "no-referrer");
        assert_eq!(r.headers["strict-transport-security"], HSTS);
        assert_eq!(r.headers.len(), 4);
    }
}
