//! The scheduler against the real Api over MemoryStore: binding, events and conditions, re-queueing
//! on cluster events, racing instances, leader election, and random clusters checked against a
//! model of the filters.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use orchestra_core::api::{
    Api, Client, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams,
};
use orchestra_core::k8s::api::core::v1::{Event, Node, Pod};
use orchestra_core::k8s::api::scheduling::v1::PriorityClass;
use orchestra_core::runtime::leader_election::LeaderElectionConfig;
use orchestra_core::scheduler::framework::Profile;
use orchestra_core::scheduler::plugins::{
    node_affinity::NodeAffinity, node_resources_fit::NodeResourcesFit,
    node_unschedulable::NodeUnschedulable, taint_toleration::TaintToleration,
};
use orchestra_core::scheduler::queue::QueueConfig;
use orchestra_core::scheduler::{Scheduler, SchedulerConfig};
use orchestra_core::store::MemoryStore;
use proptest::prelude::*;
use serde_json::{Value, json};
use tokio::sync::oneshot;

async fn client() -> Client {
    let client = Client::new(MemoryStore::new());
    client.bootstrap().await.unwrap();
    client
}

fn node_object(name: &str, cpu: &str, labels: Value, spec: Value) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
        "status": {"allocatable": {"cpu": cpu, "memory": "64Gi", "pods": "110"}}
    }))
    .unwrap()
}

async fn add_node(client: &Client, name: &str, cpu: &str, labels: Value, spec: Value) {
    Api::<Node>::all(client.clone())
        .create(
            &PostParams::default(),
            &node_object(name, cpu, labels, spec),
        )
        .await
        .unwrap();
}

fn pod_object(name: &str, milli_cpu: i64, extra: Value) -> Pod {
    let mut spec = json!({"containers": [{
        "name": "c", "image": "busybox",
        "resources": {"requests": {"cpu": format!("{milli_cpu}m")}}
    }]});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            spec.insert(key.clone(), value.clone());
        }
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "test"}},
        "spec": spec
    }))
    .unwrap()
}

async fn add_pod(client: &Client, name: &str, milli_cpu: i64, extra: Value) {
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod_object(name, milli_cpu, extra))
        .await
        .unwrap();
}

/// A running scheduler, stopped (and checked to stop cleanly) on drop of the handle.
struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), orchestra_core::scheduler::SchedulerError>>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let outcome = tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("the scheduler stops")
            .expect("the scheduler task does not panic");
        outcome.expect("the scheduler ends without error");
    }
}

fn fast_queue() -> QueueConfig {
    QueueConfig {
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(10),
        ..QueueConfig::default()
    }
}

fn start(client: &Client, config: SchedulerConfig) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let scheduler = Scheduler::with_config(client.clone(), config);
    let task = tokio::spawn(scheduler.run(async {
        let _ = stopped.await;
    }));
    Running {
        stop: Some(stop),
        task,
    }
}

fn config() -> SchedulerConfig {
    SchedulerConfig {
        queue: fast_queue(),
        ..SchedulerConfig::default()
    }
}

async fn pods(client: &Client) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref())
}

fn scheduled_condition(pod: &Pod) -> Option<(String, Option<String>, Option<String>)> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Polls `check` until it holds, for at most `limit`.
async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn milli_cpu(quantity: &str) -> i64 {
    quantity
        .strip_suffix('m')
        .map(|m| m.parse().unwrap())
        .unwrap_or_else(|| quantity.parse::<i64>().unwrap() * 1000)
}

fn requested_milli_cpu(pod: &Pod) -> i64 {
    pod.spec
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .filter_map(|c| c.resources.as_ref()?.requests.as_ref()?.get("cpu"))
        .map(|q| milli_cpu(&q.0))
        .sum()
}

/// Checks that no node's allocatable cpu is exceeded; returns the cpu used per node.
async fn assert_no_overcommit(client: &Client) -> BTreeMap<String, i64> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let mut used: BTreeMap<String, i64> = BTreeMap::new();
    for pod in pods(client).await {
        if let Some(node) = node_of(&pod) {
            *used.entry(node.to_owned()).or_default() += requested_milli_cpu(&pod);
        }
    }
    for node in nodes {
        let name = node.metadata.name.clone().unwrap();
        let allocatable = milli_cpu(&node.status.unwrap().allocatable.unwrap()["cpu"].0);
        let used = used.get(&name).copied().unwrap_or(0);
        assert!(
            used <= allocatable,
            "node {name}: {used}m requested > {allocatable}m allocatable"
        );
    }
    used
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_bound_with_an_event_and_the_condition() {
    let client = client().await;
    add_node(&client, "small", "1", json!({}), json!({})).await;
    add_node(&client, "big", "8", json!({}), json!({})).await;
    let running = start(&client, config());
    for i in 0..20 {
        add_pod(&client, &format!("p{i}"), 250, json!({})).await;
    }
    assert!(
        eventually(Duration::from_secs(10), || async {
            pods(&client).await.iter().all(|p| node_of(p).is_some())
        })
        .await
    );
    let used = assert_no_overcommit(&client).await;
    assert_eq!(used.values().sum::<i64>(), 20 * 250);
    // LeastAllocated spreads onto the big node first.
    assert!(used["big"] > used.get("small").copied().unwrap_or(0));
    for pod in pods(&client).await {
        let (status, _, _) = scheduled_condition(&pod).unwrap();
        assert_eq!(status, "True");
    }
    let events = Api::<Event>::namespaced(client.clone(), "default");
    assert!(
        eventually(Duration::from_secs(5), || async {
            let events = events.list(&ListParams::default()).await.unwrap().items;
            events
                .iter()
                .filter(|e| e.reason.as_deref() == Some("Scheduled"))
                .count()
                == 20
        })
        .await
    );
    let scheduled = events.list(&ListParams::default()).await.unwrap().items;
    let p0 = scheduled
        .iter()
        .find(|e| e.involved_object.name.as_deref() == Some("p0"))
        .unwrap();
    let p0_node = node_of(
        &Api::<Pod>::namespaced(client.clone(), "default")
            .get("p0")
            .await
            .unwrap(),
    )
    .unwrap()
    .to_owned();
    assert_eq!(
        p0.message.as_deref(),
        Some(format!("Successfully assigned default/p0 to {p0_node}").as_str())
    );
    assert_eq!(
        p0.source.as_ref().and_then(|s| s.component.as_deref()),
        Some("default-scheduler")
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unschedulable_pod_says_why_and_is_placed_once_a_node_fits() {
    let client = client().await;
    add_node(&client, "a", "1", json!({"zone": "a"}), json!({})).await;
    add_node(&client, "b", "8", json!({"zone": "b"}), json!({})).await;
    add_node(
        &client,
        "c",
        "8",
        json!({"zone": "a"}),
        json!({"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}),
    )
    .await;
    let running = start(&client, config());
    add_pod(&client, "big", 2000, json!({"nodeSelector": {"zone": "a"}})).await;
    let api = Api::<Pod>::namespaced(client.clone(), "default");
    let expected = "0/3 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: db}.";
    assert!(
        eventually(Duration::from_secs(10), || async {
            let pod = api.get("big").await.unwrap();
            scheduled_condition(&pod).is_some_and(|(status, reason, message)| {
                status == "False"
                    && reason.as_deref() == Some("Unschedulable")
                    && message.as_deref().is_some_and(|m| m.starts_with(expected))
            })
        })
        .await,
        "condition: {:?}",
        scheduled_condition(&api.get("big").await.unwrap())
    );
    let events = Api::<Event>::namespaced(client.clone(), "default");
    let failed = || async {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("FailedScheduling"))
    };
    assert!(
        eventually(Duration::from_secs(5), || async {
            failed().await.is_some()
        })
        .await
    );
    let failed = failed().await.unwrap();
    assert_eq!(failed.type_.as_deref(), Some("Warning"));
    assert!(failed.message.as_deref().unwrap().starts_with(expected));
    // A node that fits arrives: the parked pod is retried and bound there.
    add_node(&client, "d", "4", json!({"zone": "a"}), json!({})).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            node_of(&api.get("big").await.unwrap()) == Some("d")
        })
        .await
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_other_schedulers_are_left_alone() {
    let client = client().await;
    add_node(&client, "n1", "4", json!({}), json!({})).await;
    let running = start(&client, config());
    add_pod(&client, "mine", 100, json!({})).await;
    add_pod(&client, "theirs", 100, json!({"schedulerName": "other"})).await;
    let api = Api::<Pod>::namespaced(client.clone(), "default");
    assert!(
        eventually(Duration::from_secs(10), || async {
            node_of(&api.get("mine").await.unwrap()).is_some()
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(node_of(&api.get("theirs").await.unwrap()), None);
    running.stop().await;
}

/// Records every node assignment each pod ever had, from a watch, until told to stop (then it
/// reads what is left until the watch is quiet for half a second).
fn watch_assignments(
    client: &Client,
    stop: oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<BTreeMap<String, Vec<String>>> {
    let api = Api::<Pod>::namespaced(client.clone(), "default");
    tokio::spawn(async move {
        let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut stream = api
            .watch(
                &WatchParams {
                    timeout: Some(Duration::from_secs(120)),
                    ..WatchParams::default()
                },
                "0",
            )
            .await
            .unwrap();
        let mut record = |event: WatchEvent<Pod>| {
            if let WatchEvent::Added(pod) | WatchEvent::Modified(pod) = event
                && let Some(node) = node_of(&pod)
            {
                let history = seen.entry(pod.metadata.name.clone().unwrap()).or_default();
                if history.last().map(String::as_str) != Some(node) {
                    history.push(node.to_owned());
                }
            }
        };
        let mut stop = stop;
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                event = stream.next() => match event {
                    Some(event) => record(event),
                    None => break,
                },
            }
        }
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(500), stream.next()).await
        {
            record(event);
        }
        seen
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_racing_never_bind_a_pod_twice() {
    let client = client().await;
    for i in 0..10 {
        add_node(&client, &format!("n{i}"), "64", json!({}), json!({})).await;
    }
    let (stop_watching, watching) = oneshot::channel();
    let assignments = watch_assignments(&client, watching);
    let first = start(
        &client,
        SchedulerConfig {
            seed: 1,
            ..config()
        },
    );
    let second = start(
        &client,
        SchedulerConfig {
            seed: 2,
            ..config()
        },
    );
    for i in 0..300 {
        add_pod(&client, &format!("p{i}"), 100, json!({})).await;
    }
    assert!(
        eventually(Duration::from_secs(20), || async {
            pods(&client).await.iter().all(|p| node_of(p).is_some())
        })
        .await
    );
    first.stop().await;
    second.stop().await;
    let _ = stop_watching.send(());
    let assignments = assignments.await.unwrap();
    assert_eq!(assignments.len(), 300);
    for (pod, nodes) in assignments {
        assert_eq!(nodes.len(), 1, "{pod} was placed on {nodes:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_elected_schedulers_never_overcommit() {
    let client = client().await;
    for i in 0..4 {
        add_node(&client, &format!("n{i}"), "2", json!({}), json!({})).await;
    }
    let election = |identity: &str| LeaderElectionConfig {
        lease_duration: Duration::from_millis(600),
        renew_deadline: Duration::from_millis(400),
        retry_period: Duration::from_millis(100),
        ..LeaderElectionConfig::new("kube-system", "kube-scheduler", identity)
    };
    let first = start(
        &client,
        SchedulerConfig {
            leader_election: Some(election("one")),
            ..config()
        },
    );
    let second = start(
        &client,
        SchedulerConfig {
            leader_election: Some(election("two")),
            ..config()
        },
    );
    // 60 pods of 300m on 4 nodes of 2 cores: room for 24.
    for i in 0..60 {
        add_pod(&client, &format!("p{i}"), 300, json!({})).await;
    }
    assert!(
        eventually(Duration::from_secs(20), || async {
            pods(&client)
                .await
                .iter()
                .filter(|p| node_of(p).is_some())
                .count()
                == 24
        })
        .await
    );
    // The leader steps down; the other takes over and still sees every node full.
    first.stop().await;
    add_pod(&client, "late", 300, json!({})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let used = assert_no_overcommit(&client).await;
    assert_eq!(used.values().sum::<i64>(), 24 * 300);
    second.stop().await;
}

// --- Random clusters against a model of the filters -------------------------------------------

#[derive(Clone, Debug)]
struct NodeSpec {
    milli_cpu: i64,
    zone: usize,
    tainted: bool,
    cordoned: bool,
}

#[derive(Clone, Debug)]
struct PodSpec {
    milli_cpu: i64,
    zone: Option<usize>,
    tolerates: bool,
}

const ZONES: [&str; 2] = ["a", "b"];

fn arb_cluster() -> impl Strategy<Value = (Vec<NodeSpec>, Vec<PodSpec>)> {
    let node = (
        1..=4_i64,
        0..2_usize,
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(cores, zone, tainted, cordoned)| NodeSpec {
            milli_cpu: cores * 1000,
            zone,
            tainted,
            cordoned,
        });
    let pod = (
        1..=20_i64,
        prop::option::weighted(0.3, 0..2_usize),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(tenths, zone, tolerates)| PodSpec {
            milli_cpu: tenths * 100,
            zone,
            tolerates,
        });
    (
        prop::collection::vec(node, 1..6),
        prop::collection::vec(pod, 1..16),
    )
}

/// The first filter that rejects `pod` on `node` in kube-scheduler's order, given `used` cpu.
fn model_reason(pod: &PodSpec, node: &NodeSpec, used: i64) -> Option<&'static str> {
    if node.cordoned {
        return Some("node(s) were unschedulable");
    }
    if node.tainted && !pod.tolerates {
        return Some("node(s) had untolerated taint {dedicated: x}");
    }
    if pod.zone.is_some_and(|zone| zone != node.zone) {
        return Some("node(s) didn't match Pod's node affinity/selector");
    }
    if used + pod.milli_cpu > node.milli_cpu {
        return Some("Insufficient cpu");
    }
    None
}

/// The profile the model describes: kube-scheduler's filters that these clusters exercise.
fn model_profile() -> Profile {
    let taints = Arc::new(TaintToleration);
    let affinity = Arc::new(NodeAffinity);
    let fit = Arc::new(NodeResourcesFit::default());
    Profile::new("default-scheduler")
        .with_pre_filter(fit.clone())
        .with_pre_filter(affinity.clone())
        .with_filter(Arc::new(NodeUnschedulable))
        .with_filter(taints.clone())
        .with_filter(affinity.clone())
        .with_filter(fit.clone())
        .with_pre_score(fit.clone())
        .with_score(fit, 1)
}

async fn check_random_cluster(nodes: Vec<NodeSpec>, pod_specs: Vec<PodSpec>) {
    let client = client().await;
    for (i, node) in nodes.iter().enumerate() {
        let spec = json!({
            "unschedulable": node.cordoned,
            "taints": if node.tainted { json!([{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]) } else { json!([]) },
        });
        add_node(
            &client,
            &format!("n{i}"),
            &format!("{}m", node.milli_cpu),
            json!({"zone": ZONES[node.zone]}),
            spec,
        )
        .await;
    }
    let running = start(
        &client,
        SchedulerConfig {
            profiles: vec![model_profile()],
            ..config()
        },
    );
    for (i, pod) in pod_specs.iter().enumerate() {
        let mut extra = json!({});
        if let Some(zone) = pod.zone {
            extra["nodeSelector"] = json!({"zone": ZONES[zone]});
        }
        if pod.tolerates {
            extra["tolerations"] =
                json!([{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]);
        }
        add_pod(&client, &format!("p{i:02}"), pod.milli_cpu, extra).await;
    }
    // Quiescence: every pod is bound or says, from an attempt made once the cluster stopped
    // changing, exactly what the model says about the final cluster.
    let expected_message = |pods: &[Pod], pod: &PodSpec| -> String {
        let mut used = vec![0_i64; nodes.len()];
        for p in pods {
            if let Some(node) = node_of(p) {
                used[node[1..].parse::<usize>().unwrap()] += requested_milli_cpu(p);
            }
        }
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (node, used) in nodes.iter().zip(&used) {
            match model_reason(pod, node, *used) {
                Some(reason) => *counts.entry(reason).or_default() += 1,
                None => return String::new(),
            }
        }
        let mut histogram: Vec<String> = counts.iter().map(|(r, c)| format!("{c} {r}")).collect();
        histogram.sort();
        format!(
            "0/{} nodes are available: {}.",
            nodes.len(),
            histogram.join(", ")
        )
    };
    let settled = eventually(Duration::from_secs(15), || async {
        let pods = pods(&client).await;
        pods.iter().all(|p| {
            if node_of(p).is_some() {
                return true;
            }
            let index: usize = p.metadata.name.as_ref().unwrap()[1..].parse().unwrap();
            let expected = expected_message(&pods, &pod_specs[index]);
            !expected.is_empty()
                && scheduled_condition(p).is_some_and(|(status, reason, message)| {
                    status == "False"
                        && reason.as_deref() == Some("Unschedulable")
                        && message.as_deref() == Some(expected.as_str())
                })
        })
    })
    .await;
    let pods = pods(&client).await;
    assert!(
        settled,
        "not settled: nodes {nodes:?}, pods {:?}",
        pods.iter()
            .map(|p| (
                p.metadata.name.clone(),
                node_of(p).map(str::to_owned),
                scheduled_condition(p)
            ))
            .collect::<Vec<_>>()
    );
    assert_no_overcommit(&client).await;
    for p in &pods {
        let Some(node) = node_of(p) else { continue };
        let index: usize = p.metadata.name.as_ref().unwrap()[1..].parse().unwrap();
        let spec = &pod_specs[index];
        let node_spec = &nodes[node[1..].parse::<usize>().unwrap()];
        // Every required constraint holds for every binding.
        assert!(!node_spec.cordoned, "{p:?} on a cordoned node");
        assert!(
            !node_spec.tainted || spec.tolerates,
            "{p:?} on an untolerated taint"
        );
        assert!(
            spec.zone.is_none_or(|zone| zone == node_spec.zone),
            "{p:?} in the wrong zone"
        );
    }
    running.stop().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random clusters: no node's allocatable is exceeded, every required constraint holds for
    /// every binding, and each pod left pending says exactly why, per node count, as Kubernetes
    /// words it.
    #[test]
    fn random_clusters_respect_capacity_constraints_and_explain_failures((nodes, pods) in arb_cluster()) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(check_random_cluster(nodes, pods));
    }
}

#[test]
fn model_reasons_cover_each_filter() {
    let node = NodeSpec {
        milli_cpu: 1000,
        zone: 0,
        tainted: false,
        cordoned: false,
    };
    let pod = PodSpec {
        milli_cpu: 500,
        zone: Some(0),
        tolerates: false,
    };
    assert_eq!(model_reason(&pod, &node, 0), None);
    assert_eq!(model_reason(&pod, &node, 600), Some("Insufficient cpu"));
    let names: BTreeSet<_> = [
        model_reason(
            &pod,
            &NodeSpec {
                cordoned: true,
                ..node.clone()
            },
            0,
        ),
        model_reason(
            &pod,
            &NodeSpec {
                tainted: true,
                ..node.clone()
            },
            0,
        ),
        model_reason(
            &pod,
            &NodeSpec {
                zone: 1,
                ..node.clone()
            },
            0,
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert_eq!(names.len(), 3);
}

// --- Preemption ---------------------------------------------------------------------------------

async fn add_priority_class(client: &Client, name: &str, value: i32) {
    let class: PriorityClass =
        serde_json::from_value(json!({"metadata": {"name": name}, "value": value})).unwrap();
    Api::<PriorityClass>::all(client.clone())
        .create(&PostParams::default(), &class)
        .await
        .unwrap();
}

/// Plays the node agent's part in graceful deletion: a pod marked for deletion is removed once
/// "its containers stopped" (at once here).
fn finish_terminating_pods(client: &Client) -> tokio::task::JoinHandle<Vec<String>> {
    let api = Api::<Pod>::namespaced(client.clone(), "default");
    tokio::spawn(async move {
        let mut deleted = Vec::new();
        let mut stream = api
            .watch(
                &WatchParams {
                    timeout: Some(Duration::from_secs(12)),
                    ..WatchParams::default()
                },
                "0",
            )
            .await
            .unwrap();
        while let Some(event) = stream.next().await {
            if let WatchEvent::Modified(pod) = event
                && pod.metadata.deletion_timestamp.is_some()
            {
                let name = pod.metadata.name.clone().unwrap();
                if api
                    .delete(&name, &DeleteParams::immediately())
                    .await
                    .is_ok()
                {
                    deleted.push(name);
                }
            }
        }
        deleted
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_priority_pod_displaces_only_the_lowest_priority_victims() {
    let client = client().await;
    for (name, value) in [
        ("low", 100),
        ("mid", 200),
        ("high", 300),
        ("critical", 1000),
    ] {
        add_priority_class(&client, name, value).await;
    }
    add_node(&client, "n0", "2", json!({}), json!({})).await;
    add_node(&client, "n1", "2", json!({}), json!({})).await;
    // n0 runs a mid and a high pod, n1 two low ones: every core is taken.
    let placed = [
        ("mid-0", "n0", "mid"),
        ("high-0", "n0", "high"),
        ("low-0", "n1", "low"),
        ("low-1", "n1", "low"),
    ];
    for (name, node, class) in placed {
        add_pod(
            &client,
            name,
            1000,
            json!({"nodeName": node, "priorityClassName": class}),
        )
        .await;
    }
    let terminator = finish_terminating_pods(&client);
    // The default profile preempts (DefaultPreemption is its PostFilter).
    let running = start(&client, SchedulerConfig::default());
    add_pod(
        &client,
        "urgent",
        1000,
        json!({"priorityClassName": "critical"}),
    )
    .await;
    let api = Api::<Pod>::namespaced(client.clone(), "default");
    assert!(
        eventually(Duration::from_secs(10), || async {
            node_of(&api.get("urgent").await.unwrap()) == Some("n1")
        })
        .await,
        "urgent: {:?}",
        api.get("urgent").await.unwrap().status
    );
    running.stop().await;
    let deleted = terminator.await.unwrap();
    // One victim, of the lowest priority; the mid and high pods were never touched.
    assert_eq!(deleted.len(), 1, "deleted {deleted:?}");
    assert!(deleted[0].starts_with("low-"));
    let remaining: BTreeSet<String> = pods(&client)
        .await
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    for name in ["mid-0", "high-0", "urgent"] {
        assert!(remaining.contains(name));
    }
    assert_eq!(remaining.len(), 4);
    assert_no_overcommit(&client).await;
    let events = Api::<Event>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let preempted: Vec<_> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("Preempted"))
        .collect();
    assert_eq!(preempted.len(), 1);
    assert_eq!(
        preempted[0].involved_object.name.as_deref(),
        Some(deleted[0].as_str())
    );
    assert!(
        preempted[0]
            .message
            .as_deref()
            .unwrap()
            .ends_with("on node n1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preemption_never_displaces_pods_of_equal_or_higher_priority() {
    let client = client().await;
    add_priority_class(&client, "high", 300).await;
    add_node(&client, "n0", "1", json!({}), json!({})).await;
    add_pod(
        &client,
        "incumbent",
        1000,
        json!({"nodeName": "n0", "priorityClassName": "high"}),
    )
    .await;
    let running = start(&client, config());
    add_pod(
        &client,
        "challenger",
        1000,
        json!({"priorityClassName": "high"}),
    )
    .await;
    let api = Api::<Pod>::namespaced(client.clone(), "default");
    let expected = "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.";
    assert!(
        eventually(Duration::from_secs(10), || async {
            scheduled_condition(&api.get("challenger").await.unwrap())
                .is_some_and(|(_, _, message)| message.as_deref() == Some(expected))
        })
        .await,
        "{:?}",
        scheduled_condition(&api.get("challenger").await.unwrap())
    );
    assert!(
        api.get("incumbent")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_none()
    );
    running.stop().await;
}
