//! One scheduling cycle, without I/O: find the nodes that can run a pod, score them, pick one.
//!
//! This is the pure core of kube-scheduler's `schedulePod` (`schedule_one.go`): the
//! [`Scheduler`](super::Scheduler) pops a pod, updates its [`Snapshot`], and calls
//! [`schedule_pod`], which
//!
//! 1. runs the profile's PreFilter plugins (a rejection there rejects every node);
//! 2. runs the Filter plugins over the nodes, starting where the previous cycle stopped and
//!    stopping once [`num_feasible_nodes_to_find`] nodes fit (`percentageOfNodesToScore`), on one
//!    thread or, with [`CycleConfig::parallelism`] above one, on several;
//! 3. runs PreScore and Score over the feasible nodes (skipped when only one fits) and picks the
//!    highest total, ties broken at random (reservoir sampling, seeded, so runs replay);
//!
//! and returns the chosen node, or a [`FitError`] whose message is Kubernetes' `0/N nodes are
//! available: ...` line, with the count of nodes per reason.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::api::core::v1::Pod;

use super::cache::Snapshot;
use super::framework::{Code, CycleState, Profile, Status};
use super::node_info::NodeInfo;

/// Below this many nodes every node is evaluated (kube-scheduler's `minFeasibleNodesToFind`).
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;

/// How many nodes the sequential filter loop warms (see [`NodeInfo::warm`]) at a time: enough
/// cache misses in flight together to hide most of the memory latency of a cold snapshot.
const WARM_BATCH: usize = 16;
/// The adaptive percentage never goes below this (`minFeasibleNodesPercentageToFind`).
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: u32 = 5;
/// The message of a cycle run with no nodes at all (kube-scheduler's `ErrNoNodesAvailable`).
pub const NO_NODES_AVAILABLE: &str = "no nodes available to schedule pods";

/// The settings of a scheduling cycle.
#[derive(Clone, Debug)]
pub struct CycleConfig {
    /// kube-scheduler's `percentageOfNodesToScore`: the share of nodes to find feasible before
    /// the search stops, 0 (the default) for Kubernetes' adaptive share (50% minus 1% per 125
    /// nodes, at least 5%), 100 for all. See [`num_feasible_nodes_to_find`].
    pub percentage_of_nodes_to_score: u32,
    /// How many threads run the filters over the nodes (1, the default: the calling thread
    /// only). More helps with many nodes and costly filters; on a small machine the scheduler
    /// is faster binding on the other cores.
    pub parallelism: usize,
}

impl Default for CycleConfig {
    fn default() -> Self {
        CycleConfig {
            percentage_of_nodes_to_score: 0,
            parallelism: 1,
        }
    }
}

/// How many feasible nodes a cycle looks for among `num_all_nodes` before it stops filtering
/// (kube-scheduler's `numFeasibleNodesToFind`).
///
/// # Examples
///
/// ```
/// use orchestra_core::scheduler::schedule_one::num_feasible_nodes_to_find;
///
/// assert_eq!(num_feasible_nodes_to_find(0, 50), 50);
/// // Adaptive: 5000 nodes → 50% - 5000/125 % = 10%.
/// assert_eq!(num_feasible_nodes_to_find(0, 5000), 500);
/// // Never below 5% ...
/// assert_eq!(num_feasible_nodes_to_find(0, 20000), 1000);
/// // ... nor below 100 nodes.
/// assert_eq!(num_feasible_nodes_to_find(10, 500), 100);
/// assert_eq!(num_feasible_nodes_to_find(100, 5000), 5000);
/// ```
pub fn num_feasible_nodes_to_find(percentage: u32, num_all_nodes: usize) -> usize {
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return num_all_nodes;
    }
    let mut percentage = u64::from(percentage);
    if percentage == 0 {
        let adaptive = 50_i64 - i64::try_from(num_all_nodes / 125).unwrap_or(i64::MAX);
        percentage = u64::try_from(adaptive)
            .unwrap_or(0)
            .max(u64::from(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND));
    }
    if percentage >= 100 {
        return num_all_nodes;
    }
    let nodes = u64::try_from(num_all_nodes).unwrap_or(u64::MAX) * percentage / 100;
    usize::try_from(nodes)
        .unwrap_or(num_all_nodes)
        .max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Why a pod fits no node: what each node (or the PreFilter) said, and what PostFilter did.
#[derive(Clone, Debug, Default)]
pub struct Diagnosis {
    /// The status of each rejected node, by name.
    pub node_to_status: BTreeMap<String, Status>,
    /// The message of the PreFilter plugin that rejected the pod outright, if one did.
    pub pre_filter_msg: Option<String>,
    /// The message of the PostFilter plugins (preemption), if they ran and said something.
    pub post_filter_msg: Option<String>,
    /// The plugins that rejected the pod, for the queue to know which events may help it.
    pub unschedulable_plugins: BTreeSet<String>,
}

/// A pod that fits no node (kube-scheduler's `FitError`); its [`Display`](fmt::Display) is the
/// message of the `FailedScheduling` event and of the `PodScheduled` condition.
#[derive(Clone, Debug)]
pub struct FitError {
    /// How many nodes the snapshot had.
    pub num_all_nodes: usize,
    /// Why the pod fits none of them.
    pub diagnosis: Diagnosis,
}

impl fmt::Display for FitError {
    /// Kubernetes' wording: `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match
    /// Pod's node affinity/selector.`, reasons counted over nodes and sorted as strings, then the
    /// PostFilter's message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        match &self.diagnosis.pre_filter_msg {
            Some(message) => write!(f, " {message}.")?,
            None => {
                let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                for status in self.diagnosis.node_to_status.values() {
                    for reason in &status.reasons {
                        *counts.entry(reason.as_ref()).or_default() += 1;
                    }
                }
                let mut histogram: Vec<String> = counts
                    .iter()
                    .map(|(reason, count)| format!("{count} {reason}"))
                    .collect();
                histogram.sort();
                if !histogram.is_empty() {
                    write!(f, " {}.", histogram.join(", "))?;
                }
            }
        }
        if let Some(message) = &self.diagnosis.post_filter_msg {
            write!(f, " {message}")?;
        }
        Ok(())
    }
}

/// Why a cycle did not pick a node.
#[derive(Clone, Debug)]
pub enum ScheduleError {
    /// The snapshot has no nodes.
    NoNodes,
    /// No node fits the pod.
    Unschedulable(FitError),
    /// A plugin failed (a [`Code::Error`] status): the pod is retried after a back-off.
    Error(Status),
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScheduleError::NoNodes => f.write_str(NO_NODES_AVAILABLE),
            ScheduleError::Unschedulable(error) => error.fmt(f),
            ScheduleError::Error(status) => {
                write!(
                    f,
                    "running {:?} plugin: {}",
                    status.plugin,
                    status.message()
                )
            }
        }
    }
}

/// The node a cycle picked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleResult {
    /// The chosen node's name.
    pub suggested_host: String,
    /// How many nodes the filters ran on.
    pub evaluated_nodes: usize,
    /// How many of them fit.
    pub feasible_nodes: usize,
}

/// What a cycle carries over to the next: where the search for feasible nodes resumes, and the
/// random state that breaks ties between equal scores.
#[derive(Clone, Debug)]
pub struct CycleCursor {
    /// The index in the snapshot's node list where the next search starts
    /// (`nextStartNodeIndex`), so that successive pods spread over all nodes.
    pub next_start_node_index: usize,
    rng: u64,
}

impl CycleCursor {
    /// A cursor at the first node whose tie-breaking draws come from `seed`.
    pub fn new(seed: u64) -> CycleCursor {
        CycleCursor {
            next_start_node_index: 0,
            rng: seed,
        }
    }

    /// splitmix64: a small, fast, seeded generator; quality is ample for tie-breaking.
    fn next_u64(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

/// Runs one scheduling cycle of `pod` with `profile` over `snapshot`: see the
/// [module documentation](self).
///
/// # Errors
///
/// [`ScheduleError::NoNodes`] when the snapshot is empty, [`ScheduleError::Unschedulable`] with
/// the diagnosis when no node fits, [`ScheduleError::Error`] when a plugin fails.
pub fn schedule_pod(
    profile: &Profile,
    config: &CycleConfig,
    cursor: &mut CycleCursor,
    state: &mut CycleState,
    pod: &Pod,
    snapshot: &Snapshot,
) -> Result<ScheduleResult, ScheduleError> {
    let nodes = snapshot.node_infos();
    if nodes.is_empty() {
        return Err(ScheduleError::NoNodes);
    }
    let mut diagnosis = Diagnosis::default();
    let feasible = find_nodes_that_fit(
        profile,
        config,
        cursor,
        state,
        pod,
        snapshot,
        &mut diagnosis,
    )?;
    if feasible.is_empty() {
        return Err(ScheduleError::Unschedulable(FitError {
            num_all_nodes: nodes.len(),
            diagnosis,
        }));
    }
    let evaluated_nodes = feasible.len() + diagnosis.node_to_status.len();
    if let [only] = feasible.as_slice() {
        return Ok(ScheduleResult {
            suggested_host: only.name().to_owned(),
            evaluated_nodes,
            feasible_nodes: 1,
        });
    }
    let status = profile.run_pre_score(state, pod, &feasible, nodes);
    if !status.is_success() {
        return Err(ScheduleError::Error(status));
    }
    let scores = profile
        .run_score(state, pod, &feasible)
        .map_err(ScheduleError::Error)?;
    // Reservoir sampling over the best scores, as kube-scheduler's selectHost.
    let mut best = 0;
    let mut best_score = i64::MIN;
    let mut ties = 0_u64;
    for score in &scores {
        if score.score > best_score {
            best_score = score.score;
            best = score.index;
            ties = 1;
        } else if score.score == best_score {
            ties += 1;
            if cursor.below(ties) == 0 {
                best = score.index;
            }
        }
    }
    let host = feasible.get(best).map_or("", |node| node.name());
    Ok(ScheduleResult {
        suggested_host: host.to_owned(),
        evaluated_nodes,
        feasible_nodes: feasible.len(),
    })
}

/// Runs PreFilter, then the filters over the nodes until enough fit; records every rejection in
/// `diagnosis`.
fn find_nodes_that_fit<'s>(
    profile: &Profile,
    config: &CycleConfig,
    cursor: &mut CycleCursor,
    state: &mut CycleState,
    pod: &Pod,
    snapshot: &'s Snapshot,
    diagnosis: &mut Diagnosis,
) -> Result<Vec<&'s NodeInfo>, ScheduleError> {
    let nodes = snapshot.node_infos();
    let status = profile.run_pre_filter(state, pod, nodes);
    if !status.is_success() {
        if status.code == Code::Error {
            return Err(ScheduleError::Error(status));
        }
        // A rejection at PreFilter rejects every node with the same status.
        diagnosis.pre_filter_msg = Some(status.message());
        if !status.plugin.is_empty() {
            diagnosis
                .unschedulable_plugins
                .insert(status.plugin.to_owned());
        }
        for node in nodes {
            diagnosis
                .node_to_status
                .insert(node.name().to_owned(), status.clone());
        }
        return Ok(Vec::new());
    }
    // A PreFilter that knows the pod's only possible nodes restricts the search to them.
    if let Some(names) = state.node_names() {
        let mut candidates = Vec::with_capacity(names.len());
        for node in nodes {
            if names.contains(node.name()) {
                candidates.push(node.as_ref());
            } else {
                diagnosis.node_to_status.insert(
                    node.name().to_owned(),
                    Status::new(
                        Code::UnschedulableAndUnresolvable,
                        "",
                        "node(s) didn't satisfy plugin(s) [NodeAffinity]",
                    ),
                );
            }
        }
        diagnosis
            .unschedulable_plugins
            .insert("NodeAffinity".into());
        let want = candidates.len();
        let node_at = |i: usize| candidates[i];
        return run_filters(
            profile, config, state, pod, node_at, want, 0, want, diagnosis,
        );
    }
    let want = num_feasible_nodes_to_find(config.percentage_of_nodes_to_score, nodes.len());
    let start = cursor.next_start_node_index % nodes.len();
    let before = diagnosis.node_to_status.len();
    let node_at = |i: usize| nodes[i].as_ref();
    let feasible = run_filters(
        profile,
        config,
        state,
        pod,
        node_at,
        nodes.len(),
        start,
        want,
        diagnosis,
    )?;
    let processed = feasible.len() + diagnosis.node_to_status.len() - before;
    cursor.next_start_node_index = (start + processed) % nodes.len();
    Ok(feasible)
}

/// Filters the `total` nodes `node_at` gives from `start` (wrapping around) until `want` fit or
/// all were tried.
#[allow(clippy::too_many_arguments)]
fn run_filters<'s>(
    profile: &Profile,
    config: &CycleConfig,
    state: &CycleState,
    pod: &Pod,
    node_at: impl Fn(usize) -> &'s NodeInfo + Sync,
    total: usize,
    start: usize,
    want: usize,
    diagnosis: &mut Diagnosis,
) -> Result<Vec<&'s NodeInfo>, ScheduleError> {
    let mut feasible = Vec::with_capacity(want.min(total));
    if total == 0 || want == 0 {
        return Ok(feasible);
    }
    let mut record = |node: &'s NodeInfo, status: Status| -> Result<bool, ScheduleError> {
        match status.code {
            Code::Success | Code::Skip => {
                feasible.push(node);
                Ok(feasible.len() >= want)
            }
            Code::Error => Err(ScheduleError::Error(status)),
            Code::Unschedulable | Code::UnschedulableAndUnresolvable => {
                if !status.plugin.is_empty() {
                    diagnosis
                        .unschedulable_plugins
                        .insert(status.plugin.to_owned());
                }
                diagnosis
                    .node_to_status
                    .insert(node.name().to_owned(), status);
                Ok(false)
            }
        }
    };
    let plan = profile.filter_plan(state);
    let threads = config.parallelism.max(1);
    if threads == 1 || total < 2 * MIN_FEASIBLE_NODES_TO_FIND {
        for offset in 0..total {
            if offset % WARM_BATCH == 0 {
                for ahead in offset..(offset + WARM_BATCH).min(total) {
                    node_at((start + ahead) % total).warm();
                }
            }
            let node = node_at((start + offset) % total);
            if record(node, plan.run(state, pod, node))? {
                break;
            }
        }
        return Ok(feasible);
    }
    // Parallel: filter chunks of the rotated node list on `threads` threads, a round of chunks
    // at a time, and take the results in node order, so that the outcome does not depend on
    // the threads' timing.
    let chunk = (want / threads).clamp(16, 1024);
    let node_at = &node_at;
    let plan = &plan;
    let mut offset = 0;
    while offset < total {
        let round_end = (offset + chunk * threads).min(total);
        let statuses: Vec<Vec<Status>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (offset..round_end)
                .step_by(chunk)
                .map(|from| {
                    let to = (from + chunk).min(round_end);
                    scope.spawn(move || {
                        (from..to)
                            .map(|i| {
                                let node = node_at((start + i) % total);
                                plan.run(state, pod, node)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle.join().unwrap_or_else(|_| {
                        vec![Status::error("", "a filter thread panicked"); chunk]
                    })
                })
                .collect()
        });
        for (i, status) in (offset..round_end).zip(statuses.into_iter().flatten()) {
            if record(node_at((start + i) % total), status)? {
                return Ok(feasible);
            }
        }
        offset = round_end;
    }
    Ok(feasible)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::SchedulerCache;
    use crate::scheduler::plugins::default_profile;
    use k8s_openapi::api::core::v1::Node;
    use serde_json::json;
    use std::sync::Arc;

    fn node(name: &str, cpu: &str, labels: serde_json::Value) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "labels": labels},
                "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}}
            }))
            .unwrap(),
        )
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": spec
        }))
        .unwrap()
    }

    fn snapshot(cache: &SchedulerCache) -> Snapshot {
        let mut snapshot = Snapshot::new();
        cache.update_snapshot(&mut snapshot);
        snapshot
    }

    fn run(
        cache: &SchedulerCache,
        p: &Pod,
        config: &CycleConfig,
    ) -> Result<ScheduleResult, ScheduleError> {
        let profile = default_profile();
        let mut cursor = CycleCursor::new(7);
        let mut state = CycleState::new();
        schedule_pod(
            &profile,
            config,
            &mut cursor,
            &mut state,
            p,
            &snapshot(cache),
        )
    }

    #[test]
    fn picks_the_least_allocated_node() {
        let cache = SchedulerCache::new();
        cache.add_node(node("small", "2", json!({})));
        cache.add_node(node("big", "16", json!({})));
        let p =
            pod(json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}));
        let result = run(&cache, &p, &CycleConfig::default()).unwrap();
        assert_eq!(result.suggested_host, "big");
        assert_eq!(result.feasible_nodes, 2);
        assert_eq!(result.evaluated_nodes, 2);
    }

    #[test]
    fn fit_error_counts_reasons_per_node_as_kubernetes_words_them() {
        let cache = SchedulerCache::new();
        cache.add_node(node("a", "1", json!({"zone": "a"})));
        cache.add_node(node("b", "1", json!({"zone": "b"})));
        cache.add_node(node("c", "8", json!({"zone": "b"})));
        let p = pod(json!({
            "nodeSelector": {"zone": "a"},
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "2"}}}]
        }));
        let Err(ScheduleError::Unschedulable(error)) = run(&cache, &p, &CycleConfig::default())
        else {
            panic!("expected a fit error");
        };
        assert_eq!(
            error.to_string(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector."
        );
        assert_eq!(
            error.diagnosis.unschedulable_plugins,
            BTreeSet::from(["NodeAffinity".to_owned(), "NodeResourcesFit".to_owned()])
        );
    }

    #[test]
    fn no_nodes_and_pre_filter_rejections() {
        let cache = SchedulerCache::new();
        let p = pod(json!({"containers": []}));
        let error = run(&cache, &p, &CycleConfig::default()).unwrap_err();
        assert_eq!(error.to_string(), NO_NODES_AVAILABLE);
        cache.add_node(node("a", "1", json!({})));
        // Required node affinity to a node name that does not exist: PreFilter restricts the
        // nodes to none.
        let p = pod(json!({
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["zzz"]}]}]
            }}},
            "containers": []
        }));
        let error = run(&cache, &p, &CycleConfig::default()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "0/1 nodes are available: 1 node(s) didn't satisfy plugin(s) [NodeAffinity]."
        );
    }

    #[test]
    fn the_search_stops_at_the_percentage_and_resumes_where_it_stopped() {
        let cache = SchedulerCache::new();
        for i in 0..1000 {
            cache.add_node(node(&format!("n{i:04}"), "4", json!({})));
        }
        let snapshot = snapshot(&cache);
        let profile = default_profile();
        let p =
            pod(json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}));
        for (parallelism, percentage) in [(1, 0), (2, 0), (3, 30)] {
            let config = CycleConfig {
                percentage_of_nodes_to_score: percentage,
                parallelism,
            };
            let want = num_feasible_nodes_to_find(percentage, 1000);
            let mut cursor = CycleCursor::new(1);
            let mut state = CycleState::new();
            let first =
                schedule_pod(&profile, &config, &mut cursor, &mut state, &p, &snapshot).unwrap();
            assert_eq!(first.feasible_nodes, want);
            assert_eq!(first.evaluated_nodes, want);
            assert_eq!(cursor.next_start_node_index, want);
            let mut state = CycleState::new();
            schedule_pod(&profile, &config, &mut cursor, &mut state, &p, &snapshot).unwrap();
            assert_eq!(cursor.next_start_node_index, (2 * want) % 1000);
        }
    }

    #[test]
    fn parallel_and_sequential_filters_agree() {
        let cache = SchedulerCache::new();
        for i in 0..600 {
            // Only every seventh node has room.
            let cpu = if i % 7 == 0 { "4" } else { "1" };
            cache.add_node(node(&format!("n{i:04}"), cpu, json!({})));
        }
        let snapshot = snapshot(&cache);
        let profile = default_profile();
        let p =
            pod(json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "2"}}}]}));
        let outcome = |parallelism| {
            let config = CycleConfig {
                percentage_of_nodes_to_score: 100,
                parallelism,
            };
            let mut cursor = CycleCursor::new(3);
            cursor.next_start_node_index = 250;
            let mut state = CycleState::new();
            let result =
                schedule_pod(&profile, &config, &mut cursor, &mut state, &p, &snapshot).unwrap();
            (result, cursor.next_start_node_index)
        };
        let sequential = outcome(1);
        assert_eq!(sequential.0.feasible_nodes, 86);
        assert_eq!(outcome(2), sequential);
        assert_eq!(outcome(4), sequential);
    }
}
