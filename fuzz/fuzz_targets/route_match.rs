//! `routing::RouteTable` built from fuzzed hosts and prefixes, looked up with
//! a fuzzed host (canonicalised by `routing::parse_authority`, whose
//! canonical form must read back as itself) and path. Never panics; and for a normalised path the
//! answer equals a brute-force model: exact host, then the most specific
//! `*.suffix`, then host-less routes, each by the longest prefix that ends
//! on a segment boundary of the path.
#![no_main]

use gatehouse::routing::{canonical_prefix, normalize, parse_authority, RouteTable};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    routes: Vec<(Option<String>, String)>,
    host: String,
    path: String,
}

/// A route as the config compiler registers it.
struct Route {
    host: Option<String>,
    prefix: String,
}

fuzz_target!(|input: Input| {
    let mut table = RouteTable::default();
    let mut routes = Vec::new();
    for (host, prefix) in input.routes.iter().take(64) {
        // The compiler accepts only prefixes already in normal form and
        // registers their canonical form; mirror that.
        let Ok(n) = normalize(prefix) else { continue };
        let prefix = canonical_prefix(&n);
        let host = host.as_ref().map(|h| h.to_ascii_lowercase());
        table.insert(host.as_deref(), &prefix, routes.len());
        routes.push(Route { host, prefix });
    }
    // A Host that does not parse is refused before routing.
    let Ok(authority) = parse_authority(&input.host) else {
        return;
    };
    // The canonical form reads back as itself.
    assert_eq!(
        parse_authority(&authority.to_header()).as_ref(),
        Ok(&authority),
        "canonical host {:?} is not stable",
        authority.to_header()
    );
    let host = authority.host;
    // Whatever the path, no panic.
    let _ = table.lookup(&host, &input.path);
    let Ok(path) = normalize(&input.path) else {
        return;
    };
    let got = table.lookup(&host, &path);
    if let Some(ids) = got {
        assert!(!ids.is_empty(), "empty match");
        let first = &routes[ids[0]];
        for &id in ids {
            let r = &routes[id];
            assert_eq!(r.prefix, first.prefix, "one match, several prefixes");
            assert!(
                on_boundary(&r.prefix, &path),
                "prefix {:?} is not a segment-boundary prefix of {path:?}",
                r.prefix
            );
        }
    }
    let want = model(&routes, &host, &path);
    assert_eq!(
        got.map(<[usize]>::to_vec),
        want,
        "host {host:?} path {path:?}"
    );
});

/// `/` matches everything; `/a` matches `/a`, `/a/` and `/a/…`, not `/ab`.
fn on_boundary(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The ids of the longest matching prefix among `candidates`.
fn longest(
    routes: &[Route],
    path: &str,
    candidates: impl Fn(&Route) -> bool,
) -> Option<Vec<usize>> {
    let best = routes
        .iter()
        .filter(|r| candidates(r) && on_boundary(&r.prefix, path))
        .map(|r| r.prefix.len())
        .max()?;
    Some(
        routes
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                candidates(r) && on_boundary(&r.prefix, path) && r.prefix.len() == best
            })
            .map(|(i, _)| i)
            .collect(),
    )
}

fn model(routes: &[Route], host: &str, path: &str) -> Option<Vec<usize>> {
    let exact = |r: &Route| {
        r.host
            .as_deref()
            .is_some_and(|h| !h.starts_with('*') && h == host)
    };
    if let Some(ids) = longest(routes, path, exact) {
        return Some(ids);
    }
    // Suffixes of the host that start at a dot, longest first.
    for (dot, _) in host.match_indices('.') {
        let suffix = &host[dot..];
        let wild = |r: &Route| {
            r.host
                .as_deref()
                .and_then(|h| h.strip_prefix('*'))
                .is_some_and(|s| s == suffix)
        };
        if let Some(ids) = longest(routes, path, wild) {
            return Some(ids);
        }
    }
    longest(routes, path, |r| r.host.is_none())
}
