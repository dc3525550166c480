//! An in-process cluster simulator (feature `testing`): a [`MemoryStore`], the controllers under
//! test, and a [`FakeNodeAgent`] standing in for the scheduler and the kubelets, all on tokio's
//! paused clock and seeded, so that a test of a whole cluster runs in one process in
//! milliseconds and replays exactly from its seed.
//!
//! A [`Cluster`] owns the store, two clients over it and the tasks it runs:
//!
//! - [`Cluster::client`] is what the components under test use; with a [`ChaosConfig`] its
//!   watches deliver events late, twice and out of order across objects, and break (see
//!   [`chaos`]);
//! - [`Cluster::observer`] sees the store as it is, for the test's own checks;
//! - [`Cluster::spawn`] runs a named component (a controller, a controller manager) and
//!   [`Cluster::kill`] stops it at once, wherever it is, as `SIGKILL` would: nothing it holds in
//!   memory survives, what it wrote to the store does.
//!
//! # Determinism
//!
//! Everything random in a run is drawn from the seed: the node agent's delays and node choices,
//! the chaos store's faults, object uids and generated names (a seeded [`Client`]), and whatever
//! the test draws from [`Cluster::rng`]. Timestamps come from a [`TokioClock`]. Run on a
//! current-thread runtime with paused time ([`simulate`] builds one), the tasks interleave the
//! same way every time, so a failing seed fails again. Two things would break that: code under
//! test that takes randomness from elsewhere (an unbiased `tokio::select!`, iteration over a
//! `HashMap`, the system clock), and a multi-threaded runtime.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use orchestra_core::api::{Api, PostParams};
//! use orchestra_core::k8s::api::core::v1::Pod;
//! use orchestra_core::simulator::{self, Cluster, ClusterConfig};
//!
//! simulator::simulate(7, |seed| async move {
//!     let cluster = Cluster::start(ClusterConfig::seeded(seed)).await.unwrap();
//!     let pods: Api<Pod> = Api::namespaced(cluster.client().clone(), "default");
//!     let pod: Pod = serde_json::from_value(serde_json::json!({
//!         "metadata": {"name": "web"},
//!         "spec": {"containers": [{"name": "web", "image": "nginx"}]},
//!     }))
//!     .unwrap();
//!     pods.create(&PostParams::default(), &pod).await.unwrap();
//!     let running = cluster
//!         .wait_until(Duration::from_secs(5), || async {
//!             pods.get("web").await.ok().and_then(|pod| pod.status?.phase).as_deref() == Some("Running")
//!         })
//!         .await;
//!     assert!(running);
//! });
//! ```

pub mod chaos;
pub mod node_agent;
pub mod random;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeCondition, NodeStatus};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use tokio::task::JoinHandle;

pub use chaos::{ChaosConfig, ChaosStore};
pub use node_agent::{AgentConfig, BEHAVIOUR_LABEL, FakeNodeAgent, PodBehaviour};
pub use random::SimRng;

use crate::api::{Api, Client, PostParams};
use crate::clock::TokioClock;
use crate::status::StatusError;
use crate::store::MemoryStore;

/// The name under which a [`Cluster`] runs its node agent.
pub const NODE_AGENT: &str = "node-agent";

/// What a simulated cluster starts with.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The seed every random choice of the run comes from.
    pub seed: u64,
    /// The node agent's nodes and delays (its `nodes` become Node objects).
    pub agent: AgentConfig,
    /// Faults of the watches of [`Cluster::client`], if any.
    pub chaos: Option<ChaosConfig>,
    /// The wall-clock time the run starts at.
    pub start: Timestamp,
    /// Whether to start the node agent with the cluster.
    pub run_agent: bool,
}

impl ClusterConfig {
    /// The default cluster (three nodes, a node agent, no faults) with `seed`.
    pub fn seeded(seed: u64) -> ClusterConfig {
        ClusterConfig {
            seed,
            agent: AgentConfig::default(),
            chaos: None,
            start: Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH),
            run_agent: true,
        }
    }

    /// This configuration with faulty watches for the components under test.
    #[must_use]
    pub fn chaos(mut self, chaos: ChaosConfig) -> ClusterConfig {
        self.chaos = Some(chaos);
        self
    }

    /// This configuration with another node agent.
    #[must_use]
    pub fn agent(mut self, agent: AgentConfig) -> ClusterConfig {
        self.agent = agent;
        self
    }
}

/// A simulated cluster: see the [module documentation](self).
pub struct Cluster {
    store: MemoryStore,
    client: Client,
    observer: Client,
    rng: SimRng,
    tasks: BTreeMap<String, JoinHandle<()>>,
    config: ClusterConfig,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("seed", &self.config.seed)
            .field("tasks", &self.tasks.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Starts a cluster: the store, the system namespaces, one Node per agent node, and (unless
    /// the configuration says not to) the node agent.
    pub async fn start(config: ClusterConfig) -> Result<Cluster, StatusError> {
        let mut rng = SimRng::new(config.seed);
        let store = MemoryStore::new();
        let clock = TokioClock::starting_at(config.start);
        let builder = match config.chaos {
            Some(chaos) => {
                Client::builder(ChaosStore::new(Arc::new(store.clone()), chaos, rng.fork()))
            }
            None => Client::builder(store.clone()),
        };
        let client = builder.clock(clock).seed(rng.next_u64()).build();
        let observer = Client::builder(store.clone())
            .clock(clock)
            .seed(rng.next_u64())
            .build();
        observer.bootstrap().await?;
        let mut cluster = Cluster {
            store,
            client,
            observer,
            rng,
            tasks: BTreeMap::new(),
            config,
        };
        cluster.create_nodes().await?;
        if cluster.config.run_agent {
            cluster.start_agent();
        }
        Ok(cluster)
    }

    async fn create_nodes(&self) -> Result<(), StatusError> {
        let nodes: Api<Node> = Api::all(self.observer.clone());
        let now = Time(self.observer.clock().now());
        for (index, name) in self.config.agent.nodes.iter().enumerate() {
            let capacity: BTreeMap<String, Quantity> = [
                ("cpu", "4"),
                ("memory", "16Gi"),
                ("pods", "110"),
                ("ephemeral-storage", "100Gi"),
            ]
            .into_iter()
            .map(|(resource, amount)| (resource.to_owned(), Quantity(amount.to_owned())))
            .collect();
            let node = Node {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some(BTreeMap::from([
                        ("kubernetes.io/hostname".to_owned(), name.clone()),
                        ("kubernetes.io/os".to_owned(), "linux".to_owned()),
                    ])),
                    ..ObjectMeta::default()
                },
                spec: None,
                status: None,
            };
            let created = nodes.create(&PostParams::default(), &node).await?;
            let mut ready = created;
            ready.status = Some(NodeStatus {
                addresses: Some(vec![NodeAddress {
                    type_: "InternalIP".into(),
                    address: format!("192.168.0.{}", index + 1),
                }]),
                allocatable: Some(capacity.clone()),
                capacity: Some(capacity),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    reason: Some("KubeletReady".into()),
                    last_heartbeat_time: Some(now.clone()),
                    last_transition_time: Some(now.clone()),
                    ..NodeCondition::default()
                }]),
                ..NodeStatus::default()
            });
            nodes
                .replace_status(name, &PostParams::default(), &ready)
                .await?;
        }
        Ok(())
    }

    /// (Re)starts the node agent, under the name [`NODE_AGENT`].
    pub fn start_agent(&mut self) {
        let agent = FakeNodeAgent::new(
            self.observer.clone(),
            self.config.agent.clone(),
            self.rng.fork(),
        );
        self.spawn(NODE_AGENT, agent.run(std::future::pending()));
    }

    /// The client of the components under test (with faulty watches when the cluster has a
    /// [`ChaosConfig`]).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A client that sees the store as it is, for checks.
    pub fn observer(&self) -> &Client {
        &self.observer
    }

    /// The store.
    pub fn store(&self) -> &MemoryStore {
        &self.store
    }

    /// The run's seed.
    pub fn seed(&self) -> u64 {
        self.config.seed
    }

    /// The run's randomness, for the test's own choices.
    pub fn rng(&mut self) -> &mut SimRng {
        &mut self.rng
    }

    /// Runs `task` under `name`, killing a task already running under that name first.
    pub fn spawn(&mut self, name: &str, task: impl Future<Output = ()> + Send + 'static) {
        self.kill(name);
        self.tasks.insert(name.to_owned(), tokio::spawn(task));
    }

    /// Kills the task running under `name` at once, wherever it is (`false` when none runs).
    pub fn kill(&mut self, name: &str) -> bool {
        match self.tasks.remove(name) {
            Some(task) => {
                task.abort();
                true
            }
            None => false,
        }
    }

    /// Whether a task runs under `name` (and has not ended).
    pub fn is_running(&self, name: &str) -> bool {
        self.tasks.get(name).is_some_and(|task| !task.is_finished())
    }

    /// Lets the cluster run for `duration` of (simulated) time.
    pub async fn run_for(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    /// Checks `condition` every 10 ms of simulated time until it holds (`true`) or `timeout`
    /// passes (`false`).
    pub async fn wait_until<F, Fut>(&self, timeout: Duration, mut condition: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if condition().await {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}

/// Runs `run(seed)` to completion on a fresh current-thread runtime with paused time: the way to
/// run a simulation that replays exactly from its seed.
///
/// # Panics
///
/// If the runtime cannot be built (the operating system refuses it a timer or thread), or if
/// `run` panics.
pub fn simulate<F, Fut, T>(seed: u64, run: F) -> T
where
    F: FnOnce(u64) -> Fut,
    Fut: Future<Output = T>,
{
    #[allow(clippy::expect_used)]
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(run(seed))
}
