//! kube-scheduler's built-in filter and score plugins, with its names, semantics and wording.
//!
//! | plugin | extension points | rejects with |
//! |---|---|---|
//! | [`NodeName`](node_name::NodeName) | Filter | `node(s) didn't match the requested node name` |
//! | [`NodeUnschedulable`](node_unschedulable::NodeUnschedulable) | Filter | `node(s) were unschedulable` |
//! | [`NodeResourcesFit`](node_resources_fit::NodeResourcesFit) | PreFilter, Filter, PreScore, Score | `Insufficient cpu`, `Too many pods`, ... |
//! | [`BalancedAllocation`](balanced_allocation::BalancedAllocation) | PreScore, Score | — |
//! | [`NodeAffinity`](node_affinity::NodeAffinity) | PreFilter, Filter, PreScore, Score | `node(s) didn't match Pod's node affinity/selector` |
//! | [`NodePorts`](node_ports::NodePorts) | PreFilter, Filter | `node(s) didn't have free ports for the requested pod ports` |
//! | [`TaintToleration`](taint_toleration::TaintToleration) | Filter, PreScore, Score | `node(s) had untolerated taint {key: value}` |
//! | [`PodTopologySpread`](pod_topology_spread::PodTopologySpread) | PreFilter, Filter, PreScore, Score | `node(s) didn't match pod topology spread constraints` |
//! | [`InterPodAffinity`](inter_pod_affinity::InterPodAffinity) | PreFilter, Filter, PreScore, Score | `node(s) didn't match pod affinity rules`, `node(s) didn't match pod anti-affinity rules`, `node(s) didn't satisfy existing pods anti-affinity rules` |
//!
//! Filters that Kubernetes gives a PreFilter compute the pod's data once per cycle into the
//! [`CycleState`](super::framework::CycleState) and allocate nothing when a node fits.

use std::sync::Arc;

use super::framework::Profile;

pub mod balanced_allocation;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;

#[cfg(test)]
mod test_util;

/// The scheduler name of the default profile, which pods get when they name none.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// kube-scheduler's default profile, restricted to the plugins this crate has (no volume
/// plugins, no ImageLocality): filters in Kubernetes' order (NodeUnschedulable, NodeName,
/// TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit, PodTopologySpread,
/// InterPodAffinity), DefaultPreemption as PostFilter, and scores with Kubernetes' weights
/// (TaintToleration 3, NodeAffinity 2, PodTopologySpread 2, InterPodAffinity 2,
/// NodeResourcesFit with LeastAllocated 1, NodeResourcesBalancedAllocation 1).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
///
/// use orchestra_core::k8s::api::core::v1::{Node, Pod};
/// use orchestra_core::scheduler::framework::CycleState;
/// use orchestra_core::scheduler::node_info::NodeInfo;
/// use orchestra_core::scheduler::plugins::default_profile;
///
/// let node = |name: &str, cpu: &str| -> Result<NodeInfo, serde_json::Error> {
///     let node: Node = serde_json::from_value(serde_json::json!({
///         "metadata": {"name": name},
///         "status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"}}
///     }))?;
///     Ok(NodeInfo::new(Arc::new(node)))
/// };
/// let nodes = [node("small", "1")?, node("big", "8")?];
/// let pod: Pod = serde_json::from_value(serde_json::json!({
///     "metadata": {"name": "p", "namespace": "default"},
///     "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "2"}}}]}
/// }))?;
///
/// let profile = default_profile();
/// let mut state = CycleState::new();
/// assert!(profile.run_pre_filter(&mut state, &pod, &[]).is_success());
/// let feasible: Vec<&NodeInfo> = nodes
///     .iter()
///     .filter(|node| profile.run_filter(&state, &pod, node).is_success())
///     .collect();
/// assert_eq!(feasible.len(), 1);
/// assert_eq!(feasible[0].name(), "big");
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn default_profile() -> Profile {
    let taints = Arc::new(taint_toleration::TaintToleration);
    let affinity = Arc::new(node_affinity::NodeAffinity);
    let ports = Arc::new(node_ports::NodePorts);
    let fit = Arc::new(node_resources_fit::NodeResourcesFit::default());
    let balanced = Arc::new(balanced_allocation::BalancedAllocation::default());
    let spread = Arc::new(pod_topology_spread::PodTopologySpread::default());
    let inter_pod = Arc::new(inter_pod_affinity::InterPodAffinity::default());
    Profile::new(DEFAULT_SCHEDULER_NAME)
        .with_pre_filter(affinity.clone())
        .with_pre_filter(ports.clone())
        .with_pre_filter(fit.clone())
        .with_pre_filter(spread.clone())
        .with_pre_filter(inter_pod.clone())
        .with_filter(Arc::new(node_unschedulable::NodeUnschedulable))
        .with_filter(Arc::new(node_name::NodeName))
        .with_filter(taints.clone())
        .with_filter(affinity.clone())
        .with_filter(ports)
        .with_filter(fit.clone())
        .with_filter(spread.clone())
        .with_filter(inter_pod.clone())
        .with_post_filter(Arc::new(
            crate::scheduler::preemption::DefaultPreemption::default(),
        ))
        .with_pre_score(taints.clone())
        .with_pre_score(affinity.clone())
        .with_pre_score(fit.clone())
        .with_pre_score(spread.clone())
        .with_pre_score(inter_pod.clone())
        .with_pre_score(balanced.clone())
        .with_score(taints, 3)
        .with_score(affinity, 2)
        .with_score(fit, 1)
        .with_score(spread, 2)
        .with_score(inter_pod, 2)
        .with_score(balanced, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::{Code, CycleState};
    use crate::scheduler::node_info::NodeInfo;
    use serde_json::json;
    use test_util::{named_pod, node, pod};

    #[test]
    fn default_profile_full_cycle() {
        let profile = default_profile();
        let capacity = json!({"cpu": "4", "memory": "8Gi", "pods": "110"});
        let mut busy = node(
            json!({"metadata": {"name": "busy", "labels": {"zone": "a"}}, "status": {"allocatable": capacity}}),
        );
        busy.add_pod(&named_pod("x", json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "3", "memory": "1Gi"}}}]})));
        let nodes = [
            node(
                json!({"metadata": {"name": "cordoned", "labels": {"zone": "a"}}, "spec": {"unschedulable": true}, "status": {"allocatable": capacity}}),
            ),
            node(
                json!({"metadata": {"name": "tainted", "labels": {"zone": "a"}}, "spec": {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}, "status": {"allocatable": capacity}}),
            ),
            node(
                json!({"metadata": {"name": "other-zone", "labels": {"zone": "b"}}, "status": {"allocatable": capacity}}),
            ),
            busy,
            node(
                json!({"metadata": {"name": "free", "labels": {"zone": "a"}}, "spec": {"taints": [{"key": "soft", "effect": "PreferNoSchedule"}]}, "status": {"allocatable": capacity}}),
            ),
            node(
                json!({"metadata": {"name": "best", "labels": {"zone": "a"}}, "status": {"allocatable": capacity}}),
            ),
        ];
        let p = pod(json!({
            "nodeSelector": {"zone": "a"},
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "2", "memory": "1Gi"}}}]
        }));
        let mut state = CycleState::new();
        assert!(profile.run_pre_filter(&mut state, &p, &[]).is_success());
        // NodePorts has nothing to check for this pod.
        assert!(state.skips_filter(node_ports::NAME));
        let statuses: Vec<_> = nodes
            .iter()
            .map(|n| profile.run_filter(&state, &p, n))
            .collect();
        let reasons: Vec<_> = statuses
            .iter()
            .map(|s| (s.plugin, s.reasons.join(",")))
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    node_unschedulable::NAME,
                    "node(s) were unschedulable".to_owned()
                ),
                (
                    taint_toleration::NAME,
                    "node(s) had untolerated taint {k: v}".to_owned()
                ),
                (
                    node_affinity::NAME,
                    "node(s) didn't match Pod's node affinity/selector".to_owned()
                ),
                (node_resources_fit::NAME, "Insufficient cpu".to_owned()),
                ("", String::new()),
                ("", String::new()),
            ]
        );
        assert_eq!(statuses[3].code, Code::Unschedulable);
        let feasible: Vec<&NodeInfo> = nodes
            .iter()
            .zip(&statuses)
            .filter(|(_, s)| s.is_success())
            .map(|(n, _)| n)
            .collect();
        assert!(
            profile
                .run_pre_score(&mut state, &p, &feasible, &[])
                .is_success()
        );
        // No preferred affinity: NodeAffinity's Score is skipped.
        assert!(state.skips_score(node_affinity::NAME));
        let scores = profile.run_score(&state, &p, &feasible).unwrap();
        // Same resources; the PreferNoSchedule taint costs "free" TaintToleration's 3 × 100.
        assert_eq!(scores[1].score - scores[0].score, 300);
    }
}
