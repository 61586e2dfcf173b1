//! The client's IP address, believing forwarding headers only from
//! `trusted_proxies`.
//!
//! With a trusted peer, `client_ip_header` (if set) names the client;
//! otherwise X-Forwarded-For is read right to left, skipping trusted hops,
//! and the first untrusted address is the client. An untrusted peer is the
//! client, whatever its headers say. Addresses may carry a port
//! (`203.0.113.5:4711`, `[2001:db8::1]:4711`, as Azure Application Gateway
//! writes them).

use std::net::IpAddr;

use ipnet::IpNet;
use pingora_http::RequestHeader;

use crate::config::Settings;

/// Whether `ip` is one of the trusted proxies.
pub fn is_trusted(settings: &Settings, ip: IpAddr) -> bool {
    settings.trusted_proxies.iter().any(|n| n.contains(&ip))
}

/// The client IP of a request arriving from `peer`.
pub fn client_ip(settings: &Settings, peer: IpAddr, req: &RequestHeader) -> IpAddr {
    if !is_trusted(settings, peer) {
        return peer;
    }
    if let Some(name) = &settings.client_ip_header {
        return req
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_hop)
            .unwrap_or(peer);
    }
    let mut leftmost = peer;
    for value in req.headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(text) = value.to_str() else {
            return peer;
        };
        for hop in text.rsplit(',') {
            let Some(ip) = parse_hop(hop) else {
                return leftmost;
            };
            if !settings
                .trusted_proxies
                .iter()
                .any(|n: &IpNet| n.contains(&ip))
            {
                return ip;
            }
            leftmost = ip;
        }
    }
    leftmost
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
            ("10.0.0.2", &["1.2.3.4, garbage"], "10.0.0.2"),
            ("10.0.0.2", &["203.0.113.5:4711"], "203.0.113.5"),
            (
                "10.0.0.2",
                &["[2001:db8::1]:4711, 10.0.0.7:80"],
                "2001:db8::1",
            ),
            ("10.0.0.2", &["[2001:db8::2]"], "2001:db8::2"),
            ("10.0.0.2", &["1.2.3.4, 203.0.113.5:99999"], "10.0.0.2"),
        ];
        for (peer, xff, want) in cases {
            assert_eq!(
                client_ip(&s, ip(peer), &req(xff, None)),
                ip(want),
                "{peer} {xff:?}"
            );
        }
    }

    #[test]
    fn client_ip_header_only_from_trusted_peers() {
        let s = settings(&["10.0.0.0/8"], Some("x-real-ip"));
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        assert_eq!(
            client_ip(&s, ip("10.0.0.2"), &req(&[], Some("1.2.3.4"))),
            ip("1.2.3.4")
        );
        assert_eq!(
            client_ip(&s, ip("8.8.8.8"), &req(&[], Some("1.2.3.4"))),
            ip("8.8.8.8")
        );
    }
}
