//! NodePorts: a pod's host ports must be free on the node.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use crate::scheduler::framework::{CycleState, FilterPlugin, Plugin, PreFilterPlugin, Status};
use crate::scheduler::node_info::{HostPort, NodeInfo, pod_host_ports};

/// The plugin's name.
pub const NAME: &str = "NodePorts";
/// The reason given for a node where a requested host port is taken.
pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";
const PRE_FILTER_KEY: &str = "PreFilterNodePorts";

#[derive(Debug)]
struct PreFilterState {
    ports: Vec<HostPort>,
}

/// Filters out nodes where a host port the pod asks for is in use, with the same protocol on the
/// same host IP, or where either side binds the wildcard `0.0.0.0` (kube-scheduler's NodePorts
/// plugin). PreFilter collects the pod's host ports once and skips the Filter for pods without
/// any.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodePorts;

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreFilterPlugin for NodePorts {
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, _nodes: &[Arc<NodeInfo>]) -> Status {
        let ports = pod_host_ports(pod);
        if ports.is_empty() {
            return Status::skip(NAME);
        }
        state.write(PRE_FILTER_KEY, PreFilterState { ports });
        Status::SUCCESS
    }
}

impl FilterPlugin for NodePorts {
    fn filter(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Status {
        let pre = match state.read_or_error::<PreFilterState>(PRE_FILTER_KEY, NAME) {
            Ok(pre) => pre,
            Err(status) => return status,
        };
        let used = node.used_ports();
        if pre
            .ports
            .iter()
            .any(|p| used.conflicts(p.protocol, &p.host_ip, p.port))
        {
            Status::unschedulable(NAME, ERR_REASON)
        } else {
            Status::SUCCESS
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::{Code, Profile};
    use crate::scheduler::plugins::test_util::{named_pod, node, pod};
    use serde_json::{Value, json};
    use std::sync::Arc;

    fn with_ports(ports: Value) -> Pod {
        pod(json!({"containers": [{"name": "c", "ports": ports}]}))
    }

    fn node_with(ports: Value) -> NodeInfo {
        let mut n = node(json!({"metadata": {"name": "n"}}));
        n.add_pod(&named_pod(
            "existing",
            json!({"containers": [{"name": "c", "ports": ports}]}),
        ));
        n
    }

    fn run(p: &Pod, n: &NodeInfo) -> Status {
        let plugin = Arc::new(NodePorts);
        let profile = Profile::new("p")
            .with_pre_filter(plugin.clone())
            .with_filter(plugin);
        let mut state = CycleState::new();
        let status = profile.run_pre_filter(&mut state, p, &[]);
        assert!(status.is_success(), "{status}");
        profile.run_filter(&state, p, n)
    }

    fn port(ip: &str, protocol: &str, host_port: i32) -> Value {
        json!({"containerPort": 1, "hostIP": ip, "protocol": protocol, "hostPort": host_port})
    }

    #[test]
    fn kubernetes_cases() {
        let conflict =
            |p: Value, n: Value| !run(&with_ports(json!([p])), &node_with(json!(n))).is_success();
        // Nothing requested: skipped.
        let mut state = CycleState::new();
        assert_eq!(
            NodePorts
                .pre_filter(&mut state, &with_ports(json!([])), &[])
                .code,
            Code::Skip
        );
        assert!(
            run(
                &with_ports(json!([])),
                &node_with(json!([port("", "TCP", 80)]))
            )
            .is_success()
        );
        // Other port, other protocol, other IP: fine.
        assert!(!conflict(
            port("127.0.0.1", "UDP", 8080),
            json!([port("127.0.0.1", "UDP", 9090)])
        ));
        assert!(!conflict(
            port("127.0.0.1", "UDP", 8080),
            json!([port("127.0.0.1", "TCP", 8080)])
        ));
        assert!(!conflict(
            port("127.0.0.2", "TCP", 8001),
            json!([port("127.0.0.1", "TCP", 8001)])
        ));
        // Same protocol, IP and port: conflict.
        assert!(conflict(
            port("127.0.0.1", "UDP", 8080),
            json!([port("127.0.0.1", "UDP", 8080)])
        ));
        // 0.0.0.0 on either side conflicts with any IP, same protocol only.
        assert!(conflict(
            port("0.0.0.0", "TCP", 8001),
            json!([port("127.0.0.1", "TCP", 8001)])
        ));
        assert!(conflict(
            port("10.0.10.10", "TCP", 8001),
            json!([port("0.0.0.0", "TCP", 8001)])
        ));
        assert!(conflict(
            port("", "TCP", 8001),
            json!([port("10.0.0.1", "TCP", 8001)])
        ));
        assert!(!conflict(
            port("0.0.0.0", "UDP", 8001),
            json!([port("127.0.0.1", "TCP", 8001)])
        ));
        assert!(!conflict(
            port("10.0.10.10", "UDP", 8001),
            json!([port("0.0.0.0", "TCP", 8001)])
        ));
        // Empty protocol means TCP.
        assert!(conflict(
            port("127.0.0.1", "", 8001),
            json!([port("127.0.0.1", "TCP", 8001)])
        ));
        let status = run(
            &with_ports(json!([port("", "TCP", 80)])),
            &node_with(json!([port("", "TCP", 80)])),
        );
        assert_eq!(status.code, Code::Unschedulable);
        assert_eq!(status.reasons, [ERR_REASON]);
        assert_eq!(status.plugin, NAME);
    }

    #[test]
    fn filter_without_pre_filter_is_an_error() {
        let status = NodePorts.filter(
            &CycleState::new(),
            &with_ports(json!([])),
            &node_with(json!([])),
        );
        assert_eq!(status.code, Code::Error);
    }
}
