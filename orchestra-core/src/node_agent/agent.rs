//! [`NodeAgent`]: the loop that ties the node agent together — heartbeats, the pods bound to the
//! node (watched), each synced through its own [`PodWorker`] and its status written back,
//! deleted pods stopped with their grace period and then removed.
//!
//! As kubelet's pod workers, every pod has a worker of its own and is synced in its own task,
//! so that starting a hundred pods, or one slow runtime call, holds up no other pod. A pod is
//! synced when its object changes (but not for the agent's own status writes), every
//! [`resync`](NodeAgentConfig::resync) period (which notices containers that ended and runs
//! due probes), and never twice at once; at most
//! [`parallel_syncs`](NodeAgentConfig::parallel_syncs) syncs run together.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Preconditions;
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;

use super::backoff::BackOffConfig;
use super::environment::ConfigMaps;
use super::heartbeat::{Heartbeat, NodeConfig};
use super::host::NodeResources;
use super::pod_status::pod_status;
use super::pod_worker::{PodWorker, Termination, unwanted_sandboxes};
use super::service_account::{ApiServerAddress, PodVolumes, ServiceAccountVolumes};
use crate::api::{Api, Client, DeleteParams, PostParams};
use crate::clock::{Clock, SystemClock};
use crate::container_runtime::ContainerRuntime;
use crate::pod_network::PodNetwork;
use crate::runtime::events::{EventRecorder, EventType};
use crate::runtime::reflector;
use crate::runtime::watcher::{WatcherConfig, watcher};
use crate::status::StatusError;

/// The component named by the events the agent records (kubelet's).
pub const COMPONENT: &str = "kubelet";

/// How the agent runs.
#[derive(Clone, Debug)]
pub struct NodeAgentConfig {
    /// The node it runs.
    pub node: NodeConfig,
    /// The crash-loop back-off.
    pub backoff: BackOffConfig,
    /// How often every pod is synced even when nothing was announced (kubelet's PLEG relists
    /// every second to notice containers that ended).
    pub resync: Duration,
    /// How many pods are synced at once, at most.
    pub parallel_syncs: usize,
    /// How often the runtime's sandboxes are checked against the node's pods, those of pods
    /// that are gone being stopped (kubelet's housekeeping, every 2 s).
    pub housekeeping: Duration,
    /// Where the agent writes its pods' projected service-account token volumes, a directory
    /// per pod (kubelet's `/var/lib/kubelet/pods`; see
    /// [`service_account`](super::service_account)). `None` (the default) leaves those volumes
    /// out: their containers start without a token, mount or `KUBERNETES_SERVICE_*` variables.
    pub pods_dir: Option<PathBuf>,
    /// The cluster's CA (PEM) written as the `ca.crt` of token volumes; without it the
    /// `kube-root-ca.crt` ConfigMap's, when it exists.
    pub root_ca_pem: Option<String>,
    /// The API server's address as pods are told it (`KUBERNETES_SERVICE_HOST`,
    /// `KUBERNETES_SERVICE_PORT`), if known.
    pub api_server: Option<ApiServerAddress>,
}

impl NodeAgentConfig {
    /// Kubernetes' settings for `node`.
    pub fn new(node: NodeConfig) -> NodeAgentConfig {
        NodeAgentConfig {
            node,
            backoff: BackOffConfig::default(),
            resync: Duration::from_secs(1),
            parallel_syncs: 32,
            housekeeping: Duration::from_secs(2),
            pods_dir: None,
            root_ca_pem: None,
            api_server: None,
        }
    }
}

/// The node agent (see the [module](self)).
#[derive(Debug)]
pub struct NodeAgent {
    client: Client,
    config: NodeAgentConfig,
    runtime: Arc<dyn ContainerRuntime>,
    network: Option<Arc<dyn PodNetwork>>,
    clock: Arc<dyn Clock>,
    resources: Option<Arc<dyn NodeResources>>,
}

/// The grace period of a pod being deleted: the deletion's, else the spec's, else 30 s.
fn grace_of(pod: &Pod) -> Duration {
    let seconds = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|spec| spec.termination_grace_period_seconds)
        })
        .unwrap_or(30);
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

/// What syncing a pod needs, shared by the pods' sync tasks.
#[derive(Clone, Debug)]
struct Syncer {
    client: Client,
    clock: Arc<dyn Clock>,
    runtime_name: Arc<str>,
    events: EventRecorder,
    volumes: Option<ServiceAccountVolumes>,
}

/// One pod's worker, and what the agent knows of its syncs.
#[derive(Debug)]
struct PodSlot {
    /// `None` once the pod is being stopped: a sync that was waiting its turn then does
    /// nothing (it would start the pod again).
    worker: Arc<Mutex<Option<PodWorker>>>,
    /// The resource version the last sync saw or wrote (a change after it calls for a sync).
    synced_version: Option<String>,
    /// A sync is running.
    syncing: bool,
    /// Synced again when the one running ends, or at once (a resync is due).
    dirty: bool,
}

/// What a pod's sync task reports.
struct Synced {
    uid: String,
    version: Option<String>,
}

impl Syncer {
    /// The ConfigMaps and Secrets `pod` refers to, read from the Api (missing ones are left out:
    /// the container then waits with the error).
    async fn config_source(&self, pod: &Pod) -> ConfigMaps {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let mut maps = BTreeSet::new();
        let mut secrets = BTreeSet::new();
        for container in pod.spec.iter().flat_map(|spec| {
            spec.containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
        }) {
            for from in container.env_from.iter().flatten() {
                if let Some(reference) = &from.config_map_ref {
                    maps.insert(reference.name.clone());
                }
                if let Some(reference) = &from.secret_ref {
                    secrets.insert(reference.name.clone());
                }
            }
            for variable in container.env.iter().flatten() {
                let Some(from) = &variable.value_from else {
                    continue;
                };
                if let Some(selector) = &from.config_map_key_ref {
                    maps.insert(selector.name.clone());
                }
                if let Some(selector) = &from.secret_key_ref {
                    secrets.insert(selector.name.clone());
                }
            }
        }
        let mut source = ConfigMaps::default();
        if maps.is_empty() && secrets.is_empty() {
            return source;
        }
        let config_maps = Api::<ConfigMap>::namespaced(self.client.clone(), &namespace);
        for name in maps {
            if let Ok(map) = config_maps.get(&name).await {
                source
                    .config_maps
                    .insert((namespace.clone(), name), map.data.unwrap_or_default());
            }
        }
        let secret_api = Api::<Secret>::namespaced(self.client.clone(), &namespace);
        for name in secrets {
            if let Ok(secret) = secret_api.get(&name).await {
                let data = secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(key, value)| (key, value.0))
                    .collect();
                source.secrets.insert((namespace.clone(), name), data);
            }
        }
        source
    }

    /// Syncs one running pod and writes its status if it changed; the resource version it
    /// leaves the pod at.
    async fn sync_pod(&self, worker: &mut PodWorker, pod: &Pod) -> Option<String> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let source = self.config_source(pod).await;
        let synced = match &self.volumes {
            Some(volumes) => {
                let (projected, env) = volumes.project(pod).await;
                let source = PodVolumes {
                    source: &source,
                    volumes: &projected,
                    env: &env,
                };
                worker.sync(pod, &source).await
            }
            None => worker.sync(pod, &source).await,
        };
        for event in worker.take_events() {
            self.events
                .event(pod, event.event_type, &event.reason, &event.message);
        }
        let observed = match synced {
            Ok(observed) => observed,
            Err(error) => {
                eprintln!("node agent: syncing pod {namespace}/{name}: {error}");
                return pod.metadata.resource_version.clone();
            }
        };
        let status = pod_status(
            pod,
            &observed,
            &self.runtime_name,
            pod.status.as_ref(),
            self.clock.now(),
        );
        if pod.status.as_ref() == Some(&status) {
            return pod.metadata.resource_version.clone();
        }
        let mut updated = pod.clone();
        updated.status = Some(status);
        let pods = Api::<Pod>::namespaced(self.client.clone(), &namespace);
        match pods
            .replace_status(&name, &PostParams::default(), &updated)
            .await
        {
            Ok(written) => written.metadata.resource_version,
            Err(error) => {
                if !error.is_conflict() && !error.is_not_found() {
                    eprintln!("node agent: writing the status of {namespace}/{name}: {error}");
                }
                pod.metadata.resource_version.clone()
            }
        }
    }
}

/// What stopping the pod with uid `uid` takes: its worker's termination, once a sync in flight
/// is done (the worker is retired, so that no sync waiting its turn starts the pod again), or
/// else what a previous agent left of it (`adopted`). The retired worker is dropped, and its
/// probes with it.
async fn retire(
    worker: Option<Arc<Mutex<Option<PodWorker>>>>,
    adopted: PodWorker,
    uid: &str,
) -> Option<Termination> {
    let retired = match worker {
        Some(worker) => worker.lock().await.take(),
        None => None,
    };
    retired
        .and_then(|worker| worker.termination(uid))
        .or_else(|| adopted.termination(uid))
}

impl NodeAgent {
    /// An agent for `config.node`, running pods through `runtime`.
    pub fn new(
        client: Client,
        config: NodeAgentConfig,
        runtime: Arc<dyn ContainerRuntime>,
    ) -> NodeAgent {
        NodeAgent {
            client,
            config,
            runtime,
            network: None,
            clock: Arc::new(SystemClock),
            resources: None,
        }
    }

    /// Gives pods their addresses from `network`.
    pub fn with_network(mut self, network: Arc<dyn PodNetwork>) -> NodeAgent {
        self.network = Some(network);
        self
    }

    /// Timestamps from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> NodeAgent {
        self.clock = clock;
        self
    }

    /// Reports the node's capacity, allocatable and pressure conditions from `resources` (the
    /// host's, with [`NodeConfig::capacity`] on top) instead of the configured capacity alone.
    pub fn with_resources(mut self, resources: Arc<dyn NodeResources>) -> NodeAgent {
        self.resources = Some(resources);
        self
    }

    /// Runs the agent until `shutdown` resolves: registers the node and heartbeats, takes on
    /// what a previous agent left running, and keeps the node's pods as their specs say.
    ///
    /// # Errors
    ///
    /// When the node cannot be registered.
    pub async fn run<S: Future<Output = ()>>(self, shutdown: S) -> Result<(), StatusError> {
        let node_name = self.config.node.node_name.clone();
        let mut heartbeat = Heartbeat::new(
            self.client.clone(),
            self.config.node.clone(),
            self.runtime.clone(),
        )
        .with_clock(self.clock.clone());
        if let Some(resources) = &self.resources {
            heartbeat = heartbeat.with_resources(resources.clone());
        }
        heartbeat.register().await?;
        let (stop_heartbeat, heartbeat_stopped) = tokio::sync::oneshot::channel::<()>();
        let heartbeat_task = tokio::spawn(heartbeat.run(async {
            let _ = heartbeat_stopped.await;
        }));

        // The template every pod's worker is split off from; it holds what a previous agent
        // left running until each pod's worker takes its part.
        let mut template = PodWorker::with_backoff(
            self.runtime.clone(),
            self.clock.clone(),
            self.config.backoff,
        );
        if let Some(network) = &self.network {
            template = template.with_network(network.clone());
        }
        template.set_host_ip(
            self.config
                .node
                .addresses
                .iter()
                .find(|address| address.type_ == "InternalIP")
                .map(|address| address.address.clone()),
        );
        if let Err(error) = template.adopt().await {
            eprintln!("node agent: listing the sandboxes left running: {error}");
        }
        let runtime_name: Arc<str> = match self.runtime.version().await {
            Ok(version) => version.runtime_name.into(),
            Err(_) => "unknown".into(),
        };
        let events = EventRecorder::new(self.client.clone(), COMPONENT);
        let volumes = self.config.pods_dir.as_ref().map(|dir| {
            ServiceAccountVolumes::new(self.client.clone(), self.clock.clone(), dir)
                .with_root_ca(self.config.root_ca_pem.clone())
                .with_api_server(self.config.api_server.clone())
        });
        let syncer = Syncer {
            client: self.client.clone(),
            clock: self.clock.clone(),
            runtime_name,
            events,
            volumes: volumes.clone(),
        };
        let permits = Arc::new(Semaphore::new(self.config.parallel_syncs.max(1)));

        let (reader, mut writer) = reflector::store::<Pod>();
        let mut watch = Box::pin(watcher(
            Api::<Pod>::all(self.client.clone()),
            WatcherConfig::default().fields(&format!("spec.nodeName={node_name}")),
        ));
        let mut slots: BTreeMap<String, PodSlot> = BTreeMap::new();
        let mut syncs: JoinSet<Synced> = JoinSet::new();
        let mut terminations: JoinSet<()> = JoinSet::new();
        let mut terminating: BTreeMap<String, tokio::task::AbortHandle> = BTreeMap::new();
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(self.config.resync);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut housekeeping = tokio::time::interval(self.config.housekeeping);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sweep = false;
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(done) = syncs.join_next(), if !syncs.is_empty() => {
                    if let Ok(synced) = done
                        && let Some(slot) = slots.get_mut(&synced.uid)
                    {
                        slot.syncing = false;
                        if synced.version.is_some() {
                            slot.synced_version = synced.version;
                        }
                    }
                }
                event = watch.next() => {
                    match event {
                        Some(Ok(event)) => writer.apply(&event),
                        Some(Err(error)) => eprintln!("node agent: watching pods: {error}"),
                        None => break,
                    }
                    // Take in what else is ready before looking at the pods.
                    while let Some(Some(Ok(event))) = futures_util::FutureExt::now_or_never(watch.next()) {
                        writer.apply(&event);
                    }
                }
                _ = tick.tick() => {
                    for slot in slots.values_mut() {
                        slot.dirty = true;
                    }
                }
                _ = housekeeping.tick() => sweep = true,
                Some(_) = terminations.join_next(), if !terminations.is_empty() => {}
            }
            if !reader.is_ready() {
                continue;
            }
            let pods = reader.state();
            let known: BTreeSet<String> = pods
                .iter()
                .filter_map(|pod| pod.metadata.uid.clone())
                .collect();
            terminating.retain(|_, handle| !handle.is_finished());
            for pod in &pods {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if terminating.contains_key(&uid) {
                    continue;
                }
                if pod.metadata.deletion_timestamp.is_none() {
                    let slot = slots.entry(uid.clone()).or_insert_with(|| PodSlot {
                        worker: Arc::new(Mutex::new(Some(template.split_off(&uid)))),
                        synced_version: None,
                        syncing: false,
                        dirty: true,
                    });
                    let changed = slot.synced_version != pod.metadata.resource_version;
                    if slot.syncing || !(slot.dirty || changed) {
                        continue;
                    }
                    slot.syncing = true;
                    slot.dirty = false;
                    let worker = Arc::clone(&slot.worker);
                    let syncer = syncer.clone();
                    let permits = Arc::clone(&permits);
                    let pod = Arc::clone(pod);
                    syncs.spawn(async move {
                        let _permit = permits.acquire_owned().await;
                        let mut worker = worker.lock().await;
                        let version = match worker.as_mut() {
                            Some(worker) => syncer.sync_pod(worker, &pod).await,
                            None => None,
                        };
                        Synced { uid, version }
                    });
                    continue;
                }
                // Stop it in its own task (after a sync in flight), then remove the pod object
                // for good.
                for container in pod.spec.iter().flat_map(|spec| &spec.containers) {
                    syncer.events.event(
                        &**pod,
                        EventType::Normal,
                        "Killing",
                        &format!("Stopping container {}", container.name),
                    );
                }
                let worker = slots.remove(&uid).map(|slot| slot.worker);
                let adopted = template.split_off(&uid);
                let grace = grace_of(pod);
                let pods_api = Api::<Pod>::namespaced(
                    self.client.clone(),
                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                );
                let name = pod.metadata.name.clone().unwrap_or_default();
                let precondition = uid.clone();
                let pod_volumes = volumes.clone();
                let handle = terminations.spawn(async move {
                    if let Some(termination) = retire(worker, adopted, &precondition).await
                        && let Err(error) = termination.run(grace).await
                    {
                        eprintln!("node agent: stopping pod {name}: {error}");
                    }
                    if let Some(volumes) = pod_volumes {
                        volumes.remove(&precondition);
                    }
                    let params = DeleteParams {
                        grace_period_seconds: Some(0),
                        preconditions: Some(Preconditions {
                            uid: Some(precondition),
                            resource_version: None,
                        }),
                        ..DeleteParams::default()
                    };
                    if let Err(error) = pods_api.delete(&name, &params).await
                        && !error.is_not_found()
                    {
                        eprintln!("node agent: removing pod {name}: {error}");
                    }
                });
                terminating.insert(uid, handle);
            }
            // Sandboxes no pod of the node asks for (a sync that started one for a pod deleted
            // meanwhile): stopped with the default grace period.
            if std::mem::take(&mut sweep) {
                let wanted = |uid: &str| {
                    known.contains(uid) || terminating.contains_key(uid) || slots.contains_key(uid)
                };
                if let Some(volumes) = &volumes {
                    volumes.retain(wanted);
                }
                match unwanted_sandboxes(&self.runtime, self.network.as_ref(), wanted).await {
                    Ok(unwanted) => {
                        for (uid, termination) in unwanted {
                            let handle = terminations.spawn(async move {
                                if let Err(error) = termination.run(Duration::from_secs(30)).await {
                                    eprintln!(
                                        "node agent: stopping a sandbox no pod wants: {error}"
                                    );
                                }
                            });
                            terminating.insert(uid, handle);
                        }
                    }
                    Err(error) => eprintln!("node agent: listing the sandboxes: {error}"),
                }
            }
            // Pods gone from the Api while their containers still run (a forced deletion, or
            // left by a previous agent): stopped with the default grace period.
            let orphans: Vec<String> = slots
                .keys()
                .cloned()
                .chain(template.pod_uids())
                .filter(|uid| !known.contains(uid) && !terminating.contains_key(uid))
                .collect();
            for uid in orphans {
                let worker = slots.remove(&uid).map(|slot| slot.worker);
                let adopted = template.split_off(&uid);
                let forgotten = uid.clone();
                let pod_volumes = volumes.clone();
                let handle = terminations.spawn(async move {
                    if let Some(termination) = retire(worker, adopted, &forgotten).await
                        && let Err(error) = termination.run(Duration::from_secs(30)).await
                    {
                        eprintln!("node agent: stopping an orphaned pod: {error}");
                    }
                    if let Some(volumes) = pod_volumes {
                        volumes.remove(&forgotten);
                    }
                });
                terminating.insert(uid, handle);
            }
        }
        let _ = stop_heartbeat.send(());
        let _ = heartbeat_task.await;
        syncs.abort_all();
        terminations.abort_all();
        Ok(())
    }
}
