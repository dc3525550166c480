//! The scheduling queue: the pods waiting for a node, in the order the scheduler takes them.
//!
//! This is kube-scheduler's `PriorityQueue` (`pkg/scheduler/backend/queue`), with its three
//! parts:
//!
//! - **activeQ**: the pods ready to be scheduled, a heap ordered by a [`QueueSort`] — by default
//!   [`PrioritySort`], Kubernetes' `PrioritySort` plugin: higher `spec.priority` first, then the
//!   pod that entered the queue earlier. [`PriorityQueue::pop`] takes the head, waiting until
//!   there is one.
//! - **backoffQ**: pods whose last attempt failed, each waiting out its back-off (1 s for the
//!   first attempt, doubling per attempt up to 10 s, as Kubernetes' defaults; see
//!   [`QueueConfig`]). [`PriorityQueue::flush_backoff_completed`] moves those whose back-off is
//!   over to activeQ.
//! - **unschedulablePods**: pods that no node could take, parked until a [`ClusterEvent`] may
//!   make them schedulable ([`PriorityQueue::move_all_to_active_or_backoff`]). A pod moves only
//!   for an event one of the plugins that rejected it cares about
//!   ([`QueuedPodInfo::unschedulable_plugins`] and [`QueueConfig::plugin_events`]). A pod parked
//!   longer than [`QueueConfig::max_in_unschedulable`] (5 min) is moved anyway by
//!   [`PriorityQueue::flush_unschedulable_left_over`].
//!
//! After [`pop`](PriorityQueue::pop) a pod is *in flight* until the scheduler either binds it
//! ([`done`](PriorityQueue::done)) or gives it back with
//! [`add_unschedulable_if_not_present`](PriorityQueue::add_unschedulable_if_not_present). That
//! call follows Kubernetes' move-request-cycle rule: if a cluster event asked for a move after
//! the pod's scheduling cycle began, the pod might fit now, so it goes to backoffQ rather than
//! being parked (and so does a pod that failed with an error rather than a rejection).
//!
//! Pods are keyed by `namespace/name`; the pod's uid tells a recreated pod from the old one. The
//! queue is thread-safe (one lock inside, every method takes `&self`), iterates only ordered
//! maps (so seeded simulations replay exactly), and reads time from [`tokio::time`], so tests
//! pause and advance it. It runs no task of its own: [`PriorityQueue::run_flushers`] is a future
//! the caller drives, ticking the two flushes every 1 s and 30 s as kube-scheduler does.
//!
//! # Examples
//!
//! ```
//! use std::collections::BTreeSet;
//! use std::sync::Arc;
//!
//! use orchestra_core::k8s::api::core::v1::Pod;
//! use orchestra_core::scheduler::queue::{ClusterEvent, PriorityQueue};
//!
//! fn pod(name: &str, priority: i32) -> Arc<Pod> {
//!     Arc::new(serde_json::from_value(serde_json::json!({
//!         "metadata": {"name": name, "namespace": "default", "uid": name},
//!         "spec": {"containers": [], "priority": priority}
//!     })).unwrap())
//! }
//!
//! let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build()?;
//! rt.block_on(async {
//!     let queue = PriorityQueue::new();
//!     queue.add(pod("low", 0));
//!     queue.add(pod("high", 1000));
//!
//!     // The higher priority goes first.
//!     let mut info = queue.pop().await.unwrap();
//!     assert_eq!(info.pod.metadata.name.as_deref(), Some("high"));
//!
//!     // No node fits it: park it, naming the plugin that rejected it.
//!     let cycle = queue.scheduling_cycle();
//!     info.unschedulable_plugins = BTreeSet::from(["NodeResourcesFit".to_owned()]);
//!     assert!(queue.add_unschedulable_if_not_present(info, cycle));
//!     assert_eq!(queue.pending().unschedulable, 1);
//!
//!     // A node joins: the pod may fit now, so it goes back (to backoffQ, for its 1 s).
//!     assert_eq!(queue.move_all_to_active_or_backoff(ClusterEvent::NodeAdd), 1);
//!     assert_eq!(queue.pending().backoff, 1);
//!     tokio::time::sleep(std::time::Duration::from_secs(1)).await;
//!     queue.flush_backoff_completed();
//!
//!     // Priority still decides: the retried "high" goes before "low".
//!     assert_eq!(queue.pop().await.unwrap().pod.metadata.name.as_deref(), Some("high"));
//!     assert_eq!(queue.pop().await.unwrap().pod.metadata.name.as_deref(), Some("low"));
//!
//!     queue.close();
//!     assert!(queue.pop().await.is_none());
//! });
//! # Ok::<(), std::io::Error>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How often [`PriorityQueue::run_flushers`] moves pods whose back-off is over (kube-scheduler's
/// 1 s).
pub const BACKOFF_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How often [`PriorityQueue::run_flushers`] moves pods parked too long (kube-scheduler's 30 s).
pub const UNSCHEDULABLE_FLUSH_INTERVAL: Duration = Duration::from_secs(30);

/// A pod in the scheduling queue, with its queueing history (kube-scheduler's `QueuedPodInfo`).
#[derive(Clone, Debug)]
pub struct QueuedPodInfo {
    /// The pod, as last added or updated.
    pub pod: Arc<Pod>,
    /// When the pod last entered the queue (added, or given back after a failed attempt). The
    /// default [`PrioritySort`] orders pods of equal priority by it, and back-off counts from it.
    pub timestamp: Instant,
    /// When the pod was first popped for scheduling, `None` until then.
    pub initial_attempt_timestamp: Option<Instant>,
    /// How many times the pod has been popped for scheduling.
    pub attempts: u32,
    /// The plugins that rejected the pod in its last attempt. The scheduler fills this in before
    /// [`PriorityQueue::add_unschedulable_if_not_present`]; empty means the attempt failed with
    /// an error rather than a rejection. Cleared when the pod is popped.
    pub unschedulable_plugins: BTreeSet<String>,
}

impl QueuedPodInfo {
    /// A pod that has just entered the queue, at `now`.
    pub fn new(pod: Arc<Pod>, now: Instant) -> QueuedPodInfo {
        QueuedPodInfo {
            pod,
            timestamp: now,
            initial_attempt_timestamp: None,
            attempts: 0,
            unschedulable_plugins: BTreeSet::new(),
        }
    }

    /// The pod's `spec.priority`, 0 when unset.
    pub fn priority(&self) -> i32 {
        pod_priority(&self.pod)
    }

    /// The pod's key, `namespace/name` (or just `name` for a pod with no namespace).
    pub fn key(&self) -> String {
        pod_key(&self.pod)
    }
}

/// The order of activeQ (kube-scheduler's QueueSort extension point).
///
/// Pods that neither comes before the other leave the queue in the order they entered activeQ.
pub trait QueueSort: Send + Sync + fmt::Debug {
    /// The plugin's name.
    fn name(&self) -> &'static str;

    /// Whether `a` should be scheduled before `b`.
    fn less(&self, a: &QueuedPodInfo, b: &QueuedPodInfo) -> bool;
}

/// Kubernetes' default `PrioritySort`: higher `spec.priority` first, then the earlier
/// [`QueuedPodInfo::timestamp`].
#[derive(Clone, Copy, Debug, Default)]
pub struct PrioritySort;

impl QueueSort for PrioritySort {
    fn name(&self) -> &'static str {
        "PrioritySort"
    }

    fn less(&self, a: &QueuedPodInfo, b: &QueuedPodInfo) -> bool {
        let (pa, pb) = (a.priority(), b.priority());
        pa > pb || (pa == pb && a.timestamp < b.timestamp)
    }
}

/// A change in the cluster that may make parked pods schedulable (kube-scheduler's
/// `ClusterEvent`, reduced to the resource and the kind of change).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClusterEvent {
    /// A node was added.
    NodeAdd,
    /// A node changed in a way that may matter to scheduling: its allocatable, labels, taints,
    /// conditions or `spec.unschedulable`.
    NodeUpdate,
    /// A node was deleted.
    NodeDelete,
    /// A pod was assigned to a node (it may attract pods with affinity to it).
    PodAdd,
    /// An assigned pod changed (its labels, or it shrank its requests).
    PodUpdate,
    /// An assigned pod was deleted, freeing its node's resources and ports.
    PodDelete,
    /// A pod stayed parked longer than [`QueueConfig::max_in_unschedulable`]; moves every pod.
    UnschedulableTimeout,
    /// Everything is to be retried (kube-scheduler's `ForceActivate`); moves every pod.
    ForceActivate,
}

impl ClusterEvent {
    /// Whether the event moves every parked pod, whatever rejected it.
    pub fn is_wildcard(self) -> bool {
        matches!(
            self,
            ClusterEvent::UnschedulableTimeout | ClusterEvent::ForceActivate
        )
    }
}

/// The settings of a [`PriorityQueue`]; [`Default`] gives kube-scheduler's.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    /// The back-off after the first failed attempt (1 s); it doubles with each attempt.
    pub initial_backoff: Duration,
    /// The longest back-off (10 s).
    pub max_backoff: Duration,
    /// How long a pod stays parked as unschedulable before it is retried anyway (5 min,
    /// kube-scheduler's `podMaxInUnschedulablePodsDuration`).
    pub max_in_unschedulable: Duration,
    /// The events each plugin cares about (its `EventsToRegister`): a pod rejected by the plugins
    /// of [`QueuedPodInfo::unschedulable_plugins`] moves on an event if any of them lists it, or
    /// is not in this map (a plugin that declares nothing cares about every event). Empty by
    /// default: every event moves every parked pod.
    pub plugin_events: BTreeMap<String, BTreeSet<ClusterEvent>>,
    /// The order of activeQ ([`PrioritySort`] by default).
    pub sort: Arc<dyn QueueSort>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            max_in_unschedulable: Duration::from_secs(5 * 60),
            plugin_events: BTreeMap::new(),
            sort: Arc::new(PrioritySort),
        }
    }
}

impl QueueConfig {
    /// The back-off of a pod after `attempts` attempts: `initial_backoff` doubled
    /// `attempts - 1` times, at most `max_backoff`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use orchestra_core::scheduler::queue::QueueConfig;
    ///
    /// let config = QueueConfig::default();
    /// let secs: Vec<u64> = (1..=6).map(|n| config.backoff_duration(n).as_secs()).collect();
    /// assert_eq!(secs, [1, 2, 4, 8, 10, 10]);
    /// assert_eq!(config.backoff_duration(100), Duration::from_secs(10));
    /// ```
    pub fn backoff_duration(&self, attempts: u32) -> Duration {
        let mut duration = self.initial_backoff.min(self.max_backoff);
        if duration.is_zero() {
            return duration;
        }
        for _ in 1..attempts {
            if duration >= self.max_backoff.saturating_sub(duration) {
                return self.max_backoff;
            }
            duration += duration;
        }
        duration
    }

    /// Whether `event` may help a pod rejected by `plugins`.
    pub fn event_moves(&self, plugins: &BTreeSet<String>, event: ClusterEvent) -> bool {
        event.is_wildcard()
            || plugins.is_empty()
            || plugins.iter().any(|plugin| {
                self.plugin_events
                    .get(plugin)
                    .is_none_or(|events| events.contains(&event))
            })
    }
}

/// How many pods each part of the queue holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingCounts {
    /// Pods ready to be popped.
    pub active: usize,
    /// Pods waiting out their back-off.
    pub backoff: usize,
    /// Pods parked as unschedulable.
    pub unschedulable: usize,
    /// Pods popped and not yet given back or done.
    pub in_flight: usize,
}

/// The scheduling queue (kube-scheduler's `PriorityQueue`); see the
/// [module documentation](self).
pub struct PriorityQueue {
    config: QueueConfig,
    state: Mutex<State>,
    /// Woken when activeQ gains a pod or the queue closes.
    changed: Notify,
}

impl fmt::Debug for PriorityQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("PriorityQueue")
            .field("pending", &state.counts())
            .field("scheduling_cycle", &state.scheduling_cycle)
            .field("closed", &state.closed)
            .finish_non_exhaustive()
    }
}

/// An entry of activeQ.
#[derive(Debug)]
struct Entry {
    key: String,
    /// Insertion order, the tie-break of the sort.
    seq: u64,
    info: QueuedPodInfo,
}

/// A binary heap ordered by a [`QueueSort`], indexed by pod key so that a pod can be removed or
/// updated in place.
#[derive(Debug, Default)]
struct ActiveHeap {
    items: Vec<Entry>,
    index: BTreeMap<String, usize>,
}

impl ActiveHeap {
    fn before(sort: &dyn QueueSort, a: &Entry, b: &Entry) -> bool {
        sort.less(&a.info, &b.info) || (!sort.less(&b.info, &a.info) && a.seq < b.seq)
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    fn get(&self, key: &str) -> Option<&QueuedPodInfo> {
        self.index
            .get(key)
            .and_then(|&i| self.items.get(i))
            .map(|entry| &entry.info)
    }

    fn swap(&mut self, i: usize, j: usize) {
        self.items.swap(i, j);
        for k in [i, j] {
            if let Some(entry) = self.items.get(k)
                && let Some(slot) = self.index.get_mut(&entry.key)
            {
                *slot = k;
            }
        }
    }

    fn sift_up(&mut self, sort: &dyn QueueSort, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if Self::before(sort, &self.items[i], &self.items[parent]) {
                self.swap(i, parent);
                i = parent;
            } else {
                break;
            }
        }
    }

    fn sift_down(&mut self, sort: &dyn QueueSort, mut i: usize) {
        let n = self.items.len();
        loop {
            let (left, right) = (2 * i + 1, 2 * i + 2);
            let mut best = i;
            if left < n && Self::before(sort, &self.items[left], &self.items[best]) {
                best = left;
            }
            if right < n && Self::before(sort, &self.items[right], &self.items[best]) {
                best = right;
            }
            if best == i {
                break;
            }
            self.swap(i, best);
            i = best;
        }
    }

    fn push(&mut self, sort: &dyn QueueSort, entry: Entry) {
        let i = self.items.len();
        self.index.insert(entry.key.clone(), i);
        self.items.push(entry);
        self.sift_up(sort, i);
    }

    fn remove(&mut self, sort: &dyn QueueSort, key: &str) -> Option<Entry> {
        let i = self.index.remove(key)?;
        let last = self.items.len().checked_sub(1)?;
        if i != last {
            self.items.swap(i, last);
            if let Some(slot) = self.index.get_mut(&self.items[i].key) {
                *slot = i;
            }
        }
        let entry = self.items.pop();
        if i < self.items.len() {
            self.sift_down(sort, i);
            self.sift_up(sort, i);
        }
        entry
    }

    fn pop(&mut self, sort: &dyn QueueSort) -> Option<Entry> {
        let key = self.items.first()?.key.clone();
        self.remove(sort, &key)
    }

    /// Changes the pod of `key` and restores the heap order.
    fn update(&mut self, sort: &dyn QueueSort, key: &str, pod: Arc<Pod>) {
        if let Some(&i) = self.index.get(key)
            && let Some(entry) = self.items.get_mut(i)
        {
            entry.info.pod = pod;
            self.sift_down(sort, i);
            self.sift_up(sort, i);
        }
    }
}

/// A pod handed out by `pop` and not yet given back.
#[derive(Debug)]
struct InFlight {
    uid: Option<String>,
    /// The pod as last updated while in flight.
    latest: Option<Arc<Pod>>,
    /// Whether an update that may help came while in flight.
    updated: bool,
}

/// Where a pod is.
enum Place {
    Active,
    Backoff,
    Unschedulable,
    InFlight,
    Nowhere,
}

#[derive(Debug, Default)]
struct State {
    active: ActiveHeap,
    /// backoffQ by back-off expiry (and insertion order).
    backoff: BTreeMap<(Instant, u64), String>,
    /// backoffQ by key: the expiry entry and the pod.
    backoff_pods: BTreeMap<String, ((Instant, u64), QueuedPodInfo)>,
    unschedulable: BTreeMap<String, QueuedPodInfo>,
    in_flight: BTreeMap<String, InFlight>,
    next_seq: u64,
    scheduling_cycle: u64,
    /// The scheduling cycle at the last move request, if any.
    move_request_cycle: Option<u64>,
    closed: bool,
}

impl State {
    fn counts(&self) -> PendingCounts {
        PendingCounts {
            active: self.active.len(),
            backoff: self.backoff_pods.len(),
            unschedulable: self.unschedulable.len(),
            in_flight: self.in_flight.len(),
        }
    }

    fn seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        seq
    }

    /// Where the pod with `key` is, and its uid there.
    fn find(&self, key: &str) -> (Place, Option<String>) {
        let uid = |pod: &Pod| pod.metadata.uid.clone();
        if let Some(info) = self.active.get(key) {
            (Place::Active, uid(&info.pod))
        } else if let Some((_, info)) = self.backoff_pods.get(key) {
            (Place::Backoff, uid(&info.pod))
        } else if let Some(info) = self.unschedulable.get(key) {
            (Place::Unschedulable, uid(&info.pod))
        } else if let Some(flight) = self.in_flight.get(key) {
            (Place::InFlight, flight.uid.clone())
        } else {
            (Place::Nowhere, None)
        }
    }

    /// Takes the pod with `key` out of whichever part holds it.
    fn remove(&mut self, sort: &dyn QueueSort, key: &str) -> bool {
        if self.active.remove(sort, key).is_some() {
            return true;
        }
        if let Some((expiry, _)) = self.backoff_pods.remove(key) {
            self.backoff.remove(&expiry);
            return true;
        }
        self.unschedulable.remove(key).is_some() || self.in_flight.remove(key).is_some()
    }

    fn push_active(&mut self, sort: &dyn QueueSort, info: QueuedPodInfo) {
        let entry = Entry {
            key: info.key(),
            seq: self.seq(),
            info,
        };
        self.active.push(sort, entry);
    }

    fn push_backoff(&mut self, expiry: Instant, info: QueuedPodInfo) {
        let slot = (expiry, self.seq());
        let key = info.key();
        self.backoff.insert(slot, key.clone());
        self.backoff_pods.insert(key, (slot, info));
    }
}

/// The pod's key: `namespace/name`, or `name` with no namespace.
fn pod_key(pod: &Pod) -> String {
    let name = pod.metadata.name.as_deref().unwrap_or("");
    match pod.metadata.namespace.as_deref() {
        Some(namespace) if !namespace.is_empty() => format!("{namespace}/{name}"),
        _ => name.to_owned(),
    }
}

fn pod_priority(pod: &Pod) -> i32 {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.priority)
        .unwrap_or(0)
}

/// Whether two uids may be the same pod (an unset uid matches anything).
fn same_uid(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// Kubernetes' `isPodUpdated`: whether the pod changed other than in its status, resource
/// version, generation or managed fields.
fn pod_updated(old: &Pod, new: &Pod) -> bool {
    let strip = |pod: &Pod| {
        let mut pod = pod.clone();
        pod.metadata.resource_version = None;
        pod.metadata.generation = None;
        pod.metadata.managed_fields = None;
        pod.status = None;
        pod
    };
    strip(old) != strip(new)
}

impl Default for PriorityQueue {
    fn default() -> Self {
        PriorityQueue::new()
    }
}

impl PriorityQueue {
    /// An empty queue with kube-scheduler's defaults.
    pub fn new() -> PriorityQueue {
        PriorityQueue::with_config(QueueConfig::default())
    }

    /// An empty queue with the given settings.
    pub fn with_config(config: QueueConfig) -> PriorityQueue {
        PriorityQueue {
            config,
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        }
    }

    /// The queue's settings.
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Only a user's QueueSort can panic with the lock held; go on with the state it left.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sort(&self) -> &dyn QueueSort {
        &*self.config.sort
    }

    fn backoff_expiry(&self, info: &QueuedPodInfo) -> Instant {
        let duration = self.config.backoff_duration(info.attempts);
        info.timestamp
            .checked_add(duration)
            .unwrap_or(info.timestamp)
    }

    /// Puts `info` in activeQ, or in backoffQ if its back-off is not over at `now`. Returns
    /// whether it went to activeQ.
    fn move_to_active_or_backoff(
        &self,
        state: &mut State,
        info: QueuedPodInfo,
        now: Instant,
    ) -> bool {
        let expiry = self.backoff_expiry(&info);
        if info.attempts > 0 && expiry > now {
            state.push_backoff(expiry, info);
            false
        } else {
            state.push_active(self.sort(), info);
            true
        }
    }

    /// Adds a new pending pod to activeQ (kube-scheduler's `Add`).
    ///
    /// A pod of the same key and uid already in backoffQ or unschedulablePods moves to activeQ
    /// with the new object; one in activeQ is updated in place; one in flight is recorded as
    /// updated. A pod with the same key but another uid (recreated) replaces the old one.
    pub fn add(&self, pod: Arc<Pod>) {
        let now = Instant::now();
        let key = pod_key(&pod);
        let sort = self.sort();
        let woke = {
            let mut state = self.lock();
            let (place, uid) = state.find(&key);
            if !same_uid(uid.as_deref(), pod.metadata.uid.as_deref()) {
                state.remove(sort, &key);
                state.push_active(sort, QueuedPodInfo::new(pod, now));
                true
            } else {
                match place {
                    Place::Active => {
                        state.active.update(sort, &key, pod);
                        false
                    }
                    Place::Backoff => {
                        if let Some((slot, mut info)) = state.backoff_pods.remove(&key) {
                            state.backoff.remove(&slot);
                            info.pod = pod;
                            state.push_active(sort, info);
                        }
                        true
                    }
                    Place::Unschedulable => {
                        if let Some(mut info) = state.unschedulable.remove(&key) {
                            info.pod = pod;
                            state.push_active(sort, info);
                        }
                        true
                    }
                    Place::InFlight => {
                        if let Some(flight) = state.in_flight.get_mut(&key) {
                            flight.latest = Some(pod);
                            flight.updated = true;
                        }
                        false
                    }
                    Place::Nowhere => {
                        state.push_active(sort, QueuedPodInfo::new(pod, now));
                        true
                    }
                }
            }
        };
        if woke {
            self.changed.notify_waiters();
        }
    }

    /// A pending pod changed (kube-scheduler's `Update`).
    ///
    /// In activeQ or backoffQ the pod is replaced where it is. A parked pod that changed in a way
    /// that may help (anything but its status, resource version, generation or managed fields)
    /// goes to activeQ, or to backoffQ if its back-off is not over; otherwise it is replaced where
    /// it is. A pod in flight is recorded, so that if its attempt fails it is retried rather than
    /// parked. A pod the queue does not hold is added; one with another uid replaces the old.
    pub fn update(&self, old: &Pod, new: Arc<Pod>) {
        let now = Instant::now();
        let key = pod_key(&new);
        let sort = self.sort();
        let woke = {
            let mut state = self.lock();
            let (place, uid) = state.find(&key);
            if !same_uid(uid.as_deref(), new.metadata.uid.as_deref()) {
                state.remove(sort, &key);
                state.push_active(sort, QueuedPodInfo::new(new, now));
                true
            } else {
                match place {
                    Place::Active => {
                        state.active.update(sort, &key, new);
                        false
                    }
                    Place::Backoff => {
                        if let Some((_, info)) = state.backoff_pods.get_mut(&key) {
                            info.pod = new;
                        }
                        false
                    }
                    Place::Unschedulable => {
                        if pod_updated(old, &new) {
                            match state.unschedulable.remove(&key) {
                                Some(mut info) => {
                                    info.pod = new;
                                    self.move_to_active_or_backoff(&mut state, info, now)
                                }
                                None => false,
                            }
                        } else {
                            if let Some(info) = state.unschedulable.get_mut(&key) {
                                info.pod = new;
                            }
                            false
                        }
                    }
                    Place::InFlight => {
                        let updated = pod_updated(old, &new);
                        if let Some(flight) = state.in_flight.get_mut(&key) {
                            flight.updated |= updated;
                            flight.latest = Some(new);
                        }
                        false
                    }
                    Place::Nowhere => {
                        state.push_active(sort, QueuedPodInfo::new(new, now));
                        true
                    }
                }
            }
        };
        if woke {
            self.changed.notify_waiters();
        }
    }

    /// Removes the pod from whichever part holds it, in flight included (kube-scheduler's
    /// `Delete`). A pod of the same key but another uid is left alone. Returns whether a pod was
    /// removed.
    pub fn delete(&self, pod: &Pod) -> bool {
        let key = pod_key(pod);
        let mut state = self.lock();
        let (_, uid) = state.find(&key);
        same_uid(uid.as_deref(), pod.metadata.uid.as_deref()) && state.remove(self.sort(), &key)
    }

    /// Takes the head of activeQ, waiting until there is one; `None` once the queue is closed
    /// and activeQ is empty.
    ///
    /// Each pop starts a new scheduling cycle ([`scheduling_cycle`](Self::scheduling_cycle)),
    /// counts an attempt, clears [`QueuedPodInfo::unschedulable_plugins`] and leaves the pod in
    /// flight until [`add_unschedulable_if_not_present`](Self::add_unschedulable_if_not_present)
    /// or [`done`](Self::done).
    pub async fn pop(&self) -> Option<QueuedPodInfo> {
        loop {
            let mut notified = pin!(self.changed.notified());
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some(entry) = state.active.pop(self.sort()) {
                    let mut info = entry.info;
                    state.scheduling_cycle = state.scheduling_cycle.wrapping_add(1);
                    info.attempts = info.attempts.saturating_add(1);
                    if info.initial_attempt_timestamp.is_none() {
                        info.initial_attempt_timestamp = Some(Instant::now());
                    }
                    info.unschedulable_plugins.clear();
                    state.in_flight.insert(
                        entry.key,
                        InFlight {
                            uid: info.pod.metadata.uid.clone(),
                            latest: None,
                            updated: false,
                        },
                    );
                    return Some(info);
                }
                if state.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// The current scheduling cycle: the number of pods popped so far. The scheduler reads it
    /// right after [`pop`](Self::pop) and hands it back to
    /// [`add_unschedulable_if_not_present`](Self::add_unschedulable_if_not_present).
    pub fn scheduling_cycle(&self) -> u64 {
        self.lock().scheduling_cycle
    }

    /// Gives back a pod whose attempt in cycle `cycle` failed (kube-scheduler's
    /// `AddUnschedulableIfNotPresent`). Set [`QueuedPodInfo::unschedulable_plugins`] to the
    /// plugins that rejected it first.
    ///
    /// The pod goes to backoffQ if its attempt failed with an error (no rejecting plugins), if a
    /// move request came after its cycle began, or if it was updated while in flight; otherwise
    /// it is parked in unschedulablePods. Its timestamp becomes now.
    ///
    /// Returns `false`, and queues nothing, if the pod is not in flight (it was deleted meanwhile)
    /// or is already queued.
    pub fn add_unschedulable_if_not_present(&self, mut info: QueuedPodInfo, cycle: u64) -> bool {
        let key = info.key();
        let mut state = self.lock();
        if state.active.contains(&key)
            || state.backoff_pods.contains_key(&key)
            || state.unschedulable.contains_key(&key)
        {
            return false;
        }
        let Some(flight) = state.in_flight.remove(&key) else {
            return false;
        };
        if !same_uid(flight.uid.as_deref(), info.pod.metadata.uid.as_deref()) {
            state.in_flight.insert(key, flight);
            return false;
        }
        if let Some(latest) = flight.latest {
            info.pod = latest;
        }
        let now = Instant::now();
        info.timestamp = now;
        let moved = state.move_request_cycle.is_some_and(|c| c >= cycle);
        if moved || flight.updated || info.unschedulable_plugins.is_empty() {
            let expiry = self.backoff_expiry(&info);
            state.push_backoff(expiry, info);
        } else {
            state.unschedulable.insert(key, info);
        }
        true
    }

    /// Ends the flight of a pod that was bound (kube-scheduler's `Done`). Returns whether it was
    /// in flight.
    pub fn done(&self, pod: &Pod) -> bool {
        let key = pod_key(pod);
        let mut state = self.lock();
        let matches = state
            .in_flight
            .get(&key)
            .is_some_and(|flight| same_uid(flight.uid.as_deref(), pod.metadata.uid.as_deref()));
        matches && state.in_flight.remove(&key).is_some()
    }

    /// Moves the parked pods that `event` may help to activeQ, or to backoffQ while their
    /// back-off lasts, and records a move request for the pods in flight (kube-scheduler's
    /// `MoveAllToActiveOrBackoffQueue`). Returns how many pods moved.
    pub fn move_all_to_active_or_backoff(&self, event: ClusterEvent) -> usize {
        let now = Instant::now();
        let (moved, woke) = {
            let mut state = self.lock();
            let keys: Vec<String> = state
                .unschedulable
                .iter()
                .filter(|(_, info)| self.config.event_moves(&info.unschedulable_plugins, event))
                .map(|(key, _)| key.clone())
                .collect();
            let moved = self.move_parked(&mut state, &keys, now);
            state.move_request_cycle = Some(state.scheduling_cycle);
            moved
        };
        if woke {
            self.changed.notify_waiters();
        }
        moved
    }

    /// Moves the parked pods of `keys`; returns how many moved and whether any reached activeQ.
    fn move_parked(&self, state: &mut State, keys: &[String], now: Instant) -> (usize, bool) {
        let mut moved = 0;
        let mut woke = false;
        for key in keys {
            if let Some(info) = state.unschedulable.remove(key) {
                moved += 1;
                woke |= self.move_to_active_or_backoff(state, info, now);
            }
        }
        (moved, woke)
    }

    /// Moves the pods of backoffQ whose back-off is over to activeQ (kube-scheduler's
    /// `flushBackoffQCompleted`). Returns how many moved.
    pub fn flush_backoff_completed(&self) -> usize {
        let now = Instant::now();
        let moved = {
            let mut state = self.lock();
            let mut moved = 0;
            while let Some(entry) = state.backoff.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let key = entry.remove();
                if let Some((_, info)) = state.backoff_pods.remove(&key) {
                    state.push_active(self.sort(), info);
                    moved += 1;
                }
            }
            moved
        };
        if moved > 0 {
            self.changed.notify_waiters();
        }
        moved
    }

    /// Moves the pods parked longer than [`QueueConfig::max_in_unschedulable`] to activeQ or
    /// backoffQ, as for [`ClusterEvent::UnschedulableTimeout`] (kube-scheduler's
    /// `flushUnschedulablePodsLeftover`). Returns how many moved.
    pub fn flush_unschedulable_left_over(&self) -> usize {
        let now = Instant::now();
        let (moved, woke) = {
            let mut state = self.lock();
            let keys: Vec<String> = state
                .unschedulable
                .iter()
                .filter(|(_, info)| {
                    now.saturating_duration_since(info.timestamp) > self.config.max_in_unschedulable
                })
                .map(|(key, _)| key.clone())
                .collect();
            if keys.is_empty() {
                return 0;
            }
            let moved = self.move_parked(&mut state, &keys, now);
            state.move_request_cycle = Some(state.scheduling_cycle);
            moved
        };
        if woke {
            self.changed.notify_waiters();
        }
        moved
    }

    /// Runs [`flush_backoff_completed`](Self::flush_backoff_completed) every
    /// [`BACKOFF_FLUSH_INTERVAL`] and
    /// [`flush_unschedulable_left_over`](Self::flush_unschedulable_left_over) every
    /// [`UNSCHEDULABLE_FLUSH_INTERVAL`], until `shutdown` resolves.
    pub async fn run_flushers(&self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = pin!(shutdown);
        let now = Instant::now();
        let mut backoff =
            tokio::time::interval_at(now + BACKOFF_FLUSH_INTERVAL, BACKOFF_FLUSH_INTERVAL);
        let mut left_over = tokio::time::interval_at(
            now + UNSCHEDULABLE_FLUSH_INTERVAL,
            UNSCHEDULABLE_FLUSH_INTERVAL,
        );
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                _ = backoff.tick() => {
                    self.flush_backoff_completed();
                }
                _ = left_over.tick() => {
                    self.flush_unschedulable_left_over();
                }
            }
        }
    }

    /// Closes the queue: [`pop`](Self::pop) returns `None` once activeQ is empty, and poppers
    /// waiting now wake with `None`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_waiters();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// How many pods wait in the queue: activeQ, backoffQ and unschedulablePods (not those in
    /// flight).
    pub fn len(&self) -> usize {
        let counts = self.pending();
        counts.active + counts.backoff + counts.unschedulable
    }

    /// Whether no pod waits in the queue.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many pods each part holds.
    pub fn pending(&self) -> PendingCounts {
        self.lock().counts()
    }

    /// The pods waiting in the queue (activeQ in pop order, then backoffQ by expiry, then
    /// unschedulablePods by key), for debugging and tests.
    pub fn pending_pods(&self) -> Vec<Arc<Pod>> {
        let state = self.lock();
        let sort = self.sort();
        let mut active: Vec<&Entry> = state.active.items.iter().collect();
        active.sort_by(|a, b| {
            if ActiveHeap::before(sort, a, b) {
                std::cmp::Ordering::Less
            } else if ActiveHeap::before(sort, b, a) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
        let mut pods: Vec<Arc<Pod>> = active.iter().map(|e| Arc::clone(&e.info.pod)).collect();
        pods.extend(
            state
                .backoff
                .values()
                .filter_map(|key| state.backoff_pods.get(key))
                .map(|(_, info)| Arc::clone(&info.pod)),
        );
        pods.extend(
            state
                .unschedulable
                .values()
                .map(|info| Arc::clone(&info.pod)),
        );
        pods
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use tokio::time::{advance, sleep};

    use super::*;

    fn pod(name: &str, priority: i32) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some("default".to_owned()),
                uid: Some(format!("uid-{name}")),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                priority: Some(priority),
                ..PodSpec::default()
            }),
            status: None,
        })
    }

    fn name(info: &QueuedPodInfo) -> &str {
        info.pod.metadata.name.as_deref().unwrap_or("")
    }

    async fn pop_name(queue: &PriorityQueue) -> String {
        name(&queue.pop().await.unwrap()).to_owned()
    }

    fn plugins(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|&n| n.to_owned()).collect()
    }

    /// Pops the head of activeQ and parks it as rejected by `rejecting`.
    async fn park(queue: &PriorityQueue, rejecting: &[&str]) {
        let mut info = queue.pop().await.unwrap();
        let cycle = queue.scheduling_cycle();
        info.unschedulable_plugins = plugins(rejecting);
        assert!(queue.add_unschedulable_if_not_present(info, cycle));
    }

    fn counts(active: usize, backoff: usize, unschedulable: usize) -> (usize, usize, usize) {
        (active, backoff, unschedulable)
    }

    fn parts(queue: &PriorityQueue) -> (usize, usize, usize) {
        let p = queue.pending();
        (p.active, p.backoff, p.unschedulable)
    }

    #[tokio::test(start_paused = true)]
    async fn priority_order_then_fifo() {
        let queue = PriorityQueue::new();
        queue.add(pod("a", 0));
        queue.add(pod("b", 10));
        advance(Duration::from_millis(1)).await;
        queue.add(pod("c", 10));
        queue.add(pod("d", 0));
        queue.add(pod("e", 100));
        queue.add(pod("f", -5));
        queue.add(pod("g", 0));
        assert_eq!(queue.len(), 7);
        let order: Vec<String> = {
            let pods = queue.pending_pods();
            pods.iter()
                .map(|p| p.metadata.name.clone().unwrap_or_default())
                .collect()
        };
        let mut popped = Vec::new();
        for _ in 0..7 {
            popped.push(pop_name(&queue).await);
        }
        assert_eq!(popped, ["e", "b", "c", "a", "d", "g", "f"]);
        assert_eq!(order, popped);
        assert_eq!(queue.pending().in_flight, 7);
        assert_eq!(queue.scheduling_cycle(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_up_to_the_max() {
        let queue = PriorityQueue::new();
        queue.add(pod("a", 0));
        for expected in [1000, 2000, 4000, 8000, 10_000, 10_000] {
            let info = queue.pop().await.unwrap();
            let cycle = queue.scheduling_cycle();
            // An error (no rejecting plugin): straight to backoffQ.
            assert!(queue.add_unschedulable_if_not_present(info, cycle));
            assert_eq!(parts(&queue), counts(0, 1, 0));
            advance(Duration::from_millis(expected - 1)).await;
            assert_eq!(queue.flush_backoff_completed(), 0, "{expected} ms");
            advance(Duration::from_millis(1)).await;
            assert_eq!(queue.flush_backoff_completed(), 1, "{expected} ms");
        }
        let info = queue.pop().await.unwrap();
        assert_eq!(info.attempts, 7);
        assert_eq!(
            info.initial_attempt_timestamp.map(|t| t.elapsed()),
            Some(Duration::from_secs(35))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn parked_pod_moves_only_on_relevant_events() {
        let config = QueueConfig {
            plugin_events: BTreeMap::from([(
                "NodeResourcesFit".to_owned(),
                BTreeSet::from([ClusterEvent::NodeAdd, ClusterEvent::PodDelete]),
            )]),
            ..QueueConfig::default()
        };
        let queue = PriorityQueue::with_config(config);
        queue.add(pod("fit", 0));
        queue.add(pod("other", 0));
        park(&queue, &["NodeResourcesFit"]).await;
        park(&queue, &["Unregistered"]).await;
        assert_eq!(parts(&queue), counts(0, 0, 2));

        // NodeUpdate: NodeResourcesFit does not care; a plugin that declared nothing cares.
        assert_eq!(
            queue.move_all_to_active_or_backoff(ClusterEvent::NodeUpdate),
            1
        );
        assert_eq!(parts(&queue), counts(0, 1, 1));
        assert_eq!(
            queue.pending_pods()[0].metadata.name.as_deref(),
            Some("other")
        );
        // PodDelete frees resources: NodeResourcesFit cares.
        assert_eq!(
            queue.move_all_to_active_or_backoff(ClusterEvent::PodDelete),
            1
        );
        assert_eq!(parts(&queue), counts(0, 2, 0));

        // Once its back-off is over, a moved pod goes straight to activeQ.
        queue.add(pod("late", 0));
        // The two moved pods are in backoffQ, so this pops and parks "late".
        park(&queue, &["NodeResourcesFit"]).await;
        advance(Duration::from_secs(2)).await;
        assert_eq!(
            queue.move_all_to_active_or_backoff(ClusterEvent::NodeAdd),
            1
        );
        assert_eq!(parts(&queue).0, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn move_request_during_cycle_sends_to_backoff() {
        let queue = PriorityQueue::new();
        queue.add(pod("a", 0));
        queue.add(pod("b", 0));
        // A move request before "a"'s cycle: "a" is parked.
        queue.move_all_to_active_or_backoff(ClusterEvent::NodeAdd);
        park(&queue, &["NodeResourcesFit"]).await;
        assert_eq!(parts(&queue), counts(1, 0, 1));

        // A move request while "b" is in flight: "b" goes to backoffQ instead.
        let mut info = queue.pop().await.unwrap();
        assert_eq!(name(&info), "b");
        let cycle = queue.scheduling_cycle();
        queue.move_all_to_active_or_backoff(ClusterEvent::NodeAdd);
        // That request moved "a" (backing off: 1 s from its failure).
        assert_eq!(parts(&queue), counts(0, 1, 0));
        info.unschedulable_plugins = plugins(&["NodeResourcesFit"]);
        assert!(queue.add_unschedulable_if_not_present(info.clone(), cycle));
        assert_eq!(parts(&queue), counts(0, 2, 0));
        // Already present: refused.
        assert!(!queue.add_unschedulable_if_not_present(info, cycle));
    }

    #[tokio::test(start_paused = true)]
    async fn update_of_a_parked_pod() {
        let queue = PriorityQueue::new();
        let old = pod("a", 0);
        queue.add(Arc::clone(&old));
        park(&queue, &["NodeAffinity"]).await;

        // A status-only change does not help: still parked, with the new object.
        let mut status_only = (*old).clone();
        status_only.metadata.resource_version = Some("7".to_owned());
        status_only.status = Some(Default::default());
        queue.update(&old, Arc::new(status_only.clone()));
        assert_eq!(parts(&queue), counts(0, 0, 1));
        assert_eq!(
            queue.pending_pods()[0].metadata.resource_version.as_deref(),
            Some("7")
        );

        // A label change may: to backoffQ while backing off, then activeQ.
        let mut relabelled = status_only.clone();
        relabelled.metadata.labels = Some(BTreeMap::from([("zone".to_owned(), "a".to_owned())]));
        queue.update(&status_only, Arc::new(relabelled.clone()));
        assert_eq!(parts(&queue), counts(0, 1, 0));
        sleep(Duration::from_secs(1)).await;
        assert_eq!(queue.flush_backoff_completed(), 1);
        let info = queue.pop().await.unwrap();
        assert!(info.pod.metadata.labels.is_some());

        // Updated while in flight: retried rather than parked.
        let cycle = queue.scheduling_cycle();
        let mut spec_changed = relabelled.clone();
        spec_changed.metadata.annotations = Some(BTreeMap::new());
        queue.update(&relabelled, Arc::new(spec_changed));
        let mut info = info;
        info.unschedulable_plugins = plugins(&["NodeAffinity"]);
        assert!(queue.add_unschedulable_if_not_present(info, cycle));
        assert_eq!(parts(&queue), counts(0, 1, 0));
        assert!(queue.pending_pods()[0].metadata.annotations.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn delete_from_every_part() {
        let queue = PriorityQueue::new();
        for n in ["backoff", "parked", "flight", "active"] {
            queue.add(pod(n, 0));
        }
        let failed = queue.pop().await.unwrap();
        assert_eq!(name(&failed), "backoff");
        let cycle = queue.scheduling_cycle();
        // Failed with an error (no rejecting plugin): backoffQ.
        assert!(queue.add_unschedulable_if_not_present(failed, cycle));
        park(&queue, &["X"]).await;
        let flight = queue.pop().await.unwrap();
        assert_eq!(name(&flight), "flight");
        assert_eq!(
            queue.pending(),
            PendingCounts {
                active: 1,
                backoff: 1,
                unschedulable: 1,
                in_flight: 1
            }
        );

        // Another uid under the same key is not this pod.
        let mut other = (*pod("flight", 0)).clone();
        other.metadata.uid = Some("someone-else".to_owned());
        assert!(!queue.delete(&other));

        for n in ["active", "backoff", "parked", "flight"] {
            assert!(queue.delete(&pod(n, 0)), "{n}");
        }
        assert_eq!(queue.pending(), PendingCounts::default());
        assert!(!queue.delete(&pod("active", 0)));
    }

    #[tokio::test(start_paused = true)]
    async fn deleted_while_in_flight_is_not_requeued() {
        let queue = PriorityQueue::new();
        queue.add(pod("a", 0));
        let info = queue.pop().await.unwrap();
        let cycle = queue.scheduling_cycle();
        assert!(queue.delete(&pod("a", 0)));
        assert!(!queue.add_unschedulable_if_not_present(info, cycle));
        assert!(queue.is_empty());
        queue.add(pod("b", 0));
        let info = queue.pop().await.unwrap();
        assert!(queue.done(&info.pod));
        assert_eq!(queue.pending(), PendingCounts::default());
    }

    #[tokio::test(start_paused = true)]
    async fn recreated_pod_replaces_the_old_one() {
        let queue = PriorityQueue::new();
        queue.add(pod("a", 0));
        park(&queue, &["X"]).await;
        let mut recreated = (*pod("a", 5)).clone();
        recreated.metadata.uid = Some("new".to_owned());
        queue.add(Arc::new(recreated));
        assert_eq!(parts(&queue), counts(1, 0, 0));
        let info = queue.pop().await.unwrap();
        assert_eq!((info.attempts, info.priority()), (1, 5));
    }

    #[tokio::test(start_paused = true)]
    async fn pop_waits_for_add() {
        let queue = Arc::new(PriorityQueue::new());
        let popper = tokio::spawn({
            let queue = Arc::clone(&queue);
            async move {
                queue
                    .pop()
                    .await
                    .map(|info| (name(&info).to_owned(), Instant::now()))
            }
        });
        sleep(Duration::from_secs(3)).await;
        assert!(!popper.is_finished());
        let added = Instant::now();
        queue.add(pod("a", 0));
        let (popped, at) = popper.await.unwrap().unwrap();
        assert_eq!((popped.as_str(), at), ("a", added));
    }

    #[tokio::test(start_paused = true)]
    async fn close_wakes_poppers_with_none() {
        let queue = Arc::new(PriorityQueue::new());
        let poppers: Vec<_> = (0..3)
            .map(|_| {
                let queue = Arc::clone(&queue);
                tokio::spawn(async move { queue.pop().await.is_none() })
            })
            .collect();
        sleep(Duration::from_secs(1)).await;
        queue.close();
        for popper in poppers {
            assert!(popper.await.unwrap());
        }
        assert!(queue.is_closed());
        assert!(queue.pop().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn left_over_flushed_after_five_minutes() {
        let queue = PriorityQueue::new();
        queue.add(pod("a", 0));
        park(&queue, &["X"]).await;
        advance(Duration::from_secs(300)).await;
        assert_eq!(queue.flush_unschedulable_left_over(), 0);
        advance(Duration::from_secs(1)).await;
        assert_eq!(queue.flush_unschedulable_left_over(), 1);
        assert_eq!(parts(&queue), counts(1, 0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn flushers_run_on_their_ticks() {
        let queue = Arc::new(PriorityQueue::new());
        queue.add(pod("a", 0));
        queue.add(pod("b", 0));
        park(&queue, &["X"]).await; // "a": parked
        let info = queue.pop().await.unwrap(); // "b": error, backoffQ for 1 s
        let cycle = queue.scheduling_cycle();
        assert!(queue.add_unschedulable_if_not_present(info, cycle));
        let start = Instant::now();
        let flushers = tokio::spawn({
            let queue = Arc::clone(&queue);
            async move { queue.run_flushers(sleep(Duration::from_secs(400))).await }
        });
        assert_eq!(pop_name(&queue).await, "b");
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        assert_eq!(pop_name(&queue).await, "a");
        // Parked at 0 s; the first 30 s tick past 300 s is 330 s.
        assert_eq!(start.elapsed(), Duration::from_secs(330));
        flushers.await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(400));
    }

    /// One step of the heap model test.
    #[derive(Clone, Debug)]
    enum HeapOp {
        Push(u8, i32, u8),
        Remove(u8),
        Reprioritise(u8, i32),
        Pop,
    }

    fn heap_op() -> impl proptest::strategy::Strategy<Value = HeapOp> {
        use proptest::prelude::*;
        prop_oneof![
            3 => (0u8..12, -2i32..3, 0u8..4).prop_map(|(k, p, t)| HeapOp::Push(k, p, t)),
            1 => (0u8..12).prop_map(HeapOp::Remove),
            1 => (0u8..12, -2i32..3).prop_map(|(k, p)| HeapOp::Reprioritise(k, p)),
            2 => Just(HeapOp::Pop),
        ]
    }

    proptest::proptest! {
        /// The indexed heap pops what a sorted list would: priority, then timestamp, then
        /// insertion order, through pushes, removals and in-place updates.
        #[test]
        fn active_heap_matches_sorted_model(
            ops in proptest::collection::vec(heap_op(), 0..120),
        ) {
            let sort = PrioritySort;
            let base = Instant::now();
            let mut heap = ActiveHeap::default();
            // (key, priority, timestamp offset, seq)
            let mut model: Vec<(String, i32, u8, u64)> = Vec::new();
            let mut seq = 0;
            for op in ops {
                match op {
                    HeapOp::Push(k, p, t) => {
                        let key = format!("default/p{k}");
                        if heap.contains(&key) {
                            continue;
                        }
                        let mut info = QueuedPodInfo::new(pod(&format!("p{k}"), p), base);
                        info.timestamp = base + Duration::from_secs(u64::from(t));
                        heap.push(&sort, Entry { key: key.clone(), seq, info });
                        model.push((key, p, t, seq));
                        seq += 1;
                    }
                    HeapOp::Remove(k) => {
                        let key = format!("default/p{k}");
                        let removed = heap.remove(&sort, &key).map(|e| e.key);
                        let position = model.iter().position(|m| m.0 == key);
                        proptest::prop_assert_eq!(removed.is_some(), position.is_some());
                        if let Some(i) = position {
                            model.remove(i);
                        }
                    }
                    HeapOp::Reprioritise(k, p) => {
                        let key = format!("default/p{k}");
                        heap.update(&sort, &key, pod(&format!("p{k}"), p));
                        if let Some(m) = model.iter_mut().find(|m| m.0 == key) {
                            m.1 = p;
                        }
                    }
                    HeapOp::Pop => {
                        model.sort_by_key(|m| (-m.1, m.2, m.3));
                        let expected = (!model.is_empty()).then(|| model.remove(0).0);
                        proptest::prop_assert_eq!(heap.pop(&sort).map(|e| e.key), expected);
                    }
                }
                proptest::prop_assert_eq!(heap.len(), model.len());
                proptest::prop_assert_eq!(heap.index.len(), heap.items.len());
                for (i, entry) in heap.items.iter().enumerate() {
                    proptest::prop_assert_eq!(heap.index.get(&entry.key), Some(&i));
                }
            }
        }
    }

    /// Four poppers on four threads share the queue: every pod is handed out exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn poppers_on_many_threads_take_each_pod_once() {
        let queue = Arc::new(PriorityQueue::new());
        let poppers: Vec<_> = (0..4)
            .map(|_| {
                let queue = Arc::clone(&queue);
                tokio::spawn(async move {
                    let mut names = Vec::new();
                    while let Some(info) = queue.pop().await {
                        names.push(name(&info).to_owned());
                        assert!(queue.done(&info.pod));
                    }
                    names
                })
            })
            .collect();
        for i in 0..500 {
            queue.add(pod(&format!("p{i}"), i % 7));
            if i % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
        while !queue.is_empty() {
            tokio::task::yield_now().await;
        }
        queue.close();
        let mut all = BTreeSet::new();
        for popper in poppers {
            for n in popper.await.unwrap() {
                assert!(all.insert(n), "handed out twice");
            }
        }
        assert_eq!(all.len(), 500);
        assert_eq!(queue.pending(), PendingCounts::default());
    }

    #[test]
    fn debug_shows_counts() {
        let queue = PriorityQueue::new();
        let debug = format!("{queue:?}");
        assert!(
            debug.starts_with("PriorityQueue { pending: PendingCounts { active: 0"),
            "{debug}"
        );
        assert_eq!(
            QueueConfig::default().backoff_duration(0),
            Duration::from_secs(1)
        );
        assert!(ClusterEvent::ForceActivate.is_wildcard());
    }
}
