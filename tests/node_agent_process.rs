//! The node agent with the real process runtime and loopback pod network: a Deployment of
//! `hello_server` replicas, scheduled, run as processes with their own addresses, restarted when
//! they crash, stopped gracefully when deleted, and adopted by a restarted agent.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestra::core::api::{Api, Client, DeleteParams, ListParams, PostParams};
use orchestra::core::container_runtime::ContainerRuntime;
use orchestra::core::controllers::manager::ControllerManager;
use orchestra::core::k8s::api::apps::v1::Deployment;
use orchestra::core::k8s::api::core::v1::Pod;
use orchestra::core::k8s::apimachinery::pkg::api::resource::Quantity;
use orchestra::core::node_agent::agent::{NodeAgent, NodeAgentConfig};
use orchestra::core::node_agent::backoff::BackOffConfig;
use orchestra::core::node_agent::heartbeat::NodeConfig;
use orchestra::core::scheduler::Scheduler;
use orchestra::core::store::MemoryStore;
use orchestra::net::loopback::LoopbackNetwork;
use orchestra::runtime::process::ProcessRuntime;
use serde_json::json;
use tokio::sync::oneshot;

/// The example's binary, built by `cargo test` beside the test binaries.
fn hello_server() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = debug.join("examples").join("hello_server");
    assert!(
        path.exists(),
        "{} is not built (cargo test builds the examples)",
        path.display()
    );
    path
}

fn node_config() -> NodeAgentConfig {
    let mut node = NodeConfig::new(
        "node-1",
        BTreeMap::from([
            ("cpu".to_owned(), Quantity("4".to_owned())),
            ("memory".to_owned(), Quantity("8Gi".to_owned())),
            ("pods".to_owned(), Quantity("110".to_owned())),
        ]),
    );
    node.renew_interval = Duration::from_secs(2);
    let mut config = NodeAgentConfig::new(node);
    config.resync = Duration::from_millis(100);
    config.backoff = BackOffConfig {
        initial: Duration::from_millis(500),
        max: Duration::from_secs(2),
    };
    config
}

/// Starts an agent over the state in `dir`; stop it with the sender.
async fn start_agent(
    client: &Client,
    dir: &Path,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let runtime = ProcessRuntime::open(dir.join("runtime")).await.unwrap();
    let network = LoopbackNetwork::open(dir.join("network"), "127.91.0.0/16").unwrap();
    let agent = NodeAgent::new(client.clone(), node_config(), Arc::new(runtime))
        .with_network(Arc::new(network));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        agent
            .run(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (stop, task)
}

fn http_get(ip: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect((ip, 8080)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
}

fn http_post(ip: &str, path: &str) {
    if let Ok(mut stream) = TcpStream::connect((ip, 8080)) {
        let _ = write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        );
        let mut sink = String::new();
        let _ = stream.read_to_string(&mut sink);
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn restart_count(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .map_or(0, |c| c.restart_count)
}

/// Polls the pods until `done` holds for them (at most 30 s).
async fn wait_pods(client: &Client, what: &str, done: impl Fn(&[Pod]) -> bool) -> Vec<Pod> {
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = pods.list(&ListParams::default()).await.unwrap().items;
        if done(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what}: {list:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn running_ready(pods: &[Pod], count: usize) -> bool {
    pods.len() == count
        && pods.iter().all(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                && is_ready(p)
        })
}

fn container_id(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.container_id.clone())
}

fn pod_ip(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_runs_as_processes_restarts_crashes_stops_gracefully_and_survives_an_agent_restart()
 {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(MemoryStore::new());
    client.bootstrap().await.unwrap();
    let (stop_controllers, controllers_stopped) = oneshot::channel::<()>();
    let controllers = tokio::spawn(ControllerManager::new(client.clone()).run(async {
        let _ = controllers_stopped.await;
    }));
    let (stop_scheduler, scheduler_stopped) = oneshot::channel::<()>();
    let scheduler = tokio::spawn(Scheduler::new(client.clone()).run(async {
        let _ = scheduler_stopped.await;
    }));
    let (stop_agent, agent) = start_agent(&client, dir.path()).await;

    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "hello", "namespace": "default"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "hello"}},
            "template": {
                "metadata": {"labels": {"app": "hello"}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{
                        "name": "hello",
                        "image": "hello:1",
                        "command": [hello_server().to_string_lossy()],
                        "env": [
                            {"name": "PORT", "value": "8080"},
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        ],
                    }],
                },
            },
        },
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();

    // All three Running and Ready, each with its own address, each answering as itself.
    let pods = wait_pods(&client, "3 ready replicas", |pods| running_ready(pods, 3)).await;
    let ips: BTreeSet<String> = pods.iter().map(pod_ip).collect();
    assert_eq!(ips.len(), 3, "{ips:?}");
    for pod in &pods {
        let name = pod.metadata.name.clone().unwrap();
        let answer = http_get(&pod_ip(pod), "/").unwrap_or_default();
        assert_eq!(answer, format!("hello from {name} (version 1)\n"));
        assert_eq!(
            pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
            Some("node-1")
        );
    }

    // A crash: the container is restarted, and again after the back-off.
    let victim = pods[0].metadata.name.clone().unwrap();
    let victim_ip = pod_ip(&pods[0]);
    for expected in 1..=2 {
        http_post(&victim_ip, "/exit?code=3");
        let pods = wait_pods(&client, "the crashed container restarted", |pods| {
            pods.iter().any(|p| {
                p.metadata.name.as_deref() == Some(victim.as_str())
                    && restart_count(p) == expected
                    && is_ready(p)
            })
        })
        .await;
        let pod = pods
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(victim.as_str()))
            .unwrap();
        let last = pod
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0]
            .last_state
            .clone()
            .unwrap_or_default();
        assert_eq!(last.terminated.map(|t| t.exit_code), Some(3));
        assert_eq!(pod_ip(pod), victim_ip, "the pod keeps its address");
    }

    // An agent restart: the running processes are adopted, not restarted.
    let before = wait_pods(&client, "3 ready replicas", |pods| running_ready(pods, 3)).await;
    let counts: BTreeMap<String, (i32, Option<String>)> = before
        .iter()
        .map(|p| {
            (
                p.metadata.name.clone().unwrap(),
                (restart_count(p), container_id(p)),
            )
        })
        .collect();
    let _ = stop_agent.send(());
    agent.await.unwrap();
    let (stop_agent, agent) = start_agent(&client, dir.path()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = wait_pods(&client, "3 ready replicas after the restart", |pods| {
        running_ready(pods, 3)
    })
    .await;
    for pod in &after {
        let name = pod.metadata.name.clone().unwrap();
        assert_eq!(
            counts.get(&name),
            Some(&(restart_count(pod), container_id(pod))),
            "{name}'s container was restarted or replaced"
        );
        assert_eq!(
            http_get(&pod_ip(pod), "/").unwrap_or_default(),
            format!("hello from {name} (version 1)\n")
        );
    }
    // Deleting a pod: SIGTERM, gone well within its grace period, replaced by the ReplicaSet.
    let deleted = after[1].metadata.name.clone().unwrap();
    let asked = Instant::now();
    Api::<Pod>::namespaced(client.clone(), "default")
        .delete(&deleted, &DeleteParams::default())
        .await
        .unwrap();
    wait_pods(&client, "the deleted pod gone and replaced", |pods| {
        pods.iter()
            .all(|p| p.metadata.name.as_deref() != Some(deleted.as_str()))
            && running_ready(pods, 3)
    })
    .await;
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );

    let _ = stop_agent.send(());
    agent.await.unwrap();
    let _ = stop_scheduler.send(());
    let _ = stop_controllers.send(());
    let _ = scheduler.await;
    let _ = controllers.await;
    // Leave no process behind.
    let runtime = ProcessRuntime::open(dir.path().join("runtime"))
        .await
        .unwrap();
    for sandbox in runtime
        .list_pod_sandboxes(&Default::default())
        .await
        .unwrap()
    {
        runtime.remove_pod_sandbox(&sandbox.id).await.unwrap();
    }
}
