//! The scheduler cache and the per-cycle snapshot of node infos.
//!
//! This is kube-scheduler's scheduler cache (`pkg/scheduler/backend/cache`): the scheduler's
//! own view of the cluster, fed by the node and pod informers, in which every node is a
//! [`NodeInfo`] kept up to date incrementally.
//!
//! - [`SchedulerCache`] holds the nodes and the pods *assigned* to them (those with a
//!   `spec.nodeName`). Besides what the informers report, it holds **assumed** pods: when a
//!   scheduling cycle picks a node, the scheduler [assumes](SchedulerCache::assume_pod) the pod
//!   there at once, so that the next cycle sees the node's resources as taken, and binds the pod
//!   in the background. When the informer then reports the pod bound
//!   ([`add_pod`](SchedulerCache::add_pod)), the assumed pod is confirmed; if binding fails, the
//!   scheduler [forgets](SchedulerCache::forget_pod) it and the resources are free again.
//! - [`Snapshot`] is the copy of the node infos that one scheduling cycle reads, with no lock.
//!   [`SchedulerCache::update_snapshot`] brings a snapshot up to date by copying only the nodes
//!   that changed since its last update: every change to a node gives it a new, cache-wide
//!   generation, and the cache keeps its nodes indexed by generation, so an update walks only the
//!   nodes newer than the snapshot (O(changed · log n) rather than O(n), which matters at 5,000
//!   nodes and thousands of bindings per second). Node infos are shared by [`Arc`] between the
//!   cache and its snapshots and copied on write, so a changed node is copied at most once per
//!   update, and an unchanged one never.
//!
//! As in Kubernetes, a node removed while pods are still on it keeps a node-less entry (not in
//! snapshots) until its last pod goes, so that the pods' removals still find it; and a pod
//! assumed on a node the cache does not know yet creates such an entry.
//!
//! **Expiry of assumed pods.** Kubernetes expires an assumed pod whose binding finished but whose
//! informer event never arrived, after `durationToExpireAssumedPod`; since 1.25
//! (kubernetes#110925, see kubernetes#106361) that duration is 0, which means *never*: expiry
//! raced with slow bindings and double-counted resources. The default here is the same, no
//! expiry ([`SchedulerCache::new`]); [`SchedulerCache::with_assumed_pod_ttl`] sets a TTL, counted
//! from [`finish_binding`](SchedulerCache::finish_binding), after which
//! [`cleanup_expired_assumed_pods`](SchedulerCache::cleanup_expired_assumed_pods) drops the pod.
//!
//! All maps are ordered ([`BTreeMap`]), so that replaying the same events gives the same state
//! and the same snapshot order (nodes by name).
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//!
//! use orchestra_core::k8s::api::core::v1::{Node, Pod};
//! use orchestra_core::scheduler::cache::{SchedulerCache, Snapshot};
//!
//! let node: Node = serde_json::from_value(serde_json::json!({
//!     "metadata": {"name": "n1"},
//!     "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}
//! }))?;
//! let pod: Pod = serde_json::from_value(serde_json::json!({
//!     "metadata": {"name": "p", "namespace": "default"},
//!     "spec": {"nodeName": "n1", "containers": [
//!         {"name": "c", "resources": {"requests": {"cpu": "1"}}}
//!     ]}
//! }))?;
//!
//! let cache = SchedulerCache::new();
//! cache.add_node(Arc::new(node));
//! let mut snapshot = Snapshot::new();
//! assert_eq!(cache.update_snapshot(&mut snapshot), 1);
//! assert_eq!(snapshot.get("n1").map(|n| n.requested().milli_cpu), Some(0));
//!
//! // The scheduler places the pod on n1: the next cycle sees the CPU taken.
//! cache.assume_pod(&pod)?;
//! assert!(cache.is_assumed(&pod));
//! assert_eq!(cache.update_snapshot(&mut snapshot), 1);
//! assert_eq!(snapshot.get("n1").map(|n| n.requested().milli_cpu), Some(1000));
//!
//! // Binding failed: undo.
//! cache.forget_pod(&pod)?;
//! cache.update_snapshot(&mut snapshot);
//! assert_eq!(snapshot.get("n1").map(|n| n.requested().milli_cpu), Some(0));
//!
//! // Nothing changed since: nothing is copied.
//! assert_eq!(cache.update_snapshot(&mut snapshot), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::node_info::{NodeInfo, pod_key};

/// A misuse of the [`SchedulerCache`]: an event that does not fit the pod's or node's state.
///
/// Every variant names the pod (`namespace/name`) or node concerned. The cache is left
/// unchanged by an operation that returns an error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// The pod has no `spec.nodeName`, so it cannot be assumed or added.
    #[error("pod {pod} has no spec.nodeName")]
    NotAssigned {
        /// The pod, `namespace/name`.
        pod: String,
    },
    /// The pod is already in the cache (assumed or added), so it cannot be assumed.
    #[error("pod {pod} is already in the scheduler cache, so it cannot be assumed")]
    AlreadyInCache {
        /// The pod, `namespace/name`.
        pod: String,
    },
    /// The pod is not assumed (never was, or already confirmed), so it cannot be forgotten.
    #[error("pod {pod} was not assumed, so it cannot be forgotten")]
    NotAssumed {
        /// The pod, `namespace/name`.
        pod: String,
    },
    /// The pod to forget was assumed on another node than the one it names.
    #[error("pod {pod} was assumed on node {assumed_on} but names node {node}")]
    AssumedOnOtherNode {
        /// The pod, `namespace/name`.
        pod: String,
        /// The node it was assumed on.
        assumed_on: String,
        /// The node the pod given names.
        node: String,
    },
    /// The informer reported a pod added twice.
    #[error("pod {pod} was already added to the scheduler cache")]
    AlreadyAdded {
        /// The pod, `namespace/name`.
        pod: String,
    },
    /// The pod to update or remove is not in the cache.
    #[error("pod {pod} is not in the scheduler cache")]
    PodNotFound {
        /// The pod, `namespace/name`.
        pod: String,
    },
    /// An assumed pod was updated before the informer reported it added.
    #[error("pod {pod} is assumed and not yet added, so it cannot be updated")]
    UpdateOfAssumed {
        /// The pod, `namespace/name`.
        pod: String,
    },
    /// An update or removal names another node than the one the pod is on in the cache (a pod's
    /// node never changes once set; Kubernetes treats this as a corrupted cache and exits).
    #[error("pod {pod} is on node {cached} in the scheduler cache but the event names node {node}")]
    NodeMismatch {
        /// The pod, `namespace/name`.
        pod: String,
        /// The node the cache has it on.
        cached: String,
        /// The node the event names.
        node: String,
    },
    /// The node to remove is not in the cache.
    #[error("node {node} is not in the scheduler cache")]
    NodeNotFound {
        /// The node's name.
        node: String,
    },
}

/// A node in the cache.
#[derive(Debug)]
struct NodeEntry {
    /// Shared with snapshots; copied on write.
    info: Arc<NodeInfo>,
    /// Whether the node object exists (false: removed with pods left, or only assumed onto).
    has_node: bool,
    /// The cache-wide generation of its last change, its key in `by_generation`.
    generation: u64,
}

/// A pod in the cache.
#[derive(Debug)]
struct PodState {
    pod: Arc<Pod>,
    node: String,
    assumed: bool,
    binding_finished: bool,
    deadline: Option<Instant>,
}

#[derive(Debug, Default)]
struct Inner {
    nodes: BTreeMap<String, NodeEntry>,
    /// Node names by the generation of their last change (Kubernetes' most-recently-updated list).
    by_generation: BTreeMap<u64, String>,
    /// The last generation handed out.
    generation: u64,
    /// How many entries have a node object.
    node_count: usize,
    pods: BTreeMap<String, PodState>,
    assumed: BTreeSet<String>,
}

/// The scheduler's thread-safe view of nodes and assigned (or assumed) pods.
///
/// See the [module documentation](self) for the life of an assumed pod and for snapshots. All
/// methods take `&self`; a mutex inside serialises them.
#[derive(Debug)]
pub struct SchedulerCache {
    inner: Mutex<Inner>,
    ttl: Option<Duration>,
}

impl Default for SchedulerCache {
    fn default() -> Self {
        SchedulerCache::new()
    }
}

fn node_name_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.node_name.as_deref())
        .filter(|name| !name.is_empty())
}

fn placeholder_node(name: &str) -> Arc<Node> {
    Arc::new(Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        ..Node::default()
    })
}

impl Inner {
    /// Gives the node a new generation, marking it changed for snapshots.
    fn bump(&mut self, name: &str) {
        if let Some(entry) = self.nodes.get_mut(name) {
            self.by_generation.remove(&entry.generation);
            self.generation = self.generation.saturating_add(1);
            entry.generation = self.generation;
            self.by_generation.insert(self.generation, name.to_owned());
        }
    }

    fn delete_entry(&mut self, name: &str) {
        if let Some(entry) = self.nodes.remove(name) {
            self.by_generation.remove(&entry.generation);
            if entry.has_node {
                self.node_count = self.node_count.saturating_sub(1);
            }
        }
    }

    fn set_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        match self.nodes.get_mut(&name) {
            Some(entry) => {
                if !entry.has_node {
                    entry.has_node = true;
                    self.node_count = self.node_count.saturating_add(1);
                }
                Arc::make_mut(&mut entry.info).set_node(node);
            }
            None => {
                self.nodes.insert(
                    name.clone(),
                    NodeEntry {
                        info: Arc::new(NodeInfo::new(node)),
                        has_node: true,
                        generation: 0,
                    },
                );
                self.node_count = self.node_count.saturating_add(1);
            }
        }
        self.bump(&name);
    }

    /// Adds (or replaces) `pod` on node `node`, creating a node-less entry if needed.
    fn add_to_node(&mut self, pod: Arc<Pod>, node: &str) {
        let entry = self
            .nodes
            .entry(node.to_owned())
            .or_insert_with(|| NodeEntry {
                info: Arc::new(NodeInfo::new(placeholder_node(node))),
                has_node: false,
                generation: 0,
            });
        Arc::make_mut(&mut entry.info).add_pod_arc(pod);
        self.bump(node);
    }

    /// Removes the pod with `key` from node `node`, dropping a node-less entry left empty.
    fn remove_from_node(&mut self, key: &str, node: &str) {
        let Some(entry) = self.nodes.get_mut(node) else {
            return;
        };
        Arc::make_mut(&mut entry.info).remove_key(key);
        if !entry.has_node && entry.info.pod_count() == 0 {
            self.delete_entry(node);
        } else {
            self.bump(node);
        }
    }

    fn drop_pod(&mut self, key: &str) {
        if let Some(state) = self.pods.remove(key) {
            self.remove_from_node(key, &state.node);
        }
        self.assumed.remove(key);
    }
}

impl SchedulerCache {
    /// An empty cache whose assumed pods never expire (Kubernetes' default since 1.25).
    pub fn new() -> SchedulerCache {
        SchedulerCache {
            inner: Mutex::new(Inner::default()),
            ttl: None,
        }
    }

    /// An empty cache whose assumed pods expire `ttl` after their binding finished, unless the
    /// informer confirmed them; `None` for never.
    pub fn with_assumed_pod_ttl(ttl: Option<Duration>) -> SchedulerCache {
        SchedulerCache {
            inner: Mutex::new(Inner::default()),
            ttl,
        }
    }

    /// The TTL of assumed pods after their binding finished (`None`: never expire).
    pub fn assumed_pod_ttl(&self) -> Option<Duration> {
        self.ttl
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // No method unwraps or panics while holding the lock, so poisoning would come from an
        // unexpected panic (say, out of memory); the state is then kept rather than lost.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a node (informer add), or replaces it if it is known, keeping its pods.
    pub fn add_node(&self, node: Arc<Node>) {
        self.lock().set_node(node);
    }

    /// Replaces a node (informer update), keeping its pods; adds it if it is not known.
    pub fn update_node(&self, node: Arc<Node>) {
        self.lock().set_node(node);
    }

    /// Removes a node (informer delete). If pods are still on it, a node-less entry stays until
    /// they are removed; it no longer appears in snapshots.
    ///
    /// # Errors
    ///
    /// [`CacheError::NodeNotFound`] if the node is not in the cache (or already removed).
    pub fn remove_node(&self, node: &Node) -> Result<(), CacheError> {
        let name = node.metadata.name.as_deref().unwrap_or("");
        let mut inner = self.lock();
        let Some(entry) = inner.nodes.get_mut(name) else {
            return Err(CacheError::NodeNotFound {
                node: name.to_owned(),
            });
        };
        if !entry.has_node {
            return Err(CacheError::NodeNotFound {
                node: name.to_owned(),
            });
        }
        if entry.info.pod_count() == 0 {
            inner.delete_entry(name);
        } else {
            entry.has_node = false;
            Arc::make_mut(&mut entry.info).set_node(placeholder_node(name));
            inner.node_count = inner.node_count.saturating_sub(1);
            inner.bump(name);
        }
        Ok(())
    }

    /// Assumes `pod` (whose `spec.nodeName` the scheduler has set) on its node before binding:
    /// its resources count as taken from now on.
    ///
    /// # Errors
    ///
    /// [`CacheError::NotAssigned`] if the pod names no node; [`CacheError::AlreadyInCache`] if a
    /// pod with the same `namespace/name` is already assumed or added.
    pub fn assume_pod(&self, pod: &Pod) -> Result<(), CacheError> {
        self.assume_pod_shared(Arc::new(pod.clone()))
    }

    /// [`assume_pod`](Self::assume_pod) for a pod the caller already shares.
    ///
    /// # Errors
    ///
    /// As [`assume_pod`](Self::assume_pod).
    pub fn assume_pod_shared(&self, pod: Arc<Pod>) -> Result<(), CacheError> {
        let key = pod_key(&pod);
        let Some(node) = node_name_of(&pod) else {
            return Err(CacheError::NotAssigned { pod: key });
        };
        let mut inner = self.lock();
        if inner.pods.contains_key(&key) {
            return Err(CacheError::AlreadyInCache { pod: key });
        }
        let shared = Arc::clone(&pod);
        inner.add_to_node(shared.clone(), node);
        inner.assumed.insert(key.clone());
        inner.pods.insert(
            key,
            PodState {
                pod: shared,
                node: node.to_owned(),
                assumed: true,
                binding_finished: false,
                deadline: None,
            },
        );
        Ok(())
    }

    /// Records that binding the assumed `pod` finished at `now`, which starts its TTL. Returns
    /// whether the pod was assumed (the informer may already have confirmed it, in which case
    /// there is nothing to do).
    pub fn finish_binding(&self, pod: &Pod, now: Instant) -> bool {
        let key = pod_key(pod);
        let ttl = self.ttl;
        let mut inner = self.lock();
        match inner.pods.get_mut(&key) {
            Some(state) if state.assumed => {
                state.binding_finished = true;
                state.deadline = ttl.and_then(|ttl| now.checked_add(ttl));
                true
            }
            _ => false,
        }
    }

    /// Forgets the assumed `pod` (its binding failed), freeing its resources.
    ///
    /// # Errors
    ///
    /// [`CacheError::AssumedOnOtherNode`] if it was assumed on another node than the pod names;
    /// [`CacheError::NotAssumed`] if it is not assumed.
    pub fn forget_pod(&self, pod: &Pod) -> Result<(), CacheError> {
        let key = pod_key(pod);
        let mut inner = self.lock();
        let Some(state) = inner.pods.get(&key) else {
            return Err(CacheError::NotAssumed { pod: key });
        };
        let node = node_name_of(pod).unwrap_or("");
        if state.node != node {
            return Err(CacheError::AssumedOnOtherNode {
                assumed_on: state.node.clone(),
                node: node.to_owned(),
                pod: key,
            });
        }
        if !state.assumed {
            return Err(CacheError::NotAssumed { pod: key });
        }
        inner.drop_pod(&key);
        Ok(())
    }

    /// Adds an assigned pod reported by the informer. If the pod was assumed, this confirms it
    /// (moving it if the informer puts it on another node than assumed); if it had expired, it
    /// is added back.
    ///
    /// # Errors
    ///
    /// [`CacheError::NotAssigned`] if the pod names no node; [`CacheError::AlreadyAdded`] if it
    /// was already added.
    pub fn add_pod(&self, pod: &Pod) -> Result<(), CacheError> {
        self.add_pod_shared(Arc::new(pod.clone()))
    }

    /// [`add_pod`](Self::add_pod) for a pod the caller already shares: the cache keeps the
    /// `Arc` rather than a copy.
    ///
    /// # Errors
    ///
    /// As [`add_pod`](Self::add_pod).
    pub fn add_pod_shared(&self, pod: Arc<Pod>) -> Result<(), CacheError> {
        let pod = &pod;
        let key = pod_key(pod);
        let Some(node) = node_name_of(pod) else {
            return Err(CacheError::NotAssigned { pod: key });
        };
        let mut inner = self.lock();
        let previous = match inner.pods.get(&key) {
            Some(state) if !state.assumed => return Err(CacheError::AlreadyAdded { pod: key }),
            Some(state) => Some(state.node.clone()),
            None => None,
        };
        if let Some(previous) = previous.filter(|previous| previous != node) {
            inner.remove_from_node(&key, &previous);
        }
        let shared = Arc::clone(pod);
        inner.add_to_node(shared.clone(), node);
        inner.assumed.remove(&key);
        inner.pods.insert(
            key,
            PodState {
                pod: shared,
                node: node.to_owned(),
                assumed: false,
                binding_finished: false,
                deadline: None,
            },
        );
        Ok(())
    }

    /// Replaces an added pod by its new version (informer update), adjusting its node's totals.
    ///
    /// # Errors
    ///
    /// [`CacheError::PodNotFound`] if the pod is not in the cache; [`CacheError::UpdateOfAssumed`]
    /// if it is assumed and not yet added; [`CacheError::NodeMismatch`] if the new version names
    /// another node.
    pub fn update_pod(&self, pod: &Pod) -> Result<(), CacheError> {
        self.update_pod_shared(Arc::new(pod.clone()))
    }

    /// [`update_pod`](Self::update_pod) for a pod the caller already shares.
    ///
    /// # Errors
    ///
    /// As [`update_pod`](Self::update_pod).
    pub fn update_pod_shared(&self, pod: Arc<Pod>) -> Result<(), CacheError> {
        let pod = &pod;
        let key = pod_key(pod);
        let node = node_name_of(pod).unwrap_or("");
        let mut inner = self.lock();
        let Some(state) = inner.pods.get(&key) else {
            return Err(CacheError::PodNotFound { pod: key });
        };
        if state.assumed {
            return Err(CacheError::UpdateOfAssumed { pod: key });
        }
        if state.node != node {
            return Err(CacheError::NodeMismatch {
                cached: state.node.clone(),
                node: node.to_owned(),
                pod: key,
            });
        }
        let shared = Arc::clone(pod);
        inner.add_to_node(shared.clone(), node);
        if let Some(state) = inner.pods.get_mut(&key) {
            state.pod = shared;
        }
        Ok(())
    }

    /// Removes a pod (informer delete), added or assumed, freeing its resources.
    ///
    /// A pod naming no node (as some delete tombstones do) is removed from wherever the cache
    /// has it.
    ///
    /// # Errors
    ///
    /// [`CacheError::PodNotFound`] if the pod is not in the cache; [`CacheError::NodeMismatch`]
    /// if it names another node than the cache has it on.
    pub fn remove_pod(&self, pod: &Pod) -> Result<(), CacheError> {
        let key = pod_key(pod);
        let mut inner = self.lock();
        let Some(state) = inner.pods.get(&key) else {
            return Err(CacheError::PodNotFound { pod: key });
        };
        if let Some(node) = node_name_of(pod).filter(|node| *node != state.node) {
            return Err(CacheError::NodeMismatch {
                cached: state.node.clone(),
                node: node.to_owned(),
                pod: key,
            });
        }
        inner.drop_pod(&key);
        Ok(())
    }

    /// Removes the assumed pods whose binding finished and whose TTL ran out strictly before
    /// `now`, and returns their keys (`namespace/name`) in order. Does nothing when assumed pods
    /// never expire.
    pub fn cleanup_expired_assumed_pods(&self, now: Instant) -> Vec<String> {
        if self.ttl.is_none() {
            return Vec::new();
        }
        let mut inner = self.lock();
        let expired: Vec<String> = inner
            .assumed
            .iter()
            .filter(|key| {
                inner.pods.get(key.as_str()).is_some_and(|state| {
                    state.binding_finished && state.deadline.is_some_and(|deadline| now > deadline)
                })
            })
            .cloned()
            .collect();
        for key in &expired {
            inner.drop_pod(key);
        }
        expired
    }

    /// Whether `pod` (by `namespace/name`) is assumed and not yet confirmed.
    pub fn is_assumed(&self, pod: &Pod) -> bool {
        self.lock().assumed.contains(&pod_key(pod))
    }

    /// The cached version of `pod` (by `namespace/name`), assumed or added.
    pub fn get_pod(&self, pod: &Pod) -> Option<Pod> {
        self.lock()
            .pods
            .get(&pod_key(pod))
            .map(|state| Pod::clone(&state.pod))
    }

    /// The node info of node `name`, including a node-less entry (a removed node with pods left),
    /// shared with the cache: it does not change afterwards.
    pub fn node_info(&self, name: &str) -> Option<Arc<NodeInfo>> {
        self.lock()
            .nodes
            .get(name)
            .map(|entry| Arc::clone(&entry.info))
    }

    /// How many nodes the cache holds (not counting node-less entries).
    pub fn node_count(&self) -> usize {
        self.lock().node_count
    }

    /// How many pods the cache holds, assumed or added.
    pub fn pod_count(&self) -> usize {
        self.lock().pods.len()
    }

    /// How many pods are assumed and not yet confirmed.
    pub fn assumed_pod_count(&self) -> usize {
        self.lock().assumed.len()
    }

    /// Brings `snapshot` up to date: copies in the node infos that changed since its last update,
    /// adds new nodes, drops removed ones (and node-less entries). Returns how many node infos
    /// were copied in (added or replaced).
    ///
    /// A snapshot should only ever be updated from one cache.
    pub fn update_snapshot(&self, snapshot: &mut Snapshot) -> usize {
        let inner = self.lock();
        let mut copied = 0;
        let mut added = Vec::new();
        let mut removed = false;
        for name in inner
            .by_generation
            .range(snapshot.generation.saturating_add(1)..)
            .map(|(_, name)| name)
        {
            let Some(entry) = inner.nodes.get(name) else {
                continue;
            };
            match (snapshot.position(name), entry.has_node) {
                (Ok(i), true) => {
                    if let Some(slot) = snapshot.nodes.get_mut(i) {
                        *slot = Arc::clone(&entry.info);
                        copied += 1;
                    }
                }
                (Ok(_), false) => removed = true,
                (Err(_), true) => {
                    added.push(Arc::clone(&entry.info));
                    copied += 1;
                }
                (Err(_), false) => {}
            }
        }
        if !added.is_empty() {
            snapshot.nodes.extend(added);
            snapshot.nodes.sort_by(|a, b| a.name().cmp(b.name()));
        }
        // Every node of the cache is now in the snapshot; more in the snapshot means some were
        // removed (or lost their node object): drop them, O(n) but only on removals, as Kubernetes.
        if removed || snapshot.nodes.len() > inner.node_count {
            snapshot.nodes.retain(|info| {
                inner
                    .nodes
                    .get(info.name())
                    .is_some_and(|entry| entry.has_node)
            });
        }
        snapshot.generation = inner.generation;
        copied
    }
}

/// The node infos one scheduling cycle reads: a consistent copy of the cache's nodes, ordered by
/// name, updated between cycles by [`SchedulerCache::update_snapshot`].
///
/// Only nodes with a node object are in it (not the node-less entries of removed nodes).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Sorted by node name.
    nodes: Vec<Arc<NodeInfo>>,
    /// The cache generation it reflects.
    generation: u64,
}

impl Snapshot {
    /// An empty snapshot; the first update copies every node in.
    pub fn new() -> Snapshot {
        Snapshot::default()
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.nodes.binary_search_by(|info| info.name().cmp(name))
    }

    /// The node info of node `name`.
    pub fn get(&self, name: &str) -> Option<&NodeInfo> {
        self.position(name)
            .ok()
            .and_then(|i| self.nodes.get(i))
            .map(|info| &**info)
    }

    /// The node infos, ordered by node name.
    pub fn node_infos(&self) -> &[Arc<NodeInfo>] {
        &self.nodes
    }

    /// The node infos, ordered by node name.
    pub fn iter(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.iter().map(|info| &**info)
    }

    /// How many nodes it holds.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether it holds no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The cache generation it reflects (0 before its first update).
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::resources::pod_requests;
    use serde_json::json;

    fn node(name: &str) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}
            }))
            .unwrap(),
        )
    }

    fn pod(name: &str, node: &str, milli_cpu: i64) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"nodeName": node, "containers": [
                {"name": "c", "resources": {"requests": {"cpu": format!("{milli_cpu}m")}}}
            ]}
        }))
        .unwrap()
    }

    fn cpu(cache: &SchedulerCache, node: &str) -> Option<i64> {
        cache.node_info(node).map(|info| info.requested().milli_cpu)
    }

    #[test]
    fn resources_on_add_assume_forget_remove() {
        let cache = SchedulerCache::new();
        cache.add_node(node("n1"));
        assert_eq!(cache.node_count(), 1);
        let a = pod("a", "n1", 500);
        let b = pod("b", "n1", 250);
        cache.add_pod(&a).unwrap();
        assert_eq!(cpu(&cache, "n1"), Some(500));
        cache.assume_pod(&b).unwrap();
        assert_eq!(cpu(&cache, "n1"), Some(750));
        assert_eq!(cache.pod_count(), 2);
        assert_eq!(cache.assumed_pod_count(), 1);
        cache.forget_pod(&b).unwrap();
        assert_eq!(cpu(&cache, "n1"), Some(500));
        assert!(!cache.is_assumed(&b));
        cache.remove_pod(&a).unwrap();
        assert_eq!(cpu(&cache, "n1"), Some(0));
        assert_eq!(cache.pod_count(), 0);
    }

    #[test]
    fn misuse_is_reported_with_the_pod() {
        let cache = SchedulerCache::new();
        cache.add_node(node("n1"));
        let a = pod("a", "n1", 100);
        cache.assume_pod(&a).unwrap();
        assert_eq!(
            cache.assume_pod(&a),
            Err(CacheError::AlreadyInCache { pod: "ns/a".into() })
        );
        assert_eq!(
            cache.forget_pod(&pod("a", "n2", 100)),
            Err(CacheError::AssumedOnOtherNode {
                pod: "ns/a".into(),
                assumed_on: "n1".into(),
                node: "n2".into()
            })
        );
        assert_eq!(
            cache.update_pod(&a),
            Err(CacheError::UpdateOfAssumed { pod: "ns/a".into() })
        );
        cache.add_pod(&a).unwrap();
        assert_eq!(
            cache.add_pod(&a),
            Err(CacheError::AlreadyAdded { pod: "ns/a".into() })
        );
        assert_eq!(
            cache.forget_pod(&a),
            Err(CacheError::NotAssumed { pod: "ns/a".into() })
        );
        let unassigned = pod("u", "", 100);
        assert_eq!(
            cache.assume_pod(&unassigned),
            Err(CacheError::NotAssigned { pod: "ns/u".into() })
        );
        assert_eq!(
            cache.remove_pod(&pod("x", "n1", 1)),
            Err(CacheError::PodNotFound { pod: "ns/x".into() })
        );
        assert_eq!(
            cache.remove_node(&node("zz")),
            Err(CacheError::NodeNotFound { node: "zz".into() })
        );
        let message = cache.forget_pod(&a).unwrap_err().to_string();
        assert!(message.contains("ns/a"), "{message}");
        // Nothing changed through the errors.
        assert_eq!(cpu(&cache, "n1"), Some(100));
        assert_eq!(cache.pod_count(), 1);
    }

    #[test]
    fn assumed_then_confirmed_by_the_informer() {
        let cache = SchedulerCache::with_assumed_pod_ttl(Some(Duration::from_secs(30)));
        cache.add_node(node("n1"));
        let a = pod("a", "n1", 300);
        cache.assume_pod(&a).unwrap();
        let start = Instant::now();
        assert!(cache.finish_binding(&a, start));
        cache.add_pod(&a).unwrap();
        assert!(!cache.is_assumed(&a));
        assert_eq!(cpu(&cache, "n1"), Some(300));
        // Confirmed pods never expire.
        let later = start + Duration::from_secs(3600);
        assert!(cache.cleanup_expired_assumed_pods(later).is_empty());
        assert_eq!(cpu(&cache, "n1"), Some(300));
        // finish_binding after confirmation is a no-op.
        assert!(!cache.finish_binding(&a, later));
    }

    #[test]
    fn confirmation_on_another_node_moves_the_pod() {
        let cache = SchedulerCache::new();
        cache.add_node(node("n1"));
        cache.add_node(node("n2"));
        cache.assume_pod(&pod("a", "n1", 300)).unwrap();
        // The informer reports it bound to n2, with another request.
        cache.add_pod(&pod("a", "n2", 400)).unwrap();
        assert_eq!(cpu(&cache, "n1"), Some(0));
        assert_eq!(cpu(&cache, "n2"), Some(400));
        assert!(!cache.node_info("n1").unwrap().has_pod("ns/a"));
        // An update on the same node adjusts the totals; naming another node is refused.
        cache.update_pod(&pod("a", "n2", 700)).unwrap();
        assert_eq!(cpu(&cache, "n2"), Some(700));
        assert_eq!(
            cache.update_pod(&pod("a", "n1", 700)),
            Err(CacheError::NodeMismatch {
                pod: "ns/a".into(),
                cached: "n2".into(),
                node: "n1".into()
            })
        );
        assert_eq!(cpu(&cache, "n2"), Some(700));
        assert_eq!(
            cache
                .get_pod(&pod("a", "", 0))
                .and_then(|p| p.spec)
                .and_then(|s| s.node_name),
            Some("n2".into())
        );
    }

    #[test]
    fn assumed_pod_expires_after_finish_binding_and_ttl() {
        let ttl = Duration::from_secs(10);
        let cache = SchedulerCache::with_assumed_pod_ttl(Some(ttl));
        assert_eq!(cache.assumed_pod_ttl(), Some(ttl));
        cache.add_node(node("n1"));
        let a = pod("a", "n1", 300);
        let b = pod("b", "n1", 200);
        cache.assume_pod(&a).unwrap();
        cache.assume_pod(&b).unwrap();
        let start = Instant::now();
        // Only a's binding finished: b never expires until it does.
        assert!(cache.finish_binding(&a, start));
        assert!(cache.cleanup_expired_assumed_pods(start + ttl).is_empty());
        assert_eq!(cpu(&cache, "n1"), Some(500));
        let expired = cache.cleanup_expired_assumed_pods(start + ttl + Duration::from_millis(1));
        assert_eq!(expired, ["ns/a"]);
        assert_eq!(cpu(&cache, "n1"), Some(200));
        assert!(cache.is_assumed(&b));
        // The informer's add for an expired pod adds it back.
        cache.add_pod(&a).unwrap();
        assert_eq!(cpu(&cache, "n1"), Some(500));
        // With the default, nothing ever expires.
        let never = SchedulerCache::new();
        never.assume_pod(&a).unwrap();
        never.finish_binding(&a, start);
        assert!(
            never
                .cleanup_expired_assumed_pods(start + Duration::from_secs(1 << 30))
                .is_empty()
        );
        assert!(never.is_assumed(&a));
    }

    #[test]
    fn removed_node_with_pods_left_stays_node_less() {
        let cache = SchedulerCache::new();
        cache.add_node(node("n1"));
        let a = pod("a", "n1", 100);
        cache.add_pod(&a).unwrap();
        let mut snapshot = Snapshot::new();
        cache.update_snapshot(&mut snapshot);
        assert_eq!(snapshot.len(), 1);
        cache.remove_node(&node("n1")).unwrap();
        assert_eq!(cache.node_count(), 0);
        assert_eq!(
            cache.remove_node(&node("n1")),
            Err(CacheError::NodeNotFound { node: "n1".into() })
        );
        let info = cache.node_info("n1").unwrap();
        assert_eq!(info.pod_count(), 1);
        assert_eq!(info.requested().milli_cpu, 100);
        cache.update_snapshot(&mut snapshot);
        assert!(snapshot.is_empty());
        // Re-adding the node keeps the pods.
        cache.add_node(node("n1"));
        cache.update_snapshot(&mut snapshot);
        assert_eq!(snapshot.get("n1").unwrap().requested().milli_cpu, 100);
        // Removed again; once the last pod goes, the entry goes.
        cache.remove_node(&node("n1")).unwrap();
        cache.remove_pod(&a).unwrap();
        assert!(cache.node_info("n1").is_none());
        cache.update_snapshot(&mut snapshot);
        assert!(snapshot.is_empty());
        // A pod assumed on an unknown node creates a node-less entry, not in snapshots.
        cache.assume_pod(&pod("b", "ghost", 100)).unwrap();
        assert_eq!(cpu(&cache, "ghost"), Some(100));
        cache.update_snapshot(&mut snapshot);
        assert!(snapshot.is_empty());
        cache.forget_pod(&pod("b", "ghost", 100)).unwrap();
        assert!(cache.node_info("ghost").is_none());
    }

    #[test]
    fn snapshot_update_copies_only_changed_nodes() {
        let cache = SchedulerCache::new();
        for i in 0..100 {
            cache.add_node(node(&format!("n{i:03}")));
        }
        let mut snapshot = Snapshot::new();
        assert_eq!(cache.update_snapshot(&mut snapshot), 100);
        let names: Vec<&str> = snapshot.iter().map(NodeInfo::name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        assert_eq!(cache.update_snapshot(&mut snapshot), 0);

        cache.assume_pod(&pod("a", "n005", 100)).unwrap();
        cache.add_pod(&pod("b", "n050", 200)).unwrap();
        cache.add_pod(&pod("c", "n050", 300)).unwrap();
        let before = snapshot.clone();
        assert_eq!(cache.update_snapshot(&mut snapshot), 2);
        assert_eq!(snapshot.get("n005").unwrap().requested().milli_cpu, 100);
        assert_eq!(snapshot.get("n050").unwrap().requested().milli_cpu, 500);
        // The old snapshot is untouched (copy on write).
        assert_eq!(before.get("n050").unwrap().requested().milli_cpu, 0);
        // Unchanged nodes are shared, not copied.
        assert!(Arc::ptr_eq(
            &before.node_infos()[0],
            &snapshot.node_infos()[0]
        ));

        // Removal and addition in the same interval.
        cache.remove_node(&node("n010")).unwrap();
        cache.add_node(node("n100"));
        assert_eq!(cache.update_snapshot(&mut snapshot), 1);
        assert_eq!(snapshot.len(), 100);
        assert!(snapshot.get("n010").is_none());
        assert!(snapshot.get("n100").is_some());
        cache.remove_node(&node("n050")).unwrap();
        assert_eq!(cache.update_snapshot(&mut snapshot), 0);
        assert_eq!(snapshot.len(), 99);
        assert!(snapshot.get("n050").is_none());
        assert_eq!(snapshot.generation(), {
            let mut again = snapshot.clone();
            cache.update_snapshot(&mut again);
            again.generation()
        });
    }

    #[test]
    fn shared_between_threads() {
        fn is_send_sync<T: Send + Sync>() {}
        is_send_sync::<SchedulerCache>();
        is_send_sync::<Snapshot>();
        let cache = Arc::new(SchedulerCache::new());
        cache.add_node(node("n1"));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let cache = Arc::clone(&cache);
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let p = pod(&format!("p{t}-{i}"), "n1", 10);
                        cache.assume_pod(&p).unwrap();
                        if i % 2 == 0 {
                            cache.forget_pod(&p).unwrap();
                        } else {
                            cache.add_pod(&p).unwrap();
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(cache.pod_count(), 100);
        assert_eq!(cache.assumed_pod_count(), 0);
        assert_eq!(cpu(&cache, "n1"), Some(1000));
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum Op {
            AddNode(usize),
            RemoveNode(usize),
            Assume(usize, usize, i64),
            FinishBinding(usize),
            Forget(usize, usize),
            AddPod(usize, usize, i64),
            UpdatePod(usize, usize, i64),
            RemovePod(usize, usize),
            Cleanup(u64),
            Snapshot,
        }

        fn arb_op() -> impl Strategy<Value = Op> {
            let n = 0..4_usize;
            let p = 0..6_usize;
            let c = 0..2000_i64;
            prop_oneof![
                n.clone().prop_map(Op::AddNode),
                n.clone().prop_map(Op::RemoveNode),
                (p.clone(), n.clone(), c.clone()).prop_map(|(p, n, c)| Op::Assume(p, n, c)),
                p.clone().prop_map(Op::FinishBinding),
                (p.clone(), n.clone()).prop_map(|(p, n)| Op::Forget(p, n)),
                (p.clone(), n.clone(), c.clone()).prop_map(|(p, n, c)| Op::AddPod(p, n, c)),
                (p.clone(), n.clone(), c).prop_map(|(p, n, c)| Op::UpdatePod(p, n, c)),
                (p, n).prop_map(|(p, n)| Op::RemovePod(p, n)),
                (0..20_u64).prop_map(Op::Cleanup),
                Just(Op::Snapshot),
            ]
        }

        fn check(cache: &SchedulerCache) -> Result<(), TestCaseError> {
            let inner = cache.lock();
            for (name, entry) in &inner.nodes {
                let mut fresh = NodeInfo::new(Arc::clone(entry.info.node_arc()));
                let mut sum = crate::scheduler::resources::Resource::default();
                for (_, state) in inner.pods.iter().filter(|(_, s)| &s.node == name) {
                    fresh.add_pod(&state.pod);
                    sum.add(&pod_requests(&state.pod));
                }
                prop_assert_eq!(entry.info.requested(), fresh.requested());
                prop_assert_eq!(entry.info.requested().milli_cpu, sum.milli_cpu);
                prop_assert_eq!(entry.info.non_zero_requested(), fresh.non_zero_requested());
                prop_assert!(entry.info.pod_keys().eq(fresh.pod_keys()));
                prop_assert!(entry.has_node || entry.info.pod_count() > 0);
                prop_assert_eq!(inner.by_generation.get(&entry.generation), Some(name));
            }
            for state in inner.pods.values() {
                prop_assert!(inner.nodes.contains_key(&state.node));
            }
            prop_assert_eq!(inner.by_generation.len(), inner.nodes.len());
            prop_assert_eq!(
                inner.node_count,
                inner.nodes.values().filter(|e| e.has_node).count()
            );
            let assumed: BTreeSet<String> = inner
                .pods
                .iter()
                .filter(|(_, s)| s.assumed)
                .map(|(k, _)| k.clone())
                .collect();
            prop_assert_eq!(&assumed, &inner.assumed);
            Ok(())
        }

        fn same(a: &Snapshot, b: &Snapshot) -> Result<(), TestCaseError> {
            prop_assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b.iter()) {
                prop_assert_eq!(x.name(), y.name());
                prop_assert_eq!(x.requested(), y.requested());
                prop_assert!(x.pod_keys().eq(y.pod_keys()));
            }
            Ok(())
        }

        proptest! {
            /// Any sequence of operations, valid or not, leaves each node's totals equal to the
            /// sum over the pods the cache has on it, and an incrementally updated snapshot equal
            /// to a fresh one.
            #[test]
            fn totals_match_pods(ops in proptest::collection::vec(arb_op(), 0..60)) {
                let cache = SchedulerCache::with_assumed_pod_ttl(Some(Duration::from_secs(5)));
                let start = Instant::now();
                let name = |n: usize| format!("n{n}");
                let mut snapshot = Snapshot::new();
                for op in ops {
                    match op {
                        Op::AddNode(n) => cache.add_node(node(&name(n))),
                        Op::RemoveNode(n) => { let _ = cache.remove_node(&node(&name(n))); }
                        Op::Assume(p, n, c) => { let _ = cache.assume_pod(&pod(&format!("p{p}"), &name(n), c)); }
                        Op::FinishBinding(p) => { cache.finish_binding(&pod(&format!("p{p}"), "", 0), start); }
                        Op::Forget(p, n) => { let _ = cache.forget_pod(&pod(&format!("p{p}"), &name(n), 0)); }
                        Op::AddPod(p, n, c) => { let _ = cache.add_pod(&pod(&format!("p{p}"), &name(n), c)); }
                        Op::UpdatePod(p, n, c) => { let _ = cache.update_pod(&pod(&format!("p{p}"), &name(n), c)); }
                        Op::RemovePod(p, n) => { let _ = cache.remove_pod(&pod(&format!("p{p}"), &name(n), 0)); }
                        Op::Cleanup(s) => { cache.cleanup_expired_assumed_pods(start + Duration::from_secs(s)); }
                        Op::Snapshot => { cache.update_snapshot(&mut snapshot); }
                    }
                    check(&cache)?;
                }
                cache.update_snapshot(&mut snapshot);
                let mut fresh = Snapshot::new();
                cache.update_snapshot(&mut fresh);
                same(&snapshot, &fresh)?;
                prop_assert_eq!(fresh.len(), cache.node_count());
            }
        }
    }
}
