//! Validation and compilation of an upstream's resilience keys: its
//! circuit breaker and its retry policy.

use std::time::Duration;

use super::compile::{Compiler, Parsed};
use super::file::{RouteFile, UpstreamFile, DEFAULT_RETRIES};
use crate::upstream::breaker::BreakerPolicy;
use crate::upstream::retry::{RetryOn, RetryPolicy};

/// Most further attempts a request may make (Pingora stops at 16 tries,
/// and that includes its retries of stale keep-alive connections).
const MAX_RETRIES: u32 = 10;

impl Compiler<'_> {
    /// The `circuit_breaker` of upstream `key`, if it has one.
    pub(super) fn breaker_policy(
        &mut self,
        f: &Parsed<RouteFile>,
        key: &str,
        up: &UpstreamFile,
    ) -> Option<BreakerPolicy> {
        let c = up.circuit_breaker.as_ref()?;
        let ckey = format!("{key}.circuit_breaker");
        if !(c.error_ratio > 0.0 && c.error_ratio <= 1.0) {
            self.errors
                .push(f.err(&format!("{ckey}.error_ratio"), "must be in (0, 1]"));
        }
        for (k, v, max) in [
            ("min_requests", u64::from(c.min_requests), 1_000_000),
            ("window_seconds", c.window_seconds, 3600),
            ("open_seconds", c.open_seconds, 3600),
            ("half_open_requests", u64::from(c.half_open_requests), 1000),
        ] {
            self.bounded(f, &format!("{ckey}.{k}"), v, 1, max);
        }
        self.bounded(
            f,
            &format!("{ckey}.consecutive_failures"),
            c.consecutive_failures.into(),
            0,
            1000,
        );
        Some(BreakerPolicy {
            error_ratio: c.error_ratio,
            min_requests: c.min_requests,
            window: Duration::from_secs(c.window_seconds),
            open_for: Duration::from_secs(c.open_seconds),
            half_open_requests: c.half_open_requests,
            consecutive_failures: c.consecutive_failures,
        })
    }

    /// The retry policy of upstream `key`: its `retry`, or the short form
    /// `retries: N` (connect failures only), never both.
    pub(super) fn retry_policy(
        &mut self,
        f: &Parsed<RouteFile>,
        key: &str,
        up: &UpstreamFile,
    ) -> RetryPolicy {
        let Some(r) = &up.retry else {
            let max = up.retries.unwrap_or(DEFAULT_RETRIES);
            self.bounded(
                f,
                &format!("{key}.retries"),
                max.into(),
                0,
                MAX_RETRIES.into(),
            );
            return RetryPolicy::connect_failures(max);
        };
        let rkey = format!("{key}.retry");
        if up.retries.is_some() {
            self.errors.push(f.err(
                &format!("{key}.retries"),
                "`retries` is the short form of `retry`: set one of them, not both (`retries: N` is `retry: {on: [connect_failure], max: N}`)",
            ));
        }
        let mut on = RetryOn::default();
        for (i, entry) in r.on.iter().enumerate() {
            if on.add(&entry.to_string()).is_none() {
                self.errors.push(f.err(
                    &format!("{rkey}.on[{i}]"),
                    format!("`{entry}` is not connect_failure, reset, timeout or a status 400-599"),
                ));
            }
        }
        self.bounded(
            f,
            &format!("{rkey}.max"),
            r.max.into(),
            0,
            MAX_RETRIES.into(),
        );
        self.millis(
            f,
            &format!("{rkey}.backoff_ms.base"),
            r.backoff_ms.base,
            1,
            10_000,
        );
        self.millis(
            f,
            &format!("{rkey}.backoff_ms.max"),
            r.backoff_ms.max,
            1,
            60_000,
        );
        if r.backoff_ms.max < r.backoff_ms.base {
            self.errors
                .push(f.err(&format!("{rkey}.backoff_ms.max"), "must be at least `base`"));
        }
        self.bounded(
            f,
            &format!("{rkey}.budget_percent"),
            r.budget_percent.into(),
            1,
            100,
        );
        RetryPolicy {
            on,
            max: r.max,
            backoff_base: Duration::from_millis(r.backoff_ms.base),
            backoff_max: Duration::from_millis(r.backoff_ms.max),
            budget_percent: r.budget_percent,
        }
    }

    /// Records an error unless `min <= value <= max`.
    pub(super) fn bounded<T>(&mut self, f: &Parsed<T>, key: &str, value: u64, min: u64, max: u64) {
        if !(min..=max).contains(&value) {
            self.errors
                .push(f.err(key, format!("must be between {min} and {max}")));
        }
    }
}
