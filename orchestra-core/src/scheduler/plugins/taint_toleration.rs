//! TaintToleration: pods go only on nodes whose `NoSchedule` and `NoExecute` taints they
//! tolerate, and prefer nodes with fewer untolerated `PreferNoSchedule` taints.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};

use crate::scheduler::framework::{
    CycleState, FilterPlugin, MAX_NODE_SCORE, NodeScore, Plugin, PreScorePlugin, ScorePlugin,
    Status, default_normalize_score, score_each,
};
use crate::scheduler::node_info::NodeInfo;

/// The plugin's name.
pub const NAME: &str = "TaintToleration";
const PRE_SCORE_KEY: &str = "PreScoreTaintToleration";

/// Whether `toleration` tolerates the taint `key=value:effect`, as Kubernetes'
/// `Toleration.ToleratesTaint`: an empty effect matches every effect, an empty key (with
/// `Exists`) every key; operator `Exists` ignores the value, `Equal` (the default) compares it.
///
/// # Examples
///
/// ```
/// use orchestra_core::k8s::api::core::v1::Toleration;
/// use orchestra_core::scheduler::plugins::taint_toleration::tolerates;
///
/// let everything = Toleration { operator: Some("Exists".into()), ..Toleration::default() };
/// assert!(tolerates(&everything, "dedicated", "gpu", "NoSchedule"));
/// let equal = Toleration {
///     key: Some("dedicated".into()),
///     value: Some("gpu".into()),
///     effect: Some("NoSchedule".into()),
///     ..Toleration::default()
/// };
/// assert!(tolerates(&equal, "dedicated", "gpu", "NoSchedule"));
/// assert!(!tolerates(&equal, "dedicated", "cpu", "NoSchedule"));
/// assert!(!tolerates(&equal, "dedicated", "gpu", "NoExecute"));
/// ```
pub fn tolerates(toleration: &Toleration, key: &str, value: &str, effect: &str) -> bool {
    let t_effect = toleration.effect.as_deref().unwrap_or("");
    if !t_effect.is_empty() && t_effect != effect {
        return false;
    }
    let t_key = toleration.key.as_deref().unwrap_or("");
    if !t_key.is_empty() && t_key != key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "" | "Equal" => toleration.value.as_deref().unwrap_or("") == value,
        "Exists" => true,
        _ => false,
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerates_taint(tolerations: &[Toleration], taint: &Taint) -> bool {
    let value = taint.value.as_deref().unwrap_or("");
    tolerations
        .iter()
        .any(|t| tolerates(t, &taint.key, value, &taint.effect))
}

fn pod_tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.tolerations.as_deref())
        .unwrap_or(&[])
}

fn node_taints(node: &NodeInfo) -> &[Taint] {
    if !node.tainted() {
        return &[];
    }
    node.node()
        .spec
        .as_ref()
        .and_then(|spec| spec.taints.as_deref())
        .unwrap_or(&[])
}

/// Filters out nodes with a `NoSchedule` or `NoExecute` taint the pod does not tolerate
/// (unresolvably, with the reason `node(s) had untolerated taint {key: value}`), and scores nodes
/// by how many `PreferNoSchedule` taints the pod does not tolerate, fewer being better
/// (kube-scheduler's TaintToleration plugin; default score weight 3).
#[derive(Clone, Copy, Debug, Default)]
pub struct TaintToleration;

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl FilterPlugin for TaintToleration {
    fn filter(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        let tolerations = pod_tolerations(pod);
        let untolerated = node_taints(node).iter().find(|taint| {
            (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
                && !tolerates_taint(tolerations, taint)
        });
        match untolerated {
            None => Status::SUCCESS,
            Some(taint) => Status::unresolvable(
                NAME,
                format!(
                    "node(s) had untolerated taint {{{}: {}}}",
                    taint.key,
                    taint.value.as_deref().unwrap_or("")
                ),
            ),
        }
    }
}

/// The tolerations that matter for scoring: those with effect `PreferNoSchedule` or none.
#[derive(Debug)]
struct PreScoreState {
    tolerations: Vec<Toleration>,
}

impl PreScorePlugin for TaintToleration {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        _feasible: &[&NodeInfo],
        _all: &[Arc<NodeInfo>],
    ) -> Status {
        let tolerations = pod_tolerations(pod)
            .iter()
            .filter(|t| {
                matches!(
                    t.effect.as_deref(),
                    None | Some("") | Some("PreferNoSchedule")
                )
            })
            .cloned()
            .collect();
        state.write(PRE_SCORE_KEY, PreScoreState { tolerations });
        Status::SUCCESS
    }
}

impl ScorePlugin for TaintToleration {
    fn score(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        let pre = state.read_or_error::<PreScoreState>(PRE_SCORE_KEY, NAME)?;
        Ok(untolerated_preferred_taints(pre, node))
    }

    fn score_nodes(
        &self,
        state: &CycleState,
        _pod: &Pod,
        nodes: &[&NodeInfo],
        scores: &mut Vec<NodeScore>,
    ) -> Result<(), Status> {
        let pre = state.read_or_error::<PreScoreState>(PRE_SCORE_KEY, NAME)?;
        score_each(nodes, scores, |node| {
            untolerated_preferred_taints(pre, node)
        });
        Ok(())
    }

    fn normalize(&self, scores: &mut [NodeScore]) {
        default_normalize_score(MAX_NODE_SCORE, true, scores);
    }
}

/// How many `PreferNoSchedule` taints of the node the pod does not tolerate.
fn untolerated_preferred_taints(pre: &PreScoreState, node: &NodeInfo) -> i64 {
    if !node.tainted() {
        return 0;
    }
    let count = node
        .node()
        .spec
        .as_ref()
        .and_then(|spec| spec.taints.as_deref())
        .unwrap_or(&[])
        .iter()
        .filter(|taint| {
            taint.effect == "PreferNoSchedule" && !tolerates_taint(&pre.tolerations, taint)
        })
        .count();
    i64::try_from(count).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::{Code, Profile};
    use crate::scheduler::plugins::test_util::{node, pod};
    use serde_json::{Value, json};
    use std::sync::Arc;

    fn tainted(taints: Value) -> NodeInfo {
        node(json!({"metadata": {"name": "n"}, "spec": {"taints": taints}}))
    }

    fn tolerating(tolerations: Value) -> Pod {
        pod(json!({"containers": [], "tolerations": tolerations}))
    }

    fn filter(p: &Pod, n: &NodeInfo) -> Status {
        TaintToleration.filter(&CycleState::new(), p, n)
    }

    #[test]
    fn filter_cases() {
        let n = tainted(json!([{"key": "dedicated", "value": "user1", "effect": "NoSchedule"}]));
        // No tolerations.
        let status = filter(&tolerating(json!([])), &n);
        assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(
            status.reasons,
            ["node(s) had untolerated taint {dedicated: user1}"]
        );
        // Equal, same value: tolerated; other value: not.
        assert!(filter(&tolerating(json!([{"key": "dedicated", "operator": "Equal", "value": "user1", "effect": "NoSchedule"}])), &n).is_success());
        assert!(!filter(&tolerating(json!([{"key": "dedicated", "operator": "Equal", "value": "user2", "effect": "NoSchedule"}])), &n).is_success());
        // Default operator is Equal.
        assert!(
            filter(
                &tolerating(json!([{"key": "dedicated", "value": "user1"}])),
                &n
            )
            .is_success()
        );
        // Exists ignores the value.
        assert!(
            filter(
                &tolerating(
                    json!([{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}])
                ),
                &n
            )
            .is_success()
        );
        // Empty key with Exists tolerates every taint.
        assert!(filter(&tolerating(json!([{"operator": "Exists"}])), &n).is_success());
        // Effect mismatch.
        assert!(
            !filter(
                &tolerating(
                    json!([{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}])
                ),
                &n
            )
            .is_success()
        );
        // NoExecute taints filter too; PreferNoSchedule ones do not.
        let n = tainted(
            json!([{"key": "a", "effect": "PreferNoSchedule"}, {"key": "b", "value": "x", "effect": "NoExecute"}]),
        );
        assert_eq!(
            filter(&tolerating(json!([])), &n).reasons,
            ["node(s) had untolerated taint {b: x}"]
        );
        let n = tainted(json!([{"key": "a", "effect": "PreferNoSchedule"}]));
        assert!(filter(&tolerating(json!([])), &n).is_success());
    }

    #[test]
    fn score_prefers_fewer_intolerable_prefer_no_schedule_taints() {
        let nodes = [
            tainted(json!([])),
            tainted(json!([{"key": "a", "value": "1", "effect": "PreferNoSchedule"}])),
            tainted(
                json!([{"key": "a", "value": "1", "effect": "PreferNoSchedule"}, {"key": "b", "value": "2", "effect": "PreferNoSchedule"}]),
            ),
            tainted(
                json!([{"key": "c", "value": "3", "effect": "PreferNoSchedule"}, {"key": "d", "effect": "NoSchedule"}]),
            ),
        ];
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        // Tolerates a=1 (PreferNoSchedule) and c (any effect); a NoSchedule toleration of b does
        // not count for scoring.
        let p = tolerating(json!([
            {"key": "a", "value": "1", "effect": "PreferNoSchedule"},
            {"key": "b", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "c", "operator": "Exists"}
        ]));
        let plugin = Arc::new(TaintToleration);
        let profile = Profile::new("p")
            .with_pre_score(plugin.clone())
            .with_score(plugin, 1);
        let mut state = CycleState::new();
        assert!(
            profile
                .run_pre_score(&mut state, &p, &refs, &[])
                .is_success()
        );
        let scores = profile.run_score(&state, &p, &refs).unwrap();
        assert_eq!(
            scores.iter().map(|s| s.score).collect::<Vec<_>>(),
            [100, 100, 0, 100]
        );
        // Without PreScore the score is an error.
        assert_eq!(
            TaintToleration
                .score(&CycleState::new(), &p, &nodes[0])
                .unwrap_err()
                .code,
            Code::Error
        );
    }
}
