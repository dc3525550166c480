//! InterPodAffinity: a pod's required pod affinity and anti-affinity, and the required
//! anti-affinity of the pods already running, decide which nodes it may go on; preferred terms
//! (its own and those of the running pods) score nodes.
//!
//! Pod affinity is about *topology domains*, not nodes: a term names a `topologyKey` (such as
//! `kubernetes.io/hostname` or `topology.kubernetes.io/zone`), and a node's domain is its value
//! of that label. This is kube-scheduler's `interpodaffinity` plugin, with its semantics:
//!
//! - **Required affinity**: for every term, the node must have the topology label, and its
//!   domain must hold a pod that matches *all* the pod's affinity terms. Exception, so that the
//!   first pod of a group with affinity to itself can start: when no pod anywhere matches the
//!   terms and the pod matches its own terms, any node with all the topology labels will do.
//!   Otherwise the node is rejected with `node(s) didn't match pod affinity rules`
//!   ([`Code::UnschedulableAndUnresolvable`](crate::scheduler::framework::Code::UnschedulableAndUnresolvable): evicting pods would not help).
//! - **Required anti-affinity**: for no term may the node's domain hold a pod that matches it
//!   (`node(s) didn't match pod anti-affinity rules`, [`Code::Unschedulable`](crate::scheduler::framework::Code::Unschedulable)).
//! - **Existing pods' required anti-affinity**: the node must not be in the domain of a running
//!   pod whose anti-affinity term matches the incoming pod (`node(s) didn't satisfy existing pods
//!   anti-affinity rules`, [`Code::Unschedulable`](crate::scheduler::framework::Code::Unschedulable)).
//! - **Scoring**: each preferred affinity term of the pod adds its weight to the domain of every
//!   running pod that matches it, each preferred anti-affinity term subtracts it; each running
//!   pod's preferred affinity (anti-affinity) terms that match the incoming pod add (subtract)
//!   their weight in that pod's domain, and its required affinity terms add
//!   [`InterPodAffinity::hard_pod_affinity_weight`]. A node scores the sum over the domains it is
//!   in, and the scores are scaled so that the lowest becomes 0 and the highest
//!   [`MAX_NODE_SCORE`].
//!
//! A term selects pods by `labelSelector` (absent: no pod; empty: every pod) in its namespaces:
//! those listed in `namespaces`, plus those its `namespaceSelector` selects; with neither, the
//! namespace of the pod that has the term.
//!
//! # Performance
//!
//! The plugin keeps an index of the cluster across cycles, behind a lock: the required
//! anti-affinity [groups](crate::scheduler::node_info::AntiAffinityGroup) of running pods (pods
//! with the same namespace and terms) with how many pods of each every node holds, the nodes
//! holding pods with each label (by namespace, key and value), and the nodes holding pods whose
//! terms can score (required affinity, preferred affinity or anti-affinity). PreFilter and
//! PreScore first bring it up to the nodes they are given: a node whose [`Arc`] is the one
//! indexed last time is unchanged (a snapshot replaces the `Arc` of a node that changes); a
//! changed node's old contributions are taken out and its new ones put in; when nodes were added,
//! removed or reordered, the index is rebuilt. So a cycle costs what changed, not the cluster:
//!
//! - running pods' anti-affinity is checked once per group over the cluster, and counted only on
//!   the nodes holding the matching groups;
//! - a term of the incoming pod whose selector is one `matchLabels` pair (and that has no
//!   `namespaceSelector`) visits only the nodes holding pods with that label; other selectors
//!   look at the pods of every node (with the topology label);
//! - PreScore looks at the running pods of the nodes holding pods with scoring terms only.
//!
//! Filter and Score look the node's domains up in the maps PreFilter and PreScore built, and
//! allocate nothing.
//!
//! # Known gaps
//!
//! - The scheduler has no Namespace objects here, so a `namespaceSelector` is matched against
//!   the one label every namespace carries, `kubernetes.io/metadata.name` (its name): an empty
//!   selector (`{}`) selects every namespace, `kubernetes.io/metadata.name in (a,b)` selects `a`
//!   and `b`, and requirements on other labels are evaluated as if namespaces had no other
//!   labels (so `team=x` selects none). List namespaces in `namespaces` to be exact.
//! - `matchLabelKeys` and `mismatchLabelKeys` are not read: since Kubernetes 1.31 the API server
//!   merges them into `labelSelector` when the pod is created.
//! - There are no PreFilter extensions (`AddPod`/`RemovePod`), which Kubernetes' preemption
//!   uses to re-run the filter with victims removed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::api::core::v1::{Affinity, Pod, PodAffinityTerm, WeightedPodAffinityTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::scheduler::framework::{
    CycleState, FilterPlugin, MAX_NODE_SCORE, NodeScore, Plugin, PreFilterPlugin, PreScorePlugin,
    ScorePlugin, Status,
};
use crate::scheduler::node_info::{NodeInfo, has_pod_affinity};
use crate::selector::{LabelSelectorError, LabelSource, Selector};

/// The plugin's name.
pub const NAME: &str = "InterPodAffinity";
/// The reason given for a node that does not satisfy the pod's required affinity (Kubernetes'
/// `ErrReasonAffinityRulesNotMatch`).
pub const ERR_REASON_AFFINITY_RULES_NOT_MATCH: &str = "node(s) didn't match pod affinity rules";
/// The reason given for a node that breaks the pod's required anti-affinity (Kubernetes'
/// `ErrReasonAntiAffinityRulesNotMatch`).
pub const ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH: &str =
    "node(s) didn't match pod anti-affinity rules";
/// The reason given for a node where a running pod's required anti-affinity forbids the pod
/// (Kubernetes' `ErrReasonExistingAntiAffinityRulesNotMatch`).
pub const ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";
/// Kubernetes' default `hardPodAffinityWeight`: what a running pod's required affinity term
/// that matches the incoming pod adds to the score of its domain.
pub const DEFAULT_HARD_POD_AFFINITY_WEIGHT: i32 = 1;
/// The label Kubernetes gives every namespace, with the namespace's name as its value: the one
/// namespace label a `namespaceSelector` is matched against here.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
const PRE_FILTER_KEY: &str = "PreFilterInterPodAffinity";
const PRE_SCORE_KEY: &str = "PreScoreInterPodAffinity";

/// The labels of a pod, as a [`LabelSource`] (none when it has no labels).
struct PodLabels<'a>(Option<&'a BTreeMap<String, String>>);

impl<'a> PodLabels<'a> {
    fn of(pod: &'a Pod) -> PodLabels<'a> {
        PodLabels(pod.metadata.labels.as_ref())
    }
}

impl LabelSource for PodLabels<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        self.0?.get(key).map(String::as_str)
    }
}

/// The labels of a namespace as far as the scheduler knows them: its name under
/// [`NAMESPACE_NAME_LABEL`].
struct NamespaceLabels<'a>(&'a str);

impl LabelSource for NamespaceLabels<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        (key == NAMESPACE_NAME_LABEL).then_some(self.0)
    }
}

fn namespace_of(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("")
}

fn node_label<'a>(node: &'a NodeInfo, key: &str) -> Option<&'a str> {
    node.node()
        .metadata
        .labels
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn affinity_of(pod: &Pod) -> Option<&Affinity> {
    pod.spec.as_ref()?.affinity.as_ref()
}

fn required_affinity_terms(pod: &Pod) -> &[PodAffinityTerm] {
    affinity_of(pod)
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or(&[])
}

fn required_anti_affinity_terms(pod: &Pod) -> &[PodAffinityTerm] {
    affinity_of(pod)
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or(&[])
}

fn preferred_affinity_terms(pod: &Pod) -> &[WeightedPodAffinityTerm] {
    affinity_of(pod)
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or(&[])
}

fn preferred_anti_affinity_terms(pod: &Pod) -> &[WeightedPodAffinityTerm] {
    affinity_of(pod)
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or(&[])
}

/// Whether a Kubernetes `LabelSelector` selects `labels`, read in place without building a
/// [`Selector`] (for the terms of running pods, looked at once per cycle each): absent selects
/// nothing, empty everything. An operator other than `In`, `NotIn`, `Exists` and
/// `DoesNotExist`, or values that do not suit the operator, make it select nothing, as
/// Kubernetes drops a term it cannot parse.
fn label_selector_matches(selector: Option<&LabelSelector>, labels: &impl LabelSource) -> bool {
    let Some(selector) = selector else {
        return false;
    };
    selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.label(key) == Some(value.as_str()))
        && selector.match_expressions.iter().flatten().all(|r| {
            let value = labels.label(&r.key);
            let values = r.values.as_deref().unwrap_or(&[]);
            let listed = |v: &str| values.iter().any(|x| x == v);
            match r.operator.as_str() {
                "In" => !values.is_empty() && value.is_some_and(listed),
                "NotIn" => !values.is_empty() && !value.is_some_and(listed),
                "Exists" => values.is_empty() && value.is_some(),
                "DoesNotExist" => values.is_empty() && value.is_none(),
                _ => false,
            }
        })
}

/// Whether `term`, a pod affinity or anti-affinity term of a pod in `owner_namespace`, selects
/// `pod`: the pod is in one of the term's namespaces (those listed, those its
/// `namespaceSelector` selects, or with neither `owner_namespace`) and its labels match the
/// term's `labelSelector` (absent: no pod; empty: every pod). The topology is not looked at.
///
/// The `namespaceSelector` is matched against the namespace's name label
/// ([`NAMESPACE_NAME_LABEL`]) only; see the [module documentation](self).
///
/// # Examples
///
/// ```
/// use orchestra_core::k8s::api::core::v1::{Pod, PodAffinityTerm};
/// use orchestra_core::scheduler::plugins::inter_pod_affinity::pod_matches_affinity_term;
///
/// let term: PodAffinityTerm = serde_json::from_value(serde_json::json!({
///     "topologyKey": "kubernetes.io/hostname",
///     "labelSelector": {"matchLabels": {"app": "db"}}
/// }))?;
/// let pod: Pod = serde_json::from_value(serde_json::json!({
///     "metadata": {"name": "db-0", "namespace": "prod", "labels": {"app": "db"}}
/// }))?;
/// assert!(pod_matches_affinity_term(&term, "prod", &pod));
/// // Without `namespaces` or a `namespaceSelector`, only the owner's namespace counts.
/// assert!(!pod_matches_affinity_term(&term, "dev", &pod));
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn pod_matches_affinity_term(term: &PodAffinityTerm, owner_namespace: &str, pod: &Pod) -> bool {
    let namespace = namespace_of(pod);
    let namespaces = term.namespaces.as_deref().unwrap_or(&[]);
    let in_namespace = if namespaces.is_empty() && term.namespace_selector.is_none() {
        namespace == owner_namespace
    } else {
        namespaces.iter().any(|n| n == namespace)
            || label_selector_matches(
                term.namespace_selector.as_ref(),
                &NamespaceLabels(namespace),
            )
    };
    in_namespace && label_selector_matches(term.label_selector.as_ref(), &PodLabels::of(pod))
}

/// A term of the incoming pod, parsed once per cycle (Kubernetes' `framework.AffinityTerm`).
#[derive(Clone, Debug)]
struct AffinityTerm {
    /// The namespaces listed, or the pod's own when there is neither a list nor a selector.
    namespaces: BTreeSet<String>,
    /// The `namespaceSelector`; [`Selector::nothing`] when there is none.
    namespace_selector: Selector,
    /// The `labelSelector`; [`Selector::nothing`] when there is none.
    selector: Selector,
    topology_key: String,
    /// The one label the term requires when its selector is a single `matchLabels` pair and it
    /// has no `namespaceSelector`: matching pods are then counted by label, not looked at.
    single_label: Option<(String, String)>,
}

impl AffinityTerm {
    fn new(
        owner_namespace: &str,
        term: &PodAffinityTerm,
    ) -> Result<AffinityTerm, LabelSelectorError> {
        let selector = Selector::from_label_selector(term.label_selector.as_ref())?;
        let namespace_selector = Selector::from_label_selector(term.namespace_selector.as_ref())?;
        let listed = term.namespaces.as_deref().unwrap_or(&[]);
        let namespaces = if listed.is_empty() && term.namespace_selector.is_none() {
            BTreeSet::from([owner_namespace.to_owned()])
        } else {
            listed.iter().cloned().collect()
        };
        let single_label = match term.label_selector.as_ref() {
            Some(LabelSelector {
                match_labels: Some(labels),
                match_expressions,
            }) if labels.len() == 1
                && match_expressions.as_ref().is_none_or(Vec::is_empty)
                && term.namespace_selector.is_none() =>
            {
                labels.iter().next().map(|(k, v)| (k.clone(), v.clone()))
            }
            _ => None,
        };
        Ok(AffinityTerm {
            namespaces,
            namespace_selector,
            selector,
            topology_key: term.topology_key.clone(),
            single_label,
        })
    }

    fn parse_all(
        pod: &Pod,
        terms: &[PodAffinityTerm],
    ) -> Result<Vec<AffinityTerm>, LabelSelectorError> {
        let namespace = namespace_of(pod);
        terms
            .iter()
            .map(|term| AffinityTerm::new(namespace, term))
            .collect()
    }

    /// Whether `pod` is in one of the term's namespaces and matches its selector.
    fn matches(&self, pod: &Pod) -> bool {
        let namespace = namespace_of(pod);
        (self.namespaces.contains(namespace)
            || self.namespace_selector.matches(&NamespaceLabels(namespace)))
            && self.selector.matches(&PodLabels::of(pod))
    }

    /// How many pods of `node` the term matches, counted by label: only for terms with
    /// [`AffinityTerm::single_label`].
    fn count_by_label(&self, node: &NodeInfo) -> Option<usize> {
        let (key, value) = self.single_label.as_ref()?;
        Some(
            self.namespaces
                .iter()
                .map(|namespace| node.count_pods_with_label(namespace, key, value))
                .sum(),
        )
    }
}

/// The Fx hash (rustc's): fast on the short label values [`TopologyMap`] holds, and the same in
/// every run. Only for maps that are looked up, never iterated.
#[derive(Clone, Copy, Debug, Default)]
struct FxHasher {
    hash: u64,
}

impl FxHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FxHasher::SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

/// Numbers by topology pair (topology key, then the domain's value), looked up without
/// allocating (Kubernetes' `topologyToMatchedTermCount` and `scoreMap`).
///
/// The few topology keys are a [`BTreeMap`], iterated in order; the values of a key (one per
/// node for `kubernetes.io/hostname`) are a [`HashMap`] of the values interned by the
/// [`ClusterIndex`] (so adding a pair allocates no string), which is only ever looked up, never
/// iterated, so results do not depend on its order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct TopologyMap {
    pairs: BTreeMap<String, HashMap<Arc<str>, i64, BuildHasherDefault<FxHasher>>>,
}

impl TopologyMap {
    fn add(&mut self, key: &str, value: &Arc<str>, n: i64) {
        match self.pairs.get_mut(key) {
            Some(values) => match values.get_mut(&**value) {
                Some(total) => *total = total.saturating_add(n),
                None => {
                    values.insert(Arc::clone(value), n);
                }
            },
            None => {
                let mut values = HashMap::default();
                values.insert(Arc::clone(value), n);
                self.pairs.insert(key.to_owned(), values);
            }
        }
    }

    fn get(&self, key: &str, value: &str) -> i64 {
        self.pairs
            .get(key)
            .and_then(|values| values.get(value))
            .copied()
            .unwrap_or(0)
    }

    /// Makes room for `n` more values of `key`.
    fn reserve(&mut self, key: &str, n: usize) {
        match self.pairs.get_mut(key) {
            Some(values) => values.reserve(n),
            None => {
                let mut values = HashMap::default();
                values.reserve(n);
                self.pairs.insert(key.to_owned(), values);
            }
        }
    }

    /// Whether it holds no pair (a key made room for by [`TopologyMap::reserve`] holds none).
    fn is_empty(&self) -> bool {
        self.pairs.values().all(HashMap::is_empty)
    }

    /// The sum over the pairs `node` is in.
    fn sum_for(&self, node: &NodeInfo) -> i64 {
        let Some(labels) = node.node().metadata.labels.as_ref() else {
            return 0;
        };
        self.pairs
            .iter()
            .filter_map(|(key, values)| values.get(labels.get(key)?.as_str()))
            .fold(0, |sum, n| sum.saturating_add(*n))
    }

    /// Whether `node` is in a pair with a positive number.
    fn any_positive_for(&self, node: &NodeInfo) -> bool {
        let Some(labels) = node.node().metadata.labels.as_ref() else {
            return false;
        };
        self.pairs.iter().any(|(key, values)| {
            labels
                .get(key)
                .and_then(|value| values.get(value.as_str()))
                .is_some_and(|n| *n > 0)
        })
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What Filter reads, computed by PreFilter.
#[derive(Debug)]
struct PreFilterState {
    /// The topology keys of the pod's required affinity terms.
    affinity_keys: Vec<String>,
    /// The topology keys of the pod's required anti-affinity terms.
    anti_affinity_keys: Vec<String>,
    /// Pairs by how many pods in them match all the pod's affinity terms (Kubernetes'
    /// `affinityCounts`).
    affinity_counts: TopologyMap,
    /// Pairs by how many pods in them match each anti-affinity term of the pod.
    anti_affinity_counts: TopologyMap,
    /// Pairs by how many running pods there have an anti-affinity term that matches the pod.
    existing_anti_affinity_counts: TopologyMap,
    /// Whether the pod has affinity terms and matches all of them itself.
    matches_own_affinity: bool,
}

/// Whether running pods' terms on `node` can matter for scoring: it holds a pod with required
/// pod affinity or with a preferred pod affinity or anti-affinity term (required anti-affinity
/// alone scores nothing).
fn has_scoring_terms(node: &NodeInfo) -> bool {
    node.pods_with_affinity() > 0
        && node.pods().any(|pod| {
            !required_affinity_terms(pod).is_empty()
                || !preferred_affinity_terms(pod).is_empty()
                || !preferred_anti_affinity_terms(pod).is_empty()
        })
}

/// A group of pods with the same namespace and required anti-affinity terms, over the cluster.
#[derive(Debug)]
struct IndexedGroup {
    /// A pod that has (or had) the group's namespace and terms: any will do, as the key is made
    /// of them.
    pod: Arc<Pod>,
    /// How many pods of the group each node holds, by node index; no zeros.
    nodes: BTreeMap<usize, usize>,
}

/// Node indices by how many of their pods have a label, by namespace, key and value (no zeros).
type LabelIndex = BTreeMap<String, BTreeMap<String, BTreeMap<String, BTreeMap<usize, usize>>>>;

/// What the plugin knows of the cluster across cycles, kept up to date by diffing the nodes it
/// is given against those it indexed (a snapshot replaces the [`Arc`] of a node that changes).
#[derive(Debug, Default)]
struct ClusterIndex {
    /// The nodes indexed, in the order of the slice they came in.
    nodes: Vec<Arc<NodeInfo>>,
    /// Required anti-affinity groups by their key ([`NodeInfo::required_anti_affinity_groups_by_key`]).
    groups: BTreeMap<String, IndexedGroup>,
    /// Pods by label, for the labels asked about since the last rebuild
    /// ([`ClusterIndex::cache_label`]): an entry, once made, covers every node.
    labels: LabelIndex,
    /// The indices of the nodes for which [`has_scoring_terms`] holds.
    scoring_nodes: BTreeSet<usize>,
    /// The labels of each node (by index), values interned for [`TopologyMap`].
    node_labels: Vec<Arc<NodeLabels>>,
    /// For the topology keys asked about since the last rebuild ([`ClusterIndex::cache_column`]),
    /// each node's value, by index: read in one sweep of memory rather than node by node.
    columns: BTreeMap<String, Vec<Option<Arc<str>>>>,
}

/// A node's labels, the values shared.
type NodeLabels = BTreeMap<String, Arc<str>>;

fn interned_labels(node: &NodeInfo) -> Arc<NodeLabels> {
    Arc::new(
        node.node()
            .metadata
            .labels
            .iter()
            .flatten()
            .map(|(key, value)| (key.clone(), Arc::from(value.as_str())))
            .collect(),
    )
}

impl ClusterIndex {
    /// Brings the index up to `nodes`: re-indexes the nodes whose [`Arc`] changed, or everything
    /// when nodes were added, removed or reordered.
    fn sync(&mut self, nodes: &[Arc<NodeInfo>]) {
        if self.nodes.len() != nodes.len() {
            self.rebuild(nodes);
            return;
        }
        for index in 0..nodes.len() {
            let (Some(old), Some(new)) = (self.nodes.get(index), nodes.get(index)) else {
                self.rebuild(nodes);
                return;
            };
            if Arc::ptr_eq(old, new) {
                continue;
            }
            if old.name() != new.name() {
                self.rebuild(nodes);
                return;
            }
            let old = Arc::clone(old);
            self.remove_node(index, &old);
            self.add_node(index, new);
            if !Arc::ptr_eq(old.node_arc(), new.node_arc())
                && let Some(labels) = self.node_labels.get_mut(index)
            {
                *labels = interned_labels(new);
                for (key, column) in &mut self.columns {
                    if let Some(slot) = column.get_mut(index) {
                        *slot = labels.get(key).cloned();
                    }
                }
            }
            if let Some(slot) = self.nodes.get_mut(index) {
                *slot = Arc::clone(new);
            }
        }
    }

    fn rebuild(&mut self, nodes: &[Arc<NodeInfo>]) {
        *self = ClusterIndex::default();
        for (index, node) in nodes.iter().enumerate() {
            self.add_node(index, node);
        }
        self.nodes = nodes.to_vec();
        self.node_labels = nodes.iter().map(|node| interned_labels(node)).collect();
    }

    /// The value of the label `key` of the node at an index, interned: from the column of
    /// `key` if there is one ([`ClusterIndex::cache_column`]).
    fn values_of<'a>(&'a self, key: &'a str) -> impl Fn(usize) -> Option<&'a Arc<str>> + 'a {
        let column = self.columns.get(key);
        move |index| match column {
            Some(column) => column.get(index)?.as_ref(),
            None => self.node_labels.get(index)?.get(key),
        }
    }

    /// Puts the values of the label `key` of every node in a column (once: later changes are
    /// applied as nodes change).
    fn cache_column(&mut self, key: &str) {
        if self.columns.contains_key(key) {
            return;
        }
        let column = self
            .node_labels
            .iter()
            .map(|labels| labels.get(key).cloned())
            .collect();
        self.columns.insert(key.to_owned(), column);
    }

    fn add_node(&mut self, index: usize, node: &NodeInfo) {
        for (key, group) in node.required_anti_affinity_groups_by_key() {
            match self.groups.get_mut(key) {
                Some(indexed) => {
                    indexed.nodes.insert(index, group.count);
                }
                None => {
                    self.groups.insert(
                        key.to_owned(),
                        IndexedGroup {
                            pod: Arc::clone(&group.pod),
                            nodes: BTreeMap::from([(index, group.count)]),
                        },
                    );
                }
            }
        }
        for (namespace, key, value, n) in node.pod_label_counts() {
            if let Some(holders) = self.holders_mut(namespace, key, value) {
                holders.insert(index, n);
            }
        }
        if has_scoring_terms(node) {
            self.scoring_nodes.insert(index);
        }
    }

    /// Takes out what [`ClusterIndex::add_node`] put in for `node` at `index`.
    fn remove_node(&mut self, index: usize, node: &NodeInfo) {
        for (key, _) in node.required_anti_affinity_groups_by_key() {
            if let Some(indexed) = self.groups.get_mut(key) {
                indexed.nodes.remove(&index);
                if indexed.nodes.is_empty() {
                    self.groups.remove(key);
                }
            }
        }
        for (namespace, key, value, _) in node.pod_label_counts() {
            // An entry left empty stays: it still says which nodes hold the label (none).
            if let Some(holders) = self.holders_mut(namespace, key, value) {
                holders.remove(&index);
            }
        }
        self.scoring_nodes.remove(&index);
    }

    /// The nodes holding pods of `namespace` with the label `key=value`, with how many; `None`
    /// when the label is not in the index.
    fn holders(&self, namespace: &str, key: &str, value: &str) -> Option<&BTreeMap<usize, usize>> {
        self.labels.get(namespace)?.get(key)?.get(value)
    }

    fn holders_mut(
        &mut self,
        namespace: &str,
        key: &str,
        value: &str,
    ) -> Option<&mut BTreeMap<usize, usize>> {
        self.labels.get_mut(namespace)?.get_mut(key)?.get_mut(value)
    }

    /// Puts the label `key=value` of pods in `namespace` in the index (once: later changes are
    /// applied as nodes change), by asking every node.
    fn cache_label(&mut self, namespace: &str, key: &str, value: &str) {
        if self.holders(namespace, key, value).is_some() {
            return;
        }
        let holders: BTreeMap<usize, usize> = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(index, node)| {
                let n = node.count_pods_with_label(namespace, key, value);
                (n > 0).then_some((index, n))
            })
            .collect();
        self.labels
            .entry(namespace.to_owned())
            .or_default()
            .entry(key.to_owned())
            .or_default()
            .insert(value.to_owned(), holders);
    }

    /// Puts the labels of the terms counted by label, and the topology keys of all the terms,
    /// in the index.
    fn cache_labels<'a>(&mut self, terms: impl IntoIterator<Item = &'a AffinityTerm>) {
        for term in terms {
            self.cache_column(&term.topology_key);
            if let Some((key, value)) = &term.single_label {
                for namespace in &term.namespaces {
                    self.cache_label(namespace, key, value);
                }
            }
        }
    }

    /// For a term with [`AffinityTerm::single_label`], the nodes holding pods it matches, with
    /// how many: one map per namespace of the term (a node may be in several); `None` for other
    /// terms, and for labels not in the index ([`ClusterIndex::cache_labels`]).
    fn label_holders(&self, term: &AffinityTerm) -> Option<Vec<&BTreeMap<usize, usize>>> {
        let (key, value) = term.single_label.as_ref()?;
        term.namespaces
            .iter()
            .map(|namespace| self.holders(namespace, key, value))
            .collect()
    }

    /// Adds `weight` times the number of pods `term` matches on each node to the node's domain,
    /// looking at the pods of every node with the topology label unless the term is counted by
    /// label.
    fn add_matching(&self, term: &AffinityTerm, weight: i64, counts: &mut TopologyMap) {
        let values = self.values_of(&term.topology_key);
        match self.label_holders(term) {
            Some(holders) => {
                let total = holders.iter().map(|holders| holders.len()).sum();
                if total > 0 {
                    counts.reserve(&term.topology_key, total);
                }
                for (index, n) in holders.into_iter().flatten() {
                    if *n > 0
                        && let Some(value) = values(*index)
                    {
                        counts.add(&term.topology_key, value, weight.saturating_mul(count(*n)));
                    }
                }
            }
            None => {
                for (index, node) in self.nodes.iter().enumerate() {
                    if node.pod_count() == 0 {
                        continue;
                    }
                    let Some(value) = values(index) else {
                        continue;
                    };
                    let matching = node.pods().filter(|p| term.matches(p)).count();
                    if matching > 0 {
                        counts.add(
                            &term.topology_key,
                            value,
                            weight.saturating_mul(count(matching)),
                        );
                    }
                }
            }
        }
    }

    /// Kubernetes' `getTPMapMatchingExistingAntiAffinity`: the pairs where a running pod's
    /// required anti-affinity term matches `pod`, one check per group of pods with the same
    /// namespace and terms over the cluster.
    fn existing_anti_affinity_counts(&mut self, pod: &Pod) -> TopologyMap {
        let mut keys: BTreeSet<&str> = BTreeSet::new();
        for group in self.groups.values() {
            let owner_namespace = namespace_of(&group.pod);
            for term in required_anti_affinity_terms(&group.pod) {
                if !self.columns.contains_key(&term.topology_key)
                    && pod_matches_affinity_term(term, owner_namespace, pod)
                {
                    keys.insert(&term.topology_key);
                }
            }
        }
        let keys: Vec<String> = keys.into_iter().map(str::to_owned).collect();
        for key in &keys {
            self.cache_column(key);
        }
        let mut counts = TopologyMap::default();
        for group in self.groups.values() {
            let owner_namespace = namespace_of(&group.pod);
            for term in required_anti_affinity_terms(&group.pod) {
                if !pod_matches_affinity_term(term, owner_namespace, pod) {
                    continue;
                }
                let values = self.values_of(&term.topology_key);
                for (index, n) in &group.nodes {
                    if let Some(value) = values(*index) {
                        counts.add(&term.topology_key, value, count(*n));
                    }
                }
            }
        }
        counts
    }

    /// Kubernetes' `getTPMapMatchingIncomingAffinityAntiAffinity`: the pairs holding pods that
    /// match all of `affinity` (each term counts in its own topology), and those holding pods
    /// that match each term of `anti_affinity`.
    fn incoming_counts(
        &self,
        affinity: &[AffinityTerm],
        anti_affinity: &[AffinityTerm],
    ) -> (TopologyMap, TopologyMap) {
        let mut affinity_counts = TopologyMap::default();
        let mut anti_affinity_counts = TopologyMap::default();
        if !affinity.is_empty() {
            let mut visit = |index: usize| {
                if let (Some(node), Some(labels)) =
                    (self.nodes.get(index), self.node_labels.get(index))
                {
                    affinity_counts_of_node(affinity, node, labels, &mut affinity_counts);
                }
            };
            // A pod matching all the terms matches any term counted by label: only the nodes
            // holding pods with that label can count.
            match affinity.iter().find_map(|term| self.label_holders(term)) {
                Some(holders) => match holders.as_slice() {
                    [] => {}
                    [holders] => holders.keys().for_each(|index| visit(*index)),
                    _ => holders
                        .iter()
                        .flat_map(|holders| holders.keys().copied())
                        .collect::<BTreeSet<usize>>()
                        .into_iter()
                        .for_each(visit),
                },
                None => (0..self.nodes.len()).for_each(visit),
            }
        }
        for term in anti_affinity {
            self.add_matching(term, 1, &mut anti_affinity_counts);
        }
        (affinity_counts, anti_affinity_counts)
    }
}

/// Adds to `counts` the pods of `node` (with the interned `labels`) that match all of
/// `affinity`, in each term's topology.
fn affinity_counts_of_node(
    affinity: &[AffinityTerm],
    node: &NodeInfo,
    labels: &NodeLabels,
    counts: &mut TopologyMap,
) {
    if node.pod_count() == 0
        || !affinity
            .iter()
            .any(|term| labels.contains_key(&term.topology_key))
    {
        return;
    }
    // A term counted by label with no match here means no pod matches them all.
    if !affinity
        .iter()
        .all(|term| term.count_by_label(node) != Some(0))
    {
        return;
    }
    let matching = match affinity {
        [term] if term.single_label.is_some() => term.count_by_label(node).unwrap_or(0),
        _ => node
            .pods()
            .filter(|p| affinity.iter().all(|term| term.matches(p)))
            .count(),
    };
    if matching > 0 {
        for term in affinity {
            if let Some(value) = labels.get(&term.topology_key) {
                counts.add(&term.topology_key, value, count(matching));
            }
        }
    }
}

/// Kubernetes' `satisfyPodAffinity`.
fn satisfies_pod_affinity(state: &PreFilterState, node: &NodeInfo) -> bool {
    let mut pods_exist = true;
    for key in &state.affinity_keys {
        let Some(value) = node_label(node, key) else {
            // Every topology label must be on the node.
            return false;
        };
        if state.affinity_counts.get(key, value) <= 0 {
            pods_exist = false;
        }
    }
    // The first pod of a group with affinity to itself may go anywhere with the topologies.
    pods_exist || (state.affinity_counts.is_empty() && state.matches_own_affinity)
}

/// Kubernetes' `satisfyPodAntiAffinity`.
fn satisfies_pod_anti_affinity(state: &PreFilterState, node: &NodeInfo) -> bool {
    state.anti_affinity_keys.iter().all(|key| {
        node_label(node, key).is_none_or(|value| state.anti_affinity_counts.get(key, value) <= 0)
    })
}

/// What Score reads, computed by PreScore: the score of each topology pair.
#[derive(Debug)]
struct PreScoreState {
    scores: TopologyMap,
}

/// Filters out nodes where the pod's required pod affinity or anti-affinity, or a running pod's
/// required anti-affinity, would not hold, and scores nodes by preferred pod affinity and
/// anti-affinity (kube-scheduler's InterPodAffinity plugin; default score weight 2). See the
/// [module documentation](self) for the rules, the reasons and the known gaps.
///
/// PreFilter returns [`Code::Skip`] when the pod has no required terms and no running pod's
/// required anti-affinity matches it; PreScore returns it when no preferred term (and no running
/// pod's required affinity) applies.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
///
/// use orchestra_core::k8s::api::core::v1::{Node, Pod};
/// use orchestra_core::scheduler::framework::{CycleState, Profile};
/// use orchestra_core::scheduler::node_info::NodeInfo;
/// use orchestra_core::scheduler::plugins::inter_pod_affinity::{
///     ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH, InterPodAffinity,
/// };
///
/// let web = |name: &str| -> Result<Pod, serde_json::Error> {
///     serde_json::from_value(serde_json::json!({
///         "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
///         "spec": {"containers": [], "affinity": {"podAntiAffinity": {
///             "requiredDuringSchedulingIgnoredDuringExecution": [{
///                 "topologyKey": "kubernetes.io/hostname",
///                 "labelSelector": {"matchLabels": {"app": "web"}}
///             }]
///         }}}
///     }))
/// };
/// let node = |name: &str| -> Result<NodeInfo, serde_json::Error> {
///     let node: Node = serde_json::from_value(serde_json::json!({
///         "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}
///     }))?;
///     Ok(NodeInfo::new(Arc::new(node)))
/// };
/// let mut busy = node("busy")?;
/// busy.add_pod(&web("web-0")?);
/// let nodes = [Arc::new(busy), Arc::new(node("free")?)];
///
/// let plugin = Arc::new(InterPodAffinity::default());
/// let profile = Profile::new("p").with_pre_filter(plugin.clone()).with_filter(plugin);
/// let pod = web("web-1")?;
/// let mut state = CycleState::new();
/// assert!(profile.run_pre_filter(&mut state, &pod, &nodes).is_success());
/// let status = profile.run_filter(&state, &pod, &nodes[0]);
/// assert_eq!(status.reasons, [ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH]);
/// assert!(profile.run_filter(&state, &pod, &nodes[1]).is_success());
/// # Ok::<(), serde_json::Error>(())
/// ```
///
/// [`Code::Skip`]: crate::scheduler::framework::Code::Skip
#[derive(Debug)]
pub struct InterPodAffinity {
    /// What a running pod's required affinity term that matches the incoming pod adds to the
    /// score of the running pod's domain (Kubernetes' `hardPodAffinityWeight`, `0..=100`,
    /// default [`DEFAULT_HARD_POD_AFFINITY_WEIGHT`]); 0 ignores those terms in scoring.
    pub hard_pod_affinity_weight: i32,
    /// Whether to leave running pods' preferred terms out of scoring when the incoming pod has
    /// no preferred terms itself (Kubernetes' `ignorePreferredTermsOfExistingPods`, default
    /// false).
    pub ignore_preferred_terms_of_existing_pods: bool,
    /// The cluster as of the last cycle, updated incrementally (see the
    /// [module documentation](self)).
    index: Mutex<ClusterIndex>,
}

impl Default for InterPodAffinity {
    fn default() -> InterPodAffinity {
        InterPodAffinity::new(DEFAULT_HARD_POD_AFFINITY_WEIGHT, false)
    }
}

/// A copy has the same settings and builds its own index.
impl Clone for InterPodAffinity {
    fn clone(&self) -> InterPodAffinity {
        InterPodAffinity::new(
            self.hard_pod_affinity_weight,
            self.ignore_preferred_terms_of_existing_pods,
        )
    }
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl InterPodAffinity {
    /// The plugin with these settings ([`InterPodAffinity::hard_pod_affinity_weight`] and
    /// [`InterPodAffinity::ignore_preferred_terms_of_existing_pods`]).
    pub fn new(
        hard_pod_affinity_weight: i32,
        ignore_preferred_terms_of_existing_pods: bool,
    ) -> InterPodAffinity {
        InterPodAffinity {
            hard_pod_affinity_weight,
            ignore_preferred_terms_of_existing_pods,
            index: Mutex::new(ClusterIndex::default()),
        }
    }

    /// The index, brought up to `nodes`. A lock poisoned by a panic is recovered with an index
    /// rebuilt from scratch.
    fn index_of(&self, nodes: &[Arc<NodeInfo>]) -> MutexGuard<'_, ClusterIndex> {
        let mut index = match self.index.lock() {
            Ok(index) => index,
            Err(poisoned) => {
                self.index.clear_poison();
                let mut index = poisoned.into_inner();
                *index = ClusterIndex::default();
                index
            }
        };
        index.sync(nodes);
        index
    }
}

impl PreFilterPlugin for InterPodAffinity {
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, nodes: &[Arc<NodeInfo>]) -> Status {
        let parsed =
            AffinityTerm::parse_all(pod, required_affinity_terms(pod)).and_then(|affinity| {
                Ok((
                    affinity,
                    AffinityTerm::parse_all(pod, required_anti_affinity_terms(pod))?,
                ))
            });
        let (affinity, anti_affinity) = match parsed {
            Ok(terms) => terms,
            Err(error) => {
                return Status::error(NAME, format!("parsing pod affinity terms: {error}"));
            }
        };
        let mut index = self.index_of(nodes);
        index.cache_labels(affinity.iter().chain(&anti_affinity));
        let existing_anti_affinity_counts = index.existing_anti_affinity_counts(pod);
        if affinity.is_empty()
            && anti_affinity.is_empty()
            && existing_anti_affinity_counts.is_empty()
        {
            return Status::skip(NAME);
        }
        let (affinity_counts, anti_affinity_counts) =
            index.incoming_counts(&affinity, &anti_affinity);
        drop(index);
        let matches_own_affinity =
            !affinity.is_empty() && affinity.iter().all(|term| term.matches(pod));
        state.write(
            PRE_FILTER_KEY,
            PreFilterState {
                affinity_keys: affinity.into_iter().map(|t| t.topology_key).collect(),
                anti_affinity_keys: anti_affinity.into_iter().map(|t| t.topology_key).collect(),
                affinity_counts,
                anti_affinity_counts,
                existing_anti_affinity_counts,
                matches_own_affinity,
            },
        );
        Status::SUCCESS
    }
}

impl FilterPlugin for InterPodAffinity {
    fn filter(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Status {
        let state = match state.read_or_error::<PreFilterState>(PRE_FILTER_KEY, NAME) {
            Ok(state) => state,
            Err(status) => return status,
        };
        if !satisfies_pod_affinity(state, node) {
            return Status::unresolvable(NAME, ERR_REASON_AFFINITY_RULES_NOT_MATCH);
        }
        if !satisfies_pod_anti_affinity(state, node) {
            return Status::unschedulable(NAME, ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH);
        }
        if state.existing_anti_affinity_counts.any_positive_for(node) {
            return Status::unschedulable(NAME, ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH);
        }
        Status::SUCCESS
    }
}

impl InterPodAffinity {
    /// Kubernetes' `processExistingPod`, for the terms of the running pod `existing` (on a
    /// node whose labels are `labels`) towards the incoming `pod`.
    fn score_existing_pod_terms(
        &self,
        scores: &mut TopologyMap,
        existing: &Pod,
        labels: &NodeLabels,
        pod: &Pod,
    ) {
        let owner_namespace = namespace_of(existing);
        let mut add = |term: &PodAffinityTerm, weight: i64| {
            if let Some(value) = labels.get(&term.topology_key)
                && pod_matches_affinity_term(term, owner_namespace, pod)
            {
                scores.add(&term.topology_key, value, weight);
            }
        };
        if self.hard_pod_affinity_weight > 0 {
            for term in required_affinity_terms(existing) {
                add(term, i64::from(self.hard_pod_affinity_weight));
            }
        }
        for term in preferred_affinity_terms(existing) {
            add(&term.pod_affinity_term, i64::from(term.weight));
        }
        for term in preferred_anti_affinity_terms(existing) {
            add(&term.pod_affinity_term, -i64::from(term.weight));
        }
    }
}

impl PreScorePlugin for InterPodAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        _feasible: &[&NodeInfo],
        all: &[Arc<NodeInfo>],
    ) -> Status {
        let parse = |terms: &[WeightedPodAffinityTerm], sign: i64| {
            let namespace = namespace_of(pod);
            terms
                .iter()
                .map(|term| {
                    Ok((
                        AffinityTerm::new(namespace, &term.pod_affinity_term)?,
                        sign * i64::from(term.weight),
                    ))
                })
                .collect::<Result<Vec<_>, LabelSelectorError>>()
        };
        let terms = parse(preferred_affinity_terms(pod), 1).and_then(|mut terms| {
            terms.extend(parse(preferred_anti_affinity_terms(pod), -1)?);
            Ok(terms)
        });
        let terms = match terms {
            Ok(terms) => terms,
            Err(error) => {
                return Status::error(NAME, format!("parsing pod affinity terms: {error}"));
            }
        };
        if self.ignore_preferred_terms_of_existing_pods && terms.is_empty() {
            return Status::skip(NAME);
        }
        let mut index = self.index_of(all);
        index.cache_labels(terms.iter().map(|(term, _)| term));
        let mut scores = TopologyMap::default();
        // Terms counted by label visit only the nodes holding pods with the label.
        for (term, weight) in &terms {
            if term.single_label.is_some() {
                index.add_matching(term, *weight, &mut scores);
            }
        }
        // Terms that must look at every pod (those not counted by label).
        let scanned: Vec<&(AffinityTerm, i64)> = terms
            .iter()
            .filter(|(term, _)| term.single_label.is_none())
            .collect();
        let mut score_node = |i: usize| {
            let (Some(node), Some(labels)) = (index.nodes.get(i), index.node_labels.get(i)) else {
                return;
            };
            if labels.is_empty() || node.pod_count() == 0 {
                return;
            }
            if scanned.is_empty() && node.pods_with_affinity() == 0 {
                return;
            }
            for existing in node.pods() {
                for (term, weight) in &scanned {
                    if let Some(value) = labels.get(&term.topology_key)
                        && term.matches(existing)
                    {
                        scores.add(&term.topology_key, value, *weight);
                    }
                }
                if has_pod_affinity(existing) {
                    self.score_existing_pod_terms(&mut scores, existing, labels, pod);
                }
            }
        };
        if scanned.is_empty() {
            // Only nodes with running pods whose terms can score.
            index.scoring_nodes.iter().for_each(|i| score_node(*i));
        } else {
            (0..index.nodes.len()).for_each(score_node);
        }
        drop(index);
        if scores.is_empty() {
            return Status::skip(NAME);
        }
        state.write(PRE_SCORE_KEY, PreScoreState { scores });
        Status::SUCCESS
    }
}

impl ScorePlugin for InterPodAffinity {
    fn score(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        let state = state.read_or_error::<PreScoreState>(PRE_SCORE_KEY, NAME)?;
        Ok(state.scores.sum_for(node))
    }

    /// Kubernetes' `NormalizeScore` for this plugin: the lowest score becomes 0, the highest
    /// [`MAX_NODE_SCORE`], the others in proportion (rounded down, computed in floating point as
    /// Kubernetes does); all 0 when every node scores the same.
    fn normalize(&self, scores: &mut [NodeScore]) {
        let min = scores.iter().map(|s| s.score).min().unwrap_or(0);
        let max = scores.iter().map(|s| s.score).max().unwrap_or(0);
        let diff = max.saturating_sub(min);
        for s in scores.iter_mut() {
            s.score = if diff > 0 {
                let fraction = s.score.saturating_sub(min) as f64 / diff as f64;
                (MAX_NODE_SCORE as f64 * fraction) as i64
            } else {
                0
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

    const HOSTNAME: &str = "kubernetes.io/hostname";
    const ZONE: &str = "zone";

    /// A node with a hostname label and, if given, a zone.
    fn host(name: &str, zone: Option<&str>) -> NodeInfo {
        let mut labels = json!({HOSTNAME: name});
        if let Some(zone) = zone {
            labels[ZONE] = json!(zone);
        }
        node(json!({"metadata": {"name": name, "labels": labels}}))
    }

    fn pod_in(name: &str, namespace: &str, labels: Value, affinity: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"containers": [], "affinity": affinity}
        }))
        .unwrap()
    }

    fn term(topology: &str, selector: Value) -> Value {
        json!({"topologyKey": topology, "labelSelector": selector})
    }

    fn app(value: &str) -> Value {
        json!({"matchLabels": {"app": value}})
    }

    fn required(kind: &str, terms: Value) -> Value {
        json!({kind: {"requiredDuringSchedulingIgnoredDuringExecution": terms}})
    }

    fn preferred(kind: &str, terms: &[(i32, Value)]) -> Value {
        let terms: Vec<Value> = terms
            .iter()
            .map(|(weight, term)| json!({"weight": weight, "podAffinityTerm": term}))
            .collect();
        json!({kind: {"preferredDuringSchedulingIgnoredDuringExecution": terms}})
    }

    fn cluster(nodes: Vec<(NodeInfo, Vec<Pod>)>) -> Vec<Arc<NodeInfo>> {
        nodes
            .into_iter()
            .map(|(mut info, pods)| {
                for p in &pods {
                    info.add_pod(p);
                }
                Arc::new(info)
            })
            .collect()
    }

    fn profile() -> Profile {
        profile_with(Arc::new(InterPodAffinity::default()))
    }

    fn profile_with(plugin: Arc<InterPodAffinity>) -> Profile {
        Profile::new("p")
            .with_pre_filter(plugin.clone())
            .with_filter(plugin.clone())
            .with_pre_score(plugin.clone())
            .with_score(plugin, 1)
    }

    /// PreFilter then Filter on every node; `None` when PreFilter skipped.
    fn filter_all(p: &Pod, nodes: &[Arc<NodeInfo>]) -> Option<Vec<Status>> {
        filter_all_with(&profile(), p, nodes)
    }

    /// [`filter_all`] with the plugins of `profile`.
    fn filter_all_with(profile: &Profile, p: &Pod, nodes: &[Arc<NodeInfo>]) -> Option<Vec<Status>> {
        let mut state = CycleState::new();
        let status = profile.run_pre_filter(&mut state, p, nodes);
        assert!(status.is_success(), "{status}");
        if state.skips_filter(NAME) {
            return None;
        }
        Some(
            nodes
                .iter()
                .map(|n| profile.run_filter(&state, p, n))
                .collect(),
        )
    }

    /// Which nodes pass (all when PreFilter skipped).
    fn feasible(p: &Pod, nodes: &[Arc<NodeInfo>]) -> Vec<bool> {
        match filter_all(p, nodes) {
            None => vec![true; nodes.len()],
            Some(statuses) => statuses.iter().map(Status::is_success).collect(),
        }
    }

    /// Normalised scores of all nodes; `None` when PreScore skipped.
    fn scores(p: &Pod, nodes: &[Arc<NodeInfo>]) -> Option<Vec<i64>> {
        let profile = profile();
        let mut state = CycleState::new();
        let refs: Vec<&NodeInfo> = nodes.iter().map(|n| n.as_ref()).collect();
        assert!(
            profile
                .run_pre_score(&mut state, p, &refs, nodes)
                .is_success()
        );
        if state.skips_score(NAME) {
            return None;
        }
        Some(
            profile
                .run_score(&state, p, &refs)
                .unwrap()
                .iter()
                .map(|s| s.score)
                .collect(),
        )
    }

    #[test]
    fn required_affinity_to_zone_with_matching_pod() {
        let db = pod_in("db", "ns", json!({"app": "db"}), json!(null));
        let nodes = cluster(vec![
            (host("n1", Some("a")), vec![db]),
            (host("n2", Some("a")), vec![]),
            (host("n3", Some("b")), vec![]),
            (host("n4", None), vec![]),
        ]);
        let p = pod_in(
            "web",
            "ns",
            json!({"app": "web"}),
            required("podAffinity", json!([term(ZONE, app("db"))])),
        );
        let statuses = filter_all(&p, &nodes).unwrap();
        assert!(statuses[0].is_success());
        assert!(statuses[1].is_success());
        for status in &statuses[2..] {
            assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
            assert_eq!(status.plugin, NAME);
            assert_eq!(status.reasons, [ERR_REASON_AFFINITY_RULES_NOT_MATCH]);
        }
        // With an expression selector (not counted by label) the answer is the same.
        let p = pod_in(
            "web",
            "ns",
            json!({"app": "web"}),
            required(
                "podAffinity",
                json!([term(
                    ZONE,
                    json!({"matchExpressions": [
                        {"key": "app", "operator": "In", "values": ["db", "cache"]}
                    ]})
                )]),
            ),
        );
        assert_eq!(feasible(&p, &nodes), [true, true, false, false]);
        // Two terms: a pod must match both; each term's topology must hold one.
        let p = pod_in(
            "web",
            "ns",
            json!({}),
            required(
                "podAffinity",
                json!([term(ZONE, app("db")), term(HOSTNAME, app("db"))]),
            ),
        );
        assert_eq!(feasible(&p, &nodes), [true, false, false, false]);
    }

    #[test]
    fn required_anti_affinity_on_hostname() {
        let web = |name: &str| {
            pod_in(
                name,
                "ns",
                json!({"app": "web"}),
                required("podAntiAffinity", json!([term(HOSTNAME, app("web"))])),
            )
        };
        let nodes = cluster(vec![
            (host("n1", Some("a")), vec![web("web-0")]),
            (host("n2", Some("a")), vec![]),
            (
                host("n3", Some("b")),
                vec![pod_in("x", "ns", json!({"app": "other"}), json!(null))],
            ),
        ]);
        let statuses = filter_all(&web("web-1"), &nodes).unwrap();
        assert_eq!(statuses[0].code, Code::Unschedulable);
        assert_eq!(
            statuses[0].reasons,
            [ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH]
        );
        assert!(statuses[1].is_success());
        assert!(statuses[2].is_success());
        // Zone anti-affinity takes the whole zone.
        let p = pod_in(
            "p",
            "ns",
            json!({}),
            required("podAntiAffinity", json!([term(ZONE, app("web"))])),
        );
        assert_eq!(feasible(&p, &nodes), [false, false, true]);
    }

    #[test]
    fn existing_pods_anti_affinity_blocks() {
        let guard = pod_in(
            "guard",
            "ns",
            json!({"app": "guard"}),
            required("podAntiAffinity", json!([term(ZONE, app("web"))])),
        );
        let nodes = cluster(vec![
            (host("n1", Some("a")), vec![guard]),
            (host("n2", Some("a")), vec![]),
            (host("n3", Some("b")), vec![]),
        ]);
        let web = pod_in("web", "ns", json!({"app": "web"}), json!(null));
        let statuses = filter_all(&web, &nodes).unwrap();
        for status in &statuses[..2] {
            assert_eq!(status.code, Code::Unschedulable);
            assert_eq!(
                status.reasons,
                [ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH]
            );
        }
        assert!(statuses[2].is_success());
        // A pod the guard does not select, or in another namespace, is not checked at all.
        assert!(
            filter_all(
                &pod_in("x", "ns", json!({"app": "api"}), json!(null)),
                &nodes
            )
            .is_none()
        );
        assert!(
            filter_all(
                &pod_in("x", "other", json!({"app": "web"}), json!(null)),
                &nodes
            )
            .is_none()
        );
    }

    #[test]
    fn skips_without_terms() {
        let nodes = cluster(vec![(
            host("n1", Some("a")),
            vec![pod_in("x", "ns", json!({"app": "x"}), json!(null))],
        )]);
        let p = pod_in("p", "ns", json!({"app": "x"}), json!(null));
        assert!(filter_all(&p, &nodes).is_none());
        assert!(scores(&p, &nodes).is_none());
        // Without PreFilter the Filter is an error, not a silent success.
        let status = InterPodAffinity::default().filter(&CycleState::new(), &p, &nodes[0]);
        assert_eq!(status.code, Code::Error);
    }

    #[test]
    fn self_affinity_first_pod() {
        let p = pod_in(
            "first",
            "ns",
            json!({"app": "group"}),
            required("podAffinity", json!([term(ZONE, app("group"))])),
        );
        let nodes = cluster(vec![
            (host("n1", Some("a")), vec![]),
            (host("n2", None), vec![]),
            (host("n3", Some("b")), vec![]),
        ]);
        // No pod matches anywhere and the pod matches its own term: any node with a zone.
        assert_eq!(feasible(&p, &nodes), [true, false, true]);
        // A pod that does not match its own terms gets nowhere.
        let q = pod_in(
            "q",
            "ns",
            json!({"app": "other"}),
            required("podAffinity", json!([term(ZONE, app("group"))])),
        );
        let statuses = filter_all(&q, &nodes).unwrap();
        assert!(
            statuses
                .iter()
                .all(|s| s.code == Code::UnschedulableAndUnresolvable)
        );
        // Once a member runs, the group follows it.
        let nodes = cluster(vec![
            (host("n1", Some("a")), vec![]),
            (host("n2", None), vec![]),
            (
                host("n3", Some("b")),
                vec![pod_in("member", "ns", json!({"app": "group"}), json!(null))],
            ),
        ]);
        assert_eq!(feasible(&p, &nodes), [false, false, true]);
        // A matching pod on a node without the topology label counts nowhere: still the first.
        let nodes = cluster(vec![
            (host("n1", Some("a")), vec![]),
            (
                host("n2", None),
                vec![pod_in("member", "ns", json!({"app": "group"}), json!(null))],
            ),
        ]);
        assert_eq!(feasible(&p, &nodes), [true, false]);
    }

    #[test]
    fn namespaces_of_terms() {
        let nodes = cluster(vec![
            (
                host("n1", Some("a")),
                vec![pod_in("db", "ns", json!({"app": "db"}), json!(null))],
            ),
            (
                host("n2", Some("b")),
                vec![pod_in("db", "other", json!({"app": "db"}), json!(null))],
            ),
        ]);
        let anti = |t: Value| {
            pod_in(
                "p",
                "ns",
                json!({}),
                required("podAntiAffinity", json!([t])),
            )
        };
        let with = |extra: Value| {
            let mut t = term(ZONE, app("db"));
            if let (Some(t), Some(extra)) = (t.as_object_mut(), extra.as_object()) {
                t.extend(extra.clone());
            }
            anti(t)
        };
        // The owner's namespace by default.
        assert_eq!(feasible(&with(json!({})), &nodes), [false, true]);
        // Listed namespaces replace it.
        assert_eq!(
            feasible(&with(json!({"namespaces": ["other"]})), &nodes),
            [true, false]
        );
        assert_eq!(
            feasible(&with(json!({"namespaces": ["ns", "other"]})), &nodes),
            [false, false]
        );
        // An empty namespaceSelector selects every namespace.
        assert_eq!(
            feasible(&with(json!({"namespaceSelector": {}})), &nodes),
            [false, false]
        );
        // A namespaceSelector on the name label selects by name; others select none.
        assert_eq!(
            feasible(
                &with(
                    json!({"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: "other"}}})
                ),
                &nodes
            ),
            [true, false]
        );
        assert_eq!(
            feasible(
                &with(json!({"namespaceSelector": {"matchLabels": {"team": "x"}}})),
                &nodes
            ),
            [true, true]
        );
        // List and selector add up.
        assert_eq!(
            feasible(
                &with(
                    json!({"namespaces": ["ns"], "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: "other"}}})
                ),
                &nodes
            ),
            [false, false]
        );
        // Existing pods' terms default to their own namespace too.
        let guard = pod_in(
            "guard",
            "other",
            json!({}),
            required("podAntiAffinity", json!([term(ZONE, app("web"))])),
        );
        let nodes = cluster(vec![(host("n1", Some("a")), vec![guard])]);
        assert_eq!(
            feasible(
                &pod_in("w", "ns", json!({"app": "web"}), json!(null)),
                &nodes
            ),
            [true]
        );
        assert_eq!(
            feasible(
                &pod_in("w", "other", json!({"app": "web"}), json!(null)),
                &nodes
            ),
            [false]
        );
    }

    #[test]
    fn nil_and_empty_selectors() {
        let nodes = cluster(vec![
            (
                host("n1", Some("a")),
                vec![pod_in("x", "ns", json!({"app": "x"}), json!(null))],
            ),
            (host("n2", Some("b")), vec![]),
        ]);
        // No labelSelector: selects no pod, so anti-affinity forbids nothing...
        let nil = json!([{"topologyKey": ZONE}]);
        let p = pod_in(
            "p",
            "ns",
            json!({}),
            required("podAntiAffinity", nil.clone()),
        );
        assert_eq!(feasible(&p, &nodes), [true, true]);
        // ...and affinity is never satisfied (the pod does not match its own term either).
        let p = pod_in("p", "ns", json!({}), required("podAffinity", nil));
        assert_eq!(feasible(&p, &nodes), [false, false]);
        // An empty labelSelector selects every pod of the namespace.
        let empty = json!([term(ZONE, json!({}))]);
        let p = pod_in(
            "p",
            "ns",
            json!({}),
            required("podAntiAffinity", empty.clone()),
        );
        assert_eq!(feasible(&p, &nodes), [false, true]);
        let p = pod_in("p", "ns", json!({}), required("podAffinity", empty));
        assert_eq!(feasible(&p, &nodes), [true, false]);
        // The same for a running pod's anti-affinity.
        let guard = |terms: Value| pod_in("g", "ns", json!({}), required("podAntiAffinity", terms));
        let incoming = pod_in("p", "ns", json!({"app": "p"}), json!(null));
        let nodes = cluster(vec![(
            host("n1", Some("a")),
            vec![guard(json!([{"topologyKey": ZONE}]))],
        )]);
        assert_eq!(feasible(&incoming, &nodes), [true]);
        let nodes = cluster(vec![(
            host("n1", Some("a")),
            vec![guard(json!([term(ZONE, json!({}))]))],
        )]);
        assert_eq!(feasible(&incoming, &nodes), [false]);
    }

    #[test]
    fn reasons_and_codes() {
        assert_eq!(NAME, "InterPodAffinity");
        assert_eq!(
            ERR_REASON_AFFINITY_RULES_NOT_MATCH,
            "node(s) didn't match pod affinity rules"
        );
        assert_eq!(
            ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH,
            "node(s) didn't match pod anti-affinity rules"
        );
        assert_eq!(
            ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH,
            "node(s) didn't satisfy existing pods anti-affinity rules"
        );
        // Affinity is checked first, then anti-affinity, then running pods' anti-affinity.
        let guard = pod_in(
            "guard",
            "ns",
            json!({"app": "db"}),
            required("podAntiAffinity", json!([term(ZONE, app("web"))])),
        );
        let nodes = cluster(vec![(host("n1", Some("a")), vec![guard])]);
        let mut affinity = required("podAffinity", json!([term(ZONE, app("cache"))]));
        affinity["podAntiAffinity"] =
            required("podAntiAffinity", json!([term(ZONE, app("db"))]))["podAntiAffinity"].clone();
        let p = pod_in("p", "ns", json!({"app": "web"}), affinity.clone());
        let status = &filter_all(&p, &nodes).unwrap()[0];
        assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(status.reasons, [ERR_REASON_AFFINITY_RULES_NOT_MATCH]);
        affinity["podAffinity"] = json!(null);
        let p = pod_in("p", "ns", json!({"app": "web"}), affinity);
        let status = &filter_all(&p, &nodes).unwrap()[0];
        assert_eq!(status.reasons, [ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH]);
        let p = pod_in("p", "ns", json!({"app": "web"}), json!(null));
        let status = &filter_all(&p, &nodes).unwrap()[0];
        assert_eq!(
            status.reasons,
            [ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH]
        );
        assert_eq!(
            status.to_string(),
            "Unschedulable (InterPodAffinity): node(s) didn't satisfy existing pods anti-affinity rules"
        );
    }

    #[test]
    fn invalid_selector_is_an_error() {
        let p = pod_in(
            "p",
            "ns",
            json!({}),
            required(
                "podAffinity",
                json!([term(
                    ZONE,
                    json!({"matchExpressions": [{"key": "app", "operator": "Gt", "values": ["1"]}]})
                )]),
            ),
        );
        let mut state = CycleState::new();
        let status = InterPodAffinity::default().pre_filter(&mut state, &p, &[]);
        assert_eq!(status.code, Code::Error);
    }

    #[test]
    fn scoring_preferred_weights_and_normalisation() {
        let nodes = cluster(vec![
            (
                host("n1", Some("a")),
                vec![pod_in("db", "ns", json!({"app": "db"}), json!(null))],
            ),
            (host("n2", Some("a")), vec![]),
            (
                host("n3", Some("b")),
                vec![pod_in("cache", "ns", json!({"app": "cache"}), json!(null))],
            ),
            (host("n4", Some("c")), vec![]),
        ]);
        let mut affinity = preferred("podAffinity", &[(10, term(ZONE, app("db")))]);
        affinity["podAntiAffinity"] =
            preferred("podAntiAffinity", &[(5, term(ZONE, app("cache")))])["podAntiAffinity"]
                .clone();
        let p = pod_in("p", "ns", json!({}), affinity);
        // Raw: zone a +10, zone b -5, zone c 0: scaled from -5..10 to 0..100.
        assert_eq!(scores(&p, &nodes).unwrap(), [100, 100, 0, 33]);
        // Expression selectors (looked at pod by pod) score the same.
        let expr = |v: &str| json!({"matchExpressions": [{"key": "app", "operator": "In", "values": [v]}]});
        let mut affinity = preferred("podAffinity", &[(10, term(ZONE, expr("db")))]);
        affinity["podAntiAffinity"] =
            preferred("podAntiAffinity", &[(5, term(ZONE, expr("cache")))])["podAntiAffinity"]
                .clone();
        let p = pod_in("p", "ns", json!({}), affinity);
        assert_eq!(scores(&p, &nodes).unwrap(), [100, 100, 0, 33]);
        // Terms no pod matches: nothing to score.
        let p = pod_in(
            "p",
            "ns",
            json!({}),
            preferred("podAffinity", &[(10, term(ZONE, app("none")))]),
        );
        assert!(scores(&p, &nodes).is_none());
        // Equal raw scores normalise to 0.
        let p = pod_in(
            "p",
            "ns",
            json!({}),
            preferred("podAffinity", &[(10, term("rack", json!({})))]),
        );
        assert!(scores(&p, &nodes).is_none());
    }

    #[test]
    fn scoring_existing_pods_terms() {
        let lover = pod_in(
            "lover",
            "ns",
            json!({}),
            preferred("podAffinity", &[(7, term(HOSTNAME, app("web")))]),
        );
        let hater = pod_in(
            "hater",
            "ns",
            json!({}),
            preferred("podAntiAffinity", &[(3, term(ZONE, app("web")))]),
        );
        let needy = pod_in(
            "needy",
            "ns",
            json!({}),
            required("podAffinity", json!([term(HOSTNAME, app("web"))])),
        );
        let nodes = cluster(vec![
            (host("n1", Some("a")), vec![lover]),
            (host("n2", Some("b")), vec![hater]),
            (host("n3", Some("b")), vec![needy]),
            (host("n4", Some("c")), vec![]),
        ]);
        let web = pod_in("web", "ns", json!({"app": "web"}), json!(null));
        // Raw: n1 +7, n2 -3 (zone b), n3 -3 +1 (hard weight), n4 0: -3..7 to 0..100.
        assert_eq!(scores(&web, &nodes).unwrap(), [100, 0, 10, 30]);
        // hardPodAffinityWeight 0 ignores required terms of running pods.
        let plugin = InterPodAffinity::new(0, false);
        let mut state = CycleState::new();
        let refs: Vec<&NodeInfo> = nodes.iter().map(|n| n.as_ref()).collect();
        assert!(
            plugin
                .pre_score(&mut state, &web, &refs, &nodes)
                .is_success()
        );
        let raw: Vec<i64> = refs
            .iter()
            .map(|n| plugin.score(&state, &web, n).unwrap())
            .collect();
        assert_eq!(raw, [7, -3, -3, 0]);
        // Ignoring running pods' preferences, a pod without its own has nothing to score.
        let plugin = InterPodAffinity::new(DEFAULT_HARD_POD_AFFINITY_WEIGHT, true);
        let status = plugin.pre_score(&mut CycleState::new(), &web, &refs, &nodes);
        assert_eq!(status.code, Code::Skip);
        // Other pods are not affected by those terms.
        let other = pod_in("o", "ns", json!({"app": "other"}), json!(null));
        assert!(scores(&other, &nodes).is_none());
    }

    #[test]
    fn normalize_like_kubernetes() {
        let plugin = InterPodAffinity::default();
        let mut s: Vec<NodeScore> = [29, 0, 100, -100]
            .iter()
            .enumerate()
            .map(|(index, &score)| NodeScore { index, score })
            .collect();
        plugin.normalize(&mut s);
        // (29 + 100) / 200 = 0.645 -> 64; 0 -> 50; 100 -> 100; -100 -> 0.
        assert_eq!(
            s.iter().map(|s| s.score).collect::<Vec<_>>(),
            [64, 50, 100, 0]
        );
        let mut s = [
            NodeScore { index: 0, score: 0 },
            NodeScore {
                index: 1,
                score: 29,
            },
            NodeScore {
                index: 2,
                score: 100,
            },
        ];
        plugin.normalize(&mut s);
        // float64(100) * (29.0 / 100.0) is 28.999999999999996 in Go too.
        assert_eq!(s.map(|s| s.score), [0, 28, 100]);
        let mut same = [
            NodeScore { index: 0, score: 5 },
            NodeScore { index: 1, score: 5 },
        ];
        plugin.normalize(&mut same);
        assert_eq!(same.map(|s| s.score), [0, 0]);
        plugin.normalize(&mut []);
    }

    /// Filter and Score against a reference that looks at every pod on every node for every
    /// node, written from the rules rather than from the plugin.
    mod model {
        use super::*;
        use proptest::prelude::*;

        const NAMESPACES: [&str; 2] = ["ns", "other"];
        const TOPOLOGIES: [&str; 3] = [HOSTNAME, ZONE, "rack"];

        #[derive(Clone, Debug)]
        enum Sel {
            Nil,
            Empty,
            App(u8),
            AppIn(u8, u8),
            AppNotIn(u8),
            TierExists,
            TierMissing,
        }

        #[derive(Clone, Debug)]
        enum Ns {
            Own,
            Other,
            Both,
            All,
            ByName,
        }

        #[derive(Clone, Debug)]
        struct Term {
            topology: usize,
            sel: Sel,
            ns: Ns,
        }

        #[derive(Clone, Debug)]
        struct P {
            ns: usize,
            app: Option<u8>,
            tier: Option<u8>,
            affinity: Vec<Term>,
            anti: Vec<Term>,
            preferred: Vec<(i32, Term)>,
            preferred_anti: Vec<(i32, Term)>,
        }

        #[derive(Clone, Debug)]
        struct N {
            host: bool,
            zone: Option<u8>,
            rack: Option<u8>,
        }

        fn arb_term() -> impl Strategy<Value = Term> {
            let sel = prop_oneof![
                1 => Just(Sel::Nil),
                1 => Just(Sel::Empty),
                5 => (0..3_u8).prop_map(Sel::App),
                2 => (0..3_u8, 0..3_u8).prop_map(|(a, b)| Sel::AppIn(a, b)),
                1 => (0..3_u8).prop_map(Sel::AppNotIn),
                1 => Just(Sel::TierExists),
                1 => Just(Sel::TierMissing),
            ];
            let ns = prop_oneof![
                6 => Just(Ns::Own),
                1 => Just(Ns::Other),
                1 => Just(Ns::Both),
                1 => Just(Ns::All),
                1 => Just(Ns::ByName),
            ];
            (
                prop_oneof![3 => Just(0_usize), 3 => Just(1), 1 => Just(2)],
                sel,
                ns,
            )
                .prop_map(|(topology, sel, ns)| Term { topology, sel, ns })
        }

        fn arb_pod() -> impl Strategy<Value = P> {
            let terms = || proptest::collection::vec(arb_term(), 0..3);
            let weighted = || proptest::collection::vec((1..10_i32, arb_term()), 0..2);
            (
                prop_oneof![4 => Just(0_usize), 1 => Just(1)],
                proptest::option::weighted(0.8, 0..3_u8),
                proptest::option::of(0..2_u8),
                (terms(), terms()),
                (weighted(), weighted()),
            )
                .prop_map(
                    |(ns, app, tier, (affinity, anti), (preferred, preferred_anti))| P {
                        ns,
                        app,
                        tier,
                        affinity,
                        anti,
                        preferred,
                        preferred_anti,
                    },
                )
        }

        fn arb_node() -> impl Strategy<Value = N> {
            (
                proptest::bool::weighted(0.9),
                proptest::option::weighted(0.8, 0..3_u8),
                proptest::option::of(0..2_u8),
            )
                .prop_map(|(host, zone, rack)| N { host, zone, rack })
        }

        fn term_json(t: &Term) -> Value {
            let mut v = json!({"topologyKey": TOPOLOGIES[t.topology]});
            let expr = |op: &str, values: Value| {
                let mut e = json!({"key": if matches!(t.sel, Sel::TierExists | Sel::TierMissing) { "tier" } else { "app" }, "operator": op});
                if !values.is_null() {
                    e["values"] = values;
                }
                json!({"matchExpressions": [e]})
            };
            match &t.sel {
                Sel::Nil => {}
                Sel::Empty => v["labelSelector"] = json!({}),
                Sel::App(a) => {
                    v["labelSelector"] = json!({"matchLabels": {"app": format!("a{a}")}})
                }
                Sel::AppIn(a, b) => {
                    v["labelSelector"] = expr("In", json!([format!("a{a}"), format!("a{b}")]))
                }
                Sel::AppNotIn(a) => v["labelSelector"] = expr("NotIn", json!([format!("a{a}")])),
                Sel::TierExists => v["labelSelector"] = expr("Exists", Value::Null),
                Sel::TierMissing => v["labelSelector"] = expr("DoesNotExist", Value::Null),
            }
            match &t.ns {
                Ns::Own => {}
                Ns::Other => v["namespaces"] = json!(["other"]),
                Ns::Both => v["namespaces"] = json!(["ns", "other"]),
                Ns::All => v["namespaceSelector"] = json!({}),
                Ns::ByName => {
                    v["namespaceSelector"] = json!({"matchLabels": {NAMESPACE_NAME_LABEL: "other"}})
                }
            }
            v
        }

        fn pod_json(name: &str, p: &P) -> Pod {
            let mut labels = json!({});
            if let Some(a) = p.app {
                labels["app"] = json!(format!("a{a}"));
            }
            if let Some(t) = p.tier {
                labels["tier"] = json!(format!("t{t}"));
            }
            let terms = |terms: &[Term]| terms.iter().map(term_json).collect::<Vec<_>>();
            let weighted = |terms: &[(i32, Term)]| {
                terms
                    .iter()
                    .map(|(w, t)| json!({"weight": w, "podAffinityTerm": term_json(t)}))
                    .collect::<Vec<_>>()
            };
            let mut affinity = json!({});
            if !p.affinity.is_empty() || !p.preferred.is_empty() {
                affinity["podAffinity"] = json!({
                    "requiredDuringSchedulingIgnoredDuringExecution": terms(&p.affinity),
                    "preferredDuringSchedulingIgnoredDuringExecution": weighted(&p.preferred),
                });
            }
            if !p.anti.is_empty() || !p.preferred_anti.is_empty() {
                affinity["podAntiAffinity"] = json!({
                    "requiredDuringSchedulingIgnoredDuringExecution": terms(&p.anti),
                    "preferredDuringSchedulingIgnoredDuringExecution": weighted(&p.preferred_anti),
                });
            }
            pod_in(name, NAMESPACES[p.ns], labels, affinity)
        }

        fn node_json(i: usize, n: &N) -> NodeInfo {
            let mut labels = json!({});
            if n.host {
                labels[HOSTNAME] = json!(format!("n{i}"));
            }
            if let Some(z) = n.zone {
                labels[ZONE] = json!(format!("z{z}"));
            }
            if let Some(r) = n.rack {
                labels["rack"] = json!(format!("r{r}"));
            }
            node(json!({"metadata": {"name": format!("n{i}"), "labels": labels}}))
        }

        fn label(i: usize, n: &N, topology: usize) -> Option<String> {
            match topology {
                0 => n.host.then(|| format!("n{i}")),
                1 => n.zone.map(|z| format!("z{z}")),
                _ => n.rack.map(|r| format!("r{r}")),
            }
        }

        /// Whether `t`, a term of a pod in namespace `owner`, selects `p`.
        fn selects(t: &Term, owner: usize, p: &P) -> bool {
            let in_namespace = match t.ns {
                Ns::Own => p.ns == owner,
                Ns::Other | Ns::ByName => p.ns == 1,
                Ns::Both | Ns::All => true,
            };
            in_namespace
                && match t.sel {
                    Sel::Nil => false,
                    Sel::Empty => true,
                    Sel::App(a) => p.app == Some(a),
                    Sel::AppIn(a, b) => p.app == Some(a) || p.app == Some(b),
                    Sel::AppNotIn(a) => p.app != Some(a),
                    Sel::TierExists => p.tier.is_some(),
                    Sel::TierMissing => p.tier.is_none(),
                }
        }

        /// Whether node `j` and node `i` share a defined domain of `topology`.
        fn same_domain(nodes: &[(N, Vec<P>)], i: usize, j: usize, topology: usize) -> bool {
            let a = label(i, &nodes[i].0, topology);
            a.is_some() && a == label(j, &nodes[j].0, topology)
        }

        fn all_pods(nodes: &[(N, Vec<P>)]) -> impl Iterator<Item = (usize, &P)> {
            nodes
                .iter()
                .enumerate()
                .flat_map(|(j, (_, pods))| pods.iter().map(move |p| (j, p)))
        }

        /// The reference Filter: the reason for node `i`, or `None` if the pod fits.
        fn reference_filter(nodes: &[(N, Vec<P>)], pod: &P, i: usize) -> Option<&'static str> {
            let node = &nodes[i].0;
            if !pod.affinity.is_empty() {
                let matches_all = |p: &P| pod.affinity.iter().all(|t| selects(t, pod.ns, p));
                let has_keys = pod
                    .affinity
                    .iter()
                    .all(|t| label(i, node, t.topology).is_some());
                let pods_exist = pod.affinity.iter().all(|t| {
                    all_pods(nodes)
                        .any(|(j, p)| matches_all(p) && same_domain(nodes, i, j, t.topology))
                });
                let any_counted = all_pods(nodes).any(|(j, p)| {
                    matches_all(p)
                        && pod
                            .affinity
                            .iter()
                            .any(|t| label(j, &nodes[j].0, t.topology).is_some())
                });
                let ok = has_keys && (pods_exist || (!any_counted && matches_all(pod)));
                if !ok {
                    return Some(ERR_REASON_AFFINITY_RULES_NOT_MATCH);
                }
            }
            let anti_broken = pod.anti.iter().any(|t| {
                all_pods(nodes)
                    .any(|(j, p)| selects(t, pod.ns, p) && same_domain(nodes, i, j, t.topology))
            });
            if anti_broken {
                return Some(ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH);
            }
            let existing_broken = all_pods(nodes).any(|(j, e)| {
                e.anti
                    .iter()
                    .any(|t| selects(t, e.ns, pod) && same_domain(nodes, i, j, t.topology))
            });
            if existing_broken {
                return Some(ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH);
            }
            None
        }

        /// The reference raw score of node `i`, and whether any term applied anywhere.
        fn reference_score(nodes: &[(N, Vec<P>)], pod: &P, i: usize, hard: i32) -> (i64, bool) {
            let mut score = 0;
            let mut applied = false;
            let mut apply = |j: usize, t: &Term, weight: i64| {
                if label(j, &nodes[j].0, t.topology).is_some() {
                    applied = true;
                    if same_domain(nodes, i, j, t.topology) {
                        score += weight;
                    }
                }
            };
            for (j, p) in all_pods(nodes) {
                for (w, t) in &pod.preferred {
                    if selects(t, pod.ns, p) {
                        apply(j, t, i64::from(*w));
                    }
                }
                for (w, t) in &pod.preferred_anti {
                    if selects(t, pod.ns, p) {
                        apply(j, t, -i64::from(*w));
                    }
                }
                for t in &p.affinity {
                    if hard > 0 && selects(t, p.ns, pod) {
                        apply(j, t, i64::from(hard));
                    }
                }
                for (w, t) in &p.preferred {
                    if selects(t, p.ns, pod) {
                        apply(j, t, i64::from(*w));
                    }
                }
                for (w, t) in &p.preferred_anti {
                    if selects(t, p.ns, pod) {
                        apply(j, t, -i64::from(*w));
                    }
                }
            }
            (score, applied)
        }

        fn arb_cluster() -> impl Strategy<Value = Vec<(N, Vec<P>)>> {
            proptest::collection::vec(
                (arb_node(), proptest::collection::vec(arb_pod(), 0..5)),
                1..=6,
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn filter_matches_reference(model in arb_cluster(), incoming in arb_pod()) {
                let nodes = build(&model);
                check(&Arc::new(InterPodAffinity::default()), &model, &nodes, &incoming)?;
            }
        }

        /// The NodeInfos of a model cluster, pods named `p{node}-{k}`.
        fn build(model: &[(N, Vec<P>)]) -> Vec<Arc<NodeInfo>> {
            model
                .iter()
                .enumerate()
                .map(|(i, (n, pods))| {
                    let mut info = node_json(i, n);
                    for (k, p) in pods.iter().enumerate() {
                        info.add_pod(&pod_json(&format!("p{i}-{k}"), p));
                    }
                    Arc::new(info)
                })
                .collect()
        }

        /// One cycle of `plugin` (PreFilter and Filter on every node, PreScore and Score)
        /// against the reference.
        fn check(
            plugin: &Arc<InterPodAffinity>,
            model: &[(N, Vec<P>)],
            nodes: &[Arc<NodeInfo>],
            incoming: &P,
        ) -> Result<(), TestCaseError> {
            let pod = pod_json("incoming", incoming);
            let statuses = filter_all_with(&profile_with(plugin.clone()), &pod, nodes);
            for i in 0..nodes.len() {
                let expected = reference_filter(model, incoming, i);
                let actual = match &statuses {
                    None => None,
                    Some(statuses) if statuses[i].is_success() => None,
                    Some(statuses) => {
                        let code = if statuses[i].reasons == [ERR_REASON_AFFINITY_RULES_NOT_MATCH] {
                            Code::UnschedulableAndUnresolvable
                        } else {
                            Code::Unschedulable
                        };
                        prop_assert_eq!(statuses[i].code, code);
                        prop_assert_eq!(statuses[i].reasons.len(), 1);
                        Some(statuses[i].reasons[0].as_ref())
                    }
                };
                prop_assert_eq!(actual, expected, "node {}", i);
            }

            let mut state = CycleState::new();
            let refs: Vec<&NodeInfo> = nodes.iter().map(|n| n.as_ref()).collect();
            let status = plugin.pre_score(&mut state, &pod, &refs, nodes);
            let expected: Vec<(i64, bool)> = (0..nodes.len())
                .map(|i| reference_score(model, incoming, i, plugin.hard_pod_affinity_weight))
                .collect();
            if status.code == Code::Skip {
                prop_assert!(expected.iter().all(|(_, applied)| !applied));
            } else {
                prop_assert!(status.is_success());
                for (i, n) in refs.iter().enumerate() {
                    prop_assert_eq!(
                        plugin.score(&state, &pod, n).unwrap(),
                        expected[i].0,
                        "node {}",
                        i
                    );
                }
            }
            Ok(())
        }

        /// A change to the cluster between cycles, as the cache makes it: the changed node gets
        /// a new `Arc` (indices are taken modulo the number of nodes or pods).
        #[derive(Clone, Debug)]
        enum Op {
            AddPod(usize, P),
            RemovePod(usize, usize),
            /// New node labels, same pods.
            Relabel(usize, N),
            /// A new `Arc` with the same content.
            Touch(usize),
            AddNode(N),
            /// Removes the last node (if there are two or more).
            RemoveNode,
            /// A cycle (with the next incoming pod) on a copy of the nodes where this node lacks
            /// this pod, as preemption runs; the cluster itself does not change.
            Preempt(usize, usize),
        }

        fn arb_op() -> impl Strategy<Value = Op> {
            prop_oneof![
                5 => (0..8_usize, arb_pod()).prop_map(|(i, p)| Op::AddPod(i, p)),
                4 => (0..8_usize, 0..8_usize).prop_map(|(i, k)| Op::RemovePod(i, k)),
                1 => (0..8_usize, arb_node()).prop_map(|(i, n)| Op::Relabel(i, n)),
                1 => (0..8_usize).prop_map(Op::Touch),
                1 => arb_node().prop_map(Op::AddNode),
                1 => Just(Op::RemoveNode),
                2 => (0..8_usize, 0..8_usize).prop_map(|(i, k)| Op::Preempt(i, k)),
            ]
        }

        /// The model with pod names, and its nodes.
        struct Cluster {
            model: Vec<(N, Vec<(String, P)>)>,
            nodes: Vec<Arc<NodeInfo>>,
            next_pod: usize,
        }

        impl Cluster {
            fn new(model: &[(N, Vec<P>)]) -> Cluster {
                Cluster {
                    model: model
                        .iter()
                        .enumerate()
                        .map(|(i, (n, pods))| {
                            let pods = pods
                                .iter()
                                .enumerate()
                                .map(|(k, p)| (format!("p{i}-{k}"), p.clone()))
                                .collect();
                            (n.clone(), pods)
                        })
                        .collect(),
                    nodes: build(model),
                    next_pod: 0,
                }
            }

            fn plain(&self) -> Vec<(N, Vec<P>)> {
                self.model
                    .iter()
                    .map(|(n, pods)| (n.clone(), pods.iter().map(|(_, p)| p.clone()).collect()))
                    .collect()
            }

            /// Applies `op`; for [`Op::Preempt`], returns the model and nodes to check instead.
            #[allow(clippy::type_complexity)]
            fn apply(&mut self, op: &Op) -> Option<(Vec<(N, Vec<P>)>, Vec<Arc<NodeInfo>>)> {
                let len = self.nodes.len();
                match op {
                    Op::AddPod(i, p) => {
                        let i = i % len;
                        let name = format!("q{}", self.next_pod);
                        self.next_pod += 1;
                        let mut info = (*self.nodes[i]).clone();
                        info.add_pod(&pod_json(&name, p));
                        self.nodes[i] = Arc::new(info);
                        self.model[i].1.push((name, p.clone()));
                    }
                    Op::RemovePod(i, k) => {
                        let i = i % len;
                        let pods = &mut self.model[i].1;
                        if !pods.is_empty() {
                            let (name, p) = pods.remove(k % pods.len());
                            let mut info = (*self.nodes[i]).clone();
                            assert!(info.remove_key(&format!("{}/{name}", NAMESPACES[p.ns])));
                            self.nodes[i] = Arc::new(info);
                        }
                    }
                    Op::Relabel(i, n) => {
                        let i = i % len;
                        let mut info = (*self.nodes[i]).clone();
                        info.set_node(node_json(i, n).node_arc().clone());
                        self.nodes[i] = Arc::new(info);
                        self.model[i].0 = n.clone();
                    }
                    Op::Touch(i) => {
                        let i = i % len;
                        self.nodes[i] = Arc::new((*self.nodes[i]).clone());
                    }
                    Op::AddNode(n) => {
                        self.nodes.push(Arc::new(node_json(len, n)));
                        self.model.push((n.clone(), Vec::new()));
                    }
                    Op::RemoveNode => {
                        if len > 1 {
                            self.nodes.pop();
                            self.model.pop();
                        }
                    }
                    Op::Preempt(i, k) => {
                        let i = i % len;
                        let mut model = self.plain();
                        let mut nodes = self.nodes.clone();
                        let pods = &self.model[i].1;
                        if !pods.is_empty() {
                            let k = k % pods.len();
                            let (name, p) = &pods[k];
                            let mut info = (*nodes[i]).clone();
                            assert!(info.remove_key(&format!("{}/{name}", NAMESPACES[p.ns])));
                            nodes[i] = Arc::new(info);
                            model[i].1.remove(k);
                        }
                        return Some((model, nodes));
                    }
                }
                None
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]

            /// One plugin over several cycles of a changing cluster: its index, updated from
            /// what changed, gives the reference's answers every time.
            #[test]
            fn reused_plugin_matches_reference(
                model in arb_cluster(),
                cycles in proptest::collection::vec(
                    (proptest::collection::vec(arb_op(), 0..4), arb_pod()),
                    1..6,
                ),
                hard_weight in prop_oneof![3 => Just(DEFAULT_HARD_POD_AFFINITY_WEIGHT), 1 => Just(0)],
            ) {
                let plugin = Arc::new(InterPodAffinity::new(hard_weight, false));
                let mut cluster = Cluster::new(&model);
                for (ops, incoming) in &cycles {
                    for op in ops {
                        if let Some((model, nodes)) = cluster.apply(op) {
                            check(&plugin, &model, &nodes, incoming)?;
                        }
                    }
                    check(&plugin, &cluster.plain(), &cluster.nodes, incoming)?;
                }
            }
        }
    }
}
