//! Rollouts of Deployments through the whole controller manager, in the cluster simulator, with a
//! checker that sees every change to every pod:
//!
//! - the rolling-update invariant: never more than `replicas + maxSurge` active pods, never
//!   fewer than `replicas - maxUnavailable` available ones, for many sizes and strategies;
//! - Recreate: never pods of two templates at once;
//! - no over-creation when watch events come late, twice, out of order, or not at all (broken
//!   watches), and the controllers are killed and restarted in the middle;
//! - rollback to an earlier revision, with the revision numbers Kubernetes gives;
//! - crashes of the controller manager at random points of a rollout, over a hundred seeds: every
//!   run converges.
#![cfg(feature = "testing")]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use orchestra_core::api::{Api, Client, ListParams, PostParams, WatchEvent, WatchParams};
use orchestra_core::controllers::deployment::rollback;
use orchestra_core::controllers::manager::ControllerManager;
use orchestra_core::k8s::api::apps::v1::{Deployment, ReplicaSet};
use orchestra_core::k8s::api::core::v1::Pod;
use orchestra_core::simulator::{self, AgentConfig, ChaosConfig, Cluster, ClusterConfig};

const MANAGER: &str = "controller-manager";
const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const HASH: &str = "pod-template-hash";

/// A Deployment of `replicas` pods of `image`, rolled out as `strategy` says.
fn deployment(replicas: i32, strategy: serde_json::Value, image: &str) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]},
            },
        },
    }))
    .unwrap()
}

fn rolling(surge: serde_json::Value, unavailable: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable},
    })
}

/// An int-or-percent resolved against `replicas` as Kubernetes does: percentages of surge
/// round up, of unavailability down.
fn resolve(value: &serde_json::Value, replicas: i32, round_up: bool) -> i32 {
    match value {
        serde_json::Value::Number(number) => i32::try_from(number.as_i64().unwrap()).unwrap(),
        serde_json::Value::String(percent) => {
            let percent: i32 = percent.trim_end_matches('%').parse().unwrap();
            let scaled = replicas * percent;
            if round_up {
                (scaled + 99) / 100
            } else {
                scaled / 100
            }
        }
        other => panic!("not an int or percent: {other}"),
    }
}

/// Kubernetes' fenceposts: (maxSurge, maxUnavailable), with 0/0 made 0/1.
fn fenceposts(
    replicas: i32,
    surge: &serde_json::Value,
    unavailable: &serde_json::Value,
) -> (i32, i32) {
    let surge = resolve(surge, replicas, true);
    let unavailable = resolve(unavailable, replicas, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

fn is_active(pod: &Pod) -> bool {
    let phase = pod
        .status
        .as_ref()
        .and_then(|status| status.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|condition| condition.type_ == "Ready" && condition.status == "True")
}

fn hash_of(pod: &Pod) -> String {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(HASH))
        .cloned()
        .unwrap_or_default()
}

/// What the checker saw, over every state the pods went through.
#[derive(Clone, Debug)]
struct Census {
    /// Watch events seen.
    events: usize,
    /// The most active pods at once.
    max_active: usize,
    /// The fewest available (active and Ready) pods at once.
    min_available: usize,
    /// The most pod templates (pod-template-hash labels) among existing pods at once,
    /// terminating pods included.
    max_templates: usize,
    /// Pods seen without a pod-template-hash label (which would hide two templates as one).
    unlabelled: usize,
}

/// Watches every pod in the store (unfaulty, from the observer) from now on, and keeps the
/// census of every state they pass through.
async fn start_checker(cluster: &Cluster) -> Arc<Mutex<Census>> {
    let pods: Api<Pod> = Api::all(cluster.observer().clone());
    let listed = pods.list(&ListParams::default()).await.unwrap();
    let mut state: BTreeMap<String, Pod> = listed
        .items
        .into_iter()
        .map(|pod| (pod.metadata.name.clone().unwrap(), pod))
        .collect();
    let measure = |state: &BTreeMap<String, Pod>| {
        let active = state.values().filter(|pod| is_active(pod)).count();
        let available = state
            .values()
            .filter(|pod| is_active(pod) && is_ready(pod))
            .count();
        let templates = state.values().map(hash_of).collect::<BTreeSet<_>>().len();
        (active, available, templates)
    };
    let (active, available, templates) = measure(&state);
    let census = Arc::new(Mutex::new(Census {
        events: 0,
        max_active: active,
        min_available: available,
        max_templates: templates,
        unlabelled: 0,
    }));
    let version = listed.metadata.resource_version.unwrap();
    let mut events = pods.watch(&WatchParams::default(), &version).await.unwrap();
    let seen = Arc::clone(&census);
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            match event {
                WatchEvent::Added(pod) | WatchEvent::Modified(pod) => {
                    if hash_of(&pod).is_empty() {
                        seen.lock().unwrap().unlabelled += 1;
                    }
                    state.insert(pod.metadata.name.clone().unwrap(), pod);
                }
                WatchEvent::Deleted(pod) => {
                    state.remove(pod.metadata.name.as_deref().unwrap());
                }
                WatchEvent::Bookmark(_) => continue,
                WatchEvent::Error(error) => panic!("the checker's watch failed: {error:?}"),
            }
            let (active, available, templates) = measure(&state);
            let mut census = seen.lock().unwrap();
            census.events += 1;
            census.max_active = census.max_active.max(active);
            census.min_available = census.min_available.min(available);
            census.max_templates = census.max_templates.max(templates);
        }
    });
    census
}

/// Starts the controller manager (the workload controllers) under [`MANAGER`].
fn start_manager(cluster: &mut Cluster) {
    let client = cluster.client().clone();
    cluster.spawn(MANAGER, async move {
        ControllerManager::new(client)
            .controllers("replicaset,deployment,garbagecollector")
            .unwrap()
            .run(std::future::pending())
            .await
            .unwrap();
    });
}

/// A random duration between `low` and `high` milliseconds, from the run's seed.
fn ms(cluster: &mut Cluster, low: u64, high: u64) -> Duration {
    cluster
        .rng()
        .between(Duration::from_millis(low), Duration::from_millis(high))
}

async fn start(seed: u64, chaos: Option<ChaosConfig>) -> Cluster {
    let mut config = ClusterConfig::seeded(seed).agent(AgentConfig {
        nodes: (0..10).map(|index| format!("node-{index}")).collect(),
        ..AgentConfig::default()
    });
    config.chaos = chaos;
    let mut cluster = Cluster::start(config).await.unwrap();
    start_manager(&mut cluster);
    cluster
}

/// Whether the rollout of `web` is complete, as `kubectl rollout status` decides, and the pods
/// agree: exactly `replicas` pods, all active, ready and of the Deployment's newest template.
async fn rollout_complete(observer: &Client, replicas: i32) -> bool {
    let deployments: Api<Deployment> = Api::namespaced(observer.clone(), "default");
    let Ok(deployment) = deployments.get("web").await else {
        return false;
    };
    let Some(status) = deployment.status.as_ref() else {
        return false;
    };
    if status.observed_generation < deployment.metadata.generation
        || status.updated_replicas.unwrap_or(0) != replicas
        || status.replicas.unwrap_or(0) != replicas
        || status.available_replicas.unwrap_or(0) != replicas
    {
        return false;
    }
    let replica_sets: Api<ReplicaSet> = Api::namespaced(observer.clone(), "default");
    let revision = deployment
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION));
    let newest = replica_sets
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|rs| {
            rs.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION))
                == revision
        });
    let Some(hash) = newest.and_then(|rs| rs.metadata.labels?.get(HASH).cloned()) else {
        return false;
    };
    let pods: Api<Pod> = Api::namespaced(observer.clone(), "default");
    let pods = pods.list(&ListParams::default()).await.unwrap().items;
    usize::try_from(replicas).unwrap() == pods.len()
        && pods
            .iter()
            .all(|pod| is_active(pod) && is_ready(pod) && hash_of(pod) == hash)
}

async fn wait_complete(cluster: &Cluster, replicas: i32, within: Duration) {
    let done = cluster
        .wait_until(within, || rollout_complete(cluster.observer(), replicas))
        .await;
    if !done {
        let pods: Api<Pod> = Api::namespaced(cluster.observer().clone(), "default");
        let pods = pods.list(&ListParams::default()).await.unwrap().items;
        let deployments: Api<Deployment> = Api::namespaced(cluster.observer().clone(), "default");
        panic!(
            "seed {}: the rollout of {replicas} did not complete within {within:?}: status {:?}, {} pods",
            cluster.seed(),
            deployments.get("web").await.ok().and_then(|d| d.status),
            pods.len(),
        );
    }
}

/// Sets the image of `web`'s only container (retrying on conflicts).
async fn set_image(client: &Client, image: &str) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    loop {
        let mut deployment = deployments.get("web").await.unwrap();
        let template = deployment
            .spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap();
        template.containers[0].image = Some(image.to_owned());
        match deployments
            .replace("web", &PostParams::default(), &deployment)
            .await
        {
            Ok(_) => return,
            Err(error) if error.code == 409 => continue,
            Err(error) => panic!("cannot update the image: {error}"),
        }
    }
}

/// Creates `web` at v1, waits for it, starts the checker, rolls out v2 and waits for that: the
/// census of the rollout.
async fn roll_out(cluster: &Cluster, replicas: i32, strategy: serde_json::Value) -> Census {
    let deployments: Api<Deployment> = Api::namespaced(cluster.client().clone(), "default");
    deployments
        .create(
            &PostParams::default(),
            &deployment(replicas, strategy, "web:v1"),
        )
        .await
        .unwrap();
    wait_complete(cluster, replicas, Duration::from_secs(120)).await;
    let census = start_checker(cluster).await;
    set_image(cluster.client(), "web:v2").await;
    wait_complete(cluster, replicas, Duration::from_secs(600)).await;
    // Let the checker drain the last events.
    cluster.run_for(Duration::from_millis(100)).await;
    census.lock().unwrap().clone()
}

#[test]
fn rolling_updates_keep_within_max_surge_and_max_unavailable() {
    use serde_json::json;
    let pairs = [
        (json!("25%"), json!("25%")),
        (json!(0), json!(1)),
        (json!(1), json!(0)),
        (json!(3), json!(0)),
        (json!(0), json!("50%")),
        (json!("100%"), json!(0)),
        (json!("50%"), json!("50%")),
        (json!(2), json!(2)),
        (json!("10%"), json!("10%")),
        (json!(0), json!("10%")),
    ];
    let mut seed = 100;
    for replicas in [1, 3, 10, 100] {
        for (surge, unavailable) in &pairs {
            seed += 1;
            let (max_surge, max_unavailable) = fenceposts(replicas, surge, unavailable);
            let census = simulator::simulate(seed, |seed| async move {
                let cluster = start(seed, None).await;
                roll_out(
                    &cluster,
                    replicas,
                    rolling(surge.clone(), unavailable.clone()),
                )
                .await
            });
            println!(
                "replicas {replicas} surge {surge} unavailable {unavailable}: {} events, at most {} active (limit {}), at least {} available (limit {})",
                census.events,
                census.max_active,
                replicas + max_surge,
                census.min_available,
                replicas - max_unavailable,
            );
            assert!(census.events > 0, "the checker saw the rollout");
            assert!(
                census.max_active <= usize::try_from(replicas + max_surge).unwrap(),
                "seed {seed}: {} active pods, above {replicas} + {max_surge}",
                census.max_active
            );
            assert!(
                i32::try_from(census.min_available).unwrap() >= replicas - max_unavailable,
                "seed {seed}: {} available pods, below {replicas} - {max_unavailable}",
                census.min_available
            );
        }
    }
}

#[test]
fn recreate_never_runs_two_templates_at_once() {
    for (index, replicas) in [1, 3, 10, 100].into_iter().enumerate() {
        let seed = 200 + u64::try_from(index).unwrap();
        let census = simulator::simulate(seed, |seed| async move {
            let cluster = start(seed, None).await;
            roll_out(&cluster, replicas, serde_json::json!({"type": "Recreate"})).await
        });
        println!(
            "Recreate of {replicas}: {} events, at most {} templates at once",
            census.events, census.max_templates
        );
        assert!(census.events > 0);
        assert_eq!(
            census.unlabelled, 0,
            "every pod carries its template's hash"
        );
        assert_eq!(
            census.max_templates, 1,
            "seed {seed}: two templates at once"
        );
        assert_eq!(
            census.min_available, 0,
            "Recreate stops every old pod first"
        );
    }
}

/// A ReplicaSet of 30 replicas created, scaled to 50, then down to 10, under faulty watches
/// (events late, twice, out of order; watches broken) with the controller manager killed and
/// restarted at random moments: there is no surge to hide extra pods behind, so any pod above
/// `replicas` is over-creation. The steady state must be exactly `replicas`; the transient peak
/// above the replicas asked for at the time is reported.
#[test]
fn faulty_watches_and_restarts_never_over_create_replica_set_pods() {
    let mut peak_overshoot = 0;
    for seed in 320..340 {
        let overshoot = simulator::simulate(seed, |seed| async move {
            let mut cluster = start(seed, Some(ChaosConfig::default())).await;
            let census = start_checker(&cluster).await;
            let replica_sets: Api<ReplicaSet> =
                Api::namespaced(cluster.client().clone(), "default");
            let template = deployment(30, rolling(0.into(), 1.into()), "web:v1")
                .spec
                .unwrap()
                .template;
            let replica_set: ReplicaSet = serde_json::from_value(serde_json::json!({
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {
                    "replicas": 30,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": template,
                },
            }))
            .unwrap();
            replica_sets
                .create(&PostParams::default(), &replica_set)
                .await
                .unwrap();
            let mut overshoot = 0;
            // While scaling from `before` to `replicas`, no more than the larger may exist.
            let mut before = 30;
            for (replicas, next) in [(30_usize, 50_usize), (50, 10), (10, 10)] {
                for _ in 0..2 {
                    let pause = ms(&mut cluster, 0, 400);
                    cluster.run_for(pause).await;
                    cluster.kill(MANAGER);
                    let down = ms(&mut cluster, 0, 300);
                    cluster.run_for(down).await;
                    start_manager(&mut cluster);
                }
                let pods: Api<Pod> = Api::namespaced(cluster.observer().clone(), "default");
                let settled = cluster
                    .wait_until(Duration::from_secs(300), || async {
                        let pods = pods.list(&ListParams::default()).await.unwrap().items;
                        pods.len() == replicas && pods.iter().all(is_ready)
                    })
                    .await;
                assert!(settled, "seed {seed}: {replicas} replicas never settled");
                // The steady state: nothing more happens.
                cluster.run_for(Duration::from_secs(10)).await;
                let pods = pods.list(&ListParams::default()).await.unwrap().items;
                assert_eq!(pods.len(), replicas, "seed {seed}: steady state");
                {
                    let mut seen = census.lock().unwrap();
                    let bound = before.max(replicas);
                    overshoot = overshoot.max(seen.max_active.saturating_sub(bound));
                    seen.max_active = 0;
                }
                before = replicas;
                let mut scaled = replica_sets.get("web").await.unwrap();
                scaled.spec.as_mut().unwrap().replicas = Some(i32::try_from(next).unwrap());
                replica_sets
                    .replace("web", &PostParams::default(), &scaled)
                    .await
                    .unwrap();
            }
            overshoot
        });
        println!("seed {seed}: peak overshoot {overshoot}");
        peak_overshoot = peak_overshoot.max(overshoot);
    }
    println!(
        "RESULT replica_set_peak_overshoot {peak_overshoot} pods (30 -> 50 -> 10 replicas, 20 seeds, faulty watches, 6 restarts each)"
    );
    assert_eq!(
        peak_overshoot, 0,
        "a ReplicaSet created pods beyond its replicas"
    );
}

/// A rollout of 20 replicas (surge 25%) under faulty watches, with the controller manager
/// killed and restarted at random moments: the steady state is exactly `replicas` pods, and the
/// overshoot on the way is bounded by the surge.
#[test]
fn faulty_watches_and_restarts_never_leave_extra_pods() {
    let mut peak_overshoot = 0;
    for seed in 300..310 {
        let overshoot = simulator::simulate(seed, |seed| async move {
            let chaos = ChaosConfig::default();
            let mut cluster = start(seed, Some(chaos)).await;
            let census = start_checker(&cluster).await;
            let deployments: Api<Deployment> = Api::namespaced(cluster.client().clone(), "default");
            let strategy = rolling(serde_json::json!("25%"), serde_json::json!(0));
            deployments
                .create(&PostParams::default(), &deployment(20, strategy, "web:v1"))
                .await
                .unwrap();
            for round in 0..4 {
                let pause = ms(&mut cluster, 50, 1_500);
                cluster.run_for(pause).await;
                cluster.kill(MANAGER);
                cluster.run_for(Duration::from_millis(200)).await;
                start_manager(&mut cluster);
                if round == 1 {
                    set_image(cluster.client(), "web:v2").await;
                }
            }
            wait_complete(&cluster, 20, Duration::from_secs(600)).await;
            // The steady state: nothing more happens, and exactly 20 pods exist.
            cluster.run_for(Duration::from_secs(30)).await;
            let pods: Api<Pod> = Api::namespaced(cluster.observer().clone(), "default");
            let pods = pods.list(&ListParams::default()).await.unwrap().items;
            assert_eq!(pods.len(), 20, "seed {seed}: steady state");
            let census = census.lock().unwrap().clone();
            census.max_active.saturating_sub(20)
        });
        assert!(
            overshoot <= 5,
            "seed {seed}: {overshoot} pods above 20, more than the surge of 5"
        );
        peak_overshoot = peak_overshoot.max(overshoot);
    }
    println!(
        "RESULT rollout_peak_overshoot {peak_overshoot} pods above replicas (20 replicas, surge 5, 10 seeds, faulty watches, 4 restarts each)"
    );
}

#[test]
fn rollback_runs_the_old_template_as_the_newest_revision() {
    simulator::simulate(400, |seed| async move {
        let cluster = start(seed, None).await;
        let client = cluster.client().clone();
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
        let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
        let strategy = rolling(serde_json::json!("25%"), serde_json::json!("25%"));
        deployments
            .create(&PostParams::default(), &deployment(4, strategy, "web:v1"))
            .await
            .unwrap();
        wait_complete(&cluster, 4, Duration::from_secs(120)).await;
        for image in ["web:v2", "web:v3"] {
            set_image(&client, image).await;
            wait_complete(&cluster, 4, Duration::from_secs(120)).await;
        }
        let revisions = |sets: Vec<ReplicaSet>| -> BTreeMap<String, (String, Option<String>)> {
            sets.into_iter()
                .map(|rs| {
                    let image = rs.spec.unwrap().template.unwrap().spec.unwrap().containers[0]
                        .image
                        .clone()
                        .unwrap();
                    let annotations = rs.metadata.annotations.unwrap_or_default();
                    (
                        image,
                        (
                            annotations[REVISION].clone(),
                            annotations.get(REVISION_HISTORY).cloned(),
                        ),
                    )
                })
                .collect()
        };
        let before = revisions(
            replica_sets
                .list(&ListParams::default())
                .await
                .unwrap()
                .items,
        );
        assert_eq!(before["web:v1"].0, "1");
        assert_eq!(before["web:v2"].0, "2");
        assert_eq!(before["web:v3"].0, "3");

        rollback(&deployments, &replica_sets, "web", Some(1))
            .await
            .unwrap();
        wait_complete(&cluster, 4, Duration::from_secs(120)).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        for pod in pods.list(&ListParams::default()).await.unwrap().items {
            assert_eq!(
                pod.spec.unwrap().containers[0].image.as_deref(),
                Some("web:v1")
            );
        }
        let after = revisions(
            replica_sets
                .list(&ListParams::default())
                .await
                .unwrap()
                .items,
        );
        assert_eq!(after.len(), 3, "no new ReplicaSet: v1's is reused");
        assert_eq!(after["web:v1"], ("4".to_owned(), Some("1".to_owned())));
        assert_eq!(after["web:v2"].0, "2");
        assert_eq!(after["web:v3"].0, "3");
        let web = deployments.get("web").await.unwrap();
        assert_eq!(web.metadata.annotations.unwrap()[REVISION], "4");

        // `kubectl rollout undo` with no revision goes back to the previous one: v3.
        rollback(&deployments, &replica_sets, "web", None)
            .await
            .unwrap();
        wait_complete(&cluster, 4, Duration::from_secs(120)).await;
        let last = revisions(
            replica_sets
                .list(&ListParams::default())
                .await
                .unwrap()
                .items,
        );
        assert_eq!(last["web:v3"], ("5".to_owned(), Some("3".to_owned())));
    });
}

/// The controller manager killed at random points of a rollout, over 100 seeds, with faulty
/// watches: every run ends with the new template running on exactly `replicas` pods.
#[test]
fn the_controller_manager_killed_at_random_points_always_converges() {
    for seed in 1_000..1_100 {
        simulator::simulate(seed, |seed| async move {
            let chaos = ChaosConfig::default();
            let mut cluster = start(seed, Some(chaos)).await;
            let deployments: Api<Deployment> = Api::namespaced(cluster.client().clone(), "default");
            let strategy = rolling(serde_json::json!(2), serde_json::json!(1));
            deployments
                .create(&PostParams::default(), &deployment(8, strategy, "web:v1"))
                .await
                .unwrap();
            wait_complete(&cluster, 8, Duration::from_secs(300)).await;
            set_image(cluster.client(), "web:v2").await;
            let kills = 1 + cluster.rng().below(3);
            for _ in 0..kills {
                let at = ms(&mut cluster, 0, 2_000);
                cluster.run_for(at).await;
                cluster.kill(MANAGER);
                let down = ms(&mut cluster, 0, 500);
                cluster.run_for(down).await;
                start_manager(&mut cluster);
            }
            wait_complete(&cluster, 8, Duration::from_secs(600)).await;
        });
    }
}
