//! The node agent's registration and heartbeats, through the real Api over a MemoryStore, with
//! the FakeRuntime standing for the container runtime.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeCondition};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use orchestra_core::api::{Api, Client};
use orchestra_core::clock::TokioClock;
use orchestra_core::container_runtime::RuntimeError;
use orchestra_core::container_runtime::fake::{FakeRuntime, Operation};
use orchestra_core::node_agent::heartbeat::{Heartbeat, NODE_LEASE_NAMESPACE, NodeConfig};
use orchestra_core::node_agent::host::{
    FakeNodeResources, FsStats, MemoryStats, NodeStats, PidStats,
};
use orchestra_core::store::MemoryStore;

async fn client() -> Client {
    let client = Client::new(MemoryStore::new());
    client.bootstrap().await.unwrap();
    client
}

fn config() -> NodeConfig {
    let mut config = NodeConfig::new(
        "node-1",
        BTreeMap::from([
            ("cpu".to_owned(), Quantity("2".to_owned())),
            ("memory".to_owned(), Quantity("4Gi".to_owned())),
            ("pods".to_owned(), Quantity("110".to_owned())),
        ]),
    );
    config.addresses = vec![NodeAddress {
        type_: "InternalIP".to_owned(),
        address: "127.0.0.1".to_owned(),
    }];
    config
}

fn clock() -> Arc<TokioClock> {
    Arc::new(TokioClock::starting_at(
        "2026-01-01T00:00:00Z".parse().unwrap(),
    ))
}

fn condition(node: &Node, kind: &str) -> NodeCondition {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == kind))
        .cloned()
        .unwrap_or_else(|| panic!("no {kind} condition: {node:?}"))
}

#[tokio::test(start_paused = true)]
async fn the_node_registers_ready_with_its_capacity_and_renews_its_lease() {
    let client = client().await;
    let runtime = Arc::new(FakeRuntime::new());
    let heartbeat = Heartbeat::new(client.clone(), config(), runtime).with_clock(clock());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(heartbeat.run(async {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_secs(1)).await;

    let node = Api::<Node>::all(client.clone())
        .get("node-1")
        .await
        .unwrap();
    let status = node.status.clone().unwrap();
    assert_eq!(
        status.capacity.as_ref().unwrap()["cpu"],
        Quantity("2".to_owned())
    );
    assert_eq!(status.allocatable, status.capacity);
    assert_eq!(
        status.node_info.as_ref().unwrap().container_runtime_version,
        format!("fake://{}", env!("CARGO_PKG_VERSION"))
    );
    let labels = node.metadata.labels.clone().unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], "node-1");
    assert_eq!(condition(&node, "Ready").status, "True");
    assert_eq!(condition(&node, "MemoryPressure").status, "False");

    // The Lease appears at the first renewal and is renewed every 10 s.
    let leases = Api::<Lease>::namespaced(client.clone(), NODE_LEASE_NAMESPACE);
    assert!(leases.get("node-1").await.unwrap_err().is_not_found());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let first = leases.get("node-1").await.unwrap();
    let spec = first.spec.clone().unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("node-1"));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    let owner = &first.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Node", node.metadata.uid.as_deref().unwrap())
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    let later = leases.get("node-1").await.unwrap().spec.unwrap();
    let renewed = later.renew_time.unwrap().0 - spec.renew_time.unwrap().0;
    assert_eq!(renewed.get_seconds(), 30);

    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn readiness_follows_the_container_runtime() {
    let client = client().await;
    let runtime = Arc::new(FakeRuntime::new());
    let heartbeat = Heartbeat::new(client.clone(), config(), runtime.clone()).with_clock(clock());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(heartbeat.run(async {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let nodes = Api::<Node>::all(client.clone());
    let ready = condition(&nodes.get("node-1").await.unwrap(), "Ready");
    assert_eq!(ready.status, "True");

    runtime.fail_always(
        Operation::Version,
        RuntimeError::Unavailable("socket gone".to_owned()),
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let down = condition(&nodes.get("node-1").await.unwrap(), "Ready");
    assert_eq!(down.status, "False");
    assert_eq!(down.reason.as_deref(), Some("KubeletNotReady"));
    assert!(
        down.message.as_deref().unwrap().contains("socket gone"),
        "{down:?}"
    );
    assert_ne!(down.last_transition_time, ready.last_transition_time);
    // Other conditions keep their transition times.
    let memory = condition(&nodes.get("node-1").await.unwrap(), "MemoryPressure");
    assert_eq!(
        memory.last_transition_time.unwrap().0.to_string(),
        "2026-01-01T00:00:00Z"
    );

    runtime.clear_failures();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let back = condition(&nodes.get("node-1").await.unwrap(), "Ready");
    assert_eq!(back.status, "True");
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_restarted_agent_updates_its_node_instead_of_failing() {
    let client = client().await;
    let runtime = Arc::new(FakeRuntime::new());
    let first = Heartbeat::new(client.clone(), config(), runtime.clone()).with_clock(clock());
    let registered = first.register().await.unwrap();
    let mut bigger = config();
    bigger
        .capacity
        .insert("cpu".to_owned(), Quantity("4".to_owned()));
    bigger.labels.insert("zone".to_owned(), "a".to_owned());
    let second = Heartbeat::new(client.clone(), bigger, runtime).with_clock(clock());
    let node = second.register().await.unwrap();
    assert_eq!(node.metadata.uid, registered.metadata.uid);
    assert_eq!(
        node.status.unwrap().capacity.unwrap()["cpu"],
        Quantity("4".to_owned())
    );
    assert_eq!(node.metadata.labels.unwrap()["zone"], "a");
}

const MI: u64 = 1024 * 1024;
const GI: u64 = 1024 * MI;

fn host_stats() -> NodeStats {
    NodeStats {
        memory: MemoryStats {
            available_bytes: 3 * GI,
            capacity_bytes: 4 * GI,
        },
        nodefs: FsStats {
            available_bytes: 60 * GI,
            capacity_bytes: 100 * GI,
            inodes_free: 900_000,
            inodes: 1_000_000,
        },
        pids: PidStats {
            running: 250,
            max: 32768,
        },
    }
}

fn host() -> Arc<FakeNodeResources> {
    Arc::new(FakeNodeResources::new(
        BTreeMap::from([
            ("cpu".to_owned(), Quantity("2".to_owned())),
            ("memory".to_owned(), Quantity("4Gi".to_owned())),
            ("ephemeral-storage".to_owned(), Quantity("100Gi".to_owned())),
            ("hugepages-2Mi".to_owned(), Quantity("0".to_owned())),
            ("pods".to_owned(), Quantity("110".to_owned())),
        ]),
        host_stats(),
    ))
}

#[tokio::test(start_paused = true)]
async fn memory_pressure_follows_the_host_with_kubelets_transition_period() {
    let client = client().await;
    let runtime = Arc::new(FakeRuntime::new());
    let host = host();
    let heartbeat = Heartbeat::new(
        client.clone(),
        NodeConfig::new("node-1", BTreeMap::new()),
        runtime,
    )
    .with_clock(clock())
    .with_resources(host.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(heartbeat.run(async {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let nodes = Api::<Node>::all(client.clone());

    // The capacity is the host's; allocatable what kubelet leaves of it.
    let node = nodes.get("node-1").await.unwrap();
    let status = node.status.clone().unwrap();
    let capacity = status.capacity.unwrap();
    assert_eq!(capacity["cpu"], Quantity("2".to_owned()));
    assert_eq!(capacity["ephemeral-storage"], Quantity("100Gi".to_owned()));
    let allocatable = status.allocatable.unwrap();
    assert_eq!(allocatable["cpu"], Quantity("2".to_owned()));
    assert_eq!(allocatable["memory"], Quantity("3996Mi".to_owned()));
    assert_eq!(
        allocatable["ephemeral-storage"],
        Quantity("90Gi".to_owned())
    );
    assert_eq!(allocatable["pods"], Quantity("110".to_owned()));
    let sufficient = condition(&node, "MemoryPressure");
    assert_eq!(sufficient.status, "False");
    assert_eq!(
        sufficient.reason.as_deref(),
        Some("KubeletHasSufficientMemory")
    );
    assert_eq!(
        sufficient.message.as_deref(),
        Some("kubelet has sufficient memory available")
    );
    let disk = condition(&node, "DiskPressure");
    assert_eq!(
        (disk.status.as_str(), disk.reason.as_deref()),
        ("False", Some("KubeletHasNoDiskPressure"))
    );
    let pid = condition(&node, "PIDPressure");
    assert_eq!(
        (pid.status.as_str(), pid.reason.as_deref()),
        ("False", Some("KubeletHasSufficientPID"))
    );

    // Below kubelet's memory.available<100Mi: pressure at the next tick (t = 10 s).
    host.update(|stats| stats.memory.available_bytes = 99 * MI);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let node = nodes.get("node-1").await.unwrap();
    let insufficient = condition(&node, "MemoryPressure");
    assert_eq!(insufficient.status, "True");
    assert_eq!(
        insufficient.reason.as_deref(),
        Some("KubeletHasInsufficientMemory")
    );
    assert_eq!(
        insufficient.message.as_deref(),
        Some("kubelet has insufficient memory available")
    );
    assert_eq!(
        insufficient
            .last_transition_time
            .clone()
            .unwrap()
            .0
            .to_string(),
        "2026-01-01T00:00:10Z"
    );
    assert_eq!(condition(&node, "Ready").status, "True");
    assert_eq!(condition(&node, "DiskPressure").status, "False");

    // Figures that cannot be read change nothing.
    host.fail("/proc/meminfo: gone");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let node = nodes.get("node-1").await.unwrap();
    assert_eq!(condition(&node, "MemoryPressure").status, "True");

    // Memory back: the condition stays for the 5 minute transition period after the pressure
    // was last seen (t = 10 s), then clears.
    host.set_stats(host_stats());
    tokio::time::sleep(Duration::from_secs(289)).await; // t = 300 s
    let node = nodes.get("node-1").await.unwrap();
    assert_eq!(condition(&node, "MemoryPressure").status, "True");
    tokio::time::sleep(Duration::from_secs(11)).await; // t = 311 s: the tick at 310 s cleared it
    let node = nodes.get("node-1").await.unwrap();
    let cleared = condition(&node, "MemoryPressure");
    assert_eq!(cleared.status, "False");
    assert_eq!(
        cleared.reason.as_deref(),
        Some("KubeletHasSufficientMemory")
    );
    assert_eq!(
        cleared.last_transition_time.unwrap().0.to_string(),
        "2026-01-01T00:05:10Z"
    );

    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn disk_and_pid_pressure_follow_the_host() {
    let client = client().await;
    let runtime = Arc::new(FakeRuntime::new());
    let host = host();
    host.update(|stats| {
        stats.nodefs.available_bytes = 9 * GI;
        stats.pids.running = 32000;
    });
    let mut config = config();
    config.pressure_transition_period = Duration::ZERO;
    let heartbeat = Heartbeat::new(client.clone(), config, runtime)
        .with_clock(clock())
        .with_resources(host.clone());
    let node = heartbeat.register().await.unwrap();
    // The configured capacity overrides the host's.
    assert_eq!(
        node.status.clone().unwrap().capacity.unwrap()["memory"],
        Quantity("4Gi".to_owned())
    );
    let disk = condition(&node, "DiskPressure");
    assert_eq!(
        (
            disk.status.as_str(),
            disk.reason.as_deref(),
            disk.message.as_deref()
        ),
        (
            "True",
            Some("KubeletHasDiskPressure"),
            Some("kubelet has disk pressure")
        )
    );
    let pid = condition(&node, "PIDPressure");
    assert_eq!(
        (
            pid.status.as_str(),
            pid.reason.as_deref(),
            pid.message.as_deref()
        ),
        (
            "True",
            Some("KubeletHasInsufficientPID"),
            Some("kubelet has insufficient PID available")
        )
    );
    assert_eq!(condition(&node, "MemoryPressure").status, "False");

    host.set_stats(host_stats());
    let node = heartbeat.post_status().await.unwrap();
    assert_eq!(condition(&node, "DiskPressure").status, "False");
    assert_eq!(condition(&node, "PIDPressure").status, "False");
}
