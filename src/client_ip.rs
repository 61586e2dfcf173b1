//! The client's IP address, believing forwarding headers only from
//! `trusted_proxies`.
//!
//! With a trusted peer, `client_ip_header` (if set) names the client;
//! otherwise X-Forwarded-For is read right to left, skipping trusted hops,
//! and the first untrusted address is the client. An untrusted peer is the
//! client, whatever its headers say. Addresses may carry a port
//! (`203.0.113.5:4711`, `[2001:db8::1]:4711`, as Azure Application Gateway
//! writes them).
//!
//! An entry a trusted hop wrote that still cannot be parsed (`unknown`,
//! an obfuscated RFC 7239 name, a typo) leaves the client unknown: it is
//! never taken to be the proxy that wrote it, so a proxy's address cannot
//! stand in for its clients in IP rules or per-IP limits.

use std::net::{IpAddr, Ipv4Addr};

use pingora_http::RequestHeader;

use crate::config::Settings;

/// `ip` as text, as its `Display` writes it; an IPv4 address (the common
/// case, written for every request's X-Forwarded-For and log line) without
/// the formatter's machinery, which costs more than the header it fills.
pub fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut out = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
    out
}

/// The client as far as the forwarding chain shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIp {
    /// The chain names the client.
    Known(IpAddr),
    /// A trusted hop wrote an address that cannot be parsed; carries the
    /// nearest parseable entry written before it (to its left), if any.
    Unparseable(Option<IpAddr>),
}

impl ClientIp {
    /// The address the gateway can name: the client's, else the one the
    /// request claims beyond the unparseable entry.
    pub fn address(self) -> Option<IpAddr> {
        match self {
            ClientIp::Known(ip) => Some(ip),
            ClientIp::Unparseable(claimed) => claimed,
        }
    }

    /// The address that keys per-IP limits and hashing: [`Self::address`],
    /// or `0.0.0.0`, one bucket shared by every client no hop could name.
    pub fn key(self) -> IpAddr {
        self.address().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }
}

/// Whether `ip` is one of the trusted proxies.
pub fn is_trusted(settings: &Settings, ip: IpAddr) -> bool {
    settings.trusted_proxies.iter().any(|n| n.contains(&ip))
}

/// The client of a request arriving from `peer`.
pub fn client_ip(settings: &Settings, peer: IpAddr, req: &RequestHeader) -> ClientIp {
    if !is_trusted(settings, peer) {
        return ClientIp::Known(peer);
    }
    if let Some(name) = &settings.client_ip_header {
        return match req.headers.get(name) {
            None => ClientIp::Known(peer),
            Some(v) => v
                .to_str()
                .ok()
                .and_then(parse_hop)
                .map_or(ClientIp::Unparseable(None), ClientIp::Known),
        };
    }
    let mut hops = Vec::new();
    for value in req.headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            return ClientIp::Unparseable(None);
        };
        // RFC 9110 §5.6.1: empty list elements are ignored.
        hops.extend(text.split(',').filter(|h| !h.trim().is_empty()));
    }
    let mut leftmost = peer;
    for (i, hop) in hops.iter().enumerate().rev() {
        let Some(ip) = parse_hop(hop) else {
            return ClientIp::Unparseable(hops[..i].iter().rev().find_map(|h| parse_hop(h)));
        };
        if !is_trusted(settings, ip) {
            return ClientIp::Known(ip);
        }
        leftmost = ip;
    }
    ClientIp::Known(leftmost)
}

/// An address as forwarding headers write it: bare, `v4:port` or
/// `[v6]:port` (`[v6]` too).
fn parse_hop(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    let is_port =
        |p: &str| p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|n| n > 0);
    if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(is_port);
        return port_ok
            .then(|| v6.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6))
            .flatten();
    }
    let (v4, port) = text.rsplit_once(':')?;
    is_port(port)
        .then(|| v4.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::compile::parse_cidr;

    #[test]
    fn ip_text_writes_what_display_writes() {
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "203.0.113.255",
            "255.255.255.255",
            "2001:db8::1",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    fn settings(trusted: &[&str], header: Option<&str>) -> Settings {
        Settings {
            trusted_proxies: trusted.iter().map(|t| parse_cidr(t).unwrap()).collect(),
            client_ip_header: header.map(|h| h.try_into().unwrap()),
            security_headers: true,
            max_request_body_bytes: 1,
            max_uri_bytes: 8192,
            max_header_bytes: 32768,
            client_body_timeout: std::time::Duration::from_secs(1),
            client_header_timeout: std::time::Duration::from_secs(1),
            allow_path_params: false,
            forwarded_header: true,
            keepalive_timeout_seconds: 60,
        }
    }

    fn req(xff: &[&str], real: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for v in xff {
            r.append_header("x-forwarded-for", *v).unwrap();
        }
        if let Some(v) = real {
            r.insert_header("x-real-ip", v).unwrap();
        }
        r
    }

    #[test]
    fn trust_chain_table() {
        let s = settings(&["10.0.0.0/8", "192.168.1.1"], None);
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        let cases: &[(&str, &[&str], &str)] = &[
            ("203.0.113.9", &["1.2.3.4"], "203.0.113.9"),
            ("10.0.0.2", &["1.2.3.4"], "1.2.3.4"),
            ("10.0.0.2", &["6.6.6.6, 1.2.3.4, 10.0.0.7"], "1.2.3.4"),
            ("10.0.0.2", &["6.6.6.6", "1.2.3.4, 192.168.1.1"], "1.2.3.4"),
            ("10.0.0.2", &["10.1.1.1, 10.0.0.7"], "10.1.1.1"),
            ("10.0.0.2", &[], "10.0.0.2"),
            ("10.0.0.2", &["garbage, 1.2.3.4"], "1.2.3.4"),
            ("10.0.0.2", &["203.0.113.5:4711"], "203.0.113.5"),
            (
                "10.0.0.2",
                &["[2001:db8::1]:4711, 10.0.0.7:80"],
                "2001:db8::1",
            ),
            ("10.0.0.2", &["[2001:db8::2]"], "2001:db8::2"),
            ("10.0.0.2", &["1.2.3.4, , 10.0.0.7,"], "1.2.3.4"),
        ];
        for (peer, xff, want) in cases {
            assert_eq!(
                client_ip(&s, ip(peer), &req(xff, None)),
                ClientIp::Known(ip(want)),
                "{peer} {xff:?}"
            );
        }
    }

    #[test]
    fn an_unparseable_hop_is_never_the_proxy_that_wrote_it() {
        let s = settings(&["10.0.0.0/8"], None);
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["1.2.3.4, garbage"], Some("1.2.3.4")),
            (&["1.2.3.4, unknown, 10.0.0.7"], Some("1.2.3.4")),
            (&["1.2.3.4", "_hidden"], Some("1.2.3.4")),
            (&["junk, 1.2.3.4, 203.0.113.5:99999"], Some("1.2.3.4")),
            (&["unknown"], None),
            (&["10.0.0.9:0"], None),
        ];
        for (xff, want) in cases {
            let got = client_ip(&s, ip("10.0.0.2"), &req(xff, None));
            assert_eq!(got, ClientIp::Unparseable(want.map(ip)), "{xff:?}");
            assert_ne!(got.key(), ip("10.0.0.2"));
        }
        let mut r = req(&[], None);
        r.append_header("x-forwarded-for", &b"1.2.3.4, \xff"[..])
            .unwrap();
        assert_eq!(
            client_ip(&s, ip("10.0.0.2"), &r),
            ClientIp::Unparseable(None)
        );
    }

    #[test]
    fn client_ip_header_only_from_trusted_peers() {
        let s = settings(&["10.0.0.0/8"], Some("x-real-ip"));
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        let at = |peer: &str, real: Option<&str>| client_ip(&s, ip(peer), &req(&[], real));
        assert_eq!(
            at("10.0.0.2", Some("1.2.3.4")),
            ClientIp::Known(ip("1.2.3.4"))
        );
        assert_eq!(
            at("8.8.8.8", Some("1.2.3.4")),
            ClientIp::Known(ip("8.8.8.8"))
        );
        assert_eq!(at("10.0.0.2", None), ClientIp::Known(ip("10.0.0.2")));
        assert_eq!(at("10.0.0.2", Some("nope")), ClientIp::Unparseable(None));
    }
}
