//! [`NodeAgent`]: the loop that ties the node agent together — heartbeats, the pods bound to the
//! node (watched), each synced through the [`PodWorker`] and its status written back, deleted
//! pods stopped with their grace period and then removed.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Preconditions;
use tokio::task::JoinSet;

use super::backoff::BackOffConfig;
use super::environment::ConfigMaps;
use super::heartbeat::{Heartbeat, NodeConfig};
use super::pod_status::pod_status;
use super::pod_worker::PodWorker;
use crate::api::{Api, Client, DeleteParams, PostParams};
use crate::clock::{Clock, SystemClock};
use crate::container_runtime::ContainerRuntime;
use crate::pod_network::PodNetwork;
use crate::runtime::reflector;
use crate::runtime::watcher::{WatcherConfig, watcher};
use crate::status::StatusError;

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
}

impl NodeAgentConfig {
    /// Kubernetes' settings for `node`.
    pub fn new(node: NodeConfig) -> NodeAgentConfig {
        NodeAgentConfig {
            node,
            backoff: BackOffConfig::default(),
            resync: Duration::from_secs(1),
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

    /// Syncs one running pod and writes its status if it changed.
    async fn sync_pod(&self, worker: &mut PodWorker, pod: &Pod) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let source = self.config_source(pod).await;
        let synced = worker.sync(pod, &source).await;
        // Kills by a probe are told; failed runs show in the container's readiness and restarts.
        for event in worker.take_probe_events() {
            if event.reason == "Killing" {
                eprintln!("node agent: pod {namespace}/{name}: {}", event.message);
            }
        }
        let observed = match synced {
            Ok(observed) => observed,
            Err(error) => {
                eprintln!("node agent: syncing pod {namespace}/{name}: {error}");
                return;
            }
        };
        let status = pod_status(
            pod,
            &observed,
            "process",
            pod.status.as_ref(),
            self.clock.now(),
        );
        if pod.status.as_ref() == Some(&status) {
            return;
        }
        let mut updated = pod.clone();
        updated.status = Some(status);
        let pods = Api::<Pod>::namespaced(self.client.clone(), &namespace);
        if let Err(error) = pods
            .replace_status(&name, &PostParams::default(), &updated)
            .await
            && !error.is_conflict()
            && !error.is_not_found()
        {
            eprintln!("node agent: writing the status of {namespace}/{name}: {error}");
        }
    }

    /// Runs the agent until `shutdown` resolves: registers the node and heartbeats, takes on
    /// what a previous agent left running, and keeps the node's pods as their specs say.
    ///
    /// # Errors
    ///
    /// When the node cannot be registered.
    pub async fn run<S: Future<Output = ()>>(self, shutdown: S) -> Result<(), StatusError> {
        let node_name = self.config.node.node_name.clone();
        let heartbeat = Heartbeat::new(
            self.client.clone(),
            self.config.node.clone(),
            self.runtime.clone(),
        )
        .with_clock(self.clock.clone());
        heartbeat.register().await?;
        let (stop_heartbeat, heartbeat_stopped) = tokio::sync::oneshot::channel::<()>();
        let heartbeat_task = tokio::spawn(heartbeat.run(async {
            let _ = heartbeat_stopped.await;
        }));

        let mut worker = PodWorker::with_backoff(
            self.runtime.clone(),
            self.clock.clone(),
            self.config.backoff,
        );
        if let Some(network) = &self.network {
            worker = worker.with_network(network.clone());
        }
        worker.set_host_ip(
            self.config
                .node
                .addresses
                .iter()
                .find(|address| address.type_ == "InternalIP")
                .map(|address| address.address.clone()),
        );
        if let Err(error) = worker.adopt().await {
            eprintln!("node agent: listing the sandboxes left running: {error}");
        }

        let (reader, mut writer) = reflector::store::<Pod>();
        let mut events = Box::pin(watcher(
            Api::<Pod>::all(self.client.clone()),
            WatcherConfig::default().fields(&format!("spec.nodeName={node_name}")),
        ));
        let mut terminations: JoinSet<()> = JoinSet::new();
        let mut terminating: BTreeMap<String, tokio::task::AbortHandle> = BTreeMap::new();
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(self.config.resync);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                event = events.next() => {
                    match event {
                        Some(Ok(event)) => writer.apply(&event),
                        Some(Err(error)) => eprintln!("node agent: watching pods: {error}"),
                        None => break,
                    }
                    // Drain what else is ready, then sync once.
                    while let Some(Some(Ok(event))) = futures_util::FutureExt::now_or_never(events.next()) {
                        writer.apply(&event);
                    }
                }
                _ = tick.tick() => {}
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
                if pod.metadata.deletion_timestamp.is_none() {
                    if !terminating.contains_key(&uid) {
                        self.sync_pod(&mut worker, pod).await;
                    }
                    continue;
                }
                if terminating.contains_key(&uid) {
                    continue;
                }
                // Stop it in its own task, then remove the pod object for good.
                let termination = worker.termination(&uid);
                worker.forget(pod);
                let grace = grace_of(pod);
                let pods_api = Api::<Pod>::namespaced(
                    self.client.clone(),
                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                );
                let name = pod.metadata.name.clone().unwrap_or_default();
                let precondition = uid.clone();
                let handle = terminations.spawn(async move {
                    if let Some(termination) = termination
                        && let Err(error) = termination.run(grace).await
                    {
                        eprintln!("node agent: stopping pod {name}: {error}");
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
            // Pods gone from the Api while their containers still run (a forced deletion):
            // stopped with the default grace period.
            for uid in worker.pod_uids() {
                if known.contains(&uid) || terminating.contains_key(&uid) {
                    continue;
                }
                let termination = worker.termination(&uid);
                worker.forget_uid(&uid);
                let handle = terminations.spawn(async move {
                    if let Some(termination) = termination
                        && let Err(error) = termination.run(Duration::from_secs(30)).await
                    {
                        eprintln!("node agent: stopping an orphaned pod: {error}");
                    }
                });
                terminating.insert(uid, handle);
            }
        }
        let _ = stop_heartbeat.send(());
        let _ = heartbeat_task.await;
        terminations.abort_all();
        Ok(())
    }
}
