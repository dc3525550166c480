//! What the scheduler counts: attempts by outcome and how long they took.
//!
//! kube-scheduler exports `scheduler_schedule_attempts_total{result}` and
//! `scheduler_scheduling_attempt_duration_seconds`; [`SchedulerMetrics`] keeps the same figures
//! in atomics, cheap enough to update on every attempt, and answers percentiles from a
//! histogram with buckets a quarter of a power of two wide (each bucket's upper bound is at most
//! 19% above its lower bound).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per power of two.
const SUB_BUCKETS: u32 = 4;
/// Powers of two covered, from 1 µs: up to 2^40 µs, about 12 days.
const POWERS: u32 = 40;
const BUCKETS: usize = (POWERS * SUB_BUCKETS) as usize + 1;

/// The scheduler's counters; shared through an `Arc` (see
/// [`Scheduler::metrics`](super::Scheduler::metrics)).
#[derive(Debug)]
pub struct SchedulerMetrics {
    scheduled: AtomicU64,
    unschedulable: AtomicU64,
    errors: AtomicU64,
    /// Durations of the attempts that ended with the pod bound, from the pop to the end of the
    /// binding.
    durations: Box<[AtomicU64]>,
    /// Durations of the scheduling algorithm alone (kube-scheduler's
    /// `scheduling_algorithm_duration_seconds`): PreFilter to the choice of a node.
    algorithm: Box<[AtomicU64]>,
    /// The sum of the algorithm's durations, in microseconds.
    algorithm_micros: AtomicU64,
}

impl Default for SchedulerMetrics {
    fn default() -> Self {
        SchedulerMetrics {
            scheduled: AtomicU64::new(0),
            unschedulable: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            durations: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            algorithm: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            algorithm_micros: AtomicU64::new(0),
        }
    }
}

/// The bucket of a duration in microseconds: `SUB_BUCKETS` per power of two.
fn bucket(micros: u64) -> usize {
    if micros <= 1 {
        return 0;
    }
    let power = 63 - micros.leading_zeros();
    // The two bits below the leading one pick the sub-bucket.
    let sub = if power >= 2 {
        (micros >> (power - 2)) & 0b11
    } else {
        (micros << (2 - power)) & 0b11
    };
    let index = power * SUB_BUCKETS + u32::try_from(sub).unwrap_or(0) + 1;
    usize::try_from(index)
        .unwrap_or(BUCKETS - 1)
        .min(BUCKETS - 1)
}

/// The upper bound (in microseconds) of a bucket.
fn upper_bound(index: usize) -> u64 {
    if index == 0 {
        return 1;
    }
    let index = u32::try_from(index - 1).unwrap_or(0);
    let power = index / SUB_BUCKETS;
    let sub = u64::from(index % SUB_BUCKETS);
    let base = 1_u64 << power;
    base + (base * (sub + 1)) / u64::from(SUB_BUCKETS)
}

impl SchedulerMetrics {
    /// Counts a pod bound after an attempt of `duration`.
    pub fn observe_scheduled(&self, duration: Duration) {
        self.scheduled.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.durations[bucket(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// Records how long one run of the scheduling algorithm took.
    pub fn observe_algorithm(&self, duration: Duration) {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.algorithm_micros.fetch_add(micros, Ordering::Relaxed);
        self.algorithm[bucket(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// The mean duration of the scheduling algorithm, `None` before it ran.
    pub fn algorithm_duration_mean(&self) -> Option<Duration> {
        let runs: u64 = self
            .algorithm
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum();
        (runs > 0)
            .then(|| Duration::from_micros(self.algorithm_micros.load(Ordering::Relaxed) / runs))
    }

    /// The `q` quantile of the scheduling algorithm's durations (upper bound of its bucket).
    pub fn algorithm_duration_quantile(&self, q: f64) -> Option<Duration> {
        quantile(&self.algorithm, q)
    }

    /// Counts an attempt that found no node.
    pub fn observe_unschedulable(&self) {
        self.unschedulable.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an attempt that failed with an error (plugin or binding).
    pub fn observe_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Pods bound.
    pub fn scheduled(&self) -> u64 {
        self.scheduled.load(Ordering::Relaxed)
    }

    /// Attempts that found no node.
    pub fn unschedulable(&self) -> u64 {
        self.unschedulable.load(Ordering::Relaxed)
    }

    /// Attempts that failed with an error.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// The `q` quantile (0.0–1.0) of the successful attempts' durations, as the upper bound of
    /// its bucket; `None` before any pod was bound.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use orchestra_core::scheduler::metrics::SchedulerMetrics;
    ///
    /// let metrics = SchedulerMetrics::default();
    /// for micros in 1..=100 {
    ///     metrics.observe_scheduled(Duration::from_micros(micros * 10));
    /// }
    /// let p99 = metrics.attempt_duration_quantile(0.99).unwrap();
    /// assert!(p99 >= Duration::from_micros(990) && p99 <= Duration::from_micros(1190));
    /// assert_eq!(metrics.scheduled(), 100);
    /// ```
    pub fn attempt_duration_quantile(&self, q: f64) -> Option<Duration> {
        quantile(&self.durations, q)
    }
}

/// The `q` quantile of a histogram, as the upper bound of its bucket.
fn quantile(buckets: &[AtomicU64], q: f64) -> Option<Duration> {
    let counts: Vec<u64> = buckets
        .iter()
        .map(|count| count.load(Ordering::Relaxed))
        .collect();
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    // The rank of the quantile, 1-based, rounded up.
    let wanted = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (index, count) in counts.iter().enumerate() {
        seen += count;
        if seen >= wanted {
            return Some(Duration::from_micros(upper_bound(index)));
        }
    }
    Some(Duration::from_micros(upper_bound(BUCKETS - 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_tight() {
        let mut last = 0;
        for micros in 1..100_000_u64 {
            let index = bucket(micros);
            assert!(index >= last, "{micros}");
            last = index;
            let upper = upper_bound(index);
            assert!(upper >= micros, "{micros} above its bucket's bound {upper}");
            assert!(
                upper as f64 <= micros as f64 * 1.26 + 1.0,
                "{micros}: {upper}"
            );
        }
    }

    #[test]
    fn quantiles_and_counters() {
        let metrics = SchedulerMetrics::default();
        assert_eq!(metrics.attempt_duration_quantile(0.5), None);
        for _ in 0..99 {
            metrics.observe_scheduled(Duration::from_micros(100));
        }
        metrics.observe_scheduled(Duration::from_secs(1));
        metrics.observe_unschedulable();
        metrics.observe_error();
        metrics.observe_algorithm(Duration::from_micros(40));
        metrics.observe_algorithm(Duration::from_micros(60));
        assert_eq!(
            metrics.algorithm_duration_mean(),
            Some(Duration::from_micros(50))
        );
        let p99 = metrics.algorithm_duration_quantile(0.99).unwrap();
        assert!(p99 >= Duration::from_micros(60) && p99 < Duration::from_micros(80));
        let p50 = metrics.attempt_duration_quantile(0.5).unwrap();
        assert!(p50 >= Duration::from_micros(100) && p50 < Duration::from_micros(130));
        let max = metrics.attempt_duration_quantile(1.0).unwrap();
        assert!(max >= Duration::from_secs(1) && max < Duration::from_millis(1300));
        assert_eq!(
            (
                metrics.scheduled(),
                metrics.unschedulable(),
                metrics.errors()
            ),
            (100, 1, 1)
        );
    }
}
