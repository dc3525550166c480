//! Probes with the real process runtime and loopback pod network: `hello_server` pods whose
//! liveness probe (httpGet `/healthz`) fails are killed and restarted; a failing readiness probe
//! (httpGet `/readyz` on a named port) makes the pod not Ready without a restart, and Ready again
//! once it passes; a tcpSocket startup probe gates an exec readiness probe.

mod support;

use std::time::{Duration, Instant};

use orchestra::core::api::{Api, Client, PostParams};
use orchestra::core::controllers::manager::ControllerManager;
use orchestra::core::k8s::api::core::v1::{ContainerStatus, Pod};
use orchestra::core::store::MemoryStore;
use serde_json::json;
use support::{
    StopProcesses, container_id, hello_server, http_get, http_post, is_ready, node_config, pod_ip,
    restart_count, start_agent, start_control_plane, wait_pods,
};

const RANGE: &str = "127.92.0.0/16";
const NODE: &str = "node-probes";

/// A bare pod of one `hello_server` container (on 8080 of its address, the port named `http`)
/// with `probes` (`livenessProbe`, ...) and `args`.
fn hello_pod(name: &str, args: &[&str], probes: serde_json::Value) -> Pod {
    let mut container = json!({
        "name": "hello",
        "image": "hello:1",
        "command": [hello_server().to_string_lossy()],
        "args": args,
        "env": [
            {"name": "PORT", "value": "8080"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ],
        "ports": [{"name": "http", "containerPort": 8080}],
    });
    if let (Some(container), Some(probes)) = (container.as_object_mut(), probes.as_object()) {
        container.extend(probes.clone());
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"terminationGracePeriodSeconds": 3, "containers": [container]},
    }))
    .unwrap()
}

fn named<'a>(pods: &'a [Pod], name: &str) -> Option<&'a Pod> {
    pods.iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))
}

fn container(pod: &Pod) -> Option<&ContainerStatus> {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

/// Whether the pod's container runs (`state.running`), with `started` and `ready` as given.
fn running_with(pod: &Pod, started: bool, ready: bool) -> bool {
    container(pod).is_some_and(|c| {
        c.state.as_ref().is_some_and(|s| s.running.is_some())
            && c.started == Some(started)
            && c.ready == ready
    })
}

/// The pod `name`, once `done` holds for it.
async fn wait_pod(client: &Client, name: &str, what: &str, done: impl Fn(&Pod) -> bool) -> Pod {
    let pods = wait_pods(client, &format!("{name}: {what}"), |pods| {
        named(pods, name).is_some_and(&done)
    })
    .await;
    named(&pods, name).cloned().unwrap()
}

/// Polls `done` until it holds (at most 30 s).
async fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create(client: &Client, pod: &Pod) {
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), pod)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_readiness_and_startup_probes_against_real_processes() {
    let dir = tempfile::tempdir().unwrap();
    let _stop_processes = StopProcesses(dir.path().to_owned());
    let flag = dir.path().join("ready-flag");
    let client = Client::new(MemoryStore::new());
    client.bootstrap().await.unwrap();
    let control_plane = start_control_plane(&client, ControllerManager::new(client.clone()));
    let agent = start_agent(&client, dir.path(), node_config(NODE), RANGE).await;

    create(
        &client,
        &hello_pod(
            "live",
            &[],
            json!({"livenessProbe": {
                "httpGet": {"path": "/healthz", "port": 8080},
                "periodSeconds": 1, "failureThreshold": 2,
            }}),
        ),
    )
    .await;
    create(
        &client,
        &hello_pod(
            "ready",
            &["--ready-after", "2"],
            json!({"readinessProbe": {
                "httpGet": {"path": "/readyz", "port": "http"},
                "periodSeconds": 1, "failureThreshold": 1,
            }}),
        ),
    )
    .await;
    create(
        &client,
        &hello_pod(
            "tcp",
            &[],
            json!({
                "startupProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1,
                    "failureThreshold": 10},
                "readinessProbe": {"exec": {"command": ["test", "-e", flag.to_string_lossy()]},
                    "periodSeconds": 1, "failureThreshold": 1},
            }),
        ),
    )
    .await;

    // Readiness starts as not ready: `ready` answers 503 for its first 2 s; `tcp` has started
    // (its port accepts) but the file its exec readiness probe tests is not there yet.
    wait_pod(&client, "ready", "running, not ready yet", |p| {
        phase(p) == Some("Running") && running_with(p, true, false) && !is_ready(p)
    })
    .await;
    wait_pod(&client, "tcp", "started, not ready", |p| {
        running_with(p, true, false) && !is_ready(p)
    })
    .await;
    std::fs::write(&flag, "").unwrap();
    for name in ["live", "ready", "tcp"] {
        wait_pod(&client, name, "Ready", |p| {
            running_with(p, true, true) && is_ready(p) && restart_count(p) == 0
        })
        .await;
    }

    // (a) A failing liveness probe: the container is killed and restarted, each time.
    for expected in 1..=2 {
        let pod = wait_pod(&client, "live", "Ready", is_ready).await;
        let ip = pod_ip(&pod);
        // Ready as soon as it runs (no readiness probe): wait for it to listen.
        wait_for(&format!("{ip} to answer /healthz"), || {
            http_get(&ip, "/healthz").as_deref() == Some("ok\n")
        })
        .await;
        http_post(&ip, "/fail/healthz");
        let pod = wait_pod(
            &client,
            "live",
            "restarted after its liveness failure",
            |p| restart_count(p) == expected && is_ready(p),
        )
        .await;
        let last = container(&pod).and_then(|c| c.last_state.clone());
        assert!(
            last.as_ref().is_some_and(|l| l.terminated.is_some()),
            "{last:?}"
        );
        assert_eq!(pod_ip(&pod), ip, "the pod keeps its address");
    }

    // (b) A failing readiness probe: not Ready while it keeps running, then Ready again.
    let pod = wait_pod(&client, "ready", "Ready", is_ready).await;
    let (ip, id) = (pod_ip(&pod), container_id(&pod));
    http_post(&ip, "/fail/readyz");
    let pod = wait_pod(&client, "ready", "not Ready", |p| !is_ready(p)).await;
    assert!(running_with(&pod, true, false), "{:?}", container(&pod));
    assert_eq!(phase(&pod), Some("Running"));
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.clone());
    assert!(
        conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "ContainersReady" && c.status == "False"),
        "{conditions:?}"
    );
    http_post(&ip, "/recover/readyz");
    let pod = wait_pod(&client, "ready", "Ready again", is_ready).await;
    assert_eq!((restart_count(&pod), container_id(&pod)), (0, id));

    // (c) The exec readiness probe follows the file; the container is never restarted.
    std::fs::remove_file(&flag).unwrap();
    wait_pod(&client, "tcp", "not Ready", |p| {
        !is_ready(p) && running_with(p, true, false)
    })
    .await;
    std::fs::write(&flag, "").unwrap();
    let pod = wait_pod(&client, "tcp", "Ready again", is_ready).await;
    assert_eq!(restart_count(&pod), 0);

    agent.stop().await;
    for running in control_plane {
        running.stop().await;
    }
}
