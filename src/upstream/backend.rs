//! One backend server of a pool: its health, in-flight count, error
//! rate, circuit breaker and state timeline, and the metric families its
//! series live in.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec};

use super::breaker::{Breaker, BreakerPolicy, Circuit, TRANSITIONS};
use super::timeline::{State, Timeline};
use crate::metrics::Metrics;

/// Where a pool's backends keep their series: health gauge, circuit state
/// and transitions, labelled by upstream and backend.
#[derive(Debug, Clone)]
pub struct BackendMetrics {
    upstream: String,
    healthy: IntGaugeVec,
    circuit_state: IntGaugeVec,
    circuit_transitions: IntCounterVec,
}

impl BackendMetrics {
    /// The families of `metrics`, for the backends of upstream `upstream`.
    pub fn of(upstream: &str, metrics: &Metrics) -> BackendMetrics {
        BackendMetrics {
            upstream: upstream.to_string(),
            healthy: metrics.backend_healthy.clone(),
            circuit_state: metrics.circuit_state.clone(),
            circuit_transitions: metrics.circuit_transitions.clone(),
        }
    }

    /// Removes every series of backend `label`.
    pub fn forget(&self, label: &str) {
        let _ = self.healthy.remove_label_values(&[&self.upstream, label]);
        let _ = self
            .circuit_state
            .remove_label_values(&[&self.upstream, label]);
        for to in TRANSITIONS {
            let _ = self
                .circuit_transitions
                .remove_label_values(&[&self.upstream, label, to]);
        }
    }
}

/// One backend server of a pool.
#[derive(Debug)]
pub struct Backend {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `addr` as text: the `backend` label and the status page key.
    pub label: String,
    /// Relative share for `weighted` and `least_conn`.
    pub weight: u32,
    /// Whether the last active check passed.
    pub(super) check_passed: AtomicBool,
    /// Ejected by failed connects since the last passing check.
    pub(super) ejected: AtomicBool,
    /// Connect timeouts in a row, and when the first of them happened.
    pub(super) timeouts: TimeoutStreak,
    /// Requests now being proxied to it (for `least_conn`).
    pub(super) in_flight: AtomicUsize,
    /// `gatehouse_upstream_backend_healthy{upstream, backend}`.
    pub(super) gauge: IntGauge,
    /// Its circuit breaker, when the pool has `circuit_breaker`.
    pub breaker: Option<Breaker>,
    /// Attempts sent to it, ever.
    attempts: AtomicU64,
    /// Attempts that failed (connect error, 5xx, timeout), ever.
    failures: AtomicU64,
    /// (attempts, failures) at the last health round, for the recent error rate.
    last_round: AtomicU64,
    /// Failure ratio over the last health-check interval, in parts per million.
    recent_error_ppm: AtomicU64,
    /// Taken out of its pool (its DNS name no longer lists it): its
    /// health probe stops, and it gets no new requests.
    retired: AtomicBool,
    /// Its recent state changes, for the dashboard.
    pub timeline: Timeline,
}

impl Backend {
    /// A backend at `addr`, healthy until a check says otherwise unless
    /// `on_probation` (it then waits for its first passing check), with
    /// its health gauge and, under `breaker`, a circuit breaker.
    pub fn new(
        addr: SocketAddr,
        weight: u32,
        metrics: &BackendMetrics,
        breaker: Option<BreakerPolicy>,
        on_probation: bool,
    ) -> Backend {
        let label = addr.to_string();
        let gauge = metrics
            .healthy
            .with_label_values(&[&metrics.upstream, &label]);
        gauge.set(i64::from(!on_probation));
        let breaker = breaker.map(|policy| {
            let transitions = TRANSITIONS.map(|to| {
                metrics
                    .circuit_transitions
                    .with_label_values(&[&metrics.upstream, &label, to])
            });
            let state = metrics
                .circuit_state
                .with_label_values(&[&metrics.upstream, &label]);
            Breaker::new(policy, state, transitions)
        });
        Backend {
            addr,
            label,
            weight: weight.max(1),
            check_passed: AtomicBool::new(!on_probation),
            ejected: AtomicBool::new(false),
            timeouts: TimeoutStreak::default(),
            in_flight: AtomicUsize::new(0),
            breaker,
            gauge,
            attempts: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_round: AtomicU64::new(0),
            recent_error_ppm: AtomicU64::new(0),
            retired: AtomicBool::new(false),
            timeline: Timeline::default(),
        }
    }

    /// Whether it left its pool.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Relaxed)
    }

    /// Takes it out of its pool for good: its metric series go.
    pub(super) fn retire(&self, metrics: &BackendMetrics) {
        self.retired.store(true, Relaxed);
        metrics.forget(&self.label);
    }

    /// Whether it may be picked.
    pub fn is_healthy(&self) -> bool {
        self.check_passed.load(Relaxed) && !self.ejected.load(Relaxed)
    }

    /// Up, down, or up with its breaker open; noted in its timeline.
    pub fn state(&self) -> State {
        let state = if !self.is_healthy() {
            State::Down
        } else if self
            .breaker
            .as_ref()
            .is_some_and(|b| b.circuit() == Circuit::Open)
        {
            State::Open
        } else {
            State::Up
        };
        self.timeline.note(state);
        state
    }

    /// Whether failed connects ejected it.
    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Relaxed)
    }

    /// An attempt reached the backend: a streak of connect timeouts ends.
    pub fn reached(&self) {
        self.timeouts.clear();
    }

    /// Requests now in flight to it.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Relaxed)
    }

    /// Records how one attempt on this backend ended (its breaker too).
    pub fn record(&self, failed: bool) {
        self.attempts.fetch_add(1, Relaxed);
        if failed {
            self.failures.fetch_add(1, Relaxed);
        }
        if let Some(b) = &self.breaker {
            b.record(failed);
        }
    }

    /// Whether its breaker (if any) lets a request through now.
    pub(super) fn breaker_allows(&self) -> bool {
        self.breaker.as_ref().is_none_or(Breaker::allows)
    }

    /// Closes a measuring window (each health-check round): the error rate
    /// of the attempts since the previous one becomes the recent rate.
    pub fn roll_window(&self) {
        self.state();
        let (a, f) = (self.attempts.load(Relaxed), self.failures.load(Relaxed));
        let packed = (a & 0xFFFF_FFFF) << 32 | (f & 0xFFFF_FFFF);
        let prev = self.last_round.swap(packed, Relaxed);
        let (pa, pf) = (prev >> 32, prev & 0xFFFF_FFFF);
        let da = (a & 0xFFFF_FFFF).wrapping_sub(pa) & 0xFFFF_FFFF;
        let df = (f & 0xFFFF_FFFF).wrapping_sub(pf) & 0xFFFF_FFFF;
        let ppm = (df * 1_000_000).checked_div(da).unwrap_or(0);
        self.recent_error_ppm.store(ppm, Relaxed);
    }

    /// Failed share of the attempts in the last window (0.0–1.0).
    pub fn recent_error_rate(&self) -> f64 {
        self.recent_error_ppm.load(Relaxed) as f64 / 1e6
    }
}

/// Connect timeouts in a row on one backend within a window.
#[derive(Debug, Default)]
pub(super) struct TimeoutStreak {
    /// How many.
    count: AtomicU32,
    /// When the first one happened, in ms since the pool was built.
    since_ms: AtomicU64,
}

impl TimeoutStreak {
    /// Counts one timeout at `now_ms`; returns the streak's length within `window_ms`.
    pub(super) fn add(&self, now_ms: u64, window_ms: u64) -> u32 {
        let since = self.since_ms.load(Relaxed);
        if self.count.load(Relaxed) == 0 || now_ms.saturating_sub(since) > window_ms {
            self.since_ms.store(now_ms, Relaxed);
            self.count.store(1, Relaxed);
            return 1;
        }
        self.count.fetch_add(1, Relaxed) + 1
    }

    /// Ends the streak (a read first: the common case writes nothing).
    pub(super) fn clear(&self) {
        if self.count.load(Relaxed) != 0 {
            self.count.store(0, Relaxed);
        }
    }
}
