//! NodeResourcesBalancedAllocation: favours nodes whose resources would be used evenly.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use super::node_resources_fit::{
    PodRequestList, ResourceSlot, ResourceSpec, allocatable_and_requested, pod_request_list,
};
use crate::scheduler::framework::{
    CycleState, MAX_NODE_SCORE, NodeScore, Plugin, PreScorePlugin, ScorePlugin, Status, score_each,
};
use crate::scheduler::node_info::NodeInfo;

/// The plugin's name.
pub const NAME: &str = "NodeResourcesBalancedAllocation";
const PRE_SCORE_KEY: &str = "PreScoreNodeResourcesBalancedAllocation";

/// Scores nodes by how evenly the pod would leave the node's resources used: with each
/// resource's fraction requested (capped at 1), `(1 − standard deviation) × 100`
/// (kube-scheduler's NodeResourcesBalancedAllocation; default score weight 1).
///
/// It counts actual requests (not non-zero defaults), and skips pods that request none of its
/// resources (best-effort pods), as Kubernetes does.
#[derive(Clone, Debug)]
pub struct BalancedAllocation {
    /// The resources compared; Kubernetes' default is `cpu` and `memory`.
    pub resources: Vec<ResourceSpec>,
}

impl Default for BalancedAllocation {
    fn default() -> BalancedAllocation {
        BalancedAllocation {
            resources: ResourceSpec::defaults(),
        }
    }
}

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreScorePlugin for BalancedAllocation {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        _feasible: &[&NodeInfo],
        _all: &[Arc<NodeInfo>],
    ) -> Status {
        let requests = pod_request_list(pod, &self.resources, true);
        if requests.iter().all(|(_, r)| *r == 0) {
            return Status::skip(NAME);
        }
        state.write(PRE_SCORE_KEY, PodRequestList(requests));
        Status::SUCCESS
    }
}

/// `(1 − σ) × 100` over the fractions; for two, σ is half their difference.
fn balanced_score(fractions: impl Iterator<Item = f64> + Clone) -> i64 {
    let (count, sum) = fractions
        .clone()
        .fold((0_usize, 0.0_f64), |(n, s), f| (n + 1, s + f));
    let std = match count {
        0 | 1 => 0.0,
        2 => {
            let mut it = fractions;
            let a = it.next().unwrap_or(0.0);
            let b = it.next().unwrap_or(0.0);
            ((a - b) / 2.0).abs()
        }
        n => {
            let mean = sum / n as f64;
            let variance = fractions.map(|f| (f - mean) * (f - mean)).sum::<f64>() / n as f64;
            variance.sqrt()
        }
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

impl ScorePlugin for BalancedAllocation {
    fn score(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        let requests = state.read_or_error::<PodRequestList>(PRE_SCORE_KEY, NAME)?;
        Ok(self.score_with(&requests.0, node))
    }

    fn score_nodes(
        &self,
        state: &CycleState,
        _pod: &Pod,
        nodes: &[&NodeInfo],
        scores: &mut Vec<NodeScore>,
    ) -> Result<(), Status> {
        let requests = state.read_or_error::<PodRequestList>(PRE_SCORE_KEY, NAME)?;
        score_each(nodes, scores, |node| self.score_with(&requests.0, node));
        Ok(())
    }
}

impl BalancedAllocation {
    /// The node's score for a pod requesting `requests` (by [`ResourceSpec`]).
    fn score_with(&self, requests: &[(ResourceSlot, i64)], node: &NodeInfo) -> i64 {
        let fractions =
            self.resources
                .iter()
                .zip(requests)
                .filter_map(|(spec, &(slot, pod_request))| {
                    let (capacity, requested) =
                        allocatable_and_requested(node, slot, &spec.name, pod_request, true);
                    (capacity != 0).then(|| (requested as f64 / capacity as f64).min(1.0))
                });
        balanced_score(fractions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::{Code, Profile};
    use crate::scheduler::plugins::node_resources_fit::ResourceSpec;
    use crate::scheduler::plugins::test_util::{named_pod, node, pod};
    use serde_json::{Value, json};
    use std::sync::Arc;

    fn requesting(requests: Value) -> Value {
        json!({"containers": [{"name": "c", "resources": {"requests": requests}}]})
    }

    fn machine(cpu: &str, memory: &str, used: Option<Value>) -> NodeInfo {
        let mut n = node(
            json!({"metadata": {"name": "m"}, "status": {"allocatable": {
                "cpu": cpu, "memory": memory, "pods": "100", "example.com/gpu": "4"
            }}}),
        );
        if let Some(used) = used {
            n.add_pod(&named_pod("existing", requesting(used)));
        }
        n
    }

    fn scores(plugin: BalancedAllocation, p: &Pod, nodes: &[NodeInfo]) -> Vec<i64> {
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let plugin = Arc::new(plugin);
        let profile = Profile::new("p")
            .with_pre_score(plugin.clone())
            .with_score(plugin, 1);
        let mut state = CycleState::new();
        assert!(
            profile
                .run_pre_score(&mut state, p, &refs, &[])
                .is_success()
        );
        profile
            .run_score(&state, p, &refs)
            .unwrap()
            .iter()
            .map(|s| s.score)
            .collect()
    }

    #[test]
    fn kubernetes_cases() {
        // Kubernetes' case: pod 3000m/5000 on node1 (4000m, 10000): fractions 0.75, 0.5 →
        // σ 0.125 → 87; on node2 (6000m, 10000): 0.5, 0.5 → 100.
        let p = pod(requesting(json!({"cpu": "3000m", "memory": "5000"})));
        let nodes = [
            machine("4000m", "10000", None),
            machine("6000m", "10000", None),
        ];
        assert_eq!(scores(BalancedAllocation::default(), &p, &nodes), [87, 100]);
        // Existing pods count; fractions cap at 1: cpu (3000 + 3000)/4000 → 1, memory 0.5 → 75.
        let nodes = [machine("4000m", "10000", Some(json!({"cpu": "3000m"})))];
        assert_eq!(scores(BalancedAllocation::default(), &p, &nodes), [75]);
    }

    #[test]
    fn three_resources_and_best_effort() {
        let plugin = BalancedAllocation {
            resources: vec![
                ResourceSpec::new("cpu", 1),
                ResourceSpec::new("memory", 1),
                ResourceSpec::new("example.com/gpu", 1),
            ],
        };
        // Fractions 0.25, 0.25, 1.0: mean 0.5, σ = sqrt((0.0625·2 + 0.25)/3) ≈ 0.3536 → 64.
        let p = pod(requesting(
            json!({"cpu": "1", "memory": "25", "example.com/gpu": "4"}),
        ));
        assert_eq!(
            scores(plugin.clone(), &p, &[machine("4", "100", None)]),
            [64]
        );
        // A pod that does not ask for the gpu leaves it out: 0.25, 0.25 → 100.
        let p = pod(requesting(json!({"cpu": "1", "memory": "25"})));
        assert_eq!(scores(plugin, &p, &[machine("4", "100", None)]), [100]);
        // Best-effort pods are skipped.
        let mut state = CycleState::new();
        let status = BalancedAllocation::default().pre_score(
            &mut state,
            &pod(json!({"containers": [{"name": "c"}]})),
            &[],
            &[],
        );
        assert_eq!(status.code, Code::Skip);
    }
}
