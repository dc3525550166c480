//! The ReplicaSet controller: exactly `replicas` pods for each ReplicaSet and each
//! ReplicationController (Kubernetes' `pkg/controller/replicaset`, `ReplicaSetController`, and
//! `pkg/controller/replication`, the same controller over ReplicationControllers).
//!
//! [`ReplicaSetController`] keeps, for each ReplicaSet, `spec.replicas` (1 when unset) **active**
//! pods (neither finished nor being deleted, [`pods::is_active`]) that match its selector and name
//! it as their controller. Each sync of a ReplicaSet:
//!
//! 1. **claims** the active pods of its namespace, as Kubernetes' `ControllerRefManager`: the
//!    pods it controls that still match its selector are its own; those that stopped matching
//!    are released (their owner reference removed); matching pods without a controller are
//!    adopted (an owner reference with `controller` and `blockOwnerDeletion` added), but only
//!    after an uncached read of the ReplicaSet shows that it still exists, is not being deleted
//!    and has the same uid. A ReplicaSet being deleted adopts nothing, and terminating pods are
//!    never adopted;
//! 2. **creates or deletes** pods, unless it waits for the effects of its last sync (see
//!    *expectations* below): too few pods, and it creates the difference (at most
//!    [`burst`](ReplicaSetController::burst) per sync) from its template in slow-start batches
//!    of 1, 2, 4, 8, … pods, created concurrently, stopping after a batch in which a creation
//!    failed; too many, and it deletes the surplus (at most `burst`), the pods ranked by
//!    [`pods::sort_for_deletion`] (unscheduled, pending, not ready, doubled up on a node
//!    with the pods of its sibling ReplicaSets, newer first), concurrently;
//! 3. writes its **status** (through the status subresource, only when it changed):
//!    `replicas`, `fullyLabeledReplicas` (pods that carry all the template's labels),
//!    `readyReplicas`, `availableReplicas` (ready for `minReadySeconds`), `observedGeneration`,
//!    and a `ReplicaFailure` condition while creations or deletions fail. When some ready pods
//!    are not available yet, it looks again when the first of them becomes available.
//!
//! It records Events on the object, as Kubernetes' `PodControl` does (source
//! `replicaset-controller`, or `replication-controller` for ReplicationControllers):
//! `Normal SuccessfulCreate "Created pod: web-5d9c7b8f4-abcde"`, `Normal SuccessfulDelete
//! "Deleted pod: web-5d9c7b8f4-abcde"`, and on failure `Warning FailedCreate "Error creating:
//! <error>"` (not when the namespace is terminating) or `Warning FailedDelete "Error deleting:
//! <error>"` (not when the pod is already gone).
//!
//! A ReplicationController is handled the same way
//! ([`ReplicaSetController::replication_controllers`]): its selector is a map of labels (the
//! template's labels when empty), its template is optional (without one it cannot create).
//! An object whose selector is empty, invalid, or does not match its template's labels is left
//! alone (the sync fails with [`ReplicaSetError::InvalidSelector`] or
//! [`ReplicaSetError::SelectorMismatch`]; the API refuses such objects anyway).
//!
//! # Expectations: never more than `replicas`
//!
//! The controller works from a cache of pods that lags the store, and whose watch may deliver
//! events late, twice, out of order, or lose them in a re-list. Before it creates `n` pods it
//! [expects `n` creations](super::expectations::ControllerExpectations); before it deletes pods
//! it expects their deletions by key; a ReplicaSet whose expectations are not satisfied is not
//! scaled (its status is still written). What is counted is robust to the faults of the watch:
//!
//! - a creation is tracked **by key** as soon as the create call returns the generated name, and
//!   counts as observed once the cache holds that pod (or its deletion was seen), whatever the
//!   number of events that say so: a duplicated event counts once;
//! - a deletion counts as observed when the cache no longer holds the pod, or holds it
//!   terminating;
//! - pending keys are checked against the cache after every re-list (which delivers no `Delete`
//!   for the pods that vanished meanwhile) and at every sync, so that a lost event does not
//!   stall a ReplicaSet; a creation still unseen after ten seconds is looked up in the API
//!   (the pod may have been created and deleted while the watch was down);
//! - a create or delete that fails lowers the expectations at once, as do the creations
//!   skipped after a failed batch.
//!
//! Expectations live in memory: a restarted controller starts with none, which is right, since
//! it acts only once its caches hold a fresh list.
//!
//! # Differences from Kubernetes
//!
//! - Creations are tracked by key once their create call returns, not only counted; and
//!   pending keys are re-checked against the cache (level-triggered) rather than only lowered by
//!   events. Stale expectations are re-checked after ten seconds, not only expired after
//!   five minutes.
//! - Adoption and release use JSON patches guarded by `test` operations on the pod's uid and
//!   owner references, instead of strategic-merge patches.
//! - `terminatingReplicas` (an alpha field of Kubernetes 1.33) is not written.
//! - A creation refused because the namespace is terminating stops the sync (and is not an
//!   error), where Kubernetes goes on with its batches.
//! - The creations of a batch run as tasks of a `JoinSet` that the sync owns and joins (so that
//!   a multi-threaded runtime runs them in parallel); if the controller stops, dropping the set
//!   aborts them.
//! - An object with an invalid selector fails its sync with a typed error (retried with
//!   back-off) rather than being dropped from the queue.
//!
//! # Cost
//!
//! A sync makes one pass over the cached pods; the watch handler does a map lookup per pod
//! event (and, for pods without a controller, a selector match per object of the namespace).
//! On [`MemoryStore`](crate::store::MemoryStore), in release mode on a current-thread runtime,
//! 10,000 replicas are created in about 1.1 s, of which about 0.6 s is the API's own cost of
//! 10,000 creations (about 0.8 s in all on a multi-threaded runtime).
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//!
//! use orchestra_core::api::{Api, Client, ListParams, PostParams};
//! use orchestra_core::controllers::replica_set::ReplicaSetController;
//! use orchestra_core::k8s::api::apps::v1::ReplicaSet;
//! use orchestra_core::k8s::api::core::v1::Pod;
//! use orchestra_core::store::MemoryStore;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
//! let client = Client::new(MemoryStore::new());
//! client.bootstrap().await?;
//! let web: ReplicaSet = serde_json::from_value(serde_json::json!({
//!     "metadata": {"name": "web", "namespace": "default"},
//!     "spec": {
//!         "replicas": 3,
//!         "selector": {"matchLabels": {"app": "web"}},
//!         "template": {
//!             "metadata": {"labels": {"app": "web"}},
//!             "spec": {"containers": [{"name": "web", "image": "nginx"}]},
//!         },
//!     },
//! }))
//! .unwrap();
//! let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
//! replica_sets.create(&PostParams::default(), &web).await?;
//!
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let running = tokio::spawn(ReplicaSetController::new(client.clone()).run(async move {
//!     let _ = stopped.await;
//! }));
//! tokio::time::sleep(Duration::from_secs(1)).await;
//! let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
//! assert_eq!(pods.list(&ListParams::default().labels("app=web")).await?.items.len(), 3);
//! let status = replica_sets.get("web").await?.status.unwrap();
//! assert_eq!(status.replicas, 3);
//! let _ = stop.send(());
//! running.await.unwrap();
//! # Ok::<(), orchestra_core::status::StatusError>(())
//! # }).unwrap();
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{
    Pod, PodTemplateSpec, ReplicationController, ReplicationControllerCondition,
    ReplicationControllerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Preconditions, Time};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::time::Instant;

use super::expectations::ControllerExpectations;
use super::pods;
use crate::api::{Api, Client, DeleteParams, PatchParams, PostParams};
use crate::patch::PatchType;
use crate::resource::{Resource, TypeMeta};
use crate::runtime::Action;
use crate::runtime::controller::Controller;
use crate::runtime::events::{EventRecorder, EventType};
use crate::runtime::reflector::{ObjectRef, Reader};
use crate::runtime::watcher::{WatcherConfig, WatcherEvent};
use crate::selector::Selector;
use crate::status::{StatusError, StatusReason};

/// How many objects are synced at once by default (kube-controller-manager's
/// `--concurrent-replicaset-syncs`).
pub const DEFAULT_CONCURRENCY: usize = 5;

/// How many pods one sync creates or deletes at most by default (Kubernetes' `BurstReplicas`).
pub const DEFAULT_BURST: usize = 500;

/// The type of the condition set while creations or deletions fail.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// The component the Events about ReplicaSets name as their source.
pub const REPLICA_SET_COMPONENT: &str = "replicaset-controller";
/// The component the Events about ReplicationControllers name as their source.
pub const REPLICATION_CONTROLLER_COMPONENT: &str = "replication-controller";
/// Event reason: a pod was created.
pub const SUCCESSFUL_CREATE: &str = "SuccessfulCreate";
/// Event reason (`Warning`): a pod could not be created.
pub const FAILED_CREATE: &str = "FailedCreate";
/// Event reason: a pod was deleted.
pub const SUCCESSFUL_DELETE: &str = "SuccessfulDelete";
/// Event reason (`Warning`): a pod could not be deleted.
pub const FAILED_DELETE: &str = "FailedDelete";

/// After how long unseen creations are looked up in the API.
const STALE_EXPECTATIONS: Duration = Duration::from_secs(10);

/// A sync of a ReplicaSet or ReplicationController failed (it is retried with back-off).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaSetError {
    /// The selector is empty or invalid: nothing is done for the object.
    #[error("{kind} {object} has an invalid selector: {reason}")]
    InvalidSelector {
        /// `ReplicaSet` or `ReplicationController`.
        kind: String,
        /// The object.
        object: ObjectRef,
        /// What is wrong with it.
        reason: String,
    },
    /// The selector does not match the template's labels: nothing is done for the object.
    #[error("{kind} {object}: the selector does not match the template's labels")]
    SelectorMismatch {
        /// `ReplicaSet` or `ReplicationController`.
        kind: String,
        /// The object.
        object: ObjectRef,
    },
    /// Pods are missing but the object has no template to make them from.
    #[error("{kind} {object} has no pod template")]
    NoTemplate {
        /// `ReplicaSet` or `ReplicationController`.
        kind: String,
        /// The object.
        object: ObjectRef,
    },
    /// Creating a pod failed.
    #[error("{kind} {object}: cannot create pods: {source}")]
    Create {
        /// `ReplicaSet` or `ReplicationController`.
        kind: String,
        /// The object.
        object: ObjectRef,
        /// The API's answer.
        #[source]
        source: StatusError,
    },
    /// Deleting a pod failed.
    #[error("{kind} {object}: cannot delete pod {pod}: {source}")]
    Delete {
        /// `ReplicaSet` or `ReplicationController`.
        kind: String,
        /// The object.
        object: ObjectRef,
        /// The pod's name.
        pod: String,
        /// The API's answer.
        #[source]
        source: StatusError,
    },
    /// Adopting or releasing a pod failed.
    #[error("{kind} {object}: cannot {action} pod {pod}: {source}")]
    Claim {
        /// `ReplicaSet` or `ReplicationController`.
        kind: String,
        /// The object.
        object: ObjectRef,
        /// `adopt` or `release`.
        action: &'static str,
        /// The pod's name.
        pod: String,
        /// The API's answer.
        #[source]
        source: StatusError,
    },
    /// Reading the object (before adopting) or writing its status failed.
    #[error("{kind} {object}: cannot {action}: {source}")]
    Api {
        /// `ReplicaSet` or `ReplicationController`.
        kind: String,
        /// The object.
        object: ObjectRef,
        /// What was attempted.
        action: &'static str,
        /// The API's answer.
        #[source]
        source: StatusError,
    },
}

/// Which kind a [`ReplicaSetController`] manages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Managed {
    ReplicaSets,
    ReplicationControllers,
}

/// Keeps `replicas` pods for each ReplicaSet (or ReplicationController): see the
/// [module documentation](self).
#[derive(Clone, Debug)]
pub struct ReplicaSetController {
    client: Client,
    managed: Managed,
    concurrency: usize,
    burst: usize,
    watcher_config: WatcherConfig,
}

impl ReplicaSetController {
    /// The controller of the ReplicaSets (`apps/v1`) `client` serves.
    pub fn new(client: Client) -> ReplicaSetController {
        ReplicaSetController {
            client,
            managed: Managed::ReplicaSets,
            concurrency: DEFAULT_CONCURRENCY,
            burst: DEFAULT_BURST,
            watcher_config: WatcherConfig::default(),
        }
    }

    /// The controller of the ReplicationControllers (`v1`) `client` serves (Kubernetes'
    /// ReplicationManager): the same logic over the older kind.
    pub fn replication_controllers(client: Client) -> ReplicaSetController {
        ReplicaSetController {
            managed: Managed::ReplicationControllers,
            ..ReplicaSetController::new(client)
        }
    }

    /// How many objects are synced at once at most ([`DEFAULT_CONCURRENCY`] by default).
    #[must_use]
    pub fn concurrency(mut self, concurrency: usize) -> ReplicaSetController {
        self.concurrency = concurrency.max(1);
        self
    }

    /// How many pods one sync creates or deletes at most ([`DEFAULT_BURST`] by default).
    #[must_use]
    pub fn burst(mut self, burst: usize) -> ReplicaSetController {
        self.burst = burst.max(1);
        self
    }

    /// How the controller's watches read (of the managed kind and of pods).
    #[must_use]
    pub fn watcher_config(mut self, config: WatcherConfig) -> ReplicaSetController {
        self.watcher_config = config;
        self
    }

    /// Runs the controller until `shutdown` resolves (then returns once the syncs in flight are
    /// done).
    pub async fn run<S>(self, shutdown: S)
    where
        S: Future<Output = ()>,
    {
        match self.managed {
            Managed::ReplicaSets => {
                run_kind::<ReplicaSet, S>(self, REPLICA_SET_COMPONENT, shutdown).await;
            }
            Managed::ReplicationControllers => {
                run_kind::<ReplicationController, S>(
                    self,
                    REPLICATION_CONTROLLER_COMPONENT,
                    shutdown,
                )
                .await;
            }
        }
    }
}

/// The status fields both kinds share.
#[derive(Clone, Debug, Default, PartialEq)]
struct ReplicaStatus {
    replicas: i32,
    fully_labeled: i32,
    ready: i32,
    available: i32,
    observed_generation: Option<i64>,
    conditions: Vec<Condition>,
}

/// A condition of either kind.
#[derive(Clone, Debug, PartialEq)]
struct Condition {
    type_: String,
    status: String,
    reason: Option<String>,
    message: Option<String>,
    last_transition_time: Option<Time>,
}

/// What the controller needs of the kinds it manages.
trait ReplicaOwner:
    Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The selector of the pods, or why there is none.
    fn selector(&self) -> Result<Selector, String>;
    fn replicas(&self) -> i32;
    fn template(&self) -> Option<&PodTemplateSpec>;
    fn min_ready_seconds(&self) -> i32;
    fn replica_status(&self) -> ReplicaStatus;
    fn set_replica_status(&mut self, status: ReplicaStatus);
}

fn template_labels(template: Option<&PodTemplateSpec>) -> BTreeMap<String, String> {
    template
        .and_then(|template| template.metadata.as_ref())
        .and_then(|meta| meta.labels.clone())
        .unwrap_or_default()
}

fn usable(selector: Selector) -> Result<Selector, String> {
    if selector.is_nothing() || selector.is_empty() {
        Err("the selector selects nothing or everything".to_owned())
    } else {
        Ok(selector)
    }
}

/// The [`ReplicaOwner`] methods whose code is the same for ReplicaSets and
/// ReplicationControllers: their specs and statuses are different types with the same fields.
macro_rules! replica_owner_fields {
    () => {
        fn replicas(&self) -> i32 {
            self.spec
                .as_ref()
                .and_then(|spec| spec.replicas)
                .unwrap_or(1)
        }

        fn template(&self) -> Option<&PodTemplateSpec> {
            self.spec.as_ref()?.template.as_ref()
        }

        fn min_ready_seconds(&self) -> i32 {
            self.spec
                .as_ref()
                .and_then(|spec| spec.min_ready_seconds)
                .unwrap_or(0)
        }

        fn replica_status(&self) -> ReplicaStatus {
            let Some(status) = &self.status else {
                return ReplicaStatus::default();
            };
            ReplicaStatus {
                replicas: status.replicas,
                fully_labeled: status.fully_labeled_replicas.unwrap_or(0),
                ready: status.ready_replicas.unwrap_or(0),
                available: status.available_replicas.unwrap_or(0),
                observed_generation: status.observed_generation,
                conditions: status
                    .conditions
                    .iter()
                    .flatten()
                    .map(|condition| Condition {
                        type_: condition.type_.clone(),
                        status: condition.status.clone(),
                        reason: condition.reason.clone(),
                        message: condition.message.clone(),
                        last_transition_time: condition.last_transition_time.clone(),
                    })
                    .collect(),
            }
        }
    };
}

impl ReplicaOwner for ReplicaSet {
    fn selector(&self) -> Result<Selector, String> {
        Selector::from_label_selector(self.spec.as_ref().map(|spec| &spec.selector))
            .map_err(|error| error.to_string())
            .and_then(usable)
    }

    replica_owner_fields!();

    fn set_replica_status(&mut self, status: ReplicaStatus) {
        let terminating = self
            .status
            .as_ref()
            .and_then(|status| status.terminating_replicas);
        self.status = Some(ReplicaSetStatus {
            replicas: status.replicas,
            fully_labeled_replicas: Some(status.fully_labeled),
            ready_replicas: Some(status.ready),
            available_replicas: Some(status.available),
            observed_generation: status.observed_generation,
            terminating_replicas: terminating,
            conditions: (!status.conditions.is_empty()).then(|| {
                status
                    .conditions
                    .into_iter()
                    .map(|condition| ReplicaSetCondition {
                        type_: condition.type_,
                        status: condition.status,
                        reason: condition.reason,
                        message: condition.message,
                        last_transition_time: condition.last_transition_time,
                    })
                    .collect()
            }),
        });
    }
}

impl ReplicaOwner for ReplicationController {
    fn selector(&self) -> Result<Selector, String> {
        let declared = self
            .spec
            .as_ref()
            .and_then(|spec| spec.selector.clone())
            .unwrap_or_default();
        let labels = if declared.is_empty() {
            template_labels(self.template())
        } else {
            declared
        };
        Selector::from_map(&labels)
            .map_err(|error| error.to_string())
            .and_then(usable)
    }

    replica_owner_fields!();

    fn set_replica_status(&mut self, status: ReplicaStatus) {
        self.status = Some(ReplicationControllerStatus {
            replicas: status.replicas,
            fully_labeled_replicas: Some(status.fully_labeled),
            ready_replicas: Some(status.ready),
            available_replicas: Some(status.available),
            observed_generation: status.observed_generation,
            conditions: (!status.conditions.is_empty()).then(|| {
                status
                    .conditions
                    .into_iter()
                    .map(|condition| ReplicationControllerCondition {
                        type_: condition.type_,
                        status: condition.status,
                        reason: condition.reason,
                        message: condition.message,
                        last_transition_time: condition.last_transition_time,
                    })
                    .collect()
            }),
        });
    }
}

/// What a pending pod key waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Awaited {
    Creation,
    Deletion,
}

/// The pod keys one owner waits for.
#[derive(Debug, Default)]
struct OwnerRecord {
    uid: String,
    keys: BTreeSet<ObjectRef>,
    since: Option<Instant>,
}

#[derive(Debug, Default)]
struct TrackerState {
    /// Pending pod keys: their owner and what they wait for.
    pods: BTreeMap<ObjectRef, (ObjectRef, Awaited)>,
    owners: BTreeMap<ObjectRef, OwnerRecord>,
}

/// Expectations with creations tracked by key once their names are known: see the module
/// documentation.
#[derive(Debug, Default)]
struct Tracker {
    expectations: ControllerExpectations,
    state: Mutex<TrackerState>,
}

impl TrackerState {
    fn clear_keys(&mut self, owner: &ObjectRef) {
        if let Some(record) = self.owners.get_mut(owner) {
            for key in std::mem::take(&mut record.keys) {
                self.pods.remove(&key);
            }
        }
    }

    fn remove_key(&mut self, key: &ObjectRef) -> Option<(ObjectRef, Awaited)> {
        let removed = self.pods.remove(key)?;
        if let Some(record) = self.owners.get_mut(&removed.0) {
            record.keys.remove(key);
        }
        Some(removed)
    }
}

/// Whether the cache shows the deletion of `key`: gone, or terminating.
fn deletion_seen(pods: &Reader<Pod>, key: &ObjectRef) -> bool {
    pods.get(key).is_none_or(|pod| pods::is_terminating(&pod))
}

impl Tracker {
    fn lock(&self) -> MutexGuard<'_, TrackerState> {
        // Nothing panics with the lock held; should it, the maps are still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A sync of `owner` (with `uid`) starts: expectations of an older object of the same name
    /// are dropped.
    fn begin(&self, owner: &ObjectRef, uid: &str) {
        let mut state = self.lock();
        let stale = state
            .owners
            .get(owner)
            .is_some_and(|record| record.uid != uid);
        if stale {
            state.clear_keys(owner);
            state.owners.remove(owner);
            self.expectations.forget(owner);
        }
        state
            .owners
            .entry(owner.clone())
            .or_insert_with(|| OwnerRecord {
                uid: uid.to_owned(),
                ..OwnerRecord::default()
            });
    }

    /// `owner` (with `uid`) was deleted.
    fn forget(&self, owner: &ObjectRef, uid: Option<&str>) {
        let mut state = self.lock();
        let same = state
            .owners
            .get(owner)
            .is_some_and(|record| Some(record.uid.as_str()) == uid);
        if same {
            state.clear_keys(owner);
            state.owners.remove(owner);
            self.expectations.forget(owner);
        }
    }

    fn satisfied(&self, owner: &ObjectRef) -> bool {
        self.expectations.satisfied(owner)
    }

    /// How long `owner` has waited for its expectations.
    fn waiting_since(&self, owner: &ObjectRef) -> Option<Instant> {
        self.lock()
            .owners
            .get(owner)
            .and_then(|record| record.since)
    }

    fn expect_creations(&self, owner: &ObjectRef, count: usize) {
        let mut state = self.lock();
        state.clear_keys(owner);
        if let Some(record) = state.owners.get_mut(owner) {
            record.since = Some(Instant::now());
        }
        self.expectations.expect_creations(owner, count);
    }

    fn expect_deletions(&self, owner: &ObjectRef, keys: &[ObjectRef]) {
        let mut state = self.lock();
        state.clear_keys(owner);
        for key in keys {
            state
                .pods
                .insert(key.clone(), (owner.clone(), Awaited::Deletion));
        }
        if let Some(record) = state.owners.get_mut(owner) {
            record.since = Some(Instant::now());
            record.keys.extend(keys.iter().cloned());
        }
        self.expectations
            .expect_deletions(owner, keys.iter().cloned());
    }

    /// The create call for one of `owner`'s pods returned `key`.
    fn created(&self, owner: &ObjectRef, key: ObjectRef, pods: &Reader<Pod>) {
        let mut state = self.lock();
        if pods.get(&key).is_some() {
            self.expectations.creation_observed(owner);
            return;
        }
        if let Some(record) = state.owners.get_mut(owner) {
            record.keys.insert(key.clone());
        }
        state.pods.insert(key, (owner.clone(), Awaited::Creation));
    }

    /// `count` creations of `owner`'s failed or were skipped.
    fn creations_failed(&self, owner: &ObjectRef, count: usize) {
        self.expectations.creations_observed(owner, count);
    }

    /// The deletion of `key` failed (or found nothing to delete).
    fn deletion_failed(&self, owner: &ObjectRef, key: &ObjectRef) {
        let mut state = self.lock();
        if state
            .pods
            .get(key)
            .is_some_and(|(pending_owner, _)| pending_owner == owner)
        {
            state.remove_key(key);
        }
        self.expectations.deletion_observed(owner, key);
    }

    /// A pod's state after an `Apply` or `Delete` event (the cache already applied it).
    fn observe(&self, pod: &Pod, deleted: bool) -> Option<ObjectRef> {
        let key = ObjectRef::from_obj(pod);
        let mut state = self.lock();
        let (_, awaited) = state.pods.get(&key)?;
        let seen = match awaited {
            Awaited::Creation => true,
            Awaited::Deletion => deleted || pods::is_terminating(pod),
        };
        if !seen {
            return None;
        }
        let (owner, awaited) = state.remove_key(&key)?;
        self.lower(&owner, &key, awaited);
        Some(owner)
    }

    fn lower(&self, owner: &ObjectRef, key: &ObjectRef, awaited: Awaited) {
        match awaited {
            Awaited::Creation => self.expectations.creation_observed(owner),
            Awaited::Deletion => self.expectations.deletion_observed(owner, key),
        }
    }

    /// Checks the pending keys (of `owner`, or all) against the cache; returns the owners whose
    /// expectations went down.
    fn recheck(&self, owner: Option<&ObjectRef>, pods: &Reader<Pod>) -> Vec<ObjectRef> {
        let mut state = self.lock();
        let candidates: Vec<(ObjectRef, ObjectRef, Awaited)> = match owner {
            Some(owner) => state
                .owners
                .get(owner)
                .into_iter()
                .flat_map(|record| record.keys.iter())
                .filter_map(|key| {
                    state
                        .pods
                        .get(key)
                        .map(|(owner, awaited)| (key.clone(), owner.clone(), *awaited))
                })
                .collect(),
            None => state
                .pods
                .iter()
                .map(|(key, (owner, awaited))| (key.clone(), owner.clone(), *awaited))
                .collect(),
        };
        let mut lowered = BTreeSet::new();
        for (key, owner, awaited) in candidates {
            let seen = match awaited {
                Awaited::Creation => pods.get(&key).is_some(),
                Awaited::Deletion => deletion_seen(pods, &key),
            };
            if seen {
                state.remove_key(&key);
                self.lower(&owner, &key, awaited);
                lowered.insert(owner);
            }
        }
        lowered.into_iter().collect()
    }

    /// The creations of `owner` not yet seen in the cache.
    fn unseen_creations(&self, owner: &ObjectRef) -> Vec<ObjectRef> {
        let state = self.lock();
        state
            .owners
            .get(owner)
            .into_iter()
            .flat_map(|record| record.keys.iter())
            .filter(|key| {
                state
                    .pods
                    .get(*key)
                    .is_some_and(|(_, awaited)| *awaited == Awaited::Creation)
            })
            .cloned()
            .collect()
    }

    /// The pod `key`, pending creation, is not in the API: it was created and deleted unseen.
    fn creation_vanished(&self, key: &ObjectRef) {
        let mut state = self.lock();
        if let Some((owner, awaited)) = state.remove_key(key) {
            self.lower(&owner, key, awaited);
        }
    }
}

/// Everything a sync uses.
struct SyncContext<W> {
    client: Client,
    /// Records the Events about the managed objects.
    recorder: EventRecorder,
    pods: Reader<Pod>,
    owners: Reader<W>,
    tracker: Arc<Tracker>,
    burst: usize,
    kind: String,
}

/// The key of the owner of kind `owner_type` that controls `pod`, if any.
fn controller_key(pod: &Pod, owner_type: &TypeMeta) -> Option<ObjectRef> {
    let reference = pods::controller_of(&pod.metadata)?;
    if reference.kind != owner_type.kind || reference.api_version != owner_type.api_version {
        return None;
    }
    Some(ObjectRef {
        namespace: pod.metadata.namespace.clone(),
        name: reference.name.clone(),
    })
}

/// The owners a pod's change concerns: its controller, or for an active orphan every owner in
/// its namespace whose selector matches it (so that they adopt it).
fn owners_of<W: ReplicaOwner>(
    pod: &Pod,
    owners: &Reader<W>,
    owner_type: &TypeMeta,
) -> Vec<ObjectRef> {
    if pods::controller_of(&pod.metadata).is_some() {
        return controller_key(pod, owner_type).into_iter().collect();
    }
    if !pods::is_active(pod) {
        return Vec::new();
    }
    let namespace = pod.metadata.namespace.as_deref();
    owners
        .state()
        .iter()
        .filter(|owner| owner.meta().namespace.as_deref() == namespace)
        .filter(|owner| {
            owner
                .selector()
                .is_ok_and(|selector| selector.matches_object(pod))
        })
        .map(|owner| ObjectRef::from_obj(owner.as_ref()))
        .collect()
}

async fn run_kind<W, S>(settings: ReplicaSetController, component: &str, shutdown: S)
where
    W: ReplicaOwner,
    S: Future<Output = ()>,
{
    let ReplicaSetController {
        client,
        concurrency,
        burst,
        watcher_config: config,
        ..
    } = settings;
    let owner_type = TypeMeta::of::<W>();
    let controller =
        Controller::new(Api::<W>::all(client.clone()), config.clone()).concurrency(concurrency);
    let owners = controller.store();
    let tracker = Arc::new(Tracker::default());
    let pods_cell: Arc<OnceLock<Reader<Pod>>> = Arc::new(OnceLock::new());
    let map = {
        let tracker = Arc::clone(&tracker);
        let owners = owners.clone();
        let pods_cell = Arc::clone(&pods_cell);
        let owner_type = owner_type.clone();
        move |event: &WatcherEvent<Pod>| -> Vec<ObjectRef> {
            match event {
                WatcherEvent::Init => Vec::new(),
                WatcherEvent::InitDone => pods_cell
                    .get()
                    .map(|pods| tracker.recheck(None, pods))
                    .unwrap_or_default(),
                WatcherEvent::InitApply(pod) => owners_of(pod, &owners, &owner_type),
                WatcherEvent::Apply(pod) => {
                    let mut keys = owners_of(pod, &owners, &owner_type);
                    if let Some(owner) = tracker.observe(pod, false)
                        && !keys.contains(&owner)
                    {
                        keys.push(owner);
                    }
                    keys
                }
                WatcherEvent::Delete(pod) => {
                    let mut keys: Vec<ObjectRef> =
                        controller_key(pod, &owner_type).into_iter().collect();
                    if let Some(owner) = tracker.observe(pod, true)
                        && !keys.contains(&owner)
                    {
                        keys.push(owner);
                    }
                    keys
                }
            }
        }
    };
    let (controller, pods) =
        controller.watches_events(Api::<Pod>::all(client.clone()), config.clone(), map);
    let _ = pods_cell.set(pods.clone());
    let forget = Arc::clone(&tracker);
    let (controller, _) = controller.watches_events(
        Api::<W>::all(client.clone()),
        config,
        move |event: &WatcherEvent<W>| {
            if let WatcherEvent::Delete(owner) = event {
                forget.forget(&ObjectRef::from_obj(owner), owner.meta().uid.as_deref());
            }
            Vec::new()
        },
    );
    let context = Arc::new(SyncContext {
        recorder: EventRecorder::new(client.clone(), component),
        client,
        pods,
        owners,
        tracker,
        burst,
        kind: owner_type.kind,
    });
    controller.run(sync::<W>, context, shutdown).await;
}

fn is_namespace_terminating(error: &StatusError) -> bool {
    error.reason == StatusReason::Forbidden && error.message.contains("is being terminated")
}

/// One sync of a ReplicaSet or ReplicationController: see the module documentation.
async fn sync<W: ReplicaOwner>(
    owner: Arc<W>,
    context: Arc<SyncContext<W>>,
) -> Result<Action, ReplicaSetError> {
    let key = ObjectRef::from_obj(owner.as_ref());
    let Some(namespace) = key.namespace.clone() else {
        return Ok(Action::await_change());
    };
    let uid = owner.meta().uid.clone().unwrap_or_default();
    let tracker = &context.tracker;
    tracker.begin(&key, &uid);
    tracker.recheck(Some(&key), &context.pods);
    let selector = owner
        .selector()
        .map_err(|reason| ReplicaSetError::InvalidSelector {
            kind: context.kind.clone(),
            object: key.clone(),
            reason,
        })?;
    if owner.template().is_some() && !selector.matches(&template_labels(owner.template())) {
        return Err(ReplicaSetError::SelectorMismatch {
            kind: context.kind.clone(),
            object: key,
        });
    }
    if !tracker.satisfied(&key) {
        look_up_unseen_creations(owner.as_ref(), &key, &namespace, context.as_ref()).await;
    }
    let needs_sync = tracker.satisfied(&key);
    if !needs_sync && owner.meta().deletion_timestamp.is_none() {
        // The cache is not yet the world the last sync left: the event that satisfies the
        // expectations syncs again, and then claims and counts. (Kubernetes claims and writes
        // status on every sync; during a burst of 500 creations that rescans every pod of the
        // namespace hundreds of times for a status that is stale at once.)
        return Ok(Action::requeue(STALE_EXPECTATIONS));
    }

    // One pass over the cache: the active pods of the namespace.
    let active: Vec<Arc<Pod>> = context
        .pods
        .state()
        .into_iter()
        .filter(|pod| pod.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .filter(|pod| pods::is_active(pod))
        .collect();
    let claimed = claim(owner.as_ref(), &key, &selector, &active, &context).await?;

    let manage_error = if needs_sync && owner.meta().deletion_timestamp.is_none() {
        manage(
            owner.as_ref(),
            &key,
            &namespace,
            &claimed,
            &active,
            &context,
        )
        .await
        .err()
    } else {
        None
    };

    let now = context.client.clock().now();
    let status = calculate_status(owner.as_ref(), &claimed, manage_error.as_ref(), now);
    if status != owner.replica_status() {
        write_status(owner.as_ref(), &key, &namespace, status, &context).await?;
    }
    if let Some(error) = manage_error {
        return Err(error);
    }
    let mut action = Action::await_change();
    let min_ready = owner.min_ready_seconds();
    if min_ready > 0 {
        let next = claimed
            .iter()
            .filter(|pod| pods::is_ready(pod) && !pods::is_available(pod, min_ready, now))
            .filter_map(|pod| pods::available_at(pod, min_ready))
            .min();
        if let Some(at) = next {
            let wait = Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO);
            action = Action::requeue(wait.max(Duration::from_millis(1)));
        }
    }
    if !tracker.satisfied(&key) {
        action = match action {
            Action::RequeueAfter(wait) => Action::requeue(wait.min(STALE_EXPECTATIONS)),
            Action::AwaitChange => Action::requeue(STALE_EXPECTATIONS),
        };
    }
    Ok(action)
}

/// After [`STALE_EXPECTATIONS`], looks up in the API the created pods the cache has not shown:
/// those that are gone were created and deleted unseen (while the watch was down).
async fn look_up_unseen_creations<W: ReplicaOwner>(
    owner: &W,
    key: &ObjectRef,
    namespace: &str,
    context: &SyncContext<W>,
) {
    let stale = context
        .tracker
        .waiting_since(key)
        .is_some_and(|since| since.elapsed() >= STALE_EXPECTATIONS);
    if !stale {
        return;
    }
    let api: Api<Pod> = Api::namespaced(context.client.clone(), namespace);
    for pod in context.tracker.unseen_creations(key) {
        match api.get_opt(&pod.name).await {
            Ok(None) => context.tracker.creation_vanished(&pod),
            Ok(Some(found)) if !pods::is_controlled_by(&found.metadata, owner.meta()) => {
                context.tracker.creation_vanished(&pod);
            }
            // Still there (the cache will show it), or the API is unavailable: wait on.
            Ok(Some(_)) | Err(_) => {}
        }
    }
}

/// Claims the active pods of the namespace for `owner`: adopts matching orphans, releases the
/// pods that stopped matching. Returns the pods it controls.
async fn claim<W: ReplicaOwner>(
    owner: &W,
    key: &ObjectRef,
    selector: &Selector,
    active: &[Arc<Pod>],
    context: &SyncContext<W>,
) -> Result<Vec<Arc<Pod>>, ReplicaSetError> {
    let uid = owner.meta().uid.as_deref().unwrap_or_default();
    let deleting = owner.meta().deletion_timestamp.is_some();
    let namespace = key.namespace.as_deref().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(context.client.clone(), namespace);
    let mut claimed = Vec::new();
    let mut may_adopt: Option<bool> = None;
    for pod in active {
        let matches = selector.matches_object(pod.as_ref());
        match pods::controller_of(&pod.metadata) {
            Some(reference) if reference.uid == uid => {
                if matches {
                    claimed.push(Arc::clone(pod));
                } else if !deleting {
                    release(&api, pod, uid, key, context).await?;
                }
            }
            Some(_) => {}
            None => {
                if deleting || !matches || pods::is_terminating(pod) {
                    continue;
                }
                let allowed = match may_adopt {
                    Some(allowed) => allowed,
                    None => {
                        let allowed = still_current(owner, key, context).await?;
                        may_adopt = Some(allowed);
                        allowed
                    }
                };
                if !allowed {
                    continue;
                }
                if let Some(adopted) = adopt(&api, owner, pod, key, context).await? {
                    claimed.push(Arc::new(adopted));
                }
            }
        }
    }
    Ok(claimed)
}

/// Whether `owner` may adopt: an uncached read shows it exists, is not being deleted, and has
/// the same uid (Kubernetes' `RecheckDeletionTimestamp`).
async fn still_current<W: ReplicaOwner>(
    owner: &W,
    key: &ObjectRef,
    context: &SyncContext<W>,
) -> Result<bool, ReplicaSetError> {
    let api: Api<W> = Api::namespaced(
        context.client.clone(),
        key.namespace.as_deref().unwrap_or_default(),
    );
    let fresh = api
        .get_opt(&key.name)
        .await
        .map_err(|source| ReplicaSetError::Api {
            kind: context.kind.clone(),
            object: key.clone(),
            action: "read it again before adopting",
            source,
        })?;
    Ok(fresh.is_some_and(|fresh| {
        fresh.meta().deletion_timestamp.is_none() && fresh.meta().uid == owner.meta().uid
    }))
}

async fn adopt<W: ReplicaOwner>(
    api: &Api<Pod>,
    owner: &W,
    pod: &Pod,
    key: &ObjectRef,
    context: &SyncContext<W>,
) -> Result<Option<Pod>, ReplicaSetError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let reference = serde_json::to_value(pods::controller_reference(owner)).unwrap_or_default();
    let mut operations = vec![json!({
        "op": "test", "path": "/metadata/uid", "value": pod.metadata.uid,
    })];
    match &pod.metadata.owner_references {
        Some(references) if !references.is_empty() => {
            operations.push(json!({
                "op": "test", "path": "/metadata/ownerReferences", "value": references,
            }));
            operations.push(json!({
                "op": "add", "path": "/metadata/ownerReferences/-", "value": reference,
            }));
        }
        _ => operations.push(json!({
            "op": "add", "path": "/metadata/ownerReferences", "value": [reference],
        })),
    }
    match api
        .patch(
            &name,
            &PatchParams::new(PatchType::Json),
            &serde_json::Value::Array(operations),
        )
        .await
    {
        Ok(adopted) => Ok(Some(adopted)),
        Err(error) if error.is_not_found() => Ok(None),
        Err(source) => Err(ReplicaSetError::Claim {
            kind: context.kind.clone(),
            object: key.clone(),
            action: "adopt",
            pod: name,
            source,
        }),
    }
}

async fn release<W>(
    api: &Api<Pod>,
    pod: &Pod,
    uid: &str,
    key: &ObjectRef,
    context: &SyncContext<W>,
) -> Result<(), ReplicaSetError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let Some(index) = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .position(|reference| reference.uid == uid)
    else {
        return Ok(());
    };
    let operations = json!([
        {"op": "test", "path": "/metadata/uid", "value": pod.metadata.uid},
        {"op": "test", "path": format!("/metadata/ownerReferences/{index}/uid"), "value": uid},
        {"op": "remove", "path": format!("/metadata/ownerReferences/{index}")},
    ]);
    match api
        .patch(&name, &PatchParams::new(PatchType::Json), &operations)
        .await
    {
        Ok(_) => Ok(()),
        Err(error) if error.is_not_found() => Ok(()),
        Err(source) => Err(ReplicaSetError::Claim {
            kind: context.kind.clone(),
            object: key.clone(),
            action: "release",
            pod: name,
            source,
        }),
    }
}

/// Creates or deletes pods so that `claimed` becomes `replicas` (at most `burst` per sync).
async fn manage<W: ReplicaOwner>(
    owner: &W,
    key: &ObjectRef,
    namespace: &str,
    claimed: &[Arc<Pod>],
    active: &[Arc<Pod>],
    context: &SyncContext<W>,
) -> Result<(), ReplicaSetError> {
    let wanted = usize::try_from(owner.replicas()).unwrap_or(0);
    let api: Api<Pod> = Api::namespaced(context.client.clone(), namespace);
    if claimed.len() < wanted {
        let Some(template) = owner.template() else {
            return Err(ReplicaSetError::NoTemplate {
                kind: context.kind.clone(),
                object: key.clone(),
            });
        };
        let count = (wanted - claimed.len()).min(context.burst);
        create_pods(owner, key, namespace, template, count, &api, context).await
    } else if claimed.len() > wanted {
        let count = (claimed.len() - wanted).min(context.burst);
        delete_pods(owner, key, claimed, active, count, &api, context).await
    } else {
        Ok(())
    }
}

async fn create_pods<W: ReplicaOwner>(
    owner: &W,
    key: &ObjectRef,
    namespace: &str,
    template: &PodTemplateSpec,
    count: usize,
    api: &Api<Pod>,
    context: &SyncContext<W>,
) -> Result<(), ReplicaSetError> {
    let tracker = &context.tracker;
    tracker.expect_creations(key, count);
    let pod = pods::from_template(
        template,
        namespace,
        &key.name,
        pods::controller_reference(owner),
    );
    let params = PostParams::default();
    let mut remaining = count;
    let mut batch = 1;
    let mut failure: Option<StatusError> = None;
    let mut stop = false;
    while remaining > 0 && !stop {
        let size = batch.min(remaining);
        remaining -= size;
        // Each creation is a task of its own, so that a multi-threaded runtime runs them in
        // parallel; dropping the set (the controller stopped) aborts them.
        let mut creations = tokio::task::JoinSet::new();
        for _ in 0..size {
            let api = api.clone();
            let pod = pod.clone();
            let params = params.clone();
            creations.spawn(async move { api.create(&params, &pod).await });
        }
        while let Some(joined) = creations.join_next().await {
            let result = joined.unwrap_or_else(|error| {
                Err(StatusError::internal(format!(
                    "pod creation aborted: {error}"
                )))
            });
            match result {
                Ok(created) => {
                    context.recorder.event(
                        owner,
                        EventType::Normal,
                        SUCCESSFUL_CREATE,
                        &format!(
                            "Created pod: {}",
                            created.metadata.name.as_deref().unwrap_or_default()
                        ),
                    );
                    tracker.created(key, ObjectRef::from_obj(&created), &context.pods);
                }
                Err(error) => {
                    tracker.creations_failed(key, 1);
                    stop = true;
                    if !is_namespace_terminating(&error) {
                        context.recorder.event(
                            owner,
                            EventType::Warning,
                            FAILED_CREATE,
                            &format!("Error creating: {error}"),
                        );
                        if failure.is_none() {
                            failure = Some(error);
                        }
                    }
                }
            }
        }
        batch = batch.saturating_mul(2);
    }
    if remaining > 0 {
        tracker.creations_failed(key, remaining);
    }
    match failure {
        Some(source) => Err(ReplicaSetError::Create {
            kind: context.kind.clone(),
            object: key.clone(),
            source,
        }),
        None => Ok(()),
    }
}

async fn delete_pods<W: ReplicaOwner>(
    owner: &W,
    key: &ObjectRef,
    claimed: &[Arc<Pod>],
    active: &[Arc<Pod>],
    count: usize,
    api: &Api<Pod>,
    context: &SyncContext<W>,
) -> Result<(), ReplicaSetError> {
    let related = related_pods(owner, active, context);
    let mut victims = claimed.to_vec();
    pods::sort_for_deletion(&mut victims, &related);
    victims.truncate(count);
    let keys: Vec<ObjectRef> = victims
        .iter()
        .map(|pod| ObjectRef::from_obj(pod.as_ref()))
        .collect();
    context.tracker.expect_deletions(key, &keys);
    let mut deletions: FuturesUnordered<_> = victims
        .iter()
        .zip(&keys)
        .map(|(pod, pod_key)| async move {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: pod.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            (pod_key, api.delete(&pod_key.name, &params).await)
        })
        .collect();
    let mut failure = None;
    while let Some((pod_key, result)) = deletions.next().await {
        match result {
            Ok(_) => context.recorder.event(
                owner,
                EventType::Normal,
                SUCCESSFUL_DELETE,
                &format!("Deleted pod: {}", pod_key.name),
            ),
            Err(error) => {
                context.tracker.deletion_failed(key, pod_key);
                if !error.is_not_found() {
                    context.recorder.event(
                        owner,
                        EventType::Warning,
                        FAILED_DELETE,
                        &format!("Error deleting: {error}"),
                    );
                    if failure.is_none() {
                        failure = Some((pod_key.name.clone(), error));
                    }
                }
            }
        }
    }
    match failure {
        Some((pod, source)) => Err(ReplicaSetError::Delete {
            kind: context.kind.clone(),
            object: key.clone(),
            pod,
            source,
        }),
        None => Ok(()),
    }
}

/// The active pods of `owner` and of its siblings (the objects controlled by the same
/// controller, say a Deployment's ReplicaSets), for the deletion ranking.
fn related_pods<W: ReplicaOwner>(
    owner: &W,
    active: &[Arc<Pod>],
    context: &SyncContext<W>,
) -> Vec<Arc<Pod>> {
    let mut uids: BTreeSet<String> = owner.meta().uid.iter().cloned().collect();
    if let Some(parent) = pods::controller_of(owner.meta()) {
        for sibling in context.owners.state() {
            if sibling.meta().namespace == owner.meta().namespace
                && pods::controller_of(sibling.meta())
                    .is_some_and(|reference| reference.uid == parent.uid)
                && let Some(uid) = &sibling.meta().uid
            {
                uids.insert(uid.clone());
            }
        }
    }
    active
        .iter()
        .filter(|pod| {
            pods::controller_of(&pod.metadata)
                .is_some_and(|reference| uids.contains(&reference.uid))
        })
        .cloned()
        .collect()
}

/// The status the pods give (Kubernetes' `calculateStatus`).
fn calculate_status<W: ReplicaOwner>(
    owner: &W,
    claimed: &[Arc<Pod>],
    manage_error: Option<&ReplicaSetError>,
    now: Timestamp,
) -> ReplicaStatus {
    let labels = template_labels(owner.template());
    let min_ready = owner.min_ready_seconds();
    let mut status = owner.replica_status();
    status.replicas = i32::try_from(claimed.len()).unwrap_or(i32::MAX);
    status.fully_labeled = count(claimed.iter().filter(|pod| {
        let pod_labels = pod.metadata.labels.as_ref();
        labels.iter().all(|(key, value)| {
            pod_labels.and_then(|pod_labels| pod_labels.get(key)) == Some(value)
        })
    }));
    status.ready = count(claimed.iter().filter(|pod| pods::is_ready(pod)));
    status.available = count(
        claimed
            .iter()
            .filter(|pod| pods::is_available(pod, min_ready, now)),
    );
    status.observed_generation = owner.meta().generation;
    let failing = status
        .conditions
        .iter()
        .position(|condition| condition.type_ == REPLICA_FAILURE);
    match (manage_error, failing) {
        (Some(error), None) => {
            let reason = match error {
                ReplicaSetError::Delete { .. } => "FailedDelete",
                _ => "FailedCreate",
            };
            status.conditions.push(Condition {
                type_: REPLICA_FAILURE.to_owned(),
                status: "True".to_owned(),
                reason: Some(reason.to_owned()),
                message: Some(error.to_string()),
                last_transition_time: Some(Time(now)),
            });
        }
        (None, Some(index)) => {
            status.conditions.remove(index);
        }
        _ => {}
    }
    status
}

fn count<T>(items: impl Iterator<Item = T>) -> i32 {
    i32::try_from(items.count()).unwrap_or(i32::MAX)
}

/// Writes `status` through the status subresource, reading the object again once on a
/// conflict.
async fn write_status<W: ReplicaOwner>(
    owner: &W,
    key: &ObjectRef,
    namespace: &str,
    status: ReplicaStatus,
    context: &SyncContext<W>,
) -> Result<(), ReplicaSetError> {
    let api: Api<W> = Api::namespaced(context.client.clone(), namespace);
    let error = |source| ReplicaSetError::Api {
        kind: context.kind.clone(),
        object: key.clone(),
        action: "update the status",
        source,
    };
    let mut updated = owner.clone();
    updated.set_replica_status(status.clone());
    match api
        .replace_status(&key.name, &PostParams::default(), &updated)
        .await
    {
        Ok(_) => Ok(()),
        Err(conflict) if conflict.is_conflict() => {
            let Some(mut fresh) = api.get_opt(&key.name).await.map_err(error)? else {
                return Ok(());
            };
            if fresh.meta().uid != owner.meta().uid {
                return Ok(());
            }
            fresh.set_replica_status(status);
            api.replace_status(&key.name, &PostParams::default(), &fresh)
                .await
                .map(|_| ())
                .map_err(error)
        }
        Err(error) if error.is_not_found() => Ok(()),
        Err(source) => Err(error(source)),
    }
}
