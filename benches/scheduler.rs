//! One scheduling cycle per plugin, on a snapshot of 5,000 nodes holding 150,000 pods.
//!
//! ```text
//! cargo bench --bench scheduler
//! ```
//!
//! Each plugin runs alone in a profile (at every extension point it implements), then the default
//! profile runs whole; a cycle is [`schedule_pod`]: PreFilter, Filter over the adaptive share of
//! nodes (10% of 5,000, `percentageOfNodesToScore`), PreScore, Score and the choice of a node.
//! The pods are those of `scheduler_perf`'s workloads (100m cpu and 500Mi each, in groups of
//! 1,000 with a `group` label); the incoming pod asks for what the plugin checks (node affinity,
//! anti-affinity on the hostname, a zone spread constraint, ...).
//!
//! Prints criterion's report and `RESULT scheduler_cycle_<plugin> <µs> us` lines (the mean over
//! 300 cycles after criterion's run).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use orchestra::core::k8s::api::core::v1::{Node, Pod};
use orchestra::core::scheduler::cache::{SchedulerCache, Snapshot};
use orchestra::core::scheduler::framework::{CycleState, Profile};
use orchestra::core::scheduler::plugins::{
    balanced_allocation::BalancedAllocation, default_profile, inter_pod_affinity::InterPodAffinity,
    node_affinity::NodeAffinity, node_name::NodeName, node_ports::NodePorts,
    node_resources_fit::NodeResourcesFit, node_unschedulable::NodeUnschedulable,
    pod_topology_spread::PodTopologySpread, taint_toleration::TaintToleration,
};
use orchestra::core::scheduler::schedule_one::{CycleConfig, CycleCursor, schedule_pod};
use serde_json::{Value, json};

const NODES: usize = 5_000;
const PODS_PER_NODE: usize = 30;
const GROUP: usize = 1_000;

fn node(index: usize) -> Node {
    let name = format!("node-{index:05}");
    let mut value = json!({
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name,
            "topology.kubernetes.io/zone": format!("zone{}", index % 3 + 1),
        }},
        "spec": {},
        "status": {"allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"}}
    });
    if index.is_multiple_of(10) {
        value["spec"]["taints"] = json!([{"key": "soft", "effect": "PreferNoSchedule"}]);
    }
    serde_json::from_value(value).unwrap_or_default()
}

fn pod(name: &str, group: usize, node: Option<&str>, extra: Value) -> Pod {
    let mut spec = json!({"containers": [{
        "name": "pause", "image": "pause",
        "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}},
    }]});
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            spec.insert(key.clone(), value.clone());
        }
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "labels": {"group": format!("g{group}")}},
        "spec": spec,
    }))
    .unwrap_or_default()
}

fn anti_affinity(group: usize) -> Value {
    json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": {"group": format!("g{group}")}},
        "topologyKey": "kubernetes.io/hostname",
    }]}}})
}

/// 5,000 nodes with 30 pods each; one pod in ten carries required anti-affinity to its group,
/// as a cluster where some workloads spread themselves.
fn snapshot() -> Snapshot {
    let cache = SchedulerCache::new();
    for i in 0..NODES {
        cache.add_node(Arc::new(node(i)));
    }
    for i in 0..NODES * PODS_PER_NODE {
        let node_name = format!("node-{:05}", i % NODES);
        let group = i / GROUP;
        let extra = if i % 10 == 0 {
            anti_affinity(group)
        } else {
            json!({})
        };
        let pod = pod(&format!("pod-{i:06}"), group, Some(&node_name), extra);
        let _ = cache.add_pod(&pod);
    }
    let mut snapshot = Snapshot::new();
    cache.update_snapshot(&mut snapshot);
    snapshot
}

fn profile_of(name: &str) -> Profile {
    let profile = Profile::new("bench");
    match name {
        "NodeUnschedulable" => profile.with_filter(Arc::new(NodeUnschedulable)),
        "NodeName" => profile.with_filter(Arc::new(NodeName)),
        "TaintToleration" => {
            let plugin = Arc::new(TaintToleration);
            profile
                .with_filter(plugin.clone())
                .with_pre_score(plugin.clone())
                .with_score(plugin, 3)
        }
        "NodeAffinity" => {
            let plugin = Arc::new(NodeAffinity);
            profile
                .with_pre_filter(plugin.clone())
                .with_filter(plugin.clone())
                .with_pre_score(plugin.clone())
                .with_score(plugin, 2)
        }
        "NodePorts" => {
            let plugin = Arc::new(NodePorts);
            profile.with_pre_filter(plugin.clone()).with_filter(plugin)
        }
        "NodeResourcesFit" => {
            let plugin = Arc::new(NodeResourcesFit::default());
            profile
                .with_pre_filter(plugin.clone())
                .with_filter(plugin.clone())
                .with_pre_score(plugin.clone())
                .with_score(plugin, 1)
        }
        "NodeResourcesBalancedAllocation" => {
            let plugin = Arc::new(BalancedAllocation::default());
            profile.with_pre_score(plugin.clone()).with_score(plugin, 1)
        }
        "InterPodAffinity" => {
            let plugin = Arc::new(InterPodAffinity::default());
            profile
                .with_pre_filter(plugin.clone())
                .with_filter(plugin.clone())
                .with_pre_score(plugin.clone())
                .with_score(plugin, 2)
        }
        "PodTopologySpread" => {
            let plugin = Arc::new(PodTopologySpread::default());
            profile
                .with_pre_filter(plugin.clone())
                .with_filter(plugin.clone())
                .with_pre_score(plugin.clone())
                .with_score(plugin, 2)
        }
        _ => default_profile(),
    }
}

/// The incoming pod for each plugin: one that gives the plugin something to check.
fn incoming(name: &str) -> Pod {
    let extra = match name {
        "NodeUnschedulable" | "TaintToleration" => json!({"tolerations": [
            {"key": "soft", "operator": "Exists", "effect": "PreferNoSchedule"}
        ]}),
        "NodeName" => json!({}),
        "NodeAffinity" => json!({"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["zone1", "zone2"]}
            ]}]},
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "preference": {"matchExpressions": [
                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["zone1"]}
            ]}}]
        }}}),
        "NodePorts" => json!({"containers": [{
            "name": "web", "image": "web", "ports": [{"containerPort": 80, "hostPort": 8080}],
            "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}},
        }]}),
        "InterPodAffinity" => anti_affinity(7),
        "PodTopologySpread" => json!({"topologySpreadConstraints": [{
            "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"group": "g7"}},
        }, {
            "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"group": "g7"}},
        }]}),
        _ => json!({}),
    };
    pod("incoming", 7, None, extra)
}

const PLUGINS: [&str; 10] = [
    "NodeUnschedulable",
    "NodeName",
    "TaintToleration",
    "NodeAffinity",
    "NodePorts",
    "NodeResourcesFit",
    "NodeResourcesBalancedAllocation",
    "InterPodAffinity",
    "PodTopologySpread",
    "DefaultProfile",
];

fn main() {
    let snapshot = snapshot();
    let config = CycleConfig::default();
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    let mut group = criterion.benchmark_group("scheduling_cycle_5000_nodes");
    for name in PLUGINS {
        let profile = profile_of(name);
        let pod = incoming(name);
        let mut cursor = CycleCursor::new(1);
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut state = CycleState::new();
                black_box(
                    schedule_pod(&profile, &config, &mut cursor, &mut state, &pod, &snapshot)
                        .is_ok(),
                )
            })
        });
    }
    group.finish();
    for name in PLUGINS {
        let profile = profile_of(name);
        let pod = incoming(name);
        let mut cursor = CycleCursor::new(1);
        const CYCLES: u32 = 300;
        let started = Instant::now();
        let mut scheduled = 0;
        for _ in 0..CYCLES {
            let mut state = CycleState::new();
            if schedule_pod(&profile, &config, &mut cursor, &mut state, &pod, &snapshot).is_ok() {
                scheduled += 1;
            }
        }
        let mean = started.elapsed() / CYCLES;
        println!(
            "RESULT scheduler_cycle_{} {:.1} us ({scheduled}/{CYCLES} cycles found a node; {NODES} nodes, {} pods)",
            name.to_lowercase(),
            mean.as_secs_f64() * 1e6,
            NODES * PODS_PER_NODE
        );
    }
    criterion.final_summary();
}
