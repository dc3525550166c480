//! PodTopologySpread: a pod's `spec.topologySpreadConstraints` keep the pods its selectors match
//! evenly spread over topology domains (zones, nodes, ...).
//!
//! This is kube-scheduler's `podtopologyspread` plugin with its semantics and wording:
//!
//! - **PreFilter** reads the pod's `DoNotSchedule` constraints (and returns
//!   [`Code::Skip`](crate::scheduler::framework::Code::Skip) when it has none). Over every node
//!   of the snapshot that has all of their topology keys, and that the constraint's node
//!   inclusion policies admit (`nodeAffinityPolicy: Honor`, the default, admits the nodes matching
//!   the pod's `nodeSelector` and required node affinity; `nodeTaintsPolicy: Honor` the nodes
//!   whose `NoSchedule` and `NoExecute` taints the pod tolerates; `Ignore` admits every node), it
//!   counts the pods that the constraint's selector matches, in the pod's namespace, per domain
//!   (the value of the topology key). It keeps, per constraint, the counts by domain and the
//!   global minimum over the domains, taken as 0 while there are fewer domains than `minDomains`.
//! - **Filter** rejects a node without one of the topology keys (unresolvably, with
//!   [`ERR_REASON_NODE_LABEL_NOT_MATCH`]) and a node where placing the pod would make its domain's
//!   count (plus one if the pod matches its own selector) exceed the global minimum by more than
//!   `maxSkew` ([`ERR_REASON_CONSTRAINTS_NOT_MATCH`]). It does a few map lookups per constraint
//!   and allocates nothing when the node fits.
//! - **PreScore** and **Score** do the same for the `ScheduleAnyway` constraints: a feasible
//!   node's raw score is the sum over constraints of its domain's count times `ln(domains + 2)`
//!   (so that constraints over few domains are not watered down by those over many), plus
//!   `maxSkew - 1`; counts for `kubernetes.io/hostname` are the node's own, taken at Score.
//!   **NormalizeScore** inverts them, so that the emptiest domain scores
//!   [`MAX_NODE_SCORE`]: `100 × (max + min − score) / max`; feasible nodes lacking a topology key
//!   score 0.
//!
//! `matchLabelKeys` are merged into the selector as `key=value` requirements with the incoming
//! pod's values (keys the pod lacks are left out), as Kubernetes does when the API server has not
//! merged them already.
//!
//! # Counting
//!
//! Pods being deleted (with a `deletionTimestamp`) never count, as in Kubernetes. A selector that
//! is one `key=value` requirement (a single `matchLabels` pair, or `In` with one value) is
//! answered from the node's label index ([`NodeInfo::count_pods_with_label`]) when no pod has the
//! label, else by scanning the node's pods; other selectors scan the node's pods.
//!
//! When every `DoNotSchedule` constraint of the pod has such a selector, they all share one
//! topology key and the node inclusion policies admit every node with it (`nodeTaintsPolicy`
//! `Ignore`, and `nodeAffinityPolicy` `Ignore` or a pod without `nodeSelector` and required node
//! affinity), PreFilter walks no nodes: the plugin keeps, across cycles, per namespace, label and
//! topology key asked for, the matching pods and nodes by domain and how many domains have each
//! count (so the global minimum is at hand). Such counts are built over all nodes the first time
//! they are asked for, then kept up to date at the start of each PreFilter by comparing the
//! snapshot's nodes with the previous ones: a node whose `Arc` changed is taken out as it was and
//! added as it is (a different number of nodes, or another node at an index, drops all counts);
//! counts unused for 1,024 cycles are dropped. Preemption's what-if runs over a copy with one
//! node replaced are two such changes.
//!
//! When every node of the snapshot that has the topology keys has its own name as the value of
//! a constraint's key (as `kubernetes.io/hostname` normally has), each node is a domain of its
//! own: PreFilter then keeps only the global minimum and the number of domains, without building
//! a map of thousands of names, and Filter counts the node's own matching pods (when the
//! constraint counts the node at all), which is the same number.
//!
//! # Differences from Kubernetes
//!
//! - There are no system default constraints: Kubernetes spreads pods without constraints of
//!   their own by the selectors of the Services, ReplicationControllers, ReplicaSets and
//!   StatefulSets that select them (`defaultConstraints`, `systemDefaulted`); this plugin does
//!   nothing for such pods.
//! - There are no PreFilter extensions (`AddPod`/`RemovePod`) for preemption's what-if runs:
//!   preemption re-runs PreFilter over the nodes with the victims removed.
//! - For per-node domains (above), Filter on a node that was not among PreFilter's nodes counts
//!   its own pods, where Kubernetes would find its domain empty.
//! - Score reads feasible nodes lacking a topology key back as `-1` raw score, which
//!   [`normalize`](ScorePlugin::normalize) turns into 0 (Kubernetes keeps a set of those nodes in
//!   the cycle state, which this framework's `normalize` does not see).
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//!
//! use orchestra_core::k8s::api::core::v1::{Node, Pod};
//! use orchestra_core::scheduler::framework::{Code, CycleState, Profile};
//! use orchestra_core::scheduler::node_info::NodeInfo;
//! use orchestra_core::scheduler::plugins::pod_topology_spread::PodTopologySpread;
//!
//! let node = |name: &str, zone: &str| -> Result<NodeInfo, serde_json::Error> {
//!     let node: Node = serde_json::from_value(serde_json::json!({
//!         "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}}
//!     }))?;
//!     Ok(NodeInfo::new(Arc::new(node)))
//! };
//! let pod = |name: &str| -> Result<Pod, serde_json::Error> {
//!     serde_json::from_value(serde_json::json!({
//!         "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
//!         "spec": {"containers": [], "topologySpreadConstraints": [{
//!             "maxSkew": 1,
//!             "topologyKey": "topology.kubernetes.io/zone",
//!             "whenUnsatisfiable": "DoNotSchedule",
//!             "labelSelector": {"matchLabels": {"app": "web"}}
//!         }]}
//!     }))
//! };
//! let mut a = node("a", "zone-a")?;
//! a.add_pod(&pod("web-0")?);
//! let nodes = [Arc::new(a), Arc::new(node("b", "zone-b")?)];
//!
//! let plugin = Arc::new(PodTopologySpread::default());
//! let profile = Profile::new("spread").with_pre_filter(plugin.clone()).with_filter(plugin);
//! let incoming = pod("web-1")?;
//! let mut state = CycleState::new();
//! assert!(profile.run_pre_filter(&mut state, &incoming, &nodes).is_success());
//! // zone-a would have 2 against zone-b's 0: a skew of 2.
//! let status = profile.run_filter(&state, &incoming, &nodes[0]);
//! assert_eq!(status.code, Code::Unschedulable);
//! assert_eq!(status.reasons, ["node(s) didn't match pod topology spread constraints"]);
//! assert!(profile.run_filter(&state, &incoming, &nodes[1]).is_success());
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Node, Pod, Toleration};

use crate::scheduler::framework::{
    CycleState, FilterPlugin, MAX_NODE_SCORE, NodeScore, Plugin, PreFilterPlugin, PreScorePlugin,
    ScorePlugin, Status,
};
use crate::scheduler::node_info::NodeInfo;
use crate::scheduler::plugins::node_affinity::{RequiredNodeAffinity, label_value};
use crate::scheduler::plugins::taint_toleration::tolerates_taint;
use crate::selector::{LabelSelectorError, Selector};

/// The plugin's name.
pub const NAME: &str = "PodTopologySpread";
/// The reason given for a node where the pod would break a constraint's `maxSkew`.
pub const ERR_REASON_CONSTRAINTS_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints";
/// The reason given for a node that lacks a constraint's topology key.
pub const ERR_REASON_NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";
/// The well-known node label whose domains are single nodes (`v1.LabelHostname`).
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
/// `whenUnsatisfiable` of the constraints Filter enforces.
pub const DO_NOT_SCHEDULE: &str = "DoNotSchedule";
/// `whenUnsatisfiable` of the constraints Score prefers.
pub const SCHEDULE_ANYWAY: &str = "ScheduleAnyway";

const PRE_FILTER_KEY: &str = "PreFilterPodTopologySpread";
const PRE_SCORE_KEY: &str = "PreScorePodTopologySpread";
/// The raw score of a feasible node that lacks a topology key; normalised to 0.
const IGNORED_NODE_SCORE: i64 = -1;

/// The labels of an object without any.
static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// How a constraint counts the pods of a node that its selector matches.
#[derive(Debug)]
enum PodCounter {
    /// The selector matches nothing (no `labelSelector`).
    Nothing,
    /// The selector is `key=value`: answered by the node's label index.
    Label { key: String, value: String },
    /// Any other selector: the node's pods are scanned.
    Scan(Selector),
}

impl PodCounter {
    fn new(selector: &Selector) -> PodCounter {
        if selector.is_nothing() {
            return PodCounter::Nothing;
        }
        if let [requirement] = selector.requirements()
            && let Some(value) = selector.requires_exact_match(requirement.key())
        {
            return PodCounter::Label {
                key: requirement.key().to_owned(),
                value: value.to_owned(),
            };
        }
        PodCounter::Scan(selector.clone())
    }

    /// How many pods of `node` in `namespace` the selector matches (Kubernetes'
    /// `countPodsMatchSelector`).
    fn count(&self, node: &NodeInfo, namespace: &str) -> i64 {
        let count = match self {
            PodCounter::Nothing => 0,
            PodCounter::Label { key, value } => {
                return count_label(node, namespace, key, value);
            }
            PodCounter::Scan(selector) => node
                .pods()
                .filter(|pod| {
                    pod.metadata.deletion_timestamp.is_none()
                        && pod.metadata.namespace.as_deref().unwrap_or("") == namespace
                        && selector.matches(pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS))
                })
                .count(),
        };
        i64::try_from(count).unwrap_or(i64::MAX)
    }
}

/// How many pods of `node` in `namespace` have the label `key=value` and are not being deleted:
/// the label index's count less the terminating pods with the label (the pods are scanned for
/// those only when the index counts some), as Kubernetes' `countPodsMatchSelector` skips them.
fn count_label(node: &NodeInfo, namespace: &str, key: &str, value: &str) -> i64 {
    let labelled = node.count_pods_with_label(namespace, key, value);
    if labelled == 0 {
        return 0;
    }
    // Only the terminating pods need a closer look.
    let terminating = node
        .pods()
        .filter(|pod| {
            pod.metadata.deletion_timestamp.is_some()
                && pod.metadata.namespace.as_deref().unwrap_or("") == namespace
                && pod
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|labels| labels.get(key))
                    .is_some_and(|v| v == value)
        })
        .count();
    i64::try_from(labelled.saturating_sub(terminating)).unwrap_or(i64::MAX)
}

/// A topology spread constraint of the pod, its selector parsed (Kubernetes'
/// `topologySpreadConstraint`).
#[derive(Debug)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    selector: Selector,
    counter: PodCounter,
    min_domains: i64,
    honor_node_affinity: bool,
    honor_node_taints: bool,
}

/// The pod's constraints with `whenUnsatisfiable` equal to `action`, in order (Kubernetes'
/// `filterTopologySpreadConstraints`).
fn constraints_of(pod: &Pod, action: &str) -> Result<Vec<Constraint>, LabelSelectorError> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(Vec::new());
    };
    let pod_labels = pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS);
    let mut constraints = Vec::new();
    for c in spec.topology_spread_constraints.iter().flatten() {
        if c.when_unsatisfiable != action {
            continue;
        }
        let mut selector = Selector::from_label_selector(c.label_selector.as_ref())?;
        let match_labels: BTreeMap<String, String> = c
            .match_label_keys
            .iter()
            .flatten()
            .filter_map(|key| Some((key.clone(), pod_labels.get(key)?.clone())))
            .collect();
        if !match_labels.is_empty() {
            // As `mergeLabelSetWithSelector`: the pod's values first, then the selector's
            // requirements (none when there is no `labelSelector`).
            let mut merged = Selector::from_validated_map(&match_labels);
            for requirement in selector.requirements() {
                merged = merged.and(requirement.clone());
            }
            selector = merged;
        }
        constraints.push(Constraint {
            max_skew: i64::from(c.max_skew),
            topology_key: c.topology_key.clone(),
            counter: PodCounter::new(&selector),
            selector,
            min_domains: i64::from(c.min_domains.unwrap_or(1)),
            honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        });
    }
    Ok(constraints)
}

/// Whether the node's labels have the topology keys of all `constraints`.
fn has_all_keys(labels: &BTreeMap<String, String>, constraints: &[Constraint]) -> bool {
    constraints
        .iter()
        .all(|c| label_value(labels, &c.topology_key).is_some())
}

/// Fills `values` with the node's values of the constraints' topology keys, in order; false
/// (and `values` partly filled) when one is missing.
fn topology_values<'a>(
    labels: &'a BTreeMap<String, String>,
    constraints: &[Constraint],
    values: &mut Vec<&'a str>,
) -> bool {
    values.clear();
    for constraint in constraints {
        match label_value(labels, &constraint.topology_key) {
            Some(value) => values.push(value),
            None => return false,
        }
    }
    true
}

fn node_labels(node: &Node) -> &BTreeMap<String, String> {
    node.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
}

/// What the node inclusion policies need of the incoming pod.
#[derive(Debug)]
struct NodeInclusion {
    required: RequiredNodeAffinity,
    tolerations: Vec<Toleration>,
}

/// One node's answers to the node inclusion policies, each computed when first asked.
#[derive(Default)]
struct NodeVerdict {
    matches_affinity: Option<bool>,
    tolerates_taints: Option<bool>,
}

impl NodeInclusion {
    fn new(pod: &Pod) -> NodeInclusion {
        NodeInclusion {
            required: RequiredNodeAffinity::new(pod),
            tolerations: pod
                .spec
                .as_ref()
                .and_then(|spec| spec.tolerations.clone())
                .unwrap_or_default(),
        }
    }

    /// Whether `node` counts for `constraint` (Kubernetes' `matchNodeInclusionPolicies`).
    fn includes(&self, verdict: &mut NodeVerdict, constraint: &Constraint, node: &Node) -> bool {
        if constraint.honor_node_affinity
            && !*verdict
                .matches_affinity
                .get_or_insert_with(|| self.required.matches(node))
        {
            return false;
        }
        if constraint.honor_node_taints
            && !*verdict.tolerates_taints.get_or_insert_with(|| {
                node.spec
                    .as_ref()
                    .and_then(|spec| spec.taints.as_deref())
                    .unwrap_or(&[])
                    .iter()
                    .all(|taint| {
                        !(taint.effect == "NoSchedule" || taint.effect == "NoExecute")
                            || tolerates_taint(&self.tolerations, taint)
                    })
            })
        {
            return false;
        }
        true
    }
}

/// Adds `count` to the domain `value`, creating it (even for 0) if new.
fn add_to_domain(counts: &mut BTreeMap<String, i64>, value: &str, count: i64) {
    match counts.get_mut(value) {
        Some(total) => *total = total.saturating_add(count),
        None => {
            counts.insert(value.to_owned(), count);
        }
    }
}

/// A constraint's matching pods by domain, over the nodes it counts.
#[derive(Debug)]
enum DomainCounts {
    /// By topology value.
    ByValue(BTreeMap<String, i64>),
    /// Every node of the snapshot that has the topology keys has its own name as the value (as
    /// `kubernetes.io/hostname` normally does), so each node is a domain of its own: Filter
    /// counts the node's own pods (if the constraint counts the node) rather than look its
    /// domain up among thousands.
    PerNode,
    /// The index's domains, shared.
    Indexed(Arc<BTreeMap<String, Domain>>),
}

/// PreFilter's tally of one constraint's domains, per node for as long as every node's value is
/// its name.
enum Tally {
    /// The node indexes and counts of the nodes the constraint counts.
    PerNode(Vec<(usize, i64)>),
    ByValue(BTreeMap<String, i64>),
}

impl Tally {
    /// Turns a per-node tally into one by value (the nodes' names).
    fn by_value(&mut self, nodes: &[Arc<NodeInfo>]) {
        if let Tally::PerNode(counted) = self {
            let mut counts = BTreeMap::new();
            for (earlier, count) in counted.iter() {
                if let Some(earlier) = nodes.get(*earlier) {
                    add_to_domain(&mut counts, earlier.name(), *count);
                }
            }
            *self = Tally::ByValue(counts);
        }
    }
}

/// One `DoNotSchedule` constraint as Filter reads it.
#[derive(Debug)]
struct FilterConstraint {
    constraint: Constraint,
    /// 1 if the incoming pod matches the constraint's selector.
    self_match: i64,
    /// The global minimum, 0 while there are fewer domains than `minDomains`.
    min_match: i64,
    domains: DomainCounts,
}

#[derive(Debug)]
struct PreFilterState {
    constraints: Vec<FilterConstraint>,
    namespace: String,
    inclusion: NodeInclusion,
}

/// One `ScheduleAnyway` constraint as Score reads it.
#[derive(Debug)]
struct ScoreConstraint {
    constraint: Constraint,
    /// Matching pods by domain, for the domains of the feasible nodes (empty for
    /// [`LABEL_HOSTNAME`], counted at Score).
    counts: BTreeMap<String, i64>,
    /// `ln(domains + 2)`.
    weight: f64,
}

#[derive(Debug)]
struct PreScoreState {
    constraints: Vec<ScoreConstraint>,
}

/// One domain of an indexed constraint: how many nodes have its topology value and how many
/// matching pods they hold.
#[derive(Clone, Debug)]
struct Domain {
    nodes: usize,
    pods: i64,
}

/// The key of an indexed count: namespace, label key, label value, topology key.
type IndexKey = (String, String, String, String);

/// How many cycles an indexed count may go unused before it is dropped.
const EVICT_AFTER_CYCLES: u64 = 1024;

/// The matching pods of one `key=value` selector in one namespace, by domain of one topology key,
/// over all the nodes that have the topology key, kept up to date across cycles.
#[derive(Debug)]
struct IndexedCounts {
    /// Each node's matching pods (0 for nodes without the topology key), by node index.
    per_node: Vec<i64>,
    /// The domains of the nodes with the topology key (shared with the cycles' states).
    domains: Arc<BTreeMap<String, Domain>>,
    /// How many domains have each count: the global minimum is the first.
    histogram: BTreeMap<i64, usize>,
    /// The last cycle that used it.
    last_used: u64,
}

impl IndexedCounts {
    fn build(key: &IndexKey, nodes: &[Arc<NodeInfo>], cycle: u64) -> IndexedCounts {
        let mut counts = IndexedCounts {
            per_node: vec![0; nodes.len()],
            domains: Arc::new(BTreeMap::new()),
            histogram: BTreeMap::new(),
            last_used: cycle,
        };
        for (index, node) in nodes.iter().enumerate() {
            counts.add_node(key, index, node);
        }
        counts
    }

    fn histogram_remove(&mut self, pods: i64) {
        if let Some(domains) = self.histogram.get_mut(&pods) {
            *domains = domains.saturating_sub(1);
            if *domains == 0 {
                self.histogram.remove(&pods);
            }
        }
    }

    fn histogram_add(&mut self, pods: i64) {
        *self.histogram.entry(pods).or_insert(0) += 1;
    }

    /// Takes the node at `index` (as it was) out of the counts.
    fn remove_node(&mut self, key: &IndexKey, index: usize, node: &NodeInfo) {
        let Some(pods) = self.per_node.get_mut(index).map(std::mem::take) else {
            return;
        };
        let Some(value) = label_value(node_labels(node.node()), &key.3) else {
            return;
        };
        let domains = Arc::make_mut(&mut self.domains);
        let Some(domain) = domains.get_mut(value) else {
            return;
        };
        let before = domain.pods;
        domain.nodes = domain.nodes.saturating_sub(1);
        domain.pods = domain.pods.saturating_sub(pods);
        let after = (domain.nodes > 0).then_some(domain.pods);
        if after.is_none() {
            domains.remove(value);
        }
        self.histogram_remove(before);
        if let Some(after) = after {
            self.histogram_add(after);
        }
    }

    /// Adds the node at `index` to the counts.
    fn add_node(&mut self, key: &IndexKey, index: usize, node: &NodeInfo) {
        let Some(value) = label_value(node_labels(node.node()), &key.3) else {
            return;
        };
        let pods = count_label(node, &key.0, &key.1, &key.2);
        if let Some(slot) = self.per_node.get_mut(index) {
            *slot = pods;
        }
        let domains = Arc::make_mut(&mut self.domains);
        let (before, after) = match domains.get_mut(value) {
            Some(domain) => {
                let before = domain.pods;
                domain.nodes += 1;
                domain.pods = domain.pods.saturating_add(pods);
                (Some(before), domain.pods)
            }
            None => {
                domains.insert(value.to_owned(), Domain { nodes: 1, pods });
                (None, pods)
            }
        };
        if let Some(before) = before {
            self.histogram_remove(before);
        }
        self.histogram_add(after);
    }
}

/// The plugin's memory across cycles: the last snapshot's nodes and, per `key=value` selector
/// and topology key asked for, the matching pods by domain, updated by what changed since.
#[derive(Debug, Default)]
struct SpreadIndex {
    /// The nodes of the last PreFilter that used the index, by index.
    nodes: Vec<Arc<NodeInfo>>,
    counts: BTreeMap<IndexKey, IndexedCounts>,
    cycle: u64,
}

impl SpreadIndex {
    /// Brings the counts up to date with `nodes`: the nodes whose `Arc` changed are taken out
    /// as they were and added as they are; a different list of nodes drops every count.
    fn update(&mut self, nodes: &[Arc<NodeInfo>]) {
        self.cycle = self.cycle.wrapping_add(1);
        if self.nodes.len() != nodes.len() {
            self.nodes = nodes.to_vec();
            self.counts.clear();
            return;
        }
        let mut changed = Vec::new();
        for (index, (old, new)) in self.nodes.iter().zip(nodes).enumerate() {
            if Arc::ptr_eq(old, new) {
                continue;
            }
            if old.name() != new.name() {
                self.nodes = nodes.to_vec();
                self.counts.clear();
                return;
            }
            changed.push(index);
        }
        for index in changed {
            let (Some(old), Some(new)) = (self.nodes.get(index), nodes.get(index)) else {
                continue;
            };
            for (key, counts) in &mut self.counts {
                counts.remove_node(key, index, old);
                counts.add_node(key, index, new);
            }
            if let Some(slot) = self.nodes.get_mut(index) {
                *slot = Arc::clone(new);
            }
        }
        let cycle = self.cycle;
        self.counts
            .retain(|_, counts| cycle.wrapping_sub(counts.last_used) <= EVICT_AFTER_CYCLES);
    }

    /// The counts for `key`, built over `nodes` (those of the last [`update`](Self::update))
    /// if new.
    fn counts(&mut self, key: IndexKey) -> &IndexedCounts {
        let cycle = self.cycle;
        let nodes = &self.nodes;
        let counts = self
            .counts
            .entry(key)
            .or_insert_with_key(|key| IndexedCounts::build(key, nodes, cycle));
        counts.last_used = cycle;
        counts
    }
}

/// Whether the index can answer the pod's constraints: every selector is one `key=value`, all
/// share one topology key, and the node inclusion policies admit every node with it.
fn indexable(pod: &Pod, constraints: &[Constraint]) -> bool {
    let Some(first) = constraints.first() else {
        return false;
    };
    let spec = pod.spec.as_ref();
    let unrestricted = spec
        .and_then(|spec| spec.node_selector.as_ref())
        .is_none_or(BTreeMap::is_empty)
        && spec
            .and_then(|spec| spec.affinity.as_ref())
            .and_then(|affinity| affinity.node_affinity.as_ref())
            .and_then(|node_affinity| {
                node_affinity
                    .required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .is_none();
    constraints.iter().all(|c| {
        matches!(c.counter, PodCounter::Label { .. })
            && c.topology_key == first.topology_key
            && !c.honor_node_taints
            && (!c.honor_node_affinity || unrestricted)
    })
}

/// Filters out nodes where the pod would break one of its `DoNotSchedule` topology spread
/// constraints and scores nodes by its `ScheduleAnyway` constraints, emptier domains first
/// (kube-scheduler's PodTopologySpread; default score weight 2). See the
/// [module documentation](self) for the semantics and the differences from Kubernetes.
///
/// It keeps, across cycles, counts of the pods matching the one-label selectors its pods ask
/// for, by domain, updated from the nodes that changed since the last cycle (see
/// [Counting](self#counting)); build it with [`Default`] and share one instance.
#[derive(Debug, Default)]
pub struct PodTopologySpread {
    index: Mutex<SpreadIndex>,
}

impl PodTopologySpread {
    /// PreFilter's constraints answered from the index (which see [`indexable`]).
    fn pre_filter_indexed(
        &self,
        constraints: Vec<Constraint>,
        namespace: &str,
        nodes: &[Arc<NodeInfo>],
        pod_labels: &BTreeMap<String, String>,
    ) -> Vec<FilterConstraint> {
        let mut index = match self.index.lock() {
            Ok(index) => index,
            Err(poisoned) => {
                // A panic midway may have left it inconsistent: start over.
                let mut index = poisoned.into_inner();
                *index = SpreadIndex::default();
                self.index.clear_poison();
                index
            }
        };
        index.update(nodes);
        constraints
            .into_iter()
            .map(|constraint| {
                let (domains, min, shared) = match &constraint.counter {
                    PodCounter::Label { key, value } => {
                        let counts = index.counts((
                            namespace.to_owned(),
                            key.clone(),
                            value.clone(),
                            constraint.topology_key.clone(),
                        ));
                        (
                            counts.domains.len(),
                            counts.histogram.keys().next().copied(),
                            Arc::clone(&counts.domains),
                        )
                    }
                    // Not indexable: never here.
                    _ => (0, None, Arc::new(BTreeMap::new())),
                };
                FilterConstraint {
                    self_match: i64::from(constraint.selector.matches(pod_labels)),
                    min_match: min_match(&constraint, domains, min),
                    constraint,
                    domains: DomainCounts::Indexed(shared),
                }
            })
            .collect()
    }
}

/// The global minimum of a constraint with `domains` domains whose emptiest has `min` pods: 0
/// while there are fewer domains than `minDomains`.
fn min_match(constraint: &Constraint, domains: usize, min: Option<i64>) -> i64 {
    if i64::try_from(domains).unwrap_or(i64::MAX) < constraint.min_domains {
        0
    } else {
        // No domain at all (only with minDomains < 1): Kubernetes' critical path starts at
        // MaxInt32.
        min.unwrap_or(i64::from(i32::MAX))
    }
}

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreFilterPlugin for PodTopologySpread {
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, nodes: &[Arc<NodeInfo>]) -> Status {
        let constraints = match constraints_of(pod, DO_NOT_SCHEDULE) {
            Ok(constraints) => constraints,
            Err(error) => {
                return Status::error(NAME, format!("get constraints from pod: {error}"));
            }
        };
        if constraints.is_empty() {
            return Status::skip(NAME);
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        let inclusion = NodeInclusion::new(pod);
        let pod_labels = pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS);
        if indexable(pod, &constraints) {
            let constraints = self.pre_filter_indexed(constraints, namespace, nodes, pod_labels);
            state.write(
                PRE_FILTER_KEY,
                PreFilterState {
                    constraints,
                    namespace: namespace.to_owned(),
                    inclusion,
                },
            );
            return Status::SUCCESS;
        }
        let mut tallies: Vec<Tally> = constraints
            .iter()
            .map(|_| Tally::PerNode(Vec::new()))
            .collect();
        let mut values = Vec::with_capacity(constraints.len());
        for (index, info) in nodes.iter().enumerate() {
            let node = info.node();
            if !topology_values(node_labels(node), &constraints, &mut values) {
                // Not counted, but a node whose value is another's name would find that
                // node's domain at Filter: no longer one domain per node.
                for (constraint, tally) in constraints.iter().zip(tallies.iter_mut()) {
                    if let Some(value) = label_value(node_labels(node), &constraint.topology_key)
                        && value != info.name()
                    {
                        tally.by_value(nodes);
                    }
                }
                continue;
            }
            let mut verdict = NodeVerdict::default();
            for ((constraint, tally), &value) in
                constraints.iter().zip(tallies.iter_mut()).zip(&values)
            {
                if value != info.name() {
                    tally.by_value(nodes);
                }
                if !inclusion.includes(&mut verdict, constraint, node) {
                    continue;
                }
                let count = constraint.counter.count(info, namespace);
                match tally {
                    Tally::PerNode(counted) => counted.push((index, count)),
                    Tally::ByValue(counts) => add_to_domain(counts, value, count),
                }
            }
        }
        let constraints = constraints
            .into_iter()
            .zip(tallies)
            .map(|(constraint, tally)| {
                let (domains, min, counts) = match tally {
                    // No node at all: looked up by value, every domain is empty.
                    Tally::PerNode(counted) if counted.is_empty() => {
                        (0, None, DomainCounts::ByValue(BTreeMap::new()))
                    }
                    Tally::PerNode(counted) => (
                        counted.len(),
                        counted.iter().map(|(_, count)| *count).min(),
                        DomainCounts::PerNode,
                    ),
                    Tally::ByValue(counts) => (
                        counts.len(),
                        counts.values().copied().min(),
                        DomainCounts::ByValue(counts),
                    ),
                };
                let min_match = min_match(&constraint, domains, min);
                FilterConstraint {
                    self_match: i64::from(constraint.selector.matches(pod_labels)),
                    constraint,
                    min_match,
                    domains: counts,
                }
            })
            .collect();
        state.write(
            PRE_FILTER_KEY,
            PreFilterState {
                constraints,
                namespace: namespace.to_owned(),
                inclusion,
            },
        );
        Status::SUCCESS
    }
}

impl FilterPlugin for PodTopologySpread {
    fn filter(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Status {
        let pre = match state.read_or_error::<PreFilterState>(PRE_FILTER_KEY, NAME) {
            Ok(pre) => pre,
            Err(status) => return status,
        };
        let labels = node_labels(node.node());
        let mut verdict = NodeVerdict::default();
        for c in &pre.constraints {
            let Some(value) = label_value(labels, &c.constraint.topology_key) else {
                return Status::unresolvable(NAME, ERR_REASON_NODE_LABEL_NOT_MATCH);
            };
            let matched = match &c.domains {
                DomainCounts::ByValue(counts) => counts.get(value).copied().unwrap_or(0),
                DomainCounts::Indexed(domains) => domains.get(value).map_or(0, |d| d.pods),
                DomainCounts::PerNode => {
                    // PreFilter counted the node only if it has every topology key.
                    if value == node.name()
                        && pre
                            .constraints
                            .iter()
                            .all(|c| label_value(labels, &c.constraint.topology_key).is_some())
                        && pre
                            .inclusion
                            .includes(&mut verdict, &c.constraint, node.node())
                    {
                        c.constraint.counter.count(node, &pre.namespace)
                    } else {
                        0
                    }
                }
            };
            // 'existing matching num' + 'if self-match (1 or 0)' - 'global minimum' <= 'maxSkew'
            let skew = matched
                .saturating_add(c.self_match)
                .saturating_sub(c.min_match);
            if skew > c.constraint.max_skew {
                return Status::unschedulable(NAME, ERR_REASON_CONSTRAINTS_NOT_MATCH);
            }
        }
        Status::SUCCESS
    }
}

impl PreScorePlugin for PodTopologySpread {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        feasible: &[&NodeInfo],
        all: &[Arc<NodeInfo>],
    ) -> Status {
        if all.is_empty() {
            return Status::skip(NAME);
        }
        let constraints = match constraints_of(pod, SCHEDULE_ANYWAY) {
            Ok(constraints) => constraints,
            Err(error) => {
                return Status::error(
                    NAME,
                    format!("obtaining pod's soft topology spread constraints: {error}"),
                );
            }
        };
        if constraints.is_empty() {
            return Status::skip(NAME);
        }
        // The domains of the feasible nodes that have every topology key; the others are
        // ignored (scored 0).
        let mut counts: Vec<BTreeMap<String, i64>> =
            constraints.iter().map(|_| BTreeMap::new()).collect();
        let mut scored_nodes: usize = 0;
        for info in feasible {
            let labels = node_labels(info.node());
            if !has_all_keys(labels, &constraints) {
                continue;
            }
            scored_nodes += 1;
            for (constraint, domains) in constraints.iter().zip(counts.iter_mut()) {
                if constraint.topology_key == LABEL_HOSTNAME {
                    continue;
                }
                if let Some(value) = label_value(labels, &constraint.topology_key) {
                    add_to_domain(domains, value, 0);
                }
            }
        }
        // Count the matching pods of those domains over all the nodes the constraints count
        // (unless every constraint is on the hostname, counted at Score).
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        let inclusion = NodeInclusion::new(pod);
        let mut values = Vec::with_capacity(constraints.len());
        let by_domain = constraints
            .iter()
            .any(|constraint| constraint.topology_key != LABEL_HOSTNAME);
        for info in all.iter().filter(|_| by_domain) {
            let node = info.node();
            if !topology_values(node_labels(node), &constraints, &mut values) {
                continue;
            }
            let mut verdict = NodeVerdict::default();
            for ((constraint, domains), &value) in
                constraints.iter().zip(counts.iter_mut()).zip(&values)
            {
                let Some(total) = domains.get_mut(value) else {
                    continue;
                };
                if inclusion.includes(&mut verdict, constraint, node) {
                    *total = total.saturating_add(constraint.counter.count(info, namespace));
                }
            }
        }
        let constraints = constraints
            .into_iter()
            .zip(counts)
            .map(|(constraint, counts)| {
                let size = if constraint.topology_key == LABEL_HOSTNAME {
                    scored_nodes
                } else {
                    counts.len()
                };
                ScoreConstraint {
                    constraint,
                    counts,
                    weight: topology_normalizing_weight(size),
                }
            })
            .collect();
        state.write(PRE_SCORE_KEY, PreScoreState { constraints });
        Status::SUCCESS
    }
}

/// The weight of a constraint's counts, `ln(size + 2)` for `size` domains: between 1.09 and
/// 8.52 for up to 5,000 nodes (Kubernetes' `topologyNormalizingWeight`).
fn topology_normalizing_weight(size: usize) -> f64 {
    // Exact for any realistic number of domains.
    #[allow(clippy::cast_precision_loss)]
    let size = size as f64;
    (size + 2.0).ln()
}

impl ScorePlugin for PodTopologySpread {
    fn score(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        let pre = state.read_or_error::<PreScoreState>(PRE_SCORE_KEY, NAME)?;
        let labels = node_labels(node.node());
        if !pre
            .constraints
            .iter()
            .all(|c| label_value(labels, &c.constraint.topology_key).is_some())
        {
            return Ok(IGNORED_NODE_SCORE);
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        let mut score = 0.0_f64;
        for c in &pre.constraints {
            let count = if c.constraint.topology_key == LABEL_HOSTNAME {
                c.constraint.counter.count(node, namespace)
            } else {
                let Some(value) = label_value(labels, &c.constraint.topology_key) else {
                    continue;
                };
                c.counts.get(value).copied().unwrap_or(0)
            };
            // Kubernetes' `scoreForCount`: maxSkew - 1 waters the differences down.
            #[allow(clippy::cast_precision_loss)]
            let (count, tolerance) = (count as f64, (c.constraint.max_skew - 1) as f64);
            score += count * c.weight + tolerance;
        }
        // In range: counts are at most the number of pods.
        #[allow(clippy::cast_possible_truncation)]
        let score = score.round() as i64;
        Ok(score.max(0))
    }

    /// Kubernetes' `NormalizeScore`: `100 × (max + min − score) / max` over the nodes that have
    /// every topology key, so the fewest matching pods score highest; nodes lacking a key score
    /// 0, and all score 100 when the highest raw score is 0.
    fn normalize(&self, scores: &mut [NodeScore]) {
        let mut min = i64::MAX;
        let mut max = 0;
        for score in scores.iter().filter(|s| s.score != IGNORED_NODE_SCORE) {
            min = min.min(score.score);
            max = max.max(score.score);
        }
        for score in scores.iter_mut() {
            score.score = if score.score == IGNORED_NODE_SCORE {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE.saturating_mul(max.saturating_add(min).saturating_sub(score.score))
                    / max
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::{Code, Profile};
    use crate::scheduler::plugins::test_util::node;
    use serde_json::{Value, json};

    const ZONE: &str = "topology.kubernetes.io/zone";

    fn zone_node(name: &str, zone: &str) -> NodeInfo {
        node(json!({"metadata": {"name": name, "labels": {ZONE: zone, LABEL_HOSTNAME: name}}}))
    }

    /// A pod in namespace `ns` with `labels` and the rest of its spec.
    fn labelled_pod(name: &str, labels: Value, spec: Value) -> Pod {
        let mut spec = spec;
        if let Some(object) = spec.as_object_mut() {
            object.entry("containers").or_insert(json!([]));
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "labels": labels},
            "spec": spec
        }))
        .unwrap()
    }

    fn constraint(key: &str, max_skew: i32, when: &str, selector: Value) -> Value {
        json!({
            "maxSkew": max_skew,
            "topologyKey": key,
            "whenUnsatisfiable": when,
            "labelSelector": selector
        })
    }

    fn spreading(constraints: Value) -> Pod {
        labelled_pod(
            "incoming",
            json!({"app": "web"}),
            json!({"topologySpreadConstraints": constraints}),
        )
    }

    fn with_pods(mut info: NodeInfo, pods: &[Pod]) -> Arc<NodeInfo> {
        for pod in pods {
            info.add_pod(pod);
        }
        Arc::new(info)
    }

    fn web(name: &str) -> Pod {
        labelled_pod(name, json!({"app": "web"}), json!({}))
    }

    fn profile() -> Profile {
        let plugin = Arc::new(PodTopologySpread::default());
        Profile::new("spread")
            .with_pre_filter(plugin.clone())
            .with_filter(plugin.clone())
            .with_pre_score(plugin.clone())
            .with_score(plugin, 1)
    }

    /// The Filter status of each node, after PreFilter over all of them.
    fn filter_all(pod: &Pod, nodes: &[Arc<NodeInfo>]) -> Vec<Status> {
        filter_with(&profile(), pod, nodes)
    }

    /// [`filter_all`] with a given profile (whose plugin may have seen earlier cycles).
    fn filter_with(profile: &Profile, pod: &Pod, nodes: &[Arc<NodeInfo>]) -> Vec<Status> {
        let mut state = CycleState::new();
        let status = profile.run_pre_filter(&mut state, pod, nodes);
        assert!(status.is_success(), "{status}");
        nodes
            .iter()
            .map(|n| profile.run_filter(&state, pod, n))
            .collect()
    }

    fn codes(statuses: &[Status]) -> Vec<Code> {
        statuses.iter().map(|s| s.code).collect()
    }

    #[test]
    fn max_skew_one_over_zones() {
        let nodes = [
            with_pods(zone_node("a1", "a"), &[web("w1")]),
            with_pods(zone_node("a2", "a"), &[web("w2")]),
            with_pods(zone_node("b1", "b"), &[web("w3")]),
            // Pods of other namespaces or labels do not count.
            with_pods(
                zone_node("c1", "c"),
                &[
                    serde_json::from_value(json!({
                        "metadata": {"name": "other-ns", "namespace": "other", "labels": {"app": "web"}},
                        "spec": {"containers": []}
                    }))
                    .unwrap(),
                    labelled_pod("db", json!({"app": "db"}), json!({})),
                ],
            ),
        ];
        let pod = spreading(json!([constraint(
            ZONE,
            1,
            DO_NOT_SCHEDULE,
            json!({"matchLabels": {"app": "web"}})
        )]));
        let statuses = filter_all(&pod, &nodes);
        assert_eq!(
            codes(&statuses),
            [
                Code::Unschedulable,
                Code::Unschedulable,
                Code::Unschedulable,
                Code::Success
            ]
        );
        assert_eq!(statuses[0].reasons, [ERR_REASON_CONSTRAINTS_NOT_MATCH]);
        assert_eq!(statuses[0].plugin, NAME);

        // maxSkew 2: zone b (1 + 1 - 0) fits, zone a (2 + 1 - 0) does not.
        let pod = spreading(json!([constraint(
            ZONE,
            2,
            DO_NOT_SCHEDULE,
            json!({"matchLabels": {"app": "web"}})
        )]));
        assert_eq!(
            codes(&filter_all(&pod, &nodes)),
            [
                Code::Unschedulable,
                Code::Unschedulable,
                Code::Success,
                Code::Success
            ]
        );

        // A pod that does not match its own selector adds nothing: zone b is at 1 - 0.
        let mut pod = spreading(json!([constraint(
            ZONE,
            1,
            DO_NOT_SCHEDULE,
            json!({"matchLabels": {"app": "web"}})
        )]));
        pod.metadata.labels = None;
        assert_eq!(
            codes(&filter_all(&pod, &nodes)),
            [
                Code::Unschedulable,
                Code::Unschedulable,
                Code::Success,
                Code::Success
            ]
        );
    }

    #[test]
    fn hostname_spread_and_two_constraints() {
        let nodes = [
            with_pods(zone_node("a1", "a"), &[web("w1")]),
            with_pods(zone_node("a2", "a"), &[]),
            with_pods(zone_node("b1", "b"), &[web("w2")]),
        ];
        let selector = json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]});
        let pod = spreading(json!([
            constraint(ZONE, 1, DO_NOT_SCHEDULE, selector.clone()),
            constraint(LABEL_HOSTNAME, 1, DO_NOT_SCHEDULE, selector),
        ]));
        // Zones a (1) and b (1) are even, so every node passes the zone constraint; by host,
        // a1 and b1 would be at 1 + 1 - 0 = 2 against a2's 0.
        assert_eq!(
            codes(&filter_all(&pod, &nodes)),
            [Code::Unschedulable, Code::Success, Code::Unschedulable]
        );
    }

    #[test]
    fn min_domains_treats_global_minimum_as_zero() {
        let nodes = [
            with_pods(zone_node("a1", "a"), &[web("w1")]),
            with_pods(zone_node("b1", "b"), &[web("w2")]),
        ];
        let mut c = constraint(
            ZONE,
            1,
            DO_NOT_SCHEDULE,
            json!({"matchLabels": {"app": "web"}}),
        );
        // Two domains, minimum 1: 1 + 1 - 1 fits everywhere.
        assert_eq!(
            codes(&filter_all(&spreading(json!([c.clone()])), &nodes)),
            [Code::Success, Code::Success]
        );
        c["minDomains"] = json!(2);
        assert_eq!(
            codes(&filter_all(&spreading(json!([c.clone()])), &nodes)),
            [Code::Success, Code::Success]
        );
        // Fewer domains than minDomains: the minimum is 0 and 1 + 1 - 0 > 1.
        c["minDomains"] = json!(3);
        assert_eq!(
            codes(&filter_all(&spreading(json!([c])), &nodes)),
            [Code::Unschedulable, Code::Unschedulable]
        );
    }

    #[test]
    fn missing_label_is_unresolvable() {
        let nodes = [
            with_pods(zone_node("a1", "a"), &[]),
            Arc::new(node(
                json!({"metadata": {"name": "bare", "labels": {LABEL_HOSTNAME: "bare"}}}),
            )),
            Arc::new(node(json!({"metadata": {"name": "unlabelled"}}))),
        ];
        let pod = spreading(json!([constraint(
            ZONE,
            1,
            DO_NOT_SCHEDULE,
            json!({"matchLabels": {"app": "web"}})
        )]));
        let statuses = filter_all(&pod, &nodes);
        assert_eq!(
            codes(&statuses),
            [
                Code::Success,
                Code::UnschedulableAndUnresolvable,
                Code::UnschedulableAndUnresolvable
            ]
        );
        assert_eq!(
            statuses[1].reasons,
            ["node(s) didn't match pod topology spread constraints (missing required label)"]
        );
    }

    #[test]
    fn skips_without_constraints_and_errors_without_pre_filter() {
        let mut state = CycleState::new();
        let plugin = PodTopologySpread::default();
        let nodes = [with_pods(zone_node("a1", "a"), &[])];
        let plain = web("p");
        assert_eq!(
            plugin.pre_filter(&mut state, &plain, &nodes).code,
            Code::Skip
        );
        // Only ScheduleAnyway constraints: nothing for Filter.
        let soft = spreading(json!([constraint(
            ZONE,
            1,
            SCHEDULE_ANYWAY,
            json!({"matchLabels": {"app": "web"}})
        )]));
        assert_eq!(
            plugin.pre_filter(&mut state, &soft, &nodes).code,
            Code::Skip
        );
        let feasible: Vec<&NodeInfo> = nodes.iter().map(|n| n.as_ref()).collect();
        assert_eq!(
            plugin.pre_score(&mut state, &plain, &feasible, &nodes).code,
            Code::Skip
        );
        assert_eq!(plugin.filter(&state, &soft, &nodes[0]).code, Code::Error);
        // An invalid selector is an error, as in Kubernetes.
        let bad = spreading(json!([constraint(
            ZONE,
            1,
            DO_NOT_SCHEDULE,
            json!({"matchExpressions": [{"key": "app", "operator": "Bogus"}]})
        )]));
        assert_eq!(
            plugin.pre_filter(&mut state, &bad, &nodes).code,
            Code::Error
        );
    }

    #[test]
    fn schedule_anyway_prefers_the_emptier_domain() {
        let nodes = [
            with_pods(zone_node("a1", "a"), &[web("w1"), web("w2")]),
            with_pods(zone_node("a2", "a"), &[]),
            with_pods(zone_node("b1", "b"), &[web("w3")]),
            with_pods(zone_node("c1", "c"), &[]),
            Arc::new(node(json!({"metadata": {"name": "no-zone"}}))),
        ];
        let pod = spreading(json!([constraint(
            ZONE,
            1,
            SCHEDULE_ANYWAY,
            json!({"matchLabels": {"app": "web"}})
        )]));
        let profile = profile();
        let mut state = CycleState::new();
        assert_eq!(
            profile.run_pre_filter(&mut state, &pod, &nodes).code,
            Code::Success
        );
        let feasible: Vec<&NodeInfo> = nodes.iter().map(|n| n.as_ref()).collect();
        assert!(
            profile
                .run_pre_score(&mut state, &pod, &feasible, &nodes)
                .is_success()
        );
        let plugin = PodTopologySpread::default();
        // Raw: count × ln(3 zones + 2).
        let raw: Vec<i64> = feasible
            .iter()
            .map(|n| plugin.score(&state, &pod, n).unwrap())
            .collect();
        let weight = 5.0_f64.ln();
        assert_eq!(
            raw,
            [
                (2.0 * weight).round() as i64,
                (2.0 * weight).round() as i64,
                weight.round() as i64,
                0,
                IGNORED_NODE_SCORE
            ]
        );
        let scores: Vec<i64> = profile
            .run_score(&state, &pod, &feasible)
            .unwrap()
            .iter()
            .map(|s| s.score)
            .collect();
        // max 3, min 0: 100 × (3 + 0 - s) / 3.
        assert_eq!(scores, [0, 0, 33, 100, 0]);
    }

    #[test]
    fn score_hostname_counts_the_node_and_max_skew_tolerance() {
        let nodes = [
            with_pods(zone_node("a1", "a"), &[web("w1"), web("w2")]),
            with_pods(zone_node("a2", "a"), &[web("w3")]),
            with_pods(zone_node("a3", "a"), &[]),
        ];
        let pod = spreading(json!([constraint(
            LABEL_HOSTNAME,
            2,
            SCHEDULE_ANYWAY,
            json!({"matchLabels": {"app": "web"}})
        )]));
        let plugin = PodTopologySpread::default();
        let mut state = CycleState::new();
        let feasible: Vec<&NodeInfo> = nodes.iter().map(|n| n.as_ref()).collect();
        assert!(
            plugin
                .pre_score(&mut state, &pod, &feasible, &nodes)
                .is_success()
        );
        let weight = 5.0_f64.ln(); // 3 feasible nodes.
        let mut scores: Vec<NodeScore> = feasible
            .iter()
            .enumerate()
            .map(|(index, n)| NodeScore {
                index,
                score: plugin.score(&state, &pod, n).unwrap(),
            })
            .collect();
        assert_eq!(
            scores.iter().map(|s| s.score).collect::<Vec<_>>(),
            [
                (2.0 * weight + 1.0).round() as i64,
                (weight + 1.0).round() as i64,
                1
            ]
        );
        plugin.normalize(&mut scores);
        // Raw 4, 3, 1: 100 × (5 - s) / 4.
        assert_eq!(
            scores.iter().map(|s| s.score).collect::<Vec<_>>(),
            [25, 50, 100]
        );
        let mut zeros = [NodeScore { index: 0, score: 0 }];
        plugin.normalize(&mut zeros);
        assert_eq!(zeros[0].score, MAX_NODE_SCORE);
    }

    #[test]
    fn match_label_keys_narrow_the_selector() {
        let revision = |name: &str, hash: &str| {
            labelled_pod(
                name,
                json!({"app": "web", "pod-template-hash": hash}),
                json!({}),
            )
        };
        let nodes = [
            with_pods(
                zone_node("a1", "a"),
                &[revision("old1", "v1"), revision("old2", "v1")],
            ),
            with_pods(zone_node("b1", "b"), &[revision("new1", "v2")]),
        ];
        let mut c = constraint(
            ZONE,
            1,
            DO_NOT_SCHEDULE,
            json!({"matchLabels": {"app": "web"}}),
        );
        let mut pod = spreading(json!([c.clone()]));
        if let Some(labels) = pod.metadata.labels.as_mut() {
            labels.insert("pod-template-hash".into(), "v2".into());
        }
        // Without matchLabelKeys, every revision counts: a (2) against b (1).
        assert_eq!(
            codes(&filter_all(&pod, &nodes)),
            [Code::Unschedulable, Code::Success]
        );
        // With it, only v2: a (0) against b (1).
        c["matchLabelKeys"] = json!(["pod-template-hash", "absent-key"]);
        if let Some(spec) = pod.spec.as_mut() {
            spec.topology_spread_constraints = serde_json::from_value(json!([c])).ok();
        }
        assert_eq!(
            codes(&filter_all(&pod, &nodes)),
            [Code::Success, Code::Unschedulable]
        );
        let merged = constraints_of(&pod, DO_NOT_SCHEDULE).unwrap();
        assert_eq!(
            merged[0].selector.to_string(),
            "app=web,pod-template-hash=v2"
        );
    }

    #[test]
    fn node_affinity_policy_honor_and_ignore() {
        let nodes = [
            with_pods(zone_node("a1", "a"), &[web("w1")]),
            with_pods(zone_node("b1", "b"), &[web("w2")]),
            with_pods(zone_node("c1", "c"), &[]),
        ];
        let mut c = constraint(
            ZONE,
            1,
            DO_NOT_SCHEDULE,
            json!({"matchLabels": {"app": "web"}}),
        );
        let pod_with = |c: &Value| {
            labelled_pod(
                "incoming",
                json!({"app": "web"}),
                json!({
                    "topologySpreadConstraints": [c],
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [
                            {"key": ZONE, "operator": "In", "values": ["a", "b"]}
                        ]}]
                    }}}
                }),
            )
        };
        // Honor (the default): zone c is not a domain, the minimum is 1 and a, b fit.
        assert_eq!(
            codes(&filter_all(&pod_with(&c), &nodes)),
            [Code::Success, Code::Success, Code::Success]
        );
        // Ignore: zone c counts with 0, so a and b are at skew 2.
        c["nodeAffinityPolicy"] = json!("Ignore");
        assert_eq!(
            codes(&filter_all(&pod_with(&c), &nodes)),
            [Code::Unschedulable, Code::Unschedulable, Code::Success]
        );
    }

    #[test]
    fn node_taints_policy_honor_and_ignore() {
        let tainted = node(json!({
            "metadata": {"name": "c1", "labels": {ZONE: "c", LABEL_HOSTNAME: "c1"}},
            "spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}
        }));
        let nodes = [
            with_pods(zone_node("a1", "a"), &[web("w1")]),
            with_pods(zone_node("b1", "b"), &[web("w2")]),
            Arc::new(tainted),
        ];
        let mut c = constraint(
            ZONE,
            1,
            DO_NOT_SCHEDULE,
            json!({"matchLabels": {"app": "web"}}),
        );
        // Ignore (the default): the tainted zone c counts with 0.
        assert_eq!(
            codes(&filter_all(&spreading(json!([c.clone()])), &nodes)),
            [Code::Unschedulable, Code::Unschedulable, Code::Success]
        );
        c["nodeTaintsPolicy"] = json!("Honor");
        assert_eq!(
            codes(&filter_all(&spreading(json!([c.clone()])), &nodes))[..2],
            [Code::Success, Code::Success]
        );
        // A pod tolerating the taint counts zone c again.
        let tolerating = labelled_pod(
            "incoming",
            json!({"app": "web"}),
            json!({
                "topologySpreadConstraints": [c],
                "tolerations": [{"key": "dedicated", "operator": "Exists"}]
            }),
        );
        assert_eq!(
            codes(&filter_all(&tolerating, &nodes)),
            [Code::Unschedulable, Code::Unschedulable, Code::Success]
        );
    }

    #[test]
    fn terminating_pods_are_ignored() {
        let terminating = |name: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {
                    "name": name, "namespace": "ns", "labels": {"app": "web"},
                    "deletionTimestamp": "2024-01-01T00:00:00Z"
                },
                "spec": {"containers": []}
            }))
            .unwrap()
        };
        let nodes = [
            with_pods(
                zone_node("a1", "a"),
                &[terminating("t1"), terminating("t2")],
            ),
            with_pods(zone_node("b1", "b"), &[web("w1")]),
        ];
        // A selector the label index cannot answer: the pods are scanned and the terminating
        // ones skipped, so zone a is at 0 and zone b at 1 + 1 - 0.
        let pod = spreading(json!([constraint(
            ZONE,
            1,
            DO_NOT_SCHEDULE,
            json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]})
        )]));
        assert_eq!(
            codes(&filter_all(&pod, &nodes)),
            [Code::Success, Code::Unschedulable]
        );
    }

    #[test]
    fn terminating_pods_are_ignored_by_the_index() {
        let terminating: Pod = serde_json::from_value(json!({
            "metadata": {
                "name": "t1", "namespace": "ns", "labels": {"app": "web"},
                "deletionTimestamp": "2024-01-01T00:00:00Z"
            },
            "spec": {"containers": []}
        }))
        .unwrap();
        let pod = spreading(json!([constraint(
            ZONE,
            1,
            DO_NOT_SCHEDULE,
            json!({"matchLabels": {"app": "web"}})
        )]));
        let profile = profile();
        let mut nodes = vec![
            with_pods(zone_node("a1", "a"), &[terminating.clone(), web("w2")]),
            with_pods(zone_node("b1", "b"), &[web("w1")]),
        ];
        // Zones a and b at 1: both fit.
        assert_eq!(
            codes(&filter_with(&profile, &pod, &nodes)),
            [Code::Success, Code::Success]
        );
        // w2 leaves a1: zone a at 0, zone b at 1 + 1 - 0.
        let mut a1 = (*nodes[0]).clone();
        assert!(a1.remove_pod(&web("w2")));
        nodes[0] = Arc::new(a1);
        assert_eq!(
            codes(&filter_with(&profile, &pod, &nodes)),
            [Code::Success, Code::Unschedulable]
        );
        // A third node (the list changes length): zone c at 0 too.
        nodes.push(with_pods(zone_node("c1", "c"), &[]));
        assert_eq!(
            codes(&filter_with(&profile, &pod, &nodes)),
            [Code::Success, Code::Unschedulable, Code::Success]
        );
    }

    #[test]
    fn node_lacking_a_key_finds_another_nodes_hostname_domain() {
        // x has no zone (not counted) but the hostname of a1, whose domain has 1 pod.
        let x = node(json!({"metadata": {"name": "x", "labels": {LABEL_HOSTNAME: "a1"}}}));
        let nodes = [
            with_pods(zone_node("a1", "a"), &[web("w1")]),
            Arc::new(x),
            with_pods(zone_node("b1", "b"), &[]),
        ];
        let selector = json!({"matchLabels": {"app": "web"}});
        let pod = spreading(json!([
            constraint(LABEL_HOSTNAME, 1, DO_NOT_SCHEDULE, selector.clone()),
            constraint(ZONE, 1, DO_NOT_SCHEDULE, selector),
        ]));
        assert_eq!(
            codes(&filter_all(&pod, &nodes)),
            [Code::Unschedulable, Code::Unschedulable, Code::Success]
        );
    }

    #[test]
    fn selector_kinds() {
        let selector = |s: &str| Selector::parse(s).unwrap();
        assert!(matches!(
            PodCounter::new(&selector("app=web")),
            PodCounter::Label { .. }
        ));
        assert!(matches!(
            PodCounter::new(&selector("app in (web)")),
            PodCounter::Label { .. }
        ));
        assert!(matches!(
            PodCounter::new(&selector("app in (web,api)")),
            PodCounter::Scan(_)
        ));
        assert!(matches!(
            PodCounter::new(&selector("app=web,tier=db")),
            PodCounter::Scan(_)
        ));
        assert!(matches!(
            PodCounter::new(&Selector::nothing()),
            PodCounter::Nothing
        ));
        // No labelSelector matches nothing: every domain is at 0.
        let nodes = [with_pods(zone_node("a1", "a"), &[web("w1"), web("w2")])];
        let pod = spreading(json!([{
            "maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": DO_NOT_SCHEDULE
        }]));
        assert_eq!(codes(&filter_all(&pod, &nodes)), [Code::Success]);
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        /// Per node, the existing pods as the reference sees them: app, namespace, terminating.
        type Seen = Vec<Vec<(usize, String, bool)>>;
        /// A constraint: hostname (else zone), maxSkew, app values (one: `matchLabels`),
        /// minDomains, nodeAffinityPolicy Ignore.
        type CaseConstraint = (bool, i32, Vec<usize>, Option<i32>, bool);

        #[derive(Clone, Debug)]
        struct Case {
            /// Each node's zone (`None`: no zone label).
            zones: Vec<Option<usize>>,
            /// Existing pods: node index, app label, namespace, terminating.
            pods: Vec<(usize, usize, usize, bool)>,
            /// The incoming pod's constraints.
            constraints: Vec<CaseConstraint>,
            /// The incoming pod's app label and `nodeSelector` zone.
            app: usize,
            node_selector: Option<usize>,
            /// Whether nodes share hostname labels (see `host_label`).
            shared_hostnames: bool,
        }

        fn arb_case() -> impl Strategy<Value = Case> {
            (
                proptest::collection::vec(proptest::option::weighted(0.9, 0..3_usize), 1..=8),
                proptest::collection::vec(
                    (0..8_usize, 0..3_usize, 0..4_usize, any::<bool>()),
                    0..24,
                ),
                proptest::collection::vec(
                    (
                        any::<bool>(),
                        1..=3_i32,
                        proptest::collection::vec(0..3_usize, 1..=2),
                        proptest::option::of(1..=4_i32),
                        any::<bool>(),
                    ),
                    1..=2,
                ),
                0..3_usize,
                proptest::option::weighted(0.3, 0..3_usize),
                proptest::bool::weighted(0.3),
            )
                .prop_map(
                    |(zones, pods, constraints, app, node_selector, shared_hostnames)| Case {
                        zones,
                        pods,
                        constraints,
                        app,
                        node_selector,
                        shared_hostnames,
                    },
                )
        }

        fn app(i: usize) -> String {
            format!("a{i}")
        }

        fn zone(i: usize) -> String {
            format!("z{i}")
        }

        /// The node's hostname label: its name, or with `shared_hostnames` the name of node
        /// `node % 4` (so nodes 4.. share the domains of nodes 0..4 and PreFilter's per-node
        /// tally turns into a map midway).
        fn host_label(case: &Case, node: usize) -> String {
            if case.shared_hostnames {
                format!("n{}", node % 4)
            } else {
                format!("n{node}")
            }
        }

        /// Node `i` of the case, without pods.
        fn node_of(case: &Case, i: usize) -> NodeInfo {
            let mut labels = json!({LABEL_HOSTNAME: host_label(case, i)});
            if let Some(z) = case.zones[i] {
                labels[ZONE] = json!(zone(z));
            }
            node(json!({"metadata": {"name": format!("n{i}"), "labels": labels}}))
        }

        /// An existing pod: its name, app, namespace (`other` for 0) and whether terminating.
        fn existing(name: &str, a: usize, ns: usize, term: bool) -> (Pod, (usize, String, bool)) {
            let namespace = if ns == 0 { "other" } else { "ns" };
            let mut metadata = json!({
                "name": name, "namespace": namespace, "labels": {"app": app(a)}
            });
            if term {
                metadata["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
            }
            let pod: Pod =
                serde_json::from_value(json!({"metadata": metadata, "spec": {"containers": []}}))
                    .unwrap();
            (pod, (a, namespace.to_owned(), term))
        }

        fn build(case: &Case) -> (Vec<Arc<NodeInfo>>, Seen, Pod) {
            let (nodes, seen, _, pod) = build_with_pods(case);
            (nodes, seen, pod)
        }

        /// [`build`], with the pods of each node (in the order of `seen`).
        fn build_with_pods(case: &Case) -> (Vec<Arc<NodeInfo>>, Seen, Vec<Vec<Pod>>, Pod) {
            let mut infos: Vec<NodeInfo> =
                (0..case.zones.len()).map(|i| node_of(case, i)).collect();
            // What the reference sees: per node, (app, namespace, terminating).
            let mut seen: Seen = vec![Vec::new(); infos.len()];
            let mut pods: Vec<Vec<Pod>> = vec![Vec::new(); infos.len()];
            for (k, (n, a, ns, term)) in case.pods.iter().enumerate() {
                let n = n % infos.len();
                let (pod, seen_as) = existing(&format!("p{k}"), *a, *ns, *term);
                infos[n].add_pod(&pod);
                seen[n].push(seen_as);
                pods[n].push(pod);
            }
            let constraints: Vec<Value> = case
                .constraints
                .iter()
                .map(|(hostname, max_skew, apps, min_domains, ignore)| {
                    let selector = if let [a] = apps.as_slice() {
                        json!({"matchLabels": {"app": app(*a)}})
                    } else {
                        json!({"matchExpressions": [{
                            "key": "app", "operator": "In",
                            "values": apps.iter().map(|a| app(*a)).collect::<Vec<_>>()
                        }]})
                    };
                    let key = if *hostname { LABEL_HOSTNAME } else { ZONE };
                    let mut c = constraint(key, *max_skew, DO_NOT_SCHEDULE, selector);
                    if let Some(m) = min_domains {
                        c["minDomains"] = json!(m);
                    }
                    if *ignore {
                        c["nodeAffinityPolicy"] = json!("Ignore");
                    }
                    c
                })
                .collect();
            let mut spec = json!({"topologySpreadConstraints": constraints});
            if let Some(z) = case.node_selector {
                spec["nodeSelector"] = json!({ZONE: zone(z)});
            }
            let pod = labelled_pod("incoming", json!({"app": app(case.app)}), spec);
            (infos.into_iter().map(Arc::new).collect(), seen, pods, pod)
        }

        /// Kubernetes' Filter computed naively: per constraint, scan every pod of every
        /// eligible node, then check each node.
        fn reference(case: &Case, seen: &[Vec<(usize, String, bool)>]) -> Vec<Code> {
            let domain = |hostname: bool, node: usize| -> Option<String> {
                if hostname {
                    Some(host_label(case, node))
                } else {
                    case.zones[node].map(zone)
                }
            };
            let has_all =
                |node: usize| case.constraints.iter().all(|c| domain(c.0, node).is_some());
            let mut mins = Vec::new();
            let mut counts = Vec::new();
            for (hostname, _, apps, min_domains, ignore) in &case.constraints {
                let mut per_domain: BTreeMap<String, i64> = BTreeMap::new();
                for (node, pods) in seen.iter().enumerate() {
                    if !has_all(node) {
                        continue;
                    }
                    let affinity_ok = match case.node_selector {
                        None => true,
                        Some(z) => case.zones[node] == Some(z),
                    };
                    if !*ignore && !affinity_ok {
                        continue;
                    }
                    let matching = pods
                        .iter()
                        .filter(|(a, ns, term)| !term && ns == "ns" && apps.contains(a))
                        .count() as i64;
                    *per_domain
                        .entry(domain(*hostname, node).unwrap())
                        .or_default() += matching;
                }
                let min = if (per_domain.len() as i64) < i64::from(min_domains.unwrap_or(1)) {
                    0
                } else {
                    per_domain
                        .values()
                        .copied()
                        .min()
                        .unwrap_or(i64::from(i32::MAX))
                };
                mins.push(min);
                counts.push(per_domain);
            }
            (0..case.zones.len())
                .map(|node| {
                    for (i, (hostname, max_skew, apps, _, _)) in case.constraints.iter().enumerate()
                    {
                        let Some(d) = domain(*hostname, node) else {
                            return Code::UnschedulableAndUnresolvable;
                        };
                        let self_match = i64::from(apps.contains(&case.app));
                        let matched = counts[i].get(&d).copied().unwrap_or(0);
                        if matched + self_match - mins[i] > i64::from(*max_skew) {
                            return Code::Unschedulable;
                        }
                    }
                    Code::Success
                })
                .collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1024))]

            /// Filter after PreFilter agrees with a naive scan of all pods.
            #[test]
            fn filter_matches_naive_reference(case in arb_case()) {
                let (nodes, seen, pod) = build(&case);
                let got = codes(&filter_all(&pod, &nodes));
                prop_assert_eq!(got, reference(&case, &seen));
            }

            /// One plugin reused over cycles of a changing cluster (pods added and removed,
            /// zones relabelled; each changed node a new `Arc`, the others kept, as the cache
            /// does), with what-if cycles over a copy with one node replaced (as preemption
            /// does), agrees with the naive scan every cycle.
            #[test]
            fn reused_plugin_matches_naive_reference(
                case in arb_case(),
                rounds in proptest::collection::vec(
                    (
                        proptest::collection::vec(
                            (0..4_u8, 0..8_usize, 0..3_usize, 0..4_usize, any::<bool>()),
                            0..4,
                        ),
                        proptest::option::weighted(0.3, 0..8_usize),
                    ),
                    1..=5,
                ),
            ) {
                let mut case = case;
                let (mut nodes, mut seen, mut pods, pod) = build_with_pods(&case);
                let profile = profile();
                for (round, (mutations, what_if)) in rounds.iter().enumerate() {
                    let got = codes(&filter_with(&profile, &pod, &nodes));
                    prop_assert_eq!(got, reference(&case, &seen));
                    if let Some(n) = what_if {
                        // A copy without the node's first pod, then the cluster as it was.
                        let n = n % nodes.len();
                        let mut copy = nodes.clone();
                        let mut copy_seen = seen.clone();
                        let mut info = (*nodes[n]).clone();
                        if let Some(victim) = pods[n].first() {
                            info.remove_pod(victim);
                            copy_seen[n].remove(0);
                        }
                        copy[n] = Arc::new(info);
                        let got = codes(&filter_with(&profile, &pod, &copy));
                        prop_assert_eq!(got, reference(&case, &copy_seen));
                        let got = codes(&filter_with(&profile, &pod, &nodes));
                        prop_assert_eq!(got, reference(&case, &seen));
                    }
                    for (k, (kind, n, a, ns, term)) in mutations.iter().enumerate() {
                        let n = n % nodes.len();
                        let mut info = (*nodes[n]).clone();
                        match kind {
                            0 | 1 => {
                                let (added, seen_as) =
                                    existing(&format!("r{round}m{k}"), *a, *ns, *term);
                                info.add_pod(&added);
                                seen[n].push(seen_as);
                                pods[n].push(added);
                            }
                            2 => {
                                if !pods[n].is_empty() {
                                    let j = a % pods[n].len();
                                    prop_assert!(info.remove_pod(&pods[n][j]));
                                    pods[n].remove(j);
                                    seen[n].remove(j);
                                }
                            }
                            _ => {
                                case.zones[n] = if *ns == 3 { None } else { Some(*a) };
                                info.set_node(node_of(&case, n).node_arc().clone());
                            }
                        }
                        nodes[n] = Arc::new(info);
                    }
                }
                let got = codes(&filter_with(&profile, &pod, &nodes));
                prop_assert_eq!(got, reference(&case, &seen));
            }
        }
    }
}
