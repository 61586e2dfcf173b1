//! Cross-origin resource sharing per route (route key `cors`, the Fetch
//! standard's CORS protocol).
//!
//! A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
//! is answered by the gateway, 204 for an allowed origin, method and
//! headers, 403 `cors_rejected` otherwise, before authentication (browsers
//! send preflights without credentials). Actual responses, the gateway's
//! own refusals included, carry `Access-Control-Allow-Origin` for allowed
//! origins only, and always `Vary: Origin`. A wildcard origin is never
//! combined with credentials: the config refuses it.

use http::header::{self, HeaderName, HeaderValue};
use http::Method;
use pingora_http::{RequestHeader, ResponseHeader};

/// An allowed origin: exact, or `scheme://*.suffix[:port]` for any
/// subdomain (one label or more, never the bare suffix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// `https://app.example.com` as browsers serialise it.
    Exact(String),
    /// `https://*.example.com`: the scheme with `://`, the suffix with its
    /// dot (`.example.com`), and the port part (`:8443` or empty).
    Subdomains {
        /// `https://`.
        scheme: String,
        /// `.example.com`.
        suffix: String,
        /// `:8443`, or empty.
        port: String,
    },
}

impl OriginPattern {
    /// Parses `scheme://host[:port]`, the host possibly `*.suffix`; no
    /// path, no `null`, lower-case.
    pub fn parse(text: &str) -> Option<OriginPattern> {
        let lower = text.to_ascii_lowercase();
        let (scheme, rest) = lower.split_once("://")?;
        if !matches!(scheme, "http" | "https")
            || rest.is_empty()
            || rest.contains(['/', '?', '#', '@'])
        {
            return None;
        }
        let split = match rest.strip_prefix('[') {
            Some(v6) => v6.find(']').map(|i| rest.split_at(i + 2)),
            None => Some(rest.find(':').map_or((rest, ""), |i| rest.split_at(i))),
        };
        let (host, port) = split?;
        if let Some(p) = port.strip_prefix(':') {
            if !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().ok()? == 0 {
                return None;
            }
        } else if !port.is_empty() {
            return None;
        }
        let port = port.to_string();
        let valid_host = |h: &str| {
            !h.is_empty()
                && h.split('.').all(|l| {
                    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        };
        match host.strip_prefix("*.") {
            Some(suffix) if valid_host(suffix) => Some(OriginPattern::Subdomains {
                scheme: format!("{scheme}://"),
                suffix: format!(".{suffix}"),
                port,
            }),
            Some(_) => None,
            None if valid_host(host) || (host.starts_with('[') && host.ends_with(']')) => {
                Some(OriginPattern::Exact(lower))
            }
            None => None,
        }
    }

    fn matches(&self, origin: &str) -> bool {
        match self {
            OriginPattern::Exact(o) => o.eq_ignore_ascii_case(origin),
            OriginPattern::Subdomains {
                scheme,
                suffix,
                port,
            } => {
                let Some(rest) = origin.strip_prefix(scheme.as_str()) else {
                    return false;
                };
                let Some(host) = rest.strip_suffix(port.as_str()) else {
                    return false;
                };
                // A port the pattern did not name is another origin.
                host.len() > suffix.len()
                    && host.ends_with(suffix.as_str())
                    && !host.contains(':')
                    && !host[..host.len() - suffix.len()].is_empty()
            }
        }
    }
}

/// A route's compiled CORS policy.
#[derive(Debug, Clone)]
pub struct Cors {
    /// Allowed origins (empty with `any_origin`).
    pub origins: Vec<OriginPattern>,
    /// `*` was listed: any origin (never with credentials).
    pub any_origin: bool,
    /// Methods an actual request may use.
    pub methods: Vec<Method>,
    /// `Access-Control-Allow-Methods`.
    pub methods_value: HeaderValue,
    /// Request headers allowed (lower-case); `None`: whatever the
    /// preflight asks for; `Some` with `*` in it: any.
    pub headers: Option<Vec<HeaderName>>,
    /// `Access-Control-Expose-Headers`, if any.
    pub expose: Option<HeaderValue>,
    /// Whether cookies and HTTP authentication may come along.
    pub credentials: bool,
    /// `Access-Control-Max-Age`.
    pub max_age: HeaderValue,
}

/// What a request's `Origin` means on a route with a CORS policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No `Origin`: not a cross-origin request (or a same-origin GET).
    NoOrigin,
    /// An allowed origin: the value of `Access-Control-Allow-Origin`.
    Allowed(HeaderValue),
    /// An origin the policy does not list.
    Refused,
}

impl Cors {
    /// The verdict on `req`'s `Origin`.
    pub fn judge(&self, req: &RequestHeader) -> Verdict {
        let Some(origin) = req.headers.get(header::ORIGIN) else {
            return Verdict::NoOrigin;
        };
        if self.any_origin {
            return Verdict::Allowed(HeaderValue::from_static("*"));
        }
        match origin.to_str() {
            Ok(o) if self.origins.iter().any(|p| p.matches(o)) => Verdict::Allowed(origin.clone()),
            _ => Verdict::Refused,
        }
    }

    /// The headers of the 204 answering preflight `req` from `allowed`,
    /// or `None` when its method or headers are not allowed.
    pub fn preflight(
        &self,
        req: &RequestHeader,
        allowed: HeaderValue,
    ) -> Option<Vec<(HeaderName, HeaderValue)>> {
        let method = req.headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
        let method = Method::from_bytes(method.as_bytes()).ok()?;
        if !self.methods.contains(&method) {
            return None;
        }
        let requested = req.headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS);
        if let (Some(list), Some(allowed_headers)) = (requested, &self.headers) {
            let any = allowed_headers.iter().any(|h| h.as_str() == "*");
            let ok = list
                .to_str()
                .ok()?
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .all(|h| {
                    any || allowed_headers
                        .iter()
                        .any(|a| a.as_str().eq_ignore_ascii_case(h))
                });
            if !ok {
                return None;
            }
        }
        let mut out = vec![
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed),
            (
                header::ACCESS_CONTROL_ALLOW_METHODS,
                self.methods_value.clone(),
            ),
            (header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone()),
        ];
        if let Some(list) = requested {
            out.push((header::ACCESS_CONTROL_ALLOW_HEADERS, list.clone()));
        }
        if self.credentials {
            out.push((
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        out.push((
            header::VARY,
            HeaderValue::from_static(
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
        ));
        Some(out)
    }

    /// Adds the headers of an actual response: for an `allowed` origin
    /// its `Access-Control-*`; `Vary: Origin` in every case (a cache must
    /// not hand one origin's answer to another).
    pub fn decorate(
        &self,
        resp: &mut ResponseHeader,
        allowed: Option<&HeaderValue>,
    ) -> pingora_core::Result<()> {
        if let Some(origin) = allowed {
            resp.insert_header(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone())?;
            if self.credentials {
                resp.insert_header(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true")?;
            }
            if let Some(expose) = &self.expose {
                resp.insert_header(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone())?;
            }
        }
        let varies = resp.headers.get_all(header::VARY).iter().any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"origin") || t.trim_ascii() == b"*")
        });
        if !varies {
            resp.append_header(header::VARY, "Origin")?;
        }
        Ok(())
    }
}

/// Whether `req` is a CORS preflight.
pub fn is_preflight(req: &RequestHeader) -> bool {
    req.method == Method::OPTIONS
        && req.headers.contains_key(header::ORIGIN)
        && req
            .headers
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_patterns_match_what_they_say_and_nothing_else() {
        let exact = OriginPattern::parse("https://App.Example.com").unwrap();
        assert!(exact.matches("https://app.example.com"));
        assert!(!exact.matches("https://app.example.com:8443"));
        assert!(!exact.matches("http://app.example.com"));
        let sub = OriginPattern::parse("https://*.example.com").unwrap();
        for yes in ["https://a.example.com", "https://a.b.example.com"] {
            assert!(sub.matches(yes), "{yes}");
        }
        for no in [
            "https://example.com",
            "https://.example.com",
            "https://evilexample.com",
            "https://a.example.com.evil.com",
            "http://a.example.com",
            "https://a.example.com:444",
        ] {
            assert!(!sub.matches(no), "{no}");
        }
        let port = OriginPattern::parse("http://*.test:8080").unwrap();
        assert!(port.matches("http://a.test:8080"));
        assert!(!port.matches("http://a.test"));
        for bad in [
            "null",
            "*",
            "https://",
            "https://a.com/path",
            "ftp://a.com",
            "https://*.",
            "https://a.com:0",
            "https://*.*.com",
        ] {
            assert_eq!(OriginPattern::parse(bad), None, "{bad}");
        }
    }
}
