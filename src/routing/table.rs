//! The route table: host (exact, then `*.wildcard`, then any) and the
//! longest path prefix on segment boundaries.
//!
//! Lookups hash each candidate prefix of the path, longest first, so a
//! request costs one hash lookup per path segment whatever the number of
//! routes. `/admin` matches `/admin`, `/admin/` and `/admin/x`, never
//! `/administrator`.

use ahash::AHashMap;

/// Route ids registered under one host, by prefix.
#[derive(Debug, Default)]
struct PrefixIndex {
    by_prefix: AHashMap<Box<str>, Vec<usize>>,
}

impl PrefixIndex {
    fn insert(&mut self, prefix: &str, id: usize) {
        self.by_prefix.entry(prefix.into()).or_default().push(id);
    }

    /// Routes under the longest registered prefix of `path`.
    fn longest(&self, path: &str) -> Option<&[usize]> {
        let mut p = path.trim_end_matches('/');
        loop {
            let key = if p.is_empty() { "/" } else { p };
            if let Some(ids) = self.by_prefix.get(key) {
                return Some(ids);
            }
            if p.is_empty() {
                return None;
            }
            p = &p[..p.rfind('/').unwrap_or(0)];
        }
    }
}

/// The compiled table. Route ids are indexes into the caller's route list.
#[derive(Debug, Default)]
pub struct RouteTable {
    exact: AHashMap<Box<str>, PrefixIndex>,
    /// Keyed by the suffix with its leading dot: `*.example.com` -> `.example.com`.
    wildcard: AHashMap<Box<str>, PrefixIndex>,
    any: PrefixIndex,
}

/// Canonical form of a route prefix: leading `/`, no trailing `/` (but `/` itself).
pub fn canonical_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    }
}

impl RouteTable {
    /// Registers route `id` for `host` (exact, `*.suffix` or any) and `prefix`
    /// (already canonical). Ids sharing host and prefix are tried in order.
    pub fn insert(&mut self, host: Option<&str>, prefix: &str, id: usize) {
        match host {
            None => self.any.insert(prefix, id),
            Some(h) => match h.strip_prefix('*') {
                Some(suffix) => self
                    .wildcard
                    .entry(suffix.to_ascii_lowercase().into())
                    .or_default()
                    .insert(prefix, id),
                None => self
                    .exact
                    .entry(h.to_ascii_lowercase().into())
                    .or_default()
                    .insert(prefix, id),
            },
        }
    }

    /// The routes that match `host` (lower-case, without port) and the
    /// normalised `path`. A host's own routes come first, then the most
    /// specific wildcard, then host-less routes.
    pub fn lookup(&self, host: &str, path: &str) -> Option<&[usize]> {
        if let Some(ids) = self.exact.get(host).and_then(|t| t.longest(path)) {
            return Some(ids);
        }
        if !self.wildcard.is_empty() {
            let mut rest = host;
            while let Some(dot) = rest.find('.') {
                let suffix = &rest[dot..];
                if let Some(ids) = self.wildcard.get(suffix).and_then(|t| t.longest(path)) {
                    return Some(ids);
                }
                rest = &rest[dot + 1..];
            }
        }
        self.any.longest(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let mut t = RouteTable::default();
        t.insert(None, "/", 0);
        t.insert(None, "/admin", 1);
        t.insert(None, "/admin/_next/static", 2);
        t.insert(Some("api.example.com"), "/admin", 3);
        t.insert(Some("*.example.com"), "/", 4);
        t.insert(None, "/kline", 5);
        t.insert(None, "/kline", 6);
        t
    }

    #[test]
    fn lookup_table() {
        let t = table();
        let cases: &[(&str, &str, Option<&[usize]>)] = &[
            ("gw", "/admin", Some(&[1])),
            ("gw", "/admin/", Some(&[1])),
            ("gw", "/admin/users/7", Some(&[1])),
            ("gw", "/administrator", Some(&[0])),
            ("gw", "/admin/_next/static/chunk.js", Some(&[2])),
            ("gw", "/admin/_next/staticx", Some(&[1])),
            ("gw", "/", Some(&[0])),
            ("gw", "/kline/x", Some(&[5, 6])),
            ("api.example.com", "/admin/x", Some(&[3])),
            ("api.example.com", "/other", Some(&[4])),
            ("a.b.example.com", "/admin", Some(&[4])),
            ("example.com", "/admin", Some(&[1])),
        ];
        for (host, path, want) in cases {
            assert_eq!(t.lookup(host, path), *want, "{host} {path}");
        }
    }

    #[test]
    fn no_root_route_means_no_match() {
        let mut t = RouteTable::default();
        t.insert(None, "/admin", 0);
        assert_eq!(t.lookup("gw", "/adminx"), None);
        assert_eq!(t.lookup("gw", "/"), None);
    }

    #[test]
    fn canonical_prefixes() {
        assert_eq!(canonical_prefix("/admin/"), "/admin");
        assert_eq!(canonical_prefix("/"), "/");
    }
}
