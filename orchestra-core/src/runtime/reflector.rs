//! The reflector: an in-memory cache of the objects of one kind, kept up to date by a watcher and
//! shared by every controller that reads them.
//!
//! One [`Writer`] applies a [`watcher`](super::watcher::watcher)'s events; any number of cheap
//! [`Reader`]s read the cache, as `Arc<K>`s. A re-list (`Init` … `InitDone`) is applied at once when
//! it completes, so readers never see half a list. The cache is **ready** once its first list is
//! applied; [`Reader::wait_until_ready`] is the barrier controllers wait at, so that nothing is
//! reconciled against a cache that has not seen the store yet.
//!
//! # Examples
//!
//! ```
//! use orchestra_core::k8s::api::core::v1::ConfigMap;
//! use orchestra_core::runtime::reflector::{self, ObjectRef};
//! use orchestra_core::runtime::watcher::WatcherEvent;
//!
//! let (reader, mut writer) = reflector::store::<ConfigMap>();
//! let mut settings = ConfigMap::default();
//! settings.metadata.name = Some("settings".into());
//! settings.metadata.namespace = Some("default".into());
//! assert!(!reader.is_ready());
//! for event in [WatcherEvent::Init, WatcherEvent::InitApply(settings), WatcherEvent::InitDone] {
//!     writer.apply(&event);
//! }
//! assert!(reader.is_ready());
//! assert!(reader.get(&ObjectRef::new("settings").within("default")).is_some());
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use futures_util::{Stream, StreamExt};

use super::watcher::{WatcherError, WatcherEvent};
use crate::resource::Resource;

/// A reference to an object of a known kind: its namespace (for namespaced kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    /// The namespace, for namespaced kinds.
    pub namespace: Option<String>,
    /// The name.
    pub name: String,
}

impl ObjectRef {
    /// A reference to a cluster-scoped object (or, with [`ObjectRef::within`], a namespaced one).
    pub fn new(name: &str) -> ObjectRef {
        ObjectRef {
            namespace: None,
            name: name.to_owned(),
        }
    }

    /// This reference in `namespace`.
    #[must_use]
    pub fn within(mut self, namespace: &str) -> ObjectRef {
        self.namespace = Some(namespace.to_owned());
        self
    }

    /// The reference of an object.
    pub fn from_obj<K: Resource>(object: &K) -> ObjectRef {
        let meta = object.meta();
        ObjectRef {
            namespace: meta.namespace.clone().filter(|ns| !ns.is_empty()),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{namespace}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

struct Shared<K> {
    objects: RwLock<BTreeMap<ObjectRef, Arc<K>>>,
    ready: tokio::sync::watch::Sender<bool>,
}

/// A reading handle on a cache; cheap to clone.
pub struct Reader<K> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for Reader<K> {
    fn clone(&self) -> Self {
        Reader {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K> fmt::Debug for Reader<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("objects", &self.len())
            .field("ready", &self.is_ready())
            .finish()
    }
}

impl<K> Reader<K> {
    /// The cached object, if any.
    pub fn get(&self, reference: &ObjectRef) -> Option<Arc<K>> {
        self.shared
            .objects
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(reference)
            .cloned()
    }

    /// Every cached object, ordered by namespace and name.
    pub fn state(&self) -> Vec<Arc<K>> {
        self.shared
            .objects
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// How many objects are cached.
    pub fn len(&self) -> usize {
        self.shared
            .objects
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no object is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the first list has been applied.
    pub fn is_ready(&self) -> bool {
        *self.shared.ready.borrow()
    }

    /// Waits until the first list has been applied.
    pub async fn wait_until_ready(&self) {
        let mut ready = self.shared.ready.subscribe();
        // The sender lives in `self.shared`, so the channel cannot close while we wait.
        let _ = ready.wait_for(|ready| *ready).await;
    }
}

/// The one writing handle on a cache.
pub struct Writer<K> {
    shared: Arc<Shared<K>>,
    buffer: Option<BTreeMap<ObjectRef, Arc<K>>>,
}

impl<K> fmt::Debug for Writer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("relisting", &self.buffer.is_some())
            .finish()
    }
}

/// A new, empty, not-ready cache: its reader and its writer.
pub fn store<K>() -> (Reader<K>, Writer<K>) {
    let (ready, _) = tokio::sync::watch::channel(false);
    let shared = Arc::new(Shared {
        objects: RwLock::new(BTreeMap::new()),
        ready,
    });
    (
        Reader {
            shared: Arc::clone(&shared),
        },
        Writer {
            shared,
            buffer: None,
        },
    )
}

impl<K: Resource + Clone> Writer<K> {
    /// Applies one watcher event to the cache.
    pub fn apply(&mut self, event: &WatcherEvent<K>) {
        match event {
            WatcherEvent::Init => self.buffer = Some(BTreeMap::new()),
            WatcherEvent::InitApply(object) => {
                let buffer = self.buffer.get_or_insert_with(BTreeMap::new);
                buffer.insert(ObjectRef::from_obj(object), Arc::new(object.clone()));
            }
            WatcherEvent::InitDone => {
                let objects = self.buffer.take().unwrap_or_default();
                *self
                    .shared
                    .objects
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = objects;
                self.shared.ready.send_replace(true);
            }
            WatcherEvent::Apply(object) => {
                self.shared
                    .objects
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(ObjectRef::from_obj(object), Arc::new(object.clone()));
            }
            WatcherEvent::Delete(object) => {
                self.shared
                    .objects
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&ObjectRef::from_obj(object));
            }
        }
    }

    /// A reader of this writer's cache.
    pub fn reader(&self) -> Reader<K> {
        Reader {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Passes a watcher's events through, applying each to the cache first.
pub fn reflector<K, S>(
    mut writer: Writer<K>,
    stream: S,
) -> impl Stream<Item = Result<WatcherEvent<K>, WatcherError>>
where
    K: Resource + Clone,
    S: Stream<Item = Result<WatcherEvent<K>, WatcherError>>,
{
    stream.map(move |event| {
        if let Ok(event) = &event {
            writer.apply(event);
        }
        event
    })
}
