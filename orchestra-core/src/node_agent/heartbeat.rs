//! Registering the node and keeping it alive: the agent creates its Node (capacity, addresses,
//! labels, runtime version), renews the node's `Lease` in `kube-node-lease` every few seconds
//! (the heartbeat the node lifecycle controller watches), and posts the node's conditions —
//! `Ready` while its container runtime answers — as kubelet does.
//!
//! Given the host's [`NodeResources`] ([`Heartbeat::with_resources`]), the node's capacity is
//! the host's, its allocatable resources what kubelet leaves of it (see [`host::allocatable`]),
//! and its `MemoryPressure`, `DiskPressure` and `PIDPressure` conditions follow the host's
//! figures against kubelet's eviction thresholds; without, the capacity is the configured one and
//! the pressure conditions stay false.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use serde_json::json;

use crate::api::{Api, Client, PatchParams, PostParams};
use crate::clock::{Clock, SystemClock};
use crate::container_runtime::ContainerRuntime;
use crate::node_agent::host::{
    self, EvictionThresholds, NodePressure, NodeResources, PressureHistory,
};
use crate::patch::PatchType;
use crate::status::StatusError;

/// The namespace of the nodes' Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// What the agent says of its node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeConfig {
    /// The node's name.
    pub node_name: String,
    /// What the node has (`cpu`, `memory`, `pods`, `ephemeral-storage`, ...). With the host's
    /// [`NodeResources`], added to (and overriding) what the host has.
    pub capacity: BTreeMap<String, Quantity>,
    /// What pods may use. When `None`: the capacity, or with the host's [`NodeResources`],
    /// what kubelet leaves of it ([`host::allocatable`] with `reserved` and
    /// `eviction_thresholds`).
    pub allocatable: Option<BTreeMap<String, Quantity>>,
    /// What is held back from pods for the system and the agent (kubelet's `--system-reserved`
    /// plus `--kube-reserved`; none by default).
    pub reserved: BTreeMap<String, Quantity>,
    /// Below these the node reports pressure (kubelet's `--eviction-hard`).
    pub eviction_thresholds: EvictionThresholds,
    /// How long a pressure condition stays true after its signal last crossed its threshold
    /// (kubelet's `--eviction-pressure-transition-period`: 5 minutes).
    pub pressure_transition_period: Duration,
    /// The node's addresses (`InternalIP`, `Hostname`).
    pub addresses: Vec<NodeAddress>,
    /// The port the agent serves container logs on (`status.daemonEndpoints.kubeletEndpoint`,
    /// kubelet's 10250), at the node's `InternalIP`; none when it serves none.
    pub kubelet_port: Option<i32>,
    /// Labels besides the well-known ones the agent sets (`kubernetes.io/hostname`,
    /// `kubernetes.io/os`, `kubernetes.io/arch`).
    pub labels: BTreeMap<String, String>,
    /// The agent's version (`nodeInfo.kubeletVersion`).
    pub agent_version: String,
    /// How long a Lease stays valid without renewal (Kubernetes: 40 s).
    pub lease_duration: Duration,
    /// How often the Lease is renewed (Kubernetes: a quarter of the duration).
    pub renew_interval: Duration,
    /// How often the node's status is posted when nothing changed (Kubernetes: 5 minutes;
    /// a change is posted at the next renewal).
    pub status_report_interval: Duration,
}

impl NodeConfig {
    /// A node named `node_name` with `capacity`, Kubernetes' intervals, and no addresses.
    pub fn new(node_name: impl Into<String>, capacity: BTreeMap<String, Quantity>) -> NodeConfig {
        NodeConfig {
            node_name: node_name.into(),
            capacity,
            allocatable: None,
            reserved: BTreeMap::new(),
            eviction_thresholds: EvictionThresholds::default(),
            pressure_transition_period: Duration::from_secs(300),
            addresses: Vec::new(),
            kubelet_port: None,
            labels: BTreeMap::new(),
            agent_version: format!("v{}", env!("CARGO_PKG_VERSION")),
            lease_duration: Duration::from_secs(40),
            renew_interval: Duration::from_secs(10),
            status_report_interval: Duration::from_secs(300),
        }
    }

    fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_owned(), self.node_name.clone()),
            (
                "kubernetes.io/os".to_owned(),
                std::env::consts::OS.to_owned(),
            ),
            (
                "kubernetes.io/arch".to_owned(),
                match std::env::consts::ARCH {
                    "x86_64" => "amd64",
                    "aarch64" => "arm64",
                    other => other,
                }
                .to_owned(),
            ),
        ]);
        labels.extend(self.labels.clone());
        labels
    }
}

/// Whether the node can run pods, and why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Ready.
    Ready,
    /// Not ready, with the message shown in the `Ready` condition.
    NotReady(String),
}

/// The node's conditions: `Ready` as `readiness` says, the pressure conditions as `pressure`
/// says (with kubelet's reasons and messages), each keeping its `lastTransitionTime` from
/// `previous` while its status is unchanged, all with heartbeat `now`.
pub fn node_conditions(
    previous: &[NodeCondition],
    readiness: &Readiness,
    pressure: &NodePressure,
    now: Timestamp,
) -> Vec<NodeCondition> {
    let make = |kind: &str, status: bool, reason: &str, message: &str| {
        let status = if status { "True" } else { "False" }.to_owned();
        let transition = previous
            .iter()
            .find(|c| c.type_ == kind && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        NodeCondition {
            type_: kind.to_owned(),
            status,
            reason: Some(reason.to_owned()),
            message: Some(message.to_owned()),
            last_heartbeat_time: Some(Time(now)),
            last_transition_time: Some(transition),
        }
    };
    let ready = match readiness {
        Readiness::Ready => make(
            "Ready",
            true,
            "KubeletReady",
            "the node agent is posting ready status",
        ),
        Readiness::NotReady(why) => make("Ready", false, "KubeletNotReady", why),
    };
    let memory = if pressure.memory {
        make(
            "MemoryPressure",
            true,
            "KubeletHasInsufficientMemory",
            "kubelet has insufficient memory available",
        )
    } else {
        make(
            "MemoryPressure",
            false,
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        )
    };
    let disk = if pressure.disk {
        make(
            "DiskPressure",
            true,
            "KubeletHasDiskPressure",
            "kubelet has disk pressure",
        )
    } else {
        make(
            "DiskPressure",
            false,
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        )
    };
    let pid = if pressure.pid {
        make(
            "PIDPressure",
            true,
            "KubeletHasInsufficientPID",
            "kubelet has insufficient PID available",
        )
    } else {
        make(
            "PIDPressure",
            false,
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        )
    };
    vec![memory, disk, pid, ready]
}

/// The pressure conditions `conditions` report as true.
fn reported_pressure(conditions: &[NodeCondition]) -> NodePressure {
    let holds = |kind: &str| {
        conditions
            .iter()
            .any(|c| c.type_ == kind && c.status == "True")
    };
    NodePressure {
        memory: holds("MemoryPressure"),
        disk: holds("DiskPressure"),
        pid: holds("PIDPressure"),
    }
}

/// What the agent observed of its node at one moment: what its status is made from.
#[derive(Clone, Debug, PartialEq)]
struct Observation {
    readiness: Readiness,
    runtime_version: String,
    capacity: BTreeMap<String, Quantity>,
    allocatable: BTreeMap<String, Quantity>,
    /// `None` when the host's figures could not be read: the conditions stay as reported.
    pressure: Option<NodePressure>,
}

impl Observation {
    /// What the node reports of `config` alone (no host resources).
    fn of_config(config: &NodeConfig, readiness: Readiness, runtime_version: String) -> Self {
        Observation {
            readiness,
            runtime_version,
            capacity: config.capacity.clone(),
            allocatable: config
                .allocatable
                .clone()
                .unwrap_or_else(|| config.capacity.clone()),
            pressure: Some(NodePressure::default()),
        }
    }
}

/// The Node object the agent registers (without the host's resources: the configured capacity,
/// no pressure).
pub fn node_object(
    config: &NodeConfig,
    runtime_version: &str,
    readiness: &Readiness,
    now: Timestamp,
) -> Node {
    let observed = Observation::of_config(config, readiness.clone(), runtime_version.to_owned());
    observed_node(config, &observed, now)
}

fn observed_node(config: &NodeConfig, observed: &Observation, now: Timestamp) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(config.node_name.clone()),
            labels: Some(config.labels()),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(node_status(config, observed, &[], now)),
    }
}

fn node_status(
    config: &NodeConfig,
    observed: &Observation,
    previous: &[NodeCondition],
    now: Timestamp,
) -> NodeStatus {
    let pressure = observed
        .pressure
        .unwrap_or_else(|| reported_pressure(previous));
    NodeStatus {
        capacity: Some(observed.capacity.clone()),
        allocatable: Some(observed.allocatable.clone()),
        addresses: (!config.addresses.is_empty()).then(|| config.addresses.clone()),
        daemon_endpoints: config.kubelet_port.map(|port| NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port }),
        }),
        conditions: Some(node_conditions(
            previous,
            &observed.readiness,
            &pressure,
            now,
        )),
        node_info: Some(NodeSystemInfo {
            architecture: config
                .labels()
                .get("kubernetes.io/arch")
                .cloned()
                .unwrap_or_default(),
            operating_system: std::env::consts::OS.to_owned(),
            container_runtime_version: observed.runtime_version.clone(),
            kubelet_version: config.agent_version.clone(),
            kube_proxy_version: String::new(),
            ..NodeSystemInfo::default()
        }),
        ..NodeStatus::default()
    }
}

/// The agent's side of the node's life: registration, Lease renewals and status posts.
#[derive(Debug)]
pub struct Heartbeat {
    client: Client,
    config: NodeConfig,
    runtime: Arc<dyn ContainerRuntime>,
    clock: Arc<dyn Clock>,
    resources: Option<Arc<dyn NodeResources>>,
    pressure: Mutex<PressureHistory>,
}

impl Heartbeat {
    /// The heartbeat of the node `config` describes, whose readiness is its `runtime`'s.
    pub fn new(
        client: Client,
        config: NodeConfig,
        runtime: Arc<dyn ContainerRuntime>,
    ) -> Heartbeat {
        Heartbeat {
            client,
            config,
            runtime,
            clock: Arc::new(SystemClock),
            resources: None,
            pressure: Mutex::new(PressureHistory::default()),
        }
    }

    /// The same with the node's capacity and pressure read from `resources` (the host's).
    pub fn with_resources(mut self, resources: Arc<dyn NodeResources>) -> Heartbeat {
        self.resources = Some(resources);
        self
    }

    /// The same with timestamps from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Heartbeat {
        self.clock = clock;
        self
    }

    /// Asks the runtime whether it answers: the node's readiness, and the runtime's version as
    /// the node reports it (`process://0.1.0`).
    async fn readiness(&self) -> (Readiness, String) {
        match self.runtime.version().await {
            Ok(version) => (
                Readiness::Ready,
                format!("{}://{}", version.runtime_name, version.runtime_version),
            ),
            Err(error) => (
                Readiness::NotReady(format!("container runtime is down: {error}")),
                String::new(),
            ),
        }
    }

    /// Observes the node now: the runtime's readiness and, with the host's resources, the
    /// capacity, allocatable resources and pressure (through kubelet's transition period).
    async fn observe(&self) -> Observation {
        let (readiness, runtime_version) = self.readiness().await;
        let Some(resources) = &self.resources else {
            return Observation::of_config(&self.config, readiness, runtime_version);
        };
        let mut capacity = resources.capacity();
        capacity.extend(self.config.capacity.clone());
        let allocatable = self.config.allocatable.clone().unwrap_or_else(|| {
            host::allocatable(
                &capacity,
                &self.config.reserved,
                &self.config.eviction_thresholds,
            )
        });
        let pressure = match resources.stats() {
            Ok(stats) => {
                let crossed = self.config.eviction_thresholds.pressure(&stats);
                let mut history = self
                    .pressure
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                Some(history.observe(
                    crossed,
                    self.clock.now(),
                    self.config.pressure_transition_period,
                ))
            }
            Err(error) => {
                eprintln!(
                    "node {}: reading the host's resources: {error}",
                    self.config.node_name
                );
                None
            }
        };
        Observation {
            readiness,
            runtime_version,
            capacity,
            allocatable,
            pressure,
        }
    }

    /// Registers the node: creates it, or (an agent restarting) brings the existing one's
    /// labels and status up to date.
    ///
    /// # Errors
    ///
    /// What the Api answers, other than that the node exists.
    pub async fn register(&self) -> Result<Node, StatusError> {
        let nodes = Api::<Node>::all(self.client.clone());
        let observed = self.observe().await;
        let now = self.clock.now();
        let node = observed_node(&self.config, &observed, now);
        match nodes.create(&PostParams::default(), &node).await {
            Ok(created) => Ok(created),
            Err(error) if error.is_already_exists() => {
                let labels = json!({"metadata": {"labels": self.config.labels()}});
                nodes
                    .patch(
                        &self.config.node_name,
                        &PatchParams::new(PatchType::Merge),
                        &labels,
                    )
                    .await?;
                self.post_observed(&observed).await
            }
            Err(error) => Err(error),
        }
    }

    /// Posts the node's status now: capacity, addresses, conditions with a fresh heartbeat.
    ///
    /// # Errors
    ///
    /// What the Api answers.
    pub async fn post_status(&self) -> Result<Node, StatusError> {
        let observed = self.observe().await;
        self.post_observed(&observed).await
    }

    /// Posts the status made of `observed`.
    async fn post_observed(&self, observed: &Observation) -> Result<Node, StatusError> {
        let nodes = Api::<Node>::all(self.client.clone());
        let current = nodes.get(&self.config.node_name).await?;
        let previous = current
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let status = node_status(&self.config, observed, &previous, self.clock.now());
        let patch = json!({"status": status});
        nodes
            .patch_status(
                &self.config.node_name,
                &PatchParams::new(PatchType::Merge),
                &patch,
            )
            .await
    }

    /// Renews the node's Lease (creating it on the first heartbeat), owned by the Node so that
    /// deleting the node deletes it.
    ///
    /// # Errors
    ///
    /// What the Api answers.
    pub async fn renew_lease(&self) -> Result<Lease, StatusError> {
        let leases = Api::<Lease>::namespaced(self.client.clone(), NODE_LEASE_NAMESPACE);
        let name = &self.config.node_name;
        let spec = LeaseSpec {
            holder_identity: Some(name.clone()),
            lease_duration_seconds: i32::try_from(self.config.lease_duration.as_secs()).ok(),
            renew_time: Some(MicroTime(self.clock.now())),
            ..LeaseSpec::default()
        };
        match leases.get(name).await {
            Ok(mut lease) => {
                lease.spec = Some(spec);
                leases.replace(name, &PostParams::default(), &lease).await
            }
            Err(error) if error.is_not_found() => {
                let owner = Api::<Node>::all(self.client.clone()).get(name).await?;
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(NODE_LEASE_NAMESPACE.to_owned()),
                        owner_references: Some(vec![OwnerReference {
                            api_version: "v1".to_owned(),
                            kind: "Node".to_owned(),
                            name: name.clone(),
                            uid: owner.metadata.uid.unwrap_or_default(),
                            ..OwnerReference::default()
                        }]),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                leases.create(&PostParams::default(), &lease).await
            }
            Err(error) => Err(error),
        }
    }

    /// Registers the node, then renews the Lease every renew interval and posts the status when
    /// the readiness, a pressure condition, the capacity or the allocatable resources change or
    /// the report interval has passed, until `shutdown` resolves.
    /// Failed calls are retried at the next tick (printed to stderr).
    ///
    /// # Errors
    ///
    /// Registration's, when the node cannot be registered at all.
    pub async fn run<S: Future<Output = ()>>(self, shutdown: S) -> Result<(), StatusError> {
        self.register().await?;
        tokio::pin!(shutdown);
        let mut last_report = tokio::time::Instant::now();
        let mut last = self.observe().await;
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(self.config.renew_interval) => {}
            }
            if let Err(error) = self.renew_lease().await {
                eprintln!(
                    "node {}: renewing the lease: {error}",
                    self.config.node_name
                );
            }
            let mut observed = self.observe().await;
            // Unreadable figures change nothing (the conditions stay as reported).
            observed.pressure = observed.pressure.or(last.pressure);
            if observed != last || last_report.elapsed() >= self.config.status_report_interval {
                match self.post_observed(&observed).await {
                    Ok(_) => {
                        last_report = tokio::time::Instant::now();
                        last = observed;
                    }
                    Err(error) => {
                        eprintln!(
                            "node {}: posting the status: {error}",
                            self.config.node_name
                        );
                    }
                }
            }
        }
    }
}
