//! The node lifecycle controller: nodes whose agent stopped heartbeating are marked unreachable,
//! and their pods evicted (Kubernetes' `pkg/controller/nodelifecycle`, with its
//! `NoExecuteTaintManager`).
//!
//! A node agent shows that it is alive in two ways: it renews a `coordination.k8s.io/v1` Lease
//! named after its node in the [`NODE_LEASE_NAMESPACE`] namespace (`spec.renewTime`), and it posts
//! the Node's `Ready` condition (with a `lastHeartbeatTime`). Every
//! [`monitor_period`](NodeLifecycleConfig::monitor_period), [`NodeLifecycleController`] looks at
//! every Node ([`node_health`]):
//!
//! - its last heartbeat is the newer of the Lease's `renewTime` and the `Ready` condition's
//!   `lastHeartbeatTime` (the node's `creationTimestamp` when it has neither: a node that just
//!   registered gets a grace period too);
//! - when that is older than the
//!   [`node_monitor_grace_period`](NodeLifecycleConfig::node_monitor_grace_period), the node's
//!   `Ready`, `MemoryPressure`, `DiskPressure` and `PIDPressure` conditions are set to `Unknown`
//!   (reason [`NODE_STATUS_UNKNOWN`], through the `status` subresource; see [`mark_unknown`]) and
//!   the node gets the [`UNREACHABLE_TAINT`] taints, `NoSchedule` and `NoExecute`;
//! - a node whose agent heartbeats but reports `Ready=False` gets the [`NOT_READY_TAINT`] taints
//!   instead; one that reports `Ready=Unknown` (as this controller left it) keeps the unreachable
//!   ones until its agent reports `Ready=True` again, which removes them ([`taints_for`],
//!   [`reconcile_taints`]).
//!
//! Then the taint manager's pass: every pod bound to a node (`spec.nodeName`) that has
//! `NoExecute` taints, and that is not already terminating, is deleted (gracefully, with default
//! delete options) when one of the taints is not tolerated by the pod, or once
//! `timeAdded + tolerationSeconds` has passed for a taint it tolerates for a while; a toleration
//! without `tolerationSeconds` tolerates the taint for ever ([`eviction`]). Each eviction records
//! a `TaintManagerEviction` event on the pod. Pods get 300 s tolerations of both taints from the
//! [`DefaultTolerationSeconds`](crate::api::admission::DefaultTolerationSeconds) admission plugin
//! unless they say otherwise. Pods deleted this way are not recreated when the
//! node comes back: their owners (a ReplicaSet…) replace them.
//!
//! # Differences from Kubernetes
//!
//! - Evictions are not rate-limited per zone (`--node-eviction-rate`,
//!   `--secondary-node-eviction-rate`, `--unhealthy-zone-threshold`), and there is no "full
//!   disruption" mode that stops evictions when every node of a zone is down.
//! - The taint manager runs on the monitor period, not on every pod and node change: an eviction
//!   happens up to one period after it is due. Its deadline counts from the taint's `timeAdded`
//!   (from when the controller first saw the taint, for a taint without one), not from when the
//!   taint manager first saw the pod.
//! - The `node.kubernetes.io/...` `NoSchedule` taints for pressure conditions, network
//!   unavailability and unschedulable nodes (`TaintNodesByCondition`) are not managed, nor
//!   is the `Ready` condition of the pods on a lost node set to `False`, nor are Node events
//!   (`NodeNotReady`, `RegisteredNode`) recorded.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//!
//! use orchestra_core::api::Client;
//! use orchestra_core::controllers::node_lifecycle::{NodeLifecycleConfig, NodeLifecycleController};
//! use orchestra_core::store::MemoryStore;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
//! let client = Client::new(MemoryStore::new());
//! client.bootstrap().await?;
//! let config = NodeLifecycleConfig {
//!     node_monitor_grace_period: Duration::from_secs(40),
//!     ..NodeLifecycleConfig::default()
//! };
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let controller = NodeLifecycleController::with_config(client, config);
//! let running = tokio::spawn(controller.run(async move {
//!     let _ = stopped.await;
//! }));
//! tokio::time::sleep(Duration::from_secs(10)).await;
//! let _ = stop.send(());
//! running.await.unwrap();
//! # Ok::<(), orchestra_core::status::StatusError>(())
//! # }).unwrap();
//! ```

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use futures_util::{FutureExt, Stream, StreamExt};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Preconditions, Time};

use crate::api::{Api, Client, DeleteParams, PostParams};
use crate::resource::taints;
use crate::runtime::events::{EventRecorder, EventType};
use crate::runtime::reflector::{self, ObjectRef, Reader};
use crate::runtime::watcher::{WatcherConfig, WatcherError, WatcherEvent, watcher};
use crate::scheduler::plugins::taint_toleration::tolerates;
use crate::status::StatusError;

/// The namespace of the node agents' heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// The taint of a node whose agent stopped heartbeating (or reports `Ready=Unknown`).
pub const UNREACHABLE_TAINT: &str = taints::TAINT_NODE_UNREACHABLE;

/// The taint of a node whose agent reports `Ready=False`.
pub const NOT_READY_TAINT: &str = taints::TAINT_NODE_NOT_READY;

/// The reason of the conditions of a node whose agent stopped heartbeating.
pub const NODE_STATUS_UNKNOWN: &str = "NodeStatusUnknown";

/// The message of the conditions of a node whose agent stopped heartbeating.
pub const NODE_STATUS_UNKNOWN_MESSAGE: &str = "Kubelet stopped posting node status.";

/// The reason of the conditions added to a node whose agent never posted them.
pub const NODE_STATUS_NEVER_UPDATED: &str = "NodeStatusNeverUpdated";

/// The message of the conditions added to a node whose agent never posted them.
pub const NODE_STATUS_NEVER_UPDATED_MESSAGE: &str = "Kubelet never posted node status.";

/// The reason of the event recorded on an evicted pod.
pub const EVICTION_REASON: &str = "TaintManagerEviction";

/// The conditions set to `Unknown` when a node's agent stops heartbeating.
pub const MONITORED_CONDITIONS: [&str; 4] =
    ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// The component named by the events this controller records.
const COMPONENT: &str = "node-lifecycle-controller";

/// How the controller judges nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeLifecycleConfig {
    /// How long a node may go without heartbeat before it is marked unreachable (Kubernetes'
    /// `--node-monitor-grace-period`, 40 s by default).
    pub node_monitor_grace_period: Duration,
    /// How often nodes are looked at (Kubernetes' `--node-monitor-period`, 5 s by default).
    pub monitor_period: Duration,
}

impl Default for NodeLifecycleConfig {
    fn default() -> NodeLifecycleConfig {
        NodeLifecycleConfig {
            node_monitor_grace_period: Duration::from_secs(40),
            monitor_period: Duration::from_secs(5),
        }
    }
}

/// A write of the node lifecycle controller failed (it is tried again on the next period).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeLifecycleError {
    /// A request to the API failed.
    #[error("cannot {action} {kind} {name}: {source}")]
    Api {
        /// What the controller was doing: `update status of`, `taint`, `evict`.
        action: &'static str,
        /// The kind of the object: `node` or `pod`.
        kind: &'static str,
        /// The object (`namespace/name` for a pod).
        name: String,
        /// The API's answer.
        #[source]
        source: StatusError,
    },
}

/// What a node's heartbeats and `Ready` condition say about it ([`node_health`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeHealth {
    /// Heartbeating, and its agent reports `Ready=True`.
    Ready,
    /// Heartbeating, and its agent reports `Ready=False`.
    NotReady,
    /// Heartbeating, but its `Ready` condition is `Unknown` (or has an unknown status): left so by
    /// this controller when heartbeats stopped, until the agent reports again.
    Unknown,
    /// No heartbeat for longer than the grace period (or no time to count from at all).
    Silent,
    /// Registered within the grace period, but its agent has not posted a `Ready` condition yet.
    Registering,
}

/// Which lifecycle taints a node should carry ([`taints_for`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaintPlan {
    /// None: both the not-ready and the unreachable taints are removed.
    Clear,
    /// The `NoSchedule` and `NoExecute` taints of this key, and no other lifecycle taint.
    Taint(&'static str),
    /// Those it has (the node's state says nothing yet).
    Keep,
}

/// When a pod on a tainted node is to be evicted ([`eviction`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// Never: it tolerates every `NoExecute` taint of its node for ever (or there is none).
    Never,
    /// Now: it does not tolerate some `NoExecute` taint of its node.
    Now,
    /// At this time: when the first of its tolerations runs out.
    At(Timestamp),
}

impl Eviction {
    /// Whether the pod is to be evicted at `now`.
    pub fn is_due(self, now: Timestamp) -> bool {
        match self {
            Eviction::Never => false,
            Eviction::Now => true,
            Eviction::At(at) => at <= now,
        }
    }
}

fn signed(duration: Duration) -> SignedDuration {
    SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX)
}

/// The condition of type `kind` of a node, if it has one.
pub fn node_condition<'a>(node: &'a Node, kind: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|condition| condition.type_ == kind)
}

/// A node's last heartbeat: the newer of its Lease's `renewTime` and its `Ready` condition's
/// `lastHeartbeatTime`; `None` when it has neither.
pub fn last_heartbeat(node: &Node, lease: Option<&Lease>) -> Option<Timestamp> {
    let renewed = lease
        .and_then(|lease| lease.spec.as_ref())
        .and_then(|spec| spec.renew_time.as_ref())
        .map(|time| time.0);
    let posted = node_condition(node, "Ready")
        .and_then(|ready| ready.last_heartbeat_time.as_ref())
        .map(|time| time.0);
    renewed.max(posted)
}

/// What a node's heartbeats (its `lease`, and its `Ready` condition) say about it at `now`: see
/// [`NodeHealth`]. A node with no heartbeat at all counts from its `creationTimestamp`; one
/// without that either is [`NodeHealth::Silent`].
pub fn node_health(
    node: &Node,
    lease: Option<&Lease>,
    now: Timestamp,
    grace: Duration,
) -> NodeHealth {
    let since = last_heartbeat(node, lease)
        .or_else(|| node.metadata.creation_timestamp.as_ref().map(|time| time.0));
    let Some(since) = since else {
        return NodeHealth::Silent;
    };
    if now.duration_since(since) > signed(grace) {
        return NodeHealth::Silent;
    }
    match node_condition(node, "Ready").map(|ready| ready.status.as_str()) {
        None => NodeHealth::Registering,
        Some("True") => NodeHealth::Ready,
        Some("False") => NodeHealth::NotReady,
        Some(_) => NodeHealth::Unknown,
    }
}

/// The lifecycle taints a node of this health should carry.
pub fn taints_for(health: NodeHealth) -> TaintPlan {
    match health {
        NodeHealth::Ready => TaintPlan::Clear,
        NodeHealth::NotReady => TaintPlan::Taint(NOT_READY_TAINT),
        NodeHealth::Unknown | NodeHealth::Silent => TaintPlan::Taint(UNREACHABLE_TAINT),
        NodeHealth::Registering => TaintPlan::Keep,
    }
}

fn is_lifecycle_taint(taint: &Taint) -> bool {
    (taint.key == NOT_READY_TAINT || taint.key == UNREACHABLE_TAINT)
        && (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
}

/// The taints a node carrying `current` should carry under `plan` (its other taints kept, in
/// order; new `NoExecute` taints stamped `timeAdded: now`), or `None` when they are already
/// right.
pub fn reconcile_taints(current: &[Taint], plan: TaintPlan, now: Timestamp) -> Option<Vec<Taint>> {
    let wanted = match plan {
        TaintPlan::Keep => return None,
        TaintPlan::Clear => None,
        TaintPlan::Taint(key) => Some(key),
    };
    let mut taints: Vec<Taint> = current
        .iter()
        .filter(|taint| !is_lifecycle_taint(taint) || Some(taint.key.as_str()) == wanted)
        .cloned()
        .collect();
    if let Some(key) = wanted {
        for effect in ["NoSchedule", "NoExecute"] {
            if !taints
                .iter()
                .any(|taint| taint.key == key && taint.effect == effect)
            {
                taints.push(Taint {
                    key: key.to_owned(),
                    effect: effect.to_owned(),
                    value: None,
                    time_added: (effect == "NoExecute").then_some(Time(now)),
                });
            }
        }
    }
    (taints != current).then_some(taints)
}

/// Whether some monitored condition of a node is missing or not yet `Unknown`.
pub fn needs_unknown_status(node: &Node) -> bool {
    MONITORED_CONDITIONS
        .iter()
        .any(|kind| node_condition(node, kind).is_none_or(|c| c.status != "Unknown"))
}

/// Marks a silent node's monitored conditions `Unknown` (Kubernetes' `tryUpdateNodeHealth`):
/// those it has become `Unknown`, reason [`NODE_STATUS_UNKNOWN`], transition `now`, their last
/// heartbeat kept; those it lacks are added, reason [`NODE_STATUS_NEVER_UPDATED`], with the
/// node's creation as their last heartbeat. Conditions already `Unknown` are left as they are.
pub fn mark_unknown(node: &mut Node, now: Timestamp) {
    let created = node.metadata.creation_timestamp.clone();
    let status = node.status.get_or_insert_with(Default::default);
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    for kind in MONITORED_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == kind) {
            Some(condition) if condition.status == "Unknown" => {}
            Some(condition) => {
                condition.status = "Unknown".to_owned();
                condition.reason = Some(NODE_STATUS_UNKNOWN.to_owned());
                condition.message = Some(NODE_STATUS_UNKNOWN_MESSAGE.to_owned());
                condition.last_transition_time = Some(Time(now));
            }
            None => conditions.push(NodeCondition {
                type_: kind.to_owned(),
                status: "Unknown".to_owned(),
                reason: Some(NODE_STATUS_NEVER_UPDATED.to_owned()),
                message: Some(NODE_STATUS_NEVER_UPDATED_MESSAGE.to_owned()),
                last_heartbeat_time: created.clone(),
                last_transition_time: Some(Time(now)),
            }),
        }
    }
}

/// When a pod with `tolerations` is to be evicted from a node with `taints` (only the `NoExecute`
/// ones count): [`Eviction::Now`] if one of them is not tolerated; else the earliest
/// `timeAdded + tolerationSeconds` over the taints, each with the shortest `tolerationSeconds`
/// of the tolerations that match it (negative counts as 0), a taint whose matching tolerations
/// have none being tolerated for ever. A taint without `timeAdded` counts from `untimed_since`.
pub fn eviction(
    tolerations: &[Toleration],
    taints: &[Taint],
    untimed_since: Timestamp,
) -> Eviction {
    let mut earliest: Option<Timestamp> = None;
    for taint in taints.iter().filter(|taint| taint.effect == "NoExecute") {
        let value = taint.value.as_deref().unwrap_or("");
        let matching: Vec<&Toleration> = tolerations
            .iter()
            .filter(|t| tolerates(t, &taint.key, value, &taint.effect))
            .collect();
        if matching.is_empty() {
            return Eviction::Now;
        }
        let Some(seconds) = matching.iter().filter_map(|t| t.toleration_seconds).min() else {
            continue;
        };
        let added = taint.time_added.as_ref().map_or(untimed_since, |t| t.0);
        let deadline = added
            .saturating_add(SignedDuration::from_secs(seconds.max(0)))
            .unwrap_or(Timestamp::MAX);
        earliest = Some(earliest.map_or(deadline, |e| e.min(deadline)));
    }
    earliest.map_or(Eviction::Never, Eviction::At)
}

/// [`eviction`] for a pod: its tolerations against its node's taints.
pub fn eviction_for_pod(pod: &Pod, taints: &[Taint], untimed_since: Timestamp) -> Eviction {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.tolerations.as_deref())
        .unwrap_or(&[]);
    eviction(tolerations, taints, untimed_since)
}

/// Marks lost nodes and evicts their pods: see the [module documentation](self).
#[derive(Clone, Debug)]
pub struct NodeLifecycleController {
    client: Client,
    config: NodeLifecycleConfig,
}

/// The identity of a taint on a node, for remembering when an untimed one was first seen.
type TaintId = (String, String, Option<String>, String);

/// What the monitor loop keeps between periods.
#[derive(Debug, Default)]
struct MonitorState {
    /// When the controller first saw each `NoExecute` taint that has no `timeAdded`.
    untimed: HashMap<TaintId, Timestamp>,
}

impl NodeLifecycleController {
    /// The controller of the nodes `client` serves, with the default [`NodeLifecycleConfig`].
    /// Timestamps come from the client's clock ([`Client::clock`]).
    pub fn new(client: Client) -> NodeLifecycleController {
        NodeLifecycleController::with_config(client, NodeLifecycleConfig::default())
    }

    /// The controller of the nodes `client` serves, judging them as `config` says.
    pub fn with_config(client: Client, config: NodeLifecycleConfig) -> NodeLifecycleController {
        NodeLifecycleController { client, config }
    }

    /// How the controller judges nodes.
    pub fn config(&self) -> &NodeLifecycleConfig {
        &self.config
    }

    /// Runs the controller until `shutdown` resolves (then returns once the pass in flight is
    /// done).
    pub async fn run<S>(self, shutdown: S)
    where
        S: Future<Output = ()>,
    {
        let shutdown = shutdown.shared();
        let config = WatcherConfig::default();
        let (nodes, node_writer) = reflector::store::<Node>();
        let (leases, lease_writer) = reflector::store::<Lease>();
        let (pods, pod_writer) = reflector::store::<Pod>();
        let feeds = async {
            tokio::join!(
                drain(reflector::reflector(
                    node_writer,
                    watcher(Api::<Node>::all(self.client.clone()), config.clone()),
                )),
                drain(reflector::reflector(
                    lease_writer,
                    watcher(
                        Api::<Lease>::namespaced(self.client.clone(), NODE_LEASE_NAMESPACE),
                        config.clone(),
                    ),
                )),
                drain(reflector::reflector(
                    pod_writer,
                    watcher(Api::<Pod>::all(self.client.clone()), config),
                )),
            );
        };
        let recorder = EventRecorder::new(self.client.clone(), COMPONENT);
        let monitor = async {
            let ready = async {
                tokio::join!(
                    nodes.wait_until_ready(),
                    leases.wait_until_ready(),
                    pods.wait_until_ready()
                );
            };
            tokio::select! {
                () = shutdown.clone() => return,
                () = ready => {}
            }
            let period = self.config.monitor_period.max(Duration::from_millis(1));
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut state = MonitorState::default();
            loop {
                tokio::select! {
                    biased;
                    () = shutdown.clone() => return,
                    _ = ticker.tick() => {}
                }
                // A failed write is tried again on the next period.
                let _ = self
                    .monitor_pass(&nodes, &leases, &pods, &recorder, &mut state)
                    .await;
            }
        };
        // The feeds never end on their own (the watchers retry), so the monitor's end ends both.
        tokio::select! {
            biased;
            () = monitor => {}
            () = feeds => {}
        }
    }

    /// One period: every node's health and taints, then the evictions.
    async fn monitor_pass(
        &self,
        nodes: &Reader<Node>,
        leases: &Reader<Lease>,
        pods: &Reader<Pod>,
        recorder: &EventRecorder,
        state: &mut MonitorState,
    ) -> Vec<NodeLifecycleError> {
        let now = self.client.clock().now();
        let mut errors = Vec::new();
        let mut taints_by_node: BTreeMap<String, Vec<Taint>> = BTreeMap::new();
        for node in nodes.state() {
            let Some(name) = node.metadata.name.clone() else {
                continue;
            };
            let lease = leases.get(&ObjectRef::new(&name).within(NODE_LEASE_NAMESPACE));
            let (current, error) = self.monitor_node(&node, lease.as_deref(), now).await;
            errors.extend(error);
            let taints = current
                .spec
                .and_then(|spec| spec.taints)
                .unwrap_or_default();
            taints_by_node.insert(name, taints);
        }

        // Untimed NoExecute taints count from when they were first seen.
        let mut untimed = HashMap::new();
        for (node, taints) in &mut taints_by_node {
            for taint in taints.iter_mut().filter(|t| t.effect == "NoExecute") {
                if taint.time_added.is_none() {
                    let id = (
                        node.clone(),
                        taint.key.clone(),
                        taint.value.clone(),
                        taint.effect.clone(),
                    );
                    let seen = state.untimed.get(&id).copied().unwrap_or(now);
                    taint.time_added = Some(Time(seen));
                    untimed.insert(id, seen);
                }
            }
        }
        state.untimed = untimed;

        for pod in pods.state() {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let Some(node) = pod
                .spec
                .as_ref()
                .and_then(|spec| spec.node_name.as_deref())
                .filter(|node| !node.is_empty())
            else {
                continue;
            };
            let Some(taints) = taints_by_node.get(node) else {
                continue;
            };
            if !eviction_for_pod(&pod, taints, now).is_due(now) {
                continue;
            }
            if let Err(error) = self.evict(&pod, recorder).await {
                errors.push(error);
            }
        }
        errors
    }

    /// Marks a silent node unknown and sets its lifecycle taints; returns the node as it now is
    /// (as it was, when a write failed).
    async fn monitor_node(
        &self,
        node: &Node,
        lease: Option<&Lease>,
        now: Timestamp,
    ) -> (Node, Option<NodeLifecycleError>) {
        let api: Api<Node> = Api::all(self.client.clone());
        let name = node.metadata.name.clone().unwrap_or_default();
        let error = |action, source| NodeLifecycleError::Api {
            action,
            kind: "node",
            name: name.clone(),
            source,
        };
        let health = node_health(node, lease, now, self.config.node_monitor_grace_period);
        let mut current = node.clone();
        if health == NodeHealth::Silent && needs_unknown_status(&current) {
            let mut updated = current.clone();
            mark_unknown(&mut updated, now);
            match api
                .replace_status(&name, &PostParams::default(), &updated)
                .await
            {
                Ok(written) => current = written,
                Err(source) => return (current, Some(error("update status of", source))),
            }
        }
        let taints = current
            .spec
            .as_ref()
            .and_then(|spec| spec.taints.as_deref())
            .unwrap_or(&[]);
        if let Some(taints) = reconcile_taints(taints, taints_for(health), now) {
            let mut updated = current.clone();
            updated.spec.get_or_insert_with(Default::default).taints =
                (!taints.is_empty()).then_some(taints);
            match api.replace(&name, &PostParams::default(), &updated).await {
                Ok(written) => current = written,
                Err(source) => return (current, Some(error("taint", source))),
            }
        }
        (current, None)
    }

    /// Deletes a pod (gracefully, only that very pod) and records why.
    async fn evict(&self, pod: &Pod, recorder: &EventRecorder) -> Result<(), NodeLifecycleError> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let params = DeleteParams {
            preconditions: pod.metadata.uid.clone().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match Api::<Pod>::namespaced(self.client.clone(), namespace)
            .delete(name, &params)
            .await
        {
            Ok(_) => {
                recorder.event(
                    pod,
                    EventType::Normal,
                    EVICTION_REASON,
                    &format!("Marking for deletion Pod {namespace}/{name}"),
                );
                Ok(())
            }
            Err(error) if error.is_not_found() => Ok(()),
            Err(source) => Err(NodeLifecycleError::Api {
                action: "evict",
                kind: "pod",
                name: format!("{namespace}/{name}"),
                source,
            }),
        }
    }
}

/// Runs a reflector's stream for its side effect on the cache.
async fn drain<K, S>(stream: S)
where
    S: Stream<Item = Result<WatcherEvent<K>, WatcherError>>,
{
    let mut stream = pin!(stream);
    while stream.next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    const GRACE: Duration = Duration::from_secs(40);

    fn node(ready: Option<(&str, i64)>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("node-1".into()),
                creation_timestamp: Some(Time(at(0))),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec::default()),
            status: ready.map(|(status, heartbeat)| NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: status.into(),
                    last_heartbeat_time: Some(Time(at(heartbeat))),
                    ..NodeCondition::default()
                }]),
                ..NodeStatus::default()
            }),
        }
    }

    fn lease(renewed: Option<i64>) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("node-1".into()),
                namespace: Some(NODE_LEASE_NAMESPACE.into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some("node-1".into()),
                lease_duration_seconds: Some(40),
                renew_time: renewed.map(|s| MicroTime(at(s))),
                ..LeaseSpec::default()
            }),
        }
    }

    fn taint(key: &str, effect: &str, added: Option<i64>) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            value: None,
            time_added: added.map(|s| Time(at(s))),
        }
    }

    fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: seconds,
            value: None,
        }
    }

    #[test]
    fn heartbeat_is_the_newer_of_lease_and_condition() {
        let node = node(Some(("True", 10)));
        assert_eq!(last_heartbeat(&node, Some(&lease(Some(30)))), Some(at(30)));
        assert_eq!(last_heartbeat(&node, Some(&lease(Some(5)))), Some(at(10)));
        assert_eq!(last_heartbeat(&node, None), Some(at(10)));
    }

    #[test]
    fn health_follows_heartbeats_and_ready_condition() {
        let fresh = lease(Some(100));
        let health =
            |status, now| node_health(&node(Some((status, 0))), Some(&fresh), at(now), GRACE);
        assert_eq!(health("True", 120), NodeHealth::Ready);
        assert_eq!(
            health("True", 140),
            NodeHealth::Ready,
            "exactly the grace period"
        );
        assert_eq!(health("True", 141), NodeHealth::Silent);
        assert_eq!(health("False", 120), NodeHealth::NotReady);
        assert_eq!(health("Unknown", 120), NodeHealth::Unknown);
        assert_eq!(health("Bogus", 120), NodeHealth::Unknown);
    }

    #[test]
    fn malformed_nodes_and_leases_do_not_panic() {
        // A lease without renewTime, a node without conditions: the node's creation counts.
        let bare = node(None);
        let unrenewed = lease(None);
        assert_eq!(last_heartbeat(&bare, Some(&unrenewed)), None);
        assert_eq!(
            node_health(&bare, Some(&unrenewed), at(10), GRACE),
            NodeHealth::Registering
        );
        assert_eq!(
            node_health(&bare, Some(&unrenewed), at(60), GRACE),
            NodeHealth::Silent
        );
        // A lease without spec at all.
        let empty = Lease::default();
        assert_eq!(
            node_health(&bare, Some(&empty), at(10), GRACE),
            NodeHealth::Registering
        );
        // A node with nothing to count from.
        assert_eq!(
            node_health(&Node::default(), None, at(0), GRACE),
            NodeHealth::Silent
        );
        // A heartbeat from the future is fresh.
        assert_eq!(
            node_health(&node(Some(("True", 500))), None, at(0), GRACE),
            NodeHealth::Ready
        );
    }

    #[test]
    fn taint_plans() {
        assert_eq!(taints_for(NodeHealth::Ready), TaintPlan::Clear);
        assert_eq!(
            taints_for(NodeHealth::NotReady),
            TaintPlan::Taint(NOT_READY_TAINT)
        );
        assert_eq!(
            taints_for(NodeHealth::Unknown),
            TaintPlan::Taint(UNREACHABLE_TAINT)
        );
        assert_eq!(
            taints_for(NodeHealth::Silent),
            TaintPlan::Taint(UNREACHABLE_TAINT)
        );
        assert_eq!(taints_for(NodeHealth::Registering), TaintPlan::Keep);
    }

    #[test]
    fn reconciling_taints_adds_swaps_and_removes_lifecycle_taints_only() {
        let user = taint("dedicated", "NoSchedule", None);
        let added = reconcile_taints(
            std::slice::from_ref(&user),
            TaintPlan::Taint(UNREACHABLE_TAINT),
            at(5),
        )
        .unwrap();
        assert_eq!(
            added,
            vec![
                user.clone(),
                taint(UNREACHABLE_TAINT, "NoSchedule", None),
                taint(UNREACHABLE_TAINT, "NoExecute", Some(5)),
            ]
        );
        // Already right: nothing to write, and timeAdded is kept.
        assert_eq!(
            reconcile_taints(&added, TaintPlan::Taint(UNREACHABLE_TAINT), at(9)),
            None
        );
        // Not ready replaces unreachable.
        let swapped = reconcile_taints(&added, TaintPlan::Taint(NOT_READY_TAINT), at(9)).unwrap();
        assert_eq!(
            swapped,
            vec![
                user.clone(),
                taint(NOT_READY_TAINT, "NoSchedule", None),
                taint(NOT_READY_TAINT, "NoExecute", Some(9)),
            ]
        );
        assert_eq!(
            reconcile_taints(&swapped, TaintPlan::Clear, at(9)),
            Some(vec![user.clone()])
        );
        assert_eq!(reconcile_taints(&swapped, TaintPlan::Keep, at(9)), None);
        assert_eq!(reconcile_taints(&[], TaintPlan::Clear, at(9)), None);
        // A lifecycle key with another effect is the user's.
        let odd = taint(UNREACHABLE_TAINT, "PreferNoSchedule", None);
        assert_eq!(reconcile_taints(&[odd], TaintPlan::Clear, at(9)), None);
    }

    #[test]
    fn marking_unknown_keeps_heartbeats_and_adds_missing_conditions() {
        let mut lost = node(Some(("True", 3)));
        assert!(needs_unknown_status(&lost));
        mark_unknown(&mut lost, at(50));
        assert!(!needs_unknown_status(&lost));
        let ready = node_condition(&lost, "Ready").unwrap();
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some(NODE_STATUS_UNKNOWN));
        assert_eq!(ready.message.as_deref(), Some(NODE_STATUS_UNKNOWN_MESSAGE));
        assert_eq!(ready.last_heartbeat_time, Some(Time(at(3))));
        assert_eq!(ready.last_transition_time, Some(Time(at(50))));
        let memory = node_condition(&lost, "MemoryPressure").unwrap();
        assert_eq!(memory.reason.as_deref(), Some(NODE_STATUS_NEVER_UPDATED));
        assert_eq!(memory.last_heartbeat_time, Some(Time(at(0))));
        // Again later: already unknown, the transition time stays.
        mark_unknown(&mut lost, at(90));
        let ready = node_condition(&lost, "Ready").unwrap();
        assert_eq!(ready.last_transition_time, Some(Time(at(50))));
        // A node without status or creation time.
        let mut bare = Node::default();
        mark_unknown(&mut bare, at(1));
        assert_eq!(bare.status.unwrap().conditions.unwrap().len(), 4);
    }

    #[test]
    fn eviction_deadlines() {
        let taints = [
            taint(UNREACHABLE_TAINT, "NoSchedule", None),
            taint(UNREACHABLE_TAINT, "NoExecute", Some(100)),
        ];
        assert_eq!(eviction(&[], &taints, at(0)), Eviction::Now);
        assert_eq!(
            eviction(&[], &taints[..1], at(0)),
            Eviction::Never,
            "NoSchedule only"
        );
        assert_eq!(
            eviction(&[toleration(UNREACHABLE_TAINT, Some(30))], &taints, at(0)),
            Eviction::At(at(130))
        );
        assert_eq!(
            eviction(&[toleration(UNREACHABLE_TAINT, None)], &taints, at(0)),
            Eviction::Never
        );
        // The shortest of the matching tolerations with seconds; negative counts as 0.
        let both = [
            toleration(UNREACHABLE_TAINT, Some(60)),
            toleration("", Some(10)),
        ];
        assert_eq!(eviction(&both, &taints, at(0)), Eviction::At(at(110)));
        assert_eq!(
            eviction(&[toleration(UNREACHABLE_TAINT, Some(-5))], &taints, at(0)),
            Eviction::At(at(100))
        );
        // Tolerating another key does not help.
        assert_eq!(
            eviction(&[toleration(NOT_READY_TAINT, None)], &taints, at(0)),
            Eviction::Now
        );
        // A taint without timeAdded counts from the time given.
        let untimed = [taint(UNREACHABLE_TAINT, "NoExecute", None)];
        assert_eq!(
            eviction(&[toleration(UNREACHABLE_TAINT, Some(30))], &untimed, at(7)),
            Eviction::At(at(37))
        );
        // Huge tolerations saturate.
        assert!(matches!(
            eviction(
                &[toleration(UNREACHABLE_TAINT, Some(i64::MAX))],
                &taints,
                at(0)
            ),
            Eviction::At(_)
        ));
        assert!(Eviction::At(at(130)).is_due(at(130)));
        assert!(!Eviction::At(at(130)).is_due(at(129)));
        assert!(!Eviction::Never.is_due(at(0)));
        assert!(Eviction::Now.is_due(at(0)));
    }

    #[test]
    fn pods_without_spec_tolerate_nothing() {
        let taints = [taint(NOT_READY_TAINT, "NoExecute", Some(0))];
        assert_eq!(
            eviction_for_pod(&Pod::default(), &taints, at(0)),
            Eviction::Now
        );
        let pod = Pod {
            spec: Some(PodSpec {
                tolerations: Some(vec![Toleration {
                    key: Some(NOT_READY_TAINT.to_owned()),
                    operator: Some("Exists".to_owned()),
                    effect: Some("NoExecute".to_owned()),
                    toleration_seconds: Some(300),
                    value: None,
                }]),
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        assert_eq!(
            eviction_for_pod(&pod, &taints, at(0)),
            Eviction::At(at(300))
        );
    }
}
