//! How long a failed key waits before it is tried again: the work queue's back-off policy.
//!
//! When a reconcile fails, the controller puts the key back with
//! [`WorkQueue::add_rate_limited`](super::queue::WorkQueue::add_rate_limited), and the queue asks
//! its [`RateLimiter`] how long the key should wait. The policy is a trait, as tower's retry
//! `Policy` is, so that a controller can bring its own; the default, [`DefaultRateLimiter`], is
//! client-go's `DefaultControllerRateLimiter`:
//!
//! - a per-key exponential back-off, [`ItemExponentialBackoff`]: 5 ms after the first failure,
//!   then 10 ms, 20 ms, 40 ms, …, doubling with every failure up to a cap of 1000 s, until the key
//!   is [forgotten](RateLimiter::forget) (the controller forgets a key when its reconcile
//!   succeeds);
//! - an overall token bucket, [`TokenBucket`]: 10 retries a second with bursts of 100, so that a
//!   storm of failures across many keys cannot make the controller hammer the API server;
//! - combined by [`MaxOf`], which waits for the longer of the two delays.
//!
//! Every limiter is told the current time instead of reading a clock, so it is plain logic that
//! tests can drive step by step; the work queue passes [`tokio::time::Instant::now`], which tests
//! pause and advance.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//!
//! use orchestra_core::runtime::rate_limit::{DefaultRateLimiter, RateLimiter};
//! use tokio::time::Instant;
//!
//! let mut limiter = DefaultRateLimiter::<&str>::default();
//! let now = Instant::now();
//! assert_eq!(limiter.when(&"default/web", now), Duration::from_millis(5));
//! assert_eq!(limiter.when(&"default/web", now), Duration::from_millis(10));
//! assert_eq!(limiter.num_requeues(&"default/web"), 2);
//!
//! limiter.forget(&"default/web");
//! assert_eq!(limiter.when(&"default/web", now), Duration::from_millis(5));
//! ```

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

/// A back-off policy: how long a key waits before it is retried.
///
/// The work queue calls [`when`](RateLimiter::when) from
/// [`add_rate_limited`](super::queue::WorkQueue::add_rate_limited), every time a key fails;
/// [`forget`](RateLimiter::forget) from [`forget`](super::queue::WorkQueue::forget), when the key
/// succeeded and its history should be dropped; and
/// [`num_requeues`](RateLimiter::num_requeues) to report how often a key was retried. The queue
/// calls them with its lock held, so they must be quick and must not block.
///
/// # Examples
///
/// A policy that retries every key after a fixed second, however often it failed:
///
/// ```
/// use std::collections::HashMap;
/// use std::time::Duration;
///
/// use orchestra_core::runtime::WorkQueue;
/// use orchestra_core::runtime::rate_limit::RateLimiter;
/// use tokio::time::Instant;
///
/// #[derive(Debug, Default)]
/// struct Fixed {
///     failures: HashMap<String, u32>,
/// }
///
/// impl RateLimiter<String> for Fixed {
///     fn when(&mut self, key: &String, _now: Instant) -> Duration {
///         *self.failures.entry(key.clone()).or_default() += 1;
///         Duration::from_secs(1)
///     }
///
///     fn forget(&mut self, key: &String) {
///         self.failures.remove(key);
///     }
///
///     fn num_requeues(&self, key: &String) -> u32 {
///         self.failures.get(key).copied().unwrap_or(0)
///     }
/// }
///
/// let queue = WorkQueue::with_rate_limiter(Fixed::default());
/// queue.add_rate_limited("default/web".to_string());
/// assert_eq!(queue.num_requeues(&"default/web".to_string()), 1);
/// ```
pub trait RateLimiter<K> {
    /// Records a failure of `key` at `now` and returns how long the key should wait before it is
    /// retried.
    fn when(&mut self, key: &K, now: Instant) -> Duration;

    /// Drops what the limiter remembers of `key`: its next failure starts the back-off afresh.
    fn forget(&mut self, key: &K);

    /// How many failures of `key` the limiter remembers (since it was last forgotten).
    fn num_requeues(&self, key: &K) -> u32;
}

/// client-go's default controller rate limiter: the longer of a per-key exponential back-off
/// (5 ms doubling to 1000 s) and an overall token bucket (10 per second, bursts of 100).
///
/// [`WorkQueue::new`](super::queue::WorkQueue::new) uses it.
pub type DefaultRateLimiter<K> = MaxOf<ItemExponentialBackoff<K>, TokenBucket>;

/// Per-key exponential back-off: a key that failed `n` times before waits `base · 2ⁿ`, capped at
/// `max`.
///
/// client-go's `ItemExponentialFailureRateLimiter`. The default is a base of 5 ms and a cap of
/// 1000 s, so a key waits 5 ms, 10 ms, 20 ms, … and reaches the cap on its 19th failure in a row.
/// The limiter remembers every key that failed until it is [forgotten](RateLimiter::forget).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// use orchestra_core::runtime::rate_limit::{ItemExponentialBackoff, RateLimiter};
/// use tokio::time::Instant;
///
/// let mut backoff = ItemExponentialBackoff::new(Duration::from_millis(100), Duration::from_secs(1));
/// let now = Instant::now();
/// let delays: Vec<_> = (0..6).map(|_| backoff.when(&"key", now).as_millis()).collect();
/// assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
/// ```
#[derive(Clone, Debug)]
pub struct ItemExponentialBackoff<K> {
    base: Duration,
    max: Duration,
    failures: HashMap<K, u32>,
}

impl<K> ItemExponentialBackoff<K> {
    /// A back-off that starts at `base` and doubles up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        ItemExponentialBackoff {
            base,
            max,
            failures: HashMap::new(),
        }
    }

    /// The delay after `failures` earlier failures: `base · 2^failures`, at most `max`.
    fn delay(&self, failures: u32) -> Duration {
        2u32.checked_pow(failures)
            .and_then(|factor| self.base.checked_mul(factor))
            .map_or(self.max, |delay| delay.min(self.max))
    }
}

impl<K> Default for ItemExponentialBackoff<K> {
    /// client-go's defaults: 5 ms, doubling up to 1000 s.
    fn default() -> Self {
        ItemExponentialBackoff::new(Duration::from_millis(5), Duration::from_secs(1000))
    }
}

impl<K: Clone + Eq + Hash> RateLimiter<K> for ItemExponentialBackoff<K> {
    fn when(&mut self, key: &K, _now: Instant) -> Duration {
        let earlier = match self.failures.get_mut(key) {
            Some(failures) => {
                let earlier = *failures;
                *failures = earlier.saturating_add(1);
                earlier
            }
            None => {
                self.failures.insert(key.clone(), 1);
                0
            }
        };
        self.delay(earlier)
    }

    fn forget(&mut self, key: &K) {
        self.failures.remove(key);
    }

    fn num_requeues(&self, key: &K) -> u32 {
        self.failures.get(key).copied().unwrap_or(0)
    }
}

/// An overall token bucket: one token every `interval`, at most `burst` saved up; a retry that
/// finds no token waits until its token has been earned.
///
/// client-go's `BucketRateLimiter` (a `golang.org/x/time/rate` limiter, reserving one token per
/// retry). It ignores keys: it limits the rate of retries across all of them. The default earns
/// 10 tokens a second and saves up to 100: a burst of 100 retries goes at once, the 101st waits
/// 100 ms, the 102nd 200 ms, and so on. A bucket of `burst` 0 saves nothing up: every retry waits
/// one interval after the one before.
///
/// [`forget`](RateLimiter::forget) does nothing and [`num_requeues`](RateLimiter::num_requeues)
/// is always 0: the bucket remembers no key.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// use orchestra_core::runtime::rate_limit::{RateLimiter, TokenBucket};
/// use tokio::time::Instant;
///
/// let mut bucket = TokenBucket::per_second(10, 2);
/// let now = Instant::now();
/// assert_eq!(bucket.when(&"a", now), Duration::ZERO);
/// assert_eq!(bucket.when(&"b", now), Duration::ZERO);
/// assert_eq!(bucket.when(&"c", now), Duration::from_millis(100));
/// assert_eq!(bucket.when(&"d", now), Duration::from_millis(200));
/// ```
#[derive(Clone, Debug)]
pub struct TokenBucket {
    /// Time to earn one token, in nanoseconds.
    interval: u128,
    /// `interval · burst`: how much debt the bucket absorbs without delay.
    window: u128,
    /// Time (ns) until the bucket is full again, as of `last`: `interval · (burst − tokens)`.
    debt: u128,
    /// When the bucket was last used.
    last: Option<Instant>,
}

impl TokenBucket {
    /// A bucket that earns `qps` tokens a second and saves up to `burst`. A `qps` of 0 earns
    /// nothing: after the first `burst` retries every retry waits [`Duration::MAX`], which the work
    /// queue takes as never.
    pub fn per_second(qps: u32, burst: u32) -> Self {
        let interval = match qps {
            0 => Duration::MAX,
            qps => Duration::from_secs(1) / qps,
        };
        TokenBucket::with_interval(interval, burst)
    }

    /// A bucket that earns one token every `interval` and saves up to `burst`. An `interval` of
    /// zero never delays.
    pub fn with_interval(interval: Duration, burst: u32) -> Self {
        let interval = interval.as_nanos();
        TokenBucket {
            interval,
            window: interval.saturating_mul(u128::from(burst)),
            debt: 0,
            last: None,
        }
    }
}

impl Default for TokenBucket {
    /// client-go's defaults: 10 tokens a second, bursts of 100.
    fn default() -> Self {
        TokenBucket::per_second(10, 100)
    }
}

impl<K> RateLimiter<K> for TokenBucket {
    fn when(&mut self, _key: &K, now: Instant) -> Duration {
        match self.last {
            Some(last) if now > last => {
                let earned = now.duration_since(last).as_nanos();
                self.debt = self.debt.saturating_sub(earned);
                self.last = Some(now);
            }
            Some(_) => {}
            None => self.last = Some(now),
        }
        self.debt = self.debt.saturating_add(self.interval);
        let wait = self.debt.saturating_sub(self.window);
        u64::try_from(wait / 1_000_000_000)
            .map(|secs| Duration::new(secs, (wait % 1_000_000_000) as u32))
            .unwrap_or(Duration::MAX)
    }

    fn forget(&mut self, _key: &K) {}

    fn num_requeues(&self, _key: &K) -> u32 {
        0
    }
}

/// Two policies at once: a key waits for the longer of their delays.
///
/// client-go's `MaxOfRateLimiter`, for two limiters; nest it for more. Both limiters record every
/// failure, both forget, and [`num_requeues`](RateLimiter::num_requeues) is the larger of theirs.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// use orchestra_core::runtime::rate_limit::{ItemExponentialBackoff, MaxOf, RateLimiter, TokenBucket};
/// use tokio::time::Instant;
///
/// // A gentler limiter than the default: 1 s doubling to 5 min, and 1 retry a second overall.
/// let mut limiter = MaxOf::new(
///     ItemExponentialBackoff::new(Duration::from_secs(1), Duration::from_secs(300)),
///     TokenBucket::per_second(1, 1),
/// );
/// let now = Instant::now();
/// assert_eq!(limiter.when(&"a", now), Duration::from_secs(1));
/// // "b" has not failed before, but the bucket is empty for another 2 s.
/// assert_eq!(limiter.when(&"b", now), Duration::from_secs(1));
/// assert_eq!(limiter.when(&"c", now), Duration::from_secs(2));
/// ```
#[derive(Clone, Debug, Default)]
pub struct MaxOf<A, B> {
    first: A,
    second: B,
}

impl<A, B> MaxOf<A, B> {
    /// Both `first` and `second`, waiting for the longer delay.
    pub fn new(first: A, second: B) -> Self {
        MaxOf { first, second }
    }
}

impl<K, A: RateLimiter<K>, B: RateLimiter<K>> RateLimiter<K> for MaxOf<A, B> {
    fn when(&mut self, key: &K, now: Instant) -> Duration {
        let first = self.first.when(key, now);
        let second = self.second.when(key, now);
        first.max(second)
    }

    fn forget(&mut self, key: &K) {
        self.first.forget(key);
        self.second.forget(key);
    }

    fn num_requeues(&self, key: &K) -> u32 {
        self.first
            .num_requeues(key)
            .max(self.second.num_requeues(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn exponential_backoff_doubles_from_5ms() {
        let mut backoff = ItemExponentialBackoff::default();
        let now = Instant::now();
        let delays: Vec<Duration> = (0..8).map(|_| backoff.when(&"k", now)).collect();
        assert_eq!(
            delays,
            [
                ms(5),
                ms(10),
                ms(20),
                ms(40),
                ms(80),
                ms(160),
                ms(320),
                ms(640)
            ]
        );
        assert_eq!(backoff.num_requeues(&"k"), 8);
    }

    #[test]
    fn exponential_backoff_is_capped_at_1000s() {
        let mut backoff = ItemExponentialBackoff::default();
        let now = Instant::now();
        let delays: Vec<Duration> = (0..200).map(|_| backoff.when(&"k", now)).collect();
        // 5 ms · 2^17 = 655.36 s is the last step under the cap; 5 ms · 2^18 = 1310.72 s is over.
        assert_eq!(delays[17], ms(655_360));
        assert_eq!(delays[18], Duration::from_secs(1000));
        // Far past the point where 2^n overflows, the delay stays at the cap.
        assert!(delays[18..].iter().all(|d| *d == Duration::from_secs(1000)));
    }

    #[test]
    fn exponential_backoff_counter_saturates() {
        let mut backoff = ItemExponentialBackoff::default();
        backoff.failures.insert("k", u32::MAX - 1);
        let now = Instant::now();
        assert_eq!(backoff.when(&"k", now), Duration::from_secs(1000));
        assert_eq!(backoff.when(&"k", now), Duration::from_secs(1000));
        assert_eq!(backoff.num_requeues(&"k"), u32::MAX);
    }

    #[test]
    fn exponential_backoff_is_per_key() {
        let mut backoff = ItemExponentialBackoff::default();
        let now = Instant::now();
        assert_eq!(backoff.when(&"a", now), ms(5));
        assert_eq!(backoff.when(&"a", now), ms(10));
        assert_eq!(backoff.when(&"b", now), ms(5));
        assert_eq!(backoff.when(&"a", now), ms(20));
        assert_eq!(backoff.num_requeues(&"a"), 3);
        assert_eq!(backoff.num_requeues(&"b"), 1);
        assert_eq!(backoff.num_requeues(&"c"), 0);
    }

    #[test]
    fn forget_resets_backoff() {
        let mut backoff = ItemExponentialBackoff::default();
        let now = Instant::now();
        for _ in 0..5 {
            backoff.when(&"k", now);
        }
        backoff.forget(&"k");
        assert_eq!(backoff.num_requeues(&"k"), 0);
        assert_eq!(backoff.when(&"k", now), ms(5));
        assert!(backoff.failures.len() == 1);
        backoff.forget(&"k");
        assert!(
            backoff.failures.is_empty(),
            "a forgotten key is not remembered"
        );
    }

    #[test]
    fn token_bucket_allows_a_burst_then_limits() {
        let mut bucket = TokenBucket::default();
        let now = Instant::now();
        for i in 0..100 {
            assert_eq!(
                bucket.when(&i, now),
                Duration::ZERO,
                "retry {i} is in the burst"
            );
        }
        assert_eq!(bucket.when(&100, now), ms(100));
        assert_eq!(bucket.when(&101, now), ms(200));
        assert_eq!(bucket.when(&102, now), ms(300));
    }

    #[test]
    fn token_bucket_refills_over_time() {
        let mut bucket = TokenBucket::per_second(10, 100);
        let start = Instant::now();
        for i in 0..100 {
            bucket.when(&i, start);
        }
        // One second later ten tokens are back.
        let later = start + Duration::from_secs(1);
        for i in 0..10 {
            assert_eq!(bucket.when(&i, later), Duration::ZERO);
        }
        assert_eq!(bucket.when(&10, later), ms(100));
        // Never more than the burst is saved up, however long the bucket idles.
        let much_later = later + Duration::from_secs(3600);
        for i in 0..100 {
            assert_eq!(bucket.when(&i, much_later), Duration::ZERO);
        }
        assert_eq!(bucket.when(&100, much_later), ms(100));
    }

    #[test]
    fn token_bucket_ignores_time_going_backwards() {
        let mut bucket = TokenBucket::per_second(10, 1);
        let now = Instant::now();
        assert_eq!(bucket.when(&0, now + ms(500)), Duration::ZERO);
        assert_eq!(bucket.when(&1, now), ms(100));
    }

    #[test]
    fn token_bucket_edge_rates() {
        let now = Instant::now();
        let mut no_burst = TokenBucket::per_second(10, 0);
        assert_eq!(no_burst.when(&0, now), ms(100));
        assert_eq!(no_burst.when(&1, now), ms(200));

        let mut never = TokenBucket::per_second(0, 2);
        assert_eq!(never.when(&0, now), Duration::ZERO);
        assert_eq!(never.when(&1, now), Duration::ZERO);
        assert_eq!(never.when(&2, now), Duration::MAX);
        assert_eq!(
            never.when(&3, now + Duration::from_secs(3600)),
            Duration::MAX
        );

        let mut unlimited = TokenBucket::with_interval(Duration::ZERO, 0);
        for i in 0..1000 {
            assert_eq!(unlimited.when(&i, now), Duration::ZERO);
        }
    }

    #[test]
    fn default_limiter_takes_the_longer_delay() {
        let mut limiter = DefaultRateLimiter::default();
        let now = Instant::now();
        // 100 distinct keys use up the burst, each at its first 5 ms back-off.
        for i in 0..100 {
            assert_eq!(limiter.when(&i, now), ms(5));
        }
        // Then the bucket's delay dominates a key's short back-off...
        assert_eq!(limiter.when(&0, now), ms(100));
        // ...and a long back-off dominates the bucket.
        for _ in 0..10 {
            limiter.when(&1, now);
        }
        assert_eq!(limiter.num_requeues(&1), 11);
        assert_eq!(limiter.when(&1, now), ms(5 << 11));
        limiter.forget(&1);
        assert_eq!(limiter.num_requeues(&1), 0);
    }
}
