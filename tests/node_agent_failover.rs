//! Node fail-over with real agents: two nodes run a Deployment of `hello_server` replicas; one
//! agent is killed (its heartbeats stop, its processes keep running as on a partitioned node);
//! the node lifecycle controller marks the node unreachable and evicts its pods once their
//! toleration runs out, and the ReplicaSet replaces them on the other node. When the lost agent
//! comes back, its node is Ready again and its stale pods are stopped and removed, never
//! duplicated. The grace period and the toleration are shortened (3 s and 2 s instead of 40 s
//! and 300 s); the fail-over time is printed.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use orchestra::core::api::{Api, Client};
use orchestra::core::controllers::manager::ControllerManager;
use orchestra::core::controllers::node_lifecycle::{NodeLifecycleConfig, UNREACHABLE_TAINT};
use orchestra::core::k8s::api::core::v1::{Node, Pod};
use orchestra::core::store::MemoryStore;
use support::{
    StopProcesses, create_hello_deployment, http_get, is_running_ready, node_config, node_of,
    pod_ip, running_ready, start_agent, start_control_plane, wait_pods,
};

fn ready_status(node: &Node) -> String {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.clone())
        .unwrap_or_default()
}

fn taint_keys(node: &Node) -> BTreeSet<String> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .map(|t| t.iter().map(|t| t.key.clone()).collect())
        .unwrap_or_default()
}

/// Polls node `name` until `done` holds for it (at most 30 s).
async fn wait_node(client: &Client, name: &str, what: &str, done: impl Fn(&Node) -> bool) -> Node {
    let nodes = Api::<Node>::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let node = nodes.get_opt(name).await.unwrap();
        if let Some(node) = &node
            && done(node)
        {
            return node.clone();
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what}: {node:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn on_node<'a>(pods: &'a [Pod], node: &str) -> Vec<&'a Pod> {
    pods.iter().filter(|p| node_of(p) == Some(node)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_lost_node_are_replaced_on_the_other_and_cleaned_up_when_it_returns() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let _stop_a = StopProcesses(dir_a.path().to_owned());
    let _stop_b = StopProcesses(dir_b.path().to_owned());
    let client = Client::builder(MemoryStore::new())
        .default_toleration_seconds(Duration::from_secs(2), Duration::from_secs(2))
        .build();
    client.bootstrap().await.unwrap();
    let lifecycle = NodeLifecycleConfig {
        node_monitor_grace_period: Duration::from_secs(3),
        monitor_period: Duration::from_millis(500),
    };
    let control_plane = start_control_plane(
        &client,
        ControllerManager::new(client.clone()).node_lifecycle(lifecycle),
    );
    let agent_a = start_agent(
        &client,
        dir_a.path(),
        node_config("node-a"),
        "127.93.0.0/16",
    )
    .await;
    let agent_b = start_agent(
        &client,
        dir_b.path(),
        node_config("node-b"),
        "127.94.0.0/16",
    )
    .await;
    for node in ["node-a", "node-b"] {
        wait_node(&client, node, "the node Ready", |n| {
            ready_status(n) == "True"
        })
        .await;
    }

    create_hello_deployment(&client, "hello", 4).await;
    let pods = wait_pods(&client, "4 ready replicas", |pods| running_ready(pods, 4)).await;
    let lost: Vec<Pod> = on_node(&pods, "node-a").into_iter().cloned().collect();
    assert!(
        !lost.is_empty() && lost.len() < 4,
        "the scheduler spreads the replicas over both nodes: {:?}",
        pods.iter().map(node_of).collect::<Vec<_>>()
    );
    let lost_names: BTreeSet<String> = lost
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();

    // Node a's agent dies: no more heartbeats, its processes go on running.
    let killed = Instant::now();
    agent_a.abort();
    let node = wait_node(&client, "node-a", "node-a unreachable", |n| {
        ready_status(n) == "Unknown" && taint_keys(n).contains(UNREACHABLE_TAINT)
    })
    .await;
    let detected = killed.elapsed();
    assert!(taint_keys(&node).contains(UNREACHABLE_TAINT));

    // Its pods are evicted after their 2 s and replaced on node b.
    let replaced = wait_pods(&client, "4 ready replicas on node-b", |pods| {
        let live: Vec<&Pod> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        live.len() == 4
            && live
                .iter()
                .all(|p| node_of(p) == Some("node-b") && is_running_ready(p))
    })
    .await;
    let failover = killed.elapsed();
    println!(
        "fail-over: node-a unreachable after {:.1} s, its {} pods replaced on node-b after {:.1} s (grace 3 s, toleration 2 s)",
        detected.as_secs_f64(),
        lost.len(),
        failover.as_secs_f64()
    );
    for pod in replaced
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
    {
        assert!(
            lost_names.contains(pod.metadata.name.as_deref().unwrap_or_default()),
            "only node-a's pods are evicted: {pod:#?}"
        );
    }
    // The replacements answer at node b's addresses.
    for pod in replaced
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        assert!(pod_ip(pod).starts_with("127.94."), "{}", pod_ip(pod));
        let name = pod.metadata.name.clone().unwrap();
        assert_eq!(
            http_get(&pod_ip(pod), "/").unwrap_or_default(),
            format!("hello from {name} (version 1)\n")
        );
    }

    // Node a comes back: Ready again, untainted, its stale pods stopped and removed.
    let stale_ips: Vec<String> = lost.iter().map(pod_ip).collect();
    let agent_a = start_agent(
        &client,
        dir_a.path(),
        node_config("node-a"),
        "127.93.0.0/16",
    )
    .await;
    wait_node(&client, "node-a", "node-a Ready and untainted", |n| {
        ready_status(n) == "True" && taint_keys(n).is_empty()
    })
    .await;
    let after = wait_pods(&client, "node-a's stale pods removed", |pods| {
        on_node(pods, "node-a").is_empty() && running_ready(pods, 4)
    })
    .await;
    assert!(after.iter().all(|p| node_of(p) == Some("node-b")));
    for ip in stale_ips {
        assert_eq!(http_get(&ip, "/"), None, "{ip} still answers");
    }

    agent_a.stop().await;
    agent_b.stop().await;
    for running in control_plane {
        running.stop().await;
    }
}
