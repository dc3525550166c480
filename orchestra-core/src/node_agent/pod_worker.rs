//! Running one pod through the container runtime: kubelet's `SyncPod` and `KillPod`.
//!
//! [`PodWorker::sync`] takes one step towards the pod spec — the sandbox, then the init
//! containers one at a time in order, then every container, restarting the ones that ended as the
//! pod's `restartPolicy` says, after the crash-loop back-off — and returns what it observed, for
//! [`pod_status`](super::pod_status::pod_status). The agent calls it whenever the pod or one of
//! its containers changes, and periodically. [`PodWorker::terminate`] stops the containers with
//! the grace period and removes the sandbox.
//!
//! The worker also runs each container's probes ([`probe`](super::probe)): after stepping a
//! running container, `sync` steps its [`ContainerProbes`] — which collects the runs that
//! finished, starts the ones that are due, and kills the container when its liveness or startup
//! probe fails — and reports the container `started` and `ready` as they say (both true for a
//! running container without probes). A container a probe killed is then restarted by the next
//! sync, through the back-off, under any restart policy but `Never`. What the probes did
//! (`Unhealthy`, `Killing`) waits in [`PodWorker::take_events`].

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::time::Instant;

use super::backoff::{BackOffConfig, CrashLoopBackOff};
use super::environment::{
    ConfigSource, PodContext, container_config, container_env, container_mounts,
};
use super::pod_status::{ObservedContainer, ObservedPod};
use super::probe::{ContainerProbes, ProbeTarget, RunningContainer};
use crate::clock::Clock;
use crate::container_runtime::{
    ContainerFilter, ContainerRuntime, ContainerState, ContainerStatus, PodSandboxConfig,
    PodSandboxFilter, PodSandboxMetadata, PodSandboxState, ROOTFS_DETAIL_ANNOTATION, RuntimeError,
};
use crate::pod_network::{PodNetwork, PodNetworkRequest};
use crate::runtime::events::EventType;

/// Something that happened to one of the pod's containers that kubelet reports as an event on
/// the pod: `Created` and `Started` (with where the container runs from), `Failed`, and what the
/// probes did — `Unhealthy` (a failed run), `ProbeWarning` (a run that passed with a warning),
/// `Killing` (the container is killed after a liveness or startup failure).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerEvent {
    /// The container's name.
    pub container: String,
    /// `Warning` for failures, `Normal` otherwise.
    pub event_type: EventType,
    /// Kubelet's reason: `Created`, `Started`, `Failed`, `Unhealthy`, `Killing`, ...
    pub reason: String,
    /// `Started container web`, `Liveness probe failed: HTTP probe failed with statuscode:
    /// 500`, ...
    pub message: String,
}

/// The sandbox label holding the pod's uid (by which a restarted agent finds its pods).
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";

/// The most probe events kept for [`PodWorker::take_events`] (the oldest go first).
pub const MAX_EVENTS: usize = 256;

/// What the worker remembers of a pod between syncs.
#[derive(Clone, Debug)]
struct PodState {
    sandbox_id: Option<String>,
    sandbox_attempt: u32,
    start_time: Timestamp,
}

/// Runs the pods of one node through a runtime (see the [module](self)).
#[derive(Debug)]
pub struct PodWorker {
    runtime: Arc<dyn ContainerRuntime>,
    clock: Arc<dyn Clock>,
    backoff: CrashLoopBackOff,
    pods: BTreeMap<String, PodState>,
    host_ip: Option<String>,
    network: Option<Arc<dyn PodNetwork>>,
    /// The probes of each container that has any, by `<pod uid>/<container name>`.
    probes: BTreeMap<String, ContainerProbes>,
    events: VecDeque<ContainerEvent>,
}

/// The instances of one container in the sandbox, newest first.
type Instances = Vec<ContainerStatus>;

fn pod_uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

/// Whether a container that ended with `exit_code` is started again under `policy`.
fn restarts(policy: &str, exit_code: Option<i32>) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != Some(0),
        _ => true,
    }
}

impl PodWorker {
    /// A worker over `runtime`, with kubelet's back-off and timestamps from `clock`.
    pub fn new(runtime: Arc<dyn ContainerRuntime>, clock: Arc<dyn Clock>) -> PodWorker {
        PodWorker::with_backoff(runtime, clock, BackOffConfig::default())
    }

    /// The same with another crash-loop back-off.
    pub fn with_backoff(
        runtime: Arc<dyn ContainerRuntime>,
        clock: Arc<dyn Clock>,
        backoff: BackOffConfig,
    ) -> PodWorker {
        PodWorker {
            runtime,
            clock,
            backoff: CrashLoopBackOff::new(backoff),
            pods: BTreeMap::new(),
            host_ip: None,
            network: None,
            probes: BTreeMap::new(),
            events: VecDeque::new(),
        }
    }

    /// Gives pods their addresses from `network` (attached before each sandbox is created,
    /// detached when it is removed).
    pub fn with_network(mut self, network: Arc<dyn PodNetwork>) -> PodWorker {
        self.network = Some(network);
        self
    }

    /// Takes on the sandboxes a previous agent left: each ready sandbox labelled with a pod's
    /// uid becomes that pod's, so the next sync finds its containers running instead of
    /// starting them again.
    ///
    /// # Errors
    ///
    /// The runtime's, when it cannot list its sandboxes.
    pub async fn adopt(&mut self) -> Result<usize, RuntimeError> {
        let filter = PodSandboxFilter {
            state: Some(PodSandboxState::Ready),
            ..PodSandboxFilter::default()
        };
        let mut adopted = 0;
        for sandbox in self.runtime.list_pod_sandboxes(&filter).await? {
            let Some(uid) = sandbox.labels.get(POD_UID_LABEL) else {
                continue;
            };
            self.pods.insert(
                uid.clone(),
                PodState {
                    sandbox_id: Some(sandbox.id.clone()),
                    sandbox_attempt: sandbox.metadata.attempt,
                    start_time: sandbox.created_at,
                },
            );
            adopted += 1;
        }
        Ok(adopted)
    }

    /// Moves the pod with uid `uid` — its sandbox, its containers' back-off and probes — to a
    /// worker of its own over the same runtime, clock, network and node address (a worker
    /// with nothing to move when this one does not run the pod). The agent gives every pod
    /// its own worker, so that pods are synced side by side.
    pub fn split_off(&mut self, uid: &str) -> PodWorker {
        let prefix = format!("{uid}/");
        let mut probes = BTreeMap::new();
        let keys: Vec<String> = self
            .probes
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            if let Some(probe) = self.probes.remove(&key) {
                probes.insert(key, probe);
            }
        }
        let mut pods = BTreeMap::new();
        if let Some(state) = self.pods.remove(uid) {
            pods.insert(uid.to_owned(), state);
        }
        PodWorker {
            runtime: Arc::clone(&self.runtime),
            clock: Arc::clone(&self.clock),
            backoff: self.backoff.split_off(&prefix),
            pods,
            host_ip: self.host_ip.clone(),
            network: self.network.clone(),
            probes,
            events: VecDeque::new(),
        }
    }

    /// The uids of the pods the worker runs.
    pub fn pod_uids(&self) -> Vec<String> {
        self.pods.keys().cloned().collect()
    }

    /// The key the pod network holds a sandbox's addresses by.
    fn network_key(uid: &str, attempt: u32) -> String {
        format!("{uid}.{attempt}")
    }

    /// Sets the node's address (`status.hostIP` of its pods).
    pub fn set_host_ip(&mut self, host_ip: Option<String>) {
        self.host_ip = host_ip;
    }

    /// When the container that ended at `finished` did so, on tokio's clock.
    fn ended_at(&self, finished: Option<Timestamp>) -> Instant {
        let now = Instant::now();
        let Some(finished) = finished else {
            return now;
        };
        let ago = self.clock.now().duration_since(finished);
        let ago = Duration::try_from(ago).unwrap_or(Duration::ZERO);
        now.checked_sub(ago).unwrap_or(now)
    }

    /// Makes sure the pod has a ready sandbox; its id.
    async fn ensure_sandbox(&mut self, pod: &Pod) -> Result<String, RuntimeError> {
        let uid = pod_uid(pod);
        let now = self.clock.now();
        let state = self.pods.entry(uid.clone()).or_insert_with(|| PodState {
            sandbox_id: None,
            sandbox_attempt: 0,
            start_time: now,
        });
        if let Some(id) = state.sandbox_id.clone() {
            match self.runtime.pod_sandbox_status(&id).await {
                Ok(status) if status.state == PodSandboxState::Ready => return Ok(id),
                Ok(_) | Err(RuntimeError::NotFound { .. }) => {
                    // Gone or stopped: a new sandbox, after clearing the old one away.
                    self.runtime.remove_pod_sandbox(&id).await?;
                    if let Some(state) = self.pods.get_mut(&uid) {
                        state.sandbox_id = None;
                        state.sandbox_attempt = state.sandbox_attempt.saturating_add(1);
                    }
                }
                Err(error) => return Err(error),
            }
        }
        let attempt = self.pods.get(&uid).map_or(0, |s| s.sandbox_attempt);
        let mut config = sandbox_config(pod, attempt);
        if let Some(network) = &self.network {
            let request = PodNetworkRequest {
                sandbox_id: PodWorker::network_key(&uid, attempt),
                pod_namespace: config.metadata.namespace.clone(),
                pod_name: config.metadata.name.clone(),
                pod_uid: uid.clone(),
            };
            let status = network
                .attach(&request)
                .await
                .map_err(|error| RuntimeError::Unavailable(format!("pod network: {error}")))?;
            config.ips = status.ips;
        }
        let id = self.runtime.run_pod_sandbox(&config).await?;
        if let Some(state) = self.pods.get_mut(&uid) {
            state.sandbox_id = Some(id.clone());
        }
        Ok(id)
    }

    /// One step towards the pod's spec; what the pod looks like after it.
    ///
    /// # Errors
    ///
    /// A runtime error that stops the step as a whole (the sandbox cannot be made or listed);
    /// errors of one container are reported in its waiting state instead.
    pub async fn sync(
        &mut self,
        pod: &Pod,
        source: &dyn ConfigSource,
    ) -> Result<ObservedPod, RuntimeError> {
        let uid = pod_uid(pod);
        let sandbox_id = self.ensure_sandbox(pod).await?;
        let sandbox = self.runtime.pod_sandbox_status(&sandbox_id).await?;
        let context = PodContext {
            pod_ips: sandbox.ips.iter().map(ToString::to_string).collect(),
            host_ip: self.host_ip.clone(),
        };
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec
            .restart_policy
            .as_deref()
            .unwrap_or("Always")
            .to_owned();
        let mut instances = self.instances(&sandbox_id).await?;
        let mut observed = ObservedPod {
            sandbox_ready: true,
            pod_ips: sandbox.ips.clone(),
            host_ip: self.host_ip.as_deref().and_then(|ip| ip.parse().ok()),
            start_time: self.pods.get(&uid).map(|s| s.start_time),
            ..ObservedPod::default()
        };

        // Init containers: one at a time, each to success, before any container starts.
        let init = spec.init_containers.clone().unwrap_or_default();
        let mut initialized = true;
        for container in &init {
            let mut current = instances.remove(&container.name).unwrap_or_default();
            let mut waiting = None;
            if initialized {
                let latest = current.first().cloned();
                let done = latest
                    .as_ref()
                    .is_some_and(|c| c.state == ContainerState::Exited && c.exit_code == Some(0));
                if !done {
                    initialized = false;
                    // An init container is retried unless the pod never restarts.
                    let init_policy = if policy == "Never" {
                        "Never"
                    } else {
                        "OnFailure"
                    };
                    waiting = self
                        .step(
                            pod,
                            &sandbox_id,
                            container,
                            &context,
                            source,
                            init_policy,
                            &mut current,
                        )
                        .await;
                }
            }
            observed
                .init_containers
                .push(self.observe(container, &current, waiting, (true, true)));
        }
        for container in &spec.containers {
            let mut current = instances.remove(&container.name).unwrap_or_default();
            let waiting = if initialized {
                self.step(
                    pod,
                    &sandbox_id,
                    container,
                    &context,
                    source,
                    &policy,
                    &mut current,
                )
                .await
            } else {
                Some(("PodInitializing".to_owned(), String::new()))
            };
            let probed = if waiting.is_none() {
                self.probe(
                    pod,
                    container,
                    &current,
                    sandbox.ips.first().copied(),
                    &policy,
                )
            } else {
                (false, false)
            };
            observed
                .containers
                .push(self.observe(container, &current, waiting, probed));
        }
        Ok(observed)
    }

    /// Steps the probes of `container` when its latest instance runs; whether it is ready and
    /// started (both true for a container without probes).
    fn probe(
        &mut self,
        pod: &Pod,
        container: &Container,
        current: &Instances,
        pod_ip: Option<IpAddr>,
        policy: &str,
    ) -> (bool, bool) {
        if !ContainerProbes::any(container) {
            return (true, true);
        }
        let Some(latest) = current
            .first()
            .filter(|c| c.state == ContainerState::Running)
        else {
            return (false, false);
        };
        let running_for = latest
            .started_at
            .and_then(|started| Duration::try_from(self.clock.now().duration_since(started)).ok())
            .unwrap_or(Duration::ZERO);
        let grace = pod
            .spec
            .as_ref()
            .and_then(|spec| spec.termination_grace_period_seconds)
            .unwrap_or(30);
        let running = RunningContainer {
            target: ProbeTarget {
                container_id: latest.id.clone(),
                pod_ip,
                ports: container.ports.clone().unwrap_or_default(),
            },
            running_for,
            termination_grace: Duration::from_secs(u64::try_from(grace).unwrap_or(0)),
            restarts: policy != "Never",
        };
        let key = format!("{}/{}", pod_uid(pod), container.name);
        let probes = self
            .probes
            .entry(key)
            .or_insert_with(|| ContainerProbes::new(container));
        let events = probes.step(&self.runtime, &running);
        let verdict = (probes.ready(), probes.started());
        for event in events {
            self.record(event);
        }
        verdict
    }

    /// Keeps `event` for [`PodWorker::take_events`] (dropping the oldest beyond [`MAX_EVENTS`]).
    fn record(&mut self, event: ContainerEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// Keeps a `Created`, `Started` or `Failed` event of `container`.
    fn record_lifecycle(&mut self, container: &str, reason: &str, message: String) {
        let event_type = if reason == "Failed" {
            EventType::Warning
        } else {
            EventType::Normal
        };
        self.record(ContainerEvent {
            container: container.to_owned(),
            event_type,
            reason: reason.to_owned(),
            message,
        });
    }

    /// What happened to the pod's containers since the last call (oldest first; at most
    /// [`MAX_EVENTS`]), for the agent to report: containers created, started or failing to,
    /// failed probe runs (`Unhealthy`) and kills (`Killing`).
    pub fn take_events(&mut self) -> Vec<ContainerEvent> {
        self.events.drain(..).collect()
    }

    /// The sandbox's containers by name, newest instance first.
    async fn instances(
        &self,
        sandbox_id: &str,
    ) -> Result<BTreeMap<String, Instances>, RuntimeError> {
        let filter = ContainerFilter {
            pod_sandbox_id: Some(sandbox_id.to_owned()),
            ..ContainerFilter::default()
        };
        let mut by_name: BTreeMap<String, Instances> = BTreeMap::new();
        for status in self.runtime.list_containers(&filter).await? {
            by_name
                .entry(status.metadata.name.clone())
                .or_default()
                .push(status);
        }
        for instances in by_name.values_mut() {
            instances.sort_by_key(|c| std::cmp::Reverse(c.metadata.attempt));
        }
        Ok(by_name)
    }

    /// Moves one container along: starts it the first time, restarts it after an end when
    /// `policy` says so and its back-off allows. Updates `current` (newest first) and returns
    /// why it waits, if it does.
    #[allow(clippy::too_many_arguments)]
    async fn step(
        &mut self,
        pod: &Pod,
        sandbox_id: &str,
        container: &Container,
        context: &PodContext,
        source: &dyn ConfigSource,
        policy: &str,
        current: &mut Instances,
    ) -> Option<(String, String)> {
        let key = format!("{}/{}", pod_uid(pod), container.name);
        let attempt = match current.first() {
            None => 0,
            Some(latest) => match latest.state {
                ContainerState::Running => return None,
                ContainerState::Created | ContainerState::Unknown => {
                    // Created but not started (a start that failed): start it again.
                    let id = latest.id.clone();
                    return match self.runtime.start_container(&id).await {
                        Ok(()) => {
                            self.refresh(current).await;
                            None
                        }
                        Err(error) => Some(("RunContainerError".to_owned(), error.to_string())),
                    };
                }
                ContainerState::Exited => {
                    // A container a probe killed restarts whatever its exit code, as kubelet's.
                    let killed = policy != "Never"
                        && self.probes.get(&key).is_some_and(|p| p.killed(&latest.id));
                    if !killed && !restarts(policy, latest.exit_code) {
                        return None;
                    }
                    let ended = self.ended_at(latest.finished_at);
                    if self
                        .backoff
                        .remaining(&key, ended, Instant::now())
                        .is_some()
                    {
                        let backoff = self
                            .backoff
                            .current(&key, Instant::now())
                            .unwrap_or_default();
                        return Some((
                            "CrashLoopBackOff".to_owned(),
                            format!(
                                "back-off {}s restarting failed container={} pod={}_{}({})",
                                backoff.as_secs(),
                                container.name,
                                pod.metadata.name.as_deref().unwrap_or(""),
                                pod.metadata.namespace.as_deref().unwrap_or(""),
                                pod_uid(pod)
                            ),
                        ));
                    }
                    latest.metadata.attempt.saturating_add(1)
                }
            },
        };
        let env = match container_env(pod, container, context, source) {
            Ok(env) => env,
            Err(error) => {
                return Some(("CreateContainerConfigError".to_owned(), error.to_string()));
            }
        };
        let mounts = match container_mounts(container, source) {
            Ok(mounts) => mounts,
            Err(error) => {
                return Some(("CreateContainerConfigError".to_owned(), error.to_string()));
            }
        };
        // Kubelet keeps one dead instance per container (for `lastState` and logs).
        for old in current.iter().skip(1) {
            let _ = self.runtime.remove_container(&old.id).await;
        }
        current.truncate(1);
        let mut config = container_config(pod, container, attempt, env);
        config.mounts = mounts;
        let sandbox_config = sandbox_config(pod, 0);
        let id = match self
            .runtime
            .create_container(sandbox_id, &config, &sandbox_config)
            .await
        {
            Ok(id) => id,
            Err(error) => {
                self.record_lifecycle(&container.name, "Failed", format!("Error: {error}"));
                return Some(("CreateContainerError".to_owned(), error.to_string()));
            }
        };
        self.record_lifecycle(
            &container.name,
            "Created",
            format!("Created container {}", container.name),
        );
        if attempt > 0 {
            self.backoff.restarted(&key, Instant::now());
        }
        let started = self.runtime.start_container(&id).await;
        let status = self.runtime.container_status(&id).await.ok();
        match started {
            Ok(()) => {
                let place = status
                    .as_ref()
                    .and_then(|status| status.annotations.get(ROOTFS_DETAIL_ANNOTATION))
                    .map(|place| format!(" ({place})"))
                    .unwrap_or_default();
                self.record_lifecycle(
                    &container.name,
                    "Started",
                    format!("Started container {}{place}", container.name),
                );
            }
            Err(ref error) => {
                self.record_lifecycle(&container.name, "Failed", format!("Error: {error}"));
            }
        }
        if let Some(status) = status {
            current.insert(0, status);
        }
        match started {
            Ok(()) => None,
            Err(error) => Some(("RunContainerError".to_owned(), error.to_string())),
        }
    }

    /// Reads the newest instance's status again.
    async fn refresh(&self, current: &mut Instances) {
        if let Some(latest) = current.first_mut()
            && let Ok(status) = self.runtime.container_status(&latest.id).await
        {
            *latest = status;
        }
    }

    fn observe(
        &self,
        container: &Container,
        current: &Instances,
        waiting: Option<(String, String)>,
        (ready, started): (bool, bool),
    ) -> ObservedContainer {
        ObservedContainer {
            name: container.name.clone(),
            current: current.first().cloned(),
            previous: current.get(1).cloned(),
            ready,
            started,
            waiting,
        }
    }

    /// Stops the pod's containers, each given `grace` (SIGTERM, then SIGKILL), in parallel, then
    /// stops and removes its sandbox and releases its addresses.
    ///
    /// # Errors
    ///
    /// The first runtime or network error; the pod is remembered so that terminating again
    /// retries.
    pub async fn terminate(&mut self, pod: &Pod, grace: Duration) -> Result<(), RuntimeError> {
        let uid = pod_uid(pod);
        let Some(termination) = self.termination(&uid) else {
            return Ok(());
        };
        termination.run(grace).await?;
        self.forget(pod);
        Ok(())
    }

    /// What terminating the pod with uid `uid` takes, to run apart from the worker (the agent
    /// runs each termination in its own task, so that one pod's grace period holds up no
    /// other pod); `None` if the worker does not run it.
    pub fn termination(&self, uid: &str) -> Option<Termination> {
        let state = self.pods.get(uid)?;
        Some(Termination {
            runtime: self.runtime.clone(),
            network: self.network.clone(),
            sandbox_id: state.sandbox_id.clone(),
            network_key: PodWorker::network_key(uid, state.sandbox_attempt),
        })
    }

    /// Forgets the pod (after its termination): its state, its containers' back-off and probes
    /// (the probe runs in flight are aborted).
    pub fn forget(&mut self, pod: &Pod) {
        let uid = pod_uid(pod);
        for container in pod.spec.iter().flat_map(|spec| {
            spec.containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
        }) {
            let key = format!("{uid}/{}", container.name);
            self.backoff.forget(&key);
            self.probes.remove(&key);
        }
        self.forget_uid(&uid);
    }

    /// Forgets the pod with uid `uid`, whose spec is no longer known (its probes too).
    pub fn forget_uid(&mut self, uid: &str) {
        self.pods.remove(uid);
        let prefix = format!("{uid}/");
        self.probes.retain(|key, _| !key.starts_with(&prefix));
    }
}

/// What stopping the sandboxes of pods that are not in `wanted` takes: every sandbox of
/// `runtime` labelled with a pod uid `wanted` refuses, whatever its state (kubelet's
/// housekeeping: what no pod asks for does not run). The agent runs it now and then, so that a
/// sandbox started for a pod deleted meanwhile never outlives it.
///
/// # Errors
///
/// The runtime's, when it cannot list its sandboxes.
pub async fn unwanted_sandboxes(
    runtime: &Arc<dyn ContainerRuntime>,
    network: Option<&Arc<dyn PodNetwork>>,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<(String, Termination)>, RuntimeError> {
    let mut unwanted = Vec::new();
    for sandbox in runtime
        .list_pod_sandboxes(&PodSandboxFilter::default())
        .await?
    {
        let Some(uid) = sandbox.labels.get(POD_UID_LABEL) else {
            continue;
        };
        if wanted(uid) {
            continue;
        }
        unwanted.push((
            uid.clone(),
            Termination {
                runtime: Arc::clone(runtime),
                network: network.cloned(),
                sandbox_id: Some(sandbox.id.clone()),
                network_key: PodWorker::network_key(uid, sandbox.metadata.attempt),
            },
        ));
    }
    Ok(unwanted)
}

/// Stopping one pod: its containers with the grace period, its sandbox, its addresses
/// ([`PodWorker::termination`]).
#[derive(Debug)]
pub struct Termination {
    runtime: Arc<dyn ContainerRuntime>,
    network: Option<Arc<dyn PodNetwork>>,
    sandbox_id: Option<String>,
    network_key: String,
}

impl Termination {
    /// Stops the containers (each given `grace`: SIGTERM, then SIGKILL) in parallel, then stops
    /// and removes the sandbox and releases the pod's addresses. Running it again is harmless.
    ///
    /// # Errors
    ///
    /// The first runtime or network error.
    pub async fn run(&self, grace: Duration) -> Result<(), RuntimeError> {
        if let Some(sandbox_id) = &self.sandbox_id {
            let filter = ContainerFilter {
                pod_sandbox_id: Some(sandbox_id.clone()),
                state: Some(ContainerState::Running),
                ..ContainerFilter::default()
            };
            let running = self.runtime.list_containers(&filter).await?;
            let stops = running
                .iter()
                .map(|container| self.runtime.stop_container(&container.id, grace));
            for result in futures_util::future::join_all(stops).await {
                result?;
            }
            self.runtime.stop_pod_sandbox(sandbox_id).await?;
            self.runtime.remove_pod_sandbox(sandbox_id).await?;
        }
        if let Some(network) = &self.network {
            network
                .detach(&self.network_key)
                .await
                .map_err(|error| RuntimeError::Unavailable(format!("pod network: {error}")))?;
        }
        Ok(())
    }
}

/// The sandbox config of `pod` (attempt `attempt`).
fn sandbox_config(pod: &Pod, attempt: u32) -> PodSandboxConfig {
    let metadata = &pod.metadata;
    let name = metadata.name.clone().unwrap_or_default();
    PodSandboxConfig {
        metadata: PodSandboxMetadata {
            name: name.clone(),
            namespace: metadata.namespace.clone().unwrap_or_default(),
            uid: metadata.uid.clone().unwrap_or_default(),
            attempt,
        },
        hostname: pod
            .spec
            .as_ref()
            .and_then(|spec| spec.hostname.clone())
            .unwrap_or(name),
        labels: BTreeMap::from([(
            POD_UID_LABEL.to_owned(),
            metadata.uid.clone().unwrap_or_default(),
        )]),
        ..PodSandboxConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TokioClock;
    use crate::container_runtime::fake::{FakeRuntime, Operation};
    use crate::node_agent::environment::ConfigMaps;
    use crate::node_agent::pod_status::{phase, pod_status};
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "default", "uid": "u-1"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn worker() -> (PodWorker, FakeRuntime) {
        let clock = Arc::new(TokioClock::starting_at(
            "2026-01-01T00:00:00Z".parse().unwrap(),
        ));
        let runtime = FakeRuntime::with_clock(clock.clone());
        (PodWorker::new(Arc::new(runtime.clone()), clock), runtime)
    }

    fn container_id(observed: &ObservedPod, index: usize) -> String {
        observed.containers[index]
            .current
            .as_ref()
            .map(|c| c.id.clone())
            .unwrap_or_default()
    }

    #[tokio::test(start_paused = true)]
    async fn containers_created_started_and_failing_are_told_as_events() {
        let (mut worker, runtime) = worker();
        let p = pod(json!({"containers": [{"name": "web", "image": "hello:1"}]}));
        let sources = ConfigMaps::default();
        worker.sync(&p, &sources).await.unwrap();
        let told: Vec<(String, String)> = worker
            .take_events()
            .into_iter()
            .map(|event| (event.reason, event.message))
            .collect();
        assert_eq!(
            told,
            [
                ("Created".to_owned(), "Created container web".to_owned()),
                ("Started".to_owned(), "Started container web".to_owned()),
            ]
        );
        assert!(worker.take_events().is_empty(), "taken once");

        // A start that fails is a Warning naming the error.
        let observed = worker.sync(&p, &sources).await.unwrap();
        runtime.exit_container(&container_id(&observed, 0), 1);
        runtime.fail_next(
            Operation::StartContainer,
            RuntimeError::Unavailable("no".into()),
        );
        worker.sync(&p, &sources).await.unwrap();
        let failed = worker.take_events();
        let last = failed.last().unwrap();
        assert_eq!(last.reason, "Failed");
        assert_eq!(last.event_type, EventType::Warning);
        assert!(last.message.starts_with("Error: "), "{}", last.message);
    }

    #[tokio::test(start_paused = true)]
    async fn containers_start_and_crash_looping_ones_back_off() {
        let (mut worker, runtime) = worker();
        let p = pod(json!({"containers": [
            {"name": "web", "image": "hello:1", "command": ["/hello"]},
            {"name": "side", "image": "hello:1"},
        ]}));
        let sources = ConfigMaps::default();
        let observed = worker.sync(&p, &sources).await.unwrap();
        assert_eq!(phase("Always", &observed), "Running");
        assert!(observed.containers.iter().all(|c| c.waiting.is_none()));
        assert_eq!(runtime.calls_of(Operation::RunPodSandbox).len(), 1);

        // The first crash restarts at once; the next waits 10 s, the one after 20 s.
        let waiting_reason = |observed: &ObservedPod| {
            observed.containers[0]
                .waiting
                .as_ref()
                .map(|(reason, _)| reason.clone())
        };
        runtime.exit_container(&container_id(&observed, 0), 1);
        let observed = worker.sync(&p, &sources).await.unwrap();
        assert_eq!(waiting_reason(&observed), None);
        assert_eq!(
            observed.containers[0]
                .current
                .as_ref()
                .map(|c| c.metadata.attempt),
            Some(1)
        );
        let mut observed = observed;
        for (backoff, attempt) in [(10, 2), (20, 3)] {
            runtime.exit_container(&container_id(&observed, 0), 1);
            let waiting = worker.sync(&p, &sources).await.unwrap();
            assert_eq!(
                waiting_reason(&waiting).as_deref(),
                Some("CrashLoopBackOff")
            );
            assert_eq!(phase("Always", &waiting), "Running");
            assert_eq!(
                waiting.containers[0].waiting.clone().unwrap_or_default().1,
                format!(
                    "back-off {backoff}s restarting failed container=web pod=web-1_default(u-1)"
                )
            );
            tokio::time::sleep(Duration::from_secs(backoff - 1)).await;
            let still = worker.sync(&p, &sources).await.unwrap();
            assert_eq!(waiting_reason(&still).as_deref(), Some("CrashLoopBackOff"));
            tokio::time::sleep(Duration::from_secs(1)).await;
            observed = worker.sync(&p, &sources).await.unwrap();
            assert_eq!(waiting_reason(&observed), None);
            let web = &observed.containers[0];
            assert_eq!(
                web.current.as_ref().map(|c| c.metadata.attempt),
                Some(attempt)
            );
            assert_eq!(web.previous.as_ref().map(|c| c.exit_code), Some(Some(1)));
            // The sidecar is left alone all along.
            assert_eq!(
                observed.containers[1]
                    .current
                    .as_ref()
                    .map(|c| c.metadata.attempt),
                Some(0)
            );
        }
        // One dead instance is kept, older ones are removed.
        assert_eq!(
            runtime
                .list_containers(&ContainerFilter::default())
                .await
                .unwrap()
                .iter()
                .filter(|c| c.metadata.name == "web")
                .count(),
            2
        );
    }

    #[tokio::test(start_paused = true)]
    async fn init_containers_run_in_order_before_the_containers() {
        let (mut worker, runtime) = worker();
        let p = pod(json!({
            "initContainers": [
                {"name": "first", "image": "i", "command": ["/first"]},
                {"name": "second", "image": "i", "command": ["/second"]},
            ],
            "containers": [{"name": "web", "image": "hello:1", "command": ["/hello"]}],
        }));
        let sources = ConfigMaps::default();
        let observed = worker.sync(&p, &sources).await.unwrap();
        assert_eq!(phase("Always", &observed), "Pending");
        assert_eq!(observed.init_containers[1].current, None);
        assert_eq!(
            observed.containers[0]
                .waiting
                .as_ref()
                .map(|w| w.0.as_str()),
            Some("PodInitializing")
        );
        let first = observed.init_containers[0].current.clone().unwrap();
        // A failed init container is retried; the second waits for the first's success.
        runtime.exit_container(&first.id, 1);
        let observed = worker.sync(&p, &sources).await.unwrap();
        assert_eq!(
            observed.init_containers[0]
                .current
                .as_ref()
                .map(|c| c.metadata.attempt),
            Some(1)
        );
        runtime.exit_container(&observed.init_containers[0].current.clone().unwrap().id, 0);
        let observed = worker.sync(&p, &sources).await.unwrap();
        let second = observed.init_containers[1].current.clone().unwrap();
        runtime.exit_container(&second.id, 0);
        let observed = worker.sync(&p, &sources).await.unwrap();
        assert_eq!(phase("Always", &observed), "Running");
        assert_eq!(
            observed.containers[0].current.as_ref().map(|c| c.state),
            Some(ContainerState::Running)
        );
        let created: Vec<String> = runtime
            .calls_of(Operation::CreateContainer)
            .into_iter()
            .map(|c| c.detail)
            .collect();
        assert_eq!(created, ["first", "first", "second", "web"]);
    }

    #[tokio::test(start_paused = true)]
    async fn restart_policies_and_config_errors() {
        let (mut worker, runtime) = worker();
        let never = pod(json!({"restartPolicy": "Never", "containers": [
            {"name": "job", "image": "i", "command": ["/job"]}]}));
        let sources = ConfigMaps::default();
        let observed = worker.sync(&never, &sources).await.unwrap();
        runtime.exit_container(&container_id(&observed, 0), 3);
        let observed = worker.sync(&never, &sources).await.unwrap();
        assert_eq!(phase("Never", &observed), "Failed");
        assert_eq!(runtime.calls_of(Operation::CreateContainer).len(), 1);

        let mut missing: Pod = pod(json!({"containers": [{"name": "app", "image": "i",
            "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k"}}}]}]}));
        missing.metadata.uid = Some("u-2".to_owned());
        let observed = worker.sync(&missing, &sources).await.unwrap();
        assert_eq!(
            observed.containers[0].waiting,
            Some((
                "CreateContainerConfigError".to_owned(),
                "configmap \"absent\" not found".to_owned()
            ))
        );
        assert_eq!(phase("Always", &observed), "Pending");
    }

    #[tokio::test(start_paused = true)]
    async fn termination_stops_with_the_grace_period_and_removes_the_sandbox() {
        let (mut worker, runtime) = worker();
        runtime.ignore_term("web");
        let p = pod(json!({"containers": [{"name": "web", "image": "i", "command": ["/web"]}]}));
        worker.sync(&p, &ConfigMaps::default()).await.unwrap();
        let started = Instant::now();
        worker.terminate(&p, Duration::from_secs(30)).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        assert!(
            runtime
                .list_pod_sandboxes(&Default::default())
                .await
                .unwrap()
                .is_empty()
        );
        // Terminating again (or an unknown pod) is fine.
        worker.terminate(&p, Duration::from_secs(30)).await.unwrap();
        // A sandbox lost behind the worker's back is made again.
        worker.sync(&p, &ConfigMaps::default()).await.unwrap();
        let sandbox = runtime
            .list_pod_sandboxes(&Default::default())
            .await
            .unwrap()[0]
            .id
            .clone();
        runtime.remove_pod_sandbox(&sandbox).await.unwrap();
        let observed = worker.sync(&p, &ConfigMaps::default()).await.unwrap();
        assert!(observed.sandbox_ready);
        assert_eq!(runtime.calls_of(Operation::RunPodSandbox).len(), 3);
    }

    /// Answers each exec by its command's first word: the exit code set for it (0 if none).
    fn exit_codes(runtime: &FakeRuntime) -> Arc<std::sync::Mutex<BTreeMap<String, i32>>> {
        let codes: Arc<std::sync::Mutex<BTreeMap<String, i32>>> = Arc::default();
        let answers = codes.clone();
        runtime.set_exec(move |_, command| {
            let exit_code = answers
                .lock()
                .unwrap()
                .get(&command[0])
                .copied()
                .unwrap_or(0);
            Ok(crate::container_runtime::ExecResult {
                exit_code,
                ..Default::default()
            })
        });
        codes
    }

    fn exec_probe(command: &str, failure_threshold: i32) -> serde_json::Value {
        json!({"exec": {"command": [command]}, "periodSeconds": 1,
            "failureThreshold": failure_threshold})
    }

    fn attempt(observed: &ObservedPod) -> Option<u32> {
        observed.containers[0]
            .current
            .as_ref()
            .map(|c| c.metadata.attempt)
    }

    fn condition(pod: &Pod, observed: &ObservedPod, kind: &str) -> String {
        let status = pod_status(
            pod,
            observed,
            "fake",
            None,
            "2026-01-01T00:00:00Z".parse().unwrap(),
        );
        status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == kind)
            .map(|c| c.status)
            .unwrap_or_default()
    }

    /// Syncs after a second.
    async fn sync_after_a_second(worker: &mut PodWorker, pod: &Pod) -> ObservedPod {
        tokio::time::sleep(Duration::from_secs(1)).await;
        worker.sync(pod, &ConfigMaps::default()).await.unwrap()
    }

    /// Syncs once a second until `done` holds (at most `limit` times); the last observation.
    async fn sync_until(
        worker: &mut PodWorker,
        pod: &Pod,
        limit: usize,
        done: impl Fn(&ObservedPod) -> bool,
    ) -> ObservedPod {
        for _ in 0..limit {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let observed = worker.sync(pod, &ConfigMaps::default()).await.unwrap();
            if done(&observed) {
                return observed;
            }
        }
        panic!("not done after {limit} syncs");
    }

    #[tokio::test(start_paused = true)]
    async fn a_liveness_failure_kills_the_container_and_it_restarts_through_the_back_off() {
        let (mut worker, runtime) = worker();
        let codes = exit_codes(&runtime);
        let p = pod(json!({"terminationGracePeriodSeconds": 5, "containers": [{
            "name": "web", "image": "hello:1",
            "livenessProbe": exec_probe("live", 2),
            "readinessProbe": exec_probe("ready", 1),
        }]}));
        let observed = worker.sync(&p, &ConfigMaps::default()).await.unwrap();
        let web = &observed.containers[0];
        assert!(
            web.started && !web.ready,
            "not ready before the first readiness run"
        );
        assert_eq!(condition(&p, &observed, "Ready"), "False");
        let observed = sync_until(&mut worker, &p, 3, |o| o.containers[0].ready).await;
        assert_eq!(condition(&p, &observed, "Ready"), "True");

        codes.lock().unwrap().insert("live".to_owned(), 1);
        let observed = sync_until(&mut worker, &p, 6, |o| attempt(o) == Some(1)).await;
        let events: Vec<ContainerEvent> = worker.take_events();
        assert_eq!(
            events
                .iter()
                .filter(|e| e.reason == "Unhealthy")
                .map(|e| e.message.as_str())
                .collect::<Vec<_>>(),
            ["Liveness probe failed: command \"live\" exited with 1"; 2]
        );
        let killing: Vec<&str> = events
            .iter()
            .filter(|e| e.reason == "Killing")
            .map(|e| e.message.as_str())
            .collect();
        assert_eq!(
            killing,
            ["Container web failed liveness probe, will be restarted"]
        );
        // Stopped with the pod's grace period, restarted at once (the first restart), and not
        // ready again until its readiness probe passes on the new instance.
        let stops = runtime.calls_of(Operation::StopContainer);
        assert_eq!(stops.len(), 1);
        assert_eq!(stops[0].detail, "5s");
        let web = &observed.containers[0];
        assert_eq!(
            web.previous.as_ref().map(|c| (c.state, c.exit_code)),
            Some((ContainerState::Exited, Some(143)))
        );
        assert!(web.waiting.is_none() && !web.ready);

        // Still failing: killed again, and this time held back by the crash-loop back-off.
        let observed = sync_until(&mut worker, &p, 6, |o| o.containers[0].waiting.is_some()).await;
        assert_eq!(
            observed.containers[0]
                .waiting
                .as_ref()
                .map(|w| w.0.as_str()),
            Some("CrashLoopBackOff")
        );
        assert_eq!(condition(&p, &observed, "Ready"), "False");
        codes.lock().unwrap().insert("live".to_owned(), 0);
        let observed = sync_until(&mut worker, &p, 12, |o| attempt(o) == Some(2)).await;
        assert!(observed.containers[0].waiting.is_none());
        let observed = sync_until(&mut worker, &p, 3, |o| o.containers[0].ready).await;
        assert_eq!(condition(&p, &observed, "Ready"), "True");
        assert_eq!(runtime.calls_of(Operation::StopContainer).len(), 2);

        // Forgetting the pod drops its probes.
        worker.forget(&p);
        assert!(worker.probes.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_readiness_probe_makes_the_pod_not_ready_without_a_restart() {
        let (mut worker, runtime) = worker();
        let codes = exit_codes(&runtime);
        let p = pod(json!({"containers": [
            {"name": "web", "image": "hello:1", "readinessProbe": exec_probe("ready", 2)},
            {"name": "side", "image": "hello:1"},
        ]}));
        worker.sync(&p, &ConfigMaps::default()).await.unwrap();
        let observed = sync_until(&mut worker, &p, 3, |o| o.containers[0].ready).await;
        assert!(observed.containers[1].ready, "no probe: ready when running");
        assert_eq!(condition(&p, &observed, "ContainersReady"), "True");

        codes.lock().unwrap().insert("ready".to_owned(), 1);
        let observed = sync_until(&mut worker, &p, 5, |o| !o.containers[0].ready).await;
        assert_eq!(condition(&p, &observed, "Ready"), "False");
        assert_eq!(condition(&p, &observed, "ContainersReady"), "False");
        assert_eq!(phase("Always", &observed), "Running");
        assert_eq!(attempt(&observed), Some(0));
        codes.lock().unwrap().insert("ready".to_owned(), 0);
        let observed = sync_until(&mut worker, &p, 5, |o| o.containers[0].ready).await;
        assert_eq!(condition(&p, &observed, "Ready"), "True");
        assert_eq!(attempt(&observed), Some(0));
        assert!(runtime.calls_of(Operation::StopContainer).is_empty());
        worker.forget_uid("u-1");
        assert!(worker.probes.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_startup_probe_holds_started_and_its_failure_restarts_even_a_clean_exit() {
        let (mut worker, runtime) = worker();
        let codes = exit_codes(&runtime);
        codes.lock().unwrap().insert("start".to_owned(), 1);
        let p = pod(json!({"restartPolicy": "OnFailure", "containers": [{
            "name": "web", "image": "hello:1",
            "startupProbe": exec_probe("start", 3),
            "livenessProbe": exec_probe("live", 1),
        }]}));
        let observed = worker.sync(&p, &ConfigMaps::default()).await.unwrap();
        assert!(!observed.containers[0].started && !observed.containers[0].ready);
        for _ in 0..2 {
            let observed = sync_after_a_second(&mut worker, &p).await;
            assert!(!observed.containers[0].started);
        }
        // The third failure: the kill is on its way, but the process happens to exit 0 first.
        let observed = sync_after_a_second(&mut worker, &p).await;
        runtime.exit_container(&container_id(&observed, 0), 0);
        assert_eq!(
            worker.take_events().last().map(|e| e.message.clone()),
            Some("Container web failed startup probe, will be restarted".to_owned())
        );
        // Under OnFailure a clean exit is not restarted, but one a probe brought about is.
        codes.lock().unwrap().insert("start".to_owned(), 0);
        let observed = sync_after_a_second(&mut worker, &p).await;
        assert_eq!(attempt(&observed), Some(1));
        assert_eq!(
            observed.containers[0]
                .previous
                .as_ref()
                .map(|c| c.exit_code),
            Some(Some(0))
        );
        assert!(
            !observed.containers[0].started,
            "the new instance starts over"
        );
        let observed = sync_after_a_second(&mut worker, &p).await;
        assert!(observed.containers[0].started && observed.containers[0].ready);
        let execs = |command: &str| {
            runtime
                .calls_of(Operation::ExecSync)
                .iter()
                .filter(|c| c.detail == command)
                .count()
        };
        // Its liveness probe, held until then, has started.
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!((execs("start"), execs("live")), (4, 1));
    }
}
