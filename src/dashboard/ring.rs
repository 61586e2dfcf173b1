//! A fixed ring of per-period counters: the dashboard's memory. Each slot
//! holds `W` counters of one [`PERIOD`] and the number of the period it
//! holds; recording is a few relaxed atomic adds, reading sums the slots
//! of the periods a window covers.
//!
//! A slot is claimed for a new period by the first writer of that period
//! (compare-and-swap on its period number, then zeroing). A count added
//! by a racing writer between the claim and the zeroing is lost: at most
//! a few requests at a period's first microsecond, which a dashboard can
//! afford and a lock on the request path could not.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// How long one slot counts.
pub const PERIOD: Duration = Duration::from_secs(5);

/// The longest window read: 15 minutes.
pub const SPAN: Duration = Duration::from_secs(15 * 60);

/// Slots per ring: the span's periods plus the one being filled.
pub const SLOTS: usize = (SPAN.as_secs() / PERIOD.as_secs()) as usize + 1;

/// No period yet.
const EMPTY: u64 = u64::MAX;

/// One period's counters.
struct Slot<const W: usize> {
    period: AtomicU64,
    counts: [AtomicU32; W],
}

/// [`SLOTS`] periods of `W` counters each.
pub struct Ring<const W: usize> {
    slots: Box<[Slot<W>]>,
}

impl<const W: usize> Ring<W> {
    /// An empty ring.
    pub fn new() -> Ring<W> {
        Ring {
            slots: (0..SLOTS)
                .map(|_| Slot {
                    period: AtomicU64::new(EMPTY),
                    counts: std::array::from_fn(|_| AtomicU32::new(0)),
                })
                .collect(),
        }
    }

    /// The counters of `period`, claiming its slot when it still holds an
    /// older one; `None` when a newer period already took it (a writer
    /// that slept across a whole span).
    pub fn counters(&self, period: u64) -> Option<&[AtomicU32; W]> {
        let slot = &self.slots[(period % SLOTS as u64) as usize];
        let held = slot.period.load(Relaxed);
        if held == period {
            return Some(&slot.counts);
        }
        if held != EMPTY && held > period {
            return None;
        }
        if slot
            .period
            .compare_exchange(held, period, Relaxed, Relaxed)
            .is_ok()
        {
            for c in &slot.counts {
                c.store(0, Relaxed);
            }
        }
        Some(&slot.counts)
    }

    /// Adds one to counter `i` of `period`.
    pub fn add(&self, period: u64, i: usize) {
        if let Some(c) = self.counters(period).and_then(|c| c.get(i)) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// The counters of `period` as they are now (zeros when the ring
    /// holds another period there).
    pub fn read(&self, period: u64) -> [u32; W] {
        let slot = &self.slots[(period % SLOTS as u64) as usize];
        if slot.period.load(Relaxed) != period {
            return [0; W];
        }
        std::array::from_fn(|i| slot.counts[i].load(Relaxed))
    }

    /// The sum of the counters of the `periods` periods up to `now`.
    pub fn sum(&self, now: u64, periods: u64) -> [u64; W] {
        let mut total = [0u64; W];
        for p in now.saturating_sub(periods.saturating_sub(1))..=now {
            for (t, v) in total.iter_mut().zip(self.read(p)) {
                *t += u64::from(v);
            }
        }
        total
    }
}

impl<const W: usize> Default for Ring<W> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_counts_until_its_slot_is_taken_again_a_span_later() {
        let ring: Ring<2> = Ring::new();
        ring.add(3, 0);
        ring.add(3, 0);
        ring.add(3, 1);
        ring.add(4, 0);
        assert_eq!(ring.read(3), [2, 1]);
        assert_eq!(ring.sum(4, 2), [3, 1]);
        assert_eq!(ring.sum(4, 1), [1, 0]);
        // The slot of period 3 now holds period 3 + SLOTS.
        let later = 3 + SLOTS as u64;
        ring.add(later, 1);
        assert_eq!(ring.read(3), [0, 0]);
        assert_eq!(ring.read(later), [0, 1]);
        // A writer still on period 3 finds its slot gone, and counts nothing.
        ring.add(3, 0);
        assert_eq!(ring.read(later), [0, 1]);
    }

    #[test]
    fn a_window_longer_than_the_time_since_period_zero_sums_what_exists() {
        let ring: Ring<1> = Ring::new();
        ring.add(0, 0);
        ring.add(1, 0);
        assert_eq!(ring.sum(1, 180), [2]);
        assert_eq!(ring.sum(7, 180), [2]);
    }
}
