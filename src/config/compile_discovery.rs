//! Validation of an upstream's backend list, which may name backends by
//! host name (re-resolved in DNS, see [`crate::upstream::discovery`]), and
//! of conf.yaml's `dns` resolver settings.

use std::net::SocketAddr;
use std::time::Duration;

use super::compile::{Compiler, Parsed};
use super::file::{BackendFile, MainFile, RouteFile, UpstreamFile};
use crate::upstream::discovery::{DnsTarget, ResolverSpec};

impl Compiler<'_> {
    /// The backends of upstream `key` given by address, and those given
    /// by name.
    pub(super) fn backend_entries(
        &mut self,
        f: &Parsed<RouteFile>,
        key: &str,
        up: &UpstreamFile,
    ) -> (Vec<(SocketAddr, u32)>, Vec<DnsTarget>) {
        let mut statics: Vec<(SocketAddr, u32)> = Vec::new();
        let mut targets: Vec<DnsTarget> = Vec::new();
        for (i, b) in up.backends.iter().enumerate() {
            let bkey = format!("{key}.backends[{i}]");
            let (text, weight) = match b {
                BackendFile::Addr(a) => (a.as_str(), 1),
                BackendFile::Weighted { addr, weight } => (addr.as_str(), *weight),
                BackendFile::Dns { dns, port, weight } => {
                    let target = DnsTarget {
                        name: dns.to_ascii_lowercase(),
                        port: *port,
                        weight: *weight,
                        every_record: true,
                    };
                    self.dns_target(f, &bkey, target, &mut targets);
                    continue;
                }
            };
            if weight == 0 {
                self.errors.push(f.err(&bkey, "weight must be at least 1"));
            }
            if let Ok(a) = text.parse::<SocketAddr>() {
                if statics.iter().any(|(x, _)| *x == a) {
                    self.errors
                        .push(f.err(&bkey, format!("backend {a} is listed twice")));
                }
                statics.push((a, weight));
                continue;
            }
            match text.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>())) {
                Some((host, Ok(port))) if port > 0 => {
                    let target = DnsTarget {
                        name: host.to_ascii_lowercase(),
                        port,
                        weight,
                        every_record: false,
                    };
                    self.dns_target(f, &bkey, target, &mut targets);
                }
                _ => self.errors.push(f.err(
                    &bkey,
                    format!("`{text}` is not a valid ip:port or host:port"),
                )),
            }
        }
        if !targets.is_empty() {
            self.millis(
                f,
                &format!("{key}.resolve_interval_ms"),
                up.resolve_interval_ms,
                100,
                3_600_000,
            );
        }
        (statics, targets)
    }

    /// Checks a backend given by name and adds it to `targets`.
    fn dns_target(
        &mut self,
        f: &Parsed<RouteFile>,
        key: &str,
        target: DnsTarget,
        targets: &mut Vec<DnsTarget>,
    ) {
        let name = &target.name;
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            self.errors
                .push(f.err(key, format!("`{name}` is not a host name")));
        }
        if target.port == 0 {
            self.errors.push(f.err(key, "port must be 1-65535"));
        }
        if target.weight == 0 {
            self.errors.push(f.err(key, "weight must be at least 1"));
        }
        if targets
            .iter()
            .any(|t| t.name == target.name && t.port == target.port)
        {
            self.errors.push(f.err(
                key,
                format!("backend {name}:{} is listed twice", target.port),
            ));
        }
        targets.push(target);
    }

    /// conf.yaml's `dns`: its nameservers (none: the system's resolver
    /// configuration) and query timeout.
    pub(super) fn resolver_spec(&mut self, main: &Parsed<MainFile>) -> ResolverSpec {
        let Some(d) = &main.content.dns else {
            return ResolverSpec {
                nameservers: Vec::new(),
                timeout: Duration::from_secs(2),
            };
        };
        let mut nameservers = Vec::new();
        for (i, text) in d.nameservers.iter().enumerate() {
            let parsed = text
                .parse::<SocketAddr>()
                .or_else(|_| text.parse().map(|ip| SocketAddr::new(ip, 53)));
            match parsed {
                Ok(a) => nameservers.push(a),
                Err(_) => self.errors.push(main.err(
                    &format!("dns.nameservers[{i}]"),
                    format!("`{text}` is not an ip or ip:port"),
                )),
            }
        }
        self.millis(main, "dns.timeout_ms", d.timeout_ms, 10, 60_000);
        ResolverSpec {
            nameservers,
            timeout: Duration::from_millis(d.timeout_ms),
        }
    }
}
