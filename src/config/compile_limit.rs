//! Validation and compilation of the rate-limit keys into the
//! [`Limiter`] and each route's [`RouteLimits`].

use std::time::Duration;

use super::compile::{Compiler, Parsed};
use super::file::{MainFile, RouteEntry, RouteFile};
use super::limit_file::{FallbackFile, RateLimitFile, StoreKind};
use crate::limit::gcra::Bucket;
use crate::limit::redis_store::{RedisStore, Target};
use crate::limit::{
    limit_name, parse_rate, Fallback, Limit, LimitKey, Limiter, RouteLimits, StoreCounters,
};
use crate::metrics::Metrics;

/// Largest local bucket table: 128 MiB.
const MAX_LOCAL_KEYS: usize = 1 << 24;

impl Compiler<'_> {
    /// Builds the limiter of `main`'s `rate_limit` section.
    pub(super) fn limiter(&mut self, main: &Parsed<MainFile>, metrics: &Metrics) -> Limiter {
        let default = RateLimitFile::default();
        let f = main.content.rate_limit.as_ref().unwrap_or(&default);
        self.millis(main, "rate_limit.timeout_ms", f.timeout_ms, 1, 10_000);
        if !(1..=MAX_LOCAL_KEYS).contains(&f.local_max_keys) {
            self.errors.push(main.err(
                "rate_limit.local_max_keys",
                format!("must be between 1 and {MAX_LOCAL_KEYS} (8 bytes each)"),
            ));
        }
        let shared = match f.store {
            StoreKind::Local => {
                if f.redis_url.is_some() || !f.redis_cluster.is_empty() || f.redis_tls.is_some() {
                    self.errors.push(main.err(
                        "rate_limit.store",
                        "Redis settings are given but `store` is `local`",
                    ));
                }
                None
            }
            StoreKind::Redis => self
                .redis_target(main, f)
                .map(|t| RedisStore::new(t, Duration::from_millis(f.timeout_ms))),
        };
        let fallback = match f.on_error {
            FallbackFile::Local => Fallback::Local,
            FallbackFile::Allow => Fallback::Allow,
            FallbackFile::Deny => Fallback::Deny,
        };
        let c = &metrics.rate_limit_store;
        let counters = StoreCounters {
            ok: c.with_label_values(&["ok"]),
            cached_deny: c.with_label_values(&["cached_deny"]),
            error_local: c.with_label_values(&["error_local"]),
            error_allow: c.with_label_values(&["error_allow"]),
            error_deny: c.with_label_values(&["error_deny"]),
        };
        Limiter::new(
            f.local_max_keys.clamp(1, MAX_LOCAL_KEYS),
            shared,
            fallback,
            counters,
        )
    }

    fn redis_target(&mut self, main: &Parsed<MainFile>, f: &RateLimitFile) -> Option<Target> {
        let tls = match &f.redis_tls {
            Some(tls) => Some(self.redis_tls(main, "rate_limit.redis_tls", tls)?),
            None => None,
        };
        match (&f.redis_url, f.redis_cluster.is_empty()) {
            (Some(url), true) => {
                let info = self.redis_info(main, "rate_limit.redis_url", url)?;
                let client = self.redis_client(main, "rate_limit.redis_url", info, tls)?;
                Some(Target::Single(Box::new(client)))
            }
            (None, false) => {
                let mut nodes = Vec::new();
                for (i, url) in f.redis_cluster.iter().enumerate() {
                    let key = format!("rate_limit.redis_cluster[{i}]");
                    nodes.extend(self.redis_info(main, &key, url));
                }
                let timeout = Duration::from_millis(f.timeout_ms);
                let mut builder = redis::cluster::ClusterClient::builder(nodes)
                    .connection_timeout(timeout.max(Duration::from_millis(200)))
                    .response_timeout(timeout);
                if let Some(certs) = tls {
                    builder = builder.certs(certs);
                }
                builder
                    .build()
                    .map_err(|e| {
                        self.errors
                            .push(main.err("rate_limit.redis_cluster", e.to_string()))
                    })
                    .ok()
                    .map(|c| Target::Cluster(Box::new(c)))
            }
            (Some(_), false) => {
                self.errors.push(main.err(
                    "rate_limit.redis_cluster",
                    "give `redis_url` or `redis_cluster`, not both",
                ));
                None
            }
            (None, true) => {
                self.errors.push(main.err(
                    "rate_limit.store",
                    "`redis` needs `redis_url` or `redis_cluster`",
                ));
                None
            }
        }
    }

    /// The limits of a route.
    pub(super) fn route_limits(
        &mut self,
        f: &Parsed<RouteFile>,
        key: &str,
        e: &RouteEntry,
        metrics: &Metrics,
    ) -> Option<RouteLimits> {
        let list = e.rate_limit.as_ref()?.as_slice();
        let mut limits = Vec::new();
        for (i, l) in list.iter().enumerate() {
            let k = if matches!(
                e.rate_limit,
                Some(super::limit_file::RouteLimitsFile::Many(_))
            ) {
                format!("{key}.rate_limit[{i}]")
            } else {
                format!("{key}.rate_limit")
            };
            let limit_key = LimitKey::parse(&l.key);
            if limit_key.is_none() {
                self.errors.push(f.err(
                    &format!("{k}.key"),
                    format!(
                        "`{}` is not ip, user, consumer, route or header:NAME",
                        l.key
                    ),
                ));
            }
            let rate = parse_rate(&l.rate);
            if rate.is_none() {
                self.errors.push(f.err(
                    &format!("{k}.rate"),
                    format!("`{}` is not N/s, N/m or N/h", l.rate),
                ));
            }
            if l.burst == Some(0) {
                self.errors
                    .push(f.err(&format!("{k}.burst"), "must be at least 1"));
            }
            if let (Some(limit_key), Some((interval_us, n))) = (limit_key, rate) {
                if limits.iter().any(|x: &Limit| x.key == limit_key) {
                    self.errors.push(f.err(
                        &format!("{k}.key"),
                        format!("two limits count by `{}`", l.key),
                    ));
                    continue;
                }
                limits.push(Limit {
                    name: limit_name(&e.name, &limit_key),
                    key: limit_key,
                    bucket: Bucket {
                        interval_us,
                        burst: l.burst.unwrap_or(n).max(1),
                    },
                });
            }
        }
        if limits.is_empty() {
            return None;
        }
        Some(RouteLimits::new(
            &e.name,
            limits,
            metrics.rate_limited.with_label_values(&[&e.name]),
        ))
    }
}
