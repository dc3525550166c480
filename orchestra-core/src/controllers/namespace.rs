//! The namespace controller: a deleted namespace is emptied, then removed (Kubernetes'
//! `pkg/controller/namespace`).
//!
//! Deleting a namespace does not remove it at once. The API marks it terminating (a
//! `deletionTimestamp`, phase `Terminating`) and refuses new objects in it; the namespace keeps
//! the `kubernetes` entry of its `spec.finalizers`. The [`NamespaceController`] then deletes every
//! object of every namespaced kind in it (with background propagation, each object's own
//! finalizers and graceful deletion respected), waits until they are all gone, and removes
//! `kubernetes` from `spec.finalizers`, upon which the API deletes the namespace (once no other
//! finalizer is left).
//!
//! While content remains, the namespace's status carries Kubernetes' deletion conditions —
//! `NamespaceDeletionContentFailure`, `NamespaceContentRemaining`,
//! `NamespaceFinalizersRemaining` (and `NamespaceDeletionDiscoveryFailure`,
//! `NamespaceDeletionGroupVersionParsingFailure`, always false here) — and the namespace is
//! looked at again after Kubernetes' estimate: half the longest grace period still running, or
//! of 15 seconds when objects wait for finalizers, plus one second. Failures are retried with
//! the work queue's back-off.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//!
//! use orchestra_core::api::{Api, Client, DeleteParams, PostParams};
//! use orchestra_core::controllers::namespace::NamespaceController;
//! use orchestra_core::k8s::api::core::v1::{ConfigMap, Namespace};
//! use orchestra_core::k8s::apimachinery::pkg::apis::meta::v1::ObjectMeta;
//! use orchestra_core::store::MemoryStore;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
//! let client = Client::new(MemoryStore::new());
//! let named = |name: &str| ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() };
//! let namespaces: Api<Namespace> = Api::all(client.clone());
//! namespaces
//!     .create(&PostParams::default(), &Namespace { metadata: named("shop"), ..Namespace::default() })
//!     .await?;
//! let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "shop");
//! config_maps
//!     .create(&PostParams::default(), &ConfigMap { metadata: named("settings"), ..ConfigMap::default() })
//!     .await?;
//!
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let controller = tokio::spawn(NamespaceController::new(client).run(async move {
//!     let _ = stopped.await;
//! }));
//! namespaces.delete("shop", &DeleteParams::default()).await?;
//! tokio::time::sleep(Duration::from_secs(1)).await;
//! assert!(config_maps.get_opt("settings").await?.is_none());
//! assert!(namespaces.get_opt("shop").await?.is_none());
//!
//! let _ = stop.send(());
//! controller.await.unwrap();
//! # Ok::<(), orchestra_core::status::StatusError>(())
//! # }).unwrap();
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition, NamespaceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{Api, Client, DeleteParams, ListParams, PostParams, PropagationPolicy};
use crate::resource::{ApiResource, DynamicObject, ResourceExt};
use crate::runtime::Action;
use crate::runtime::controller::Controller;
use crate::runtime::watcher::WatcherConfig;
use crate::status::StatusError;

/// The entry of `spec.finalizers` that this controller owns.
pub const FINALIZER: &str = "kubernetes";

/// How many namespaces are emptied at once by default (Kubernetes' `--concurrent-namespace-syncs`).
pub const DEFAULT_CONCURRENCY: usize = 10;

/// How long objects that wait for finalizers are expected to take, by default (Kubernetes'
/// `finalizerEstimateSeconds`).
pub const DEFAULT_FINALIZER_ESTIMATE: Duration = Duration::from_secs(15);

/// The field manager of the controller's writes.
const FIELD_MANAGER: &str = "namespace-controller";

/// How many times a read-modify-write of the namespace is tried against newer versions.
const CONFLICT_ATTEMPTS: usize = 5;

/// The deletion conditions, in the order Kubernetes lists them.
const CONDITION_TYPES: [&str; 5] = [
    "NamespaceDeletionDiscoveryFailure",
    "NamespaceDeletionGroupVersionParsingFailure",
    "NamespaceDeletionContentFailure",
    "NamespaceContentRemaining",
    "NamespaceFinalizersRemaining",
];

/// Why emptying a namespace failed this time; it is tried again with back-off.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NamespaceError {
    /// An API request about the namespace itself failed.
    #[error(transparent)]
    Api(#[from] StatusError),
    /// Deleting or listing some kinds of content failed.
    #[error("failed to delete all resource types, {} remaining: {}", .0.len(), .0.join(", "))]
    ContentDeletion(Vec<String>),
    /// Objects remain that neither wait for finalizers nor terminate gracefully: they should
    /// have been deleted.
    #[error("unexpected items still remain in the namespace: {}", .0.join(", "))]
    UnexpectedContent(Vec<String>),
}

/// The namespace controller: see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct NamespaceController {
    client: Client,
    concurrency: usize,
    finalizer_estimate: Duration,
}

/// What one pass over a terminating namespace's content found.
#[derive(Debug, Default)]
struct Content {
    /// The kinds whose deletion or listing failed, with why.
    failures: Vec<String>,
    /// Objects remaining, by kind (`pods`, `replicasets.apps`).
    remaining: BTreeMap<String, usize>,
    /// Objects remaining, by finalizer they wait for.
    finalizers: BTreeMap<String, usize>,
    /// Kinds with objects remaining that neither wait for finalizers nor terminate gracefully.
    unexpected: Vec<String>,
    /// How long the remaining content is expected to take.
    estimate: Duration,
}

impl NamespaceController {
    /// A controller of the namespaces of `client`.
    pub fn new(client: Client) -> NamespaceController {
        NamespaceController {
            client,
            concurrency: DEFAULT_CONCURRENCY,
            finalizer_estimate: DEFAULT_FINALIZER_ESTIMATE,
        }
    }

    /// How many namespaces are emptied at once ([`DEFAULT_CONCURRENCY`] by default).
    #[must_use]
    pub fn concurrency(mut self, concurrency: usize) -> NamespaceController {
        self.concurrency = concurrency.max(1);
        self
    }

    /// How long objects that wait for finalizers are expected to take
    /// ([`DEFAULT_FINALIZER_ESTIMATE`] by default): a namespace whose content waits for
    /// finalizers is looked at again after half of it, plus a second.
    #[must_use]
    pub fn finalizer_estimate(mut self, estimate: Duration) -> NamespaceController {
        self.finalizer_estimate = estimate;
        self
    }

    /// Runs the controller until `shutdown` resolves. The future spawns no task; on shutdown it
    /// returns once the namespaces being worked on are done with.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let concurrency = self.concurrency;
        Controller::new(api, WatcherConfig::default())
            .concurrency(concurrency)
            .run(
                |namespace, controller: Arc<NamespaceController>| async move {
                    controller.reconcile(&namespace).await
                },
                Arc::new(self),
                shutdown,
            )
            .await;
    }

    fn namespaces(&self) -> Api<Namespace> {
        Api::all(self.client.clone())
    }

    /// Empties and finalizes a terminating namespace (Kubernetes' `namespacedResourcesDeleter`).
    async fn reconcile(&self, cached: &Namespace) -> Result<Action, NamespaceError> {
        if cached.metadata.deletion_timestamp.is_none() {
            return Ok(Action::AwaitChange);
        }
        let name = cached.name_any();
        // The cache may lag: work on the namespace as it is now.
        let Some(namespace) = self.namespaces().get_opt(&name).await? else {
            return Ok(Action::AwaitChange);
        };
        if namespace.metadata.uid != cached.metadata.uid
            || namespace.metadata.deletion_timestamp.is_none()
            || !finalizing(&namespace)
        {
            return Ok(Action::AwaitChange);
        }
        let content = self.delete_content(&name).await;
        self.update_conditions(&namespace, &content).await?;
        if !content.failures.is_empty() {
            return Err(NamespaceError::ContentDeletion(content.failures));
        }
        if !content.unexpected.is_empty() {
            return Err(NamespaceError::UnexpectedContent(content.unexpected));
        }
        if !content.remaining.is_empty() {
            let estimate = content.estimate.as_secs();
            return Ok(Action::requeue(Duration::from_secs(estimate / 2 + 1)));
        }
        self.finalize(&namespace).await?;
        Ok(Action::AwaitChange)
    }

    /// Deletes every object of every namespaced kind in the namespace, then lists what remains.
    async fn delete_content(&self, namespace: &str) -> Content {
        let mut content = Content::default();
        let resources: Vec<ApiResource> = self
            .client
            .scheme()
            .resources()
            .filter(|r| r.namespaced)
            .cloned()
            .collect();
        for resource in &resources {
            if let Err(error) = self.delete_collection(resource, namespace).await {
                content.failures.push(format!(
                    "{}: {}",
                    resource.qualified_plural(),
                    error.message
                ));
                continue;
            }
            let remaining = match self
                .client
                .list(resource, Some(namespace), &ListParams::default())
                .await
            {
                Ok(list) => list.items,
                Err(error) => {
                    content.failures.push(format!(
                        "{}: {}",
                        resource.qualified_plural(),
                        error.message
                    ));
                    continue;
                }
            };
            if remaining.is_empty() {
                continue;
            }
            content
                .remaining
                .insert(resource.qualified_plural(), remaining.len());
            let mut expected = false;
            for object in &remaining {
                for finalizer in object.finalizers() {
                    *content.finalizers.entry(finalizer.clone()).or_default() += 1;
                    expected = true;
                    content.estimate = content.estimate.max(self.finalizer_estimate);
                }
                if let Some(grace) = self.grace_remaining(object) {
                    expected = true;
                    content.estimate = content.estimate.max(grace);
                }
            }
            if !expected {
                content.unexpected.push(resource.qualified_plural());
            }
        }
        content
    }

    /// Deletes the objects of one kind in the namespace (those not terminating already), with
    /// background propagation.
    async fn delete_collection(
        &self,
        resource: &ApiResource,
        namespace: &str,
    ) -> Result<(), StatusError> {
        let list = self
            .client
            .list(resource, Some(namespace), &ListParams::default())
            .await?;
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        for object in list.items {
            if object.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let name = object.name_any();
            match self
                .client
                .delete(resource, Some(namespace), &name, &params)
                .await
            {
                Ok(_) => {}
                Err(error) if error.is_not_found() => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// How long a gracefully terminating object (a pod its node is stopping) still has.
    fn grace_remaining(&self, object: &DynamicObject) -> Option<Duration> {
        let meta = &object.metadata;
        if meta.deletion_grace_period_seconds.unwrap_or(0) <= 0 {
            return None;
        }
        let deadline = meta.deletion_timestamp.as_ref()?.0;
        let left = deadline.duration_since(self.client.clock().now());
        let seconds = u64::try_from(left.as_secs()).unwrap_or(0).max(1);
        Some(Duration::from_secs(seconds))
    }

    /// Writes the deletion conditions to the namespace's status, when they changed.
    async fn update_conditions(
        &self,
        namespace: &Namespace,
        content: &Content,
    ) -> Result<(), StatusError> {
        let wanted = conditions(content);
        let namespaces = self.namespaces();
        let name = namespace.name_any();
        let mut current = namespace.clone();
        for attempt in 1..=CONFLICT_ATTEMPTS {
            let status = current.status.get_or_insert_with(NamespaceStatus::default);
            let existing = status.conditions.clone().unwrap_or_default();
            let merged = merge_conditions(&existing, &wanted, self.now());
            if merged == existing {
                return Ok(());
            }
            status.conditions = Some(merged);
            let params = PostParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PostParams::default()
            };
            match namespaces.replace_status(&name, &params, &current).await {
                Ok(_) => return Ok(()),
                Err(error) if error.is_not_found() => return Ok(()),
                Err(error) if error.is_conflict() && attempt < CONFLICT_ATTEMPTS => {
                    match namespaces.get_opt(&name).await? {
                        Some(fresh) if fresh.metadata.uid == namespace.metadata.uid => {
                            current = fresh;
                        }
                        _ => return Ok(()),
                    }
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Removes [`FINALIZER`] from the namespace's `spec.finalizers`.
    async fn finalize(&self, namespace: &Namespace) -> Result<(), StatusError> {
        let namespaces = self.namespaces();
        let name = namespace.name_any();
        let mut current = namespace.clone();
        for attempt in 1..=CONFLICT_ATTEMPTS {
            let Some(finalizers) = current
                .spec
                .as_mut()
                .and_then(|spec| spec.finalizers.as_mut())
            else {
                return Ok(());
            };
            let before = finalizers.len();
            finalizers.retain(|f| f != FINALIZER);
            if finalizers.len() == before {
                return Ok(());
            }
            let params = PostParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PostParams::default()
            };
            match namespaces.replace(&name, &params, &current).await {
                Ok(_) => return Ok(()),
                Err(error) if error.is_not_found() => return Ok(()),
                Err(error) if error.is_conflict() && attempt < CONFLICT_ATTEMPTS => {
                    match namespaces.get_opt(&name).await? {
                        Some(fresh) if fresh.metadata.uid == namespace.metadata.uid => {
                            current = fresh;
                        }
                        _ => return Ok(()),
                    }
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    fn now(&self) -> Time {
        Time(self.client.clock().now())
    }
}

/// Whether the namespace still carries this controller's finalizer.
fn finalizing(namespace: &Namespace) -> bool {
    namespace
        .spec
        .as_ref()
        .and_then(|spec| spec.finalizers.as_ref())
        .is_some_and(|finalizers| finalizers.iter().any(|f| f == FINALIZER))
}

/// The deletion conditions a pass calls for, as Kubernetes words them (without transition
/// times).
fn conditions(content: &Content) -> Vec<NamespaceCondition> {
    let condition = |kind: &str, failed: bool, reason: &str, message: String| NamespaceCondition {
        type_: kind.to_owned(),
        status: if failed { "True" } else { "False" }.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message),
        last_transition_time: None,
    };
    let [discovery, parsing, deletion, remaining, finalizers] = CONDITION_TYPES;
    vec![
        condition(
            discovery,
            false,
            "ResourcesDiscovered",
            "All resources successfully discovered".to_owned(),
        ),
        condition(
            parsing,
            false,
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".to_owned(),
        ),
        if content.failures.is_empty() {
            condition(
                deletion,
                false,
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization".to_owned(),
            )
        } else {
            condition(
                deletion,
                true,
                "ContentDeletionFailed",
                format!(
                    "Failed to delete all resource types, {} remaining: {}",
                    content.failures.len(),
                    content.failures.join(", ")
                ),
            )
        },
        if content.remaining.is_empty() {
            condition(
                remaining,
                false,
                "ContentRemoved",
                "All content successfully removed".to_owned(),
            )
        } else {
            let counts: Vec<String> = content
                .remaining
                .iter()
                .map(|(kind, count)| format!("{kind} has {count} resource instances"))
                .collect();
            condition(
                remaining,
                true,
                "SomeResourcesRemain",
                format!("Some resources are remaining: {}", counts.join(", ")),
            )
        },
        if content.finalizers.is_empty() {
            condition(
                finalizers,
                false,
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished".to_owned(),
            )
        } else {
            let counts: Vec<String> = content
                .finalizers
                .iter()
                .map(|(finalizer, count)| format!("{finalizer} in {count} resource instances"))
                .collect();
            condition(
                finalizers,
                true,
                "SomeFinalizersRemain",
                format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    counts.join(", ")
                ),
            )
        },
    ]
}

/// The namespace's conditions with the deletion conditions set to `wanted`: a condition whose
/// status is unchanged keeps its transition time; other conditions are kept as they are.
fn merge_conditions(
    existing: &[NamespaceCondition],
    wanted: &[NamespaceCondition],
    now: Time,
) -> Vec<NamespaceCondition> {
    let mut merged: Vec<NamespaceCondition> = existing
        .iter()
        .filter(|c| !CONDITION_TYPES.contains(&c.type_.as_str()))
        .cloned()
        .collect();
    for condition in wanted {
        let mut condition = condition.clone();
        condition.last_transition_time = match existing.iter().find(|c| c.type_ == condition.type_)
        {
            Some(before) if before.status == condition.status => {
                before.last_transition_time.clone()
            }
            _ => Some(now.clone()),
        };
        merged.push(condition);
    }
    // Keep the existing order when nothing but the deletion conditions' content changed.
    merged.sort_by_key(|c| {
        existing
            .iter()
            .position(|e| e.type_ == c.type_)
            .unwrap_or(usize::MAX)
    });
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_say_what_remains() {
        let content = Content {
            remaining: [
                ("configmaps".to_owned(), 2),
                ("replicasets.apps".to_owned(), 1),
            ]
            .into(),
            finalizers: [("example.com/hold".to_owned(), 1)].into(),
            estimate: DEFAULT_FINALIZER_ESTIMATE,
            ..Content::default()
        };
        let conditions = conditions(&content);
        let remaining = &conditions[3];
        assert_eq!(remaining.type_, "NamespaceContentRemaining");
        assert_eq!(remaining.status, "True");
        assert_eq!(
            remaining.message.as_deref(),
            Some(
                "Some resources are remaining: configmaps has 2 resource instances, replicasets.apps has 1 resource instances"
            )
        );
        let finalizers = &conditions[4];
        assert_eq!(
            finalizers.message.as_deref(),
            Some(
                "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
            )
        );
        assert_eq!(conditions[2].status, "False");
    }

    #[test]
    fn transition_times_move_only_when_the_status_does() {
        let then = Time(jiff::Timestamp::UNIX_EPOCH);
        let now = Time(jiff::Timestamp::from_second(60).unwrap());
        let remaining = Content {
            remaining: [("configmaps".to_owned(), 1)].into(),
            ..Content::default()
        };
        let first = merge_conditions(&[], &conditions(&remaining), then.clone());
        assert!(
            first
                .iter()
                .all(|c| c.last_transition_time.as_ref() == Some(&then))
        );
        let second = merge_conditions(&first, &conditions(&Content::default()), now.clone());
        let time_of = |kind: &str| {
            second
                .iter()
                .find(|c| c.type_ == kind)
                .and_then(|c| c.last_transition_time.clone())
        };
        assert_eq!(time_of("NamespaceContentRemaining"), Some(now));
        assert_eq!(time_of("NamespaceDeletionContentFailure"), Some(then));
        assert_eq!(
            merge_conditions(
                &second,
                &conditions(&Content::default()),
                Time(jiff::Timestamp::UNIX_EPOCH)
            ),
            second
        );
    }
}
