//! `response_filter`'s edits: what the client receives.

use pingora_core::Result;
use pingora_http::ResponseHeader;

use crate::config::{Route, Settings};

/// HSTS sent on TLS listeners: one year, subdomains included.
const HSTS: &str = "max-age=31536000; includeSubDomains";

/// Removes headers that advertise the stack, adds security headers the
/// app did not set, the request id, and the route's response edits.
pub fn prepare(
    resp: &mut ResponseHeader,
    request_id: &str,
    tls: bool,
    route: Option<&Route>,
    settings: &Settings,
) -> Result<()> {
    resp.remove_header("server");
    resp.remove_header("x-powered-by");
    if settings.security_headers {
        add_security_headers(resp, tls)?;
    }
    resp.insert_header("x-request-id", request_id)?;
    if let Some(route) = route {
        for name in &route.headers.response_remove {
            resp.remove_header(name);
        }
        for (name, value) in &route.headers.response_set {
            resp.insert_header(name.clone(), value.clone())?;
        }
    }
    Ok(())
}

/// nosniff, frame-options, referrer-policy, and HSTS on TLS; an app's own
/// choice of any of them is kept.
pub fn add_security_headers(resp: &mut ResponseHeader, tls: bool) -> Result<()> {
    let mut defaults = vec![
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "SAMEORIGIN"),
        ("referrer-policy", "strict-origin-when-cross-origin"),
    ];
    if tls {
        defaults.push(("strict-transport-security", HSTS));
    }
    for (name, value) in defaults {
        if !resp.headers.contains_key(name) {
            resp.insert_header(name, value)?;
        }
    }
    Ok(())
}
