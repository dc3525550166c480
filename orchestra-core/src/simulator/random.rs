//! The simulator's seeded randomness: every random choice of a simulated run (delays, faults,
//! node placement) comes from one of these, so that a run replays exactly from its seed.

use std::time::Duration;

/// A small, fast, seeded generator (splitmix64). Not for cryptography.
///
/// # Examples
///
/// ```
/// use orchestra_core::simulator::SimRng;
///
/// let mut a = SimRng::new(7);
/// let mut b = SimRng::new(7);
/// assert_eq!(a.next_u64(), b.next_u64());
/// assert!(a.below(10) < 10);
/// ```
#[derive(Clone, Debug)]
pub struct SimRng {
    state: u64,
}

impl SimRng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> SimRng {
        SimRng { state: seed }
    }

    /// An independent generator for one component, derived from this one's next value.
    #[must_use]
    pub fn fork(&mut self) -> SimRng {
        SimRng::new(self.next_u64())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (0 when `bound` is 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        // Lemire's multiply-shift: unbiased enough for simulation.
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// A uniformly chosen element index of a slice of `len` (0 when empty).
    pub fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.below(len as u64)).unwrap_or(0)
    }

    /// True with probability `p` (clamped to 0..=1).
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        if p >= 1.0 {
            return true;
        }
        // 53 random bits as a fraction in [0, 1).
        let fraction = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        fraction < p
    }

    /// A duration uniformly between `low` and `high` (inclusive, to the microsecond; `low` when
    /// `high` is not above it).
    pub fn between(&mut self, low: Duration, high: Duration) -> Duration {
        let span = high.saturating_sub(low).as_micros();
        let span = u64::try_from(span).unwrap_or(u64::MAX);
        low + Duration::from_micros(self.below(span.saturating_add(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = SimRng::new(42);
        let mut b = SimRng::new(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(SimRng::new(1).next_u64(), SimRng::new(2).next_u64());
    }

    #[test]
    fn ranges_are_respected() {
        let mut rng = SimRng::new(3);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let value = rng.below(5);
            seen[usize::try_from(value).unwrap()] = true;
            let duration = rng.between(Duration::from_millis(10), Duration::from_millis(20));
            assert!((Duration::from_millis(10)..=Duration::from_millis(20)).contains(&duration));
        }
        assert!(seen.iter().all(|seen| *seen));
        assert_eq!(rng.below(0), 0);
        assert_eq!(
            rng.between(Duration::from_secs(2), Duration::from_secs(1)),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn chance_is_roughly_right() {
        let mut rng = SimRng::new(9);
        let hits = (0..10_000).filter(|_| rng.chance(0.25)).count();
        assert!((2_200..2_800).contains(&hits), "{hits}");
        assert!(!rng.chance(0.0));
        assert!(rng.chance(1.0));
    }
}
