//! The running scheduler: informers, the scheduling loop, binding, events and conditions.
//!
//! [`Scheduler::run`] is kube-scheduler's `Run`:
//!
//! 1. watchers on pods and nodes feed the [`SchedulerCache`] and the [`PriorityQueue`] through
//!    [`EventHandlers`]; scheduling starts once both have listed everything;
//! 2. the scheduling loop pops one pod at a time, brings the [`Snapshot`] up to date (copying
//!    only the nodes that changed) and runs [`schedule_pod`];
//! 3. for a chosen node it *assumes* the pod there in the cache (so the next cycle already
//!    counts it), runs the Reserve plugins, and hands the pod to a binding task; the loop goes on
//!    with the next pod while the binding runs (kube-scheduler's binding cycle);
//! 4. the binding task asks the profile's Bind plugins, then binds through the `pods/binding`
//!    subresource, which refuses a pod already bound (409 Conflict): two schedulers racing never
//!    place a pod twice. On success it records the `Scheduled` event; on failure the pod is
//!    forgotten in the cache, unreserved and retried after a back-off;
//! 5. a pod that fits no node runs the PostFilter plugins (preemption: the victims are deleted
//!    gracefully and the pod is nominated to the node), gets a `FailedScheduling` event and the
//!    `PodScheduled=False` condition with the reasons, and is parked until a cluster event may
//!    help it.
//!
//! With [`SchedulerConfig::leader_election`], only the instance holding the lease schedules, so
//! that two instances never count the same node's room twice.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::cache::{SchedulerCache, Snapshot};
use super::event_handlers::{EventHandlers, scheduler_name};
use super::framework::{Code, CycleState, PostFilterContext, PostFilterResult, Profile};
use super::metrics::SchedulerMetrics;
use super::plugins::default_profile;
use super::queue::{ClusterEvent, PriorityQueue, QueueConfig, QueuedPodInfo};
use super::schedule_one::{CycleConfig, CycleCursor, ScheduleError, schedule_pod};
use crate::api::{Api, Client, DeleteParams, PatchParams};
use crate::patch::PatchType;
use crate::runtime::events::{EventRecorder, EventType};
use crate::runtime::leader_election::{LeaderElectionConfig, LeaderElectionError, LeaderElector};
use crate::runtime::watcher::{WatcherConfig, WatcherEvent, watcher};
use crate::status::StatusError;

/// The settings of a [`Scheduler`].
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// The profiles; a pod is scheduled by the one whose name its `spec.schedulerName` gives.
    /// Kubernetes' default profile ([`default_profile`]) unless set.
    pub profiles: Vec<Profile>,
    /// `percentageOfNodesToScore` and the filter parallelism.
    pub cycle: CycleConfig,
    /// Back-off and parking of the queue.
    pub queue: QueueConfig,
    /// Schedule only while holding this lease.
    pub leader_election: Option<LeaderElectionConfig>,
    /// Record `Scheduled`, `FailedScheduling` and `Preempted` events (on by default).
    pub record_events: bool,
    /// Seed of the tie-breaking between nodes of equal score, so that runs replay.
    pub seed: u64,
    /// How long an assumed pod whose binding finished may wait for the informer to confirm it
    /// (`None`, Kubernetes' default: forever).
    pub assumed_pod_ttl: Option<Duration>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            profiles: vec![default_profile()],
            cycle: CycleConfig::default(),
            queue: QueueConfig::default(),
            leader_election: None,
            record_events: true,
            seed: 0,
            assumed_pod_ttl: None,
        }
    }
}

/// Why the scheduler stopped before it was told to.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// Leader election failed, or the lease was lost.
    #[error("leader election: {0}")]
    LeaderElection(#[from] LeaderElectionError),
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// The scheduler: see the [module documentation](self).
///
/// # Examples
///
/// ```
/// use orchestra_core::api::{Api, Client, PostParams};
/// use orchestra_core::k8s::api::core::v1::{Node, Pod};
/// use orchestra_core::scheduler::Scheduler;
/// use orchestra_core::store::MemoryStore;
///
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// let client = Client::new(MemoryStore::new());
/// client.bootstrap().await?; // the default namespaces
/// let node: Node = serde_json::from_value(serde_json::json!({
///     "metadata": {"name": "n1"},
///     "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}
/// }))?;
/// Api::<Node>::all(client.clone()).create(&PostParams::default(), &node).await?;
/// let pods = Api::<Pod>::namespaced(client.clone(), "default");
/// let pod: Pod = serde_json::from_value(serde_json::json!({
///     "metadata": {"name": "web"},
///     "spec": {"containers": [{"name": "web", "image": "nginx"}]}
/// }))?;
/// pods.create(&PostParams::default(), &pod).await?;
///
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let scheduler = tokio::spawn(Scheduler::new(client.clone()).run(async {
///     let _ = stopped.await;
/// }));
/// let bound = loop {
///     let pod = pods.get("web").await?;
///     if let Some(node) = pod.spec.and_then(|spec| spec.node_name) {
///         break node;
///     }
///     tokio::time::sleep(std::time::Duration::from_millis(5)).await;
/// };
/// assert_eq!(bound, "n1");
/// let _ = stop.send(());
/// scheduler.await??;
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct Scheduler {
    client: Client,
    config: SchedulerConfig,
    cache: Arc<SchedulerCache>,
    queue: Arc<PriorityQueue>,
    metrics: Arc<SchedulerMetrics>,
}

impl Scheduler {
    /// A scheduler over `client` with Kubernetes' defaults.
    pub fn new(client: Client) -> Scheduler {
        Scheduler::with_config(client, SchedulerConfig::default())
    }

    /// A scheduler over `client` with `config`.
    pub fn with_config(client: Client, config: SchedulerConfig) -> Scheduler {
        let cache = Arc::new(SchedulerCache::with_assumed_pod_ttl(config.assumed_pod_ttl));
        let queue = Arc::new(PriorityQueue::with_config(config.queue.clone()));
        Scheduler {
            client,
            config,
            cache,
            queue,
            metrics: Arc::new(SchedulerMetrics::default()),
        }
    }

    /// The scheduler's cache (nodes, bound and assumed pods), to look at.
    pub fn cache(&self) -> &Arc<SchedulerCache> {
        &self.cache
    }

    /// The scheduler's queue of pending pods, to look at.
    pub fn queue(&self) -> &Arc<PriorityQueue> {
        &self.queue
    }

    /// The scheduler's counters: attempts by outcome and their durations.
    pub fn metrics(&self) -> &Arc<SchedulerMetrics> {
        &self.metrics
    }

    /// Runs until `shutdown` resolves (then returns `Ok`), or until the lease is lost.
    ///
    /// # Errors
    ///
    /// [`SchedulerError::Config`] for profiles that cannot work (none, or two with one name),
    /// [`SchedulerError::LeaderElection`] when leader election fails or the lease is lost.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), SchedulerError> {
        let mut names = BTreeSet::new();
        for profile in &self.config.profiles {
            if !names.insert(profile.scheduler_name.clone()) {
                return Err(SchedulerError::Config(format!(
                    "two profiles are named {:?}",
                    profile.scheduler_name
                )));
            }
        }
        if names.is_empty() {
            return Err(SchedulerError::Config("no profiles".into()));
        }
        let (stop, stopped) = watch::channel(false);
        let work = async move {
            match self.config.leader_election.clone() {
                None => self.schedule(stopped).await,
                Some(config) => {
                    let elector = LeaderElector::new(self.client.clone(), config)?;
                    elector.run(self.schedule(stopped)).await??;
                    Ok(())
                }
            }
        };
        tokio::select! {
            biased;
            () = shutdown => {
                let _ = stop.send(true);
                Ok(())
            }
            outcome = work => outcome,
        }
    }

    async fn schedule(self, mut stopped: watch::Receiver<bool>) -> Result<(), SchedulerError> {
        let profiles: BTreeMap<String, Arc<Profile>> = self
            .config
            .profiles
            .iter()
            .map(|profile| (profile.scheduler_name.clone(), Arc::new(profile.clone())))
            .collect();
        let handlers = Arc::new(EventHandlers::new(
            self.cache.clone(),
            self.queue.clone(),
            profiles.keys().cloned().collect(),
        ));
        let recorder = self
            .config
            .record_events
            .then(|| EventRecorder::new(self.client.clone(), "default-scheduler"));
        let mut tasks = JoinSet::new();
        let pods_handlers = handlers.clone();
        let mut pods_ready = spawn_informer::<Pod>(&mut tasks, &self.client, move |event| {
            pods_handlers.on_pod_event(event)
        });
        let nodes_handlers = handlers.clone();
        let mut nodes_ready = spawn_informer::<Node>(&mut tasks, &self.client, move |event| {
            nodes_handlers.on_node_event(event)
        });
        {
            let queue = self.queue.clone();
            let mut stopped = stopped.clone();
            tasks.spawn(async move {
                queue
                    .run_flushers(async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    })
                    .await;
            });
        }
        let synced = async {
            let _ = pods_ready.wait_for(|ready| *ready).await;
            let _ = nodes_ready.wait_for(|ready| *ready).await;
        };
        tokio::select! {
            biased;
            _ = stopped.wait_for(|stop| *stop) => {
                self.queue.close();
                return Ok(());
            }
            () = synced => {}
        }
        let mut cycle = Cycle {
            client: self.client.clone(),
            cache: self.cache.clone(),
            queue: self.queue.clone(),
            recorder,
            metrics: self.metrics.clone(),
            config: self.config.cycle.clone(),
            cursor: CycleCursor::new(self.config.seed),
            snapshot: Snapshot::new(),
            bindings: JoinSet::new(),
        };
        loop {
            let info = tokio::select! {
                biased;
                _ = stopped.wait_for(|stop| *stop) => break,
                info = self.queue.pop() => info,
            };
            let Some(info) = info else { break };
            let scheduling_cycle = self.queue.scheduling_cycle();
            match profiles.get(scheduler_name(&info.pod)) {
                Some(profile) => cycle.schedule_one(profile, info, scheduling_cycle),
                None => {
                    self.queue.done(&info.pod);
                }
            }
            // Reap finished bindings so the set does not grow.
            while cycle.bindings.try_join_next().is_some() {}
        }
        self.queue.close();
        // Bindings in progress finish: a pod half-bound is worse than a late stop.
        while cycle.bindings.join_next().await.is_some() {}
        tasks.abort_all();
        Ok(())
    }
}

/// Spawns a watcher of every `K` feeding `handle`; the returned flag turns true once `handle`
/// reports the first listing complete. Watch failures are retried by the watcher, so only
/// events reach `handle`.
fn spawn_informer<K>(
    tasks: &mut JoinSet<()>,
    client: &Client,
    handle: impl Fn(WatcherEvent<K>) -> bool + Send + 'static,
) -> watch::Receiver<bool>
where
    K: crate::resource::Resource<DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (synced, ready) = watch::channel(false);
    let mut events = Box::pin(watcher(
        Api::<K>::all(client.clone()),
        WatcherConfig::default(),
    ));
    tasks.spawn(async move {
        while let Some(event) = events.next().await {
            if let Ok(event) = event
                && handle(event)
            {
                let _ = synced.send(true);
            }
        }
    });
    ready
}

/// What the scheduling loop keeps between cycles.
struct Cycle {
    client: Client,
    cache: Arc<SchedulerCache>,
    queue: Arc<PriorityQueue>,
    recorder: Option<EventRecorder>,
    metrics: Arc<SchedulerMetrics>,
    config: CycleConfig,
    cursor: CycleCursor,
    snapshot: Snapshot,
    bindings: JoinSet<()>,
}

/// A failed attempt, to be reported and retried.
struct Failure {
    reason: &'static str,
    message: String,
    plugins: BTreeSet<String>,
    nominated_node: Option<String>,
    /// The pod as last seen from the API, when the queued copy differs (nominated).
    observed: Option<Arc<Pod>>,
}

impl Failure {
    /// A failure of the scheduler itself (not of the pod to fit): `SchedulerError`.
    fn error(message: String) -> Failure {
        Failure {
            reason: "SchedulerError",
            message,
            plugins: BTreeSet::new(),
            nominated_node: None,
            observed: None,
        }
    }
}

impl Cycle {
    /// One scheduling cycle of the pod `info` with `profile`.
    fn schedule_one(&mut self, profile: &Arc<Profile>, info: QueuedPodInfo, scheduling_cycle: u64) {
        let started = Instant::now();
        let pod = info.pod.clone();
        if pod.metadata.deletion_timestamp.is_some() {
            self.queue.done(&pod);
            return;
        }
        self.cache.update_snapshot(&mut self.snapshot);
        let mut state = CycleState::new();
        let outcome = schedule_pod(
            profile,
            &self.config,
            &mut self.cursor,
            &mut state,
            &pod,
            &self.snapshot,
        );
        self.metrics.observe_algorithm(started.elapsed());
        match outcome {
            Ok(result) => self.assume_and_bind(
                profile,
                info,
                scheduling_cycle,
                state,
                result.suggested_host,
                started,
            ),
            Err(ScheduleError::Unschedulable(mut fit)) => {
                let mut nominated = None;
                if !profile.post_filter.is_empty() {
                    let context = PostFilterContext {
                        profile,
                        nodes: self.snapshot.node_infos(),
                        statuses: &fit.diagnosis.node_to_status,
                    };
                    for plugin in &profile.post_filter {
                        match plugin.post_filter(&state, &pod, &context) {
                            Ok(result) => {
                                nominated = Some(result);
                                break;
                            }
                            Err(status) => {
                                if status.is_rejected() {
                                    fit.diagnosis.post_filter_msg = Some(status.message());
                                }
                            }
                        }
                    }
                }
                let nominated_node = nominated
                    .as_ref()
                    .map(|result| result.nominated_node.clone());
                let mut info = info;
                if let Some(result) = nominated {
                    self.preempt(&pod, result);
                    // The pod waits for its victims as nominated to the node: the next attempt
                    // must see that, even before the status update comes back from the informer,
                    // so that it does not preempt again.
                    let mut nominated_pod = Pod::clone(&pod);
                    nominated_pod
                        .status
                        .get_or_insert_default()
                        .nominated_node_name = nominated_node.clone();
                    info.pod = Arc::new(nominated_pod);
                }
                self.fail(
                    info,
                    scheduling_cycle,
                    Failure {
                        reason: "Unschedulable",
                        message: fit.to_string(),
                        plugins: fit.diagnosis.unschedulable_plugins,
                        nominated_node,
                        observed: Some(pod.clone()),
                    },
                );
            }
            Err(error @ ScheduleError::NoNodes) => self.fail(
                info,
                scheduling_cycle,
                Failure {
                    reason: "Unschedulable",
                    message: error.to_string(),
                    plugins: BTreeSet::new(),
                    nominated_node: None,
                    observed: None,
                },
            ),
            Err(error @ ScheduleError::Error(_)) => {
                self.fail(info, scheduling_cycle, Failure::error(error.to_string()))
            }
        }
    }

    fn assume_and_bind(
        &mut self,
        profile: &Arc<Profile>,
        info: QueuedPodInfo,
        scheduling_cycle: u64,
        mut state: CycleState,
        host: String,
        started: Instant,
    ) {
        let mut assumed = Pod::clone(&info.pod);
        assumed.spec.get_or_insert_default().node_name = Some(host.clone());
        let assumed = Arc::new(assumed);
        if let Err(error) = self.cache.assume_pod_shared(assumed.clone()) {
            self.fail(info, scheduling_cycle, Failure::error(error.to_string()));
            return;
        }
        let status = profile.run_reserve(&mut state, &assumed, &host);
        if !status.is_success() {
            let _ = self.cache.forget_pod(&assumed);
            self.fail(
                info,
                scheduling_cycle,
                Failure {
                    reason: if status.code == Code::Error {
                        "SchedulerError"
                    } else {
                        "Unschedulable"
                    },
                    message: format!(
                        "running Reserve plugin {:?}: {}",
                        status.plugin,
                        status.message()
                    ),
                    plugins: BTreeSet::from([status.plugin.to_owned()]),
                    nominated_node: None,
                    observed: None,
                },
            );
            return;
        }
        let binding = Binding {
            client: self.client.clone(),
            cache: self.cache.clone(),
            queue: self.queue.clone(),
            recorder: self.recorder.clone(),
            metrics: self.metrics.clone(),
            profile: profile.clone(),
            started,
        };
        self.bindings
            .spawn(binding.run(info, scheduling_cycle, state, assumed, host));
    }

    /// Deletes the victims (gracefully, as eviction would) and records why.
    fn preempt(&mut self, preemptor: &Pod, result: PostFilterResult) {
        let client = self.client.clone();
        let recorder = self.recorder.clone();
        let preemptor_uid = preemptor.metadata.uid.clone().unwrap_or_default();
        let node = result.nominated_node;
        self.bindings.spawn(async move {
            for victim in result.victims {
                let namespace = victim.metadata.namespace.clone().unwrap_or_default();
                let name = victim.metadata.name.clone().unwrap_or_default();
                let api = Api::<Pod>::namespaced(client.clone(), &namespace);
                if api.delete(&name, &DeleteParams::default()).await.is_ok()
                    && let Some(recorder) = &recorder
                {
                    recorder.event(
                        victim.as_ref(),
                        EventType::Normal,
                        "Preempted",
                        &format!("Preempted by pod {preemptor_uid} on node {node}"),
                    );
                }
            }
        });
    }

    fn fail(&mut self, info: QueuedPodInfo, scheduling_cycle: u64, failure: Failure) {
        if failure.reason == "Unschedulable" {
            self.metrics.observe_unschedulable();
        } else {
            self.metrics.observe_error();
        }
        let failure = Arc::new(failure);
        report_failure(
            &self.client,
            &self.queue,
            self.recorder.as_ref(),
            &mut self.bindings,
            info,
            scheduling_cycle,
            failure,
        );
    }
}

/// Parks or backs off the pod, and tells the user why: a `FailedScheduling` event and the
/// `PodScheduled=False` condition (kube-scheduler's `handleSchedulingFailure`).
fn report_failure(
    client: &Client,
    queue: &PriorityQueue,
    recorder: Option<&EventRecorder>,
    tasks: &mut JoinSet<()>,
    mut info: QueuedPodInfo,
    scheduling_cycle: u64,
    failure: Arc<Failure>,
) {
    let pod = failure.observed.clone().unwrap_or_else(|| info.pod.clone());
    info.unschedulable_plugins = failure.plugins.clone();
    queue.add_unschedulable_if_not_present(info, scheduling_cycle);
    if let Some(recorder) = recorder {
        recorder.event(
            pod.as_ref(),
            EventType::Warning,
            "FailedScheduling",
            &failure.message,
        );
    }
    let current = pod
        .status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == "PodScheduled"));
    let current_nominated = pod
        .status
        .as_ref()
        .and_then(|status| status.nominated_node_name.as_deref())
        .filter(|name| !name.is_empty());
    let unchanged = current.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some(failure.reason)
            && c.message.as_deref() == Some(failure.message.as_str())
    }) && (failure.nominated_node.is_none()
        || failure.nominated_node.as_deref() == current_nominated);
    if unchanged {
        return;
    }
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let now = client.clock().now();
    let mut status = json!({
        "conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": failure.reason,
            "message": failure.message,
            "lastTransitionTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now),
        }]
    });
    if let Some(node) = &failure.nominated_node {
        status["nominatedNodeName"] = json!(node);
    }
    let api = Api::<Pod>::namespaced(client.clone(), &namespace);
    tasks.spawn(async move {
        // The pod may be gone or bound by now; the condition is then moot.
        let _ = api
            .patch_status(
                &name,
                &PatchParams::new(PatchType::StrategicMerge),
                &json!({"status": status}),
            )
            .await;
    });
}

/// What a binding task needs (kube-scheduler's binding cycle).
struct Binding {
    client: Client,
    cache: Arc<SchedulerCache>,
    queue: Arc<PriorityQueue>,
    recorder: Option<EventRecorder>,
    metrics: Arc<SchedulerMetrics>,
    profile: Arc<Profile>,
    started: Instant,
}

/// How a binding ended.
enum Bound {
    Yes,
    /// The pod is gone or someone else bound it: nothing to retry.
    Moot,
    /// Binding failed; retry.
    Failed(String),
}

impl Binding {
    async fn run(
        self,
        info: QueuedPodInfo,
        scheduling_cycle: u64,
        mut state: CycleState,
        assumed: Arc<Pod>,
        host: String,
    ) {
        let outcome = self.bind(&assumed, &host).await;
        match outcome {
            Bound::Yes => {
                let now = Instant::now();
                self.metrics
                    .observe_scheduled(now.duration_since(self.started));
                self.cache.finish_binding(&assumed, now);
                self.queue.done(&info.pod);
                if let Some(recorder) = &self.recorder {
                    let namespace = assumed.metadata.namespace.as_deref().unwrap_or("");
                    let name = assumed.metadata.name.as_deref().unwrap_or("");
                    recorder.event(
                        assumed.as_ref(),
                        EventType::Normal,
                        "Scheduled",
                        &format!("Successfully assigned {namespace}/{name} to {host}"),
                    );
                }
            }
            Bound::Moot => {
                let _ = self.cache.forget_pod(&assumed);
                self.profile.run_unreserve(&mut state, &assumed, &host);
                self.queue.done(&info.pod);
                self.queue
                    .move_all_to_active_or_backoff(ClusterEvent::PodDelete);
            }
            Bound::Failed(message) => {
                self.metrics.observe_error();
                let _ = self.cache.forget_pod(&assumed);
                self.profile.run_unreserve(&mut state, &assumed, &host);
                self.queue
                    .move_all_to_active_or_backoff(ClusterEvent::PodDelete);
                let mut tasks = JoinSet::new();
                report_failure(
                    &self.client,
                    &self.queue,
                    self.recorder.as_ref(),
                    &mut tasks,
                    info,
                    scheduling_cycle,
                    Arc::new(Failure::error(format!("binding rejected: {message}"))),
                );
                while tasks.join_next().await.is_some() {}
            }
        }
    }

    async fn bind(&self, pod: &Pod, host: &str) -> Bound {
        for plugin in &self.profile.bind {
            let status = plugin.bind(pod, host).await;
            match status.code {
                Code::Skip => continue,
                Code::Success => return Bound::Yes,
                _ => return Bound::Failed(status.to_string()),
            }
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        let name = pod.metadata.name.as_deref().unwrap_or("");
        match self.client.bind(namespace, name, host).await {
            Ok(_) => Bound::Yes,
            Err(StatusError {
                code: 404 | 409, ..
            }) => Bound::Moot,
            Err(error) => Bound::Failed(error.message),
        }
    }
}
