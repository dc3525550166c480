//! The node's resources read from this machine: a plausible capacity, plausible figures, and a
//! node registered with them through the heartbeat.
#![cfg(feature = "host")]

use std::collections::BTreeMap;
use std::sync::Arc;

use orchestra_core::api::{Api, Client};
use orchestra_core::container_runtime::fake::FakeRuntime;
use orchestra_core::k8s::api::core::v1::Node;
use orchestra_core::k8s::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use orchestra_core::node_agent::heartbeat::{Heartbeat, NodeConfig};
use orchestra_core::node_agent::host::NodeResources;
use orchestra_core::quantity::Quantity;
use orchestra_core::store::MemoryStore;
use orchestra_runtime::host::{DEFAULT_MAX_PODS, HostResources};

const GI: i128 = 1024 * 1024 * 1024;

fn units(capacity: &BTreeMap<String, K8sQuantity>, name: &str) -> i128 {
    let quantity = capacity
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {capacity:?}"));
    Quantity::try_from(quantity).unwrap().as_units_ceil()
}

#[test]
fn the_capacity_of_this_machine_is_plausible() {
    let data = tempfile::tempdir().unwrap();
    let host = HostResources::new(data.path()).unwrap();
    let capacity = host.capacity();
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(units(&capacity, "cpu"), i128::try_from(cpus).unwrap());
    assert!(units(&capacity, "cpu") > 0);
    assert!(units(&capacity, "memory") > GI, "{capacity:?}");
    assert!(units(&capacity, "ephemeral-storage") > 0, "{capacity:?}");
    assert_eq!(units(&capacity, "pods"), i128::from(DEFAULT_MAX_PODS));
    // Memory in KiB as kubelet prints it (`MemTotal` is in KiB).
    assert!(capacity["memory"].0.ends_with("Ki"), "{capacity:?}");
    if std::path::Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists() {
        assert!(units(&capacity, "hugepages-2Mi") >= 0, "{capacity:?}");
    }
}

#[test]
fn the_figures_of_this_machine_are_plausible() {
    let data = tempfile::tempdir().unwrap();
    let host = HostResources::new(data.path()).unwrap();
    let capacity = host.capacity();
    let stats = host.stats().unwrap();
    assert_eq!(
        i128::from(stats.memory.capacity_bytes),
        units(&capacity, "memory")
    );
    assert!(stats.memory.available_bytes > 0);
    assert!(stats.memory.available_bytes <= stats.memory.capacity_bytes);
    assert_eq!(
        i128::from(stats.nodefs.capacity_bytes),
        units(&capacity, "ephemeral-storage")
    );
    assert!(stats.nodefs.available_bytes <= stats.nodefs.capacity_bytes);
    assert!(stats.nodefs.inodes_free <= stats.nodefs.inodes);
    // At least this test's threads run, and the kernel allows more than that.
    assert!(stats.pids.running >= 1, "{stats:?}");
    assert!(stats.pids.max > stats.pids.running, "{stats:?}");
}

#[tokio::test]
async fn the_node_registers_with_this_machines_capacity() {
    let client = Client::new(MemoryStore::new());
    client.bootstrap().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let host = Arc::new(HostResources::new(data.path()).unwrap());
    let heartbeat = Heartbeat::new(
        client.clone(),
        NodeConfig::new("this-machine", Default::default()),
        Arc::new(FakeRuntime::new()),
    )
    .with_resources(host.clone());
    heartbeat.register().await.unwrap();
    let node = Api::<Node>::all(client).get("this-machine").await.unwrap();
    let status = node.status.unwrap();
    let capacity = status.capacity.unwrap();
    assert_eq!(capacity, host.capacity());
    let allocatable = status.allocatable.unwrap();
    // kubelet's memory.available<100Mi hard eviction threshold is held back.
    assert_eq!(
        units(&capacity, "memory") - units(&allocatable, "memory"),
        100 * 1024 * 1024
    );
    assert_eq!(units(&allocatable, "cpu"), units(&capacity, "cpu"));
    let conditions = status.conditions.unwrap();
    let kinds: Vec<&str> = conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(
        kinds,
        ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
    );
    assert!(
        conditions.iter().all(|c| c
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("Kubelet"))),
        "{conditions:?}"
    );
}
