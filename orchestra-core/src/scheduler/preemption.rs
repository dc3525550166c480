//! DefaultPreemption: when a pod fits no node, find the node where evicting the fewest and least
//! important lower-priority pods makes room for it.
//!
//! This is kube-scheduler's DefaultPreemption PostFilter plugin
//! (`pkg/scheduler/framework/plugins/defaultpreemption` and `pkg/scheduler/framework/preemption`)
//! as pure logic: it reads the cycle's nodes and the filters' verdicts and returns the node to
//! nominate with the pods to evict, and leaves the deleting, the `DisruptionTarget` condition and
//! the `status.nominatedNodeName` patch to the scheduling loop. It runs in four steps:
//!
//! 1. **Eligibility.** A pod with `spec.preemptionPolicy: Never` never preempts. A pod already
//!    nominated to a node where a lower-priority pod is terminating (its victims are still going
//!    away) waits rather than preempting more, unless the filters found that node unresolvable.
//! 2. **Candidates.** Only nodes the filters rejected as [`Code::Unschedulable`] are tried
//!    (removing pods cannot help an [`Code::UnschedulableAndUnresolvable`] node, nor a node with no
//!    status). On each, all pods of lower priority than the preemptor are removed from a copy of
//!    the node and the profile's PreFilter and Filter run again; if the pod still does not fit,
//!    the node is no candidate. Otherwise the removed pods are *reprieved* one by one, most
//!    important first (higher priority, then the one that started earlier): each is put back and
//!    stays if the pod still fits, else it is a victim. The search starts at an offset derived
//!    from the pod's name and stops after [`num_candidates`] candidates (10% of the nodes that
//!    might help, at least 100), as kube-scheduler's `minCandidateNodesPercentage` and
//!    `minCandidateNodesAbsolute`.
//! 3. **Choice** (kube-scheduler's `pickOneNodeForPreemption`): the candidate with the
//!    fewest PodDisruptionBudget violations, then the lowest highest-victim priority, then the
//!    smallest sum of victim priorities (each shifted by 2³¹ so that more victims never look
//!    cheaper), then the fewest victims, then the latest start time of its highest-priority
//!    victims, then the first in the nodes' order.
//! 4. **Result:** a [`PostFilterResult`] naming the node and its victims, least important first;
//!    or, when no node qualifies, an unschedulable status worded as kube-scheduler words it, such
//!    as `preemption: 0/3 nodes are available: 1 Insufficient cpu, 2 No preemption victims found
//!    for incoming pod.`
//!
//! # Differences from kube-scheduler
//!
//! - There are no PodDisruptionBudgets in Orchestra yet: every candidate violates none, and the
//!   reprieve does not try PDB-protected pods first.
//! - PreFilter is re-run from scratch on a copy of the cycle's nodes with the candidate node
//!   replaced, where kube-scheduler clones the cycle state and updates it through the plugins'
//!   `AddPod`/`RemovePod` PreFilter extensions. The outcome is the same for plugins whose
//!   PreFilter reads the nodes it is given; the state handed to [`PostFilterPlugin::post_filter`]
//!   is not read.
//! - Pods nominated to a node but not yet bound are not counted while checking it (kube-scheduler's
//!   `RunFilterPluginsWithNominatedPods`): the scheduler has no nominator yet.
//! - The first node of the search is derived from a hash of the pod's `namespace/name`, not
//!   drawn at random, and the last tie-breaker is the nodes' order, not Go's map order, so the
//!   same cluster always gives the same answer.
//! - The terminating-pod check on the nominated node looks at `metadata.deletionTimestamp` only;
//!   recent kube-scheduler versions also require the pod's `DisruptionTarget` condition with
//!   reason `PreemptionByScheduler`.
//! - When nothing can be preempted kube-scheduler returns a result with an empty nominated node
//!   together with the status, to clear a stale nomination; here the status alone is returned,
//!   and clearing the nomination is the caller's business.
//!
//! # Examples
//!
//! ```
//! use std::collections::BTreeMap;
//! use std::sync::Arc;
//!
//! use orchestra_core::k8s::api::core::v1::{Node, Pod};
//! use orchestra_core::scheduler::framework::{CycleState, PostFilterContext, PostFilterPlugin};
//! use orchestra_core::scheduler::node_info::NodeInfo;
//! use orchestra_core::scheduler::plugins::default_profile;
//! use orchestra_core::scheduler::preemption::DefaultPreemption;
//!
//! let pod = |name: &str, priority: i32| -> Result<Pod, serde_json::Error> {
//!     serde_json::from_value(serde_json::json!({
//!         "metadata": {"name": name, "namespace": "default"},
//!         "spec": {"priority": priority, "containers": [
//!             {"name": "c", "resources": {"requests": {"cpu": "2"}}}
//!         ]}
//!     }))
//! };
//! let node: Node = serde_json::from_value(serde_json::json!({
//!     "metadata": {"name": "n1"},
//!     "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}
//! }))?;
//! let mut info = NodeInfo::new(Arc::new(node));
//! info.add_pod(&pod("batch", 0)?);
//! info.add_pod(&pod("web", 1000)?);
//! let nodes = [Arc::new(info)];
//!
//! // The scheduling cycle found no room for a priority-500 pod.
//! let profile = default_profile();
//! let preemptor = pod("urgent", 500)?;
//! let mut state = CycleState::new();
//! profile.run_pre_filter(&mut state, &preemptor, &nodes);
//! let statuses: BTreeMap<String, _> = nodes
//!     .iter()
//!     .map(|n| (n.name().to_owned(), profile.run_filter(&state, &preemptor, n)))
//!     .collect();
//!
//! let context = PostFilterContext { profile: &profile, nodes: &nodes, statuses: &statuses };
//! let result = DefaultPreemption::default()
//!     .post_filter(&state, &preemptor, &context)
//!     .map_err(|status| status.to_string())?;
//! assert_eq!(result.nominated_node, "n1");
//! let victims: Vec<_> = result.victims.iter().map(|p| p.metadata.name.as_deref()).collect();
//! assert_eq!(victims, [Some("batch")]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cmp::{Ordering, Reverse};
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::framework::{
    Code, CycleState, Plugin, PostFilterContext, PostFilterPlugin, PostFilterResult, Profile,
    Status,
};
use super::node_info::{NodeInfo, pod_key};

/// The plugin's name.
pub const NAME: &str = "DefaultPreemption";
/// The reason for a node with no pod of lower priority than the preemptor.
pub const ERR_REASON_NO_VICTIMS: &str = "No preemption victims found for incoming pod";
/// The reason counted for the nodes preemption did not try (unresolvable or without status).
pub const ERR_REASON_NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// Why a pod with `preemptionPolicy: Never` does not preempt.
pub const ERR_REASON_PREEMPTION_POLICY_NEVER: &str = "not eligible due to preemptionPolicy=Never.";
/// Why a pod whose earlier victims are still terminating does not preempt again.
pub const ERR_REASON_TERMINATING_ON_NOMINATED: &str =
    "not eligible due to a terminating pod on the nominated node.";
/// The prefix kube-scheduler puts before every message of the plugin.
const MESSAGE_PREFIX: &str = "preemption: ";

/// kube-scheduler's DefaultPreemption PostFilter plugin: see the [module documentation](self).
///
/// The two fields are kube-scheduler's `DefaultPreemptionArgs`: the search for candidate nodes
/// stops once it has found `max(min_candidate_nodes_percentage% of the nodes tried,
/// min_candidate_nodes_absolute)` of them (see [`num_candidates`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultPreemption {
    /// The share of the nodes tried, in percent, that the search collects as candidates at
    /// least (Kubernetes' default: 10).
    pub min_candidate_nodes_percentage: u32,
    /// The number of candidates the search collects at least (Kubernetes' default: 100).
    pub min_candidate_nodes_absolute: u32,
}

impl Default for DefaultPreemption {
    fn default() -> DefaultPreemption {
        DefaultPreemption {
            min_candidate_nodes_percentage: 10,
            min_candidate_nodes_absolute: 100,
        }
    }
}

/// How many candidates the search collects among `nodes` nodes that might help, before picking
/// one (kube-scheduler's `calculateNumCandidates`): `percentage`% of them, at least `absolute`,
/// at most all of them, and at least one.
///
/// # Examples
///
/// ```
/// use orchestra_core::scheduler::preemption::num_candidates;
///
/// assert_eq!(num_candidates(5, 10, 100), 5);
/// assert_eq!(num_candidates(500, 10, 100), 100);
/// assert_eq!(num_candidates(5000, 10, 100), 500);
/// ```
pub fn num_candidates(nodes: usize, percentage: u32, absolute: u32) -> usize {
    let share = nodes.saturating_mul(percentage as usize) / 100;
    share.max(absolute as usize).min(nodes).max(1)
}

impl Plugin for DefaultPreemption {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PostFilterPlugin for DefaultPreemption {
    fn post_filter(
        &self,
        _state: &CycleState,
        pod: &Pod,
        context: &PostFilterContext<'_>,
    ) -> Result<PostFilterResult, Status> {
        if let Err(reason) = eligible_to_preempt(pod, context) {
            return Err(Status::unschedulable(
                NAME,
                format!("{MESSAGE_PREFIX}{reason}"),
            ));
        }
        if context.nodes.is_empty() {
            return Err(Status::error(
                NAME,
                format!("{MESSAGE_PREFIX}no nodes available"),
            ));
        }
        let (candidates, tried) = self.find_candidates(pod, context);
        if let Some(best) = pick_one_node_for_preemption(&candidates) {
            // Least important first: the reverse of kube-scheduler's order.
            let victims = best.victims.iter().rev().cloned().collect();
            return Ok(PostFilterResult {
                nominated_node: best.name.clone(),
                victims,
            });
        }
        let errors: Vec<&str> = tried
            .values()
            .filter(|status| status.code == Code::Error)
            .flat_map(|status| status.reasons.iter().map(|reason| reason.as_ref()))
            .collect();
        if !errors.is_empty() {
            let joined = if errors.len() == 1 {
                errors.join("")
            } else {
                format!("[{}]", errors.join(", "))
            };
            return Err(Status::error(NAME, format!("{MESSAGE_PREFIX}{joined}")));
        }
        Err(Status::unschedulable(
            NAME,
            no_candidate_message(context.nodes.len(), &tried),
        ))
    }
}

/// A node where the preemptor fits once its victims are gone.
#[derive(Clone, Debug)]
struct Candidate {
    /// The node's position in the cycle's nodes.
    index: usize,
    /// The node's name.
    name: String,
    /// The pods to evict, most important first.
    victims: Vec<Arc<Pod>>,
    /// How many victims would violate a PodDisruptionBudget (always 0: there are none).
    pdb_violations: i64,
}

impl DefaultPreemption {
    /// Tries the nodes the filters found unschedulable (but not unresolvable), from an offset
    /// derived from the pod's name, until enough candidates are found. Returns the candidates
    /// and the status of every node tried that is not one.
    fn find_candidates(
        &self,
        pod: &Pod,
        context: &PostFilterContext<'_>,
    ) -> (Vec<Candidate>, BTreeMap<String, Status>) {
        let mut tried = BTreeMap::new();
        let potential: Vec<usize> = context
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| {
                context
                    .statuses
                    .get(node.name())
                    .is_some_and(|status| status.code == Code::Unschedulable)
            })
            .map(|(index, _)| index)
            .collect();
        if potential.is_empty() {
            return (Vec::new(), tried);
        }
        let wanted = num_candidates(
            potential.len(),
            self.min_candidate_nodes_percentage,
            self.min_candidate_nodes_absolute,
        );
        let offset = name_offset(pod, potential.len());
        // One copy of the node list for the whole search: the node being tried is swapped for
        // a private copy and swapped back afterwards.
        let mut scratch: Vec<Arc<NodeInfo>> = context.nodes.to_vec();
        let mut candidates = Vec::new();
        for step in 0..potential.len() {
            let Some(&index) = potential.get((offset + step) % potential.len()) else {
                continue;
            };
            let Some(original) = context.nodes.get(index) else {
                continue;
            };
            let name = original.name().to_owned();
            match select_victims_on_node(context.profile, pod, &mut scratch, index) {
                Ok(victims) if victims.is_empty() => {
                    let reason = format!("expected at least one victim pod on node {name:?}");
                    tried.insert(name, Status::error(NAME, reason));
                }
                Ok(victims) => {
                    candidates.push(Candidate {
                        index,
                        name,
                        victims,
                        pdb_violations: 0,
                    });
                }
                Err(status) => {
                    tried.insert(name, status);
                }
            }
            if let Some(slot) = scratch.get_mut(index) {
                *slot = original.clone();
            }
            if candidates.len() >= wanted {
                break;
            }
        }
        (candidates, tried)
    }
}

/// Whether the pod may preempt (kube-scheduler's `PodEligibleToPreemptOthers`), or the reason
/// why not.
fn eligible_to_preempt(pod: &Pod, context: &PostFilterContext<'_>) -> Result<(), &'static str> {
    let spec = pod.spec.as_ref();
    if spec.and_then(|spec| spec.preemption_policy.as_deref()) == Some("Never") {
        return Err(ERR_REASON_PREEMPTION_POLICY_NEVER);
    }
    let nominated = pod
        .status
        .as_ref()
        .and_then(|status| status.nominated_node_name.as_deref())
        .filter(|name| !name.is_empty());
    let Some(nominated) = nominated else {
        return Ok(());
    };
    // A nominated node the filters found unresolvable (or did not report, which kube-scheduler
    // reads the same way) is no reason to wait.
    let resolvable = context
        .statuses
        .get(nominated)
        .is_some_and(|status| status.code != Code::UnschedulableAndUnresolvable);
    if !resolvable {
        return Ok(());
    }
    let priority = pod_priority(pod);
    let terminating = context
        .nodes
        .iter()
        .filter(|node| node.name() == nominated)
        .flat_map(|node| node.pods())
        .any(|other| pod_priority(other) < priority && other.metadata.deletion_timestamp.is_some());
    if terminating {
        Err(ERR_REASON_TERMINATING_ON_NOMINATED)
    } else {
        Ok(())
    }
}

/// The victims on `scratch[index]` (kube-scheduler's `SelectVictimsOnNode`), most important
/// first, or the status saying why the pod does not fit even with every lower-priority pod gone.
///
/// `scratch[index]` is replaced by the node as it would be after the preemption; the caller puts
/// the original back.
fn select_victims_on_node(
    profile: &Profile,
    pod: &Pod,
    scratch: &mut [Arc<NodeInfo>],
    index: usize,
) -> Result<Vec<Arc<Pod>>, Status> {
    let priority = pod_priority(pod);
    let Some(slot) = scratch.get_mut(index) else {
        return Err(Status::error(NAME, format!("no node at index {index}")));
    };
    let mut node = NodeInfo::clone(slot);
    let mut potential: Vec<Arc<Pod>> = node
        .pods()
        .filter(|other| pod_priority(other) < priority)
        .cloned()
        .collect();
    if potential.is_empty() {
        return Err(Status::unresolvable(NAME, ERR_REASON_NO_VICTIMS));
    }
    for victim in &potential {
        node.remove_key(&pod_key(victim));
    }
    *slot = Arc::new(node);
    let status = fits(profile, pod, scratch, index);
    if !status.is_success() {
        return Err(status);
    }
    // Reprieve the most important first.
    potential.sort_by(|a, b| more_important(a, b));
    let mut victims = Vec::new();
    for candidate in potential {
        if let Some(slot) = scratch.get_mut(index) {
            Arc::make_mut(slot).add_pod_arc(candidate.clone());
        }
        if !fits(profile, pod, scratch, index).is_success() {
            if let Some(slot) = scratch.get_mut(index) {
                Arc::make_mut(slot).remove_key(&pod_key(&candidate));
            }
            victims.push(candidate);
        }
    }
    Ok(victims)
}

/// Whether the pod fits `nodes[index]`: the profile's PreFilter over `nodes`, the PreFilter's
/// node restriction, then its Filter on the node.
fn fits(profile: &Profile, pod: &Pod, nodes: &[Arc<NodeInfo>], index: usize) -> Status {
    let Some(node) = nodes.get(index) else {
        return Status::error(NAME, format!("no node at index {index}"));
    };
    let mut state = CycleState::new();
    let status = profile.run_pre_filter(&mut state, pod, nodes);
    if !status.is_success() {
        return status;
    }
    if let Some(names) = state.node_names()
        && !names.contains(node.name())
    {
        return Status::unresolvable(NAME, "node(s) didn't satisfy plugin(s) PreFilter");
    }
    profile.run_filter(&state, pod, node)
}

/// Picks the candidate to preempt on (kube-scheduler's `pickOneNodeForPreemption`): the fewest
/// PDB violations, then the lowest highest-victim priority, then the smallest sum of victim
/// priorities each shifted by 2³¹, then the fewest victims, then the latest start time of the
/// highest-priority victims, then the first in the nodes' order.
fn pick_one_node_for_preemption(candidates: &[Candidate]) -> Option<&Candidate> {
    candidates.iter().min_by_key(|candidate| {
        let highest = candidate
            .victims
            .first()
            .map_or(i32::MIN, |p| pod_priority(p));
        let sum: i64 = candidate
            .victims
            .iter()
            .map(|p| i64::from(pod_priority(p)) + i64::from(i32::MAX) + 1)
            .sum();
        let earliest_of_highest = candidate
            .victims
            .iter()
            .filter(|p| pod_priority(p) == highest)
            .map(|p| start_time(p))
            .min();
        (
            candidate.pdb_violations,
            highest,
            sum,
            candidate.victims.len(),
            Reverse(earliest_of_highest),
            candidate.index,
        )
    })
}

/// kube-scheduler's message when preemption found nothing: `0/N nodes are available:` and the
/// sorted counts of each reason, nodes not tried counting as "Preemption is not helpful for
/// scheduling".
fn no_candidate_message(all_nodes: usize, tried: &BTreeMap<String, Status>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for status in tried.values() {
        for reason in &status.reasons {
            *counts.entry(reason.as_ref()).or_default() += 1;
        }
    }
    let untried = all_nodes.saturating_sub(tried.len());
    if untried > 0 {
        *counts.entry(ERR_REASON_NOT_HELPFUL).or_default() += untried;
    }
    let mut reasons: Vec<String> = counts
        .iter()
        .map(|(reason, count)| format!("{count} {reason}"))
        .collect();
    reasons.sort();
    let mut message = format!("{MESSAGE_PREFIX}0/{all_nodes} nodes are available:");
    if !reasons.is_empty() {
        message.push(' ');
        message.push_str(&reasons.join(", "));
        message.push('.');
    }
    message
}

/// The pod's priority: `spec.priority`, 0 when unset.
fn pod_priority(pod: &Pod) -> i32 {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.priority)
        .unwrap_or(0)
}

/// A pod's start time for ordering. As in Kubernetes, a pod with no `status.startTime` counts as
/// starting now, after every recorded time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum StartTime<'a> {
    At(&'a Time),
    NotYet,
}

fn start_time(pod: &Pod) -> StartTime<'_> {
    pod.status
        .as_ref()
        .and_then(|status| status.start_time.as_ref())
        .map_or(StartTime::NotYet, StartTime::At)
}

/// Kubernetes' `MoreImportantPod` as an ordering: `Less` when `a` is more important (higher
/// priority, then started earlier).
fn more_important(a: &Pod, b: &Pod) -> Ordering {
    pod_priority(b)
        .cmp(&pod_priority(a))
        .then_with(|| start_time(a).cmp(&start_time(b)))
}

/// Where the search starts among `len` nodes: the FNV-1a hash of the pod's `namespace/name`,
/// modulo `len` (kube-scheduler draws it at random).
fn name_offset(pod: &Pod, len: usize) -> usize {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = pod_key(pod).bytes().fold(FNV_OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    });
    if len == 0 {
        0
    } else {
        (hash % len as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::default_profile;
    use k8s_openapi::api::core::v1::Node;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn node_with(name: &str, milli_cpu: i64, labels: Value) -> NodeInfo {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "status": {"allocatable": {"cpu": format!("{milli_cpu}m"), "memory": "8Gi", "pods": "110"}}
        }))
        .unwrap();
        NodeInfo::new(Arc::new(node))
    }

    fn node(name: &str, milli_cpu: i64) -> NodeInfo {
        node_with(name, milli_cpu, json!({}))
    }

    fn pod_with(name: &str, priority: i32, milli_cpu: i64, extra: Value) -> Pod {
        let mut value = json!({
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"priority": priority, "containers": [
                {"name": "c", "resources": {"requests": {"cpu": format!("{milli_cpu}m")}}}
            ]}
        });
        merge(&mut value, extra);
        serde_json::from_value(value).unwrap()
    }

    fn merge(into: &mut Value, from: Value) {
        match (into, from) {
            (Value::Object(into), Value::Object(from)) => {
                for (key, value) in from {
                    merge(into.entry(key).or_insert(Value::Null), value);
                }
            }
            (into, from) => *into = from,
        }
    }

    fn pod(name: &str, priority: i32, milli_cpu: i64) -> Pod {
        pod_with(name, priority, milli_cpu, json!({}))
    }

    fn with_pods(mut node: NodeInfo, pods: &[Pod]) -> NodeInfo {
        for pod in pods {
            node.add_pod(pod);
        }
        node
    }

    /// The statuses of a scheduling cycle's filters for `pod` over `nodes` (failing nodes only).
    fn filter_statuses(
        profile: &Profile,
        pod: &Pod,
        nodes: &[Arc<NodeInfo>],
    ) -> BTreeMap<String, Status> {
        let mut state = CycleState::new();
        let status = profile.run_pre_filter(&mut state, pod, nodes);
        nodes
            .iter()
            .filter_map(|node| {
                let status = if status.is_success() {
                    profile.run_filter(&state, pod, node)
                } else {
                    status.clone()
                };
                (!status.is_success()).then(|| (node.name().to_owned(), status))
            })
            .collect()
    }

    fn preempt(nodes: &[Arc<NodeInfo>], pod: &Pod) -> Result<PostFilterResult, Status> {
        let profile = default_profile();
        let statuses = filter_statuses(&profile, pod, nodes);
        let context = PostFilterContext {
            profile: &profile,
            nodes,
            statuses: &statuses,
        };
        DefaultPreemption::default().post_filter(&CycleState::new(), pod, &context)
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
        pods.iter()
            .map(|p| p.metadata.name.as_deref().unwrap_or(""))
            .collect()
    }

    fn arcs(nodes: Vec<NodeInfo>) -> Vec<Arc<NodeInfo>> {
        nodes.into_iter().map(Arc::new).collect()
    }

    #[test]
    fn displaces_fewest_lowest_priority_pods() {
        let nodes = arcs(vec![
            with_pods(
                node("a", 4000),
                &[pod("a-low", 0, 2000), pod("a-mid", 1, 2000)],
            ),
            with_pods(
                node("b", 4000),
                &[
                    pod("b-low1", 0, 1000),
                    pod("b-low2", 0, 1000),
                    pod("b-high", 2, 2000),
                ],
            ),
        ]);
        let result = preempt(&nodes, &pod("urgent", 10, 2000)).unwrap();
        // Both nodes need only priority-0 victims; "a" needs one, "b" two.
        assert_eq!(result.nominated_node, "a");
        assert_eq!(names(&result.victims), ["a-low"]);
    }

    #[test]
    fn lower_highest_victim_priority_wins_over_fewer_victims() {
        let nodes = arcs(vec![
            with_pods(node("a", 2000), &[pod("a-mid", 5, 2000)]),
            with_pods(
                node("b", 2000),
                &[pod("b-low1", 1, 1000), pod("b-low2", 1, 1000)],
            ),
        ]);
        let result = preempt(&nodes, &pod("urgent", 10, 2000)).unwrap();
        assert_eq!(result.nominated_node, "b");
        // Equal importance: the reverse of the nodes' key order.
        assert_eq!(names(&result.victims), ["b-low2", "b-low1"]);
    }

    #[test]
    fn equal_or_higher_priority_pods_are_never_victims() {
        let nodes = arcs(vec![
            with_pods(node("equal", 4000), &[pod("same", 5, 4000)]),
            with_pods(node("higher", 4000), &[pod("boss", 7, 4000)]),
            with_pods(
                node("mixed", 4000),
                &[pod("boss2", 6, 3000), pod("minion", 1, 1000)],
            ),
        ]);
        let status = preempt(&nodes, &pod("p", 5, 2000)).unwrap_err();
        assert_eq!(status.code, Code::Unschedulable);
        assert_eq!(status.plugin, NAME);
        assert_eq!(
            status.reasons,
            ["preemption: 0/3 nodes are available: 1 Insufficient cpu, \
                 2 No preemption victims found for incoming pod."]
        );

        // With room for it once the priority-1 pod goes, only that pod is a victim.
        let result = preempt(&nodes, &pod("p", 5, 1000)).unwrap();
        assert_eq!(result.nominated_node, "mixed");
        assert_eq!(names(&result.victims), ["minion"]);
    }

    #[test]
    fn preemption_policy_never() {
        let nodes = arcs(vec![with_pods(node("a", 1000), &[pod("low", 0, 1000)])]);
        let never = pod_with(
            "p",
            10,
            1000,
            json!({"spec": {"preemptionPolicy": "Never"}}),
        );
        let status = preempt(&nodes, &never).unwrap_err();
        assert_eq!(status.code, Code::Unschedulable);
        assert_eq!(
            status.reasons,
            ["preemption: not eligible due to preemptionPolicy=Never."]
        );
        let lower = pod_with(
            "p",
            10,
            1000,
            json!({"spec": {"preemptionPolicy": "PreemptLowerPriority"}}),
        );
        assert!(preempt(&nodes, &lower).is_ok());
    }

    #[test]
    fn terminating_victim_on_nominated_node_blocks_another_preemption() {
        let terminating = pod_with(
            "going",
            0,
            1000,
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}),
        );
        let nodes = arcs(vec![
            with_pods(node_with("a", 1000, json!({"zone": "x"})), &[terminating]),
            with_pods(
                node_with("b", 1000, json!({"zone": "y"})),
                &[pod("low", 0, 1000)],
            ),
        ]);
        let nominated = pod_with("p", 10, 1000, json!({"status": {"nominatedNodeName": "a"}}));
        let status = preempt(&nodes, &nominated).unwrap_err();
        assert_eq!(
            status.reasons,
            ["preemption: not eligible due to a terminating pod on the nominated node."]
        );

        // Not nominated: free to preempt (on "a" first in order; its victim is already going).
        let result = preempt(&nodes, &pod("p", 10, 1000)).unwrap();
        assert_eq!(result.nominated_node, "a");

        // The nominated node became unresolvable for the pod: preempt elsewhere.
        let moved = pod_with(
            "p",
            10,
            1000,
            json!({"spec": {"nodeSelector": {"zone": "y"}}, "status": {"nominatedNodeName": "a"}}),
        );
        let result = preempt(&nodes, &moved).unwrap();
        assert_eq!(result.nominated_node, "b");
        assert_eq!(names(&result.victims), ["low"]);
    }

    #[test]
    fn unresolvable_nodes_are_never_chosen() {
        let nodes = arcs(vec![
            with_pods(
                node_with("a", 4000, json!({"zone": "x"})),
                &[pod("a-low", 0, 4000)],
            ),
            with_pods(
                node_with("b", 4000, json!({"zone": "y"})),
                &[pod("b-low1", 0, 2000), pod("b-low2", 0, 2000)],
            ),
        ]);
        let in_y = pod_with(
            "p",
            10,
            4000,
            json!({"spec": {"nodeSelector": {"zone": "y"}}}),
        );
        let result = preempt(&nodes, &in_y).unwrap();
        // "a" would need one victim, "b" two; but "a" does not match the selector.
        assert_eq!(result.nominated_node, "b");
        // Equal importance: the reverse of the nodes' key order.
        assert_eq!(names(&result.victims), ["b-low2", "b-low1"]);

        let nowhere = pod_with(
            "p",
            10,
            4000,
            json!({"spec": {"nodeSelector": {"zone": "z"}}}),
        );
        let status = preempt(&nodes, &nowhere).unwrap_err();
        assert_eq!(
            status.reasons,
            ["preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."]
        );

        // A node missing from the statuses is skipped too.
        let profile = default_profile();
        let statuses = BTreeMap::new();
        let context = PostFilterContext {
            profile: &profile,
            nodes: &nodes,
            statuses: &statuses,
        };
        let status = DefaultPreemption::default()
            .post_filter(&CycleState::new(), &pod("p", 10, 4000), &context)
            .unwrap_err();
        assert_eq!(status.code, Code::Unschedulable);
    }

    #[test]
    fn reprieve_keeps_pods_that_need_not_go() {
        let started = |at: &str| json!({"status": {"startTime": at}});
        let nodes = arcs(vec![with_pods(
            node("n", 4000),
            &[
                pod("p2", 2, 1000),
                pod("p1", 1, 1000),
                pod_with("old", 0, 1000, started("2026-01-01T10:00:00Z")),
                pod_with("new", 0, 1000, started("2026-01-01T11:00:00Z")),
            ],
        )]);
        // One core is enough: of the two equal-priority pods, the newer one goes.
        let result = preempt(&nodes, &pod("p", 5, 1000)).unwrap();
        assert_eq!(names(&result.victims), ["new"]);

        // Two cores: both priority-0 pods go, and the higher-priority ones stay.
        let result = preempt(&nodes, &pod("p", 5, 2000)).unwrap();
        assert_eq!(names(&result.victims), ["new", "old"]);

        // Everything must go: victims come least important first.
        let result = preempt(&nodes, &pod("p", 5, 4000)).unwrap();
        assert_eq!(names(&result.victims), ["new", "old", "p1", "p2"]);

        // A bigger pod of lower priority can be reprieved while a smaller one goes.
        let nodes = arcs(vec![with_pods(
            node("n", 4000),
            &[pod("big", 2, 3000), pod("small", 1, 1000)],
        )]);
        let result = preempt(&nodes, &pod("p", 5, 1000)).unwrap();
        assert_eq!(names(&result.victims), ["small"]);
    }

    fn candidate(index: usize, victims: Vec<Pod>) -> Candidate {
        let mut victims: Vec<Arc<Pod>> = victims.into_iter().map(Arc::new).collect();
        victims.sort_by(|a, b| more_important(a, b));
        Candidate {
            index,
            name: format!("n{index}"),
            victims,
            pdb_violations: 0,
        }
    }

    fn picked(candidates: &[Candidate]) -> usize {
        pick_one_node_for_preemption(candidates).unwrap().index
    }

    #[test]
    fn tie_breakers() {
        let at = |name: &str, priority: i32, time: &str| {
            pod_with(name, priority, 100, json!({"status": {"startTime": time}}))
        };
        // Fewest PDB violations first.
        let mut violating = candidate(0, vec![pod("a", 0, 100)]);
        violating.pdb_violations = 1;
        assert_eq!(
            picked(&[violating, candidate(1, vec![pod("b", 5, 100)])]),
            1
        );
        // Lowest highest priority.
        assert_eq!(
            picked(&[
                candidate(0, vec![pod("a", 3, 100)]),
                candidate(1, vec![pod("b", 1, 100), pod("c", 2, 100)]),
            ]),
            1
        );
        // Smallest sum of priorities.
        assert_eq!(
            picked(&[
                candidate(0, vec![pod("a", 2, 100), pod("b", 2, 100)]),
                candidate(1, vec![pod("c", 2, 100), pod("d", 1, 100)]),
            ]),
            1
        );
        // The 2³¹ shift: two victims of priority -5 cost more than one.
        assert_eq!(
            picked(&[
                candidate(0, vec![pod("a", -5, 100), pod("b", -5, 100)]),
                candidate(1, vec![pod("c", -5, 100)]),
            ]),
            1
        );
        // With the shift, fewer victims cost less even when their priorities add up to more.
        assert_eq!(
            picked(&[
                candidate(0, vec![pod("a", 2, 100), pod("b", 1, 100)]),
                candidate(
                    1,
                    vec![pod("c", 2, 100), pod("d", 0, 100), pod("e", 0, 100)]
                ),
            ]),
            0
        );
        // Latest start time of the highest-priority victims (the earliest of them counts).
        assert_eq!(
            picked(&[
                candidate(
                    0,
                    vec![
                        at("a", 2, "2026-01-01T10:00:00Z"),
                        at("b", 1, "2026-01-01T09:00:00Z")
                    ]
                ),
                candidate(
                    1,
                    vec![
                        at("c", 2, "2026-01-01T11:00:00Z"),
                        at("d", 1, "2026-01-01T08:00:00Z")
                    ]
                ),
            ]),
            1
        );
        assert_eq!(
            picked(&[
                candidate(
                    0,
                    vec![
                        at("a", 2, "2026-01-01T12:00:00Z"),
                        at("b", 2, "2026-01-01T07:00:00Z")
                    ]
                ),
                candidate(
                    1,
                    vec![
                        at("c", 2, "2026-01-01T11:00:00Z"),
                        at("d", 2, "2026-01-01T10:00:00Z")
                    ]
                ),
            ]),
            1
        );
        // No start time counts as now: later than any recorded time.
        assert_eq!(
            picked(&[
                candidate(0, vec![at("a", 2, "2026-01-01T12:00:00Z")]),
                candidate(1, vec![pod("b", 2, 100)]),
            ]),
            1
        );
        // Then the first in the nodes' order.
        assert_eq!(
            picked(&[
                candidate(3, vec![pod("a", 2, 100)]),
                candidate(1, vec![pod("b", 2, 100)]),
            ]),
            1
        );
        assert!(pick_one_node_for_preemption(&[]).is_none());
    }

    #[test]
    fn candidate_search_is_capped_and_deterministic() {
        assert_eq!(num_candidates(0, 10, 100), 1);
        assert_eq!(num_candidates(150, 10, 100), 100);
        assert_eq!(num_candidates(1500, 10, 100), 150);
        assert_eq!(num_candidates(3, 0, 0), 1);

        // 150 identical nodes: the search stops after 100 candidates from the pod's offset, and
        // the first of those in the nodes' order wins.
        let nodes = arcs(
            (0..150)
                .map(|i| {
                    with_pods(
                        node(&format!("n{i:03}"), 1000),
                        &[pod(&format!("x{i}"), 0, 1000)],
                    )
                })
                .collect(),
        );
        let preemptor = pod("urgent", 1, 1000);
        let offset = name_offset(&preemptor, nodes.len());
        let examined: Vec<usize> = (0..100).map(|i| (offset + i) % nodes.len()).collect();
        let expected = examined.iter().min().copied().unwrap();
        let result = preempt(&nodes, &preemptor).unwrap();
        assert_eq!(result.nominated_node, format!("n{expected:03}"));
        assert_eq!(names(&result.victims), [format!("x{expected}")]);
        let again = preempt(&nodes, &preemptor).unwrap();
        assert_eq!(again.nominated_node, result.nominated_node);

        // A pod whose offset is past the end wraps around.
        let wrapped = (0..)
            .map(|i| pod(&format!("u{i}"), 1, 1000))
            .find(|p| name_offset(p, nodes.len()) > 50)
            .unwrap();
        let result = preempt(&nodes, &wrapped).unwrap();
        assert_eq!(result.nominated_node, "n000");
    }

    #[test]
    fn no_nodes_is_an_error() {
        let status = preempt(&[], &pod("p", 1, 100)).unwrap_err();
        assert_eq!(status.code, Code::Error);
        assert_eq!(status.reasons, ["preemption: no nodes available"]);
    }

    #[test]
    fn message_counts_every_reason() {
        let mut tried = BTreeMap::new();
        tried.insert(
            "a".to_owned(),
            Status {
                code: Code::Unschedulable,
                reasons: vec!["Insufficient cpu".into(), "Insufficient memory".into()],
                plugin: "NodeResourcesFit",
            },
        );
        tried.insert(
            "b".to_owned(),
            Status::unschedulable("X", "Insufficient cpu"),
        );
        assert_eq!(
            no_candidate_message(12, &tried),
            "preemption: 0/12 nodes are available: 1 Insufficient memory, \
             10 Preemption is not helpful for scheduling, 2 Insufficient cpu."
        );
    }

    /// Whether the preemptor fits `node` with the pods named in `gone` removed.
    fn fits_without(
        profile: &Profile,
        preemptor: &Pod,
        node: &NodeInfo,
        gone: &[&Arc<Pod>],
    ) -> bool {
        let mut copy = node.clone();
        for pod in gone {
            assert!(copy.remove_key(&pod_key(pod)));
        }
        let copy = [Arc::new(copy)];
        fits(profile, preemptor, &copy, 0).is_success()
    }

    type Cluster = (Vec<(i64, Vec<(i64, i32)>)>, (i64, i32));

    fn cluster() -> impl Strategy<Value = Cluster> {
        // Nodes of 1 to 6 cores, pods of 0.1 to 3 cores with priorities 0 to 2, a preemptor of
        // 0.1 to 4 cores with priority 0 to 3.
        let pods = prop::collection::vec((1_i64..=30, 0_i32..3), 0..10);
        let nodes = prop::collection::vec((1_i64..=6, pods), 1..5);
        (nodes, (1_i64..=40, 0_i32..4))
    }

    proptest! {
        #[test]
        fn preemption_is_sound_and_minimal((spec, (request, priority)) in cluster()) {
            let profile = default_profile();
            let mut nodes = Vec::new();
            for (n, (cores, pods)) in spec.iter().enumerate() {
                let capacity = cores * 1000;
                let mut info = node(&format!("n{n}"), capacity);
                let mut used = 0;
                for (p, &(tenths, prio)) in pods.iter().enumerate() {
                    let milli = tenths * 100;
                    // Only what the scheduler would have placed.
                    if used + milli <= capacity {
                        used += milli;
                        info.add_pod(&pod(&format!("n{n}-p{p}"), prio, milli));
                    }
                }
                nodes.push(Arc::new(info));
            }
            let preemptor = pod("preemptor", priority, request * 100);
            let statuses = filter_statuses(&profile, &preemptor, &nodes);
            // Preemption only runs when no node fits.
            prop_assume!(statuses.len() == nodes.len());
            let context = PostFilterContext { profile: &profile, nodes: &nodes, statuses: &statuses };
            let plugin = DefaultPreemption::default();
            let outcome = plugin.post_filter(&CycleState::new(), &preemptor, &context);
            match &outcome {
                Ok(result) => {
                    let node = nodes.iter().find(|n| n.name() == result.nominated_node).unwrap();
                    prop_assert!(!result.victims.is_empty());
                    // (a) Only lower-priority victims, all on the node, least important first.
                    for victim in &result.victims {
                        prop_assert!(pod_priority(victim) < priority);
                        prop_assert!(node.has_pod(&pod_key(victim)));
                    }
                    for pair in result.victims.windows(2) {
                        prop_assert_ne!(more_important(&pair[0], &pair[1]), Ordering::Less);
                    }
                    // (b) Without the victims the preemptor fits.
                    let all: Vec<&Arc<Pod>> = result.victims.iter().collect();
                    prop_assert!(fits_without(&profile, &preemptor, node, &all));
                    // (c) No victim can be spared.
                    for spared in 0..all.len() {
                        let mut others = all.clone();
                        others.remove(spared);
                        prop_assert!(!fits_without(&profile, &preemptor, node, &others));
                    }
                }
                Err(status) => {
                    prop_assert_eq!(status.code, Code::Unschedulable);
                    // (d) No node fits even with every lower-priority pod gone.
                    for node in &nodes {
                        let lower: Vec<&Arc<Pod>> =
                            node.pods().filter(|p| pod_priority(p) < priority).collect();
                        prop_assert!(!fits_without(&profile, &preemptor, node, &lower));
                    }
                }
            }
            // The same cluster gives the same answer.
            let again = plugin.post_filter(&CycleState::new(), &preemptor, &context);
            match (&outcome, &again) {
                (Ok(a), Ok(b)) => {
                    prop_assert_eq!(&a.nominated_node, &b.nominated_node);
                    prop_assert_eq!(names(&a.victims), names(&b.victims));
                }
                (Err(a), Err(b)) => prop_assert_eq!(a, b),
                _ => prop_assert!(false, "outcomes differ"),
            }
        }
    }
}
