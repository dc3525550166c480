//! The Deployment controller: a ReplicaSet per pod template, rolled out as the strategy says
//! (Kubernetes' `pkg/controller/deployment`).
//!
//! A Deployment describes pods through a template; the controller keeps one ReplicaSet per
//! template it has seen (the **new** ReplicaSet runs the current template, the **old** ones the
//! earlier templates) and moves replicas from the old ones to the new one. The pods themselves
//! are the [`replica_set`](super::replica_set) controller's business: this controller only sets
//! the `replicas` of ReplicaSets, and must run beside it.
//!
//! # What one sync does
//!
//! 1. **Claims** the ReplicaSets of the namespace: it adopts orphans its selector matches (after
//!    an uncached check that the Deployment is still the one it saw) and releases the ones it
//!    controls that its selector no longer matches.
//! 2. Finds the **new ReplicaSet**: the oldest one whose template equals the Deployment's,
//!    ignoring the `pod-template-hash` label. When there is none (and the Deployment is not
//!    paused, and this is not just a change of `replicas`), it creates one named
//!    `<deployment>-<hash>`, where the hash is Kubernetes' `ComputeHash`: FNV-1a (32 bits) over
//!    the template — here over **its JSON serialization** (Kubernetes hashes a Go dump of the
//!    struct, so the hashes differ from a real cluster's) — then over the four little-endian
//!    bytes of `status.collisionCount` (in eight bytes) when it is set, the decimal digits of the
//!    result written in the "safe" alphabet `bcdfghjklmnpqrstvwxz2456789`. The hash becomes a
//!    `pod-template-hash` label of the ReplicaSet's selector and template. If a ReplicaSet of
//!    that name exists with another template, `status.collisionCount` goes up by one and the
//!    sync starts again with another hash.
//! 3. **Revisions**: the new ReplicaSet carries `deployment.kubernetes.io/revision`, one more
//!    than the highest revision of the old ones; an old ReplicaSet that becomes new again (a
//!    rollback, see [`rollback`]) gets the next revision and keeps its former number in
//!    `deployment.kubernetes.io/revision-history`. The Deployment carries its new ReplicaSet's
//!    revision. Every ReplicaSet it scales carries the Deployment's `replicas`
//!    (`deployment.kubernetes.io/desired-replicas`) and `replicas + maxSurge`
//!    (`deployment.kubernetes.io/max-replicas`).
//! 4. Then, depending on the Deployment:
//!    - **paused**, or a **change of `replicas`** (an active ReplicaSet's desired-replicas
//!      annotation differs from the Deployment's `replicas`): it only scales, proportionally
//!      across the ReplicaSets as Kubernetes does (each gets its share of the change, computed
//!      from its max-replicas annotation; what rounding leaves goes to the largest, newest one),
//!      and a paused Deployment's history is cleaned up;
//!    - **RollingUpdate**: it scales the new ReplicaSet up within `replicas + maxSurge` pods,
//!      removes unhealthy pods of old ReplicaSets, then scales old ReplicaSets down (oldest
//!      first) as far as `replicas - maxUnavailable` available pods allow. `maxSurge` and
//!      `maxUnavailable` are numbers or percentages of `replicas` (surge rounds up, unavailable
//!      rounds down, and both 0 means `maxUnavailable` 1: Kubernetes' `ResolveFenceposts`);
//!    - **Recreate**: it scales every old ReplicaSet to 0, waits until no pod of an old
//!      ReplicaSet exists at all, then creates or scales up the new one.
//! 5. Once the rollout is complete it deletes the oldest old ReplicaSets with no replicas beyond
//!    `revisionHistoryLimit` (10 by default).
//! 6. **Status**: `observedGeneration`, `replicas`, `updatedReplicas`, `readyReplicas`,
//!    `availableReplicas`, `unavailableReplicas`, `collisionCount` and the conditions, written
//!    through the status subresource when they change. `Available` is `True`
//!    (`MinimumReplicasAvailable`) when at least `replicas - maxUnavailable` pods are available.
//!    `Progressing` is `True` with `NewReplicaSetCreated`, `FoundNewReplicaSet`,
//!    `ReplicaSetUpdated` or, once complete, `NewReplicaSetAvailable`; `False` with
//!    `ProgressDeadlineExceeded` when the rollout has made no progress for
//!    `progressDeadlineSeconds` (600 by default; the sync comes back when the deadline would
//!    pass); `Unknown` with `DeploymentPaused` / `DeploymentResumed` around a pause. A paused
//!    Deployment never times out. A ReplicaSet's `ReplicaFailure` condition (the new one's
//!    first) is copied to the Deployment while it lasts.
//!
//! # Events
//!
//! As Kubernetes' controller, it records Events on the Deployment (source
//! `deployment-controller`, so that `kubectl describe deployment` shows them):
//!
//! - `Normal` [`ScalingReplicaSet`](SCALING_REPLICA_SET) whenever it changes a ReplicaSet's
//!   `replicas`: `Scaled up replica set web-5d9c7b8f4 from 0 to 3` (a new ReplicaSet created
//!   with replicas counts as scaled up from 0), `Scaled down replica set web-6b7f from 3 to 2`;
//! - `Warning` [`ReplicaSetCreateError`](REPLICA_SET_CREATE_ERROR) when the new ReplicaSet cannot
//!   be created: `Failed to create new replica set "web-5d9c7b8f4": <error>`;
//! - `Warning` [`SelectingAll`](SELECTING_ALL) for a Deployment whose selector is empty.
//!
//! Rollbacks are [`rollback`]'s business (kubectl's, on the client side), not the controller's,
//! so there is no `DeploymentRollback` event.
//!
//! # Stricter than Kubernetes
//!
//! Kubernetes' rolling update counts the `spec.replicas` of the ReplicaSets. ReplicaSet statuses
//! lag their specs, and so do the pods, so the number of pods can briefly exceed
//! `replicas + maxSurge`, and the number of available ones fall below
//! `replicas - maxUnavailable`. This controller keeps both bounds **at the level of pods, at
//! every moment** (given a ReplicaSet controller that never creates beyond `spec.replicas` and
//! deletes not-ready pods first):
//!
//! - when it decides how far the new ReplicaSet may grow, it counts for every ReplicaSet
//!   `max(spec.replicas, status.replicas)`: pods the spec no longer asks for may still exist;
//! - when it decides how many old pods may go, it counts as available, for every ReplicaSet,
//!   `min(status.availableReplicas, spec.replicas)`, and only for ReplicaSets whose status is
//!   current (`status.observedGeneration >= metadata.generation`); a ReplicaSet with a stale
//!   status counts no available pods, and no unhealthy pods are removed from it, so the
//!   controller waits for the status rather than act on it;
//! - after writing a ReplicaSet (or the Deployment) it does not act on the Deployment again
//!   until its cache has seen that write (compared by resource version; it requeues instead),
//!   so that a lagging cache never makes it count twice;
//! - Recreate waits until no pod of an old ReplicaSet exists, terminating ones included (from
//!   the pod cache), and until every old ReplicaSet's status reports no replicas.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//!
//! use orchestra_core::api::{Api, Client, PostParams};
//! use orchestra_core::controllers::deployment::{DeploymentController, REVISION_ANNOTATION};
//! use orchestra_core::k8s::api::apps::v1::{Deployment, ReplicaSet};
//! use orchestra_core::store::MemoryStore;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
//! let client = Client::new(MemoryStore::new());
//! client.bootstrap().await?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let running = tokio::spawn(DeploymentController::new(client.clone()).run(async move {
//!     let _ = stopped.await;
//! }));
//!
//! let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
//! let web: Deployment = serde_json::from_value(serde_json::json!({
//!     "metadata": {"name": "web"},
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
//! deployments.create(&PostParams::default(), &web).await?;
//! tokio::time::sleep(Duration::from_secs(1)).await;
//!
//! // One ReplicaSet, `web-<hash>`, revision 1, asked for all three pods at once.
//! let replica_sets: Api<ReplicaSet> = Api::namespaced(client, "default");
//! let listed = replica_sets.list(&Default::default()).await?.items;
//! assert_eq!(listed.len(), 1);
//! let annotations = listed[0].metadata.annotations.clone().unwrap_or_default();
//! assert_eq!(annotations[REVISION_ANNOTATION], "1");
//! assert_eq!(listed[0].spec.as_ref().and_then(|spec| spec.replicas), Some(3));
//! let _ = stop.send(());
//! running.await.unwrap();
//! # Ok::<(), orchestra_core::status::StatusError>(())
//! # }).unwrap();
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::time::Instant;

use super::pods;
use crate::api::{Api, Client, DeleteParams, PatchParams, PostParams};
use crate::patch::PatchType;
use crate::runtime::Action;
use crate::runtime::controller::Controller;
use crate::runtime::events::{EventRecorder, EventType};
use crate::runtime::reflector::{ObjectRef, Reader};
use crate::runtime::watcher::WatcherConfig;
use crate::selector::Selector;
use crate::status::{StatusError, StatusReason};

/// The annotation with a ReplicaSet's (and its Deployment's) revision.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// The annotation with the earlier revisions of a ReplicaSet, comma-separated.
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
/// The annotation with the Deployment's `replicas` when it last scaled the ReplicaSet.
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
/// The annotation with the Deployment's `replicas + maxSurge` when it last scaled the
/// ReplicaSet.
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
/// The label that tells the pods (and ReplicaSets) of one template from another's.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// kubectl's annotation with the last applied configuration (never copied to ReplicaSets).
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The deprecated rollback request annotation (never copied to ReplicaSets).
const ROLLBACK_TO_ANNOTATION: &str = "deprecated.deployment.rollback.to";
/// The annotations of a Deployment that are not copied to its ReplicaSets (and back by a
/// rollback).
const ANNOTATIONS_TO_SKIP: [&str; 6] = [
    LAST_APPLIED_ANNOTATION,
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
    DESIRED_REPLICAS_ANNOTATION,
    MAX_REPLICAS_ANNOTATION,
    ROLLBACK_TO_ANNOTATION,
];

/// The component the controller's Events name as their source.
pub const COMPONENT: &str = "deployment-controller";
/// Event reason: the controller changed a ReplicaSet's `replicas` (or created it with some).
pub const SCALING_REPLICA_SET: &str = "ScalingReplicaSet";
/// Event reason (`Warning`): the new ReplicaSet could not be created.
pub const REPLICA_SET_CREATE_ERROR: &str = "ReplicaSetCreateError";
/// Event reason (`Warning`): the Deployment's selector is empty, so it is left alone.
pub const SELECTING_ALL: &str = "SelectingAll";

/// The `Progressing` condition type.
pub const PROGRESSING: &str = "Progressing";
/// The `Available` condition type.
pub const AVAILABLE: &str = "Available";
/// The `ReplicaFailure` condition type (copied from a ReplicaSet that cannot create or delete
/// pods).
pub const REPLICA_FAILURE: &str = "ReplicaFailure";
/// `Progressing` reason: a new ReplicaSet was created.
pub const NEW_REPLICA_SET_CREATED: &str = "NewReplicaSetCreated";
/// `Progressing` reason: an existing ReplicaSet became the new one.
pub const FOUND_NEW_REPLICA_SET: &str = "FoundNewReplicaSet";
/// `Progressing` reason: the rollout moved on.
pub const REPLICA_SET_UPDATED: &str = "ReplicaSetUpdated";
/// `Progressing` reason: the rollout is complete.
pub const NEW_REPLICA_SET_AVAILABLE: &str = "NewReplicaSetAvailable";
/// `Progressing` reason (status `False`): no progress within `progressDeadlineSeconds`.
pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
/// `Progressing` reason (status `Unknown`): the Deployment is paused.
pub const DEPLOYMENT_PAUSED: &str = "DeploymentPaused";
/// `Progressing` reason (status `Unknown`): the Deployment was resumed.
pub const DEPLOYMENT_RESUMED: &str = "DeploymentResumed";
/// `Available` reason: enough pods are available.
pub const MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";
/// `Available` reason (status `False`): too few pods are available.
pub const MINIMUM_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

/// The alphabet of [`safe_encode`]: no vowels (no words), no look-alike characters.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// How long the controller trusts that its cache will see a ReplicaSet it wrote.
const CACHE_LAG_TTL: Duration = Duration::from_secs(30);
/// How soon a sync waiting for its cache looks again (the cache's event usually comes first).
const CACHE_LAG_RETRY: Duration = Duration::from_millis(200);

/// A sync of a Deployment failed (it is retried with back-off).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeploymentError {
    /// An API call failed.
    #[error("cannot {action} {object}: {source}")]
    Api {
        /// What the controller tried.
        action: &'static str,
        /// The object, `namespace/name`.
        object: String,
        /// The API's answer.
        #[source]
        source: StatusError,
    },
    /// The Deployment's selector cannot be used.
    #[error("deployment {deployment} has an invalid selector: {message}")]
    InvalidSelector {
        /// The Deployment, `namespace/name`.
        deployment: String,
        /// What is wrong.
        message: String,
    },
    /// `maxSurge` or `maxUnavailable` is neither a number nor a percentage.
    #[error("deployment {deployment} has an invalid rolling update: {message}")]
    InvalidRollingUpdate {
        /// The Deployment, `namespace/name`.
        deployment: String,
        /// What is wrong.
        message: String,
    },
    /// The name of the new ReplicaSet is taken by another template; `collisionCount` was raised
    /// and the sync is retried.
    #[error(
        "replica set {name} exists with another template (collision count now {collision_count})"
    )]
    HashCollision {
        /// The taken name.
        name: String,
        /// The Deployment's new `status.collisionCount`.
        collision_count: i32,
    },
}

/// [`rollback`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RollbackError {
    /// A paused Deployment is not rolled back (kubectl refuses too): resume it first.
    #[error("deployment {name} is paused; resume it before rolling it back")]
    Paused {
        /// The Deployment.
        name: String,
    },
    /// No ReplicaSet of the Deployment has that revision.
    #[error("unable to find revision {revision} of deployment {name}")]
    RevisionNotFound {
        /// The Deployment.
        name: String,
        /// The revision asked for.
        revision: i64,
    },
    /// The Deployment has no revision before its current one.
    #[error("no rollout history found for deployment {name}")]
    NoPreviousRevision {
        /// The Deployment.
        name: String,
    },
    /// The Deployment or one of its ReplicaSets is unusable (no uid, no template).
    #[error("deployment {name} cannot be rolled back: {message}")]
    Invalid {
        /// The Deployment.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// An API call failed (the Deployment does not exist, the write conflicted, ...).
    #[error("cannot {action} for the rollback of {name}: {source}")]
    Api {
        /// What the rollback tried.
        action: &'static str,
        /// The Deployment.
        name: String,
        /// The API's answer.
        #[source]
        source: StatusError,
    },
}

/// Rolls Deployments out: see the [module documentation](self).
#[derive(Clone, Debug)]
pub struct DeploymentController {
    client: Client,
    concurrency: usize,
    watcher_config: WatcherConfig,
}

impl DeploymentController {
    /// The controller of the Deployments `client` serves.
    pub fn new(client: Client) -> DeploymentController {
        DeploymentController {
            client,
            concurrency: 5,
            watcher_config: WatcherConfig::default(),
        }
    }

    /// How many Deployments are synced at once at most (5 by default, as Kubernetes'
    /// `--concurrent-deployment-syncs`).
    #[must_use]
    pub fn concurrency(mut self, concurrency: usize) -> DeploymentController {
        self.concurrency = concurrency.max(1);
        self
    }

    /// How the controller's watches read (the default [`WatcherConfig`] otherwise).
    #[must_use]
    pub fn watcher_config(mut self, config: WatcherConfig) -> DeploymentController {
        self.watcher_config = config;
        self
    }

    /// Runs the controller until `shutdown` resolves (then returns once the syncs in flight are
    /// done).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let config = self.watcher_config;
        let controller =
            Controller::new(Api::<Deployment>::all(self.client.clone()), config.clone())
                .concurrency(self.concurrency);
        let deployments = controller.store();
        let for_replica_sets = deployments.clone();
        let (controller, replica_sets) = controller.watches_with(
            Api::<ReplicaSet>::all(self.client.clone()),
            config.clone(),
            move |replica_set: &ReplicaSet| {
                deployments_of_replica_set(&for_replica_sets, replica_set)
            },
        );
        let for_pods = replica_sets.clone();
        let (controller, pods) = controller.watches_with(
            Api::<Pod>::all(self.client.clone()),
            config,
            move |pod: &Pod| recreate_deployment_of_pod(&deployments, &for_pods, pod),
        );
        let context = Arc::new(SyncContext {
            recorder: EventRecorder::new(self.client.clone(), COMPONENT),
            client: self.client,
            replica_sets,
            pods,
            written: Mutex::new(BTreeMap::new()),
            deployments_written: Mutex::new(BTreeMap::new()),
        });
        controller
            .run(
                |deployment, context: Arc<SyncContext>| async move {
                    match sync_deployment(deployment, &context).await {
                        // The cache is behind the store: the event that brings it up to date
                        // syncs the Deployment again.
                        Err(DeploymentError::Api { source, .. })
                            if source.reason == StatusReason::Conflict =>
                        {
                            Ok(Action::requeue(Duration::from_secs(1)))
                        }
                        other => other,
                    }
                },
                context,
                shutdown,
            )
            .await;
    }
}

/// The Deployments to sync when a ReplicaSet changes: its controller, or for an orphan, the
/// Deployments of its namespace whose selector matches it (they may adopt it).
fn deployments_of_replica_set(
    deployments: &Reader<Deployment>,
    replica_set: &ReplicaSet,
) -> Vec<ObjectRef> {
    let namespace = replica_set.metadata.namespace.clone().unwrap_or_default();
    match pods::controller_of(&replica_set.metadata) {
        Some(owner) if owner.kind == "Deployment" => {
            vec![ObjectRef::new(&owner.name).within(&namespace)]
        }
        Some(_) => Vec::new(),
        None => {
            let labels = replica_set.metadata.labels.clone().unwrap_or_default();
            deployments
                .state()
                .iter()
                .filter(|deployment| deployment.metadata.namespace.as_deref() == Some(&namespace))
                .filter(|deployment| {
                    deployment_selector(deployment)
                        .is_ok_and(|selector| !selector.is_empty() && selector.matches(&labels))
                })
                .map(|deployment| ObjectRef::from_obj(deployment.as_ref()))
                .collect()
        }
    }
}

/// The Recreate Deployment to sync when a pod changes: the controller of the pod's ReplicaSet
/// (rolling updates follow their ReplicaSets' statuses instead).
fn recreate_deployment_of_pod(
    deployments: &Reader<Deployment>,
    replica_sets: &Reader<ReplicaSet>,
    pod: &Pod,
) -> Vec<ObjectRef> {
    let Some(owner) = pods::controller_of(&pod.metadata).filter(|owner| owner.kind == "ReplicaSet")
    else {
        return Vec::new();
    };
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let Some(replica_set) = replica_sets.get(&ObjectRef::new(&owner.name).within(&namespace))
    else {
        return Vec::new();
    };
    if replica_set.metadata.uid.as_deref() != Some(owner.uid.as_str()) {
        return Vec::new();
    }
    let Some(deployment) = pods::controller_of(&replica_set.metadata)
        .filter(|owner| owner.kind == "Deployment")
        .map(|owner| ObjectRef::new(&owner.name).within(&namespace))
    else {
        return Vec::new();
    };
    match deployments.get(&deployment) {
        Some(found) if !is_rolling_update(&found) => vec![deployment],
        _ => Vec::new(),
    }
}

/// A write the cache has not shown yet.
#[derive(Debug)]
struct Written {
    /// The Deployment the write was made for.
    deployment: ObjectRef,
    generation: i64,
    resource_version: Option<u64>,
    since: Instant,
}

impl Written {
    fn of(deployment: &ObjectRef, meta: &ObjectMeta) -> Written {
        Written {
            deployment: deployment.clone(),
            generation: meta.generation.unwrap_or(0),
            resource_version: resource_version(meta),
            since: Instant::now(),
        }
    }

    /// Whether `cached` shows this write (or a later state of the object).
    fn shown_by(&self, cached: &ObjectMeta) -> bool {
        match (resource_version(cached), self.resource_version) {
            (Some(cached), Some(written)) => cached >= written,
            _ => cached.generation.unwrap_or(0) >= self.generation,
        }
    }

    fn expired(&self) -> bool {
        self.since.elapsed() > CACHE_LAG_TTL
    }
}

/// The object's resource version, as the number the store makes it.
fn resource_version(meta: &ObjectMeta) -> Option<u64> {
    meta.resource_version.as_deref()?.parse().ok()
}

struct SyncContext {
    client: Client,
    /// Records the Deployments' Events.
    recorder: EventRecorder,
    replica_sets: Reader<ReplicaSet>,
    pods: Reader<Pod>,
    /// ReplicaSet writes not yet seen in the cache, by ReplicaSet.
    written: Mutex<BTreeMap<ObjectRef, Written>>,
    /// Deployment writes not yet seen in the cache, by Deployment.
    deployments_written: Mutex<BTreeMap<ObjectRef, Written>>,
}

fn lock(map: &Mutex<BTreeMap<ObjectRef, Written>>) -> MutexGuard<'_, BTreeMap<ObjectRef, Written>> {
    map.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SyncContext {
    /// Remembers a ReplicaSet write, to wait for the cache to show it.
    fn note_written(&self, deployment: &ObjectRef, replica_set: &ReplicaSet) {
        lock(&self.written).insert(
            ObjectRef::from_obj(replica_set),
            Written::of(deployment, &replica_set.metadata),
        );
    }

    /// Remembers a write of the Deployment itself.
    fn note_deployment_written(&self, deployment: &ObjectRef, written: &Deployment) {
        lock(&self.deployments_written).insert(
            deployment.clone(),
            Written::of(deployment, &written.metadata),
        );
    }

    /// Whether the cache has not yet shown a write made for `deployment` (of the Deployment,
    /// `cached` being the cache's copy, or of one of its ReplicaSets).
    fn cache_lags(&self, deployment: &ObjectRef, cached: &Deployment) -> bool {
        let mut lags = false;
        {
            let mut written = lock(&self.deployments_written);
            if let Some(write) = written.get(deployment) {
                if write.shown_by(&cached.metadata) || write.expired() {
                    written.remove(deployment);
                } else {
                    lags = true;
                }
            }
        }
        lock(&self.written).retain(|key, write| {
            if &write.deployment != deployment {
                // Expired writes of other (perhaps deleted) Deployments go too.
                return !write.expired();
            }
            let seen = self
                .replica_sets
                .get(key)
                .is_some_and(|cached| write.shown_by(&cached.metadata));
            if seen || write.expired() {
                return false;
            }
            lags = true;
            true
        });
        lags
    }

    fn forget(&self, deployment: &ObjectRef) {
        lock(&self.written).retain(|_, write| &write.deployment != deployment);
        lock(&self.deployments_written).remove(deployment);
    }
}

// ---------------------------------------------------------------------------------------------
// Pure functions.
// ---------------------------------------------------------------------------------------------

/// Kubernetes' `rand.SafeEncodeString`: every byte of `input` replaced by a character of the
/// alphabet `bcdfghjklmnpqrstvwxz2456789`.
pub fn safe_encode(input: &str) -> String {
    input
        .bytes()
        .map(|byte| char::from(SAFE_ALPHABET[usize::from(byte) % SAFE_ALPHABET.len()]))
        .collect()
}

/// FNV-1a, 32 bits, continued from `hash`.
fn fnv1a(mut hash: u32, bytes: &[u8]) -> u32 {
    for byte in bytes {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// The `pod-template-hash` of a template: Kubernetes' `ComputeHash`, over the template's JSON
/// serialization (see the [module documentation](self)).
///
/// ```
/// use orchestra_core::controllers::deployment::compute_hash;
/// use orchestra_core::k8s::api::core::v1::PodTemplateSpec;
///
/// let template = PodTemplateSpec::default();
/// let hash = compute_hash(&template, None);
/// assert_eq!(hash, compute_hash(&template, None));
/// assert_ne!(hash, compute_hash(&template, Some(1)));
/// assert!(hash.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
/// ```
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let serialized = serde_json::to_vec(template).unwrap_or_default();
    let mut hash = fnv1a(0x811c_9dc5, &serialized);
    if let Some(count) = collision_count {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&u32::from_ne_bytes(count.to_ne_bytes()).to_le_bytes());
        hash = fnv1a(hash, &bytes);
    }
    safe_encode(&hash.to_string())
}

/// The value of `value` for `total` replicas: a number as it is, a percentage of `total`,
/// rounded up or down (Kubernetes' `GetScaledValueFromIntOrPercent`).
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match value {
        IntOrString::Int(value) => Ok(*value),
        IntOrString::String(text) => match text.strip_suffix('%') {
            Some(percent) => {
                let percent: i64 = percent
                    .parse()
                    .map_err(|_| format!("invalid percentage {text:?}"))?;
                let product = percent * i64::from(total);
                let scaled = if round_up {
                    product.div_euclid(100) + i64::from(product.rem_euclid(100) != 0)
                } else {
                    product.div_euclid(100)
                };
                i32::try_from(scaled).map_err(|_| format!("{text:?} of {total} is out of range"))
            }
            None => text
                .parse()
                .map_err(|_| format!("{text:?} is neither a number nor a percentage")),
        },
    }
}

/// `maxSurge` and `maxUnavailable` resolved for `replicas`: surge rounded up, unavailable rounded
/// down, and both 0 giving `maxUnavailable` 1 (Kubernetes' `ResolveFenceposts`).
///
/// ```
/// use orchestra_core::controllers::deployment::resolve_fenceposts;
/// use orchestra_core::k8s::apimachinery::pkg::util::intstr::IntOrString;
///
/// let quarter = IntOrString::String("25%".into());
/// assert_eq!(resolve_fenceposts(Some(&quarter), Some(&quarter), 10), Ok((3, 2)));
/// let zero = IntOrString::Int(0);
/// assert_eq!(resolve_fenceposts(Some(&zero), Some(&zero), 10), Ok((0, 1)));
/// ```
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    replicas: i32,
) -> Result<(i32, i32), String> {
    let zero = IntOrString::Int(0);
    let surge = scaled_value(max_surge.unwrap_or(&zero), replicas, true)?;
    let unavailable = scaled_value(max_unavailable.unwrap_or(&zero), replicas, false)?;
    if surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable))
}

/// A ReplicaSet's revision, from its annotation (`None` when it has none or it is not a number).
pub fn revision(meta: &ObjectMeta) -> Option<i64> {
    meta.annotations
        .as_ref()?
        .get(REVISION_ANNOTATION)?
        .parse()
        .ok()
}

/// Whether two templates are equal but for the `pod-template-hash` label (Kubernetes'
/// `EqualIgnoreHash`).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
        let mut template = template.clone();
        let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
        if let Some(labels) = meta.labels.as_mut() {
            labels.remove(POD_TEMPLATE_HASH_LABEL);
            if labels.is_empty() {
                meta.labels = None;
            }
        }
        template
    }
    without_hash(a) == without_hash(b)
}

fn deployment_name(deployment: &Deployment) -> String {
    format!(
        "{}/{}",
        deployment.metadata.namespace.as_deref().unwrap_or_default(),
        deployment.metadata.name.as_deref().unwrap_or_default()
    )
}

fn deployment_selector(deployment: &Deployment) -> Result<Selector, String> {
    let spec = deployment.spec.as_ref().ok_or("no spec")?;
    Selector::from_label_selector(Some(&spec.selector)).map_err(|error| error.to_string())
}

/// The Deployment's `replicas` (1 when unset).
fn desired(deployment: &Deployment) -> i32 {
    deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.replicas)
        .unwrap_or(1)
}

fn is_paused(deployment: &Deployment) -> bool {
    deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.paused)
        .unwrap_or(false)
}

/// Whether the strategy is RollingUpdate (the default) rather than Recreate.
fn is_rolling_update(deployment: &Deployment) -> bool {
    deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.strategy.as_ref())
        .and_then(|strategy| strategy.type_.as_deref())
        != Some("Recreate")
}

/// `maxSurge` and `maxUnavailable` of a Deployment, resolved (0 and 0 for Recreate).
fn fenceposts(deployment: &Deployment) -> Result<(i32, i32), DeploymentError> {
    if !is_rolling_update(deployment) {
        return Ok((0, 0));
    }
    let default = IntOrString::String("25%".into());
    let rolling = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.strategy.as_ref())
        .and_then(|strategy| strategy.rolling_update.as_ref());
    let surge = rolling
        .and_then(|rolling| rolling.max_surge.as_ref())
        .unwrap_or(&default);
    let unavailable = rolling
        .and_then(|rolling| rolling.max_unavailable.as_ref())
        .unwrap_or(&default);
    let replicas = desired(deployment);
    let (surge, unavailable) = resolve_fenceposts(Some(surge), Some(unavailable), replicas)
        .map_err(|message| DeploymentError::InvalidRollingUpdate {
            deployment: deployment_name(deployment),
            message,
        })?;
    Ok((surge, unavailable.min(replicas).max(0)))
}

fn max_surge(deployment: &Deployment) -> Result<i32, DeploymentError> {
    Ok(fenceposts(deployment)?.0)
}

/// `maxUnavailable`, at most `replicas` (0 for Recreate and for no replicas).
fn max_unavailable(deployment: &Deployment) -> Result<i32, DeploymentError> {
    if desired(deployment) == 0 {
        return Ok(0);
    }
    Ok(fenceposts(deployment)?.1)
}

fn spec_replicas(replica_set: &ReplicaSet) -> i32 {
    replica_set
        .spec
        .as_ref()
        .and_then(|spec| spec.replicas)
        .unwrap_or(1)
}

fn status_replicas(replica_set: &ReplicaSet) -> i32 {
    replica_set
        .status
        .as_ref()
        .map_or(0, |status| status.replicas)
}

fn status_ready(replica_set: &ReplicaSet) -> i32 {
    replica_set
        .status
        .as_ref()
        .and_then(|status| status.ready_replicas)
        .unwrap_or(0)
}

fn status_available(replica_set: &ReplicaSet) -> i32 {
    replica_set
        .status
        .as_ref()
        .and_then(|status| status.available_replicas)
        .unwrap_or(0)
}

/// Whether the ReplicaSet's status describes its current spec.
fn status_is_current(replica_set: &ReplicaSet) -> bool {
    replica_set.status.as_ref().is_some_and(|status| {
        status.observed_generation.unwrap_or(0) >= replica_set.metadata.generation.unwrap_or(0)
    })
}

/// How many active pods the ReplicaSet may have at most right now: what its spec asks for, or
/// what its status last counted if that is more.
fn pods_at_most(replica_set: &ReplicaSet) -> i32 {
    spec_replicas(replica_set).max(status_replicas(replica_set))
}

/// How many available pods the ReplicaSet surely has (see the module documentation).
fn surely_available(replica_set: &ReplicaSet) -> i32 {
    if status_is_current(replica_set) {
        status_available(replica_set)
            .min(spec_replicas(replica_set))
            .max(0)
    } else {
        0
    }
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn creation_key(replica_set: &ReplicaSet) -> (Option<Timestamp>, Option<String>) {
    (
        replica_set
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|time| time.0),
        replica_set.metadata.name.clone(),
    )
}

/// Sorts ReplicaSets oldest first (then by name).
fn sort_by_creation(replica_sets: &mut [ReplicaSet]) {
    replica_sets.sort_by_key(creation_key);
}

/// Finds the new ReplicaSet among `replica_sets` (sorted oldest first): the oldest whose
/// template is the Deployment's.
fn find_new(deployment: &Deployment, replica_sets: &[ReplicaSet]) -> Option<usize> {
    let template = &deployment.spec.as_ref()?.template;
    replica_sets.iter().position(|replica_set| {
        replica_set
            .spec
            .as_ref()
            .and_then(|spec| spec.template.as_ref())
            .is_some_and(|candidate| equal_ignore_hash(candidate, template))
    })
}

/// Sets the annotations of the new ReplicaSet (Kubernetes' `SetNewReplicaSetAnnotations`):
/// the Deployment's own annotations, the revision (with the former one in the history), and for
/// a ReplicaSet about to be created, the replicas annotations. Whether anything changed.
fn set_new_replica_set_annotations(
    deployment: &Deployment,
    replica_set: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
    max_surge: i32,
) -> bool {
    let mut changed = copy_deployment_annotations(deployment, replica_set);
    let annotations = replica_set
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new);
    let old = annotations.get(REVISION_ANNOTATION).cloned();
    let old_number = match old.as_deref().map(str::parse::<i64>) {
        None => 0,
        Some(Ok(number)) => number,
        Some(Err(_)) => return changed,
    };
    if old_number < new_revision {
        annotations.insert(REVISION_ANNOTATION.to_owned(), new_revision.to_string());
        changed = true;
        if let Some(old) = old.filter(|old| !old.is_empty()) {
            let history = match annotations.get(REVISION_HISTORY_ANNOTATION) {
                Some(history) if !history.is_empty() => format!("{history},{old}"),
                _ => old,
            };
            annotations.insert(REVISION_HISTORY_ANNOTATION.to_owned(), history);
        }
    }
    if !exists {
        let replicas = desired(deployment);
        changed |= set_replicas_annotations(replica_set, replicas, replicas + max_surge);
    }
    changed
}

/// Copies the Deployment's annotations (but the ones Kubernetes skips) to the ReplicaSet.
fn copy_deployment_annotations(deployment: &Deployment, replica_set: &mut ReplicaSet) -> bool {
    let Some(source) = deployment.metadata.annotations.as_ref() else {
        return false;
    };
    let target = replica_set
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (key, value) in source {
        if ANNOTATIONS_TO_SKIP.contains(&key.as_str()) || target.get(key) == Some(value) {
            continue;
        }
        target.insert(key.clone(), value.clone());
        changed = true;
    }
    changed
}

/// Sets the desired-replicas and max-replicas annotations; whether they changed.
fn set_replicas_annotations(replica_set: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let annotations = replica_set
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (key, value) in [
        (DESIRED_REPLICAS_ANNOTATION, desired),
        (MAX_REPLICAS_ANNOTATION, max),
    ] {
        let value = value.to_string();
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.to_owned(), value);
            changed = true;
        }
    }
    changed
}

/// The new ReplicaSet's `replicas` for a rollout (Kubernetes' `NewRSNewReplicas`, counting the
/// pods that may still exist rather than specs for RollingUpdate).
fn new_replica_set_replicas(
    deployment: &Deployment,
    all: &[ReplicaSet],
    new: Option<&ReplicaSet>,
) -> Result<i32, DeploymentError> {
    let replicas = desired(deployment);
    let new_replicas = new.map_or(0, spec_replicas);
    if !is_rolling_update(deployment) {
        return Ok(replicas);
    }
    let surge = max_surge(deployment)?;
    let current: i32 = all.iter().map(pods_at_most).sum::<i32>()
        + new.map_or(0, |new| {
            if all
                .iter()
                .any(|other| other.metadata.name == new.metadata.name)
            {
                0
            } else {
                pods_at_most(new)
            }
        });
    let most = replicas + surge;
    if current >= most {
        return Ok(new_replicas);
    }
    let up = (most - current).min(replicas - new_replicas).max(0);
    Ok(new_replicas + up)
}

/// The change of a ReplicaSet's size for a proportional scaling (Kubernetes' `getProportion`).
fn proportion(
    replica_set: &ReplicaSet,
    deployment: &Deployment,
    to_add: i32,
    added: i32,
    surge: i32,
) -> i32 {
    if spec_replicas(replica_set) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = replica_set_fraction(replica_set, deployment, surge);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// Kubernetes' `getReplicaSetFraction`: the ReplicaSet's share of the new size, minus its size.
fn replica_set_fraction(replica_set: &ReplicaSet, deployment: &Deployment, surge: i32) -> i32 {
    let replicas = spec_replicas(replica_set);
    if desired(deployment) == 0 {
        return -replicas;
    }
    let deployment_max = f64::from(desired(deployment) + surge);
    let annotated = annotation(&replica_set.metadata, MAX_REPLICAS_ANNOTATION)
        .and_then(|value| value.parse::<i32>().ok())
        .unwrap_or_else(|| {
            deployment
                .status
                .as_ref()
                .and_then(|status| status.replicas)
                .unwrap_or(0)
        });
    if annotated == 0 {
        return 0;
    }
    let share = f64::from(replicas) * deployment_max / f64::from(annotated);
    // Bounded by the sizes involved, which are i32.
    #[allow(clippy::cast_possible_truncation)]
    let share = share.round() as i32;
    share - replicas
}

/// The new sizes of the active ReplicaSets of a proportional scaling, by name (Kubernetes'
/// `scale` for rolling updates).
fn proportional_sizes(
    deployment: &Deployment,
    active: &[ReplicaSet],
    surge: i32,
) -> Vec<(String, i32)> {
    let replicas = desired(deployment);
    let allowed = if replicas > 0 { replicas + surge } else { 0 };
    let current: i32 = active.iter().map(spec_replicas).sum();
    let to_add = allowed - current;
    let mut ordered: Vec<&ReplicaSet> = active.iter().collect();
    // Largest first; among equals, newer first when growing and older first when shrinking.
    ordered.sort_by(|a, b| {
        spec_replicas(b).cmp(&spec_replicas(a)).then_with(|| {
            if to_add > 0 {
                creation_key(b).cmp(&creation_key(a))
            } else {
                creation_key(a).cmp(&creation_key(b))
            }
        })
    });
    let mut added = 0;
    let mut sizes: Vec<(String, i32)> = Vec::new();
    for replica_set in &ordered {
        let mut size = spec_replicas(replica_set);
        if to_add != 0 {
            let change = proportion(replica_set, deployment, to_add, added, surge);
            size += change;
            added += change;
        }
        sizes.push((replica_set.metadata.name.clone().unwrap_or_default(), size));
    }
    if let Some(first) = sizes.first_mut()
        && to_add != 0
    {
        first.1 = (first.1 + to_add - added).max(0);
    }
    sizes
}

fn condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|condition| condition.type_ == type_)
}

fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Kubernetes' `SetDeploymentCondition`: nothing when a condition of that type has the same
/// status and reason; otherwise the condition replaces it (keeping its transition time when the
/// status is the same).
fn set_condition(status: &mut DeploymentStatus, mut condition: DeploymentCondition) {
    if let Some(current) = self::condition(status, &condition.type_) {
        if current.status == condition.status && current.reason == condition.reason {
            return;
        }
        if current.status == condition.status {
            condition
                .last_transition_time
                .clone_from(&current.last_transition_time);
        }
    }
    remove_condition(status, &condition.type_);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(condition);
}

fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|condition| condition.type_ != type_);
    }
}

/// Whether the rollout is complete: every replica updated and available, the latest spec
/// observed (Kubernetes' `DeploymentComplete`).
fn is_complete(deployment: &Deployment, status: &DeploymentStatus) -> bool {
    let replicas = desired(deployment);
    status.updated_replicas.unwrap_or(0) == replicas
        && status.replicas.unwrap_or(0) == replicas
        && status.available_replicas.unwrap_or(0) == replicas
        && status.observed_generation.unwrap_or(0) >= deployment.metadata.generation.unwrap_or(0)
}

/// Whether `new` shows progress over `old` (Kubernetes' `DeploymentProgressing`).
fn is_progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let old_replicas = |status: &DeploymentStatus| {
        status.replicas.unwrap_or(0) - status.updated_replicas.unwrap_or(0)
    };
    new.updated_replicas.unwrap_or(0) > old.updated_replicas.unwrap_or(0)
        || old_replicas(new) < old_replicas(old)
        || new.ready_replicas.unwrap_or(0) > old.ready_replicas.unwrap_or(0)
        || new.available_replicas.unwrap_or(0) > old.available_replicas.unwrap_or(0)
}

/// The progress deadline, unless the Deployment has none (`i32::MAX` seconds, as Kubernetes).
fn progress_deadline(deployment: &Deployment) -> Option<Duration> {
    let seconds = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.progress_deadline_seconds)
        .unwrap_or(600);
    (seconds != i32::MAX).then(|| Duration::from_secs(u64::try_from(seconds.max(0)).unwrap_or(0)))
}

/// When the Progressing condition times out, if it can (Kubernetes' `DeploymentTimedOut`
/// arithmetic): the condition's last update plus the deadline.
fn deadline_at(deployment: &Deployment, status: &DeploymentStatus) -> Option<Timestamp> {
    let deadline = progress_deadline(deployment)?;
    let progressing = condition(status, PROGRESSING)?;
    let since = progressing.last_update_time.as_ref()?.0;
    let deadline = jiff::SignedDuration::try_from(deadline).ok()?;
    since.checked_add(deadline).ok()
}

/// The time, to whole seconds (what the API keeps of condition times).
fn now_seconds(client: &Client) -> Timestamp {
    let now = client.clock().now();
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

// ---------------------------------------------------------------------------------------------
// The sync.
// ---------------------------------------------------------------------------------------------

async fn sync_deployment(
    deployment: Arc<Deployment>,
    context: &SyncContext,
) -> Result<Action, DeploymentError> {
    let key = ObjectRef::from_obj(deployment.as_ref());
    if deployment.metadata.deletion_timestamp.is_some() {
        context.forget(&key);
        return Ok(Action::await_change());
    }
    if context.cache_lags(&key, &deployment) {
        return Ok(Action::requeue(CACHE_LAG_RETRY));
    }
    let Some(namespace) = deployment.metadata.namespace.clone() else {
        return Ok(Action::await_change());
    };
    let selector =
        deployment_selector(&deployment).map_err(|message| DeploymentError::InvalidSelector {
            deployment: deployment_name(&deployment),
            message,
        })?;
    if selector.is_empty() {
        // Kubernetes refuses to act on a selector that selects everything.
        context.recorder.event(
            deployment.as_ref(),
            EventType::Warning,
            SELECTING_ALL,
            "This deployment is selecting all pods. A non-empty selector is required.",
        );
        return Ok(Action::await_change());
    }
    let mut sync = Sync {
        context,
        key,
        deployments: Api::namespaced(context.client.clone(), &namespace),
        replica_sets_api: Api::namespaced(context.client.clone(), &namespace),
        deployment: (*deployment).clone(),
        replica_sets: Vec::new(),
        requeue: None,
    };
    sync.claim_replica_sets(&selector, &namespace).await?;
    sync.check_paused_conditions().await?;
    if is_paused(&sync.deployment) || sync.is_scaling_event()? {
        sync.sync_scale_only().await?;
    } else if is_rolling_update(&sync.deployment) {
        sync.rollout_rolling().await?;
    } else {
        sync.rollout_recreate().await?;
    }
    Ok(sync.requeue.map_or(Action::await_change(), Action::requeue))
}

/// One sync of one Deployment: the Deployment and its ReplicaSets as last read or written.
struct Sync<'a> {
    context: &'a SyncContext,
    key: ObjectRef,
    deployments: Api<Deployment>,
    replica_sets_api: Api<ReplicaSet>,
    deployment: Deployment,
    /// The ReplicaSets the Deployment controls, oldest first.
    replica_sets: Vec<ReplicaSet>,
    /// When to sync again, if sooner than the next change.
    requeue: Option<Duration>,
}

impl Sync<'_> {
    fn api_error(
        &self,
        action: &'static str,
        object: &str,
        source: StatusError,
    ) -> DeploymentError {
        DeploymentError::Api {
            action,
            object: format!(
                "{}/{object}",
                self.deployment
                    .metadata
                    .namespace
                    .as_deref()
                    .unwrap_or_default()
            ),
            source,
        }
    }

    fn name(&self) -> String {
        self.deployment.metadata.name.clone().unwrap_or_default()
    }

    fn requeue_after(&mut self, after: Duration) {
        self.requeue = Some(self.requeue.map_or(after, |current| current.min(after)));
    }

    /// Adopts the orphan ReplicaSets the selector matches, releases the controlled ones it no
    /// longer matches, and keeps the controlled ones.
    async fn claim_replica_sets(
        &mut self,
        selector: &Selector,
        namespace: &str,
    ) -> Result<(), DeploymentError> {
        let uid = self.deployment.metadata.uid.clone().unwrap_or_default();
        let mut owned = Vec::new();
        let mut adoption_checked: Option<bool> = None;
        for replica_set in self.context.replica_sets.state() {
            if replica_set.metadata.namespace.as_deref() != Some(namespace) {
                continue;
            }
            let labels = replica_set.metadata.labels.clone().unwrap_or_default();
            let matches = selector.matches(&labels);
            match pods::controller_of(&replica_set.metadata) {
                Some(owner) if owner.uid == uid => {
                    if matches {
                        owned.push((*replica_set).clone());
                    } else {
                        self.release(&replica_set, &uid).await?;
                    }
                }
                Some(_) => {}
                None => {
                    if !matches || replica_set.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    let can_adopt = match adoption_checked {
                        Some(can) => can,
                        None => {
                            let can = self.can_adopt(&uid).await?;
                            adoption_checked = Some(can);
                            can
                        }
                    };
                    if can_adopt && let Some(adopted) = self.adopt(&replica_set).await? {
                        owned.push(adopted);
                    }
                }
            }
        }
        sort_by_creation(&mut owned);
        self.replica_sets = owned;
        Ok(())
    }

    /// The uncached check before adopting: the Deployment still exists with the same uid and is
    /// not being deleted.
    async fn can_adopt(&self, uid: &str) -> Result<bool, DeploymentError> {
        let name = self.name();
        let fresh = self
            .deployments
            .get_opt(&name)
            .await
            .map_err(|source| self.api_error("read deployment", &name, source))?;
        Ok(fresh.is_some_and(|fresh| {
            fresh.metadata.uid.as_deref() == Some(uid)
                && fresh.metadata.deletion_timestamp.is_none()
        }))
    }

    async fn adopt(&self, replica_set: &ReplicaSet) -> Result<Option<ReplicaSet>, DeploymentError> {
        let mut adopted = replica_set.clone();
        adopted
            .metadata
            .owner_references
            .get_or_insert_with(Vec::new)
            .push(pods::controller_reference(&self.deployment));
        let name = adopted.metadata.name.clone().unwrap_or_default();
        match self
            .replica_sets_api
            .replace(&name, &PostParams::default(), &adopted)
            .await
        {
            Ok(adopted) => {
                self.context.note_written(&self.key, &adopted);
                Ok(Some(adopted))
            }
            Err(error) if error.is_not_found() => Ok(None),
            Err(source) => Err(self.api_error("adopt replica set", &name, source)),
        }
    }

    async fn release(&self, replica_set: &ReplicaSet, uid: &str) -> Result<(), DeploymentError> {
        let mut released = replica_set.clone();
        if let Some(references) = released.metadata.owner_references.as_mut() {
            references.retain(|reference| reference.uid != uid);
        }
        let name = released.metadata.name.clone().unwrap_or_default();
        match self
            .replica_sets_api
            .replace(&name, &PostParams::default(), &released)
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if error.is_not_found() => Ok(()),
            Err(source) => Err(self.api_error("release replica set", &name, source)),
        }
    }

    /// The new ReplicaSet's index, if there is one.
    fn new_index(&self) -> Option<usize> {
        find_new(&self.deployment, &self.replica_sets)
    }

    fn old_replica_sets(&self) -> Vec<ReplicaSet> {
        let new = self.new_index();
        self.replica_sets
            .iter()
            .enumerate()
            .filter(|(index, _)| Some(*index) != new)
            .map(|(_, replica_set)| replica_set.clone())
            .collect()
    }

    fn new_replica_set(&self) -> Option<ReplicaSet> {
        self.new_index()
            .and_then(|index| self.replica_sets.get(index).cloned())
    }

    /// Whether this sync is a change of `replicas` (an active ReplicaSet's desired-replicas
    /// annotation is not the Deployment's `replicas`): Kubernetes' `isScalingEvent`.
    fn is_scaling_event(&self) -> Result<bool, DeploymentError> {
        let replicas = desired(&self.deployment).to_string();
        Ok(self
            .replica_sets
            .iter()
            .filter(|replica_set| spec_replicas(replica_set) > 0)
            .any(|replica_set| {
                annotation(&replica_set.metadata, DESIRED_REPLICAS_ANNOTATION)
                    .is_some_and(|value| value != replicas)
            }))
    }

    /// Writes the Deployment's status when it differs from `status`.
    async fn write_status(&mut self, status: DeploymentStatus) -> Result<(), DeploymentError> {
        if self.deployment.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let mut updated = self.deployment.clone();
        updated.status = Some(status);
        let name = self.name();
        let written = self
            .deployments
            .replace_status(&name, &PostParams::default(), &updated)
            .await
            .map_err(|source| self.api_error("update status of deployment", &name, source))?;
        self.context.note_deployment_written(&self.key, &written);
        self.deployment = written;
        Ok(())
    }

    /// Sets the Deployment's revision annotation.
    async fn set_deployment_revision(&mut self, revision: &str) -> Result<(), DeploymentError> {
        if annotation(&self.deployment.metadata, REVISION_ANNOTATION) == Some(revision) {
            return Ok(());
        }
        let name = self.name();
        let patch = serde_json::json!({
            "metadata": {"annotations": {REVISION_ANNOTATION: revision}},
        });
        let patched = self
            .deployments
            .patch(&name, &PatchParams::new(PatchType::Merge), &patch)
            .await
            .map_err(|source| self.api_error("annotate deployment", &name, source))?;
        self.context.note_deployment_written(&self.key, &patched);
        self.deployment = patched;
        Ok(())
    }

    /// Kubernetes' `checkPausedConditions`: `Progressing` `Unknown` when paused or resumed.
    async fn check_paused_conditions(&mut self) -> Result<(), DeploymentError> {
        if progress_deadline(&self.deployment).is_none() {
            return Ok(());
        }
        let status = self.deployment.status.clone().unwrap_or_default();
        let current = condition(&status, PROGRESSING);
        if current.is_some_and(|c| c.reason.as_deref() == Some(PROGRESS_DEADLINE_EXCEEDED)) {
            return Ok(());
        }
        let paused_condition =
            current.is_some_and(|c| c.reason.as_deref() == Some(DEPLOYMENT_PAUSED));
        let now = now_seconds(&self.context.client);
        let mut status = status.clone();
        if is_paused(&self.deployment) && !paused_condition {
            set_condition(
                &mut status,
                new_condition(
                    PROGRESSING,
                    "Unknown",
                    DEPLOYMENT_PAUSED,
                    "Deployment is paused".into(),
                    now,
                ),
            );
        } else if !is_paused(&self.deployment) && paused_condition {
            set_condition(
                &mut status,
                new_condition(
                    PROGRESSING,
                    "Unknown",
                    DEPLOYMENT_RESUMED,
                    "Deployment is resumed".into(),
                    now,
                ),
            );
        } else {
            return Ok(());
        }
        self.write_status(status).await
    }

    /// Finds (and brings up to date) or, with `create`, creates the new ReplicaSet: Kubernetes'
    /// `getNewReplicaSet`. Returns its index.
    async fn sync_new_replica_set(
        &mut self,
        create: bool,
    ) -> Result<Option<usize>, DeploymentError> {
        let old = self.old_replica_sets();
        let max_old_revision = old
            .iter()
            .filter_map(|replica_set| revision(&replica_set.metadata))
            .max()
            .unwrap_or(0);
        let new_revision = max_old_revision + 1;
        let surge = max_surge(&self.deployment)?;
        if let Some(index) = self.new_index() {
            let mut updated = self.replica_sets[index].clone();
            let mut changed = set_new_replica_set_annotations(
                &self.deployment,
                &mut updated,
                new_revision,
                true,
                surge,
            );
            let min_ready = self
                .deployment
                .spec
                .as_ref()
                .and_then(|spec| spec.min_ready_seconds);
            if let Some(spec) = updated.spec.as_mut()
                && spec.min_ready_seconds != min_ready
            {
                spec.min_ready_seconds = min_ready;
                changed = true;
            }
            if changed {
                self.replace_replica_set(index, updated).await?;
            }
            let revision = annotation(&self.replica_sets[index].metadata, REVISION_ANNOTATION)
                .unwrap_or_default()
                .to_owned();
            self.set_deployment_revision(&revision).await?;
            let status = self.deployment.status.clone().unwrap_or_default();
            if condition(&status, PROGRESSING).is_none() {
                let mut status = status;
                let name = self.replica_sets[index]
                    .metadata
                    .name
                    .clone()
                    .unwrap_or_default();
                set_condition(
                    &mut status,
                    new_condition(
                        PROGRESSING,
                        "True",
                        FOUND_NEW_REPLICA_SET,
                        format!("Found new replica set \"{name}\""),
                        now_seconds(&self.context.client),
                    ),
                );
                self.write_status(status).await?;
            }
            return Ok(Some(index));
        }
        if !create {
            return Ok(None);
        }
        self.create_new_replica_set(new_revision, surge)
            .await
            .map(Some)
    }

    async fn create_new_replica_set(
        &mut self,
        new_revision: i64,
        surge: i32,
    ) -> Result<usize, DeploymentError> {
        let Some(spec) = self.deployment.spec.clone() else {
            return Err(DeploymentError::InvalidSelector {
                deployment: deployment_name(&self.deployment),
                message: "no spec".into(),
            });
        };
        let collision_count = self
            .deployment
            .status
            .as_ref()
            .and_then(|status| status.collision_count);
        let hash = compute_hash(&spec.template, collision_count);
        let mut template = spec.template.clone();
        let template_meta = template.metadata.get_or_insert_with(ObjectMeta::default);
        template_meta
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH_LABEL.to_owned(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH_LABEL.to_owned(), hash.clone());
        let name = format!("{}-{hash}", self.name());
        let mut replica_set = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.deployment.metadata.namespace.clone(),
                labels: template_meta.labels.clone(),
                owner_references: Some(vec![pods::controller_reference(&self.deployment)]),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let replicas =
            new_replica_set_replicas(&self.deployment, &self.replica_sets, Some(&replica_set))?;
        if let Some(spec) = replica_set.spec.as_mut() {
            spec.replicas = Some(replicas);
        }
        set_new_replica_set_annotations(
            &self.deployment,
            &mut replica_set,
            new_revision,
            false,
            surge,
        );
        let created = match self
            .replica_sets_api
            .create(&PostParams::default(), &replica_set)
            .await
        {
            Ok(created) => {
                self.context.note_written(&self.key, &created);
                if replicas > 0 {
                    self.context.recorder.event(
                        &self.deployment,
                        EventType::Normal,
                        SCALING_REPLICA_SET,
                        &format!("Scaled up replica set {name} from 0 to {replicas}"),
                    );
                }
                created
            }
            Err(error) if error.reason == StatusReason::AlreadyExists => {
                let existing = self
                    .replica_sets_api
                    .get(&name)
                    .await
                    .map_err(|source| self.api_error("read replica set", &name, source))?;
                let ours = pods::is_controlled_by(&existing.metadata, &self.deployment.metadata);
                let same = existing
                    .spec
                    .as_ref()
                    .and_then(|spec| spec.template.as_ref())
                    .is_some_and(|template| equal_ignore_hash(template, &spec.template));
                if ours && same {
                    // Our cache had not seen it yet.
                    self.context.note_written(&self.key, &existing);
                    existing
                } else {
                    let mut status = self.deployment.status.clone().unwrap_or_default();
                    let count = status.collision_count.unwrap_or(0).saturating_add(1);
                    status.collision_count = Some(count);
                    self.write_status(status).await?;
                    return Err(DeploymentError::HashCollision {
                        name,
                        collision_count: count,
                    });
                }
            }
            Err(source) => {
                self.context.recorder.event(
                    &self.deployment,
                    EventType::Warning,
                    REPLICA_SET_CREATE_ERROR,
                    &format!("Failed to create new replica set \"{name}\": {source}"),
                );
                return Err(self.api_error("create replica set", &name, source));
            }
        };
        let revision = annotation(&created.metadata, REVISION_ANNOTATION)
            .unwrap_or_default()
            .to_owned();
        self.replica_sets.push(created);
        sort_by_creation(&mut self.replica_sets);
        self.set_deployment_revision(&revision).await?;
        let mut status = self.deployment.status.clone().unwrap_or_default();
        if progress_deadline(&self.deployment).is_some() {
            set_condition(
                &mut status,
                new_condition(
                    PROGRESSING,
                    "True",
                    NEW_REPLICA_SET_CREATED,
                    format!("Created new replica set \"{name}\""),
                    now_seconds(&self.context.client),
                ),
            );
            self.write_status(status).await?;
        }
        self.replica_sets
            .iter()
            .position(|replica_set| replica_set.metadata.name.as_deref() == Some(&name))
            .ok_or_else(|| {
                self.api_error(
                    "find created replica set",
                    &name,
                    StatusError::internal("lost"),
                )
            })
    }

    async fn replace_replica_set(
        &mut self,
        index: usize,
        replica_set: ReplicaSet,
    ) -> Result<(), DeploymentError> {
        let name = replica_set.metadata.name.clone().unwrap_or_default();
        let written = self
            .replica_sets_api
            .replace(&name, &PostParams::default(), &replica_set)
            .await
            .map_err(|source| self.api_error("update replica set", &name, source))?;
        self.context.note_written(&self.key, &written);
        if let Some(slot) = self.replica_sets.get_mut(index) {
            *slot = written;
        }
        Ok(())
    }

    /// Sets a ReplicaSet's `replicas` (and its replicas annotations): Kubernetes'
    /// `scaleReplicaSet`. Whether anything was written.
    async fn scale(&mut self, name: &str, replicas: i32) -> Result<bool, DeploymentError> {
        let Some(index) = self
            .replica_sets
            .iter()
            .position(|replica_set| replica_set.metadata.name.as_deref() == Some(name))
        else {
            return Ok(false);
        };
        let surge = max_surge(&self.deployment)?;
        let desired = desired(&self.deployment);
        let mut updated = self.replica_sets[index].clone();
        let old = spec_replicas(&updated);
        let mut changed = set_replicas_annotations(&mut updated, desired, desired + surge);
        let mut resized = false;
        if let Some(spec) = updated.spec.as_mut()
            && spec.replicas != Some(replicas)
        {
            spec.replicas = Some(replicas);
            changed = true;
            resized = old != replicas;
        }
        if !changed {
            return Ok(false);
        }
        self.replace_replica_set(index, updated).await?;
        if resized {
            let direction = if old < replicas { "up" } else { "down" };
            self.context.recorder.event(
                &self.deployment,
                EventType::Normal,
                SCALING_REPLICA_SET,
                &format!("Scaled {direction} replica set {name} from {old} to {replicas}"),
            );
        }
        Ok(true)
    }

    /// Kubernetes' `sync`: scaling only, for paused Deployments and changes of `replicas`.
    async fn sync_scale_only(&mut self) -> Result<(), DeploymentError> {
        self.sync_new_replica_set(false).await?;
        self.scale_proportionally().await?;
        if is_paused(&self.deployment) {
            self.cleanup().await?;
        }
        let status = self.calculate_status()?;
        self.write_status(status).await
    }

    /// Kubernetes' `scale`.
    async fn scale_proportionally(&mut self) -> Result<(), DeploymentError> {
        let replicas = desired(&self.deployment);
        let new = self.new_replica_set();
        let old = self.old_replica_sets();
        let active: Vec<ReplicaSet> = self
            .replica_sets
            .iter()
            .filter(|replica_set| spec_replicas(replica_set) > 0)
            .cloned()
            .collect();
        // One active ReplicaSet (or none: the newest) takes every replica.
        let active_or_latest = match active.len() {
            0 => new.clone().or_else(|| old.last().cloned()),
            1 => active.first().cloned(),
            _ => None,
        };
        if let Some(only) = active_or_latest {
            if spec_replicas(&only) != replicas {
                let name = only.metadata.name.clone().unwrap_or_default();
                self.scale(&name, replicas).await?;
            }
            return Ok(());
        }
        // The new ReplicaSet is saturated: the old ones go.
        if let Some(new) = &new
            && spec_replicas(new) == replicas
            && annotation(&new.metadata, DESIRED_REPLICAS_ANNOTATION)
                == Some(replicas.to_string().as_str())
            && status_available(new) == replicas
        {
            for replica_set in old {
                let name = replica_set.metadata.name.clone().unwrap_or_default();
                if spec_replicas(&replica_set) != 0 {
                    self.scale(&name, 0).await?;
                }
            }
            return Ok(());
        }
        if is_rolling_update(&self.deployment) {
            let surge = max_surge(&self.deployment)?;
            for (name, size) in proportional_sizes(&self.deployment, &active, surge) {
                self.scale(&name, size).await?;
            }
        }
        Ok(())
    }

    /// Kubernetes' `rolloutRolling`.
    async fn rollout_rolling(&mut self) -> Result<(), DeploymentError> {
        let Some(new_index) = self.sync_new_replica_set(true).await? else {
            return Ok(());
        };
        if self.reconcile_new_replica_set(new_index).await? {
            return self.sync_rollout_status().await;
        }
        if self.reconcile_old_replica_sets().await? {
            return self.sync_rollout_status().await;
        }
        let status = self.calculate_status()?;
        if is_complete(&self.deployment, &status) {
            self.cleanup().await?;
        }
        self.sync_rollout_status().await
    }

    /// Scales the new ReplicaSet up within the surge (or down to `replicas`).
    async fn reconcile_new_replica_set(&mut self, index: usize) -> Result<bool, DeploymentError> {
        let replicas = desired(&self.deployment);
        let Some(new) = self.replica_sets.get(index).cloned() else {
            return Ok(false);
        };
        let name = new.metadata.name.clone().unwrap_or_default();
        let current = spec_replicas(&new);
        if current == replicas {
            return Ok(false);
        }
        if current > replicas {
            return self.scale(&name, replicas).await;
        }
        let others: Vec<ReplicaSet> = self
            .replica_sets
            .iter()
            .enumerate()
            .filter(|(other, _)| *other != index)
            .map(|(_, replica_set)| replica_set.clone())
            .collect();
        let mut all = others;
        all.push(new.clone());
        let target = new_replica_set_replicas(&self.deployment, &all, Some(&new))?;
        if target == current {
            return Ok(false);
        }
        self.scale(&name, target).await
    }

    /// Removes unhealthy old pods, then scales old ReplicaSets down as far as availability
    /// allows (Kubernetes' `reconcileOldReplicaSets`, counting only sure availability).
    async fn reconcile_old_replica_sets(&mut self) -> Result<bool, DeploymentError> {
        let old: Vec<ReplicaSet> = self.old_replica_sets();
        if old
            .iter()
            .all(|replica_set| spec_replicas(replica_set) == 0)
        {
            return Ok(false);
        }
        let Some(new) = self.new_replica_set() else {
            return Ok(false);
        };
        let replicas = desired(&self.deployment);
        let min_available = replicas - max_unavailable(&self.deployment)?;
        let all_pods: i32 = self.replica_sets.iter().map(spec_replicas).sum();
        let new_unavailable = (spec_replicas(&new) - surely_available(&new)).max(0);
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        // Unhealthy replicas first (only where the status is current).
        let mut cleaned = 0;
        for replica_set in &old {
            let size = spec_replicas(replica_set);
            if size == 0 || !status_is_current(replica_set) {
                continue;
            }
            let unhealthy = size - surely_available(replica_set);
            if unhealthy <= 0 {
                continue;
            }
            let down = unhealthy.min(max_scaled_down - cleaned);
            if down <= 0 {
                break;
            }
            let name = replica_set.metadata.name.clone().unwrap_or_default();
            self.scale(&name, size - down).await?;
            cleaned += down;
        }
        // Then as far as the availability budget goes.
        let available: i32 = self.replica_sets.iter().map(surely_available).sum();
        let mut scaled = 0;
        if available > min_available {
            let budget = available - min_available;
            for replica_set in self.old_replica_sets() {
                let size = spec_replicas(&replica_set);
                if size == 0 {
                    continue;
                }
                if scaled >= budget {
                    break;
                }
                let down = size.min(budget - scaled);
                let name = replica_set.metadata.name.clone().unwrap_or_default();
                self.scale(&name, size - down).await?;
                scaled += down;
            }
        }
        Ok(cleaned + scaled > 0)
    }

    /// Kubernetes' `rolloutRecreate`, waiting for every old pod to be gone.
    async fn rollout_recreate(&mut self) -> Result<(), DeploymentError> {
        self.sync_new_replica_set(false).await?;
        let mut scaled_down = false;
        for replica_set in self.old_replica_sets() {
            if spec_replicas(&replica_set) != 0 {
                let name = replica_set.metadata.name.clone().unwrap_or_default();
                scaled_down |= self.scale(&name, 0).await?;
            }
        }
        if scaled_down || self.old_pods_exist() {
            return self.sync_rollout_status().await;
        }
        let Some(index) = self.sync_new_replica_set(true).await? else {
            return Ok(());
        };
        let replicas = desired(&self.deployment);
        let name = self.replica_sets[index]
            .metadata
            .name
            .clone()
            .unwrap_or_default();
        if spec_replicas(&self.replica_sets[index]) != replicas {
            self.scale(&name, replicas).await?;
        }
        let status = self.calculate_status()?;
        if is_complete(&self.deployment, &status) {
            self.cleanup().await?;
        }
        self.sync_rollout_status().await
    }

    /// Whether any pod of an old ReplicaSet may still exist: one in the pod cache (terminating
    /// or not), or an old ReplicaSet whose status is stale (or missing) or counts replicas.
    fn old_pods_exist(&self) -> bool {
        let old = self.old_replica_sets();
        if old
            .iter()
            .any(|replica_set| !status_is_current(replica_set) || status_replicas(replica_set) > 0)
        {
            return true;
        }
        let uids: BTreeSet<&str> = old
            .iter()
            .filter_map(|replica_set| replica_set.metadata.uid.as_deref())
            .collect();
        let namespace = self.deployment.metadata.namespace.as_deref();
        self.context.pods.state().iter().any(|pod| {
            pod.metadata.namespace.as_deref() == namespace
                && pods::controller_of(&pod.metadata)
                    .is_some_and(|owner| uids.contains(owner.uid.as_str()))
        })
    }

    /// Deletes the oldest old ReplicaSets beyond `revisionHistoryLimit` that have no replicas
    /// (Kubernetes' `cleanupDeployment`).
    async fn cleanup(&mut self) -> Result<(), DeploymentError> {
        let Some(limit) = self
            .deployment
            .spec
            .as_ref()
            .and_then(|spec| spec.revision_history_limit)
        else {
            return Ok(());
        };
        let mut cleanable: Vec<ReplicaSet> = self
            .old_replica_sets()
            .into_iter()
            .filter(|replica_set| replica_set.metadata.deletion_timestamp.is_none())
            .collect();
        let excess = i64::try_from(cleanable.len()).unwrap_or(i64::MAX) - i64::from(limit.max(0));
        if excess <= 0 {
            return Ok(());
        }
        cleanable.sort_by(|a, b| {
            revision(&a.metadata)
                .unwrap_or(0)
                .cmp(&revision(&b.metadata).unwrap_or(0))
                .then_with(|| creation_key(a).cmp(&creation_key(b)))
        });
        for replica_set in cleanable
            .iter()
            .take(usize::try_from(excess).unwrap_or(usize::MAX))
        {
            if status_replicas(replica_set) != 0
                || spec_replicas(replica_set) != 0
                || !status_is_current(replica_set)
            {
                continue;
            }
            let name = replica_set.metadata.name.clone().unwrap_or_default();
            match self
                .replica_sets_api
                .delete(&name, &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(error) if error.is_not_found() => {}
                Err(source) => return Err(self.api_error("delete replica set", &name, source)),
            }
            self.replica_sets
                .retain(|kept| kept.metadata.name.as_deref() != Some(&name));
        }
        Ok(())
    }

    /// Kubernetes' `calculateStatus`.
    fn calculate_status(&self) -> Result<DeploymentStatus, DeploymentError> {
        let new = self.new_replica_set();
        let available: i32 = self.replica_sets.iter().map(status_available).sum();
        let total: i32 = self.replica_sets.iter().map(spec_replicas).sum();
        let mut status = self.deployment.status.clone().unwrap_or_default();
        status.observed_generation = self.deployment.metadata.generation;
        status.replicas = Some(self.replica_sets.iter().map(status_replicas).sum());
        status.updated_replicas = Some(new.as_ref().map_or(0, status_replicas));
        status.ready_replicas = Some(self.replica_sets.iter().map(status_ready).sum());
        status.available_replicas = Some(available);
        status.unavailable_replicas = Some((total - available).max(0));
        let now = now_seconds(&self.context.client);
        let minimum = desired(&self.deployment) - max_unavailable(&self.deployment)?;
        if available >= minimum {
            set_condition(
                &mut status,
                new_condition(
                    AVAILABLE,
                    "True",
                    MINIMUM_REPLICAS_AVAILABLE,
                    "Deployment has minimum availability.".into(),
                    now,
                ),
            );
        } else {
            set_condition(
                &mut status,
                new_condition(
                    AVAILABLE,
                    "False",
                    MINIMUM_REPLICAS_UNAVAILABLE,
                    "Deployment does not have minimum availability.".into(),
                    now,
                ),
            );
        }
        Ok(status)
    }

    /// The `ReplicaFailure` condition of the new ReplicaSet, or else of an old one, if one has
    /// it `True` (Kubernetes' `getReplicaFailures`).
    fn replica_failure(&self) -> Option<k8s_openapi::api::apps::v1::ReplicaSetCondition> {
        let new = self.new_replica_set();
        new.into_iter()
            .chain(self.old_replica_sets())
            .filter_map(|replica_set| replica_set.status?.conditions)
            .flatten()
            .find(|condition| condition.type_ == REPLICA_FAILURE && condition.status == "True")
    }

    /// Kubernetes' `syncRolloutStatus`: the status with the Progressing condition, and a requeue
    /// for when the progress deadline would pass.
    async fn sync_rollout_status(&mut self) -> Result<(), DeploymentError> {
        let mut status = self.calculate_status()?;
        let old_status = self.deployment.status.clone().unwrap_or_default();
        let now = now_seconds(&self.context.client);
        let deadline = progress_deadline(&self.deployment);
        if deadline.is_none() {
            remove_condition(&mut status, PROGRESSING);
        }
        let current = condition(&status, PROGRESSING).cloned();
        let complete_before = status.replicas == status.updated_replicas
            && current
                .as_ref()
                .is_some_and(|c| c.reason.as_deref() == Some(NEW_REPLICA_SET_AVAILABLE));
        let new_name = self
            .new_replica_set()
            .and_then(|new| new.metadata.name)
            .unwrap_or_default();
        if deadline.is_some() && !complete_before {
            if is_complete(&self.deployment, &status) {
                let message = if new_name.is_empty() {
                    format!(
                        "Deployment \"{}\" has successfully progressed.",
                        self.name()
                    )
                } else {
                    format!("ReplicaSet \"{new_name}\" has successfully progressed.")
                };
                set_condition(
                    &mut status,
                    new_condition(PROGRESSING, "True", NEW_REPLICA_SET_AVAILABLE, message, now),
                );
            } else if is_progressing(&old_status, &status) {
                let mut progressing = new_condition(
                    PROGRESSING,
                    "True",
                    REPLICA_SET_UPDATED,
                    format!("ReplicaSet \"{new_name}\" is progressing."),
                    now,
                );
                if let Some(current) = &current {
                    if current.status == "True" {
                        progressing
                            .last_transition_time
                            .clone_from(&current.last_transition_time);
                    }
                    remove_condition(&mut status, PROGRESSING);
                }
                set_condition(&mut status, progressing);
            } else if current.as_ref().is_some_and(|c| {
                c.reason.as_deref() != Some(NEW_REPLICA_SET_AVAILABLE)
                    && c.reason.as_deref() != Some(PROGRESS_DEADLINE_EXCEEDED)
            }) && deadline_at(&self.deployment, &status).is_some_and(|at| at < now)
            {
                set_condition(
                    &mut status,
                    new_condition(
                        PROGRESSING,
                        "False",
                        PROGRESS_DEADLINE_EXCEEDED,
                        format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                        now,
                    ),
                );
            }
        }
        // A ReplicaSet that cannot create or delete pods: its failure is the Deployment's.
        match self.replica_failure() {
            Some(failure) => set_condition(
                &mut status,
                new_condition(
                    REPLICA_FAILURE,
                    &failure.status,
                    failure.reason.as_deref().unwrap_or_default(),
                    failure.message.clone().unwrap_or_default(),
                    now,
                ),
            ),
            None => remove_condition(&mut status, REPLICA_FAILURE),
        }
        // Come back when the deadline would pass, unless done or already timed out.
        if !is_complete(&self.deployment, &status)
            && let Some(current) = condition(&status, PROGRESSING)
            && current.reason.as_deref() != Some(PROGRESS_DEADLINE_EXCEEDED)
            && let Some(at) = deadline_at(&self.deployment, &status)
        {
            let remaining = at.duration_since(now);
            let remaining = Duration::try_from(remaining).unwrap_or(Duration::ZERO);
            self.requeue_after(remaining + Duration::from_secs(1));
        }
        self.write_status(status).await
    }
}

// ---------------------------------------------------------------------------------------------
// Rollback, pause, resume.
// ---------------------------------------------------------------------------------------------

/// Rolls a Deployment back to the template of an earlier revision, as
/// `kubectl rollout undo [--to-revision=N]` does: finds the ReplicaSet of that revision
/// (`None` or `Some(0)`: the revision before the latest), copies its pod template (without the
/// `pod-template-hash` label) into the Deployment, with the ReplicaSet's annotations (but the
/// revision and replicas ones, which the Deployment keeps), and replaces the Deployment. The
/// controller then makes that ReplicaSet the new one, with the next revision number.
///
/// When the Deployment already runs that template, nothing is written and the Deployment is
/// returned as it is (kubectl's "skipped rollback").
pub async fn rollback(
    deployments: &Api<Deployment>,
    replica_sets: &Api<ReplicaSet>,
    name: &str,
    to_revision: Option<i64>,
) -> Result<Deployment, RollbackError> {
    let api_error = |action: &'static str| {
        move |source: StatusError| RollbackError::Api {
            action,
            name: name.to_owned(),
            source,
        }
    };
    let invalid = |message: &str| RollbackError::Invalid {
        name: name.to_owned(),
        message: message.to_owned(),
    };
    let deployment = deployments
        .get(name)
        .await
        .map_err(api_error("read the deployment"))?;
    if is_paused(&deployment) {
        return Err(RollbackError::Paused {
            name: name.to_owned(),
        });
    }
    let Some(spec) = deployment.spec.as_ref() else {
        return Err(invalid("it has no spec"));
    };
    let listed = replica_sets
        .list(&Default::default())
        .await
        .map_err(api_error("list replica sets"))?;
    let mut owned: Vec<ReplicaSet> = listed
        .items
        .into_iter()
        .filter(|replica_set| pods::is_controlled_by(&replica_set.metadata, &deployment.metadata))
        .collect();
    sort_by_creation(&mut owned);
    let to_revision = to_revision.filter(|revision| *revision != 0);
    let chosen = match to_revision {
        Some(wanted) => owned
            .iter()
            .find(|replica_set| revision(&replica_set.metadata) == Some(wanted))
            .ok_or(RollbackError::RevisionNotFound {
                name: name.to_owned(),
                revision: wanted,
            })?,
        None => {
            let mut by_revision: Vec<(i64, &ReplicaSet)> = owned
                .iter()
                .filter_map(|replica_set| Some((revision(&replica_set.metadata)?, replica_set)))
                .collect();
            by_revision.sort_by_key(|(revision, _)| std::cmp::Reverse(*revision));
            by_revision
                .get(1)
                .map(|(_, replica_set)| *replica_set)
                .ok_or(RollbackError::NoPreviousRevision {
                    name: name.to_owned(),
                })?
        }
    };
    let Some(template) = chosen.spec.as_ref().and_then(|spec| spec.template.clone()) else {
        return Err(invalid("the replica set of that revision has no template"));
    };
    if equal_ignore_hash(&template, &spec.template) {
        return Ok(deployment);
    }
    let mut template = template;
    if let Some(labels) = template
        .metadata
        .as_mut()
        .and_then(|meta| meta.labels.as_mut())
    {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    let mut annotations: BTreeMap<String, String> = BTreeMap::new();
    let current = deployment.metadata.annotations.clone().unwrap_or_default();
    for key in ANNOTATIONS_TO_SKIP {
        if let Some(value) = current.get(key) {
            annotations.insert(key.to_owned(), value.clone());
        }
    }
    for (key, value) in chosen.metadata.annotations.iter().flatten() {
        if !ANNOTATIONS_TO_SKIP.contains(&key.as_str()) {
            annotations.insert(key.clone(), value.clone());
        }
    }
    let mut rolled = deployment.clone();
    rolled.metadata.annotations = Some(annotations);
    if let Some(spec) = rolled.spec.as_mut() {
        spec.template = template;
    }
    deployments
        .replace(name, &PostParams::default(), &rolled)
        .await
        .map_err(api_error("replace the deployment"))
}

/// Pauses a Deployment (`spec.paused: true`, as `kubectl rollout pause`): the controller goes on
/// scaling it but rolls nothing out until it is resumed.
pub async fn pause(deployments: &Api<Deployment>, name: &str) -> Result<Deployment, StatusError> {
    set_paused(deployments, name, true).await
}

/// Resumes a paused Deployment (as `kubectl rollout resume`).
pub async fn resume(deployments: &Api<Deployment>, name: &str) -> Result<Deployment, StatusError> {
    set_paused(deployments, name, false).await
}

async fn set_paused(
    deployments: &Api<Deployment>,
    name: &str,
    paused: bool,
) -> Result<Deployment, StatusError> {
    let value = if paused {
        serde_json::Value::Bool(true)
    } else {
        serde_json::Value::Null
    };
    deployments
        .patch(
            name,
            &PatchParams::new(PatchType::Merge),
            &serde_json::json!({"spec": {"paused": value}}),
        )
        .await
}

#[cfg(test)]
mod tests;
