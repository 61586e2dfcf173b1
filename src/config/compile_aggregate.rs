//! Validation and compilation of a route's `aggregate` (see
//! [`crate::proxy::aggregate`]).

use std::sync::Arc;
use std::time::Duration;

use super::compile::{Compiler, Parsed};
use super::file::{RouteEntry, RouteFile};
use crate::metrics::Metrics;
use crate::proxy::aggregate::{Aggregate, Part, RESULTS};
use crate::routing::normalize;
use crate::upstream::Pool;

impl Compiler<'_> {
    /// Route `key`'s aggregate, if it has one; `pool_of(key, name)` looks
    /// an upstream up (recording the error of a wrong name).
    pub(super) fn route_aggregate(
        &mut self,
        f: &Parsed<RouteFile>,
        key: &str,
        e: &RouteEntry,
        metrics: &Metrics,
        mut pool_of: impl FnMut(&mut Self, &str, &str) -> Option<Arc<Pool>>,
    ) -> Option<Aggregate> {
        let a = e.aggregate.as_ref()?;
        let akey = format!("{key}.aggregate");
        let before = self.errors.len();
        if a.parts.is_empty() {
            self.errors
                .push(f.err(&format!("{akey}.parts"), "list at least one part"));
        }
        let only_reads = e.methods.as_ref().is_some_and(|m| {
            m.iter()
                .all(|m| m.eq_ignore_ascii_case("GET") || m.eq_ignore_ascii_case("HEAD"))
        });
        if !only_reads {
            self.errors.push(f.err(
                &format!("{key}.methods"),
                "an aggregate answers reads only: set `methods: [GET]` (or [GET, HEAD])",
            ));
        }
        if e.fallback.is_some() || e.fallback_upstream.is_some() || e.rewrite.is_some() {
            self.errors.push(f.err(
                &akey,
                "an aggregate answers by itself: no `fallback`, `fallback_upstream` or `rewrite`",
            ));
        }
        self.millis(f, &format!("{akey}.timeout_ms"), a.timeout_ms, 1, 600_000);
        let mut parts = Vec::with_capacity(a.parts.len());
        for (i, p) in a.parts.iter().enumerate() {
            let pkey = format!("{akey}.parts[{i}]");
            if p.name.is_empty() || a.parts[..i].iter().any(|o| o.name == p.name) {
                self.errors.push(f.err(
                    &format!("{pkey}.name"),
                    format!("`{}`: part names must be unique and not empty", p.name),
                ));
            }
            if !matches!(normalize(&p.path), Ok(n) if n == p.path.as_str()) {
                self.errors.push(f.err(
                    &format!("{pkey}.path"),
                    format!("`{}` is not a normalised path starting with /", p.path),
                ));
            }
            let Some(pool) = pool_of(self, &format!("{pkey}.upstream"), &p.upstream) else {
                continue;
            };
            if pool.settings.tls || pool.settings.http2 {
                self.errors.push(f.err(
                    &format!("{pkey}.upstream"),
                    format!(
                        "`{}` speaks TLS or HTTP/2: aggregate parts reach plain HTTP/1.1 upstreams",
                        p.upstream
                    ),
                ));
            }
            parts.push(Part {
                counters: RESULTS.map(|r| {
                    metrics
                        .aggregate_parts
                        .with_label_values(&[&e.name, &p.name, r])
                }),
                name: p.name.clone(),
                pool,
                path: p.path.clone(),
                required: p.required,
            });
        }
        (self.errors.len() == before).then(|| Aggregate {
            parts,
            timeout: Duration::from_millis(a.timeout_ms),
        })
    }
}
