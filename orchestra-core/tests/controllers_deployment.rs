//! The Deployment controller, beside the ReplicaSet controller, in the cluster simulator: a new
//! Deployment, rolling updates checked pod by pod against `maxSurge` and `maxUnavailable`,
//! Recreate, rollbacks and revisions, the revision history, pause and resume, the progress
//! deadline, proportional scaling in the middle of a rollout, and scaling to zero.
#![cfg(feature = "testing")]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use orchestra_core::api::{Api, Client, ListParams, PostParams, WatchEvent, WatchParams};
use orchestra_core::controllers::deployment::{
    self, DeploymentController, POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION, RollbackError, compute_hash,
};
use orchestra_core::controllers::pods;
use orchestra_core::controllers::replica_set::ReplicaSetController;
use orchestra_core::k8s::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet};
use orchestra_core::k8s::api::core::v1::{Event, Pod};
use orchestra_core::simulator::{
    self, AgentConfig, BEHAVIOUR_LABEL, ChaosConfig, Cluster, ClusterConfig,
};
use serde_json::json;

const NS: &str = "default";

fn web(replicas: i32, strategy: serde_json::Value, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": NS},
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
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
}

async fn start(seed: u64) -> Cluster {
    start_with(seed, ChaosConfig::none()).await
}

async fn start_with(seed: u64, chaos: ChaosConfig) -> Cluster {
    let config = ClusterConfig::seeded(seed).chaos(chaos).agent(AgentConfig {
        nodes: (0..5).map(|index| format!("node-{index}")).collect(),
        ..AgentConfig::default()
    });
    let mut cluster = Cluster::start(config).await.unwrap();
    let client = cluster.client().clone();
    cluster.spawn(
        "replicaset",
        ReplicaSetController::new(client.clone()).run(std::future::pending()),
    );
    cluster.spawn(
        "deployment",
        DeploymentController::new(client).run(std::future::pending()),
    );
    cluster
}

fn deployments(client: &Client) -> Api<Deployment> {
    Api::namespaced(client.clone(), NS)
}

fn replica_sets(client: &Client) -> Api<ReplicaSet> {
    Api::namespaced(client.clone(), NS)
}

async fn get(cluster: &Cluster) -> Deployment {
    deployments(cluster.observer()).get("web").await.unwrap()
}

async fn list_replica_sets(cluster: &Cluster) -> Vec<ReplicaSet> {
    let mut items = replica_sets(cluster.observer())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    items.sort_by_key(revision);
    items
}

async fn list_pods(cluster: &Cluster) -> Vec<Pod> {
    Api::<Pod>::namespaced(cluster.observer().clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

fn revision(rs: &ReplicaSet) -> i64 {
    deployment::revision(&rs.metadata).unwrap_or(0)
}

fn annotation<'a>(
    meta: &'a orchestra_core::k8s::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|spec| spec.replicas).unwrap_or(0)
}

fn image_of(rs: &ReplicaSet) -> String {
    rs.spec
        .as_ref()
        .unwrap()
        .template
        .as_ref()
        .unwrap()
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap()
}

fn condition(deployment: &Deployment, type_: &str) -> Option<DeploymentCondition> {
    deployment
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|condition| condition.type_ == type_)
        .cloned()
}

fn hash_of(pod: &Pod) -> String {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(POD_TEMPLATE_HASH_LABEL))
        .cloned()
        .unwrap_or_default()
}

/// Whether the rollout is complete and the pods agree: `replicas` pods, all ready, of the newest
/// template, and no old ReplicaSet asks for pods.
async fn complete(cluster: &Cluster, replicas: i32) -> bool {
    let Ok(deployment) = deployments(cluster.observer()).get("web").await else {
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
    let Some(current) = annotation(&deployment.metadata, REVISION_ANNOTATION) else {
        return false;
    };
    let all = list_replica_sets(cluster).await;
    let Some(newest) = all
        .iter()
        .find(|rs| annotation(&rs.metadata, REVISION_ANNOTATION) == Some(current))
    else {
        return false;
    };
    let hash = newest.metadata.labels.as_ref().unwrap()[POD_TEMPLATE_HASH_LABEL].clone();
    let pods = list_pods(cluster).await;
    all.iter()
        .all(|rs| rs.metadata.name == newest.metadata.name || spec_replicas(rs) == 0)
        && pods.len() == usize::try_from(replicas).unwrap()
        && pods
            .iter()
            .all(|pod| pods::is_active(pod) && pods::is_ready(pod) && hash_of(pod) == hash)
}

async fn wait_complete(cluster: &Cluster, replicas: i32, within: Duration) {
    if !cluster
        .wait_until(within, || complete(cluster, replicas))
        .await
    {
        let deployment = get(cluster).await;
        let sets: Vec<_> = list_replica_sets(cluster)
            .await
            .into_iter()
            .map(|rs| {
                (
                    rs.metadata.name.clone(),
                    rs.spec.map(|s| s.replicas),
                    rs.status,
                )
            })
            .collect();
        panic!(
            "seed {}: not complete with {replicas} within {within:?}: {:?}\n{sets:#?}",
            cluster.seed(),
            deployment.status
        );
    }
}

/// Sets the image of `web` (retrying on conflicts).
async fn update(client: &Client, change: impl Fn(&mut Deployment)) {
    let api = deployments(client);
    loop {
        let mut deployment = api.get("web").await.unwrap();
        change(&mut deployment);
        match api
            .replace("web", &PostParams::default(), &deployment)
            .await
        {
            Ok(_) => return,
            Err(error) if error.code == 409 => continue,
            Err(error) => panic!("cannot update web: {error}"),
        }
    }
}

async fn set_image(client: &Client, image: &str) {
    update(client, |deployment| {
        deployment
            .spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .image = Some(image.to_owned());
    })
    .await;
}

/// What the checker saw over every state the pods went through.
#[derive(Clone, Debug)]
struct Census {
    events: usize,
    max_active: usize,
    min_available: usize,
    max_templates: usize,
}

/// The checker's running counts: active and available pods, and pods per template.
#[derive(Default)]
struct Counts {
    active: usize,
    available: usize,
    templates: BTreeMap<String, usize>,
}

impl Counts {
    fn add(&mut self, pod: &Pod, sign: bool) {
        let change = |value: &mut usize| {
            if sign {
                *value += 1;
            } else {
                *value -= 1;
            }
        };
        if pods::is_active(pod) {
            change(&mut self.active);
            if pods::is_ready(pod) {
                change(&mut self.available);
            }
        }
        let count = self.templates.entry(hash_of(pod)).or_default();
        change(count);
        if *count == 0 {
            self.templates.remove(&hash_of(pod));
        }
    }
}

/// Watches every pod from the observer and records, at every event, the active and available
/// pods and the templates present.
async fn start_checker(cluster: &Cluster) -> Arc<Mutex<Census>> {
    let pods_api: Api<Pod> = Api::namespaced(cluster.observer().clone(), NS);
    let listed = pods_api.list(&ListParams::default()).await.unwrap();
    let mut counts = Counts::default();
    let mut state: BTreeMap<String, Pod> = BTreeMap::new();
    for pod in listed.items {
        counts.add(&pod, true);
        state.insert(pod.metadata.name.clone().unwrap(), pod);
    }
    let census = Arc::new(Mutex::new(Census {
        events: 0,
        max_active: counts.active,
        min_available: counts.available,
        max_templates: counts.templates.len(),
    }));
    let version = listed.metadata.resource_version.unwrap();
    let mut events = pods_api
        .watch(&WatchParams::default(), &version)
        .await
        .unwrap();
    let seen = Arc::clone(&census);
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            match event {
                WatchEvent::Added(pod) | WatchEvent::Modified(pod) => {
                    counts.add(&pod, true);
                    if let Some(previous) = state.insert(pod.metadata.name.clone().unwrap(), pod) {
                        counts.add(&previous, false);
                    }
                }
                WatchEvent::Deleted(pod) => {
                    if let Some(previous) = state.remove(pod.metadata.name.as_deref().unwrap()) {
                        counts.add(&previous, false);
                    }
                }
                WatchEvent::Bookmark(_) => continue,
                WatchEvent::Error(error) => panic!("the checker's watch failed: {error:?}"),
            }
            let mut census = seen.lock().unwrap();
            census.events += 1;
            census.max_active = census.max_active.max(counts.active);
            census.min_available = census.min_available.min(counts.available);
            census.max_templates = census.max_templates.max(counts.templates.len());
        }
    });
    census
}

#[test]
fn a_new_deployment_gets_a_replica_set_and_ready_pods() {
    simulator::simulate(1, |seed| async move {
        let cluster = start(seed).await;
        let created = deployments(cluster.client())
            .create(
                &PostParams::default(),
                &web(3, rolling(json!("25%"), json!("25%")), "web:v1"),
            )
            .await
            .unwrap();
        wait_complete(&cluster, 3, Duration::from_secs(30)).await;
        cluster.run_for(Duration::from_millis(100)).await;

        let sets = list_replica_sets(&cluster).await;
        assert_eq!(sets.len(), 1);
        let rs = &sets[0];
        let hash = compute_hash(&created.spec.as_ref().unwrap().template, None);
        assert_eq!(
            rs.metadata.name.as_deref(),
            Some(format!("web-{hash}").as_str())
        );
        assert_eq!(
            rs.metadata.labels.as_ref().unwrap()[POD_TEMPLATE_HASH_LABEL],
            hash
        );
        let spec = rs.spec.as_ref().unwrap();
        assert_eq!(
            spec.selector.match_labels.as_ref().unwrap()[POD_TEMPLATE_HASH_LABEL],
            hash
        );
        assert_eq!(
            spec.template
                .as_ref()
                .unwrap()
                .metadata
                .as_ref()
                .unwrap()
                .labels
                .as_ref()
                .unwrap()[POD_TEMPLATE_HASH_LABEL],
            hash
        );
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(annotation(&rs.metadata, REVISION_ANNOTATION), Some("1"));
        assert_eq!(
            annotation(&rs.metadata, "deployment.kubernetes.io/desired-replicas"),
            Some("3")
        );
        assert_eq!(
            annotation(&rs.metadata, "deployment.kubernetes.io/max-replicas"),
            Some("4")
        );
        let owner = pods::controller_of(&rs.metadata).unwrap();
        assert_eq!(owner.kind, "Deployment");
        assert_eq!(Some(&owner.uid), created.metadata.uid.as_ref());

        let deployment = get(&cluster).await;
        assert_eq!(
            annotation(&deployment.metadata, REVISION_ANNOTATION),
            Some("1")
        );
        let status = deployment.status.as_ref().unwrap();
        assert_eq!(status.observed_generation, deployment.metadata.generation);
        assert_eq!(status.replicas, Some(3));
        assert_eq!(status.updated_replicas, Some(3));
        assert_eq!(status.ready_replicas, Some(3));
        assert_eq!(status.available_replicas, Some(3));
        assert_eq!(status.unavailable_replicas, Some(0));
        let available = condition(&deployment, "Available").unwrap();
        assert_eq!(
            (available.status.as_str(), available.reason.as_deref()),
            ("True", Some("MinimumReplicasAvailable"))
        );
        let progressing = condition(&deployment, "Progressing").unwrap();
        assert_eq!(
            (progressing.status.as_str(), progressing.reason.as_deref()),
            ("True", Some("NewReplicaSetAvailable"))
        );
        let pods = list_pods(&cluster).await;
        assert_eq!(pods.len(), 3);
        assert!(pods.iter().all(|pod| hash_of(pod) == hash));
    });
}

/// Rolls `web` from v1 to v2 with the checker running; the census.
async fn roll_out(cluster: &Cluster, replicas: i32, strategy: serde_json::Value) -> Census {
    deployments(cluster.client())
        .create(&PostParams::default(), &web(replicas, strategy, "web:v1"))
        .await
        .unwrap();
    let wall = std::time::Instant::now();
    wait_complete(cluster, replicas, Duration::from_secs(60)).await;
    eprintln!(
        "created in {:?}, sim {:?}",
        wall.elapsed(),
        tokio::time::Instant::now()
    );
    let census = start_checker(cluster).await;
    set_image(cluster.client(), "web:v2").await;
    wait_complete(cluster, replicas, Duration::from_secs(300)).await;
    eprintln!(
        "rolled in {:?}, sim {:?}",
        wall.elapsed(),
        tokio::time::Instant::now()
    );
    cluster.run_for(Duration::from_millis(100)).await;
    census.lock().unwrap().clone()
}

#[test]
fn rolling_updates_keep_every_pod_state_within_surge_and_unavailability() {
    let cases = [
        (10, json!("25%"), json!("25%"), 3, 2),
        (10, json!(0), json!(1), 0, 1),
        (10, json!(3), json!(0), 3, 0),
        (5, json!(2), json!(2), 2, 2),
        (7, json!("50%"), json!("50%"), 4, 3),
        (1, json!("25%"), json!("25%"), 1, 0),
    ];
    for (index, (replicas, surge, unavailable, max_surge, max_unavailable)) in
        cases.into_iter().enumerate()
    {
        for seed in [10 + index as u64 * 7, 1000 + index as u64] {
            let (surge, unavailable) = (surge.clone(), unavailable.clone());
            let census = simulator::simulate(seed, |seed| async move {
                let cluster = start(seed).await;
                roll_out(&cluster, replicas, rolling(surge, unavailable)).await
            });
            let limit = usize::try_from(replicas + max_surge).unwrap();
            let floor = usize::try_from(replicas - max_unavailable).unwrap();
            assert!(census.events > 0);
            assert!(
                census.max_active <= limit,
                "seed {seed}, case {index}: {} active pods, limit {limit}",
                census.max_active
            );
            assert!(
                census.min_available >= floor,
                "seed {seed}, case {index}: {} available pods, floor {floor}",
                census.min_available
            );
        }
    }
}

#[test]
fn rolling_updates_keep_within_bounds_with_faulty_watches_and_restarts() {
    let cases = [
        (10, json!("25%"), json!("25%"), 3, 2),
        (10, json!(0), json!(1), 0, 1),
        (10, json!(3), json!(0), 3, 0),
        (9, json!(2), json!(2), 2, 2),
    ];
    for (index, (replicas, surge, unavailable, max_surge, max_unavailable)) in
        cases.into_iter().enumerate()
    {
        for seed in 0..4_u64 {
            let seed = 5000 + index as u64 * 100 + seed;
            let (surge, unavailable) = (surge.clone(), unavailable.clone());
            let census = simulator::simulate(seed, |seed| async move {
                let mut cluster = start_with(seed, ChaosConfig::default()).await;
                deployments(cluster.client())
                    .create(
                        &PostParams::default(),
                        &web(replicas, rolling(surge, unavailable), "web:v1"),
                    )
                    .await
                    .unwrap();
                wait_complete(&cluster, replicas, Duration::from_secs(120)).await;
                let census = start_checker(&cluster).await;
                set_image(cluster.client(), "web:v2").await;
                // Kill the Deployment controller in the middle and start it again.
                cluster
                    .run_for(Duration::from_millis(300 + seed % 7 * 100))
                    .await;
                cluster.kill("deployment");
                cluster.run_for(Duration::from_millis(200)).await;
                let client = cluster.client().clone();
                cluster.spawn(
                    "deployment",
                    DeploymentController::new(client).run(std::future::pending()),
                );
                wait_complete(&cluster, replicas, Duration::from_secs(300)).await;
                cluster.run_for(Duration::from_millis(100)).await;
                census.lock().unwrap().clone()
            });
            let limit = usize::try_from(replicas + max_surge).unwrap();
            let floor = usize::try_from(replicas - max_unavailable).unwrap();
            assert!(
                census.max_active <= limit && census.min_available >= floor,
                "seed {seed}, case {index}: {census:?}, limit {limit}, floor {floor}"
            );
        }
    }
}

#[test]
fn recreate_never_runs_two_templates_at_once() {
    for seed in [3, 4, 5] {
        let census = simulator::simulate(seed, |seed| async move {
            let cluster = start(seed).await;
            roll_out(&cluster, 6, json!({"type": "Recreate"})).await
        });
        assert!(census.events > 0);
        assert_eq!(census.max_templates, 1, "seed {seed}: {census:?}");
        assert_eq!(census.min_available, 0);
    }
}

#[test]
fn recreate_never_runs_two_templates_at_once_with_faulty_watches() {
    for seed in [30, 31, 32, 33] {
        let census = simulator::simulate(seed, |seed| async move {
            let cluster = start_with(seed, ChaosConfig::default()).await;
            roll_out(&cluster, 5, json!({"type": "Recreate"})).await
        });
        assert!(census.events > 0);
        assert_eq!(census.max_templates, 1, "seed {seed}: {census:?}");
    }
}

#[test]
fn rollbacks_restore_earlier_templates_with_new_revisions() {
    simulator::simulate(6, |seed| async move {
        let cluster = start(seed).await;
        let client = cluster.client().clone();
        deployments(&client)
            .create(
                &PostParams::default(),
                &web(4, rolling(json!(1), json!(1)), "web:v1"),
            )
            .await
            .unwrap();
        wait_complete(&cluster, 4, Duration::from_secs(60)).await;
        for image in ["web:v2", "web:v3"] {
            set_image(&client, image).await;
            wait_complete(&cluster, 4, Duration::from_secs(120)).await;
        }
        let revisions: Vec<(i64, String)> = list_replica_sets(&cluster)
            .await
            .iter()
            .map(|rs| (revision(rs), image_of(rs)))
            .collect();
        assert_eq!(
            revisions,
            [
                (1, "web:v1".into()),
                (2, "web:v2".into()),
                (3, "web:v3".into())
            ]
        );

        // Undo: back to v2, which becomes revision 4.
        let rolled =
            deployment::rollback(&deployments(&client), &replica_sets(&client), "web", None)
                .await
                .unwrap();
        let image = rolled
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .image
            .clone();
        assert_eq!(image.as_deref(), Some("web:v2"));
        assert!(
            !rolled
                .spec
                .as_ref()
                .unwrap()
                .template
                .metadata
                .as_ref()
                .unwrap()
                .labels
                .as_ref()
                .unwrap()
                .contains_key(POD_TEMPLATE_HASH_LABEL)
        );
        wait_complete(&cluster, 4, Duration::from_secs(120)).await;
        cluster.run_for(Duration::from_millis(100)).await;
        let sets = list_replica_sets(&cluster).await;
        let v2 = sets.iter().find(|rs| image_of(rs) == "web:v2").unwrap();
        assert_eq!(revision(v2), 4);
        assert_eq!(
            annotation(&v2.metadata, REVISION_HISTORY_ANNOTATION),
            Some("2")
        );
        assert_eq!(spec_replicas(v2), 4);
        assert_eq!(
            annotation(&get(&cluster).await.metadata, REVISION_ANNOTATION),
            Some("4")
        );

        // To revision 1: v1 becomes revision 5.
        deployment::rollback(
            &deployments(&client),
            &replica_sets(&client),
            "web",
            Some(1),
        )
        .await
        .unwrap();
        wait_complete(&cluster, 4, Duration::from_secs(120)).await;
        cluster.run_for(Duration::from_millis(100)).await;
        let sets = list_replica_sets(&cluster).await;
        let v1 = sets.iter().find(|rs| image_of(rs) == "web:v1").unwrap();
        assert_eq!(revision(v1), 5);
        assert_eq!(
            annotation(&v1.metadata, REVISION_HISTORY_ANNOTATION),
            Some("1")
        );
        let pods = list_pods(&cluster).await;
        let hash = v1.metadata.labels.as_ref().unwrap()[POD_TEMPLATE_HASH_LABEL].clone();
        assert!(pods.iter().all(|pod| hash_of(pod) == hash));

        // Then v2 again (now revision 4 → 6, history "2,4").
        deployment::rollback(&deployments(&client), &replica_sets(&client), "web", None)
            .await
            .unwrap();
        wait_complete(&cluster, 4, Duration::from_secs(120)).await;
        cluster.run_for(Duration::from_millis(100)).await;
        let sets = list_replica_sets(&cluster).await;
        let v2 = sets.iter().find(|rs| image_of(rs) == "web:v2").unwrap();
        assert_eq!(revision(v2), 6);
        assert_eq!(
            annotation(&v2.metadata, REVISION_HISTORY_ANNOTATION),
            Some("2,4")
        );

        // Errors.
        let missing = deployment::rollback(
            &deployments(&client),
            &replica_sets(&client),
            "web",
            Some(42),
        )
        .await;
        assert!(matches!(
            missing,
            Err(RollbackError::RevisionNotFound { revision: 42, .. })
        ));
        let absent =
            deployment::rollback(&deployments(&client), &replica_sets(&client), "nope", None).await;
        assert!(matches!(absent, Err(RollbackError::Api { .. })));
    });
}

#[test]
fn a_deployment_with_one_revision_has_nothing_to_roll_back_to() {
    simulator::simulate(7, |seed| async move {
        let cluster = start(seed).await;
        let client = cluster.client().clone();
        deployments(&client)
            .create(
                &PostParams::default(),
                &web(2, rolling(json!(1), json!(0)), "web:v1"),
            )
            .await
            .unwrap();
        wait_complete(&cluster, 2, Duration::from_secs(60)).await;
        let result =
            deployment::rollback(&deployments(&client), &replica_sets(&client), "web", None).await;
        assert!(
            matches!(result, Err(RollbackError::NoPreviousRevision { .. })),
            "{result:?}"
        );
        deployment::pause(&deployments(&client), "web")
            .await
            .unwrap();
        let result = deployment::rollback(
            &deployments(&client),
            &replica_sets(&client),
            "web",
            Some(1),
        )
        .await;
        assert!(
            matches!(result, Err(RollbackError::Paused { .. })),
            "{result:?}"
        );
    });
}

#[test]
fn old_replica_sets_beyond_the_history_limit_are_deleted() {
    simulator::simulate(8, |seed| async move {
        let cluster = start(seed).await;
        let client = cluster.client().clone();
        let mut first = web(2, rolling(json!(1), json!(0)), "web:v0");
        first.spec.as_mut().unwrap().revision_history_limit = Some(2);
        deployments(&client)
            .create(&PostParams::default(), &first)
            .await
            .unwrap();
        wait_complete(&cluster, 2, Duration::from_secs(60)).await;
        for version in 1..=5 {
            set_image(&client, &format!("web:v{version}")).await;
            wait_complete(&cluster, 2, Duration::from_secs(120)).await;
        }
        cluster.run_for(Duration::from_secs(1)).await;
        let kept: Vec<(i64, String)> = list_replica_sets(&cluster)
            .await
            .iter()
            .map(|rs| (revision(rs), image_of(rs)))
            .collect();
        assert_eq!(
            kept,
            [
                (4, "web:v3".into()),
                (5, "web:v4".into()),
                (6, "web:v5".into())
            ]
        );
    });
}

#[test]
fn a_paused_deployment_scales_but_does_not_roll_out_until_resumed() {
    simulator::simulate(9, |seed| async move {
        let cluster = start(seed).await;
        let client = cluster.client().clone();
        deployments(&client)
            .create(
                &PostParams::default(),
                &web(3, rolling(json!(1), json!(0)), "web:v1"),
            )
            .await
            .unwrap();
        wait_complete(&cluster, 3, Duration::from_secs(60)).await;
        deployment::pause(&deployments(&client), "web")
            .await
            .unwrap();
        set_image(&client, "web:v2").await;
        update(&client, |deployment| {
            deployment.spec.as_mut().unwrap().replicas = Some(5);
        })
        .await;
        cluster.run_for(Duration::from_secs(10)).await;
        let sets = list_replica_sets(&cluster).await;
        assert_eq!(sets.len(), 1, "no new ReplicaSet while paused");
        assert_eq!(spec_replicas(&sets[0]), 5, "scaled all the same");
        assert_eq!(image_of(&sets[0]), "web:v1");
        let paused = get(&cluster).await;
        let progressing = condition(&paused, "Progressing").unwrap();
        assert_eq!(
            (progressing.status.as_str(), progressing.reason.as_deref()),
            ("Unknown", Some("DeploymentPaused"))
        );

        deployment::resume(&deployments(&client), "web")
            .await
            .unwrap();
        wait_complete(&cluster, 5, Duration::from_secs(120)).await;
        let sets = list_replica_sets(&cluster).await;
        assert_eq!(sets.len(), 2);
        assert_eq!(image_of(&sets[1]), "web:v2");
        assert_eq!(revision(&sets[1]), 2);
    });
}

#[test]
fn a_rollout_without_progress_exceeds_its_deadline() {
    simulator::simulate(10, |seed| async move {
        let cluster = start(seed).await;
        let client = cluster.client().clone();
        let mut first = web(3, rolling(json!(1), json!(0)), "web:v1");
        first.spec.as_mut().unwrap().progress_deadline_seconds = Some(30);
        deployments(&client)
            .create(&PostParams::default(), &first)
            .await
            .unwrap();
        wait_complete(&cluster, 3, Duration::from_secs(60)).await;
        update(&client, |deployment| {
            let template = &mut deployment.spec.as_mut().unwrap().template;
            template
                .metadata
                .as_mut()
                .unwrap()
                .labels
                .as_mut()
                .unwrap()
                .insert(BEHAVIOUR_LABEL.to_owned(), "never-ready".to_owned());
        })
        .await;
        cluster.run_for(Duration::from_secs(10)).await;
        let progressing = condition(&get(&cluster).await, "Progressing").unwrap();
        assert_eq!(progressing.status, "True", "{progressing:?}");
        let exceeded = cluster
            .wait_until(Duration::from_secs(60), || async {
                condition(&get(&cluster).await, "Progressing").is_some_and(|condition| {
                    condition.status == "False"
                        && condition.reason.as_deref() == Some("ProgressDeadlineExceeded")
                })
            })
            .await;
        assert!(exceeded, "{:?}", get(&cluster).await.status);
        // The old pods are all still there (maxUnavailable 0), the new one never ready.
        let status = get(&cluster).await.status.unwrap();
        assert_eq!(status.available_replicas, Some(3));
        assert_eq!(status.updated_replicas, Some(1));
        let available = condition(&get(&cluster).await, "Available").unwrap();
        assert_eq!(available.status, "True");
    });
}

#[test]
fn scaling_in_the_middle_of_a_rollout_is_proportional() {
    simulator::simulate(11, |seed| async move {
        let cluster = start(seed).await;
        let client = cluster.client().clone();
        deployments(&client)
            .create(
                &PostParams::default(),
                &web(10, rolling(json!(3), json!(2)), "web:v1"),
            )
            .await
            .unwrap();
        wait_complete(&cluster, 10, Duration::from_secs(60)).await;
        // A template whose pods never become ready: the rollout stops halfway.
        update(&client, |deployment| {
            let template = &mut deployment.spec.as_mut().unwrap().template;
            template.spec.as_mut().unwrap().containers[0].image = Some("web:v2".into());
            template
                .metadata
                .as_mut()
                .unwrap()
                .labels
                .as_mut()
                .unwrap()
                .insert(BEHAVIOUR_LABEL.to_owned(), "never-ready".to_owned());
        })
        .await;
        cluster.run_for(Duration::from_secs(20)).await;
        let sets = list_replica_sets(&cluster).await;
        let sizes: Vec<i32> = sets.iter().map(spec_replicas).collect();
        // 13 pods at most, 8 available at least: the old ReplicaSet at 8, the new one at 5.
        assert_eq!(sizes, [8, 5]);

        update(&client, |deployment| {
            deployment.spec.as_mut().unwrap().replicas = Some(20);
        })
        .await;
        cluster.run_for(Duration::from_secs(20)).await;
        let sets = list_replica_sets(&cluster).await;
        let sizes: Vec<i32> = sets.iter().map(spec_replicas).collect();
        // 23 pods at most (20 + 3), shared as 8 : 5: 10 more to share, 8*23/13 = 14.15 → 14,
        // 5*23/13 = 8.8 → 9 (within the 10 to add).
        assert_eq!(sizes.iter().sum::<i32>(), 23, "{sizes:?}");
        assert_eq!(sizes, [14, 9]);
        for rs in &sets {
            assert_eq!(
                annotation(&rs.metadata, "deployment.kubernetes.io/desired-replicas"),
                Some("20")
            );
            assert_eq!(
                annotation(&rs.metadata, "deployment.kubernetes.io/max-replicas"),
                Some("23")
            );
        }
    });
}

#[test]
fn a_deployment_scales_to_zero_and_back() {
    simulator::simulate(12, |seed| async move {
        let cluster = start(seed).await;
        let client = cluster.client().clone();
        deployments(&client)
            .create(
                &PostParams::default(),
                &web(4, rolling(json!("25%"), json!("25%")), "web:v1"),
            )
            .await
            .unwrap();
        wait_complete(&cluster, 4, Duration::from_secs(60)).await;
        update(&client, |deployment| {
            deployment.spec.as_mut().unwrap().replicas = Some(0);
        })
        .await;
        let empty = cluster
            .wait_until(Duration::from_secs(30), || async {
                list_pods(&cluster).await.is_empty()
                    && get(&cluster).await.status.is_some_and(|status| {
                        status.replicas == Some(0) && status.available_replicas == Some(0)
                    })
            })
            .await;
        assert!(empty, "{:?}", get(&cluster).await.status);
        let deployment = get(&cluster).await;
        let available = condition(&deployment, "Available").unwrap();
        assert_eq!(available.status, "True");
        let sets = list_replica_sets(&cluster).await;
        assert_eq!(sets.len(), 1);
        assert_eq!(spec_replicas(&sets[0]), 0);
        update(&client, |deployment| {
            deployment.spec.as_mut().unwrap().replicas = Some(2);
        })
        .await;
        wait_complete(&cluster, 2, Duration::from_secs(60)).await;
    });
}

#[test]
fn a_large_deployment_gets_its_replica_set_at_full_size_at_once() {
    simulator::simulate(13, |seed| async move {
        let cluster = start(seed).await;
        let client = cluster.client().clone();
        let census = start_checker(&cluster).await;
        let wall = std::time::Instant::now();
        let started = tokio::time::Instant::now();
        deployments(&client)
            .create(
                &PostParams::default(),
                &web(10_000, rolling(json!("25%"), json!("25%")), "web:v1"),
            )
            .await
            .unwrap();
        let created = cluster
            .wait_until(Duration::from_secs(1), || async {
                list_replica_sets(&cluster)
                    .await
                    .first()
                    .is_some_and(|rs| spec_replicas(rs) == 10_000)
            })
            .await;
        assert!(created);
        let all_there = cluster
            .wait_until(Duration::from_secs(30), || async {
                census.lock().unwrap().max_active >= 10_000
            })
            .await;
        println!(
            "10,000 pods after {:?} of simulated time, {:?} of wall time",
            started.elapsed(),
            wall.elapsed()
        );
        assert!(all_there);
        assert_eq!(census.lock().unwrap().max_active, 10_000);
    });
}

#[test]
fn a_rolling_update_of_a_thousand_replicas_is_quick() {
    let wall = std::time::Instant::now();
    let census = simulator::simulate(14, |seed| async move {
        let cluster = start(seed).await;
        roll_out(&cluster, 1000, rolling(json!("25%"), json!("25%"))).await
    });
    assert!(census.max_active <= 1250, "{census:?}");
    assert!(census.min_available >= 750, "{census:?}");
    println!(
        "1000 replicas rolled out in {:?} of wall time",
        wall.elapsed()
    );
}

#[test]
fn a_taken_name_raises_the_collision_count() {
    simulator::simulate(15, |seed| async move {
        let cluster = start(seed).await;
        let client = cluster.client().clone();
        // Created paused, to learn the template as the API defaulted it.
        let mut wanted = web(2, rolling(json!(1), json!(0)), "web:v1");
        wanted.spec.as_mut().unwrap().paused = Some(true);
        let created = deployments(&client)
            .create(&PostParams::default(), &wanted)
            .await
            .unwrap();
        let hash = compute_hash(&created.spec.as_ref().unwrap().template, None);
        // Another ReplicaSet (not matching the Deployment's selector) holds `web-<hash>`.
        let squatter: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": format!("web-{hash}"), "labels": {"app": "other"}},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "other"}},
                "template": {
                    "metadata": {"labels": {"app": "other"}},
                    "spec": {"containers": [{"name": "other", "image": "other"}]},
                },
            },
        }))
        .unwrap();
        replica_sets(&client)
            .create(&PostParams::default(), &squatter)
            .await
            .unwrap();
        cluster.run_for(Duration::from_secs(1)).await;
        assert!(
            list_replica_sets(&cluster).await.len() == 1,
            "nothing while paused"
        );
        deployment::resume(&deployments(&client), "web")
            .await
            .unwrap();
        let done = cluster
            .wait_until(Duration::from_secs(30), || async {
                get(&cluster).await.status.is_some_and(|status| {
                    status.collision_count == Some(1) && status.available_replicas == Some(2)
                })
            })
            .await;
        assert!(done, "{:?}", get(&cluster).await.status);
        let deployment = get(&cluster).await;
        let rehashed = compute_hash(&deployment.spec.as_ref().unwrap().template, Some(1));
        let ours = replica_sets(cluster.observer())
            .get(&format!("web-{rehashed}"))
            .await
            .unwrap();
        assert_eq!(spec_replicas(&ours), 2);
        assert_eq!(
            pods::controller_of(&ours.metadata).map(|owner| owner.uid.clone()),
            deployment.metadata.uid
        );
    });
}

#[test]
fn an_orphan_replica_set_with_the_template_is_adopted() {
    simulator::simulate(16, |seed| async move {
        let cluster = start(seed).await;
        let client = cluster.client().clone();
        let wanted = web(3, rolling(json!(1), json!(0)), "web:v1");
        let mut template = serde_json::to_value(&wanted.spec.as_ref().unwrap().template).unwrap();
        template["metadata"]["labels"]["pod-template-hash"] = json!("orphan");
        let orphan: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "web-orphan", "labels": {"app": "web", "pod-template-hash": "orphan"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web", "pod-template-hash": "orphan"}},
                "template": template,
            },
        }))
        .unwrap();
        replica_sets(&client)
            .create(&PostParams::default(), &orphan)
            .await
            .unwrap();
        cluster.run_for(Duration::from_secs(2)).await;
        deployments(&client)
            .create(&PostParams::default(), &wanted)
            .await
            .unwrap();
        wait_complete(&cluster, 3, Duration::from_secs(30)).await;
        let sets = list_replica_sets(&cluster).await;
        assert_eq!(sets.len(), 1, "adopted, not created");
        assert_eq!(sets[0].metadata.name.as_deref(), Some("web-orphan"));
        assert_eq!(spec_replicas(&sets[0]), 3);
        assert_eq!(revision(&sets[0]), 1);
        let owner = pods::controller_of(&sets[0].metadata).unwrap();
        assert_eq!(owner.kind, "Deployment");
    });
}

#[test]
fn a_rollover_in_the_middle_of_a_rollout_keeps_within_bounds() {
    for seed in [40, 41, 42] {
        let census = simulator::simulate(seed, |seed| async move {
            let cluster = start_with(seed, ChaosConfig::default()).await;
            let client = cluster.client().clone();
            deployments(&client)
                .create(
                    &PostParams::default(),
                    &web(10, rolling(json!(2), json!(2)), "web:v1"),
                )
                .await
                .unwrap();
            wait_complete(&cluster, 10, Duration::from_secs(60)).await;
            let census = start_checker(&cluster).await;
            set_image(&client, "web:v2").await;
            cluster.run_for(Duration::from_millis(400)).await;
            set_image(&client, "web:v3").await;
            wait_complete(&cluster, 10, Duration::from_secs(300)).await;
            cluster.run_for(Duration::from_millis(100)).await;
            let sets = list_replica_sets(&cluster).await;
            let images: Vec<(i64, String, i32)> = sets
                .iter()
                .map(|rs| (revision(rs), image_of(rs), spec_replicas(rs)))
                .collect();
            assert_eq!(
                images,
                [
                    (1, "web:v1".into(), 0),
                    (2, "web:v2".into(), 0),
                    (3, "web:v3".into(), 10)
                ]
            );
            census.lock().unwrap().clone()
        });
        assert!(
            census.max_active <= 12 && census.min_available >= 8,
            "seed {seed}: {census:?}"
        );
    }
}

/// What a run leaves behind, to compare two runs of one seed.
async fn outcome(cluster: &Cluster) -> Vec<String> {
    let mut names: Vec<String> = list_replica_sets(cluster)
        .await
        .into_iter()
        .map(|rs| {
            format!(
                "{} {} {:?}",
                rs.metadata.name.unwrap_or_default(),
                rs.metadata.resource_version.unwrap_or_default(),
                rs.metadata.annotations
            )
        })
        .collect();
    names.extend(
        list_pods(cluster)
            .await
            .into_iter()
            .map(|pod| pod.metadata.name.unwrap_or_default()),
    );
    names.push(format!("{:?}", get(cluster).await.status));
    names
}

#[test]
fn a_rollout_replays_exactly_from_its_seed() {
    let run = || {
        simulator::simulate(77, |seed| async move {
            let cluster = start_with(seed, ChaosConfig::default()).await;
            let census = roll_out(&cluster, 8, rolling(json!("25%"), json!("25%"))).await;
            (census.events, outcome(&cluster).await)
        })
    };
    assert_eq!(run(), run());
}

/// The messages of the Events about `web` with `reason`, oldest first.
async fn deployment_events(cluster: &Cluster, reason: &str) -> Vec<Event> {
    let mut events: Vec<Event> = Api::<Event>::namespaced(cluster.observer().clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|event| {
            event.involved_object.kind.as_deref() == Some("Deployment")
                && event.involved_object.name.as_deref() == Some("web")
                && event.reason.as_deref() == Some(reason)
        })
        .collect();
    events.sort_by_key(|event| {
        event
            .metadata
            .resource_version
            .as_deref()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    });
    events
}

#[test]
fn a_rollout_records_scaling_replica_set_events() {
    simulator::simulate(21, |seed| async move {
        let cluster = start(seed).await;
        let client = cluster.client().clone();
        let created = deployments(&client)
            .create(
                &PostParams::default(),
                &web(3, rolling(json!(1), json!(0)), "web:v1"),
            )
            .await
            .unwrap();
        wait_complete(&cluster, 3, Duration::from_secs(60)).await;
        set_image(&client, "web:v2").await;
        wait_complete(&cluster, 3, Duration::from_secs(120)).await;
        update(&client, |deployment| {
            deployment.spec.as_mut().unwrap().replicas = Some(5);
        })
        .await;
        wait_complete(&cluster, 5, Duration::from_secs(60)).await;
        cluster.run_for(Duration::from_secs(1)).await;

        let sets = list_replica_sets(&cluster).await;
        assert_eq!(sets.len(), 2);
        let old = sets[0].metadata.name.clone().unwrap();
        let new = sets[1].metadata.name.clone().unwrap();
        let hash = compute_hash(&created.spec.as_ref().unwrap().template, None);
        assert_eq!(old, format!("web-{hash}"));
        let events = deployment_events(&cluster, "ScalingReplicaSet").await;
        let messages: Vec<&str> = events
            .iter()
            .map(|event| event.message.as_deref().unwrap())
            .collect();
        // maxSurge 1, maxUnavailable 0: one pod at a time, up first.
        assert_eq!(
            messages,
            [
                format!("Scaled up replica set {old} from 0 to 3"),
                format!("Scaled up replica set {new} from 0 to 1"),
                format!("Scaled down replica set {old} from 3 to 2"),
                format!("Scaled up replica set {new} from 1 to 2"),
                format!("Scaled down replica set {old} from 2 to 1"),
                format!("Scaled up replica set {new} from 2 to 3"),
                format!("Scaled down replica set {old} from 1 to 0"),
                format!("Scaled up replica set {new} from 3 to 5"),
            ]
        );
        for event in &events {
            assert_eq!(event.type_.as_deref(), Some("Normal"));
            assert_eq!(event.count, Some(1));
            assert_eq!(event.involved_object.uid, created.metadata.uid);
            assert_eq!(
                event.source.as_ref().and_then(|s| s.component.as_deref()),
                Some("deployment-controller")
            );
        }
    });
}
