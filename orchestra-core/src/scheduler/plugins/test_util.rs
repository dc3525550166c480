//! Builders shared by the plugins' tests.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};

use crate::scheduler::node_info::NodeInfo;

pub(crate) fn pod(spec: Value) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": spec}))
        .unwrap()
}

pub(crate) fn named_pod(name: &str, spec: Value) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns"}, "spec": spec}))
        .unwrap()
}

pub(crate) fn node(value: Value) -> NodeInfo {
    let node: Node = serde_json::from_value(value).unwrap();
    NodeInfo::new(Arc::new(node))
}
