//! The node agent with the real process runtime and loopback pod network: a Deployment of
//! `hello_server` replicas, scheduled, run as processes with their own addresses, restarted when
//! they crash, stopped gracefully when deleted, and adopted by a restarted agent.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use orchestra::core::api::{Api, Client, DeleteParams, ListParams};
use orchestra::core::controllers::manager::ControllerManager;
use orchestra::core::k8s::api::core::v1::{Event, Pod};
use orchestra::core::store::MemoryStore;
use support::{
    StopProcesses, container_id, create_hello_deployment, http_get, http_post, is_ready,
    node_config, node_of, pod_ip, restart_count, running_ready, start_agent, start_control_plane,
    wait_pods,
};

const RANGE: &str = "127.91.0.0/16";

/// Kills with SIGKILL the process listening on port 8080 of `ip` (found with `ss`).
fn kill_listener(ip: &str) {
    let output = std::process::Command::new("ss")
        .args(["-Hltnp", "src", &format!("{ip}:8080")])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&output.stdout);
    let pid: i32 = listing
        .split("pid=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no process listens on {ip}:8080: {listing:?}"));
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_runs_as_processes_restarts_crashes_stops_gracefully_and_survives_an_agent_restart()
 {
    let dir = tempfile::tempdir().unwrap();
    let _stop_processes = StopProcesses(dir.path().to_owned());
    let client = Client::new(MemoryStore::new());
    client.bootstrap().await.unwrap();
    let control_plane = start_control_plane(&client, ControllerManager::new(client.clone()));
    let agent = start_agent(&client, dir.path(), node_config("node-1"), RANGE).await;
    create_hello_deployment(&client, "hello", 3).await;

    // All three Running and Ready, each with its own address, each answering as itself.
    let pods = wait_pods(&client, "3 ready replicas", |pods| running_ready(pods, 3)).await;
    let ips: BTreeSet<String> = pods.iter().map(pod_ip).collect();
    assert_eq!(ips.len(), 3, "{ips:?}");
    for pod in &pods {
        let name = pod.metadata.name.clone().unwrap();
        let answer = http_get(&pod_ip(pod), "/").unwrap_or_default();
        assert_eq!(answer, format!("hello from {name} (version 1)\n"));
        assert_eq!(node_of(pod), Some("node-1"));
    }
    // Each pod's events say its container was created and started, and where it runs from.
    let events = Api::<Event>::namespaced(client.clone(), "default");
    for pod in &pods {
        let name = pod.metadata.name.clone().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let told: Vec<(String, String)> = events
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter(|e| e.involved_object.name.as_deref() == Some(name.as_str()))
                .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
                .collect();
            let started = (
                "Started".to_owned(),
                "Started container hello (on the host filesystem: image hello:1 is not in the node's image store)".to_owned(),
            );
            if told.contains(&started) && told.iter().any(|(reason, _)| reason == "Created") {
                break;
            }
            assert!(Instant::now() < deadline, "{name}'s events: {told:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // A crash: the container is restarted, and again after the back-off.
    let victim = pods[0].metadata.name.clone().unwrap();
    let victim_ip = pod_ip(&pods[0]);
    // First it exits with 3 on request, then its process is killed with SIGKILL (137).
    for (expected, exit_code) in [(1, 3), (2, 137)] {
        if exit_code == 3 {
            http_post(&victim_ip, "/exit?code=3");
        } else {
            kill_listener(&victim_ip);
        }
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
        assert_eq!(last.terminated.map(|t| t.exit_code), Some(exit_code));
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
    agent.stop().await;
    let agent = start_agent(&client, dir.path(), node_config("node-1"), RANGE).await;
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
    let stopping = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .any(|e| {
            e.involved_object.name.as_deref() == Some(deleted.as_str())
                && e.reason.as_deref() == Some("Killing")
                && e.message.as_deref() == Some("Stopping container hello")
        });
    assert!(stopping, "no Killing event for {deleted}");

    agent.stop().await;
    for running in control_plane {
        running.stop().await;
    }
}
