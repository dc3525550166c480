//! NodeUnschedulable: cordoned nodes (`spec.unschedulable`) take no new pods, unless the pod
//! tolerates the `node.kubernetes.io/unschedulable:NoSchedule` taint.

use k8s_openapi::api::core::v1::Pod;

use super::taint_toleration::tolerates;
use crate::scheduler::framework::{CycleState, FilterPlugin, Plugin, Status};
use crate::scheduler::node_info::NodeInfo;

/// The plugin's name.
pub const NAME: &str = "NodeUnschedulable";
/// The reason given for a cordoned node.
pub const ERR_REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
/// The key of the taint a pod must tolerate to go on a cordoned node.
pub const TAINT_NODE_UNSCHEDULABLE: &str = crate::resource::taints::TAINT_NODE_UNSCHEDULABLE;

/// Filters out nodes marked `spec.unschedulable` for pods that do not tolerate
/// `node.kubernetes.io/unschedulable:NoSchedule` (kube-scheduler's NodeUnschedulable plugin). The
/// rejection is unresolvable.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl FilterPlugin for NodeUnschedulable {
    fn filter(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        if !node.unschedulable() {
            return Status::SUCCESS;
        }
        let tolerated = pod
            .spec
            .as_ref()
            .and_then(|spec| spec.tolerations.as_ref())
            .is_some_and(|tolerations| {
                tolerations
                    .iter()
                    .any(|t| tolerates(t, TAINT_NODE_UNSCHEDULABLE, "", "NoSchedule"))
            });
        if tolerated {
            Status::SUCCESS
        } else {
            Status::unresolvable(NAME, ERR_REASON_UNSCHEDULABLE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::Code;
    use crate::scheduler::plugins::test_util::{node, pod};
    use serde_json::json;

    #[test]
    fn cases() {
        let state = CycleState::new();
        let plain = pod(json!({"containers": []}));
        let tolerant = pod(json!({"containers": [], "tolerations": [
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}
        ]}));
        let wrong_effect = pod(json!({"containers": [], "tolerations": [
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoExecute"}
        ]}));
        let cordoned = node(json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true}}));
        let open = node(json!({"metadata": {"name": "n"}, "spec": {"unschedulable": false}}));
        let bare = node(json!({"metadata": {"name": "n"}}));
        assert!(NodeUnschedulable.filter(&state, &plain, &open).is_success());
        assert!(NodeUnschedulable.filter(&state, &plain, &bare).is_success());
        let status = NodeUnschedulable.filter(&state, &plain, &cordoned);
        assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(status.reasons, [ERR_REASON_UNSCHEDULABLE]);
        assert!(
            NodeUnschedulable
                .filter(&state, &tolerant, &cordoned)
                .is_success()
        );
        assert!(
            !NodeUnschedulable
                .filter(&state, &wrong_effect, &cordoned)
                .is_success()
        );
    }
}
