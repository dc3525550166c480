//! NodeResourcesFit: a pod's requests must fit in what the node has left, and nodes are scored
//! by how much would be allocated (spreading with LeastAllocated, bin packing with
//! MostAllocated).

use std::sync::Arc;

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;

use crate::scheduler::framework::{
    Code, CycleState, FilterPlugin, MAX_NODE_SCORE, NodeScore, Plugin, PreFilterPlugin,
    PreScorePlugin, ScorePlugin, Status, score_each,
};
use crate::scheduler::node_info::NodeInfo;
use crate::scheduler::resources::{
    CPU, EPHEMERAL_STORAGE, MEMORY, PODS, Resource, is_extended_resource_name,
    is_scalar_resource_name, pod_non_zero_requests, pod_requests,
};

/// The plugin's name.
pub const NAME: &str = "NodeResourcesFit";
const PRE_FILTER_KEY: &str = "PreFilterNodeResourcesFit";
const PRE_SCORE_KEY: &str = "PreScoreNodeResourcesFit";

/// A resource that scoring looks at, with its weight (kube-scheduler's `ResourceSpec`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceSpec {
    /// The resource's name (`cpu`, `memory`, `ephemeral-storage` or a scalar resource).
    pub name: String,
    /// Its weight in the node's score.
    pub weight: i64,
}

impl ResourceSpec {
    /// A resource with a weight.
    pub fn new(name: impl Into<String>, weight: i64) -> ResourceSpec {
        ResourceSpec {
            name: name.into(),
            weight,
        }
    }

    /// Kubernetes' default: `cpu` and `memory`, weight 1 each.
    pub fn defaults() -> Vec<ResourceSpec> {
        vec![ResourceSpec::new(CPU, 1), ResourceSpec::new(MEMORY, 1)]
    }
}

/// How NodeResourcesFit scores nodes (kube-scheduler's `ScoringStrategy` types).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ScoringStrategy {
    /// Favours nodes with the most free resources, spreading pods (the default).
    #[default]
    LeastAllocated,
    /// Favours nodes with the fewest free resources, packing pods.
    MostAllocated,
}

/// A resource the node lacks for the pod, as kube-scheduler's `InsufficientResource`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InsufficientResource {
    /// The resource's name.
    pub resource_name: String,
    /// The reason as Kubernetes words it: `Insufficient cpu`, `Too many pods`, ...
    pub reason: String,
    /// What the pod requests.
    pub requested: i64,
    /// What the node's pods already request.
    pub used: i64,
    /// What the node has (allocatable).
    pub capacity: i64,
    /// Whether the request exceeds the node's whole allocatable, so that no preemption helps.
    pub unresolvable: bool,
}

/// The resources in `request` that do not fit on `node`: more pods than it allows, and each
/// resource the pod requests more of than allocatable minus requested. Extended resources named in
/// `ignored` or whose domain is in `ignored_groups` are not checked. Returns an empty vector
/// (without allocating) when the pod fits.
pub fn insufficient_resources(
    request: &Resource,
    node: &NodeInfo,
    ignored: &BTreeSet<String>,
    ignored_groups: &BTreeSet<String>,
) -> Vec<InsufficientResource> {
    let mut out = Vec::new();
    let allocatable = node.allocatable();
    let requested = node.requested();
    let pods = i64::try_from(node.pod_count()).unwrap_or(i64::MAX);
    if pods.saturating_add(1) > allocatable.allowed_pods {
        out.push(InsufficientResource {
            resource_name: PODS.to_owned(),
            reason: "Too many pods".to_owned(),
            requested: 1,
            used: pods,
            capacity: allocatable.allowed_pods,
            unresolvable: false,
        });
    }
    if request.milli_cpu == 0
        && request.memory == 0
        && request.ephemeral_storage == 0
        && request.scalar.is_empty()
    {
        return out;
    }
    let mut check = |name: &str, want: i64, capacity: i64, used: i64| {
        if want > 0 && want > capacity.saturating_sub(used) {
            out.push(InsufficientResource {
                resource_name: name.to_owned(),
                reason: format!("Insufficient {name}"),
                requested: want,
                used,
                capacity,
                unresolvable: want > capacity,
            });
        }
    };
    check(
        CPU,
        request.milli_cpu,
        allocatable.milli_cpu,
        requested.milli_cpu,
    );
    check(MEMORY, request.memory, allocatable.memory, requested.memory);
    check(
        EPHEMERAL_STORAGE,
        request.ephemeral_storage,
        allocatable.ephemeral_storage,
        requested.ephemeral_storage,
    );
    for (name, &want) in &request.scalar {
        if want == 0 {
            continue;
        }
        if is_extended_resource_name(name)
            && (ignored.contains(name)
                || name
                    .split_once('/')
                    .is_some_and(|(group, _)| ignored_groups.contains(group)))
        {
            continue;
        }
        check(name, want, allocatable.get(name), requested.get(name));
    }
    out
}

/// Filters out nodes without room for the pod's requests ([`pod_requests`], with the init
/// container rule and overhead) in CPU, memory, ephemeral storage, pod count and extended
/// resources, and scores nodes with a [`ScoringStrategy`] (kube-scheduler's NodeResourcesFit).
///
/// A node without room rejects the pod as [`Code::Unschedulable`] with one reason per resource
/// (`Insufficient cpu`, `Insufficient memory`, `Too many pods`, `Insufficient example.com/gpu`),
/// or [`Code::UnschedulableAndUnresolvable`] when a request exceeds the node's whole allocatable.
///
/// Scoring counts the pods' non-zero CPU and memory requests ([`pod_non_zero_requests`]), so pods
/// without requests still spread; a scalar resource the pod does not request is left out.
#[derive(Clone, Debug)]
pub struct NodeResourcesFit {
    /// How nodes are scored.
    pub strategy: ScoringStrategy,
    /// The resources scoring weighs.
    pub resources: Vec<ResourceSpec>,
    /// Extended resources the filter ignores.
    pub ignored_resources: BTreeSet<String>,
    /// Domains (the part before `/`) of extended resources the filter ignores.
    pub ignored_resource_groups: BTreeSet<String>,
}

impl Default for NodeResourcesFit {
    fn default() -> NodeResourcesFit {
        NodeResourcesFit::new(ScoringStrategy::LeastAllocated)
    }
}

impl NodeResourcesFit {
    /// The plugin with a scoring strategy and the default resources (`cpu` and `memory`, weight
    /// 1).
    pub fn new(strategy: ScoringStrategy) -> NodeResourcesFit {
        NodeResourcesFit {
            strategy,
            resources: ResourceSpec::defaults(),
            ignored_resources: BTreeSet::new(),
            ignored_resource_groups: BTreeSet::new(),
        }
    }

    /// The same plugin, scoring these resources.
    pub fn with_resources(mut self, resources: Vec<ResourceSpec>) -> NodeResourcesFit {
        self.resources = resources;
        self
    }
}

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }
}

#[derive(Debug)]
struct PreFilterState {
    requests: Resource,
}

impl PreFilterPlugin for NodeResourcesFit {
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, _nodes: &[Arc<NodeInfo>]) -> Status {
        state.write(
            PRE_FILTER_KEY,
            PreFilterState {
                requests: pod_requests(pod),
            },
        );
        Status::SUCCESS
    }
}

impl FilterPlugin for NodeResourcesFit {
    fn filter(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Status {
        let pre = match state.read_or_error::<PreFilterState>(PRE_FILTER_KEY, NAME) {
            Ok(pre) => pre,
            Err(status) => return status,
        };
        let insufficient = insufficient_resources(
            &pre.requests,
            node,
            &self.ignored_resources,
            &self.ignored_resource_groups,
        );
        if insufficient.is_empty() {
            return Status::SUCCESS;
        }
        let code = if insufficient.iter().any(|r| r.unresolvable) {
            Code::UnschedulableAndUnresolvable
        } else {
            Code::Unschedulable
        };
        Status {
            code,
            reasons: insufficient.into_iter().map(|r| r.reason.into()).collect(),
            plugin: NAME,
        }
    }
}

/// Where a scored resource's amounts are kept in a [`Resource`], resolved from its name once
/// per cycle rather than matched by name at every node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResourceSlot {
    /// `cpu`.
    Cpu,
    /// `memory`.
    Memory,
    /// `ephemeral-storage`.
    EphemeralStorage,
    /// Any other name, looked up among the scalar resources.
    Scalar,
}

impl ResourceSlot {
    fn of(name: &str) -> ResourceSlot {
        match name {
            CPU => ResourceSlot::Cpu,
            MEMORY => ResourceSlot::Memory,
            EPHEMERAL_STORAGE => ResourceSlot::EphemeralStorage,
            _ => ResourceSlot::Scalar,
        }
    }
}

/// The pod's request of each scored resource (in the order of the plugin's
/// [`ResourceSpec`]s) with where the resource is kept, computed once per cycle by PreScore.
#[derive(Debug)]
pub(crate) struct PodRequestList(pub(crate) Vec<(ResourceSlot, i64)>);

/// The pod's request of each of `resources`: with non-zero defaults for CPU and memory unless
/// `use_requested`.
pub(crate) fn pod_request_list(
    pod: &Pod,
    resources: &[ResourceSpec],
    use_requested: bool,
) -> Vec<(ResourceSlot, i64)> {
    let requests = if use_requested {
        pod_requests(pod)
    } else {
        pod_non_zero_requests(pod)
    };
    resources
        .iter()
        .map(|r| (ResourceSlot::of(&r.name), requests.get(&r.name)))
        .collect()
}

/// The node's allocatable and what would be requested with the pod, for one resource, as
/// kube-scheduler's `calculateResourceAllocatableRequest`; `(0, 0)` to leave the resource out.
pub(crate) fn allocatable_and_requested(
    node: &NodeInfo,
    slot: ResourceSlot,
    name: &str,
    pod_request: i64,
    use_requested: bool,
) -> (i64, i64) {
    let requested = if use_requested {
        node.requested()
    } else {
        node.non_zero_requested()
    };
    let allocatable = node.allocatable();
    match slot {
        ResourceSlot::Cpu => (
            allocatable.milli_cpu,
            requested.milli_cpu.saturating_add(pod_request),
        ),
        ResourceSlot::Memory => (
            allocatable.memory,
            requested.memory.saturating_add(pod_request),
        ),
        ResourceSlot::EphemeralStorage => (
            allocatable.ephemeral_storage,
            node.requested()
                .ephemeral_storage
                .saturating_add(pod_request),
        ),
        ResourceSlot::Scalar => {
            if pod_request == 0 && is_scalar_resource_name(name) {
                return (0, 0);
            }
            match allocatable.scalar.get(name) {
                Some(&capacity) => (
                    capacity,
                    node.requested().get(name).saturating_add(pod_request),
                ),
                None => (0, 0),
            }
        }
    }
}

/// `(capacity − requested) × 100 / capacity`, zero when over capacity.
pub fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 || requested > capacity {
        return 0;
    }
    (capacity - requested).saturating_mul(MAX_NODE_SCORE) / capacity
}

/// `requested × 100 / capacity`, with requested capped at capacity.
pub fn most_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 {
        return 0;
    }
    requested.clamp(0, capacity).saturating_mul(MAX_NODE_SCORE) / capacity
}

impl PreScorePlugin for NodeResourcesFit {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        _feasible: &[&NodeInfo],
        _all: &[Arc<NodeInfo>],
    ) -> Status {
        state.write(
            PRE_SCORE_KEY,
            PodRequestList(pod_request_list(pod, &self.resources, false)),
        );
        Status::SUCCESS
    }
}

impl ScorePlugin for NodeResourcesFit {
    fn score(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        // Without PreScore (disabled), compute here, as Kubernetes falls back to.
        let computed;
        let requests = match state.read::<PodRequestList>(PRE_SCORE_KEY) {
            Some(requests) => &requests.0,
            None => {
                computed = pod_request_list(pod, &self.resources, false);
                &computed
            }
        };
        Ok(self.score_with(requests, node))
    }

    fn score_nodes(
        &self,
        state: &CycleState,
        pod: &Pod,
        nodes: &[&NodeInfo],
        scores: &mut Vec<NodeScore>,
    ) -> Result<(), Status> {
        let computed;
        let requests = match state.read::<PodRequestList>(PRE_SCORE_KEY) {
            Some(requests) => &requests.0,
            None => {
                computed = pod_request_list(pod, &self.resources, false);
                &computed
            }
        };
        score_each(nodes, scores, |node| self.score_with(requests, node));
        Ok(())
    }
}

impl NodeResourcesFit {
    /// The node's score for a pod requesting `requests` (by [`ResourceSpec`]).
    fn score_with(&self, requests: &[(ResourceSlot, i64)], node: &NodeInfo) -> i64 {
        let mut total: i64 = 0;
        let mut weights: i64 = 0;
        for (spec, &(slot, pod_request)) in self.resources.iter().zip(requests) {
            let (capacity, requested) =
                allocatable_and_requested(node, slot, &spec.name, pod_request, false);
            if capacity == 0 {
                continue;
            }
            let score = match self.strategy {
                ScoringStrategy::LeastAllocated => least_requested_score(requested, capacity),
                ScoringStrategy::MostAllocated => most_requested_score(requested, capacity),
            };
            total = total.saturating_add(score.saturating_mul(spec.weight));
            weights = weights.saturating_add(spec.weight);
        }
        if weights == 0 {
            return 0;
        }
        total / weights
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::Profile;
    use crate::scheduler::plugins::test_util::{named_pod, node, pod};
    use serde_json::{Value, json};
    use std::sync::Arc;

    fn requesting(requests: Value) -> Value {
        json!({"containers": [{"name": "c", "resources": {"requests": requests}}]})
    }

    /// A node with allocatable cpu 10 (millis), memory 20, pods 32, gpu 5, storage 20, already
    /// holding pods that request what `used` says.
    fn node_using(used: Value) -> NodeInfo {
        let mut n = node(
            json!({"metadata": {"name": "n"}, "status": {"allocatable": {
                "cpu": "10m", "memory": "20", "pods": "32", "example.com/gpu": "5", "ephemeral-storage": "20"
            }}}),
        );
        n.add_pod(&named_pod("existing", requesting(used)));
        n
    }

    fn filter(spec: Value, n: &NodeInfo) -> Status {
        let plugin = NodeResourcesFit::default();
        let mut state = CycleState::new();
        let p = pod(spec);
        assert!(plugin.pre_filter(&mut state, &p, &[]).is_success());
        plugin.filter(&state, &p, n)
    }

    #[test]
    fn fits_and_insufficient_reasons() {
        // Empty pod fits.
        assert!(
            filter(
                json!({"containers": []}),
                &node_using(json!({"cpu": "10m", "memory": "20"}))
            )
            .is_success()
        );
        // Fits exactly.
        assert!(
            filter(
                requesting(json!({"cpu": "5m", "memory": "5"})),
                &node_using(json!({"cpu": "5m", "memory": "15"}))
            )
            .is_success()
        );
        // Too much cpu.
        let status = filter(
            requesting(json!({"cpu": "1m", "memory": "1"})),
            &node_using(json!({"cpu": "10m", "memory": "20"})),
        );
        assert_eq!(status.code, Code::Unschedulable);
        assert_eq!(status.reasons, ["Insufficient cpu", "Insufficient memory"]);
        assert_eq!(status.plugin, NAME);
        // The init container rule: 3m init container on 8m used.
        let spec = json!({
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "3m", "memory": "1"}}}],
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "1m", "memory": "1"}}}]
        });
        let status = filter(spec, &node_using(json!({"cpu": "8m", "memory": "19"})));
        assert_eq!(status.reasons, ["Insufficient cpu"]);
        // More than the whole node: unresolvable.
        let status = filter(requesting(json!({"memory": "21"})), &node_using(json!({})));
        assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(status.reasons, ["Insufficient memory"]);
        // Extended and storage resources.
        let status = filter(
            requesting(json!({"example.com/gpu": "2", "ephemeral-storage": "11"})),
            &node_using(json!({"example.com/gpu": "4", "ephemeral-storage": "10"})),
        );
        assert_eq!(
            status.reasons,
            [
                "Insufficient ephemeral-storage",
                "Insufficient example.com/gpu"
            ]
        );
        // An extended resource the node does not have at all.
        let status = filter(
            requesting(json!({"example.com/fpga": "1"})),
            &node_using(json!({})),
        );
        assert_eq!(status.reasons, ["Insufficient example.com/fpga"]);
        assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
        // Zero-valued extended requests are ignored.
        assert!(
            filter(
                requesting(json!({"example.com/fpga": "0"})),
                &node_using(json!({}))
            )
            .is_success()
        );
    }

    #[test]
    fn too_many_pods() {
        let mut n = node(
            json!({"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": "1", "pods": "1"}}}),
        );
        assert!(filter(json!({"containers": []}), &n).is_success());
        n.add_pod(&named_pod("a", json!({"containers": []})));
        let status = filter(requesting(json!({"cpu": "2"})), &n);
        assert_eq!(status.reasons, ["Too many pods", "Insufficient cpu"]);
        let status = filter(json!({"containers": []}), &n);
        assert_eq!(status.code, Code::Unschedulable);
        assert_eq!(status.reasons, ["Too many pods"]);
    }

    #[test]
    fn ignored_extended_resources() {
        let mut plugin = NodeResourcesFit::default();
        plugin.ignored_resources.insert("example.com/fpga".into());
        plugin.ignored_resource_groups.insert("vendor.io".into());
        let n = node_using(json!({}));
        let p = pod(requesting(
            json!({"example.com/fpga": "1", "vendor.io/x": "3"}),
        ));
        let mut state = CycleState::new();
        plugin.pre_filter(&mut state, &p, &[]);
        assert!(plugin.filter(&state, &p, &n).is_success());
        let details = insufficient_resources(
            &pod_requests(&pod(requesting(json!({"cpu": "11m"})))),
            &n,
            &BTreeSet::new(),
            &BTreeSet::new(),
        );
        assert_eq!(
            details,
            [InsufficientResource {
                resource_name: "cpu".into(),
                reason: "Insufficient cpu".into(),
                requested: 11,
                used: 0,
                capacity: 10,
                unresolvable: true,
            }]
        );
    }

    fn scores(plugin: NodeResourcesFit, p: &Pod, nodes: &[NodeInfo]) -> Vec<i64> {
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

    fn machine(cpu: &str, memory: &str, pods: &[Value]) -> NodeInfo {
        let mut n = node(
            json!({"metadata": {"name": "m"}, "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "100"}}}),
        );
        for (i, spec) in pods.iter().enumerate() {
            n.add_pod(&named_pod(&format!("p{i}"), spec.clone()));
        }
        n
    }

    #[test]
    fn least_allocated_kubernetes_cases() {
        // Kubernetes' case: node1 cpu 4000m mem 10000, node2 cpu 6000m mem 10000; the pod requests
        // 3000m/5000 → node1 ((4000-3000)*100/4000 = 25, (10000-5000)*100/10000 = 50) → 37;
        // node2 (50, 50) → 50.
        let p = pod(json!({"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "1000m", "memory": "2000"}}},
            {"name": "b", "resources": {"requests": {"cpu": "2000m", "memory": "3000"}}}
        ]}));
        let nodes = [
            machine("4000m", "10000", &[]),
            machine("6000m", "10000", &[]),
        ];
        assert_eq!(scores(NodeResourcesFit::default(), &p, &nodes), [37, 50]);
        // A pod without requests counts 100m and 200Mi: on an empty 4-core 1Gi node
        // cpu (4000-100)*100/4000 = 97, memory (1024-200)*100/1024 = 80 → 88.
        let p = pod(json!({"containers": [{"name": "a"}]}));
        assert_eq!(
            scores(NodeResourcesFit::default(), &p, &[machine("4", "1Gi", &[])]),
            [88]
        );
        // Over capacity scores zero for that resource.
        let p = pod(requesting(json!({"cpu": "5", "memory": "1"})));
        assert_eq!(
            scores(NodeResourcesFit::default(), &p, &[machine("4", "100", &[])]),
            [49]
        );
    }

    #[test]
    fn most_allocated_kubernetes_cases() {
        let p = pod(json!({"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "1000m", "memory": "2000"}}},
            {"name": "b", "resources": {"requests": {"cpu": "2000m", "memory": "3000"}}}
        ]}));
        let nodes = [
            machine("4000m", "10000", &[]),
            machine("6000m", "10000", &[]),
        ];
        // node1 (75, 50) → 62; node2 (50, 50) → 50.
        assert_eq!(
            scores(
                NodeResourcesFit::new(ScoringStrategy::MostAllocated),
                &p,
                &nodes
            ),
            [62, 50]
        );
        // Requested above capacity is capped.
        let p = pod(requesting(json!({"cpu": "5", "memory": "100"})));
        assert_eq!(
            scores(
                NodeResourcesFit::new(ScoringStrategy::MostAllocated),
                &p,
                &[machine("4", "100", &[])]
            ),
            [100]
        );
        // Existing pods count: cpu (1 + 1) of 4 → 50, memory (40 + 30) of 100 → 70 → 60.
        let p = pod(requesting(json!({"cpu": "1", "memory": "30"})));
        let used = requesting(json!({"cpu": "1", "memory": "40"}));
        assert_eq!(
            scores(
                NodeResourcesFit::new(ScoringStrategy::MostAllocated),
                &p,
                &[machine("4", "100", &[used])]
            ),
            [60]
        );
    }

    #[test]
    fn extended_resource_weights() {
        let p = pod(requesting(
            json!({"cpu": "1", "memory": "50", "example.com/gpu": "1"}),
        ));
        let mut n = node(
            json!({"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": "4", "memory": "100", "example.com/gpu": "4", "pods": "10"}}}),
        );
        n.add_pod(&named_pod(
            "x",
            requesting(json!({"cpu": "1", "memory": "50", "example.com/gpu": "1"})),
        ));
        let plugin = NodeResourcesFit::new(ScoringStrategy::MostAllocated).with_resources(vec![
            ResourceSpec::new(CPU, 1),
            ResourceSpec::new(MEMORY, 1),
            ResourceSpec::new("example.com/gpu", 2),
        ]);
        // cpu 50, memory 100, gpu 50 ×2 → (50 + 100 + 100) / 4 = 62.
        assert_eq!(scores(plugin.clone(), &p, &[n.clone()]), [62]);
        // A pod without the gpu leaves it out: cpu 50, memory 100 → 75.
        let p = pod(requesting(json!({"cpu": "1", "memory": "50"})));
        assert_eq!(scores(plugin.clone(), &p, &[n.clone()]), [75]);
        // Without PreScore the score is computed on the spot.
        assert_eq!(plugin.score(&CycleState::new(), &p, &n), Ok(75));
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        fn requests(cpu: i64, memory: i64, gpu: i64) -> Value {
            json!({"containers": [{"name": "c", "resources": {"requests": {
                "cpu": format!("{cpu}m"), "memory": memory.to_string(), "example.com/gpu": gpu.to_string()
            }}}]})
        }

        proptest! {
            /// Whenever the filter admits a pod, the node's pods plus the pod stay within its
            /// allocatable in every resource the pod requests; whenever it refuses, one of them
            /// would be exceeded.
            #[test]
            fn filter_never_overcommits(
                existing in proptest::collection::vec((0..3000_i64, 0..3000_i64, 0..3_i64), 0..6),
                (cpu, memory, gpu) in (0..3000_i64, 0..3000_i64, 0..3_i64),
                pods in 1..6_i64,
            ) {
                let mut n = node(json!({"metadata": {"name": "n"}, "status": {"allocatable": {
                    "cpu": "4", "memory": "4000", "pods": pods.to_string(), "example.com/gpu": "3"
                }}}));
                for (i, (c, m, g)) in existing.iter().enumerate() {
                    n.add_pod(&named_pod(&format!("e{i}"), requests(*c, *m, *g)));
                }
                let admitted = filter(requests(cpu, memory, gpu), &n).is_success();
                let total = |f: fn(&(i64, i64, i64)) -> i64| existing.iter().map(f).sum::<i64>();
                // As Kubernetes: a resource the pod does not request is not checked, even on a
                // node already over-committed in it.
                let fits = (cpu == 0 || total(|e| e.0) + cpu <= 4000)
                    && (memory == 0 || total(|e| e.1) + memory <= 4000)
                    && (gpu == 0 || total(|e| e.2) + gpu <= 3)
                    && (existing.len() as i64) < pods;
                prop_assert_eq!(admitted, fits);
            }
        }
    }
}
