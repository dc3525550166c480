//! The garbage collector: objects whose owners are gone are deleted, as the owners' deletion
//! propagation policy says (Kubernetes' `pkg/controller/garbagecollector`).
//!
//! An object names its owners in `metadata.ownerReferences` (kind, name and uid of each). When
//! the last of its owners is gone, the object is garbage. How an owner's deletion reaches its
//! dependents is the delete's [propagation policy](crate::api::PropagationPolicy):
//!
//! - **Background**: the owner is deleted at once; the collector then deletes each dependent
//!   whose owners are all gone.
//! - **Foreground**: the API marks the owner terminating with the `foregroundDeletion` finalizer;
//!   the collector deletes its dependents (in the foreground too when they have dependents of
//!   their own), and once every dependent whose reference has `blockOwnerDeletion: true` is gone,
//!   removes the finalizer, which lets the API delete the owner.
//! - **Orphan**: the API marks the owner with the `orphan` finalizer; the collector removes the
//!   owner's reference from every dependent, then the finalizer.
//!
//! # How it works
//!
//! The collector watches every kind its client serves (Events excepted, as in Kubernetes) as
//! [`DynamicObject`]s, through one [`watcher`] per kind, and keeps an ownership graph: every object
//! seen, and for every owner uid the objects that refer to it. Changes to the graph put uids on
//! two [`WorkQueue`]s, worked only once every kind has been listed:
//!
//! - *attempt to delete* an object: read it from the API; if it waits for its dependents
//!   (foreground), remove its finalizer once no blocking dependent is left, otherwise queue the
//!   blocking dependents; if not, check each owner with a **live read** (by kind, name and the
//!   dependent's namespace, and then by uid: an owner recreated under the same name is another
//!   object, and counts as gone). With an owner that exists and is not deleting in the foreground,
//!   the object stays, and loses its references to the owners that are gone or deleting in the
//!   foreground. Otherwise it is deleted: in the foreground when an owner deletes in the
//!   foreground and the object has dependents itself, else as its own finalizers say (background
//!   by default). A reference to a namespaced owner from a cluster-scoped object is invalid and
//!   keeps the object, as Kubernetes does.
//! - *attempt to orphan* an owner: remove its reference from each of its dependents, then its
//!   `orphan` finalizer.
//!
//! Failed attempts (a conflict, an unreachable store) are retried with the queues' rate-limited
//! back-off. Every write is checked against the object's uid and resource version, so each step
//! is safe to repeat, and the whole state is rebuilt from the store's lists on start: a collector
//! that restarts picks up where the last one stopped.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//!
//! use orchestra_core::api::{Api, Client, DeleteParams, PostParams};
//! use orchestra_core::controllers::garbage_collector::GarbageCollector;
//! use orchestra_core::k8s::api::core::v1::ConfigMap;
//! use orchestra_core::k8s::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
//! use orchestra_core::store::MemoryStore;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
//! let client = Client::new(MemoryStore::new());
//! client.bootstrap().await?;
//! let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
//! let named = |name: &str| ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() };
//!
//! let owner = config_maps
//!     .create(&PostParams::default(), &ConfigMap { metadata: named("owner"), ..ConfigMap::default() })
//!     .await?;
//! let mut dependent = ConfigMap { metadata: named("dependent"), ..ConfigMap::default() };
//! dependent.metadata.owner_references = Some(vec![OwnerReference {
//!     api_version: "v1".into(),
//!     kind: "ConfigMap".into(),
//!     name: "owner".into(),
//!     uid: owner.metadata.uid.clone().unwrap_or_default(),
//!     ..OwnerReference::default()
//! }]);
//! config_maps.create(&PostParams::default(), &dependent).await?;
//!
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let collector = tokio::spawn(GarbageCollector::new(client).run(async move {
//!     let _ = stopped.await;
//! }));
//! config_maps.delete("owner", &DeleteParams::default()).await?;
//! tokio::time::sleep(Duration::from_secs(1)).await;
//! assert!(config_maps.get_opt("dependent").await?.is_none());
//!
//! let _ = stop.send(());
//! collector.await.unwrap();
//! # Ok::<(), orchestra_core::status::StatusError>(())
//! # }).unwrap();
//! ```

mod graph;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Preconditions};
use tokio::sync::watch;

use self::graph::{AbsentOwner, FOREGROUND_DELETION, Graph, Node, ORPHAN, Work};
use crate::api::{Api, Client, DeleteParams, PostParams, PropagationPolicy, Subresource};
use crate::resource::{ApiResource, DynamicObject};
use crate::runtime::watcher::{WatcherConfig, WatcherError, WatcherEvent, watcher};
use crate::runtime::{Action, WorkQueue};
use crate::status::StatusError;

/// How many workers each queue has by default (Kubernetes' `--concurrent-gc-syncs`).
pub const DEFAULT_WORKERS: usize = 20;

/// The field manager of the collector's writes.
const FIELD_MANAGER: &str = "garbage-collector";

/// How many times a read-modify-write of one object is tried against newer versions before the
/// attempt fails (and is retried later, with back-off).
const CONFLICT_ATTEMPTS: usize = 5;

/// Why one attempt of the collector failed; the attempt is retried with back-off.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    /// An API request failed.
    #[error(transparent)]
    Api(#[from] StatusError),
    /// An owner reference names a kind the client does not serve.
    #[error("the owner kind {api_version}/{kind} is not served")]
    UnknownOwnerKind {
        /// The reference's `apiVersion`.
        api_version: String,
        /// The reference's `kind`.
        kind: String,
    },
}

/// The garbage collector: see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct GarbageCollector {
    client: Client,
    workers: usize,
    ignored: BTreeSet<(String, String)>,
    watcher: WatcherConfig,
}

impl GarbageCollector {
    /// A collector of the objects of every kind `client` serves, except Events.
    pub fn new(client: Client) -> GarbageCollector {
        GarbageCollector {
            client,
            workers: DEFAULT_WORKERS,
            ignored: [
                (String::new(), "Event".to_owned()),
                ("events.k8s.io".to_owned(), "Event".to_owned()),
            ]
            .into(),
            watcher: WatcherConfig::default(),
        }
    }

    /// How many objects each queue works on at once ([`DEFAULT_WORKERS`] by default).
    #[must_use]
    pub fn workers(mut self, workers: usize) -> GarbageCollector {
        self.workers = workers.max(1);
        self
    }

    /// Leaves the objects of a kind alone (by API group and kind): they are not watched, so they
    /// are never collected and their dependents are collected only when something else wakes
    /// them.
    #[must_use]
    pub fn ignore(mut self, group: &str, kind: &str) -> GarbageCollector {
        self.ignored.insert((group.to_owned(), kind.to_owned()));
        self
    }

    /// How the collector's watchers read (the page size of their lists, their back-off).
    #[must_use]
    pub fn watcher_config(mut self, config: WatcherConfig) -> GarbageCollector {
        self.watcher = config;
        self
    }

    /// The kinds the collector watches.
    pub fn resources(&self) -> Vec<ApiResource> {
        self.client
            .scheme()
            .resources()
            .filter(|r| !self.ignored.contains(&(r.group.clone(), r.kind.clone())))
            .cloned()
            .collect()
    }

    /// Runs the collector until `shutdown` resolves: see the [module documentation](self).
    ///
    /// Nothing is collected before every kind has been listed once. The future spawns no task;
    /// on shutdown it stops taking work and returns once the attempts in flight have finished.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let resources = self.resources();
        let collector = Collector {
            client: self.client.clone(),
            graph: Mutex::new(Graph::new(resources.clone())),
            attempt_to_delete: WorkQueue::new(),
            attempt_to_orphan: WorkQueue::new(),
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let (synced_tx, synced_rx) = watch::channel(resources.is_empty());
        let signal = async move {
            shutdown.await;
            stop_tx.send_replace(true);
        };
        let streams = resources.iter().enumerate().map(|(index, resource)| {
            let api = Api::<DynamicObject>::all_with(self.client.clone(), resource);
            watcher(api, self.watcher.clone())
                .map(move |event| (index, event))
                .boxed()
        });
        let events = futures_util::stream::select_all(streams).boxed();
        let building = collector.build_graph(events, stop_rx.clone(), synced_tx);
        let working = collector.work(self.workers, stop_rx, synced_rx);
        futures_util::future::join3(signal, building, working).await;
    }
}

type Events = BoxStream<'static, (usize, Result<WatcherEvent<DynamicObject>, WatcherError>)>;

/// Resolves once the stop signal is given.
async fn stopped(mut stop: watch::Receiver<bool>) {
    // The sender lives as long as the `run` future; if it is gone, so is the reason to go on.
    let _ = stop.wait_for(|stop| *stop).await;
}

/// What a running collector shares between its graph builder and its workers.
struct Collector {
    client: Client,
    graph: Mutex<Graph>,
    attempt_to_delete: WorkQueue<String>,
    attempt_to_orphan: WorkQueue<String>,
}

/// How an object's owner references stand (Kubernetes' `classifyReferences`).
#[derive(Debug, Default)]
struct Classified {
    /// Owners that exist and are not deleting in the foreground.
    solid: Vec<OwnerReference>,
    /// Owners that do not exist (or exist under another uid).
    dangling: Vec<OwnerReference>,
    /// Owners that exist and are deleting in the foreground.
    waiting: Vec<OwnerReference>,
}

/// Where an object is: its kind, namespace and name, and the uid it must have.
struct Target<'a> {
    resource: &'a ApiResource,
    namespace: Option<&'a str>,
    name: &'a str,
    uid: &'a str,
}

fn has_finalizer(object: &DynamicObject, finalizer: &str) -> bool {
    object
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == finalizer)
}

fn is_deleting_dependents(object: &DynamicObject) -> bool {
    object.metadata.deletion_timestamp.is_some() && has_finalizer(object, FOREGROUND_DELETION)
}

impl Collector {
    fn graph(&self) -> MutexGuard<'_, Graph> {
        // The graph is only changed in small steps that keep it consistent.
        self.graph.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enqueue(&self, work: Work) {
        for uid in work.attempt_to_delete {
            self.attempt_to_delete.add(uid);
        }
        for uid in work.attempt_to_orphan {
            self.attempt_to_orphan.add(uid);
        }
    }

    /// Feeds the watchers' events into the graph until the stop signal.
    async fn build_graph(
        &self,
        mut events: Events,
        stop: watch::Receiver<bool>,
        synced: watch::Sender<bool>,
    ) {
        let mut stop = std::pin::pin!(stopped(stop));
        loop {
            tokio::select! {
                biased;
                () = &mut stop => break,
                event = events.next() => match event {
                    Some((index, Ok(event))) => {
                        let (work, now_synced) = {
                            let mut graph = self.graph();
                            let work = graph.apply(index, event);
                            (work, graph.synced())
                        };
                        self.enqueue(work);
                        if now_synced && !*synced.borrow() {
                            synced.send_replace(true);
                        }
                    }
                    // The watcher retries by itself, with back-off.
                    Some((_, Err(_))) => {}
                    None => {
                        // No kind to watch.
                        (&mut stop).await;
                        break;
                    }
                },
            }
        }
    }

    /// Works the queues, once the graph is synced, until the stop signal.
    async fn work(
        &self,
        workers: usize,
        stop: watch::Receiver<bool>,
        mut synced: watch::Receiver<bool>,
    ) {
        let proceed = tokio::select! {
            biased;
            result = synced.wait_for(|synced| *synced) => result.is_ok(),
            () = stopped(stop.clone()) => false,
        };
        if proceed {
            let deleting = self.attempt_to_delete.run_until(
                workers,
                |uid: String| async move { self.attempt_to_delete(&uid).await },
                stopped(stop.clone()),
            );
            let orphaning = self.attempt_to_orphan.run_until(
                workers,
                |uid: String| async move { self.attempt_to_orphan(&uid).await },
                stopped(stop),
            );
            futures_util::future::join(deleting, orphaning).await;
        }
        self.attempt_to_delete.shut_down();
        self.attempt_to_orphan.shut_down();
    }

    fn resource(&self, index: usize) -> Option<ApiResource> {
        self.graph().resources().get(index).cloned()
    }

    /// Reads an object, `None` when it is gone or is another object by now (another uid).
    async fn live(&self, target: &Target<'_>) -> Result<Option<DynamicObject>, StatusError> {
        match self
            .client
            .get(target.resource, target.namespace, target.name)
            .await
        {
            Ok(object) if object.metadata.uid.as_deref() == Some(target.uid) => Ok(Some(object)),
            Ok(_) => Ok(None),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Changes an object with `edit` (which says whether it changed anything) and writes it back
    /// if it did, against the version read, retrying on conflicts. Nothing happens to an object
    /// that is gone or is another object by now.
    async fn update(
        &self,
        target: &Target<'_>,
        edit: impl Fn(&mut DynamicObject) -> bool,
    ) -> Result<(), StatusError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let Some(mut object) = self.live(target).await? else {
                return Ok(());
            };
            if !edit(&mut object) {
                return Ok(());
            }
            let params = PostParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PostParams::default()
            };
            match self
                .client
                .replace(
                    target.resource,
                    target.namespace,
                    target.name,
                    object,
                    &params,
                    Subresource::Main,
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(error) if error.is_not_found() => return Ok(()),
                Err(error) if error.is_conflict() && attempts < CONFLICT_ATTEMPTS => continue,
                Err(error) => return Err(error),
            }
        }
    }

    async fn remove_finalizer(
        &self,
        target: &Target<'_>,
        finalizer: &str,
    ) -> Result<(), StatusError> {
        self.update(target, |object| {
            let Some(finalizers) = object.metadata.finalizers.as_mut() else {
                return false;
            };
            let before = finalizers.len();
            finalizers.retain(|f| f != finalizer);
            let changed = finalizers.len() != before;
            if finalizers.is_empty() {
                object.metadata.finalizers = None;
            }
            changed
        })
        .await
    }

    /// Removes the references to the owners with these uids.
    async fn remove_owner_references(
        &self,
        target: &Target<'_>,
        owners: &BTreeSet<&str>,
    ) -> Result<(), StatusError> {
        self.update(target, |object| {
            let Some(references) = object.metadata.owner_references.as_mut() else {
                return false;
            };
            let before = references.len();
            references.retain(|r| !owners.contains(r.uid.as_str()));
            let changed = references.len() != before;
            if references.is_empty() {
                object.metadata.owner_references = None;
            }
            changed
        })
        .await
    }

    /// Deletes an object (only if it still has its uid) with a propagation policy.
    async fn delete(
        &self,
        target: &Target<'_>,
        policy: PropagationPolicy,
    ) -> Result<(), StatusError> {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(target.uid.to_owned()),
                resource_version: None,
            }),
            propagation_policy: Some(policy),
            ..DeleteParams::default()
        };
        match self
            .client
            .delete(target.resource, target.namespace, target.name, &params)
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if error.is_not_found() => Ok(()),
            // The uid precondition failed: the object we meant is gone already.
            Err(error) if error.is_conflict() && error.message.contains("Precondition failed") => {
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Looks at one object: are its owners gone, or is it waiting for its dependents? (Kubernetes'
    /// `attemptToDeleteItem`.)
    async fn attempt_to_delete(&self, uid: &str) -> Result<Action, AttemptError> {
        let Some(item) = self.graph().node(uid).cloned() else {
            // Gone since it was queued.
            return Ok(Action::AwaitChange);
        };
        // Being deleted is a one-way trip: its dependents are looked at when it is gone.
        if item.being_deleted && !item.deleting_dependents {
            return Ok(Action::AwaitChange);
        }
        let Some(resource) = self.resource(item.resource) else {
            return Ok(Action::AwaitChange);
        };
        let target = Target {
            resource: &resource,
            namespace: item.namespace.as_deref(),
            name: &item.name,
            uid,
        };
        // The graph may lag behind: decide on the object as it is now.
        let Some(latest) = self.live(&target).await? else {
            // Gone: its watcher reports it, and the graph follows.
            return Ok(Action::AwaitChange);
        };
        if is_deleting_dependents(&latest) {
            self.process_deleting_dependents(&target).await?;
            return Ok(Action::AwaitChange);
        }
        if latest.metadata.deletion_timestamp.is_some() {
            return Ok(Action::AwaitChange);
        }
        let references = latest.metadata.owner_references.clone().unwrap_or_default();
        if references.is_empty() {
            return Ok(Action::AwaitChange);
        }
        let Some(classified) = self.classify(&item, &references).await? else {
            // A cluster-scoped object that names a namespaced owner: the reference can never
            // resolve, and the object is left alone (as Kubernetes does).
            return Ok(Action::AwaitChange);
        };
        if !classified.solid.is_empty() {
            if classified.dangling.is_empty() && classified.waiting.is_empty() {
                return Ok(Action::AwaitChange);
            }
            // It stays, without the references to owners that are gone, and to owners waiting
            // for their dependents (which would otherwise wait for ever).
            let owners: BTreeSet<&str> = classified
                .dangling
                .iter()
                .chain(&classified.waiting)
                .map(|r| r.uid.as_str())
                .collect();
            self.remove_owner_references(&target, &owners).await?;
            return Ok(Action::AwaitChange);
        }
        let policy = if !classified.waiting.is_empty() && self.graph().has_dependents(uid) {
            let cycle = self
                .graph()
                .dependents(uid)
                .iter()
                .any(|(_, dependent)| dependent.deleting_dependents);
            if cycle {
                // Its owner waits for it and it waits for a dependent that may wait for the
                // owner: it stops blocking its owners, so that none waits for ever.
                self.update(&target, |object| {
                    let mut changed = false;
                    for reference in object.metadata.owner_references.iter_mut().flatten() {
                        if reference.block_owner_deletion == Some(true) {
                            reference.block_owner_deletion = Some(false);
                            changed = true;
                        }
                    }
                    changed
                })
                .await?;
            }
            PropagationPolicy::Foreground
        } else if has_finalizer(&latest, ORPHAN) {
            PropagationPolicy::Orphan
        } else if has_finalizer(&latest, FOREGROUND_DELETION) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        self.delete(&target, policy).await?;
        Ok(Action::AwaitChange)
    }

    /// An owner deleting in the foreground: its finalizer goes once no dependent blocks it;
    /// until then the blocking dependents are looked at (Kubernetes'
    /// `processDeletingDependentsItem`). The owner is looked at again when one of them goes or
    /// stops blocking it.
    async fn process_deleting_dependents(&self, owner: &Target<'_>) -> Result<(), StatusError> {
        let blocking: Vec<(String, Node)> = self
            .graph()
            .dependents(owner.uid)
            .into_iter()
            .filter(|(_, dependent)| dependent.blocks(owner.uid))
            .collect();
        if blocking.is_empty() {
            return self.remove_finalizer(owner, FOREGROUND_DELETION).await;
        }
        for (uid, dependent) in blocking {
            if !dependent.deleting_dependents {
                self.attempt_to_delete.add(uid);
            }
        }
        Ok(())
    }

    /// Sorts an object's owner references into solid, dangling and waiting, each owner checked
    /// with a live read; `None` when a reference is invalid (a namespaced owner of a
    /// cluster-scoped object).
    async fn classify(
        &self,
        item: &Node,
        references: &[OwnerReference],
    ) -> Result<Option<Classified>, AttemptError> {
        let mut classified = Classified::default();
        for reference in references {
            let Some(resource) = self
                .client
                .scheme()
                .resource(&reference.api_version, &reference.kind)
                .cloned()
            else {
                return Err(AttemptError::UnknownOwnerKind {
                    api_version: reference.api_version.clone(),
                    kind: reference.kind.clone(),
                });
            };
            if resource.namespaced && item.namespace.is_none() {
                return Ok(None);
            }
            let namespace = if resource.namespaced {
                item.namespace.clone()
            } else {
                None
            };
            let absent = AbsentOwner {
                api_version: reference.api_version.clone(),
                kind: reference.kind.clone(),
                namespace: namespace.clone(),
                name: reference.name.clone(),
                uid: reference.uid.clone(),
            };
            if self.graph().is_absent(&absent) {
                classified.dangling.push(reference.clone());
                continue;
            }
            let owner = Target {
                resource: &resource,
                namespace: namespace.as_deref(),
                name: &reference.name,
                uid: &reference.uid,
            };
            match self.live(&owner).await? {
                None => {
                    self.graph().mark_absent(absent);
                    classified.dangling.push(reference.clone());
                }
                Some(owner) if is_deleting_dependents(&owner) => {
                    classified.waiting.push(reference.clone());
                }
                Some(_) => classified.solid.push(reference.clone()),
            }
        }
        Ok(Some(classified))
    }

    /// Orphans the dependents of an owner deleting with the `orphan` finalizer, then removes the
    /// finalizer (Kubernetes' `attemptToOrphanWorker`).
    async fn attempt_to_orphan(&self, uid: &str) -> Result<Action, AttemptError> {
        let Some(owner) = self.graph().node(uid).cloned() else {
            return Ok(Action::AwaitChange);
        };
        let Some(resource) = self.resource(owner.resource) else {
            return Ok(Action::AwaitChange);
        };
        let target = Target {
            resource: &resource,
            namespace: owner.namespace.as_deref(),
            name: &owner.name,
            uid,
        };
        match self.live(&target).await? {
            Some(latest)
                if latest.metadata.deletion_timestamp.is_some()
                    && has_finalizer(&latest, ORPHAN) => {}
            // Gone, or not orphaning (any more): nothing to do.
            _ => return Ok(Action::AwaitChange),
        }
        let dependents = self.graph().dependents(uid);
        let owners = BTreeSet::from([uid]);
        let mut failure = None;
        for (dependent_uid, dependent) in &dependents {
            let Some(dependent_resource) = self.resource(dependent.resource) else {
                continue;
            };
            let dependent_target = Target {
                resource: &dependent_resource,
                namespace: dependent.namespace.as_deref(),
                name: &dependent.name,
                uid: dependent_uid,
            };
            if let Err(error) = self
                .remove_owner_references(&dependent_target, &owners)
                .await
            {
                failure = Some(error);
            }
        }
        if let Some(error) = failure {
            return Err(error.into());
        }
        self.remove_finalizer(&target, ORPHAN).await?;
        Ok(Action::AwaitChange)
    }
}
