//! The token bucket as GCRA (generic cell rate algorithm): one number per
//! key, the theoretical arrival time (TAT) of the next request.
//!
//! A bucket holds `burst` tokens and refills one every `interval`
//! (= 1 / rate). A request at `now` passes when
//! `max(TAT, now) + interval - now <= burst * interval`, and then moves TAT
//! to that sum. So `burst` requests pass at once, then one per interval:
//! over T seconds of excess traffic at most `burst + rate × T` pass.

/// A limit's parameters, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Microseconds per token (1 / rate).
    pub interval_us: u64,
    /// Capacity in tokens, at least 1.
    pub burst: u64,
}

/// What one decision found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Passed; `tat` is the new state, `remaining` the tokens left.
    Allow {
        /// New theoretical arrival time.
        tat: u64,
        /// Whole tokens left after this request.
        remaining: u64,
    },
    /// Refused; a request would pass after `retry_after_us`.
    Deny {
        /// Microseconds until one token is available.
        retry_after_us: u64,
    },
}

impl Bucket {
    /// Decides a request at `now` against a bucket whose TAT is `tat`
    /// (`0` for a fresh bucket).
    pub fn decide(&self, tat: u64, now: u64) -> Decision {
        let new_tat = tat.max(now) + self.interval_us;
        let limit = self.burst * self.interval_us;
        let used = new_tat - now;
        if used > limit {
            Decision::Deny {
                retry_after_us: used - limit,
            }
        } else {
            Decision::Allow {
                tat: new_tat,
                remaining: (limit - used) / self.interval_us,
            }
        }
    }

    /// Microseconds until a bucket with `tat` is full again at `now`.
    pub fn until_full(&self, tat: u64, now: u64) -> u64 {
        tat.saturating_sub(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        // 10/s with burst 3: interval 100 ms.
        let b = Bucket {
            interval_us: 100_000,
            burst: 3,
        };
        let mut tat = 0;
        let mut passed = 0;
        // 2 seconds of a request every millisecond.
        for now in (1_000_000..3_000_000).step_by(1000) {
            if let Decision::Allow { tat: t, .. } = b.decide(tat, now) {
                tat = t;
                passed += 1;
            }
        }
        // burst + rate × T = 3 + 10 × 2, give or take the last interval.
        assert!((22..=23).contains(&passed), "{passed}");
    }

    #[test]
    fn remaining_and_retry_after() {
        let b = Bucket {
            interval_us: 1_000_000,
            burst: 2,
        };
        assert_eq!(
            b.decide(0, 10_000_000),
            Decision::Allow {
                tat: 11_000_000,
                remaining: 1
            }
        );
        assert_eq!(
            b.decide(11_000_000, 10_000_000),
            Decision::Allow {
                tat: 12_000_000,
                remaining: 0
            }
        );
        assert_eq!(
            b.decide(12_000_000, 10_000_000),
            Decision::Deny {
                retry_after_us: 1_000_000
            }
        );
        assert_eq!(
            b.decide(12_000_000, 10_500_000),
            Decision::Deny {
                retry_after_us: 500_000
            }
        );
        assert_eq!(b.until_full(12_000_000, 10_500_000), 1_500_000);
    }
}
