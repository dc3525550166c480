//! Wall-clock time for timestamps (`creationTimestamp`, `deletionTimestamp`, lease renewals),
//! behind a trait so that tests control it.
//!
//! Durations and deadlines are measured with [`tokio::time`] everywhere in Orchestra, so a test
//! that pauses tokio's time controls them. Timestamps need a wall clock as well; [`TokioClock`]
//! derives one from tokio's time (a fixed start plus the tokio time elapsed since), so that a test
//! with paused time gets deterministic timestamps too. [`SystemClock`] reads the system clock.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use orchestra_core::clock::{Clock, TokioClock};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
//! let clock = TokioClock::starting_at("2026-01-01T00:00:00Z".parse().unwrap());
//! tokio::time::sleep(Duration::from_secs(90)).await;
//! assert_eq!(clock.now().to_string(), "2026-01-01T00:01:30Z");
//! # });
//! ```

use std::fmt;

use jiff::{SignedDuration, Timestamp};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that starts at a given time and advances with tokio's time (so paused tokio time
/// pauses it, and advancing tokio's time advances it).
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    start: Timestamp,
    started: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `start` now.
    pub fn starting_at(start: Timestamp) -> TokioClock {
        TokioClock {
            start,
            started: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let elapsed =
            SignedDuration::try_from(self.started.elapsed()).unwrap_or(SignedDuration::MAX);
        self.start.saturating_add(elapsed).unwrap_or(self.start)
    }
}
