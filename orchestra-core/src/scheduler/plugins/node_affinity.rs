//! NodeAffinity: a pod's `nodeSelector` and required node affinity must match the node's labels
//! (and name), and its preferred node affinity scores nodes.

use std::sync::Arc;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm, Pod};

use crate::scheduler::framework::{
    CycleState, FilterPlugin, MAX_NODE_SCORE, NodeScore, Plugin, PreFilterPlugin, PreScorePlugin,
    ScorePlugin, Status, default_normalize_score,
};
use crate::scheduler::node_info::NodeInfo;

/// The plugin's name.
pub const NAME: &str = "NodeAffinity";
/// The reason given for a node that does not match.
pub const ERR_REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";
/// The reason given when the required terms name nodes (`matchFields` on `metadata.name`) that
/// no node can satisfy at once.
pub const ERR_REASON_CONFLICT: &str = "pod affinity terms conflict";
/// The one field `matchFields` may select on.
pub const OBJECT_NAME_FIELD: &str = "metadata.name";
const PRE_FILTER_KEY: &str = "PreFilterNodeAffinity";
const PRE_SCORE_KEY: &str = "PreScoreNodeAffinity";

/// Up to this many labels, [`label_value`] scans them rather than searching the tree.
const SCAN_LABELS: usize = 16;

/// The value of the label `key` in `labels`.
///
/// Nodes have few labels, and a tree search compares the bytes of every key it passes (each
/// a separate allocation, so a cache miss per key on a large snapshot); a scan compares the
/// lengths first, read from the map's own nodes, and the bytes of same-length keys only.
pub(crate) fn label_value<'a>(labels: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    if labels.len() <= SCAN_LABELS {
        labels
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v.as_str())
    } else {
        labels.get(key).map(String::as_str)
    }
}

/// Whether `values` holds `value`: a scan that compares lengths first (selectors list few
/// values).
fn holds(values: &[String], value: &str) -> bool {
    values.iter().any(|v| v.as_str() == value)
}

#[derive(Clone, Debug)]
enum Op {
    /// The values, deduplicated.
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

#[derive(Clone, Debug)]
struct CompiledRequirement {
    key: String,
    op: Op,
}

impl CompiledRequirement {
    /// A label requirement, or `None` when it is invalid (so its term matches nothing).
    fn label(r: &NodeSelectorRequirement) -> Option<CompiledRequirement> {
        let values = r.values.as_deref().unwrap_or(&[]);
        let single_int = || match values {
            [value] => value.parse::<i64>().ok(),
            _ => None,
        };
        let set = || -> Vec<String> {
            values
                .iter()
                .cloned()
                .collect::<BTreeSet<String>>()
                .into_iter()
                .collect()
        };
        let op = match r.operator.as_str() {
            "In" if !values.is_empty() => Op::In(set()),
            "NotIn" if !values.is_empty() => Op::NotIn(set()),
            "Exists" if values.is_empty() => Op::Exists,
            "DoesNotExist" if values.is_empty() => Op::DoesNotExist,
            "Gt" => Op::Gt(single_int()?),
            "Lt" => Op::Lt(single_int()?),
            _ => return None,
        };
        Some(CompiledRequirement {
            key: r.key.clone(),
            op,
        })
    }

    /// A field requirement: only `metadata.name` with `In` or `NotIn` and one value.
    fn field(r: &NodeSelectorRequirement) -> Option<CompiledRequirement> {
        if r.key != OBJECT_NAME_FIELD {
            return None;
        }
        let [value] = r.values.as_deref().unwrap_or(&[]) else {
            return None;
        };
        let op = match r.operator.as_str() {
            "In" => Op::In(vec![value.clone()]),
            "NotIn" => Op::NotIn(vec![value.clone()]),
            _ => return None,
        };
        Some(CompiledRequirement {
            key: r.key.clone(),
            op,
        })
    }

    fn matches(&self, value: Option<&str>) -> bool {
        match (&self.op, value) {
            (Op::In(values), Some(v)) => holds(values, v),
            (Op::In(_), None) => false,
            (Op::NotIn(values), Some(v)) => !holds(values, v),
            (Op::NotIn(_), None) => true,
            (Op::Exists, v) => v.is_some(),
            (Op::DoesNotExist, v) => v.is_none(),
            (Op::Gt(bound), Some(v)) => v.parse::<i64>().is_ok_and(|n| n > *bound),
            (Op::Lt(bound), Some(v)) => v.parse::<i64>().is_ok_and(|n| n < *bound),
            (Op::Gt(_) | Op::Lt(_), None) => false,
        }
    }
}

/// A node selector term, parsed once: requirements on labels and on fields, all ANDed. A term
/// that is empty or has an invalid requirement matches no node, as in Kubernetes.
#[derive(Clone, Debug)]
struct CompiledTerm {
    labels: Vec<CompiledRequirement>,
    fields: Vec<CompiledRequirement>,
}

impl CompiledTerm {
    fn new(term: &NodeSelectorTerm) -> Option<CompiledTerm> {
        let expressions = term.match_expressions.as_deref().unwrap_or(&[]);
        let fields = term.match_fields.as_deref().unwrap_or(&[]);
        if expressions.is_empty() && fields.is_empty() {
            return None;
        }
        Some(CompiledTerm {
            labels: expressions
                .iter()
                .map(CompiledRequirement::label)
                .collect::<Option<_>>()?,
            fields: fields
                .iter()
                .map(CompiledRequirement::field)
                .collect::<Option<_>>()?,
        })
    }

    fn matches(&self, node: &Node) -> bool {
        let labels = node.metadata.labels.as_ref();
        self.labels
            .iter()
            .all(|r| r.matches(labels.and_then(|l| label_value(l, &r.key))))
            && (self.fields.is_empty() || {
                let name = node.metadata.name.as_deref().unwrap_or("");
                self.fields.iter().all(|r| r.matches(Some(name)))
            })
    }
}

/// A pod's required node affinity and node selector, parsed once (Kubernetes'
/// `RequiredNodeAffinity`).
///
/// # Examples
///
/// ```
/// use orchestra_core::k8s::api::core::v1::{Node, Pod};
/// use orchestra_core::scheduler::plugins::node_affinity::RequiredNodeAffinity;
///
/// let pod: Pod = serde_json::from_value(serde_json::json!({
///     "metadata": {"name": "p"},
///     "spec": {"containers": [], "affinity": {"nodeAffinity": {
///         "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
///             {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["8"]}]}
///         ]}
///     }}}
/// }))?;
/// let node: Node = serde_json::from_value(serde_json::json!({
///     "metadata": {"name": "n", "labels": {"cores": "16"}}
/// }))?;
/// assert!(RequiredNodeAffinity::new(&pod).matches(&node));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct RequiredNodeAffinity {
    /// The `nodeSelector` pairs, in key order.
    node_selector: Vec<(String, String)>,
    /// `None`: no required affinity; `Some(terms)`: at least one must match (the valid ones).
    terms: Option<Vec<CompiledTerm>>,
}

impl RequiredNodeAffinity {
    /// The pod's `spec.nodeSelector` and required node affinity.
    pub fn new(pod: &Pod) -> RequiredNodeAffinity {
        let spec = pod.spec.as_ref();
        let node_selector = spec
            .and_then(|spec| spec.node_selector.as_ref())
            .map(|selector| {
                selector
                    .iter()
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let terms = spec
            .and_then(|spec| spec.affinity.as_ref())
            .and_then(|affinity| affinity.node_affinity.as_ref())
            .and_then(|node_affinity| {
                node_affinity
                    .required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|selector| {
                selector
                    .node_selector_terms
                    .iter()
                    .filter_map(CompiledTerm::new)
                    .collect()
            });
        RequiredNodeAffinity {
            node_selector,
            terms,
        }
    }

    /// Whether the node's labels have every `nodeSelector` pair and, if the pod has required
    /// node affinity, match at least one of its terms.
    pub fn matches(&self, node: &Node) -> bool {
        if !self.node_selector.is_empty() {
            let Some(labels) = node.metadata.labels.as_ref() else {
                return false;
            };
            if !self
                .node_selector
                .iter()
                .all(|(key, value)| label_value(labels, key) == Some(value.as_str()))
            {
                return false;
            }
        }
        match &self.terms {
            None => true,
            Some(terms) => terms.iter().any(|term| term.matches(node)),
        }
    }
}

/// The node names the required terms allow (from `matchFields` on `metadata.name` with `In`):
/// `None` when some term does not restrict names; an empty set when the terms conflict.
fn required_node_names(pod: &Pod) -> Option<BTreeSet<String>> {
    let terms = &pod
        .spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    if terms.is_empty() {
        return None;
    }
    let mut names = BTreeSet::new();
    for term in terms {
        let mut term_names: Option<BTreeSet<String>> = None;
        for r in term.match_fields.iter().flatten() {
            if r.key == OBJECT_NAME_FIELD && r.operator == "In" {
                let values: BTreeSet<String> = r.values.iter().flatten().cloned().collect();
                term_names = Some(match term_names {
                    None => values,
                    Some(previous) => previous.intersection(&values).cloned().collect(),
                });
            }
        }
        names.extend(term_names?);
    }
    Some(names)
}

#[derive(Debug)]
struct PreFilterState {
    required: RequiredNodeAffinity,
}

#[derive(Debug)]
struct PreScoreState {
    preferred: Vec<(CompiledTerm, i64)>,
}

/// Filters out nodes that do not match the pod's `nodeSelector` or required node affinity
/// (unresolvably, with `node(s) didn't match Pod's node affinity/selector`), and scores nodes by
/// the summed weights of the preferred terms they match, normalised to `0..=100`
/// (kube-scheduler's NodeAffinity; default score weight 2).
///
/// Requirements support the operators `In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt` and `Lt` on
/// labels, and `In`/`NotIn` on the field `metadata.name`. PreFilter parses them once per cycle,
/// returns [`Code::Skip`](crate::scheduler::framework::Code::Skip) for pods with neither, and,
/// when every required term names its nodes (`matchFields` on `metadata.name` with `In`, as
/// DaemonSet pods have), restricts the cycle to those nodes
/// ([`CycleState::restrict_nodes`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeAffinity;

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
}

fn has_required(pod: &Pod) -> bool {
    pod.spec.as_ref().is_some_and(|spec| {
        spec.node_selector.is_some()
            || spec
                .affinity
                .as_ref()
                .and_then(|a| a.node_affinity.as_ref())
                .is_some_and(|na| {
                    na.required_during_scheduling_ignored_during_execution
                        .is_some()
                })
    })
}

impl PreFilterPlugin for NodeAffinity {
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, _nodes: &[Arc<NodeInfo>]) -> Status {
        if !has_required(pod) {
            return Status::skip(NAME);
        }
        if let Some(names) = required_node_names(pod) {
            if names.is_empty() {
                return Status::unresolvable(NAME, ERR_REASON_CONFLICT);
            }
            state.restrict_nodes(names);
        }
        state.write(
            PRE_FILTER_KEY,
            PreFilterState {
                required: RequiredNodeAffinity::new(pod),
            },
        );
        Status::SUCCESS
    }
}

impl FilterPlugin for NodeAffinity {
    fn filter(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        let matches = match state.read::<PreFilterState>(PRE_FILTER_KEY) {
            Some(pre) => pre.required.matches(node.node()),
            // PreFilter disabled or skipped: compute here, as Kubernetes falls back to.
            None => RequiredNodeAffinity::new(pod).matches(node.node()),
        };
        if matches {
            Status::SUCCESS
        } else {
            Status::unresolvable(NAME, ERR_REASON_POD)
        }
    }
}

impl PreScorePlugin for NodeAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        _feasible: &[&NodeInfo],
        _all: &[Arc<NodeInfo>],
    ) -> Status {
        let preferred: Vec<(CompiledTerm, i64)> = pod
            .spec
            .as_ref()
            .and_then(|spec| spec.affinity.as_ref())
            .and_then(|affinity| affinity.node_affinity.as_ref())
            .and_then(|na| {
                na.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .into_iter()
            .flatten()
            .filter(|term| term.weight != 0)
            .filter_map(|term| Some((CompiledTerm::new(&term.preference)?, i64::from(term.weight))))
            .collect();
        if preferred.is_empty() {
            return Status::skip(NAME);
        }
        state.write(PRE_SCORE_KEY, PreScoreState { preferred });
        Status::SUCCESS
    }
}

impl ScorePlugin for NodeAffinity {
    fn score(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        let pre = state.read_or_error::<PreScoreState>(PRE_SCORE_KEY, NAME)?;
        Ok(pre
            .preferred
            .iter()
            .filter(|(term, _)| term.matches(node.node()))
            .map(|(_, weight)| *weight)
            .sum())
    }

    fn normalize(&self, scores: &mut [NodeScore]) {
        default_normalize_score(MAX_NODE_SCORE, false, scores);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::{Code, Profile};
    use crate::scheduler::plugins::test_util::{node, pod};
    use serde_json::{Value, json};
    use std::sync::Arc;

    fn labelled(name: &str, labels: Value) -> NodeInfo {
        node(json!({"metadata": {"name": name, "labels": labels}}))
    }

    fn required(terms: Value) -> Pod {
        pod(json!({"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}
        }}}))
    }

    fn expr(key: &str, op: &str, values: Value) -> Value {
        json!({"matchExpressions": [{"key": key, "operator": op, "values": values}]})
    }

    fn run(p: &Pod, n: &NodeInfo) -> Status {
        let plugin = Arc::new(NodeAffinity);
        let profile = Profile::new("p")
            .with_pre_filter(plugin.clone())
            .with_filter(plugin);
        let mut state = CycleState::new();
        let status = profile.run_pre_filter(&mut state, p, &[]);
        if !status.is_success() {
            return status;
        }
        profile.run_filter(&state, p, n)
    }

    fn fits(p: &Pod, n: &NodeInfo) -> bool {
        run(p, n).is_success()
    }

    #[test]
    fn node_selector() {
        let n = labelled("n", json!({"foo": "bar", "baz": "blah"}));
        assert!(fits(&pod(json!({"containers": []})), &n));
        assert!(fits(
            &pod(json!({"containers": [], "nodeSelector": {"foo": "bar"}})),
            &n
        ));
        let status = run(
            &pod(json!({"containers": [], "nodeSelector": {"foo": "bar", "x": "y"}})),
            &n,
        );
        assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(status.reasons, [ERR_REASON_POD]);
        assert!(!fits(
            &pod(json!({"containers": [], "nodeSelector": {"foo": "bar"}})),
            &labelled("m", json!({}))
        ));
        // Both nodeSelector and affinity must hold.
        let mut p = required(json!([expr("foo", "Exists", json!([]))]));
        if let Some(spec) = p.spec.as_mut() {
            spec.node_selector = Some(BTreeMap::from([("baz".to_owned(), "other".to_owned())]));
        }
        assert!(!fits(&p, &n));
    }

    #[test]
    fn operators() {
        let n = labelled("n", json!({"foo": "bar", "gpus": "4", "zone": "a"}));
        assert!(fits(
            &required(json!([expr("foo", "In", json!(["bar", "value2"]))])),
            &n
        ));
        assert!(!fits(
            &required(json!([expr("foo", "In", json!(["value1", "value2"]))])),
            &n
        ));
        assert!(fits(
            &required(json!([expr("foo", "NotIn", json!(["value1"]))])),
            &n
        ));
        assert!(!fits(
            &required(json!([expr("foo", "NotIn", json!(["bar"]))])),
            &n
        ));
        assert!(fits(
            &required(json!([expr("missing", "NotIn", json!(["bar"]))])),
            &n
        ));
        assert!(fits(
            &required(json!([expr("foo", "Exists", json!([]))])),
            &n
        ));
        assert!(!fits(
            &required(json!([expr("missing", "Exists", json!([]))])),
            &n
        ));
        assert!(fits(
            &required(json!([expr("missing", "DoesNotExist", json!([]))])),
            &n
        ));
        assert!(!fits(
            &required(json!([expr("foo", "DoesNotExist", json!([]))])),
            &n
        ));
        assert!(fits(
            &required(json!([expr("gpus", "Gt", json!(["3"]))])),
            &n
        ));
        assert!(!fits(
            &required(json!([expr("gpus", "Gt", json!(["4"]))])),
            &n
        ));
        assert!(fits(
            &required(json!([expr("gpus", "Lt", json!(["5"]))])),
            &n
        ));
        assert!(!fits(
            &required(json!([expr("gpus", "Lt", json!(["4"]))])),
            &n
        ));
        // Gt on a non-integer label or with a non-integer value matches nothing.
        assert!(!fits(
            &required(json!([expr("foo", "Gt", json!(["1"]))])),
            &n
        ));
        assert!(!fits(
            &required(json!([expr("gpus", "Gt", json!(["x"]))])),
            &n
        ));
        // Invalid requirement (In without values) and unknown operator: the term matches nothing.
        assert!(!fits(&required(json!([expr("foo", "In", json!([]))])), &n));
        assert!(!fits(
            &required(json!([expr("foo", "Like", json!(["bar"]))])),
            &n
        ));
        // Expressions in a term are ANDed; terms are ORed.
        let both = json!([{"matchExpressions": [
            {"key": "foo", "operator": "In", "values": ["bar"]},
            {"key": "zone", "operator": "In", "values": ["b"]}
        ]}]);
        assert!(!fits(&required(both), &n));
        assert!(fits(
            &required(json!([
                expr("zone", "In", json!(["b"])),
                expr("zone", "In", json!(["a"]))
            ])),
            &n
        ));
        // Empty terms and an empty list match nothing.
        assert!(!fits(&required(json!([{}])), &n));
        assert!(!fits(&required(json!([{"matchExpressions": []}])), &n));
        assert!(!fits(&required(json!([])), &n));
    }

    #[test]
    fn match_fields_on_name() {
        let n = labelled("node1", json!({"foo": "bar"}));
        let field = |op: &str, name: &str| json!({"matchFields": [{"key": "metadata.name", "operator": op, "values": [name]}]});
        assert!(fits(&required(json!([field("In", "node1")])), &n));
        assert!(!fits(&required(json!([field("In", "node2")])), &n));
        assert!(fits(&required(json!([field("NotIn", "node2")])), &n));
        assert!(!fits(&required(json!([field("NotIn", "node1")])), &n));
        // Other fields are invalid.
        assert!(!fits(
            &required(
                json!([{"matchFields": [{"key": "metadata.uid", "operator": "In", "values": ["x"]}]}])
            ),
            &n
        ));
        // Fields AND labels in one term.
        let term = json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node1"]}],
            "matchExpressions": [{"key": "foo", "operator": "In", "values": ["nope"]}]}]);
        assert!(!fits(&required(term), &n));
        // Terms that all name nodes restrict the cycle to the union of their names.
        let mut state = CycleState::new();
        let p = required(json!([field("In", "node1"), field("In", "node3")]));
        assert!(NodeAffinity.pre_filter(&mut state, &p, &[]).is_success());
        assert_eq!(
            state.node_names(),
            Some(&BTreeSet::from(["node1".to_owned(), "node3".to_owned()]))
        );
        let mut state = CycleState::new();
        let p = required(json!([
            field("In", "node1"),
            expr("foo", "Exists", json!([]))
        ]));
        assert!(NodeAffinity.pre_filter(&mut state, &p, &[]).is_success());
        assert_eq!(state.node_names(), None);
        // Conflicting names across a term's fields: rejected in PreFilter.
        let conflict = json!([{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["node1"]},
            {"key": "metadata.name", "operator": "In", "values": ["node2"]}
        ]}]);
        let status = run(&required(conflict), &n);
        assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(status.reasons, [ERR_REASON_CONFLICT]);
    }

    #[test]
    fn filter_without_pre_filter_falls_back() {
        let n = labelled("n", json!({"foo": "bar"}));
        let p = required(json!([expr("foo", "In", json!(["baz"]))]));
        assert!(!NodeAffinity.filter(&CycleState::new(), &p, &n).is_success());
        let mut state = CycleState::new();
        assert_eq!(
            NodeAffinity
                .pre_filter(&mut state, &pod(json!({"containers": []})), &[])
                .code,
            Code::Skip
        );
    }

    #[test]
    fn preferred_score_normalized() {
        let p = pod(json!({"containers": [], "affinity": {"nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 2, "preference": expr("foo", "In", json!(["bar"]))},
                {"weight": 4, "preference": expr("key", "In", json!(["value"]))},
                {"weight": 5, "preference": expr("az", "In", json!(["az1"]))},
                {"weight": 0, "preference": expr("foo", "Exists", json!([]))},
                {"weight": 9, "preference": {}}
            ]
        }}}));
        let nodes = [
            labelled("n1", json!({"foo": "bar"})),
            labelled("n2", json!({"key": "value", "az": "az1"})),
            labelled("n3", json!({"foo": "bar", "key": "value", "az": "az1"})),
            labelled("n4", json!({})),
        ];
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let plugin = Arc::new(NodeAffinity);
        let profile = Profile::new("p")
            .with_pre_score(plugin.clone())
            .with_score(plugin, 2);
        let mut state = CycleState::new();
        assert!(
            profile
                .run_pre_score(&mut state, &p, &refs, &[])
                .is_success()
        );
        let scores: Vec<i64> = profile
            .run_score(&state, &p, &refs)
            .unwrap()
            .iter()
            .map(|s| s.score)
            .collect();
        // Raw 2, 9, 11, 0 → ×100/11 → 18, 81, 100, 0 → ×weight 2.
        assert_eq!(scores, [36, 162, 200, 0]);
        // No preferred terms: skipped.
        let mut state = CycleState::new();
        assert_eq!(
            NodeAffinity
                .pre_score(&mut state, &pod(json!({"containers": []})), &refs, &[])
                .code,
            Code::Skip
        );
        assert!(
            profile
                .run_pre_score(&mut state, &pod(json!({"containers": []})), &refs, &[])
                .is_success()
        );
        assert!(state.skips_score(NAME));
    }
}
