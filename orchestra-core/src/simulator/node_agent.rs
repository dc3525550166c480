//! A fake node agent: it plays the scheduler and the kubelets of a simulated cluster's nodes.
//!
//! [`FakeNodeAgent`] watches every pod and, after seeded random delays:
//!
//! - binds each unscheduled pod to one of its nodes (through the `pods/binding` subresource, as
//!   the scheduler does);
//! - "starts" each bound pod as its [`PodBehaviour`] says: `Running` and `Ready` with a pod IP,
//!   host IP, start time, conditions and container statuses as a kubelet reports them; or
//!   `Running` but never ready; or `Failed`; or left `Pending`;
//! - finishes the graceful deletion of each terminating pod (deleting it with grace period 0, as
//!   a kubelet does once the containers stopped).
//!
//! A pod's behaviour is its [`BEHAVIOUR_LABEL`] label when it has one (`ready`, `never-ready`,
//! `fail`, `pending`), else the agent's default. Nothing runs: the agent only writes what a real
//! node would report, so a whole cluster runs in one process on tokio's paused clock.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, Pod,
    PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Preconditions, Time};
use tokio::time::Instant;

use super::random::SimRng;
use crate::api::{Api, Client, DeleteParams, PostParams};
use crate::runtime::reflector::{self, ObjectRef, Reader};
use crate::runtime::watcher::{WatcherConfig, watcher};
use crate::runtime::{Action, WorkQueue};
use crate::status::StatusError;

/// The label that picks a pod's [`PodBehaviour`].
pub const BEHAVIOUR_LABEL: &str = "simulator.orchestra.dev/behaviour";

/// What the fake agent makes of a pod once it is bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PodBehaviour {
    /// Starts: `Running`, then ready (label value `ready`).
    #[default]
    Ready,
    /// Starts but never becomes ready (`never-ready`).
    NeverReady,
    /// Fails: phase `Failed` (`fail`).
    Fail,
    /// Never starts: stays `Pending` (`pending`).
    Pending,
}

impl PodBehaviour {
    /// The behaviour a label value names.
    pub fn from_label(value: &str) -> Option<PodBehaviour> {
        Some(match value {
            "ready" => PodBehaviour::Ready,
            "never-ready" => PodBehaviour::NeverReady,
            "fail" => PodBehaviour::Fail,
            "pending" => PodBehaviour::Pending,
            _ => return None,
        })
    }
}

/// How the fake agent behaves.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The nodes pods are bound to (chosen at random for each pod).
    pub nodes: Vec<String>,
    /// The shortest and longest time from a pod's creation to its binding.
    pub bind_delay: (Duration, Duration),
    /// The shortest and longest time from binding to the pod running (and ready).
    pub start_delay: (Duration, Duration),
    /// The shortest and longest time a terminating pod takes to stop.
    pub stop_delay: (Duration, Duration),
    /// The behaviour of pods without a [`BEHAVIOUR_LABEL`].
    pub default_behaviour: PodBehaviour,
    /// How many pods the agent handles at once.
    pub concurrency: usize,
}

impl Default for AgentConfig {
    /// Three nodes; binding within 10 ms, starting in 50–500 ms, stopping in 10–200 ms.
    fn default() -> AgentConfig {
        AgentConfig {
            nodes: (0..3).map(|index| format!("node-{index}")).collect(),
            bind_delay: (Duration::ZERO, Duration::from_millis(10)),
            start_delay: (Duration::from_millis(50), Duration::from_millis(500)),
            stop_delay: (Duration::from_millis(10), Duration::from_millis(200)),
            default_behaviour: PodBehaviour::Ready,
            concurrency: 64,
        }
    }
}

/// The step a pod is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Bind,
    Start,
    Stop,
}

struct Shared {
    client: Client,
    config: AgentConfig,
    reader: Reader<Pod>,
    rng: Mutex<SimRng>,
    /// When each pod's pending step is due, by pod uid.
    due: Mutex<BTreeMap<(String, Step), Instant>>,
    /// Pod IPs handed out so far.
    addresses: Mutex<u32>,
}

/// The fake node agent: see the [module documentation](self).
pub struct FakeNodeAgent {
    client: Client,
    config: AgentConfig,
    rng: SimRng,
}

impl std::fmt::Debug for FakeNodeAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeNodeAgent")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl FakeNodeAgent {
    /// An agent for the pods `client` sees, drawing its delays and choices from `rng`.
    pub fn new(client: Client, config: AgentConfig, rng: SimRng) -> FakeNodeAgent {
        FakeNodeAgent {
            client,
            config,
            rng,
        }
    }

    /// Runs the agent until `shutdown` resolves.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (reader, writer) = reflector::store::<Pod>();
        let pods: Api<Pod> = Api::all(self.client.clone());
        let config = WatcherConfig::default();
        let mut events = std::pin::pin!(reflector::reflector(writer, watcher(pods, config)));
        let queue: WorkQueue<ObjectRef> = WorkQueue::new();
        let concurrency = self.config.concurrency;
        let shared = Arc::new(Shared {
            client: self.client,
            config: self.config,
            reader,
            rng: Mutex::new(self.rng),
            due: Mutex::new(BTreeMap::new()),
            addresses: Mutex::new(0),
        });
        let feed_queue = queue.clone();
        let feed = async move {
            while let Some(event) = events.next().await {
                if let Ok(event) = event {
                    use crate::runtime::watcher::WatcherEvent;
                    match event {
                        WatcherEvent::InitApply(pod)
                        | WatcherEvent::Apply(pod)
                        | WatcherEvent::Delete(pod) => feed_queue.add(ObjectRef::from_obj(&pod)),
                        WatcherEvent::Init | WatcherEvent::InitDone => {}
                    }
                }
            }
        };
        let work = queue.run_until(
            concurrency,
            |key: ObjectRef| {
                let shared = Arc::clone(&shared);
                async move { shared.handle(&key).await }
            },
            shutdown,
        );
        // The feed never ends on its own (the watcher retries), so the work's end ends both.
        tokio::select! {
            biased;
            () = work => {}
            () = feed => {}
        }
        queue.shut_down();
    }
}

impl Shared {
    /// Whether the pod's `step` is due; if not, when it will be.
    fn wait_for(&self, uid: &str, step: Step) -> Option<Duration> {
        let now = Instant::now();
        let mut due = self.due.lock().unwrap_or_else(PoisonError::into_inner);
        let at = *due.entry((uid.to_owned(), step)).or_insert_with(|| {
            let (low, high) = match step {
                Step::Bind => self.config.bind_delay,
                Step::Start => self.config.start_delay,
                Step::Stop => self.config.stop_delay,
            };
            now + self
                .rng
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .between(low, high)
        });
        (at > now).then(|| at - now)
    }

    fn forget(&self, uid: &str) {
        let mut due = self.due.lock().unwrap_or_else(PoisonError::into_inner);
        for step in [Step::Bind, Step::Start, Step::Stop] {
            due.remove(&(uid.to_owned(), step));
        }
    }

    async fn handle(&self, key: &ObjectRef) -> Result<Action, StatusError> {
        let Some(pod) = self.reader.get(key) else {
            return Ok(Action::AwaitChange);
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let namespace = key.namespace.as_deref().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let spec_node = pod
            .spec
            .as_ref()
            .and_then(|spec| spec.node_name.clone())
            .filter(|node| !node.is_empty());
        let phase = pod
            .status
            .as_ref()
            .and_then(|status| status.phase.as_deref())
            .unwrap_or("Pending");
        if pod.metadata.deletion_timestamp.is_some() {
            if let Some(wait) = self.wait_for(&uid, Step::Stop) {
                return Ok(Action::requeue(wait));
            }
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            return match api.delete(&key.name, &params).await {
                Ok(_) => {
                    self.forget(&uid);
                    Ok(Action::AwaitChange)
                }
                Err(error) if error.is_not_found() || error.is_conflict() => {
                    self.forget(&uid);
                    Ok(Action::AwaitChange)
                }
                Err(error) => Err(error),
            };
        }
        let Some(node) = spec_node else {
            if let Some(wait) = self.wait_for(&uid, Step::Bind) {
                return Ok(Action::requeue(wait));
            }
            let node = {
                let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
                let index = rng.index(self.config.nodes.len());
                self.config.nodes.get(index).cloned()
            };
            let Some(node) = node else {
                // No nodes: the pod stays unscheduled, as in a cluster without nodes.
                return Ok(Action::AwaitChange);
            };
            return match api.bind(&key.name, &node).await {
                Ok(_) => {
                    self.forget(&uid);
                    Ok(Action::AwaitChange)
                }
                // Bound meanwhile, or gone: the next event says what to do.
                Err(error) if error.is_not_found() || error.is_conflict() => {
                    Ok(Action::AwaitChange)
                }
                Err(error) => Err(error),
            };
        };
        if phase != "Pending" || pod.status.as_ref().is_some_and(|s| s.start_time.is_some()) {
            return Ok(Action::AwaitChange);
        }
        let behaviour = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(BEHAVIOUR_LABEL))
            .and_then(|value| PodBehaviour::from_label(value))
            .unwrap_or(self.config.default_behaviour);
        if behaviour == PodBehaviour::Pending {
            return Ok(Action::AwaitChange);
        }
        if let Some(wait) = self.wait_for(&uid, Step::Start) {
            return Ok(Action::requeue(wait));
        }
        let mut started = (*pod).clone();
        started.status = Some(self.started_status(&pod, &node, behaviour));
        match api
            .replace_status(&key.name, &PostParams::default(), &started)
            .await
        {
            Ok(_) => {
                self.forget(&uid);
                Ok(Action::AwaitChange)
            }
            Err(error) if error.is_not_found() => Ok(Action::AwaitChange),
            Err(error) => Err(error),
        }
    }

    /// The next pod IP: 10.128.0.1 onwards.
    fn next_address(&self) -> Ipv4Addr {
        let mut handed_out = self
            .addresses
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *handed_out += 1;
        // Skip addresses ending in .0 and .255.
        while matches!(*handed_out & 0xff, 0 | 255) {
            *handed_out += 1;
        }
        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + (*handed_out & 0x3f_ffff))
    }

    /// What a kubelet reports for a pod it started on `node`.
    fn started_status(&self, pod: &Pod, node: &str, behaviour: PodBehaviour) -> PodStatus {
        let now = Time(self.client.clock().now());
        let node_index = self
            .config
            .nodes
            .iter()
            .position(|name| name == node)
            .unwrap_or(0);
        let host_ip = Ipv4Addr::from(
            u32::from(Ipv4Addr::new(192, 168, 0, 1)) + u32::try_from(node_index).unwrap_or(0),
        );
        let failed = behaviour == PodBehaviour::Fail;
        let ready = behaviour == PodBehaviour::Ready;
        let pod_ip = (!failed).then(|| self.next_address().to_string());
        let condition = |type_: &str, status: bool| PodCondition {
            type_: type_.to_owned(),
            status: if status { "True" } else { "False" }.to_owned(),
            last_transition_time: Some(now.clone()),
            reason: (!status && type_ != "Initialized" && type_ != "PodScheduled").then(|| {
                if failed {
                    "PodFailed"
                } else {
                    "ContainersNotReady"
                }
                .to_owned()
            }),
            ..PodCondition::default()
        };
        let containers = pod
            .spec
            .as_ref()
            .map(|spec| spec.containers.as_slice())
            .unwrap_or_default();
        let container_statuses = containers
            .iter()
            .map(|container| ContainerStatus {
                name: container.name.clone(),
                image: container.image.clone().unwrap_or_default(),
                image_id: String::new(),
                ready,
                started: Some(!failed),
                restart_count: 0,
                state: Some(if failed {
                    ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: 1,
                            reason: Some("Error".into()),
                            started_at: Some(now.clone()),
                            finished_at: Some(now.clone()),
                            ..ContainerStateTerminated::default()
                        }),
                        ..ContainerState::default()
                    }
                } else {
                    ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: Some(now.clone()),
                        }),
                        ..ContainerState::default()
                    }
                }),
                ..ContainerStatus::default()
            })
            .collect();
        PodStatus {
            phase: Some(if failed { "Failed" } else { "Running" }.to_owned()),
            conditions: Some(vec![
                condition("PodScheduled", true),
                condition("Initialized", true),
                condition("ContainersReady", ready),
                condition("Ready", ready),
            ]),
            host_ip: Some(host_ip.to_string()),
            pod_ip: pod_ip.clone(),
            pod_ips: pod_ip.map(|ip| vec![PodIP { ip }]),
            start_time: Some(now.clone()),
            container_statuses: Some(container_statuses),
            qos_class: Some("BestEffort".into()),
            ..pod.status.clone().unwrap_or_default()
        }
    }
}
