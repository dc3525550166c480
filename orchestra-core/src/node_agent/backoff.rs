//! The crash-loop back-off: how long the agent waits before restarting a container that keeps
//! failing (kubelet's `CrashLoopBackOff`: 10 s, doubling to 5 minutes, forgotten after the
//! container has been left alone for twice the maximum).
//!
//! As kubelet: the first restart is at once; each later one waits, counted from when the
//! container last ended, the current back-off, which doubles with every restart up to the
//! maximum.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use orchestra_core::node_agent::backoff::{BackOffConfig, CrashLoopBackOff};
//! use tokio::time::Instant;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
//! let mut backoff = CrashLoopBackOff::new(BackOffConfig::default());
//! let ended = Instant::now();
//! assert_eq!(backoff.remaining("web", ended, Instant::now()), None); // restart at once
//! backoff.restarted("web", Instant::now());
//! let ended = Instant::now();
//! assert_eq!(backoff.remaining("web", ended, Instant::now()), Some(Duration::from_secs(10)));
//! # });
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

/// The back-off's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackOffConfig {
    /// The first wait (Kubernetes: 10 s).
    pub initial: Duration,
    /// The longest wait (Kubernetes: 5 minutes).
    pub max: Duration,
}

impl Default for BackOffConfig {
    fn default() -> BackOffConfig {
        BackOffConfig {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    backoff: Duration,
    last_update: Instant,
}

/// The back-off of every container the agent restarts, by key (the pod's uid and the
/// container's name).
#[derive(Clone, Debug)]
pub struct CrashLoopBackOff {
    config: BackOffConfig,
    entries: BTreeMap<String, Entry>,
}

impl CrashLoopBackOff {
    /// No container backed off yet.
    pub fn new(config: BackOffConfig) -> CrashLoopBackOff {
        CrashLoopBackOff {
            config,
            entries: BTreeMap::new(),
        }
    }

    /// Whether the entry has been left alone long enough to be forgotten.
    fn expired(&self, entry: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(entry.last_update) > self.config.max.saturating_mul(2)
    }

    /// How much longer the container `key`, which ended at `ended`, must wait before its
    /// restart; `None` when it may restart now.
    pub fn remaining(&self, key: &str, ended: Instant, now: Instant) -> Option<Duration> {
        let entry = self.entries.get(key)?;
        if self.expired(entry, now) {
            return None;
        }
        let waited = now.saturating_duration_since(ended);
        (waited < entry.backoff).then(|| entry.backoff - waited)
    }

    /// The current back-off of `key` (what the `CrashLoopBackOff` message reports), if any.
    pub fn current(&self, key: &str, now: Instant) -> Option<Duration> {
        self.entries
            .get(key)
            .filter(|entry| !self.expired(entry, now))
            .map(|entry| entry.backoff)
    }

    /// Records a restart of `key` at `now`: the next one waits twice as long (up to the maximum),
    /// or the initial back-off after a long quiet spell.
    pub fn restarted(&mut self, key: &str, now: Instant) {
        let backoff = match self.entries.get(key) {
            Some(entry) if !self.expired(entry, now) => {
                entry.backoff.saturating_mul(2).min(self.config.max)
            }
            _ => self.config.initial.min(self.config.max),
        };
        self.entries.insert(
            key.to_owned(),
            Entry {
                backoff,
                last_update: now,
            },
        );
    }

    /// Forgets `key` (its pod is gone).
    pub fn forget(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Moves the entries whose keys start with `prefix` to a back-off of their own, with the
    /// same settings.
    pub fn split_off(&mut self, prefix: &str) -> CrashLoopBackOff {
        let mut split = CrashLoopBackOff::new(self.config);
        let keys: Vec<String> = self
            .entries
            .range(prefix.to_owned()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            if let Some(entry) = self.entries.remove(&key) {
                split.entries.insert(key, entry);
            }
        }
        split
    }

    /// Forgets every entry left alone for twice the maximum.
    pub fn collect_garbage(&mut self, now: Instant) {
        let limit = self.config.max.saturating_mul(2);
        self.entries
            .retain(|_, entry| now.saturating_duration_since(entry.last_update) <= limit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_double_up_to_the_maximum_counted_from_the_end() {
        let mut backoff = CrashLoopBackOff::new(BackOffConfig::default());
        let mut waits = Vec::new();
        for _ in 0..8 {
            let ended = Instant::now();
            if let Some(wait) = backoff.remaining("web", ended, Instant::now()) {
                waits.push(wait.as_secs());
                tokio::time::sleep(wait).await;
            } else {
                waits.push(0);
            }
            assert_eq!(backoff.remaining("web", ended, Instant::now()), None);
            backoff.restarted("web", Instant::now());
        }
        assert_eq!(waits, [0, 10, 20, 40, 80, 160, 300, 300]);
        // Time spent running counts towards the wait.
        let ended = Instant::now();
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert_eq!(
            backoff.remaining("web", ended, Instant::now()),
            Some(Duration::from_secs(200))
        );
        assert_eq!(
            backoff.current("web", Instant::now()),
            Some(Duration::from_secs(300))
        );
        assert_eq!(backoff.remaining("other", ended, Instant::now()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn is_forgotten_after_a_long_quiet_spell() {
        let config = BackOffConfig {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(4),
        };
        let mut backoff = CrashLoopBackOff::new(config);
        for _ in 0..4 {
            backoff.restarted("web", Instant::now());
        }
        assert_eq!(
            backoff.current("web", Instant::now()),
            Some(Duration::from_secs(4))
        );
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert_eq!(backoff.current("web", Instant::now()), None);
        backoff.restarted("web", Instant::now());
        assert_eq!(
            backoff.current("web", Instant::now()),
            Some(Duration::from_secs(1))
        );
        tokio::time::sleep(Duration::from_secs(9)).await;
        backoff.collect_garbage(Instant::now());
        assert!(backoff.entries.is_empty());
        backoff.restarted("web", Instant::now());
        backoff.forget("web");
        assert_eq!(backoff.current("web", Instant::now()), None);
    }
}
