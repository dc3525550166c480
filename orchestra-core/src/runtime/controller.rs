//! The `Controller` builder: watches, caches, a work queue and a reconcile function, put together.
//!
//! A [`Controller`] reconciles the objects of one kind. It watches them (and, with
//! [`Controller::owns`], the objects they own, and with [`Controller::watches`], anything else that
//! should wake them), keeps every watched kind in a [`super::reflector`] cache, turns every
//! change into the key of the object to reconcile, and feeds those keys to a
//! [`super::WorkQueue`]: each key is reconciled by one worker at a time, with bounded
//! concurrency, again after the [`Action`] the reconcile returns, and with exponential back-off
//! after an error. Nothing is reconciled before every cache has its first list (the readiness
//! barrier).
//!
//! The reconcile function receives the object from the cache, as an `Arc<K>`, and a shared
//! context. A key whose object is gone from the cache (deleted) is not reconciled; objects that
//! need cleanup on deletion carry a finalizer, so that they are still there when it is needed.
//!
//! [`Controller::run`] returns a future that the caller drives; it ends when the given shutdown
//! future resolves, after the reconciles in flight finish.

use std::future::Future;
use std::sync::Arc;

use futures_util::stream::{BoxStream, SelectAll};
use futures_util::{FutureExt, StreamExt};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::queue::{Action, WorkQueue};
use super::reflector::{self, ObjectRef, Reader};
use super::watcher::{WatcherConfig, WatcherEvent, watcher};
use crate::api::Api;
use crate::resource::{ApiResource, Resource};

type Trigger = BoxStream<'static, Vec<ObjectRef>>;
/// Turns an object of a watched kind into the keys of the objects to reconcile.
type KeyMapper<T> = Arc<dyn Fn(&WatcherEvent<T>) -> Vec<ObjectRef> + Send + Sync>;
type Readiness = futures_util::future::BoxFuture<'static, ()>;

/// Reconciles the objects of one kind: see the [module documentation](self).
pub struct Controller<K: Resource> {
    resource: ApiResource,
    reader: Reader<K>,
    triggers: Vec<Trigger>,
    readiness: Vec<Readiness>,
    queue: WorkQueue<ObjectRef>,
    concurrency: usize,
}

impl<K: Resource> std::fmt::Debug for Controller<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("resource", &self.resource)
            .field("triggers", &self.triggers.len())
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

/// The keys of the objects a watcher event concerns.
fn keys_of<T: Resource>(
    event: &WatcherEvent<T>,
    map: &(dyn Fn(&T) -> Vec<ObjectRef> + Send + Sync),
) -> Vec<ObjectRef> {
    match event {
        WatcherEvent::InitApply(object)
        | WatcherEvent::Apply(object)
        | WatcherEvent::Delete(object) => map(object),
        WatcherEvent::Init | WatcherEvent::InitDone => Vec::new(),
    }
}

/// A cached, watched stream of `T` whose events become keys through `map`, and its readiness.
fn cached_trigger<T>(
    api: Api<T>,
    config: WatcherConfig,
    map: KeyMapper<T>,
) -> (Reader<T>, Trigger, Readiness)
where
    T: Resource + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    T::DynamicType: Send + Sync,
{
    let (reader, writer) = reflector::store::<T>();
    let events = reflector::reflector(writer, watcher(api, config));
    let trigger = events
        .filter_map(move |event| {
            let keys = match event {
                Ok(event) => map(&event),
                // The watcher retries by itself.
                Err(_) => Vec::new(),
            };
            std::future::ready((!keys.is_empty()).then_some(keys))
        })
        .boxed();
    let ready = reader.clone();
    let readiness = async move { ready.wait_until_ready().await }.boxed();
    (reader, trigger, readiness)
}

impl<K> Controller<K>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Send + Sync,
{
    /// A controller of the objects `api` sees.
    pub fn new(api: Api<K>, config: WatcherConfig) -> Controller<K> {
        let resource = api.resource().clone();
        let map: KeyMapper<K> = Arc::new(|event: &WatcherEvent<K>| {
            keys_of(event, &|object: &K| vec![ObjectRef::from_obj(object)])
        });
        let (reader, trigger, readiness) = cached_trigger(api, config, map);
        Controller {
            resource,
            reader,
            triggers: vec![trigger],
            readiness: vec![readiness],
            queue: WorkQueue::new(),
            concurrency: 16,
        }
    }

    /// Also reconciles an object when an object it controls (whose `ownerReferences` name it as
    /// controller) changes.
    #[must_use]
    pub fn owns<C>(self, api: Api<C>, config: WatcherConfig) -> Controller<K>
    where
        C: Resource + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
        C::DynamicType: Send + Sync,
    {
        let owner = self.resource.clone();
        let map = move |child: &C| -> Vec<ObjectRef> {
            child
                .meta()
                .owner_references
                .iter()
                .flatten()
                .filter(|reference| {
                    reference.controller == Some(true)
                        && reference.kind == owner.kind
                        && reference.api_version == owner.api_version
                })
                .map(|reference| ObjectRef {
                    namespace: child.meta().namespace.clone().filter(|_| owner.namespaced),
                    name: reference.name.clone(),
                })
                .collect()
        };
        self.watches_with(api, config, map).0
    }

    /// Also reconciles the objects `map` names when an object of another kind changes.
    #[must_use]
    pub fn watches<O, F>(self, api: Api<O>, config: WatcherConfig, map: F) -> Controller<K>
    where
        O: Resource + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
        O::DynamicType: Send + Sync,
        F: Fn(&O) -> Vec<ObjectRef> + Send + Sync + 'static,
    {
        self.watches_with(api, config, map).0
    }

    /// [`Controller::watches`], also returning a reader of the other kind's cache (for the
    /// reconcile to use).
    pub fn watches_with<O, F>(
        self,
        api: Api<O>,
        config: WatcherConfig,
        map: F,
    ) -> (Controller<K>, Reader<O>)
    where
        O: Resource + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
        O::DynamicType: Send + Sync,
        F: Fn(&O) -> Vec<ObjectRef> + Send + Sync + 'static,
    {
        self.watches_events(api, config, move |event: &WatcherEvent<O>| {
            keys_of(event, &map)
        })
    }

    /// [`Controller::watches_with`] with a `map` that sees the watcher's events themselves
    /// (after the cache has applied them), for controllers that must tell a creation or a
    /// deletion from a change, or notice a re-list: the workload controllers' expectations.
    pub fn watches_events<O, F>(
        mut self,
        api: Api<O>,
        config: WatcherConfig,
        map: F,
    ) -> (Controller<K>, Reader<O>)
    where
        O: Resource + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
        O::DynamicType: Send + Sync,
        F: Fn(&WatcherEvent<O>) -> Vec<ObjectRef> + Send + Sync + 'static,
    {
        let (reader, trigger, readiness) = cached_trigger(api, config, Arc::new(map));
        self.triggers.push(trigger);
        self.readiness.push(readiness);
        (self, reader)
    }

    /// How many objects are reconciled at once at most (16 by default).
    #[must_use]
    pub fn concurrency(mut self, concurrency: usize) -> Controller<K> {
        self.concurrency = concurrency.max(1);
        self
    }

    /// The cache of the reconciled kind.
    pub fn store(&self) -> Reader<K> {
        self.reader.clone()
    }

    /// The controller's work queue (to add keys from elsewhere).
    pub fn queue(&self) -> WorkQueue<ObjectRef> {
        self.queue.clone()
    }

    /// Runs the controller until `shutdown` resolves: `reconcile(object, context)` for every
    /// object that changes, as described in the [module documentation](self).
    pub async fn run<C, E, R, Fut, S>(self, reconcile: R, context: Arc<C>, shutdown: S)
    where
        C: Send + Sync + 'static,
        R: Fn(Arc<K>, Arc<C>) -> Fut,
        Fut: Future<Output = Result<Action, E>>,
        S: Future<Output = ()>,
    {
        let Controller {
            reader,
            triggers,
            readiness,
            queue,
            concurrency,
            ..
        } = self;
        let mut triggers: SelectAll<Trigger> = futures_util::stream::select_all(triggers);
        let feed_queue = queue.clone();
        let (stop_feeding, feeding_stopped) = tokio::sync::oneshot::channel::<()>();
        let feed = async move {
            let mut stopped = std::pin::pin!(feeding_stopped);
            loop {
                tokio::select! {
                    biased;
                    _ = &mut stopped => break,
                    keys = triggers.next() => match keys {
                        Some(keys) => keys.into_iter().for_each(|key| feed_queue.add(key)),
                        None => break,
                    },
                }
            }
        };
        let work = async move {
            let mut shutdown = std::pin::pin!(shutdown);
            let proceed = tokio::select! {
                biased;
                _ = futures_util::future::join_all(readiness) => true,
                () = &mut shutdown => false,
            };
            if proceed {
                let reader = &reader;
                let context = &context;
                let reconcile = &reconcile;
                queue
                    .run_until(
                        concurrency,
                        |key: ObjectRef| {
                            let object = reader.get(&key);
                            let context = Arc::clone(context);
                            async move {
                                match object {
                                    Some(object) => reconcile(object, context).await.map(Some),
                                    None => Ok(None),
                                }
                                .map(|action| action.unwrap_or(Action::AwaitChange))
                            }
                        },
                        shutdown,
                    )
                    .await;
            }
            queue.shut_down();
            let _ = stop_feeding.send(());
        };
        futures_util::future::join(feed, work).await;
    }
}
