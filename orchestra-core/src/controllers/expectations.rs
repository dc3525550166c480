//! Expectations: what a controller has asked the API for and not yet seen in its cache
//! (Kubernetes' `ControllerExpectations` and `UIDTrackingControllerExpectations`).
//!
//! A controller works from a cache that lags the store. After it creates five pods, the next
//! sync may run before the watch has delivered them, see five pods too few, and create five
//! more. Expectations close that window: before creating `n` pods the controller
//! [expects `n` creations](ControllerExpectations::expect_creations), before deleting pods it
//! [expects their deletions](ControllerExpectations::expect_deletions) by key, and its watch
//! handlers [lower](ControllerExpectations::creation_observed) the expectations as the events
//! arrive (after the cache has applied them). A sync whose expectations are not
//! [satisfied](ControllerExpectations::satisfied) must not create or delete: the cache is not
//! yet the world the last sync left behind. A create or delete that fails is lowered at once,
//! since no event will come for it.
//!
//! Deletions are tracked by key, so that a pod seen twice on its way out (first with a
//! `deletionTimestamp`, then deleted) counts once. Creations are counted: their names are not
//! known before the API generates them.
//!
//! Expectations expire: after a time to live ([`DEFAULT_TTL`], five minutes as in Kubernetes,
//! measured with [`tokio::time`]) a controller that never saw its events goes on anyway, so that
//! a lost event cannot stall it forever.
//!
//! # Examples
//!
//! ```
//! use orchestra_core::controllers::expectations::ControllerExpectations;
//! use orchestra_core::runtime::reflector::ObjectRef;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
//! let expectations = ControllerExpectations::new();
//! let web = ObjectRef::new("web").within("default");
//! assert!(expectations.satisfied(&web), "nothing asked for yet");
//!
//! expectations.expect_creations(&web, 2);
//! expectations.creation_observed(&web);
//! assert!(!expectations.satisfied(&web));
//! expectations.creation_observed(&web);
//! assert!(expectations.satisfied(&web));
//!
//! let pod = ObjectRef::new("web-x7k2p").within("default");
//! expectations.expect_deletions(&web, [pod.clone()]);
//! expectations.deletion_observed(&web, &pod);
//! expectations.deletion_observed(&web, &pod); // seen again: counts once
//! assert!(expectations.satisfied(&web));
//! # });
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::runtime::reflector::ObjectRef;

/// How long expectations wait for their events before they count as satisfied anyway
/// (Kubernetes' `ExpectationsTimeout`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);

/// What one controller waits for.
#[derive(Debug)]
struct Record {
    /// Creations not yet observed.
    creations: usize,
    /// The keys of the deletions not yet observed.
    deletions: BTreeSet<ObjectRef>,
    /// When the expectations were set.
    since: Instant,
}

/// What one controller still waits for: see [`ControllerExpectations::pending`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    /// Creations not yet observed.
    pub creations: usize,
    /// Deletions not yet observed, by object key.
    pub deletions: usize,
}

/// The expectations of many controllers (one object of a controller kind each), keyed by
/// the controller's [`ObjectRef`]: see the [module documentation](self).
///
/// All methods take `&self` and are safe to call from the watch handlers and the workers at
/// once; none blocks for longer than a map update.
pub struct ControllerExpectations {
    ttl: Duration,
    records: Mutex<BTreeMap<ObjectRef, Record>>,
}

impl fmt::Debug for ControllerExpectations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControllerExpectations")
            .field("ttl", &self.ttl)
            .field("controllers", &self.lock().len())
            .finish()
    }
}

impl Default for ControllerExpectations {
    fn default() -> Self {
        ControllerExpectations::new()
    }
}

impl ControllerExpectations {
    /// No expectations, expiring after [`DEFAULT_TTL`].
    pub fn new() -> ControllerExpectations {
        ControllerExpectations::with_ttl(DEFAULT_TTL)
    }

    /// No expectations, expiring after `ttl`.
    pub fn with_ttl(ttl: Duration) -> ControllerExpectations {
        ControllerExpectations {
            ttl,
            records: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<ObjectRef, Record>> {
        // Nothing panics with the lock held; should it, the map is still consistent.
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `controller` may act on its cache: it expects nothing more, or its expectations
    /// have expired, or it never set any.
    pub fn satisfied(&self, controller: &ObjectRef) -> bool {
        match self.lock().get(controller) {
            None => true,
            Some(record) => {
                (record.creations == 0 && record.deletions.is_empty())
                    || record.since.elapsed() > self.ttl
            }
        }
    }

    /// What `controller` still waits for, if it set expectations (expired or not).
    pub fn pending(&self, controller: &ObjectRef) -> Option<Pending> {
        self.lock().get(controller).map(|record| Pending {
            creations: record.creations,
            deletions: record.deletions.len(),
        })
    }

    /// `controller` is about to create `count` objects: it expects that many creations, and no
    /// deletions. Replaces what it expected before.
    pub fn expect_creations(&self, controller: &ObjectRef, count: usize) {
        self.lock().insert(
            controller.clone(),
            Record {
                creations: count,
                deletions: BTreeSet::new(),
                since: Instant::now(),
            },
        );
    }

    /// `controller` is about to delete the objects `keys`: it expects their deletions, and no
    /// creations. Replaces what it expected before.
    pub fn expect_deletions(
        &self,
        controller: &ObjectRef,
        keys: impl IntoIterator<Item = ObjectRef>,
    ) {
        self.lock().insert(
            controller.clone(),
            Record {
                creations: 0,
                deletions: keys.into_iter().collect(),
                since: Instant::now(),
            },
        );
    }

    /// One creation of `controller`'s was observed (or failed, so that none will be).
    pub fn creation_observed(&self, controller: &ObjectRef) {
        self.creations_observed(controller, 1);
    }

    /// `count` creations of `controller`'s were observed, or will never be (skipped or failed).
    pub fn creations_observed(&self, controller: &ObjectRef, count: usize) {
        if let Some(record) = self.lock().get_mut(controller) {
            record.creations = record.creations.saturating_sub(count);
        }
    }

    /// The deletion of the object `key` was observed (it is terminating or gone), or failed.
    /// Counts only if `controller` expected it, and only once.
    pub fn deletion_observed(&self, controller: &ObjectRef, key: &ObjectRef) {
        if let Some(record) = self.lock().get_mut(controller) {
            record.deletions.remove(key);
        }
    }

    /// Forgets `controller`'s expectations (it was deleted, or replaced by an object of the
    /// same name): a new one starts clean.
    pub fn forget(&self, controller: &ObjectRef) {
        self.lock().remove(controller);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectRef {
        ObjectRef::new(name).within("default")
    }

    #[tokio::test(start_paused = true)]
    async fn creations_are_counted_down() {
        let expectations = ControllerExpectations::new();
        let web = key("web");
        expectations.expect_creations(&web, 3);
        assert_eq!(
            expectations.pending(&web),
            Some(Pending {
                creations: 3,
                deletions: 0
            })
        );
        expectations.creation_observed(&web);
        expectations.creations_observed(&web, 1);
        assert!(!expectations.satisfied(&web));
        expectations.creation_observed(&web);
        assert!(expectations.satisfied(&web));
        // Lowering further does not go below zero, nor touch other controllers.
        expectations.creation_observed(&web);
        expectations.creation_observed(&key("db"));
        assert_eq!(expectations.pending(&web).map(|p| p.creations), Some(0));
        assert_eq!(expectations.pending(&key("db")), None);
    }

    #[tokio::test(start_paused = true)]
    async fn deletions_count_once_and_only_when_expected() {
        let expectations = ControllerExpectations::new();
        let web = key("web");
        expectations.expect_deletions(&web, [key("a"), key("b")]);
        expectations.deletion_observed(&web, &key("a"));
        expectations.deletion_observed(&web, &key("a"));
        expectations.deletion_observed(&web, &key("unrelated"));
        assert!(!expectations.satisfied(&web));
        assert_eq!(expectations.pending(&web).map(|p| p.deletions), Some(1));
        expectations.deletion_observed(&web, &key("b"));
        assert!(expectations.satisfied(&web));
    }

    #[tokio::test(start_paused = true)]
    async fn new_expectations_replace_old_ones() {
        let expectations = ControllerExpectations::new();
        let web = key("web");
        expectations.expect_deletions(&web, [key("a")]);
        expectations.expect_creations(&web, 1);
        assert_eq!(
            expectations.pending(&web),
            Some(Pending {
                creations: 1,
                deletions: 0
            })
        );
        expectations.forget(&web);
        assert!(expectations.satisfied(&web));
        assert_eq!(expectations.pending(&web), None);
    }

    #[tokio::test(start_paused = true)]
    async fn expectations_expire_after_their_ttl() {
        let expectations = ControllerExpectations::with_ttl(Duration::from_secs(60));
        let web = key("web");
        expectations.expect_creations(&web, 1);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(!expectations.satisfied(&web));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(expectations.satisfied(&web));
        // Lowering does not renew them.
        expectations.expect_creations(&web, 2);
        tokio::time::advance(Duration::from_secs(59)).await;
        expectations.creation_observed(&web);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(expectations.satisfied(&web));
    }

    #[test]
    fn default_ttl_is_five_minutes() {
        assert_eq!(DEFAULT_TTL, Duration::from_secs(300));
        assert_eq!(ControllerExpectations::default().ttl, DEFAULT_TTL);
    }
}
