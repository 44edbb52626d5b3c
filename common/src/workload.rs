//! The workload the demos run: Python's `do_something` and `square`.
//!
//! ```python
//! def do_something(count, out_list):
//!     for i in range(count):
//!         out_list.append(random.random())
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Returns `count` random floats in `[0, 1)`: the Python workload, which appends
/// `random.random()` to a list `count` times.
///
/// Each call seeds its generator from the process id, the clock and a call counter,
/// so two forked children never draw the same sequence (Python re-seeds `random`
/// after `fork()` for the same reason).
///
/// ```
/// let values = common::workload::do_something(1000);
/// assert_eq!(values.len(), 1000);
/// assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
/// ```
pub fn do_something(count: usize) -> Vec<f64> {
    let mut rng = SplitMix64::seeded();
    (0..count).map(|_| rng.next_f64()).collect()
}

/// Returns `x * x`: the function the Pool demo maps over its inputs.
///
/// ```
/// assert_eq!(common::workload::square(9), 81);
/// ```
pub fn square(x: i64) -> i64 {
    x * x
}

/// A small, fast, non-cryptographic generator (SplitMix64).
struct SplitMix64(u64);

impl SplitMix64 {
    fn seeded() -> Self {
        static CALLS: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let calls = CALLS.fetch_add(1, Ordering::Relaxed);
        let pid = u64::from(std::process::id());
        SplitMix64(nanos ^ pid.rotate_left(32) ^ calls.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 53 random bits scaled into `[0, 1)`, as Python's `random.random()`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_calls_draw_different_values() {
        assert_ne!(do_something(8), do_something(8));
    }

    #[test]
    fn values_spread_over_the_unit_interval() {
        let values = do_something(10_000);
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert!((0.45..0.55).contains(&mean), "mean {mean}");
        assert!(values.iter().any(|v| *v < 0.01) && values.iter().any(|v| *v > 0.99));
    }

    #[test]
    fn square_of_negative_is_positive() {
        assert_eq!(square(-7), 49);
    }
}
