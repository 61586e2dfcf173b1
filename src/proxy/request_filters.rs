//! `request_filter`'s checks: each either lets the request on or returns
//! the [`Rejection`] that ends it. Cheap checks come first.

use std::net::IpAddr;

use std::sync::Arc;

use pingora_http::RequestHeader;
use pingora_proxy::Session;

use super::ctx::RequestCtx;
use super::oauth_filters::{self, Origin};
use crate::auth::{AuthMode, Failure, Identity, Reason};
use crate::client_ip::{client_ip, is_trusted, ClientIp};
use crate::config::{Route, Runtime};
use crate::cors;
use crate::limit::{Refusal, RequestKeys};
use crate::reject::Rejection;
use crate::routing::{check_parameters, normalize, parse_authority, Authority};
use crate::trace::{request_id, TraceContext};

/// Runs the checks in order:
/// 1. request id and trace context (so every answer, even a 400, carries them);
/// 2. target length (414), header size (431), transfer codings (501),
///    expectations (417), path normalisation (400 when ambiguous, or for
///    `;` path parameters unless allowed);
/// 3. route match on host and normalised path (404), then method (405);
/// 4. client IP rules of the route (403); a CORS preflight is answered
///    here (204, or 403 `cors_rejected`), before any credential is asked;
/// 5. declared body size (413);
/// 6. rate limits keyed by IP, header or route (429);
/// 7. authentication and authorization (401/302, 403, 503) — crypto and
///    TokenginX lookups, skipped for whoever the limits above refused;
/// 8. rate limits keyed by the verified user (429).
pub async fn admit(session: &Session, ctx: &mut RequestCtx) -> Result<(), Rejection> {
    let req = session.req_header();
    ctx.request_id = request_id(req.headers.get("x-request-id").map(|v| v.as_bytes()));
    let runtime = ctx.runtime.clone().ok_or(Rejection::Internal)?;
    let ratio = runtime.traces.as_ref().map_or(1.0, |t| t.spec.sample_ratio);
    ctx.trace = Some(TraceContext::continue_or_start(
        req.headers.get("traceparent").map(|v| v.as_bytes()),
        ratio,
    ));
    let digest = session.digest();
    ctx.tls = digest.is_some_and(|d| d.ssl_digest.is_some());
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let client = client_ip(&runtime.settings, peer, req);
    ctx.client_ip = Some(client);

    if req.raw_path().len() > runtime.settings.max_uri_bytes {
        return Err(Rejection::UriTooLong);
    }
    let header_bytes: usize = req
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if header_bytes > runtime.settings.max_header_bytes {
        return Err(Rejection::HeadersTooLarge);
    }
    check_transfer_coding(req)?;
    ctx.expect_continue = expects_continue(req)?;
    let path = normalize(req.uri.path()).map_err(Rejection::BadPath)?;
    check_parameters(&path, runtime.settings.allow_path_params).map_err(Rejection::BadPath)?;
    let authority = request_authority(req)?;
    let from = Origin {
        req,
        authority: &authority,
        trusted: is_trusted(&runtime.settings, peer),
        tls: ctx.tls,
    };
    if let (Some(acme), Some(token)) = (
        runtime.acme.as_deref(),
        path.strip_prefix(crate::acme::CHALLENGE_PATH),
    ) {
        return Err(match acme.answer(token).await {
            Some(answer) => Rejection::AcmeChallenge(answer),
            None => Rejection::NoRoute,
        });
    }
    if let Some(oauth) = runtime.auth.oauth.as_deref() {
        if let Some(answer) = oauth_filters::endpoint(oauth, &from, &path).await {
            return Err(answer);
        }
    }
    let id = match preflight_route(&runtime, &authority.host, &path, req) {
        Some(id) => id,
        None => match_route(&runtime, &authority.host, &path, &req.method)?,
    };
    ctx.canonical_host = canonical_host_header(req, &authority);
    if let std::borrow::Cow::Owned(p) = path {
        ctx.normalized_path = Some(p);
    }
    ctx.route = Some(id);
    let route = &runtime.routes[id];
    if let Some(rw) = &route.rewrite {
        let path = ctx.normalized_path.as_deref().unwrap_or(req.uri.path());
        if let std::borrow::Cow::Owned(new) = rw.regex.replace(path, rw.replacement.as_str()) {
            // Captures may join into a dot-segment (`/api/.` + `./x`): the
            // result is normalised again, never forwarded as written.
            let normal = normalize(&new).map_err(Rejection::BadPath)?;
            ctx.upstream_path = Some(normal.into_owned());
        }
    }

    check_ip(route, client).inspect_err(|_| route.metrics.auth_failures.inc(Reason::Ip))?;
    if let Some(policy) = &route.cors {
        match policy.judge(req) {
            cors::Verdict::Allowed(origin) if cors::is_preflight(req) => {
                return Err(policy
                    .preflight(req, origin)
                    .map_or(Rejection::CorsRejected, Rejection::CorsPreflight));
            }
            cors::Verdict::Allowed(origin) => ctx.cors_origin = Some(origin),
            cors::Verdict::Refused if cors::is_preflight(req) => {
                return Err(Rejection::CorsRejected)
            }
            cors::Verdict::Refused | cors::Verdict::NoOrigin => {}
        }
    }
    check_declared_body(&runtime, session)?;
    limit(&runtime, route, ctx, req, false).await?;
    ctx.identity = match runtime.auth.oauth.as_deref() {
        Some(oauth) if route.policy.mode == AuthMode::Oauth => {
            match oauth_filters::session_auth(&runtime.auth, oauth, &from, route, ctx).await {
                Some(result) => Some(result?),
                None => authenticate(req, &runtime, route).await?,
            }
        }
        _ => authenticate(req, &runtime, route).await?,
    };
    limit(&runtime, route, ctx, req, true).await
}

async fn limit(
    runtime: &Runtime,
    route: &Route,
    ctx: &mut RequestCtx,
    req: &RequestHeader,
    after_auth: bool,
) -> Result<(), Rejection> {
    let Some(limits) = &route.limits else {
        return Ok(());
    };
    let keys = RequestKeys {
        ip: ctx
            .client_ip
            .map_or(IpAddr::from([0, 0, 0, 0]), ClientIp::key),
        user: ctx.identity.as_deref().map(|i| i.subject.as_str()),
        consumer: ctx
            .identity
            .as_deref()
            .filter(|i| i.consumer)
            .map(|i| i.subject.as_str()),
        req,
    };
    let headers = ctx.limit_headers.get_or_insert_with(Default::default);
    runtime
        .limiter
        .check(limits, after_auth, &keys, headers)
        .await
        .map_err(|refusal| match refusal {
            Refusal::Limited(h) => Rejection::RateLimited(h),
            Refusal::StoreUnavailable => Rejection::RateLimitUnavailable,
        })
}

async fn authenticate(
    req: &RequestHeader,
    runtime: &Runtime,
    route: &Route,
) -> Result<Option<Arc<Identity>>, Rejection> {
    let failure = match runtime
        .auth
        .check(req, &route.policy, Some(&runtime.api_keys))
        .await
    {
        Ok(identity) => return Ok(identity),
        Err(f) => f,
    };
    if let Some(reason) = failure.reason() {
        route.metrics.auth_failures.inc(reason);
    }
    Err(match (failure, &route.policy.login_redirect) {
        (Failure::Unauthenticated(_), Some(target)) if is_navigation(req) => {
            Rejection::LoginRedirect(login_url(target, req))
        }
        (other, _) => other.into(),
    })
}

/// A browser loading a page: GET or HEAD that accepts HTML. API calls
/// (fetch, curl) get the 401 instead of a redirect.
pub(super) fn is_navigation(req: &RequestHeader) -> bool {
    matches!(req.method, http::Method::GET | http::Method::HEAD)
        && req
            .headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"))
}

/// The login URL with `{uri}` replaced by the URL-encoded original URI.
fn login_url(target: &str, req: &RequestHeader) -> String {
    let original = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    target.replace("{uri}", &percent_encode(original))
}

/// Encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The host a request is for, canonical (see [`crate::routing::host`]).
/// HTTP/1.1 requires one Host header (RFC 9112 §3.2); an absolute-form
/// target or HTTP/2 `:authority` must name the same host, so routing and
/// the upstream can never disagree about it.
fn request_authority(req: &RequestHeader) -> Result<Authority<'_>, Rejection> {
    let mut hosts = req.headers.get_all(http::header::HOST).iter();
    let header = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => {
            return Err(Rejection::BadHost("the request has several Host headers"))
        }
        (Some(h), None) => Some(
            h.to_str()
                .map_err(|_| Rejection::BadHost("the Host header is not text"))?,
        ),
        (None, _) => None,
    };
    let header = header
        .map(parse_authority)
        .transpose()
        .map_err(Rejection::BadHost)?;
    let target = req
        .uri
        .authority()
        .map(|a| parse_authority(a.as_str()))
        .transpose()
        .map_err(Rejection::BadHost)?;
    match (header, target) {
        (Some(h), Some(t)) if h != t => Err(Rejection::BadHost(
            "the request target and the Host header name different hosts",
        )),
        (Some(h), _) => Ok(h),
        (None, Some(t)) => Ok(t),
        (None, None) if req.version == http::Version::HTTP_11 => {
            Err(Rejection::BadHost("HTTP/1.1 requests need a Host header"))
        }
        (None, None) => Ok(Authority {
            host: "".into(),
            port: None,
        }),
    }
}

/// The Host header the upstream must get instead of the client's, when the
/// client's is not already canonical (or missing, with the host in the
/// target); `None` in the common case, which allocates nothing.
fn canonical_host_header(req: &RequestHeader, authority: &Authority) -> Option<http::HeaderValue> {
    if authority.host.is_empty() {
        return None;
    }
    let sent = req.headers.get(http::header::HOST);
    if sent.is_some_and(|h| authority.is_spelled(h.as_bytes())) {
        return None;
    }
    http::HeaderValue::from_str(&authority.to_header()).ok()
}

/// For a CORS preflight, the route with a CORS policy that answers it:
/// the one the actual request (the method it asks about) would take, or
/// else the first at this host and path with a policy, which refuses the
/// method. `None`: routed as any `OPTIONS` request.
fn preflight_route(
    runtime: &Runtime,
    host: &str,
    path: &str,
    req: &RequestHeader,
) -> Option<usize> {
    if !cors::is_preflight(req) {
        return None;
    }
    let asked = req
        .headers
        .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|m| http::Method::from_bytes(m.as_bytes()).ok());
    let ids = runtime.table.lookup(host, path)?;
    let with_cors = |id: &&usize| runtime.routes[**id].cors.is_some();
    let taking = ids
        .iter()
        .find(|&&id| asked.as_ref().is_some_and(|m| runtime.routes[id].allows(m)));
    match taking {
        Some(id) => Some(id).filter(with_cors).copied(),
        None => ids.iter().find(with_cors).copied(),
    }
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

/// Pingora de-chunks a request whose final coding is `chunked` and would
/// forward it without the codings before it (`gzip, chunked` losing its
/// gzip), so anything but one `chunked` is refused.
fn check_transfer_coding(req: &RequestHeader) -> Result<(), Rejection> {
    let mut codings = req
        .headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty());
    match (codings.next(), codings.next()) {
        (None, _) => Ok(()),
        (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => Ok(()),
        _ => Err(Rejection::UnsupportedTransferCoding),
    }
}

/// Whether the client waits for `100 Continue` (RFC 9110 §10.1.1). An
/// HTTP/1.0 client's expectation is ignored, as the RFC requires; any
/// expectation other than `100-continue` is a 417.
fn expects_continue(req: &RequestHeader) -> Result<bool, Rejection> {
    if req.version == http::Version::HTTP_10 {
        return Ok(false);
    }
    let mut expects = false;
    for value in req.headers.get_all(http::header::EXPECT) {
        for member in value.as_bytes().split(|&b| b == b',') {
            match member.trim_ascii() {
                b"" => {}
                m if m.eq_ignore_ascii_case(b"100-continue") => expects = true,
                _ => return Err(Rejection::ExpectationFailed),
            }
        }
    }
    Ok(expects)
}

/// The route's `ip_deny` and `ip_allow`; a client no hop could name is
/// refused by either, since no rule can be checked against it.
fn check_ip(route: &Route, client: ClientIp) -> Result<(), Rejection> {
    if route.ip_deny.is_empty() && route.ip_allow.is_empty() {
        return Ok(());
    }
    let ClientIp::Known(client) = client else {
        return Err(Rejection::IpDenied);
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_url_encodes_the_original_uri() {
        let req = RequestHeader::build("GET", b"/admin/users?page=2&q=a%20b", None).unwrap();
        assert_eq!(
            login_url("/oauth/login?next={uri}", &req),
            "/oauth/login?next=%2Fadmin%2Fusers%3Fpage%3D2%26q%3Da%2520b"
        );
    }
}
