//! Refusals as values, and the one place that turns them into responses.
//!
//! Every response the gateway writes itself (SPEC §4) comes from
//! [`Rejection::response`]: JSON `{"error", "message", "request_id"}`, the
//! status, and the extra headers each status calls for. No status code for
//! a refusal is chosen anywhere else.

use bytes::Bytes;
use pingora_core::{Error, ErrorSource, ErrorType};
use pingora_http::ResponseHeader;

use crate::auth::Reason;
use crate::limit::LimitHeaders;
use crate::oauth::{OauthError, Redirect};
use crate::routing::PathError;

/// Why the gateway answered a request itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The path cannot be normalised without guessing.
    BadPath(PathError),
    /// Malformed request (bad headers, bad framing).
    BadRequest,
    /// Missing, invalid or contradictory Host.
    BadHost(&'static str),
    /// No route for this host and path.
    NoRoute,
    /// The route exists but not for this method; carries the `Allow` value.
    MethodNotAllowed(String),
    /// The client IP is not allowed on the route.
    IpDenied,
    /// No valid token (401).
    Unauthenticated(Reason),
    /// A browser navigation without a valid token: 302 to the login page.
    LoginRedirect(String),
    /// The gateway's OAuth flow moves the browser on (302 to the
    /// authorization server, 303 after the callback or logout), setting
    /// its cookies. Not a refusal, but an answer the gateway writes itself.
    Redirect(Box<Redirect>),
    /// A login callback whose state, code or id_token does not hold up.
    InvalidOauthState,
    /// The user or the authorization server refused the login.
    OauthDenied,
    /// The authorization server (or the session store) cannot answer.
    OauthUnavailable,
    /// A login's return URL that is not a local path.
    InvalidReturnUrl,
    /// A cookie-authenticated unsafe request from another origin.
    CsrfRejected,
    /// A body that is not JSON, or does not match the route's schema.
    InvalidRequest(Vec<crate::validate::Violation>),
    /// A CORS preflight the route's policy allows: 204 with these headers.
    CorsPreflight(Vec<(http::HeaderName, http::HeaderValue)>),
    /// The answer to an ACME server's HTTP-01 challenge (not a refusal:
    /// the gateway answers it itself, before routing).
    AcmeChallenge(String),
    /// A CORS preflight from an origin, or for a method or headers, the
    /// route's policy does not allow.
    CorsRejected,
    /// The token lacks a scope; carries the required scopes (403).
    InsufficientScope(String),
    /// The caller lacks every accepted role (403).
    InsufficientRole,
    /// JWKS or TokenginX could not answer and policy says deny (503).
    AuthUnavailable(&'static str),
    /// Over a rate limit (429), with the RateLimit headers.
    RateLimited(LimitHeaders),
    /// The shared rate-limit store failed and `on_error: deny` (503).
    RateLimitUnavailable,
    /// The body is larger than `max_request_body_bytes`.
    BodyTooLarge,
    /// The request target is longer than `max_uri_bytes`.
    UriTooLong,
    /// The request headers are larger than `max_header_bytes`.
    HeadersTooLarge,
    /// The client sent its body too slowly.
    ClientTimeout,
    /// The client sent its request head too slowly.
    HeaderTimeout,
    /// `Expect` asks for something other than `100-continue` (417).
    ExpectationFailed,
    /// `Transfer-Encoding` names a coding the gateway does not apply,
    /// or more than the one `chunked` (501, RFC 9112 §6.1).
    UnsupportedTransferCoding,
    /// The backend refused or reset the connection, or sent garbage.
    BadGateway,
    /// No backend of the pool is healthy.
    NoHealthyBackend,
    /// The upstream is at `max_in_flight`: shed at once (503).
    UpstreamOverloaded,
    /// Every backend's circuit breaker is open (503).
    CircuitOpen,
    /// The gateway could not open an upstream connection for lack of its
    /// own resources (file descriptors, buffers, local ports).
    LocalResources,
    /// The backend did not answer in time.
    GatewayTimeout,
    /// A fault inside the gateway.
    Internal,
}

/// The `ErrorType::Custom` of a connect that failed on the gateway's side.
pub const LOCAL_ERROR: &str = "local_error";

/// The `ErrorType::Custom` of a request shed at `max_in_flight`.
pub const SHED: &str = "shed";

/// The `ErrorType::Custom` of a request to a pool whose breakers are all open.
pub const CIRCUIT_OPEN: &str = "circuit_open";

/// The `ErrorType::Custom` of a request past its route's `timeout_ms`.
pub const DEADLINE: &str = "deadline";

/// The `ErrorType::Custom` of an attempt whose response status is retried.
pub const RETRY_STATUS: &str = "retry_status";

/// Seconds clients are told to wait after a 503.
const RETRY_AFTER_SECONDS: &str = "1";

impl Rejection {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Rejection::BadPath(_)
            | Rejection::BadRequest
            | Rejection::BadHost(_)
            | Rejection::InvalidOauthState
            | Rejection::InvalidReturnUrl
            | Rejection::InvalidRequest(_) => 400,
            Rejection::LoginRedirect(_) => 302,
            Rejection::Redirect(r) => r.status,
            Rejection::Unauthenticated(_) => 401,
            Rejection::IpDenied
            | Rejection::InsufficientScope(_)
            | Rejection::InsufficientRole
            | Rejection::OauthDenied
            | Rejection::CsrfRejected
            | Rejection::CorsRejected => 403,
            Rejection::CorsPreflight(_) => 204,
            Rejection::AcmeChallenge(_) => 200,
            Rejection::NoRoute => 404,
            Rejection::MethodNotAllowed(_) => 405,
            Rejection::BodyTooLarge => 413,
            Rejection::UriTooLong => 414,
            Rejection::HeadersTooLarge => 431,
            Rejection::ClientTimeout | Rejection::HeaderTimeout => 408,
            Rejection::ExpectationFailed => 417,
            Rejection::RateLimited(_) => 429,
            Rejection::Internal => 500,
            Rejection::UnsupportedTransferCoding => 501,
            Rejection::BadGateway => 502,
            Rejection::NoHealthyBackend
            | Rejection::UpstreamOverloaded
            | Rejection::CircuitOpen
            | Rejection::LocalResources
            | Rejection::AuthUnavailable(_)
            | Rejection::OauthUnavailable
            | Rejection::RateLimitUnavailable => 503,
            Rejection::GatewayTimeout => 504,
        }
    }

    /// The machine-readable `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::BadPath(_) => "bad_path",
            Rejection::BadRequest => "bad_request",
            Rejection::BadHost(_) => "bad_host",
            Rejection::NoRoute => "no_route",
            Rejection::MethodNotAllowed(_) => "method_not_allowed",
            Rejection::IpDenied => "ip_denied",
            Rejection::Unauthenticated(Reason::Missing) => "missing_token",
            Rejection::Unauthenticated(_) => "invalid_token",
            Rejection::LoginRedirect(_) => "login_required",
            Rejection::Redirect(_) => "redirect",
            Rejection::InvalidOauthState => "invalid_oauth_state",
            Rejection::OauthDenied => "oauth_denied",
            Rejection::OauthUnavailable => "oauth_unavailable",
            Rejection::InvalidReturnUrl => "invalid_return_url",
            Rejection::CsrfRejected => "csrf_rejected",
            Rejection::CorsPreflight(_) => "cors_preflight",
            Rejection::AcmeChallenge(_) => "acme_challenge",
            Rejection::InvalidRequest(_) => "invalid_request",
            Rejection::CorsRejected => "cors_rejected",
            Rejection::InsufficientScope(_) => "insufficient_scope",
            Rejection::InsufficientRole => "insufficient_role",
            Rejection::AuthUnavailable(_) => "auth_unavailable",
            Rejection::RateLimited(_) => "rate_limited",
            Rejection::RateLimitUnavailable => "rate_limit_unavailable",
            Rejection::BodyTooLarge => "body_too_large",
            Rejection::UriTooLong => "uri_too_long",
            Rejection::HeadersTooLarge => "headers_too_large",
            Rejection::ClientTimeout | Rejection::HeaderTimeout => "request_timeout",
            Rejection::ExpectationFailed => "expectation_failed",
            Rejection::UnsupportedTransferCoding => "unsupported_transfer_coding",
            Rejection::BadGateway => "bad_gateway",
            Rejection::NoHealthyBackend => "no_healthy_backend",
            Rejection::UpstreamOverloaded => "upstream_overloaded",
            Rejection::CircuitOpen => "circuit_open",
            Rejection::LocalResources => "gateway_overloaded",
            Rejection::GatewayTimeout => "gateway_timeout",
            Rejection::Internal => "internal_error",
        }
    }

    /// The human `message`.
    pub fn message(&self) -> &str {
        match self {
            Rejection::BadPath(e) => e.message(),
            Rejection::BadRequest => "the request is malformed",
            Rejection::BadHost(why) => why,
            Rejection::NoRoute => "no route matches this host and path",
            Rejection::MethodNotAllowed(_) => "this route does not accept the method",
            Rejection::IpDenied => "your address is not allowed on this route",
            Rejection::Unauthenticated(r) => r.message(),
            Rejection::LoginRedirect(_) | Rejection::Redirect(_) => "sign in first",
            Rejection::InvalidOauthState => {
                "the login could not be completed: start again from the page you wanted"
            }
            Rejection::OauthDenied => "the login was refused",
            Rejection::OauthUnavailable => "the authorization server is unavailable; retry shortly",
            Rejection::InvalidReturnUrl => "the return address must be a path on this site",
            Rejection::CsrfRejected => "this request must come from the site itself",
            Rejection::CorsPreflight(_) => "allowed",
            Rejection::AcmeChallenge(_) => "the key authorization",
            Rejection::InvalidRequest(_) => "the request body does not match the route's schema",
            Rejection::CorsRejected => {
                "this route does not allow the origin, method or headers of the cross-origin request"
            }
            Rejection::InsufficientScope(_) => Reason::Scope.message(),
            Rejection::InsufficientRole => Reason::Role.message(),
            Rejection::AuthUnavailable(what) => what,
            Rejection::RateLimited(_) => {
                "too many requests: slow down and retry after the Retry-After seconds"
            }
            Rejection::RateLimitUnavailable => "the rate-limit store is unavailable",
            Rejection::BodyTooLarge => "the request body is too large",
            Rejection::UriTooLong => "the request target is too long",
            Rejection::HeadersTooLarge => "the request headers are too large",
            Rejection::ClientTimeout => "the request body arrived too slowly",
            Rejection::HeaderTimeout => "the request head arrived too slowly",
            Rejection::ExpectationFailed => "the only expectation served is 100-continue",
            Rejection::UnsupportedTransferCoding => {
                "the only transfer coding accepted is a single chunked"
            }
            Rejection::BadGateway => "the upstream server refused or dropped the connection",
            Rejection::NoHealthyBackend => "no healthy upstream server is available",
            Rejection::UpstreamOverloaded => {
                "the upstream is at its concurrency limit; retry shortly"
            }
            Rejection::CircuitOpen => "the upstream is failing and rests a moment; retry shortly",
            Rejection::LocalResources => {
                "the gateway is out of connection resources; retry shortly"
            }
            Rejection::GatewayTimeout => "the upstream server did not answer in time",
            Rejection::Internal => "the gateway failed to handle the request",
        }
    }

    /// The response header and JSON body for this refusal.
    pub fn response(&self, request_id: &str) -> (ResponseHeader, Bytes) {
        let mut body = serde_json::json!({
            "error": self.code(),
            "message": self.message(),
            "request_id": request_id,
        });
        if let Rejection::InvalidRequest(violations) = self {
            body["violations"] = violations
                .iter()
                .map(|v| serde_json::json!({"path": v.path, "message": v.message}))
                .collect();
        }
        // A redirect of the login flow, or a preflight's 204, carries no
        // error, so no body.
        let redirect = matches!(self, Rejection::Redirect(_) | Rejection::CorsPreflight(_));
        let body = match self {
            _ if redirect => Bytes::new(),
            Rejection::AcmeChallenge(answer) => Bytes::from(answer.clone()),
            _ => Bytes::from(body.to_string()),
        };
        // Building a header from a valid status and static names cannot fail.
        let mut h = ResponseHeader::build(self.status(), Some(6)).expect("valid status");
        match self {
            _ if redirect => {}
            Rejection::AcmeChallenge(_) => {
                let _ = h.insert_header(http::header::CONTENT_TYPE, "application/octet-stream");
            }
            _ => {
                let _ = h.insert_header(http::header::CONTENT_TYPE, "application/json");
            }
        }
        if self.status() != 204 {
            let _ = h.insert_header(http::header::CONTENT_LENGTH, body.len());
        }
        let _ = h.insert_header(http::header::CACHE_CONTROL, "no-store");
        let _ = h.insert_header("x-request-id", request_id);
        match self {
            Rejection::MethodNotAllowed(allow) => {
                let _ = h.insert_header(http::header::ALLOW, allow.as_str());
            }
            Rejection::NoHealthyBackend
            | Rejection::UpstreamOverloaded
            | Rejection::CircuitOpen
            | Rejection::LocalResources
            | Rejection::AuthUnavailable(_)
            | Rejection::OauthUnavailable
            | Rejection::RateLimitUnavailable => {
                let _ = h.insert_header(http::header::RETRY_AFTER, RETRY_AFTER_SECONDS);
            }
            Rejection::Redirect(r) => {
                let _ = h.insert_header(http::header::LOCATION, r.location.as_str());
                for cookie in &r.cookies {
                    let _ = h.append_header(http::header::SET_COOKIE, cookie.as_str());
                }
            }
            Rejection::RateLimited(limits) => {
                let _ = h.insert_header(http::header::RETRY_AFTER, limits.retry_after);
                add_limit_headers(&mut h, limits);
            }
            Rejection::Unauthenticated(_) => {
                let _ = h.insert_header(
                    http::header::WWW_AUTHENTICATE,
                    format!("Bearer realm=\"gatehouse\", error=\"invalid_token\", error_description=\"{}\"", self.message()),
                );
            }
            Rejection::InsufficientScope(scopes) => {
                let _ = h.insert_header(
                    http::header::WWW_AUTHENTICATE,
                    format!("Bearer realm=\"gatehouse\", error=\"insufficient_scope\", scope=\"{scopes}\""),
                );
            }
            Rejection::CorsPreflight(headers) => {
                for (name, value) in headers {
                    let _ = h.insert_header(name.clone(), value.clone());
                }
            }
            Rejection::LoginRedirect(location) => {
                let _ = h.insert_header(http::header::LOCATION, location.as_str());
            }
            _ => {}
        }
        (h, body)
    }

    /// What a proxying error means for the client.
    pub fn from_proxy_error(e: &Error) -> Rejection {
        use ErrorType::*;
        match e.etype() {
            HTTPStatus(400) => Rejection::BadRequest,
            HTTPStatus(413) => Rejection::BodyTooLarge,
            HTTPStatus(503) => Rejection::NoHealthyBackend,
            Custom(LOCAL_ERROR) => Rejection::LocalResources,
            Custom(SHED) => Rejection::UpstreamOverloaded,
            Custom(CIRCUIT_OPEN) => Rejection::CircuitOpen,
            Custom(DEADLINE) => Rejection::GatewayTimeout,
            ReadTimedout if e.esource() == &ErrorSource::Downstream => Rejection::ClientTimeout,
            ConnectTimedout | ReadTimedout | WriteTimedout => Rejection::GatewayTimeout,
            _ => match e.esource() {
                ErrorSource::Upstream => Rejection::BadGateway,
                ErrorSource::Downstream => Rejection::BadRequest,
                ErrorSource::Internal | ErrorSource::Unset => Rejection::Internal,
            },
        }
    }
}

impl From<crate::auth::Failure> for Rejection {
    /// The answer to an authentication or authorization refusal (a login
    /// redirect instead of the 401 is the caller's choice).
    fn from(f: crate::auth::Failure) -> Rejection {
        use crate::auth::Failure;
        match f {
            Failure::Unauthenticated(reason) => Rejection::Unauthenticated(reason),
            Failure::InsufficientScope(scopes) => Rejection::InsufficientScope(scopes),
            Failure::InsufficientRole => Rejection::InsufficientRole,
            Failure::Unavailable(what) => Rejection::AuthUnavailable(what),
            Failure::OauthUnavailable => Rejection::OauthUnavailable,
        }
    }
}

impl From<OauthError> for Rejection {
    fn from(e: OauthError) -> Rejection {
        match e {
            OauthError::InvalidState => Rejection::InvalidOauthState,
            OauthError::Denied => Rejection::OauthDenied,
            OauthError::Unavailable => Rejection::OauthUnavailable,
            OauthError::NotLocal => Rejection::InvalidReturnUrl,
            OauthError::Csrf => Rejection::CsrfRejected,
        }
    }
}

/// `RateLimit-Policy` and `RateLimit` (IETF httpapi draft) on a response.
pub fn add_limit_headers(h: &mut ResponseHeader, limits: &LimitHeaders) {
    if limits.ratelimit.is_empty() {
        return;
    }
    let _ = h.insert_header("ratelimit-policy", &*limits.policy);
    let _ = h.insert_header("ratelimit", limits.ratelimit.as_str());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_body_and_headers() {
        let (h, body) = Rejection::NoHealthyBackend.response("abc\"1");
        assert_eq!(h.status.as_u16(), 503);
        assert_eq!(h.headers["retry-after"], "1");
        assert_eq!(h.headers["content-type"], "application/json");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "no_healthy_backend");
        assert_eq!(v["request_id"], "abc\"1");
    }

    #[test]
    fn proxy_errors_map_to_statuses() {
        let timeout = Error::new(ErrorType::ConnectTimedout);
        assert_eq!(Rejection::from_proxy_error(&timeout).status(), 504);
        let mut refused = Error::new(ErrorType::ConnectRefused);
        refused.as_up();
        assert_eq!(Rejection::from_proxy_error(&refused).status(), 502);
        let none = Error::new(ErrorType::HTTPStatus(503));
        assert_eq!(Rejection::from_proxy_error(&none).status(), 503);
        let local = Error::new(ErrorType::Custom(LOCAL_ERROR));
        let local = Rejection::from_proxy_error(&local);
        assert_eq!((local.status(), local.code()), (503, "gateway_overloaded"));
    }
}
