//! The live dashboard's numbers: per route, a ring of 5-second periods
//! (requests, 5xx, a latency histogram) fed from `logging`; refusals by
//! reason in another; the process's CPU and memory when read. Memory is
//! fixed: at most `dashboard.max_routes` rings of [`ring::SLOTS`] slots,
//! each allocated on its route's first request. [`report`] turns them into
//! the `/status/live` document, [`page`] (with [`tables`] for the
//! configuration) into the admin service's page.

pub mod latency;
pub mod page;
pub mod process;
pub mod report;
pub mod ring;
pub mod tables;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::reason::Reason;
use crate::reject::Rejection;
use latency::BUCKETS;
use ring::{Ring, PERIOD};

/// Counters of a route's period: requests, 5xx (or no answer), then the
/// latency buckets.
const ROUTE_COUNTERS: usize = 2 + BUCKETS;
const REQUESTS: usize = 0;
const ERRORS: usize = 1;

/// Refusals counted: every auth [`Reason`], then these.
const OTHER_REFUSALS: [&str; 3] = ["rate_limited", "rate_limit_unavailable", "auth_unavailable"];
const REFUSALS: usize = Reason::COUNT + OTHER_REFUSALS.len();

/// The dashboard of one process; kept across reloads, so its history is.
pub struct Dashboard {
    epoch: Instant,
    budget: Arc<Budget>,
    routes: Mutex<HashMap<String, Arc<RouteSeries>>>,
    refusals: Ring<REFUSALS>,
    /// CPU share between readings.
    pub cpu: process::CpuMeter,
}

impl Dashboard {
    /// A dashboard that keeps the series of at most `max_routes` routes.
    pub fn new(max_routes: usize) -> Dashboard {
        Dashboard {
            epoch: Instant::now(),
            budget: Arc::new(Budget {
                left: AtomicUsize::new(max_routes),
                max: max_routes,
            }),
            routes: Mutex::new(HashMap::new()),
            refusals: Ring::new(),
            cpu: process::CpuMeter::default(),
        }
    }

    /// How many routes may have a series.
    pub fn max_routes(&self) -> usize {
        self.budget.max
    }

    /// The series of route `name`, the same one across reloads.
    pub fn route(&self, name: &str) -> Arc<RouteSeries> {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(routes.entry(name.to_string()).or_insert_with(|| {
            Arc::new(RouteSeries {
                epoch: self.epoch,
                ring: OnceLock::new(),
                budget: Arc::clone(&self.budget),
            })
        }))
    }

    /// Forgets the series of routes not in `names` (they left the config).
    pub fn retain(&self, names: &[&str]) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        routes.retain(|name, _| names.contains(&name.as_str()));
    }

    /// Counts `rejection` at `now` when it is an auth or rate-limit refusal.
    pub fn refused(&self, now: Instant, rejection: &Rejection) {
        if let Some(i) = refusal_index(rejection) {
            self.refusals.add(period(self.epoch, now), i);
        }
    }

    /// The period `now` falls in, and how far into it `now` is.
    fn position(&self, now: Instant) -> (u64, Duration) {
        let since = now.saturating_duration_since(self.epoch);
        let p = period(self.epoch, now);
        (p, since - PERIOD * p as u32)
    }
}

/// Which refusal counter `rejection` goes to.
fn refusal_index(rejection: &Rejection) -> Option<usize> {
    let reason = match rejection {
        Rejection::Unauthenticated(r) => *r,
        Rejection::InsufficientScope(_) => Reason::Scope,
        Rejection::InsufficientRole => Reason::Role,
        Rejection::IpDenied => Reason::Ip,
        Rejection::RateLimited(_) => return Some(Reason::COUNT),
        Rejection::RateLimitUnavailable => return Some(Reason::COUNT + 1),
        Rejection::AuthUnavailable(_) => return Some(Reason::COUNT + 2),
        _ => return None,
    };
    Some(reason as usize)
}

/// The name of refusal counter `i`.
fn refusal_name(i: usize) -> &'static str {
    match Reason::ALL.get(i) {
        Some(r) => r.as_str(),
        None => OTHER_REFUSALS[i - Reason::COUNT],
    }
}

/// The number of the period `now` falls in.
fn period(epoch: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(epoch).as_secs() / PERIOD.as_secs()
}

/// How many route rings may still be allocated.
struct Budget {
    left: AtomicUsize,
    max: usize,
}

impl Budget {
    /// Takes one ring from the budget; false when none is left.
    fn take(&self) -> bool {
        self.left
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// The ring of one route, allocated on its first request.
pub struct RouteSeries {
    epoch: Instant,
    ring: OnceLock<Option<Box<Ring<ROUTE_COUNTERS>>>>,
    budget: Arc<Budget>,
}

impl RouteSeries {
    /// Counts a request that finished at `now` after `took`, with `status`
    /// (0: no answer).
    pub fn record(&self, now: Instant, took: Duration, status: u16) {
        let ring = self
            .ring
            .get_or_init(|| self.budget.take().then(|| Box::new(Ring::new())));
        let Some(ring) = ring else { return };
        let Some(counters) = ring.counters(period(self.epoch, now)) else {
            return;
        };
        counters[REQUESTS].fetch_add(1, Relaxed);
        if status >= 500 || status == 0 {
            counters[ERRORS].fetch_add(1, Relaxed);
        }
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        counters[2 + latency::bucket(micros)].fetch_add(1, Relaxed);
    }

    /// Whether the route has a ring (`false`: no request yet, or over
    /// `max_routes`).
    fn ring(&self) -> Option<&Ring<ROUTE_COUNTERS>> {
        self.ring.get().and_then(|r| r.as_deref())
    }

    /// Whether the route went over `max_routes` and is not counted.
    fn untracked(&self) -> bool {
        matches!(self.ring.get(), Some(None))
    }
}

impl Drop for RouteSeries {
    fn drop(&mut self) {
        if self.ring().is_some() {
            self.budget.left.fetch_add(1, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_refusal_counter() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert_eq!(refusal_name(i), r.as_str());
        }
        assert_eq!(refusal_name(REFUSALS - 1), "auth_unavailable");
    }

    #[test]
    fn routes_past_the_budget_are_not_counted_until_one_leaves() {
        let d = Dashboard::new(1);
        let (a, b) = (d.route("a"), d.route("b"));
        let now = Instant::now();
        a.record(now, Duration::from_millis(2), 200);
        b.record(now, Duration::from_millis(2), 200);
        assert!(a.ring().is_some() && b.untracked());
        d.retain(&["b"]);
        drop(a);
        let c = d.route("c");
        c.record(now, Duration::from_millis(2), 503);
        let ring = c.ring().unwrap();
        let counts = ring.read(period(d.epoch, now));
        assert_eq!((counts[REQUESTS], counts[ERRORS]), (1, 1));
    }
}
