//! The one reading of a request's host that routing, forwarding and
//! logging share.
//!
//! Apps behind the gateway host virtual sites by name, and name matching
//! there is forgiving: nginx drops a trailing dot and ignores case. A Host
//! that the gateway reads one way and the app another is an authentication
//! bypass (`Host: admin.example.com.` missing the protected
//! `host: admin.example.com` route, then served by the app as that site).
//! So every Host is brought to one canonical form here (lower case, one
//! trailing dot removed, port split off and checked, IPv6 literals in
//! brackets), anything that is not a valid host (RFC 9112 §3.2, RFC 3986
//! reg-name restricted to DNS characters) is refused, and the upstream
//! receives exactly the canonical form.

use std::borrow::Cow;
use std::net::Ipv6Addr;

/// A host name and port, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority<'a> {
    /// Lower case, no trailing dot; an IPv6 literal keeps its brackets.
    pub host: Cow<'a, str>,
    /// The port, when one was given.
    pub port: Option<u16>,
}

impl Authority<'_> {
    /// Whether `header` is already exactly [`Authority::to_header`]
    /// (checked without building it).
    pub fn is_spelled(&self, header: &[u8]) -> bool {
        let Some(rest) = header.strip_prefix(self.host.as_bytes()) else {
            return false;
        };
        match (self.port, rest) {
            (None, []) => true,
            (Some(p), [b':', digits @ ..]) => digits == itoa::Buffer::new().format(p).as_bytes(),
            _ => false,
        }
    }

    /// `host[:port]` as the upstream receives it.
    pub fn to_header(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.to_string(),
        }
    }
}

/// Longest host name (RFC 1035 §2.3.4).
const MAX_NAME: usize = 253;

/// Longest label of a name.
const MAX_LABEL: usize = 63;

/// Reads `raw` (a Host value or the authority of a target); the error says
/// what is wrong with it.
pub fn parse_authority(raw: &str) -> Result<Authority<'_>, &'static str> {
    if raw.is_empty() {
        // RFC 9112 §3.2: an empty Host for a target without authority.
        return Ok(Authority {
            host: Cow::Borrowed(""),
            port: None,
        });
    }
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (literal, after) = rest
            .split_once(']')
            .ok_or("an IPv6 host must be closed by `]`")?;
        literal
            .parse::<Ipv6Addr>()
            .map_err(|_| "the bracketed host is not an IPv6 address")?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or("junk after the IPv6 host")?),
        };
        (&raw[..literal.len() + 2], port)
    } else {
        match raw.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (raw, None),
        }
    };
    let port = port.map(parse_port).transpose()?;
    let host = if host.starts_with('[') {
        lower(host)
    } else {
        lower(name(host)?)
    };
    Ok(Authority { host, port })
}

/// A port: 1 to 5 digits, 1–65535.
fn parse_port(text: &str) -> Result<u16, &'static str> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the port of the Host is not a number");
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err("the port of the Host is outside 1-65535"),
        Ok(p) => Ok(p),
    }
}

/// A host name (or IPv4 address) without its one trailing dot: labels of
/// letters, digits, `-` and `_`, none empty.
fn name(host: &str) -> Result<&str, &'static str> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > MAX_NAME {
        return Err("the Host is not a valid host name");
    }
    for label in host.split('.') {
        let valid = !label.is_empty()
            && label.len() <= MAX_LABEL
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err("the Host is not a valid host name");
        }
    }
    Ok(host)
}

/// `text` in lower case, borrowed when it already is.
fn lower(text: &str) -> Cow<'_, str> {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(text.to_ascii_lowercase())
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(raw: &str) -> Result<String, &'static str> {
        parse_authority(raw).map(|a| a.to_header())
    }

    #[test]
    fn spellings_of_one_host_read_alike() {
        for raw in [
            "admin.example.com",
            "admin.example.com.",
            "Admin.Example.Com.",
            "ADMIN.EXAMPLE.COM",
        ] {
            assert_eq!(canonical(raw).as_deref(), Ok("admin.example.com"), "{raw}");
        }
        assert_eq!(
            canonical("Admin.Example.Com.:8443").as_deref(),
            Ok("admin.example.com:8443")
        );
        assert_eq!(canonical("[::1]:6188").as_deref(), Ok("[::1]:6188"));
        assert_eq!(canonical("[2001:DB8::1]").as_deref(), Ok("[2001:db8::1]"));
        assert_eq!(canonical("10.0.0.1:80").as_deref(), Ok("10.0.0.1:80"));
        assert_eq!(
            canonical("svc_internal.local").as_deref(),
            Ok("svc_internal.local")
        );
        assert_eq!(canonical("").as_deref(), Ok(""));
        assert!(matches!(
            parse_authority("a.com").unwrap().host,
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn invalid_hosts_are_refused() {
        for raw in [
            "admin.example.com:abc",
            "admin.example.com:",
            "admin.example.com:0",
            "admin.example.com:65536",
            "admin.example.com:+80",
            "a.com, b.com",
            "evil/admin.example.com",
            "x\\",
            "x%2e",
            "a..b",
            ".a",
            "a.com..",
            ".",
            "a b",
            "[::1",
            "[::1]x",
            "[nope]",
            "user@host",
            "a.com:80:80",
            "::1",
        ] {
            assert!(parse_authority(raw).is_err(), "{raw:?} was accepted");
        }
        assert!(parse_authority(&"a".repeat(64)).is_err());
        assert!(parse_authority(&format!("{}.com", "a.".repeat(130))).is_err());
    }
}
