//! Retry policy of an upstream: which failures are retried, how often, the
//! backoff between attempts, and the budget that keeps retries to a share
//! of the traffic.
//!
//! The budget is Envoy's: retries in flight may be at most
//! `budget_percent` of the requests in flight on the upstream, but never
//! fewer than [`MIN_RETRY_CONCURRENCY`], so a quiet gateway still retries
//! while a dying backend cannot multiply the load on the others.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// Retries that may always be in flight, whatever the budget says.
pub const MIN_RETRY_CONCURRENCY: usize = 3;

/// Why an attempt failed, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connection was never established.
    ConnectFailure,
    /// The backend closed or reset the connection before answering.
    Reset,
    /// The backend went silent past `read_timeout_ms`.
    Timeout,
    /// The backend answered with this status.
    Status(u16),
}

impl Failure {
    /// The `reason` label of `gatehouse_upstream_retries_total`.
    pub fn label(self) -> String {
        match self {
            Failure::ConnectFailure => "connect_failure".into(),
            Failure::Reset => "reset".into(),
            Failure::Timeout => "timeout".into(),
            Failure::Status(s) => s.to_string(),
        }
    }
}

/// The failures a policy retries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryOn {
    /// Failed connects (the request never reached the backend).
    pub connect_failure: bool,
    /// Connections closed or reset before the response.
    pub reset: bool,
    /// Read timeouts.
    pub timeout: bool,
    /// Response statuses (4xx or 5xx).
    pub statuses: Vec<u16>,
}

impl RetryOn {
    /// Parses one `on` entry: `connect_failure`, `reset`, `timeout`, or a
    /// status 400–599. `None` for anything else.
    pub fn add(&mut self, entry: &str) -> Option<()> {
        match entry {
            "connect_failure" => self.connect_failure = true,
            "reset" => self.reset = true,
            "timeout" => self.timeout = true,
            code => {
                let status = code.parse().ok().filter(|s| (400..600).contains(s))?;
                self.statuses.push(status);
            }
        }
        Some(())
    }

    /// Every failure it names.
    pub fn failures(&self) -> Vec<Failure> {
        let named = [
            (self.connect_failure, Failure::ConnectFailure),
            (self.reset, Failure::Reset),
            (self.timeout, Failure::Timeout),
        ];
        let kinds = named.into_iter().filter_map(|(on, f)| on.then_some(f));
        kinds
            .chain(self.statuses.iter().map(|&s| Failure::Status(s)))
            .collect()
    }

    /// Whether `failure` is one of them.
    pub fn covers(&self, failure: Failure) -> bool {
        match failure {
            Failure::ConnectFailure => self.connect_failure,
            Failure::Reset => self.reset,
            Failure::Timeout => self.timeout,
            Failure::Status(s) => self.statuses.contains(&s),
        }
    }
}

/// An upstream's retry policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// What is retried.
    pub on: RetryOn,
    /// Further attempts per request.
    pub max: u32,
    /// First backoff ceiling.
    pub backoff_base: Duration,
    /// Largest backoff ceiling.
    pub backoff_max: Duration,
    /// Retries in flight as a share of the requests in flight.
    pub budget_percent: u32,
}

impl RetryPolicy {
    /// The short form `retries: N`: connect failures only, `N` times.
    pub fn connect_failures(max: u32) -> RetryPolicy {
        RetryPolicy {
            on: RetryOn {
                connect_failure: true,
                ..RetryOn::default()
            },
            max,
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_millis(250),
            budget_percent: 20,
        }
    }

    /// The wait before retry number `n` (1-based): full jitter, uniform in
    /// 0 ..= min(max, base × 2ⁿ⁻¹), so the retries of a burst spread out.
    pub fn backoff(&self, n: u32) -> Duration {
        let ceiling = self
            .backoff_base
            .saturating_mul(1 << n.saturating_sub(1).min(16))
            .min(self.backoff_max);
        Duration::from_micros(fastrand::u64(0..=ceiling.as_micros() as u64))
    }
}

/// Retries in flight on one upstream.
#[derive(Debug, Default)]
pub struct RetryBudget {
    retrying: Arc<AtomicUsize>,
}

impl RetryBudget {
    /// A permit for one more retry, if `percent` of `in_flight` (or the
    /// floor) leaves room; it counts until dropped.
    pub fn try_acquire(&self, percent: u32, in_flight: usize) -> Option<RetryPermit> {
        let cap = (in_flight * percent as usize / 100).max(MIN_RETRY_CONCURRENCY);
        if self.retrying.fetch_add(1, Relaxed) >= cap {
            self.retrying.fetch_sub(1, Relaxed);
            return None;
        }
        Some(RetryPermit(Arc::clone(&self.retrying)))
    }
}

/// One retry in flight, counted against its upstream's budget until dropped.
#[derive(Debug)]
pub struct RetryPermit(Arc<AtomicUsize>);

impl Drop for RetryPermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_entries_parse_and_cover() {
        let mut on = RetryOn::default();
        for e in ["reset", "503", "timeout"] {
            assert!(on.add(e).is_some(), "{e}");
        }
        for bad in ["5xx", "200", "600", "connect-failure", ""] {
            assert!(on.add(bad).is_none(), "{bad}");
        }
        assert!(on.covers(Failure::Reset) && on.covers(Failure::Timeout));
        assert!(on.covers(Failure::Status(503)) && !on.covers(Failure::Status(502)));
        assert!(!on.covers(Failure::ConnectFailure));
    }

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_ceiling() {
        let p = RetryPolicy::connect_failures(3);
        for (n, ceiling_ms) in [(1, 25), (2, 50), (3, 100), (4, 200), (5, 250), (40, 250)] {
            let waits: Vec<Duration> = (0..200).map(|_| p.backoff(n)).collect();
            let ceiling = Duration::from_millis(ceiling_ms);
            assert!(waits.iter().all(|w| *w <= ceiling), "retry {n}");
            assert!(
                waits.iter().any(|w| *w < ceiling / 2),
                "retry {n}: jittered"
            );
        }
    }

    #[test]
    fn the_budget_has_a_floor_and_a_share() {
        let budget = RetryBudget::default();
        let floor: Vec<_> = (0..3).filter_map(|_| budget.try_acquire(20, 1)).collect();
        assert_eq!(floor.len(), MIN_RETRY_CONCURRENCY);
        assert!(
            budget.try_acquire(20, 1).is_none(),
            "a quiet upstream: the floor"
        );
        let share: Vec<_> = (0..30)
            .filter_map(|_| budget.try_acquire(20, 100))
            .collect();
        assert_eq!(share.len(), 20 - 3, "20 % of 100 in flight, 3 held already");
        drop(floor);
        assert!(
            budget.try_acquire(20, 100).is_some(),
            "permits return when dropped"
        );
    }
}
