//! From informer events to the scheduler's cache and queue (kube-scheduler's
//! `eventhandlers.go`).
//!
//! Pods and nodes arrive from watchers as [`WatcherEvent`]s. [`EventHandlers`] sorts them:
//!
//! - a pod bound to a node (and not finished) goes into the [`SchedulerCache`], confirming the
//!   scheduler's assumption if it was assumed; its arrival, change or departure is a
//!   [`ClusterEvent`] that may help parked pods;
//! - a pod with no node, for one of this scheduler's profiles and not being deleted, is pending:
//!   it goes into the [`PriorityQueue`];
//! - a node goes into the cache, and its arrival or a change that matters to scheduling moves
//!   parked pods.
//!
//! A re-list (after the watch expired) replaces everything: objects that were known but are not
//! in the new list count as deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::{Node, Pod};

use super::cache::SchedulerCache;
use super::node_info::pod_key;
use super::plugins::DEFAULT_SCHEDULER_NAME;
use super::queue::{ClusterEvent, PriorityQueue};
use crate::runtime::watcher::WatcherEvent;

/// The scheduler name a pod asks for (`spec.schedulerName`, [`DEFAULT_SCHEDULER_NAME`] when
/// unset).
pub fn scheduler_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.scheduler_name.as_deref())
        .filter(|name| !name.is_empty())
        .unwrap_or(DEFAULT_SCHEDULER_NAME)
}

/// Whether the pod is bound to a node.
pub fn is_assigned(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.node_name.as_deref())
        .is_some_and(|name| !name.is_empty())
}

/// Whether the pod has scheduling gates (`spec.schedulingGates`): it waits, unqueued, until
/// whoever set them removes them (kube-scheduler's SchedulingGates PreEnqueue plugin).
pub fn is_gated(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.scheduling_gates.as_ref())
        .is_some_and(|gates| !gates.is_empty())
}

/// Whether the pod has finished (`Succeeded` or `Failed`): it no longer uses its node.
pub fn is_terminal(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|status| status.phase.as_deref())
        .is_some_and(|phase| phase == "Succeeded" || phase == "Failed")
}

/// Where a pod belongs for the scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// In the cache: bound and running (or about to).
    Cache,
    /// In the queue: waiting for a node.
    Queue,
    /// Nowhere: another scheduler's, finished, or being deleted before it had a node.
    Ignored,
}

/// Feeds the cache and the queue from pod and node events. See the
/// [module documentation](self).
#[derive(Debug)]
pub struct EventHandlers {
    cache: Arc<SchedulerCache>,
    queue: Arc<PriorityQueue>,
    scheduler_names: BTreeSet<String>,
    state: Mutex<Known>,
}

/// What the handlers remember of a pod: where it went, and for a pending pod its last version
/// (the queue's update needs the old object). Bound pods are remembered by place only: the cache
/// holds them, and a copy here would double the scheduler's memory.
#[derive(Clone, Debug)]
enum KnownPod {
    Queued(Arc<Pod>),
    Cached,
    Ignored,
}

impl KnownPod {
    fn place(&self) -> Place {
        match self {
            KnownPod::Queued(_) => Place::Queue,
            KnownPod::Cached => Place::Cache,
            KnownPod::Ignored => Place::Ignored,
        }
    }
}

/// The last version of every pod and node seen, to tell adds from updates and to find what a
/// re-list dropped.
#[derive(Debug, Default)]
struct Known {
    pods: BTreeMap<String, KnownPod>,
    nodes: BTreeMap<String, Arc<Node>>,
    pod_listing: Option<BTreeSet<String>>,
    node_listing: Option<BTreeSet<String>>,
}

impl EventHandlers {
    /// Handlers feeding `cache` and `queue`, queueing the pending pods that name one of
    /// `scheduler_names`.
    pub fn new(
        cache: Arc<SchedulerCache>,
        queue: Arc<PriorityQueue>,
        scheduler_names: BTreeSet<String>,
    ) -> EventHandlers {
        EventHandlers {
            cache,
            queue,
            scheduler_names,
            state: Mutex::new(Known::default()),
        }
    }

    fn place(&self, pod: &Pod) -> Place {
        if is_assigned(pod) {
            if is_terminal(pod) {
                Place::Ignored
            } else {
                Place::Cache
            }
        } else if pod.metadata.deletion_timestamp.is_none()
            && !is_gated(pod)
            && self.scheduler_names.contains(scheduler_name(pod))
        {
            Place::Queue
        } else {
            Place::Ignored
        }
    }

    /// Handles a pod event. Returns `true` when the informer has finished its first listing
    /// (on [`WatcherEvent::InitDone`]).
    pub fn on_pod_event(&self, event: WatcherEvent<Pod>) -> bool {
        match event {
            WatcherEvent::Init => {
                self.lock().pod_listing = Some(BTreeSet::new());
                false
            }
            WatcherEvent::InitApply(pod) => {
                let key = pod_key(&pod);
                if let Some(listing) = &mut self.lock().pod_listing {
                    listing.insert(key);
                }
                self.apply_pod(Arc::new(pod));
                false
            }
            WatcherEvent::InitDone => {
                let gone: Vec<String> = {
                    let mut known = self.lock();
                    let listing = known.pod_listing.take().unwrap_or_default();
                    known
                        .pods
                        .keys()
                        .filter(|key| !listing.contains(*key))
                        .cloned()
                        .collect()
                };
                for key in gone {
                    self.forget_pod(&key);
                }
                true
            }
            WatcherEvent::Apply(pod) => {
                self.apply_pod(Arc::new(pod));
                false
            }
            WatcherEvent::Delete(pod) => {
                self.delete_pod(&pod);
                false
            }
        }
    }

    /// Handles a node event. Returns `true` on [`WatcherEvent::InitDone`].
    pub fn on_node_event(&self, event: WatcherEvent<Node>) -> bool {
        match event {
            WatcherEvent::Init => {
                self.lock().node_listing = Some(BTreeSet::new());
                false
            }
            WatcherEvent::InitApply(node) => {
                let name = node.metadata.name.clone().unwrap_or_default();
                if let Some(listing) = &mut self.lock().node_listing {
                    listing.insert(name);
                }
                self.apply_node(Arc::new(node));
                false
            }
            WatcherEvent::InitDone => {
                let gone: Vec<Arc<Node>> = {
                    let mut known = self.lock();
                    let listing = known.node_listing.take().unwrap_or_default();
                    known
                        .nodes
                        .iter()
                        .filter(|(name, _)| !listing.contains(*name))
                        .map(|(_, node)| node.clone())
                        .collect()
                };
                for node in gone {
                    self.delete_node(&node);
                }
                true
            }
            WatcherEvent::Apply(node) => {
                self.apply_node(Arc::new(node));
                false
            }
            WatcherEvent::Delete(node) => {
                self.delete_node(&node);
                false
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn apply_pod(&self, pod: Arc<Pod>) {
        let key = pod_key(&pod);
        let new_place = self.place(&pod);
        let remembered = match new_place {
            Place::Queue => KnownPod::Queued(pod.clone()),
            Place::Cache => KnownPod::Cached,
            Place::Ignored => KnownPod::Ignored,
        };
        let old = self.lock().pods.insert(key, remembered);
        match (old, new_place) {
            (Some(KnownPod::Queued(old)), Place::Queue) => self.queue.update(&old, pod),
            (_, Place::Queue) => self.queue.add(pod),
            (Some(KnownPod::Cached), Place::Cache) => {
                // The cache may not have it if it was added while assumed and expired; an
                // update then re-adds it.
                if self.cache.update_pod_shared(pod.clone()).is_err() {
                    let _ = self.cache.add_pod_shared(pod);
                }
                self.queue
                    .move_all_to_active_or_backoff(ClusterEvent::PodUpdate);
            }
            (old, Place::Cache) => {
                if let Some(KnownPod::Queued(old)) = &old {
                    self.queue.delete(old);
                }
                // Confirms an assumed pod, or adds one bound by someone else.
                if self.cache.add_pod_shared(pod.clone()).is_err() {
                    let _ = self.cache.update_pod_shared(pod);
                }
                self.queue
                    .move_all_to_active_or_backoff(ClusterEvent::PodAdd);
            }
            (Some(KnownPod::Cached), Place::Ignored) => {
                // Finished: its resources are free.
                let _ = self.cache.remove_pod(&pod);
                self.queue
                    .move_all_to_active_or_backoff(ClusterEvent::PodDelete);
            }
            (Some(KnownPod::Queued(old)), Place::Ignored) => {
                self.queue.delete(&old);
            }
            (_, Place::Ignored) => {}
        }
    }

    fn delete_pod(&self, pod: &Pod) {
        let key = pod_key(pod);
        let old = self.lock().pods.remove(&key);
        let place = old
            .as_ref()
            .map_or_else(|| self.place(pod), KnownPod::place);
        self.remove(pod, place, old);
    }

    /// Drops a pod a re-list no longer has, knowing only its key.
    fn forget_pod(&self, key: &str) {
        let Some(old) = self.lock().pods.remove(key) else {
            return;
        };
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let tombstone = Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                ..Default::default()
            },
            ..Pod::default()
        };
        let place = old.place();
        self.remove(&tombstone, place, Some(old));
    }

    fn remove(&self, pod: &Pod, place: Place, old: Option<KnownPod>) {
        match place {
            Place::Cache => {
                // A tombstone naming no node is removed from wherever the cache has it.
                let _ = self.cache.remove_pod(pod);
                self.queue
                    .move_all_to_active_or_backoff(ClusterEvent::PodDelete);
            }
            Place::Queue | Place::Ignored => {
                match &old {
                    Some(KnownPod::Queued(old)) => {
                        self.queue.delete(old);
                    }
                    _ => {
                        self.queue.delete(pod);
                    }
                }
                // A pod deleted while in flight may be assumed in the cache.
                let _ = self.cache.remove_pod(pod);
            }
        }
    }

    fn apply_node(&self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let old = self.lock().nodes.insert(name, node.clone());
        match old {
            None => {
                self.cache.add_node(node);
                self.queue
                    .move_all_to_active_or_backoff(ClusterEvent::NodeAdd);
            }
            Some(old) => {
                let matters = scheduling_relevant_change(&old, &node);
                self.cache.update_node(node);
                if matters {
                    self.queue
                        .move_all_to_active_or_backoff(ClusterEvent::NodeUpdate);
                }
            }
        }
    }

    fn delete_node(&self, node: &Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let old = self.lock().nodes.remove(&name);
        let _ = self.cache.remove_node(old.as_deref().unwrap_or(node));
    }
}

/// Whether a node update may make a pod fit that did not: allocatable, labels, taints,
/// `spec.unschedulable` or conditions changed (kube-scheduler's `nodeSchedulingPropertiesChange`).
fn scheduling_relevant_change(old: &Node, new: &Node) -> bool {
    let allocatable = |node: &Node| node.status.as_ref().map(|s| s.allocatable.clone());
    let conditions = |node: &Node| {
        node.status.as_ref().map(|s| {
            s.conditions
                .iter()
                .flatten()
                .map(|c| (c.type_.clone(), c.status.clone()))
                .collect::<Vec<_>>()
        })
    };
    let taints = |node: &Node| node.spec.as_ref().map(|s| s.taints.clone());
    let unschedulable = |node: &Node| node.spec.as_ref().and_then(|s| s.unschedulable);
    old.metadata.labels != new.metadata.labels
        || allocatable(old) != allocatable(new)
        || taints(old) != taints(new)
        || unschedulable(old) != unschedulable(new)
        || conditions(old) != conditions(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: Option<&str>, extra: serde_json::Value) -> Pod {
        let mut value = json!({
            "metadata": {"name": name, "namespace": "default", "uid": name},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}
        });
        if let Some(node) = node {
            value["spec"]["nodeName"] = json!(node);
        }
        if let (Some(target), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
            for (key, value) in extra {
                target.insert(key.clone(), value.clone());
            }
        }
        serde_json::from_value(value).unwrap()
    }

    fn node(name: &str, labels: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}
        }))
        .unwrap()
    }

    fn handlers() -> (EventHandlers, Arc<SchedulerCache>, Arc<PriorityQueue>) {
        let cache = Arc::new(SchedulerCache::new());
        let queue = Arc::new(PriorityQueue::new());
        let handlers = EventHandlers::new(
            cache.clone(),
            queue.clone(),
            BTreeSet::from([DEFAULT_SCHEDULER_NAME.to_owned()]),
        );
        (handlers, cache, queue)
    }

    #[tokio::test]
    async fn pods_go_to_the_queue_or_the_cache() {
        let (handlers, cache, queue) = handlers();
        handlers.on_node_event(WatcherEvent::Apply(node("n1", json!({}))));
        assert_eq!(cache.node_count(), 1);
        handlers.on_pod_event(WatcherEvent::Apply(pod("pending", None, json!({}))));
        handlers.on_pod_event(WatcherEvent::Apply(pod(
            "other",
            None,
            json!({"spec": {"schedulerName": "someone-else", "containers": []}}),
        )));
        handlers.on_pod_event(WatcherEvent::Apply(pod("bound", Some("n1"), json!({}))));
        assert_eq!(queue.len(), 1);
        // A gated pod waits outside the queue until its gates are removed.
        let gated =
            json!({"spec": {"schedulingGates": [{"name": "example.com/quota"}], "containers": []}});
        handlers.on_pod_event(WatcherEvent::Apply(pod("gated", None, gated)));
        assert_eq!(queue.len(), 1);
        handlers.on_pod_event(WatcherEvent::Apply(pod("gated", None, json!({}))));
        assert_eq!(queue.len(), 2);
        handlers.on_pod_event(WatcherEvent::Delete(pod("gated", None, json!({}))));
        assert_eq!(queue.len(), 1);
        assert_eq!(cache.pod_count(), 1);
        // The pending pod gets bound by someone: out of the queue, into the cache.
        handlers.on_pod_event(WatcherEvent::Apply(pod("pending", Some("n1"), json!({}))));
        assert_eq!(queue.len(), 0);
        assert_eq!(cache.pod_count(), 2);
        assert_eq!(cache.node_info("n1").unwrap().requested().milli_cpu, 2000);
        // It finishes: its resources are free.
        handlers.on_pod_event(WatcherEvent::Apply(pod(
            "pending",
            Some("n1"),
            json!({"status": {"phase": "Succeeded"}}),
        )));
        assert_eq!(cache.pod_count(), 1);
        handlers.on_pod_event(WatcherEvent::Delete(pod("bound", Some("n1"), json!({}))));
        assert_eq!(cache.pod_count(), 0);
    }

    #[tokio::test]
    async fn a_relist_drops_what_it_no_longer_has() {
        let (handlers, cache, queue) = handlers();
        assert!(!handlers.on_node_event(WatcherEvent::Init));
        handlers.on_node_event(WatcherEvent::InitApply(node("n1", json!({}))));
        handlers.on_node_event(WatcherEvent::InitApply(node("n2", json!({}))));
        assert!(handlers.on_node_event(WatcherEvent::InitDone));
        handlers.on_pod_event(WatcherEvent::Init);
        handlers.on_pod_event(WatcherEvent::InitApply(pod("a", Some("n1"), json!({}))));
        handlers.on_pod_event(WatcherEvent::InitApply(pod("b", None, json!({}))));
        assert!(handlers.on_pod_event(WatcherEvent::InitDone));
        assert_eq!(
            (cache.node_count(), cache.pod_count(), queue.len()),
            (2, 1, 1)
        );
        handlers.on_node_event(WatcherEvent::Init);
        handlers.on_node_event(WatcherEvent::InitApply(node("n2", json!({}))));
        handlers.on_node_event(WatcherEvent::InitDone);
        handlers.on_pod_event(WatcherEvent::Init);
        handlers.on_pod_event(WatcherEvent::InitDone);
        assert_eq!(
            (cache.node_count(), cache.pod_count(), queue.len()),
            (1, 0, 0)
        );
    }

    #[test]
    fn node_changes_that_matter() {
        let a = node("n1", json!({"zone": "a"}));
        let mut b = a.clone();
        b.metadata.resource_version = Some("7".into());
        assert!(!scheduling_relevant_change(&a, &b));
        b.metadata.labels = Some([("zone".to_owned(), "b".to_owned())].into());
        assert!(scheduling_relevant_change(&a, &b));
        let mut c = a.clone();
        c.spec.get_or_insert_default().unschedulable = Some(true);
        assert!(scheduling_relevant_change(&a, &c));
    }
}
