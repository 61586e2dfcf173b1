//! A circuit breaker per backend: closed while its failure ratio over a
//! window stays under `error_ratio` (once `min_requests` were seen) and it
//! has not failed `consecutive_failures` times in a row, open for
//! `open_seconds` after that (no traffic), then half-open: up to
//! `half_open_requests` trial requests, which close it if all succeed and
//! open it again at the first failure. Failures are what the backend did:
//! 5xx answers, timeouts, resets and refused connects, never the gateway's
//! own shortage of resources.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntGauge};

/// `circuit_breaker:` of an upstream, compiled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerPolicy {
    /// Failed share of a window that opens the breaker.
    pub error_ratio: f64,
    /// Requests a window needs before its ratio counts.
    pub min_requests: u32,
    /// Length of a measuring window.
    pub window: Duration,
    /// How long an open breaker lets nothing through.
    pub open_for: Duration,
    /// Trial requests of a half-open breaker.
    pub half_open_requests: u32,
    /// Failures in a row that open it at once (0: off), as Envoy's
    /// `consecutive_5xx`: a backend that turns bad mid-window is cut
    /// before the window's earlier successes stop diluting its ratio.
    pub consecutive_failures: u32,
}

/// Where a breaker stands; the value of `gatehouse_circuit_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    /// Traffic flows.
    Closed = 0,
    /// Trial requests decide.
    HalfOpen = 1,
    /// No traffic.
    Open = 2,
}

impl Circuit {
    /// `closed`, `half_open` or `open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Circuit::Closed => "closed",
            Circuit::HalfOpen => "half_open",
            Circuit::Open => "open",
        }
    }
}

/// The `to` label values of `gatehouse_circuit_transitions_total`, in
/// [`Circuit`] order.
pub const TRANSITIONS: [&str; 3] = ["closed", "half_open", "open"];

#[derive(Debug)]
enum State {
    Closed {
        since: Instant,
        requests: u32,
        failures: u32,
        streak: u32,
    },
    Open {
        until: Instant,
    },
    HalfOpen {
        admitted: u32,
        succeeded: u32,
    },
}

/// One backend's breaker and its metrics.
#[derive(Debug)]
pub struct Breaker {
    policy: BreakerPolicy,
    state: Mutex<State>,
    gauge: IntGauge,
    /// Transitions into each [`Circuit`], counted.
    transitions: [IntCounter; 3],
}

impl Breaker {
    /// A closed breaker reporting into `gauge` and `transitions`.
    pub fn new(policy: BreakerPolicy, gauge: IntGauge, transitions: [IntCounter; 3]) -> Breaker {
        gauge.set(Circuit::Closed as i64);
        Breaker {
            policy,
            state: Mutex::new(State::Closed {
                since: Instant::now(),
                requests: 0,
                failures: 0,
                streak: 0,
            }),
            gauge,
            transitions,
        }
    }

    /// Where it stands now (an open breaker past its time reads half-open).
    pub fn circuit(&self) -> Circuit {
        match self.state.lock().as_deref() {
            Ok(State::Closed { .. }) | Err(_) => Circuit::Closed,
            Ok(State::Open { until }) if Instant::now() < *until => Circuit::Open,
            Ok(_) => Circuit::HalfOpen,
        }
    }

    /// Whether a request may be sent now (without taking a trial slot).
    pub fn allows(&self) -> bool {
        match self.state.lock().as_deref() {
            Ok(State::Closed { .. }) | Err(_) => true,
            Ok(State::Open { until }) => Instant::now() >= *until,
            Ok(State::HalfOpen { admitted, .. }) => *admitted < self.policy.half_open_requests,
        }
    }

    /// A request was sent: an open breaker past its time turns half-open,
    /// and a half-open one counts the trial.
    pub fn picked(&self) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match &mut *state {
            State::Open { until } if Instant::now() >= *until => {
                *state = State::HalfOpen {
                    admitted: 1,
                    succeeded: 0,
                };
                self.entered(Circuit::HalfOpen);
            }
            State::HalfOpen { admitted, .. } => *admitted += 1,
            _ => {}
        }
    }

    /// How a request sent to the backend ended.
    pub fn record(&self, failed: bool) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let now = Instant::now();
        let p = &self.policy;
        match &mut *state {
            State::Closed {
                since,
                requests,
                failures,
                streak,
            } => {
                if now.duration_since(*since) > p.window {
                    (*since, *requests, *failures) = (now, 0, 0);
                }
                *requests += 1;
                *failures += u32::from(failed);
                *streak = if failed { *streak + 1 } else { 0 };
                let ratio = f64::from(*failures) / f64::from(*requests);
                let in_a_row = p.consecutive_failures > 0 && *streak >= p.consecutive_failures;
                if in_a_row || (*requests >= p.min_requests && ratio >= p.error_ratio) {
                    *state = State::Open {
                        until: now + p.open_for,
                    };
                    self.entered(Circuit::Open);
                }
            }
            State::HalfOpen { succeeded, .. } => {
                if failed {
                    *state = State::Open {
                        until: now + p.open_for,
                    };
                    self.entered(Circuit::Open);
                } else {
                    *succeeded += 1;
                    if *succeeded >= p.half_open_requests {
                        *state = State::Closed {
                            since: now,
                            requests: 0,
                            failures: 0,
                            streak: 0,
                        };
                        self.entered(Circuit::Closed);
                    }
                }
            }
            State::Open { .. } => {}
        }
    }

    fn entered(&self, c: Circuit) {
        self.gauge.set(c as i64);
        self.transitions[c as usize].inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_ms: u64) -> Breaker {
        let policy = BreakerPolicy {
            error_ratio: 0.5,
            min_requests: 4,
            window: Duration::from_secs(10),
            open_for: Duration::from_millis(open_ms),
            half_open_requests: 2,
            consecutive_failures: 3,
        };
        let c = || IntCounter::new("c", "c").unwrap();
        Breaker::new(policy, IntGauge::new("g", "g").unwrap(), [c(), c(), c()])
    }

    #[test]
    fn failures_in_a_row_open_it_whatever_the_ratio() {
        let b = breaker(30);
        for _ in 0..20 {
            b.record(false);
        }
        b.record(true);
        b.record(true);
        b.record(false);
        b.record(true);
        b.record(true);
        assert_eq!(b.circuit(), Circuit::Closed, "a success ends the streak");
        b.record(true);
        assert_eq!(b.circuit(), Circuit::Open, "3 in a row, at a ratio of 5/26");
    }

    #[test]
    fn opens_on_the_ratio_then_trials_decide() {
        let b = breaker(30);
        for failed in [true, false, true] {
            b.record(failed);
        }
        assert_eq!(b.circuit(), Circuit::Closed, "below min_requests");
        b.record(false);
        assert_eq!(b.circuit(), Circuit::Open, "2 of 4 failed: the ratio 0.5");
        assert!(!b.allows());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allows());
        b.picked();
        b.picked();
        assert!(!b.allows(), "two trials only");
        b.record(true);
        assert_eq!(b.circuit(), Circuit::Open, "a failed trial opens it again");
        std::thread::sleep(Duration::from_millis(40));
        b.picked();
        b.record(false);
        b.picked();
        b.record(false);
        assert_eq!(b.circuit(), Circuit::Closed);
        assert_eq!(b.gauge.get(), 0);
        assert_eq!(
            b.transitions
                .iter()
                .map(IntCounter::get)
                .collect::<Vec<_>>(),
            [1, 2, 2]
        );
    }
}
