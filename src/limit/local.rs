//! The local store: every bucket of every limit in one fixed-size table of
//! atomics. Lock-free (one compare-and-swap per decision) and bounded in
//! memory whatever keys arrive: an attacker rotating IPs only recycles
//! slots.
//!
//! Each slot packs a 16-bit key fingerprint and a 48-bit TAT (microseconds
//! since the store started: about 8.9 years). A key may live in one of two
//! slots; a new key takes the one holding the oldest TAT, which is the
//! bucket most likely full again anyway. Why not pingora-limits? Its `Rate`
//! estimates counts per window; the contract here is a token bucket with
//! `burst`, which needs per-key state, and this table keeps the same
//! lock-free, bounded-memory properties (see benches/micro.rs, group
//! `rate_limit_local`, and benches/MICRO.md).

use std::sync::atomic::{AtomicU64, Ordering};

use super::gcra::{Bucket, Decision};

const TAT_BITS: u32 = 48;
const TAT_MASK: u64 = (1 << TAT_BITS) - 1;

/// The table of buckets.
pub struct LocalStore {
    slots: Box<[AtomicU64]>,
    mask: u64,
}

fn fingerprint(hash: u64) -> u64 {
    (hash >> TAT_BITS) | 1
}

impl LocalStore {
    /// A table of at least `max_keys` slots (rounded up to a power of two).
    pub fn new(max_keys: usize) -> LocalStore {
        let n = max_keys.max(64).next_power_of_two();
        // Zeroed memory straight from the allocator: pages stay untouched,
        // so not resident, until a key lands on them.
        // SAFETY: an all-zero `AtomicU64` is a valid `AtomicU64::new(0)`.
        let slots = unsafe { Box::<[AtomicU64]>::new_zeroed_slice(n).assume_init() };
        LocalStore {
            slots,
            mask: n as u64 - 1,
        }
    }

    /// Bytes the table takes.
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<AtomicU64>()
    }

    /// Decides one request for the bucket keyed by `hash` at `now_us`.
    pub fn decide(&self, hash: u64, bucket: Bucket, now_us: u64) -> Decision {
        let fp = fingerprint(hash);
        let i1 = (hash & self.mask) as usize;
        let i2 = ((hash.rotate_right(21) ^ hash) & self.mask) as usize;
        loop {
            let (s1, s2) = (
                self.slots[i1].load(Ordering::Acquire),
                self.slots[i2].load(Ordering::Acquire),
            );
            let (index, current, tat) = if s1 >> TAT_BITS == fp {
                (i1, s1, s1 & TAT_MASK)
            } else if s2 >> TAT_BITS == fp {
                (i2, s2, s2 & TAT_MASK)
            } else if s1 & TAT_MASK <= s2 & TAT_MASK {
                (i1, s1, 0)
            } else {
                (i2, s2, 0)
            };
            let decision = bucket.decide(tat, now_us);
            let Decision::Allow { tat: new_tat, .. } = decision else {
                return decision;
            };
            let packed = fp << TAT_BITS | (new_tat & TAT_MASK);
            if self.slots[index]
                .compare_exchange_weak(current, packed, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return decision;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_PER_SECOND: Bucket = Bucket {
        interval_us: 100_000,
        burst: 5,
    };

    fn allowed(d: Decision) -> bool {
        matches!(d, Decision::Allow { .. })
    }

    #[test]
    fn keys_are_independent() {
        let s = LocalStore::new(1024);
        let now = 1_000_000;
        let a: usize = (0..10)
            .filter(|_| allowed(s.decide(1, TEN_PER_SECOND, now)))
            .count();
        let b: usize = (0..10)
            .filter(|_| allowed(s.decide(2, TEN_PER_SECOND, now)))
            .count();
        assert_eq!((a, b), (5, 5));
        assert!(allowed(s.decide(1, TEN_PER_SECOND, now + 100_000)));
    }

    #[test]
    fn memory_is_bounded_under_a_key_flood() {
        let s = LocalStore::new(4096);
        let bytes = s.memory_bytes();
        let seed = ahash::RandomState::with_seeds(1, 2, 3, 4);
        for i in 0..100_000u64 {
            s.decide(seed.hash_one(i), TEN_PER_SECOND, 1_000_000 + i);
        }
        assert_eq!(s.memory_bytes(), bytes);
        assert_eq!(bytes, 4096 * 8);
    }

    #[test]
    fn concurrent_decisions_never_overshoot() {
        let s = std::sync::Arc::new(LocalStore::new(64));
        let bucket = Bucket {
            interval_us: 1_000_000_000,
            burst: 1000,
        };
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    (0..1000)
                        .filter(|_| allowed(s.decide(7, bucket, 1_000_000)))
                        .count()
                })
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 1000);
    }
}
