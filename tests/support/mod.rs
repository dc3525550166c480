//! What the node agent's end-to-end tests share: a control plane (controllers and scheduler) over
//! a MemoryStore, node agents with the real process runtime and loopback addresses, the
//! `hello_server` example as the workload, and polling helpers.
//!
//! Each test file uses part of it.
#![allow(dead_code)]

pub(crate) mod up;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestra::core::api::{Api, Client, ListParams, PostParams};
use orchestra::core::container_runtime::ContainerRuntime;
use orchestra::core::controllers::manager::ControllerManager;
use orchestra::core::k8s::api::apps::v1::Deployment;
use orchestra::core::k8s::api::core::v1::Pod;
use orchestra::core::k8s::apimachinery::pkg::api::resource::Quantity;
use orchestra::core::node_agent::agent::{NodeAgent, NodeAgentConfig};
use orchestra::core::node_agent::backoff::BackOffConfig;
use orchestra::core::node_agent::heartbeat::NodeConfig;
use orchestra::core::scheduler::Scheduler;
use orchestra::net::loopback::LoopbackNetwork;
use orchestra::runtime::process::ProcessRuntime;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The example's binary, built by `cargo test` beside the test binaries.
pub(crate) fn hello_server() -> PathBuf {
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

/// A task stopped by a one-shot signal.
pub(crate) struct Running<T> {
    stop: oneshot::Sender<()>,
    task: JoinHandle<T>,
}

impl<T> Running<T> {
    /// Signals the task to stop and waits for it.
    pub(crate) async fn stop(self) -> T {
        let _ = self.stop.send(());
        self.task.await.unwrap()
    }

    /// Kills the task where it stands (as a crashed process stops).
    pub(crate) fn abort(self) {
        self.task.abort();
    }
}

/// The controllers (with `manager`'s settings) and the scheduler, running on `client`.
pub(crate) fn start_control_plane(client: &Client, manager: ControllerManager) -> Vec<Running<()>> {
    let (stop_controllers, controllers_stopped) = oneshot::channel::<()>();
    let controllers = tokio::spawn(async move {
        manager
            .run(async {
                let _ = controllers_stopped.await;
            })
            .await
            .unwrap();
    });
    let (stop_scheduler, scheduler_stopped) = oneshot::channel::<()>();
    let scheduler = tokio::spawn(Scheduler::new(client.clone()).run(async {
        let _ = scheduler_stopped.await;
    }));
    vec![
        Running {
            stop: stop_controllers,
            task: controllers,
        },
        Running {
            stop: stop_scheduler,
            task: tokio::spawn(async move {
                let _ = scheduler.await;
            }),
        },
    ]
}

/// An agent's settings for a test: a small node, fast resyncs, heartbeats and back-off.
pub(crate) fn node_config(node: &str) -> NodeAgentConfig {
    let mut node = NodeConfig::new(
        node,
        BTreeMap::from([
            ("cpu".to_owned(), Quantity("4".to_owned())),
            ("memory".to_owned(), Quantity("8Gi".to_owned())),
            ("pods".to_owned(), Quantity("110".to_owned())),
        ]),
    );
    node.renew_interval = Duration::from_millis(500);
    let mut config = NodeAgentConfig::new(node);
    config.resync = Duration::from_millis(100);
    config.backoff = BackOffConfig {
        initial: Duration::from_millis(500),
        max: Duration::from_secs(2),
    };
    config
}

/// Starts an agent with `config`, keeping its runtime's state in `dir/runtime` and its
/// addresses (from `range`) in `dir/network`.
pub(crate) async fn start_agent(
    client: &Client,
    dir: &Path,
    config: NodeAgentConfig,
    range: &str,
) -> Running<()> {
    let runtime = ProcessRuntime::open(dir.join("runtime")).await.unwrap();
    let network = LoopbackNetwork::open(dir.join("network"), range).unwrap();
    let agent =
        NodeAgent::new(client.clone(), config, Arc::new(runtime)).with_network(Arc::new(network));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        agent
            .run(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Running { stop, task }
}

/// Stops every process the runtime whose state is in `dir/runtime` still runs.
pub(crate) async fn remove_everything(dir: &Path) {
    let runtime = ProcessRuntime::open(dir.join("runtime")).await.unwrap();
    for sandbox in runtime
        .list_pod_sandboxes(&Default::default())
        .await
        .unwrap()
    {
        runtime.remove_pod_sandbox(&sandbox.id).await.unwrap();
    }
}

/// Creates the Deployment `name` of `replicas` hello_server replicas (listening on 8080 of their
/// pod address, Ready once `/readyz` answers) with `terminationGracePeriodSeconds: 5`.
pub(crate) async fn create_hello_deployment(client: &Client, name: &str, replicas: i32) {
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
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
                        "readinessProbe": {
                            "httpGet": {"path": "/readyz", "port": 8080},
                            "periodSeconds": 1,
                        },
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
}

/// A GET of `path` on port 8080 of `ip`: the body, if it answered.
pub(crate) fn http_get(ip: &str, path: &str) -> Option<String> {
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

/// A POST of `path` on port 8080 of `ip`, its answer ignored.
pub(crate) fn http_post(ip: &str, path: &str) {
    if let Ok(mut stream) = TcpStream::connect((ip, 8080)) {
        let _ = write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        );
        let mut sink = String::new();
        let _ = stream.read_to_string(&mut sink);
    }
}

/// Whether the pod's `Ready` condition is `True`.
pub(crate) fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The first container's restart count.
pub(crate) fn restart_count(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .map_or(0, |c| c.restart_count)
}

/// Polls the pods of `default` until `done` holds for them (at most 30 s).
pub(crate) async fn wait_pods(
    client: &Client,
    what: &str,
    done: impl Fn(&[Pod]) -> bool,
) -> Vec<Pod> {
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

/// Whether the pod is Running and Ready, and not being deleted.
pub(crate) fn is_running_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        && is_ready(pod)
}

/// Whether there are `count` pods, all Running and Ready.
pub(crate) fn running_ready(pods: &[Pod], count: usize) -> bool {
    pods.len() == count && pods.iter().all(is_running_ready)
}

/// The first container's id.
pub(crate) fn container_id(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.container_id.clone())
}

/// The pod's address.
pub(crate) fn pod_ip(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default()
}

/// The node the pod is bound to.
pub(crate) fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

/// Stops the processes of the runtime whose state is in `dir/runtime` when dropped, also when
/// the test fails: they outlive the test process (a restarted agent adopts them), and would hold
/// their addresses against the next run.
pub(crate) struct StopProcesses(pub(crate) PathBuf);

impl Drop for StopProcesses {
    fn drop(&mut self) {
        let dir = self.0.clone();
        // Another thread: this one may be inside the test's runtime.
        let _ = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(remove_everything(&dir));
            }
        })
        .join();
    }
}
