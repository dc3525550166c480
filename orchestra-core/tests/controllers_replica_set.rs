//! The ReplicaSet controller: scaling, selectors, ReplicationControllers, adoption and release,
//! the deletion ranking, status, ReplicaFailure, and no over-creation under chaos and restarts.
#![cfg(feature = "testing")]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use orchestra_core::api::admission::{Admission, AdmissionRequest, Operation};
use orchestra_core::api::{Api, Client, ListParams, PostParams, WatchEvent, WatchParams};
use orchestra_core::clock::TokioClock;
use orchestra_core::controllers::pods;
use orchestra_core::controllers::replica_set::ReplicaSetController;
use orchestra_core::k8s::api::apps::v1::ReplicaSet;
use orchestra_core::k8s::api::core::v1::{Event, Pod, ReplicationController};
use orchestra_core::resource::DynamicObject;
use orchestra_core::simulator::{
    self, BEHAVIOUR_LABEL, ChaosConfig, Cluster, ClusterConfig, NODE_AGENT,
};
use orchestra_core::status::{StatusError, StatusReason};
use orchestra_core::store::MemoryStore;
use serde_json::{Value, json};

const CONTROLLER: &str = "replicaset-controller";

fn replica_set(name: &str, replicas: i32, selector: Value, labels: Value) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": selector,
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]},
            },
        },
    }))
    .unwrap()
}

fn simple_replica_set(name: &str, replicas: i32) -> ReplicaSet {
    replica_set(
        name,
        replicas,
        json!({"matchLabels": {"app": name}}),
        json!({"app": name}),
    )
}

fn orphan(name: &str, labels: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]},
    }))
    .unwrap()
}

fn start_controller(cluster: &mut Cluster) {
    let controller = ReplicaSetController::new(cluster.client().clone());
    cluster.spawn(CONTROLLER, controller.run(std::future::pending()));
}

/// The active pods the object with `uid` controls, as the store has them.
async fn controlled(client: &Client, uid: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(pods::is_active)
        .filter(|pod| pods::controller_of(&pod.metadata).is_some_and(|owner| owner.uid == uid))
        .collect()
}

async fn scale(client: &Client, name: &str, replicas: i32) {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    for _ in 0..10 {
        let mut current = api.get(name).await.unwrap();
        if let Some(spec) = current.spec.as_mut() {
            spec.replicas = Some(replicas);
        }
        match api.replace(name, &PostParams::default(), &current).await {
            Ok(_) => return,
            Err(error) if error.is_conflict() => continue,
            Err(error) => panic!("scale {name}: {error}"),
        }
    }
    panic!("scale {name}: too many conflicts");
}

async fn wait_for_count(cluster: &Cluster, uid: &str, count: usize) -> bool {
    cluster
        .wait_until(Duration::from_secs(30), || async {
            controlled(cluster.observer(), uid).await.len() == count
        })
        .await
}

fn uid_of<K: orchestra_core::resource::Resource>(object: &K) -> String {
    object.meta().uid.clone().unwrap()
}

#[test]
fn scales_up_down_and_to_zero() {
    simulator::simulate(11, |seed| async move {
        let mut cluster = Cluster::start(ClusterConfig::seeded(seed)).await.unwrap();
        start_controller(&mut cluster);
        let api: Api<ReplicaSet> = Api::namespaced(cluster.observer().clone(), "default");
        let web = api
            .create(&PostParams::default(), &simple_replica_set("web", 3))
            .await
            .unwrap();
        let uid = uid_of(&web);
        for replicas in [3, 7, 2, 0, 4] {
            scale(cluster.observer(), "web", replicas).await;
            assert!(
                wait_for_count(&cluster, &uid, replicas as usize).await,
                "{replicas} replicas"
            );
            cluster.run_for(Duration::from_secs(2)).await;
            assert_eq!(
                controlled(cluster.observer(), &uid).await.len(),
                replicas as usize
            );
            let status = api.get("web").await.unwrap().status.unwrap();
            assert_eq!(status.replicas, replicas);
            assert_eq!(status.ready_replicas, Some(replicas));
        }
    });
}

#[test]
fn set_based_selectors_choose_the_pods() {
    simulator::simulate(12, |seed| async move {
        let mut cluster = Cluster::start(ClusterConfig::seeded(seed)).await.unwrap();
        let pods_api: Api<Pod> = Api::namespaced(cluster.observer().clone(), "default");
        // Matches everything but `env notin (prod)`: never adopted.
        pods_api
            .create(
                &PostParams::default(),
                &orphan(
                    "prod",
                    json!({"app": "set", "tier": "front", "env": "prod", "track": "x"}),
                ),
            )
            .await
            .unwrap();
        // Lacks `track`: never adopted.
        pods_api
            .create(
                &PostParams::default(),
                &orphan("untracked", json!({"app": "set", "tier": "front"})),
            )
            .await
            .unwrap();
        start_controller(&mut cluster);
        let selector = json!({
            "matchLabels": {"app": "set"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                {"key": "track", "operator": "Exists"},
            ],
        });
        let labels = json!({"app": "set", "tier": "edge", "track": "stable"});
        let api: Api<ReplicaSet> = Api::namespaced(cluster.observer().clone(), "default");
        let created = api
            .create(
                &PostParams::default(),
                &replica_set("set", 2, selector, labels),
            )
            .await
            .unwrap();
        let uid = uid_of(&created);
        assert!(wait_for_count(&cluster, &uid, 2).await);
        cluster.run_for(Duration::from_secs(2)).await;
        assert_eq!(controlled(cluster.observer(), &uid).await.len(), 2);
        for name in ["prod", "untracked"] {
            let pod = pods_api.get(name).await.unwrap();
            assert!(
                pods::controller_of(&pod.metadata).is_none(),
                "{name} adopted"
            );
        }
    });
}

#[test]
fn replication_controllers_use_equality_selectors() {
    simulator::simulate(13, |seed| async move {
        let mut cluster = Cluster::start(ClusterConfig::seeded(seed)).await.unwrap();
        let controller = ReplicaSetController::replication_controllers(cluster.client().clone());
        cluster.spawn(CONTROLLER, controller.run(std::future::pending()));
        let api: Api<ReplicationController> =
            Api::namespaced(cluster.observer().clone(), "default");
        let rc: ReplicationController = serde_json::from_value(json!({
            "metadata": {"name": "legacy", "namespace": "default"},
            "spec": {
                "replicas": 3,
                "selector": {"app": "legacy"},
                "template": {
                    "metadata": {"labels": {"app": "legacy", "extra": "yes"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx"}]},
                },
            },
        }))
        .unwrap();
        let rc = api.create(&PostParams::default(), &rc).await.unwrap();
        let uid = uid_of(&rc);
        assert!(wait_for_count(&cluster, &uid, 3).await);
        let pod = &controlled(cluster.observer(), &uid).await[0];
        let owner = pods::controller_of(&pod.metadata).unwrap();
        assert_eq!(
            (owner.kind.as_str(), owner.api_version.as_str()),
            ("ReplicationController", "v1")
        );
        // Scale down through the object itself.
        let mut current = api.get("legacy").await.unwrap();
        current.spec.as_mut().unwrap().replicas = Some(1);
        api.replace("legacy", &PostParams::default(), &current)
            .await
            .unwrap();
        assert!(wait_for_count(&cluster, &uid, 1).await);
        let ready = cluster
            .wait_until(Duration::from_secs(10), || async {
                api.get("legacy")
                    .await
                    .unwrap()
                    .status
                    .is_some_and(|status| {
                        status.replicas == 1
                            && status.fully_labeled_replicas == Some(1)
                            && status.ready_replicas == Some(1)
                    })
            })
            .await;
        assert!(ready);
    });
}

#[test]
fn orphans_are_adopted_and_mismatching_pods_released() {
    simulator::simulate(14, |seed| async move {
        let mut cluster = Cluster::start(ClusterConfig::seeded(seed)).await.unwrap();
        let pods_api: Api<Pod> = Api::namespaced(cluster.observer().clone(), "default");
        pods_api
            .create(
                &PostParams::default(),
                &orphan("stray", json!({"app": "web"})),
            )
            .await
            .unwrap();
        start_controller(&mut cluster);
        let api: Api<ReplicaSet> = Api::namespaced(cluster.observer().clone(), "default");
        let web = api
            .create(&PostParams::default(), &simple_replica_set("web", 2))
            .await
            .unwrap();
        let uid = uid_of(&web);
        assert!(wait_for_count(&cluster, &uid, 2).await);
        cluster.run_for(Duration::from_secs(2)).await;
        let stray = pods_api.get("stray").await.unwrap();
        let owner = pods::controller_of(&stray.metadata).expect("adopted");
        assert_eq!(owner.uid, uid);
        assert_eq!(owner.block_owner_deletion, Some(true));
        // Only one pod was created: two in all.
        let all = pods_api.list(&ListParams::default()).await.unwrap().items;
        assert_eq!(all.len(), 2);

        // The stray pod's labels change: it is released and replaced.
        let mut changed = pods_api.get("stray").await.unwrap();
        changed
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("app".into(), "other".into());
        pods_api
            .replace("stray", &PostParams::default(), &changed)
            .await
            .unwrap();
        let released = cluster
            .wait_until(Duration::from_secs(10), || async {
                pods_api
                    .get("stray")
                    .await
                    .is_ok_and(|pod| pods::controller_of(&pod.metadata).is_none())
            })
            .await;
        assert!(released);
        assert!(wait_for_count(&cluster, &uid, 2).await);
        cluster.run_for(Duration::from_secs(2)).await;
        let names: BTreeSet<String> = controlled(cluster.observer(), &uid)
            .await
            .into_iter()
            .map(|pod| pod.metadata.name.unwrap())
            .collect();
        assert_eq!(names.len(), 2);
        assert!(!names.contains("stray"));
    });
}

#[test]
fn scale_down_deletes_unscheduled_then_not_ready_then_newest() {
    simulator::simulate(15, |seed| async move {
        let mut cluster = Cluster::start(ClusterConfig::seeded(seed)).await.unwrap();
        let pods_api: Api<Pod> = Api::namespaced(cluster.observer().clone(), "default");
        let create = |name: &'static str, behaviour: &'static str| {
            let pods_api = pods_api.clone();
            async move {
                pods_api
                    .create(
                        &PostParams::default(),
                        &orphan(name, json!({"app": "rank", BEHAVIOUR_LABEL: behaviour})),
                    )
                    .await
                    .unwrap();
            }
        };
        create("ready-old", "ready").await;
        cluster.run_for(Duration::from_secs(2)).await;
        create("not-ready", "never-ready").await;
        create("pending", "pending").await;
        create("ready-new", "ready").await;
        cluster.run_for(Duration::from_secs(2)).await;
        cluster.kill(NODE_AGENT);
        create("unscheduled", "ready").await;

        start_controller(&mut cluster);
        let api: Api<ReplicaSet> = Api::namespaced(cluster.observer().clone(), "default");
        let rank = api
            .create(&PostParams::default(), &simple_replica_set("rank", 5))
            .await
            .unwrap();
        let uid = uid_of(&rank);
        assert!(wait_for_count(&cluster, &uid, 5).await);
        cluster.run_for(Duration::from_secs(1)).await;
        assert_eq!(
            pods_api
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .len(),
            5,
            "adopted, none created"
        );
        let mut deleted = Vec::new();
        for replicas in (1..5).rev() {
            let before: BTreeSet<String> = controlled(cluster.observer(), &uid)
                .await
                .into_iter()
                .map(|pod| pod.metadata.name.unwrap())
                .collect();
            scale(cluster.observer(), "rank", replicas).await;
            assert!(wait_for_count(&cluster, &uid, replicas as usize).await);
            let after: BTreeSet<String> = controlled(cluster.observer(), &uid)
                .await
                .into_iter()
                .map(|pod| pod.metadata.name.unwrap())
                .collect();
            deleted.extend(before.difference(&after).cloned());
        }
        assert_eq!(
            deleted,
            ["unscheduled", "pending", "not-ready", "ready-new"]
        );
    });
}

#[test]
fn status_counts_labeled_ready_and_available_pods() {
    simulator::simulate(16, |seed| async move {
        let mut cluster = Cluster::start(ClusterConfig::seeded(seed)).await.unwrap();
        let pods_api: Api<Pod> = Api::namespaced(cluster.observer().clone(), "default");
        // Matches the selector but lacks the template's `tier` label.
        pods_api
            .create(
                &PostParams::default(),
                &orphan("partial", json!({"app": "st"})),
            )
            .await
            .unwrap();
        start_controller(&mut cluster);
        let mut st = replica_set(
            "st",
            3,
            json!({"matchLabels": {"app": "st"}}),
            json!({"app": "st", "tier": "web"}),
        );
        st.spec.as_mut().unwrap().min_ready_seconds = Some(30);
        let api: Api<ReplicaSet> = Api::namespaced(cluster.observer().clone(), "default");
        let st = api.create(&PostParams::default(), &st).await.unwrap();
        let uid = uid_of(&st);
        assert!(wait_for_count(&cluster, &uid, 3).await);
        let all_ready = cluster
            .wait_until(Duration::from_secs(10), || async {
                api.get("st")
                    .await
                    .unwrap()
                    .status
                    .is_some_and(|status| status.ready_replicas == Some(3))
            })
            .await;
        assert!(all_ready);
        let status = api.get("st").await.unwrap().status.unwrap();
        assert_eq!(status.replicas, 3);
        assert_eq!(status.fully_labeled_replicas, Some(2));
        assert_eq!(status.available_replicas, Some(0), "not ready for 30 s yet");
        assert_eq!(status.observed_generation, Some(1));
        // Nothing changes meanwhile: the controller looks again when they become available.
        cluster.run_for(Duration::from_secs(32)).await;
        let status = api.get("st").await.unwrap().status.unwrap();
        assert_eq!(status.available_replicas, Some(3));

        scale(cluster.observer(), "st", 4).await;
        let generation = api.get("st").await.unwrap().metadata.generation;
        let observed = cluster
            .wait_until(Duration::from_secs(10), || async {
                api.get("st").await.unwrap().status.is_some_and(|status| {
                    status.observed_generation == generation && status.replicas == 4
                })
            })
            .await;
        assert!(observed);
        assert!(status.conditions.is_none());
    });
}

/// Refuses pod creations while `refuse` is set.
#[derive(Debug)]
struct RefusePods {
    refuse: Arc<AtomicBool>,
}

#[async_trait]
impl Admission for RefusePods {
    fn name(&self) -> &str {
        "RefusePods"
    }

    async fn validate(
        &self,
        request: &AdmissionRequest<'_>,
        _object: &DynamicObject,
    ) -> Result<(), StatusError> {
        if request.operation == Operation::Create
            && request.resource.kind == "Pod"
            && self.refuse.load(Ordering::SeqCst)
        {
            return Err(StatusError::new(
                StatusReason::Forbidden,
                "pods: exceeded quota: compute-resources",
            ));
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn failing_creations_set_replica_failure_until_they_succeed() {
    let refuse = Arc::new(AtomicBool::new(true));
    let client = Client::builder(MemoryStore::new())
        .clock(TokioClock::starting_at(
            jiff::Timestamp::from_second(1_800_000_000).unwrap(),
        ))
        .admission(RefusePods {
            refuse: Arc::clone(&refuse),
        })
        .seed(7)
        .build();
    client.bootstrap().await.unwrap();
    let running =
        tokio::spawn(ReplicaSetController::new(client.clone()).run(std::future::pending::<()>()));
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &simple_replica_set("quota", 2))
        .await
        .unwrap();
    let mut failure = None;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let conditions = api
            .get("quota")
            .await
            .unwrap()
            .status
            .and_then(|status| status.conditions)
            .unwrap_or_default();
        failure = conditions
            .into_iter()
            .find(|condition| condition.type_ == "ReplicaFailure");
        if failure.is_some() {
            break;
        }
    }
    let failure = failure.expect("a ReplicaFailure condition");
    assert_eq!(failure.status, "True");
    assert_eq!(failure.reason.as_deref(), Some("FailedCreate"));
    assert!(
        failure
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("exceeded quota"),
        "{failure:?}"
    );

    refuse.store(false, Ordering::SeqCst);
    let mut healed = false;
    for _ in 0..2000 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = api.get("quota").await.unwrap().status.unwrap_or_default();
        if status.replicas == 2 && status.conditions.is_none() {
            healed = true;
            break;
        }
    }
    assert!(healed, "the condition is removed once creations succeed");
    running.abort();
}

/// Every pod of the run, as an observer's watch reports them: names created, and the peak number
/// of active pods.
#[derive(Debug, Default)]
struct Census {
    created: BTreeSet<String>,
    active: BTreeMap<String, bool>,
    peak: usize,
}

impl Census {
    fn record(&mut self, pod: &Pod, deleted: bool) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.created.insert(name.clone());
        self.active.insert(name, !deleted && pods::is_active(pod));
        let active = self.active.values().filter(|active| **active).count();
        self.peak = self.peak.max(active);
    }

    fn active(&self) -> usize {
        self.active.values().filter(|active| **active).count()
    }

    fn reset_peak(&mut self) {
        self.peak = self.active();
    }
}

async fn watch_census(cluster: &mut Cluster) -> Arc<Mutex<Census>> {
    let census = Arc::new(Mutex::new(Census::default()));
    let pods_api: Api<Pod> = Api::namespaced(cluster.observer().clone(), "default");
    let mut events = pods_api.watch(&WatchParams::default(), "0").await.unwrap();
    let recording = Arc::clone(&census);
    cluster.spawn("census", async move {
        while let Some(event) = events.next().await {
            let mut census = recording.lock().unwrap();
            match event {
                WatchEvent::Added(pod) | WatchEvent::Modified(pod) => census.record(&pod, false),
                WatchEvent::Deleted(pod) => census.record(&pod, true),
                _ => {}
            }
        }
    });
    census
}

/// Scales to `replicas`, killing and restarting the controller `kills` times at random moments
/// meanwhile, and waits for the steady state. Returns the peak number of active pods.
async fn scale_with_restarts(
    cluster: &mut Cluster,
    census: &Arc<Mutex<Census>>,
    uid: &str,
    replicas: i32,
    kills: usize,
) -> usize {
    census.lock().unwrap().reset_peak();
    scale(cluster.observer(), "chaos", replicas).await;
    for _ in 0..kills {
        let pause = cluster
            .rng()
            .between(Duration::from_millis(1), Duration::from_millis(300));
        cluster.run_for(pause).await;
        cluster.kill(CONTROLLER);
        let down = cluster
            .rng()
            .between(Duration::ZERO, Duration::from_millis(200));
        cluster.run_for(down).await;
        start_controller(cluster);
    }
    assert!(
        wait_for_count(cluster, uid, replicas as usize).await,
        "seed {}: {replicas} replicas reached",
        cluster.seed()
    );
    // Steady: it stays there.
    cluster.run_for(Duration::from_secs(5)).await;
    assert_eq!(
        controlled(cluster.observer(), uid).await.len(),
        replicas as usize,
        "seed {}",
        cluster.seed()
    );
    census.lock().unwrap().peak
}

#[test]
fn no_over_creation_under_chaos_and_restarts() {
    for seed in [21, 22, 23, 24, 25, 26] {
        simulator::simulate(seed, |seed| async move {
            let mut cluster =
                Cluster::start(ClusterConfig::seeded(seed).chaos(ChaosConfig::default()))
                    .await
                    .unwrap();
            let census = watch_census(&mut cluster).await;
            start_controller(&mut cluster);
            let api: Api<ReplicaSet> = Api::namespaced(cluster.observer().clone(), "default");
            let rs = api
                .create(&PostParams::default(), &simple_replica_set("chaos", 0))
                .await
                .unwrap();
            let uid = uid_of(&rs);
            let mut peaks = Vec::new();
            for (replicas, kills) in [(40, 3), (60, 2), (15, 2), (50, 3)] {
                let growing = replicas > census.lock().unwrap().active() as i32;
                let created_before = census.lock().unwrap().created.len();
                let peak = scale_with_restarts(&mut cluster, &census, &uid, replicas, kills).await;
                peaks.push((replicas, peak));
                if growing {
                    // Scaling up, no pod ever fails: exactly the missing pods were created.
                    assert!(
                        peak <= replicas as usize,
                        "seed {seed}: peak {peak} > {replicas}"
                    );
                    let created = census.lock().unwrap().created.len() - created_before;
                    assert!(
                        created <= replicas as usize,
                        "seed {seed}: {created} created"
                    );
                }
            }
            println!("seed {seed}: (replicas, peak active pods) {peaks:?}");
        });
    }
}

/// Many replicas at once: created fast, all of them, none more. (The release-mode figure for
/// 10,000 replicas is printed by the same test with `ORCHESTRA_RS_REPLICAS=10000`.)
#[test]
fn many_replicas_are_created_at_once() {
    let replicas: i32 = std::env::var("ORCHESTRA_RS_REPLICAS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(500);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = Client::new(MemoryStore::new());
        client.bootstrap().await.unwrap();
        let api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
        let rs = api
            .create(&PostParams::default(), &simple_replica_set("big", replicas))
            .await
            .unwrap();
        let uid = uid_of(&rs);
        let started = std::time::Instant::now();
        let running = tokio::spawn(
            ReplicaSetController::new(client.clone()).run(std::future::pending::<()>()),
        );
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let status = api.get("big").await.unwrap().status.unwrap_or_default();
            if status.replicas == replicas {
                break;
            }
        }
        let elapsed = started.elapsed();
        let pods_api: Api<Pod> = Api::namespaced(client.clone(), "default");
        let all = pods_api.list(&ListParams::default()).await.unwrap().items;
        println!("{replicas} replicas: pods created in {elapsed:?}");
        assert_eq!(all.len(), replicas as usize);
        assert_eq!(controlled(&client, &uid).await.len(), replicas as usize);
        running.abort();
    });
}

/// The Events recorded about the object named `name` of kind `kind`, oldest first.
async fn events_about(client: &Client, kind: &str, name: &str) -> Vec<Event> {
    let mut events: Vec<Event> = Api::<Event>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|event| {
            event.involved_object.kind.as_deref() == Some(kind)
                && event.involved_object.name.as_deref() == Some(name)
        })
        .collect();
    events.sort_by_key(|event| {
        event
            .metadata
            .resource_version
            .as_deref()
            .unwrap_or_default()
            .parse::<u64>()
            .unwrap()
    });
    events
}

/// The pod names of the events of `reason`, after `prefix` in their messages.
fn pods_named(events: &[Event], reason: &str, prefix: &str) -> Vec<String> {
    events
        .iter()
        .filter(|event| event.reason.as_deref() == Some(reason))
        .map(|event| {
            let message = event.message.as_deref().unwrap();
            message
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("{reason} message {message:?}"))
                .to_owned()
        })
        .collect()
}

#[test]
fn created_and_deleted_pods_are_recorded_as_events() {
    simulator::simulate(17, |seed| async move {
        let mut cluster = Cluster::start(ClusterConfig::seeded(seed)).await.unwrap();
        start_controller(&mut cluster);
        let api: Api<ReplicaSet> = Api::namespaced(cluster.observer().clone(), "default");
        let web = api
            .create(&PostParams::default(), &simple_replica_set("web", 3))
            .await
            .unwrap();
        let uid = uid_of(&web);
        assert!(wait_for_count(&cluster, &uid, 3).await);
        scale(cluster.observer(), "web", 1).await;
        assert!(wait_for_count(&cluster, &uid, 1).await);
        cluster.run_for(Duration::from_secs(2)).await;

        let events = events_about(cluster.observer(), "ReplicaSet", "web").await;
        for event in &events {
            assert_eq!(event.type_.as_deref(), Some("Normal"), "{event:?}");
            assert_eq!(event.count, Some(1));
            assert_eq!(event.involved_object.uid.as_deref(), Some(uid.as_str()));
            assert_eq!(
                event.source.as_ref().and_then(|s| s.component.as_deref()),
                Some("replicaset-controller")
            );
        }
        let created = pods_named(&events, "SuccessfulCreate", "Created pod: ");
        let deleted = pods_named(&events, "SuccessfulDelete", "Deleted pod: ");
        assert_eq!(created.len(), 3, "{events:?}");
        assert_eq!(deleted.len(), 2, "{events:?}");
        assert_eq!(events.len(), 5, "{events:?}");
        assert!(created.iter().all(|name| name.starts_with("web-")));
        let remaining: Vec<String> = controlled(cluster.observer(), &uid)
            .await
            .into_iter()
            .map(|pod| pod.metadata.name.unwrap())
            .collect();
        let mut accounted: Vec<String> = deleted.iter().chain(&remaining).cloned().collect();
        accounted.sort();
        let mut created_sorted = created.clone();
        created_sorted.sort();
        assert_eq!(
            accounted, created_sorted,
            "every created pod was deleted or remains"
        );
        // The creations come first.
        assert!(
            events[..3]
                .iter()
                .all(|event| event.reason.as_deref() == Some("SuccessfulCreate"))
        );
    });
}

#[test]
fn replication_controller_events_name_the_replication_controller() {
    simulator::simulate(18, |seed| async move {
        let mut cluster = Cluster::start(ClusterConfig::seeded(seed)).await.unwrap();
        let controller = ReplicaSetController::replication_controllers(cluster.client().clone());
        cluster.spawn(CONTROLLER, controller.run(std::future::pending()));
        let api: Api<ReplicationController> =
            Api::namespaced(cluster.observer().clone(), "default");
        let rc: ReplicationController = serde_json::from_value(json!({
            "metadata": {"name": "legacy", "namespace": "default"},
            "spec": {
                "replicas": 2,
                "selector": {"app": "legacy"},
                "template": {
                    "metadata": {"labels": {"app": "legacy"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx"}]},
                },
            },
        }))
        .unwrap();
        let rc = api.create(&PostParams::default(), &rc).await.unwrap();
        assert!(wait_for_count(&cluster, &uid_of(&rc), 2).await);
        cluster.run_for(Duration::from_secs(1)).await;
        let events = events_about(cluster.observer(), "ReplicationController", "legacy").await;
        assert_eq!(
            pods_named(&events, "SuccessfulCreate", "Created pod: ").len(),
            2,
            "{events:?}"
        );
        assert!(events.iter().all(|event| {
            event.source.as_ref().and_then(|s| s.component.as_deref())
                == Some("replication-controller")
        }));
    });
}

#[tokio::test(start_paused = true)]
async fn failed_creations_are_one_warning_event_counted() {
    let client = Client::builder(MemoryStore::new())
        .clock(TokioClock::starting_at(
            jiff::Timestamp::from_second(1_800_000_000).unwrap(),
        ))
        .admission(RefusePods {
            refuse: Arc::new(AtomicBool::new(true)),
        })
        .seed(8)
        .build();
    client.bootstrap().await.unwrap();
    let running =
        tokio::spawn(ReplicaSetController::new(client.clone()).run(std::future::pending::<()>()));
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &simple_replica_set("quota", 2))
        .await
        .unwrap();
    let mut failed = Vec::new();
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        failed = events_about(&client, "ReplicaSet", "quota")
            .await
            .into_iter()
            .filter(|event| event.reason.as_deref() == Some("FailedCreate"))
            .collect();
        if failed.iter().any(|event| event.count >= Some(10)) {
            break;
        }
    }
    // The retries (with back-off) fail alike: one Event, counted.
    assert_eq!(failed.len(), 1, "{failed:?}");
    let event = &failed[0];
    assert!(event.count >= Some(10), "{event:?}");
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(
        event.message.as_deref(),
        Some("Error creating: pods: exceeded quota: compute-resources")
    );
    assert_eq!(
        event.source.as_ref().and_then(|s| s.component.as_deref()),
        Some("replicaset-controller")
    );
    // Ten retries with back-off take more than a second (timestamps have seconds).
    assert!(
        event.last_timestamp.as_ref().unwrap().0 > event.first_timestamp.as_ref().unwrap().0,
        "{event:?}"
    );
    running.abort();
}
