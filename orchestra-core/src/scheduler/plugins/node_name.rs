//! NodeName: a pod that names its node (`spec.nodeName`) fits only that node.

use k8s_openapi::api::core::v1::Pod;

use crate::scheduler::framework::{CycleState, FilterPlugin, Plugin, Status};
use crate::scheduler::node_info::NodeInfo;

/// The plugin's name.
pub const NAME: &str = "NodeName";
/// The reason given for a node other than the one the pod names.
pub const ERR_REASON: &str = "node(s) didn't match the requested node name";

/// Filters out every node but the one named in the pod's `spec.nodeName`, if it names one
/// (kube-scheduler's NodeName plugin). The rejection is unresolvable.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl FilterPlugin for NodeName {
    fn filter(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        match pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref()) {
            None | Some("") => Status::SUCCESS,
            Some(name) if name == node.name() => Status::SUCCESS,
            Some(_) => Status::unresolvable(NAME, ERR_REASON),
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
        let n = node(json!({"metadata": {"name": "foo"}}));
        let state = CycleState::new();
        assert!(
            NodeName
                .filter(&state, &pod(json!({"containers": []})), &n)
                .is_success()
        );
        assert!(
            NodeName
                .filter(&state, &pod(json!({"containers": [], "nodeName": ""})), &n)
                .is_success()
        );
        assert!(
            NodeName
                .filter(
                    &state,
                    &pod(json!({"containers": [], "nodeName": "foo"})),
                    &n
                )
                .is_success()
        );
        let status = NodeName.filter(
            &state,
            &pod(json!({"containers": [], "nodeName": "bar"})),
            &n,
        );
        assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(status.reasons, [ERR_REASON]);
        assert_eq!(status.plugin, NAME);
    }
}
