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
//! A selector that is one `key=value` requirement (a single `matchLabels` pair, or `In` with one
//! value) is answered from the node's label index ([`NodeInfo::count_pods_with_label`]) without
//! looking at the pods, so PreFilter costs a few map lookups per node. Other selectors scan the
//! node's pods, skipping those being deleted (with a `deletionTimestamp`), as Kubernetes does.
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
//! - The label index counts terminating pods, so a one-label selector counts pods being deleted
//!   that Kubernetes skips; other selectors skip them.
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
//! let plugin = Arc::new(PodTopologySpread);
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
use std::sync::Arc;

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
            PodCounter::Label { key, value } => node.count_pods_with_label(namespace, key, value),
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
}

/// PreFilter's tally of one constraint's domains, per node for as long as every node's value is
/// its name.
enum Tally {
    /// The node indexes and counts of the nodes the constraint counts.
    PerNode(Vec<(usize, i64)>),
    ByValue(BTreeMap<String, i64>),
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

/// Filters out nodes where the pod would break one of its `DoNotSchedule` topology spread
/// constraints and scores nodes by its `ScheduleAnyway` constraints, emptier domains first
/// (kube-scheduler's PodTopologySpread; default score weight 2). See the
/// [module documentation](self) for the semantics and the differences from Kubernetes.
#[derive(Clone, Copy, Debug, Default)]
pub struct PodTopologySpread;

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
        let mut tallies: Vec<Tally> = constraints
            .iter()
            .map(|_| Tally::PerNode(Vec::new()))
            .collect();
        let mut values = Vec::with_capacity(constraints.len());
        for (index, info) in nodes.iter().enumerate() {
            let node = info.node();
            if !topology_values(node_labels(node), &constraints, &mut values) {
                continue;
            }
            let mut verdict = NodeVerdict::default();
            for ((constraint, tally), &value) in
                constraints.iter().zip(tallies.iter_mut()).zip(&values)
            {
                if let Tally::PerNode(counted) = tally
                    && value != info.name()
                {
                    let mut counts = BTreeMap::new();
                    for (earlier, count) in counted.iter() {
                        if let Some(earlier) = nodes.get(*earlier) {
                            add_to_domain(&mut counts, earlier.name(), *count);
                        }
                    }
                    *tally = Tally::ByValue(counts);
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
        let pod_labels = pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS);
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
                let min_match =
                    if i64::try_from(domains).unwrap_or(i64::MAX) < constraint.min_domains {
                        0
                    } else {
                        // No domain at all (only with minDomains < 1): Kubernetes' critical path
                        // starts at MaxInt32.
                        min.unwrap_or(i64::from(i32::MAX))
                    };
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
        let plugin = Arc::new(PodTopologySpread);
        Profile::new("spread")
            .with_pre_filter(plugin.clone())
            .with_filter(plugin.clone())
            .with_pre_score(plugin.clone())
            .with_score(plugin, 1)
    }

    /// The Filter status of each node, after PreFilter over all of them.
    fn filter_all(pod: &Pod, nodes: &[Arc<NodeInfo>]) -> Vec<Status> {
        let profile = profile();
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
        let plugin = PodTopologySpread;
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
        let plugin = PodTopologySpread;
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
        let plugin = PodTopologySpread;
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

        /// Whether the label index answers some constraint (which counts terminating pods).
        fn uses_label_index(case: &Case) -> bool {
            case.constraints
                .iter()
                .any(|c| c.2.iter().collect::<std::collections::BTreeSet<_>>().len() == 1)
        }

        fn build(case: &Case) -> (Vec<Arc<NodeInfo>>, Seen, Pod) {
            let terminating_allowed = !uses_label_index(case);
            let mut infos: Vec<NodeInfo> = case
                .zones
                .iter()
                .enumerate()
                .map(|(i, z)| {
                    let name = format!("n{i}");
                    let mut labels = json!({LABEL_HOSTNAME: host_label(case, i)});
                    if let Some(z) = z {
                        labels[ZONE] = json!(zone(*z));
                    }
                    node(json!({"metadata": {"name": name, "labels": labels}}))
                })
                .collect();
            // What the reference sees: per node, (app, namespace, terminating).
            let mut seen: Seen = vec![Vec::new(); infos.len()];
            for (k, (n, a, ns, term)) in case.pods.iter().enumerate() {
                let n = n % infos.len();
                let namespace = if *ns == 0 { "other" } else { "ns" };
                let term = *term && terminating_allowed;
                let mut metadata = json!({
                    "name": format!("p{k}"), "namespace": namespace, "labels": {"app": app(*a)}
                });
                if term {
                    metadata["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
                }
                let pod: Pod = serde_json::from_value(
                    json!({"metadata": metadata, "spec": {"containers": []}}),
                )
                .unwrap();
                infos[n].add_pod(&pod);
                seen[n].push((*a, namespace.to_owned(), term));
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
            (infos.into_iter().map(Arc::new).collect(), seen, pod)
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
        }
    }
}
