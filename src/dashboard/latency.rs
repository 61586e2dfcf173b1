//! Log-linear latency buckets: four per doubling from 16 µs up to about
//! 67 s, so a percentile read from them is within about 12 % of the
//! truth. Bucket 0 holds everything under 16 µs, the last everything
//! above its lower edge.

/// How many buckets.
pub const BUCKETS: usize = 1 + 4 * 22;

/// The bucket of a duration of `micros` µs.
pub fn bucket(micros: u64) -> usize {
    if micros < 16 {
        return 0;
    }
    let msb = 63 - micros.leading_zeros() as usize;
    let quarter = ((micros >> (msb - 2)) & 3) as usize;
    (1 + (msb - 4) * 4 + quarter).min(BUCKETS - 1)
}

/// The lower and upper edge of bucket `i`, in µs.
fn edges(i: usize) -> (u64, u64) {
    if i == 0 {
        return (0, 16);
    }
    let msb = (i - 1) / 4 + 4;
    let quarter = ((i - 1) % 4) as u64;
    ((4 + quarter) << (msb - 2), (5 + quarter) << (msb - 2))
}

/// The `q` quantile (0–1) of the durations counted in `counts`, in ms:
/// the middle of the bucket the quantile falls in; `None` when nothing
/// was counted.
pub fn quantile_ms(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (i, &c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            let (lo, hi) = edges(i);
            return Some((lo + hi) as f64 / 2.0 / 1000.0);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_duration_falls_in_the_bucket_whose_edges_hold_it() {
        for micros in (16..2_000_000u64)
            .step_by(37)
            .chain([16, 19, 20, 31, 32, 1 << 25])
        {
            let (lo, hi) = edges(bucket(micros));
            assert!(lo <= micros && micros < hi, "{micros} in [{lo}, {hi})");
            assert!((hi - lo) as f64 / lo as f64 <= 0.25 + 1e-9);
        }
        assert_eq!(bucket(3), 0);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_come_from_the_bucket_the_rank_falls_in() {
        let mut counts = vec![0u64; BUCKETS];
        // 90 requests of 1 ms, 10 of 100 ms.
        counts[bucket(1000)] += 90;
        counts[bucket(100_000)] += 10;
        let p50 = quantile_ms(&counts, 0.5).unwrap();
        let p95 = quantile_ms(&counts, 0.95).unwrap();
        assert!((0.88..1.13).contains(&p50), "{p50}");
        assert!((88.0..113.0).contains(&p95), "{p95}");
        assert_eq!(quantile_ms(&[0; BUCKETS], 0.5), None);
    }
}
