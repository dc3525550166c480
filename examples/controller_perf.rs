//! How fast the reference controllers do their work, in-process:
//!
//! ```text
//! cargo run --release --example controller_perf
//! ```
//!
//! - `deployment_10k_create`: a Deployment of 10,000 replicas is created on a [`MemoryStore`]
//!   with the controller manager running (multi-threaded runtime, the machine's cores); the
//!   figure is the wall time from the create to the 10,000th pod existing in the store (counted
//!   from a watch). Target ≤ 1 s.
//! - `rolling_update_1k`: in the cluster simulator (current-thread runtime, paused clock, the fake
//!   node agent starting pods after 50–500 ms of simulated time), a 1,000-replica Deployment is
//!   rolled out to a new image (maxSurge 25%, maxUnavailable 25%) until every pod runs the new
//!   template and is ready; the figure is the wall time the whole rollout took to compute.
//!   Target ≤ 5 s. `rolling_update_1k_simulated` is the simulated time it spanned (pods start
//!   after their simulated delays, so this one measures the strategy, not the code).
//!
//! - `api_create_10k`, the baseline beside it: 10,000 plain pod creates through the API with
//!   the same concurrency and one watcher, no controller — what the controllers cannot beat.
//!
//! Each figure is printed as `RESULT <name> <value> <unit>`: the median of five runs (three for
//! the rolling update), the machine being shared and noisy.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use orchestra::core::api::keys;
use orchestra::core::api::{Api, Client, ListParams, PostParams, WatchEvent, WatchParams};
use orchestra::core::controllers::manager::ControllerManager;
use orchestra::core::k8s::api::apps::v1::Deployment;
use orchestra::core::k8s::api::core::v1::Pod;
use orchestra::core::simulator::{self, AgentConfig, Cluster, ClusterConfig};
use orchestra::core::store::{MemoryStore, RangeRequest, Store};

fn deployment(replicas: i32, image: &str) -> Result<Deployment> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]},
            },
        },
    }))?)
}

/// The wall time from creating a 10,000-replica Deployment to its 10,000th pod.
///
/// The pods are counted in the store itself (a count-only range every millisecond), so that the
/// measurement adds no watcher of its own to the controllers' work.
async fn deployment_10k_create() -> Result<Duration> {
    const REPLICAS: usize = 10_000;
    let store = MemoryStore::new();
    let client = Client::new(store.clone());
    client.bootstrap().await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let manager = ControllerManager::new(client.clone()).controllers("replicaset,deployment")?;
    let running = tokio::spawn(manager.run(async move {
        let _ = stopped.await;
    }));
    // Let the controllers list and start watching first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut count = RangeRequest::prefix(keys::collection_prefix(pods.resource(), Some("default")));
    count.count_only = true;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let replicas = i32::try_from(REPLICAS)?;
    let started = Instant::now();
    deployments
        .create(&PostParams::default(), &deployment(replicas, "web:v1")?)
        .await?;
    loop {
        let created = store.range(count.clone()).await?.count;
        if created >= REPLICAS {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("only {created} pods after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(());
    running.await??;
    Ok(elapsed)
}

/// The baseline: the wall time of 10,000 plain pod creates through the API (64 at a time, as the
/// ReplicaSet controller's bursts run them), with one watcher counting them, and no controller.
async fn api_create_10k() -> Result<Duration> {
    const PODS: usize = 10_000;
    let client = Client::new(MemoryStore::new());
    client.bootstrap().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let version = pods
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .context("a list without a resource version")?;
    let mut events = pods.watch(&WatchParams::default(), &version).await?;
    let template = deployment(1, "web:v1")?
        .spec
        .context("a Deployment without a spec")?
        .template;
    let pod = Pod {
        metadata: template.metadata.unwrap_or_default(),
        spec: template.spec,
        status: None,
    };
    let started = Instant::now();
    let creates = futures_util::stream::iter(0..PODS)
        .map(|index| {
            let pods = pods.clone();
            let mut pod = pod.clone();
            pod.metadata.name = Some(format!("web-{index}"));
            tokio::spawn(async move { pods.create(&PostParams::default(), &pod).await })
        })
        .buffer_unordered(64);
    let counted = tokio::spawn(async move {
        let mut created = 0;
        while created < PODS {
            match events.next().await {
                Some(WatchEvent::Added(_)) => created += 1,
                Some(_) => {}
                None => break,
            }
        }
        created
    });
    let results: Vec<_> = creates.collect().await;
    for result in results {
        result??;
    }
    if counted.await? != PODS {
        bail!("the watch did not see every pod");
    }
    Ok(started.elapsed())
}

/// Whether every one of `replicas` pods runs `image` and is ready, and no other pod exists.
async fn rolled_out(pods: &Api<Pod>, replicas: usize, image: &str) -> bool {
    let Ok(list) = pods.list(&ListParams::default()).await else {
        return false;
    };
    list.items.len() == replicas
        && list.items.iter().all(|pod| {
            let runs_image = pod
                .spec
                .as_ref()
                .is_some_and(|spec| spec.containers[0].image.as_deref() == Some(image));
            let ready = pod
                .status
                .as_ref()
                .and_then(|status| status.conditions.as_ref())
                .is_some_and(|conditions| {
                    conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                });
            runs_image && ready && pod.metadata.deletion_timestamp.is_none()
        })
}

/// Whether the Deployment's status says its rollout is complete (as `kubectl rollout status`
/// decides): cheap enough to poll.
async fn complete(deployments: &Api<Deployment>, replicas: i32) -> bool {
    let Ok(web) = deployments.get("web").await else {
        return false;
    };
    web.status.is_some_and(|status| {
        status.observed_generation >= web.metadata.generation
            && status.updated_replicas == Some(replicas)
            && status.replicas == Some(replicas)
            && status.available_replicas == Some(replicas)
    })
}

/// The wall time and the simulated time of a rolling update of 1,000 replicas.
fn rolling_update_1k() -> Result<(Duration, Duration)> {
    const REPLICAS: usize = 1_000;
    simulator::simulate(1, |seed| async move {
        let config = ClusterConfig::seeded(seed).agent(AgentConfig {
            nodes: (0..20).map(|index| format!("node-{index}")).collect(),
            ..AgentConfig::default()
        });
        let mut cluster = Cluster::start(config).await?;
        let client = cluster.client().clone();
        cluster.spawn("controller-manager", async move {
            let manager = ControllerManager::new(client).controllers("replicaset,deployment");
            if let Ok(manager) = manager {
                let _ = manager.run(std::future::pending()).await;
            }
        });
        let deployments: Api<Deployment> = Api::namespaced(cluster.client().clone(), "default");
        let pods: Api<Pod> = Api::namespaced(cluster.observer().clone(), "default");
        let replicas = i32::try_from(REPLICAS)?;
        deployments
            .create(&PostParams::default(), &deployment(replicas, "web:v1")?)
            .await?;
        let settle = Duration::from_secs(600);
        let observed: Api<Deployment> = Api::namespaced(cluster.observer().clone(), "default");
        if !cluster
            .wait_until(settle, || complete(&observed, replicas))
            .await
            || !rolled_out(&pods, REPLICAS, "web:v1").await
        {
            bail!("the 1,000 v1 pods never became ready");
        }
        let wall = Instant::now();
        let simulated = tokio::time::Instant::now();
        let mut web = deployments.get("web").await?;
        let containers = &mut web
            .spec
            .as_mut()
            .and_then(|spec| spec.template.spec.as_mut())
            .context("a Deployment without a pod template")?
            .containers;
        containers[0].image = Some("web:v2".to_owned());
        deployments
            .replace("web", &PostParams::default(), &web)
            .await?;
        if !cluster
            .wait_until(settle, || complete(&observed, replicas))
            .await
        {
            bail!("the rollout to v2 did not complete");
        }
        let times = (wall.elapsed(), simulated.elapsed());
        // The status is the controllers' word: check the pods themselves (outside the timing).
        if !cluster
            .wait_until(Duration::from_secs(60), || {
                rolled_out(&pods, REPLICAS, "web:v2")
            })
            .await
        {
            bail!("the status said complete, but the pods are not all v2 and ready");
        }
        Ok(times)
    })
}

/// The median of some measurements.
fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn main() -> Result<()> {
    const RUNS: usize = 5;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut baselines = Vec::new();
    let mut creates = Vec::new();
    for _ in 0..RUNS {
        baselines.push(runtime.block_on(api_create_10k())?);
        creates.push(runtime.block_on(deployment_10k_create())?);
    }
    let (fastest, slowest) = (creates.iter().min(), creates.iter().max());
    let baseline = median(baselines);
    let create = median(creates.clone());
    println!(
        "RESULT api_create_10k {:.3} s (baseline: plain creates, no controller; median of {RUNS})",
        baseline.as_secs_f64()
    );
    println!(
        "RESULT deployment_10k_create {:.3} s (target <= 1 s; median of {RUNS}, min {:.3} max {:.3}) ratio to api_create_10k {:.2}",
        create.as_secs_f64(),
        fastest.map_or(0.0, Duration::as_secs_f64),
        slowest.map_or(0.0, Duration::as_secs_f64),
        create.as_secs_f64() / baseline.as_secs_f64()
    );
    let mut walls = Vec::new();
    let mut simulated = Duration::ZERO;
    for _ in 0..3 {
        let (wall, span) = rolling_update_1k()?;
        walls.push(wall);
        simulated = span;
    }
    println!(
        "RESULT rolling_update_1k {:.3} s (target <= 5 s; median of 3)",
        median(walls).as_secs_f64()
    );
    println!(
        "RESULT rolling_update_1k_simulated {:.1} s",
        simulated.as_secs_f64()
    );
    Ok(())
}
