//! The garbage collector over a `MemoryStore`: background, foreground and orphan propagation,
//! several owners, stale owner uids, chains, cluster-scoped owners, restarts.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, Node, Pod, PodSpec, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use orchestra_core::api::{
    Api, Client, DeleteParams, Deletion, PostParams, PropagationPolicy, WatchEvent, WatchParams,
};
use orchestra_core::clock::TokioClock;
use orchestra_core::controllers::garbage_collector::GarbageCollector;
use orchestra_core::resource::{Resource, ResourceExt};
use orchestra_core::store::MemoryStore;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

async fn client() -> Client {
    let client = Client::builder(MemoryStore::new())
        .clock(TokioClock::starting_at(
            "2026-01-01T00:00:00Z".parse().unwrap(),
        ))
        .build();
    client.bootstrap().await.unwrap();
    client
}

/// A collector running on its own task, until stopped.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<()>,
}

fn start(client: &Client) -> Running {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(GarbageCollector::new(client.clone()).run(async move {
        let _ = stopped.await;
    }));
    Running { stop, task }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the collector stops promptly")
            .unwrap();
    }
}

/// Waits (in paused time) until `check` holds, for at most a minute.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

async fn exists<K>(api: &Api<K>, name: &str) -> bool
where
    K: Resource + Clone + Serialize + DeserializeOwned + Send + 'static,
{
    api.get_opt(name).await.unwrap().is_some()
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..ObjectMeta::default()
    }
}

/// A reference to `owner` as its controller, blocking its foreground deletion or not.
fn owned_by<K: Resource<DynamicType = ()>>(owner: &K, block: bool) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.name_any(),
        uid: owner.uid().unwrap().to_owned(),
        controller: Some(true),
        block_owner_deletion: block.then_some(true),
    }
}

fn with_owners<K: Resource>(mut object: K, owners: Vec<OwnerReference>) -> K {
    object.meta_mut().owner_references = Some(owners);
    object
}

fn labels() -> BTreeMap<String, String> {
    [("app".to_owned(), "web".to_owned())].into()
}

fn pod_spec() -> PodSpec {
    PodSpec {
        containers: vec![Container {
            name: "web".into(),
            image: Some("nginx".into()),
            ..Container::default()
        }],
        ..PodSpec::default()
    }
}

fn template() -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels()),
            ..ObjectMeta::default()
        }),
        spec: Some(pod_spec()),
    }
}

fn selector() -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels()),
        ..LabelSelector::default()
    }
}

fn replica_set(name: &str) -> ReplicaSet {
    ReplicaSet {
        metadata: meta(name),
        spec: Some(ReplicaSetSpec {
            replicas: Some(2),
            selector: selector(),
            template: Some(template()),
            ..ReplicaSetSpec::default()
        }),
        ..ReplicaSet::default()
    }
}

fn deployment(name: &str) -> Deployment {
    Deployment {
        metadata: meta(name),
        spec: Some(DeploymentSpec {
            replicas: Some(2),
            selector: selector(),
            template: template(),
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// A pod, on `node` if given (a pod on a node terminates gracefully: its node agent finishes
/// the deletion).
fn pod(name: &str, node: Option<&str>) -> Pod {
    let mut spec = pod_spec();
    spec.node_name = node.map(str::to_owned);
    Pod {
        metadata: ObjectMeta {
            labels: Some(labels()),
            ..meta(name)
        },
        spec: Some(spec),
        ..Pod::default()
    }
}

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: meta(name),
        ..ConfigMap::default()
    }
}

fn policy(policy: PropagationPolicy) -> DeleteParams {
    DeleteParams {
        propagation_policy: Some(policy),
        ..DeleteParams::default()
    }
}

/// The resource version at which each object named was deleted, from a watch's events so far.
async fn deletions<K>(
    events: &mut futures_util::stream::BoxStream<'static, WatchEvent<K>>,
) -> BTreeMap<String, u64>
where
    K: Resource,
{
    let mut deleted = BTreeMap::new();
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(100), events.next()).await
    {
        if let WatchEvent::Deleted(object) = event {
            let version = object.resource_version().unwrap().parse().unwrap();
            deleted.insert(object.name_any(), version);
        }
    }
    deleted
}

#[tokio::test(start_paused = true)]
async fn background_deletion_collects_the_dependents_after_the_owner() {
    let client = client().await;
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let owner = replica_sets
        .create(&PostParams::default(), &replica_set("web"))
        .await
        .unwrap();
    for name in ["web-1", "web-2", "web-3"] {
        let owned = with_owners(pod(name, None), vec![owned_by(&owner, true)]);
        pods.create(&PostParams::default(), &owned).await.unwrap();
    }
    pods.create(&PostParams::default(), &pod("unowned", None))
        .await
        .unwrap();
    let collector = start(&client);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        pods.list(&Default::default()).await.unwrap().items.len(),
        4,
        "nothing is garbage while the owner exists"
    );

    let deleted = replica_sets
        .delete("web", &policy(PropagationPolicy::Background))
        .await
        .unwrap();
    assert!(
        matches!(deleted, Deletion::Deleted(_)),
        "the owner goes at once"
    );
    eventually("the dependents are collected", || async {
        pods.list(&Default::default()).await.unwrap().items.len() == 1
    })
    .await;
    assert!(exists(&pods, "unowned").await);
    collector.stop().await;
}

#[tokio::test(start_paused = true)]
async fn foreground_deletion_deletes_the_owner_after_its_blocking_dependents() {
    let client = client().await;
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let owner = replica_sets
        .create(&PostParams::default(), &replica_set("web"))
        .await
        .unwrap();
    // A pod on a node blocks its owner: it terminates gracefully, until its node agent is done.
    let blocking = with_owners(pod("running", Some("node-1")), vec![owned_by(&owner, true)]);
    pods.create(&PostParams::default(), &blocking)
        .await
        .unwrap();
    let free = with_owners(pod("pending", None), vec![owned_by(&owner, false)]);
    let created = pods.create(&PostParams::default(), &free).await.unwrap();
    let version = created.resource_version().unwrap().to_owned();
    let mut pod_events = pods.watch(&WatchParams::default(), &version).await.unwrap();
    let mut owner_events = replica_sets
        .watch(&WatchParams::default(), &version)
        .await
        .unwrap();
    let collector = start(&client);

    let deleted = replica_sets
        .delete("web", &policy(PropagationPolicy::Foreground))
        .await
        .unwrap();
    let Deletion::InProgress(terminating) = deleted else {
        panic!("a foreground deletion waits for the dependents");
    };
    assert_eq!(terminating.finalizers(), ["foregroundDeletion"]);
    eventually("the non-blocking dependent is collected", || async {
        !exists(&pods, "pending").await
    })
    .await;
    eventually("the blocking dependent is being deleted", || async {
        pods.get("running")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let waiting = replica_sets.get("web").await.unwrap();
    assert!(waiting.metadata.deletion_timestamp.is_some());
    assert_eq!(
        waiting.finalizers(),
        ["foregroundDeletion"],
        "the owner waits for its blocking dependent"
    );

    // The node agent finishes the pod: the owner goes after it.
    pods.delete("running", &DeleteParams::immediately())
        .await
        .unwrap();
    eventually("the owner is deleted", || async {
        !exists(&replica_sets, "web").await
    })
    .await;
    let pods_deleted = deletions(&mut pod_events).await;
    let owners_deleted = deletions(&mut owner_events).await;
    assert!(pods_deleted["running"] < owners_deleted["web"]);
    assert!(pods_deleted["pending"] < owners_deleted["web"]);
    collector.stop().await;
}

#[tokio::test(start_paused = true)]
async fn orphan_deletion_keeps_the_dependents_without_the_owner_reference() {
    let client = client().await;
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let owner = replica_sets
        .create(&PostParams::default(), &replica_set("web"))
        .await
        .unwrap();
    let other = replica_sets
        .create(&PostParams::default(), &replica_set("other"))
        .await
        .unwrap();
    for name in ["web-1", "web-2"] {
        let owned = with_owners(pod(name, None), vec![owned_by(&owner, true)]);
        pods.create(&PostParams::default(), &owned).await.unwrap();
    }
    // One pod is also owned by another replica set: only the deleted owner's reference goes.
    let shared = with_owners(
        pod("shared", None),
        vec![owned_by(&owner, true), {
            let mut reference = owned_by(&other, false);
            reference.controller = None;
            reference
        }],
    );
    pods.create(&PostParams::default(), &shared).await.unwrap();
    let collector = start(&client);

    let Deletion::InProgress(orphaning) = replica_sets
        .delete("web", &policy(PropagationPolicy::Orphan))
        .await
        .unwrap()
    else {
        panic!("an orphaning deletion waits for the collector");
    };
    assert_eq!(orphaning.finalizers(), ["orphan"]);
    eventually("the owner is deleted", || async {
        !exists(&replica_sets, "web").await
    })
    .await;
    for name in ["web-1", "web-2"] {
        let orphan = pods.get(name).await.unwrap();
        assert!(orphan.owner_references().is_empty(), "{name} is orphaned");
    }
    let shared = pods.get("shared").await.unwrap();
    assert_eq!(shared.owner_references().len(), 1);
    assert_eq!(shared.owner_references()[0].name, "other");
    // They stay orphans: nothing collects them later.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(pods.list(&Default::default()).await.unwrap().items.len(), 3);
    collector.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_dependent_survives_while_another_owner_remains() {
    let client = client().await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let first = config_maps
        .create(&PostParams::default(), &config_map("first"))
        .await
        .unwrap();
    let second = config_maps
        .create(&PostParams::default(), &config_map("second"))
        .await
        .unwrap();
    let mut second_ref = owned_by(&second, false);
    second_ref.controller = None;
    let dependent = with_owners(
        config_map("dependent"),
        vec![owned_by(&first, false), second_ref],
    );
    config_maps
        .create(&PostParams::default(), &dependent)
        .await
        .unwrap();
    let collector = start(&client);

    config_maps
        .delete("first", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the reference to the deleted owner is removed", || async {
        config_maps
            .get("dependent")
            .await
            .unwrap()
            .owner_references()
            .len()
            == 1
    })
    .await;
    let survivor = config_maps.get("dependent").await.unwrap();
    assert_eq!(survivor.owner_references()[0].name, "second");

    config_maps
        .delete("second", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the dependent goes with its last owner", || async {
        !exists(&config_maps, "dependent").await
    })
    .await;
    collector.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_owner_recreated_under_the_same_name_is_another_owner() {
    let client = client().await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let old = config_maps
        .create(&PostParams::default(), &config_map("owner"))
        .await
        .unwrap();
    let stale = with_owners(config_map("stale"), vec![owned_by(&old, false)]);
    config_maps
        .create(&PostParams::default(), &stale)
        .await
        .unwrap();
    config_maps
        .delete("owner", &DeleteParams::default())
        .await
        .unwrap();
    let new = config_maps
        .create(&PostParams::default(), &config_map("owner"))
        .await
        .unwrap();
    assert_ne!(old.uid(), new.uid());
    let current = with_owners(config_map("current"), vec![owned_by(&new, false)]);
    config_maps
        .create(&PostParams::default(), &current)
        .await
        .unwrap();

    // The collector starts after the owner was recreated: only the uid tells the owners apart.
    let collector = start(&client);
    eventually("the dependent of the old owner is collected", || async {
        !exists(&config_maps, "stale").await
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(exists(&config_maps, "current").await);
    assert!(exists(&config_maps, "owner").await);
    collector.stop().await;
}

#[tokio::test(start_paused = true)]
async fn foreground_deletion_runs_down_a_chain_of_owners() {
    let client = client().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let a = deployments
        .create(&PostParams::default(), &deployment("web"))
        .await
        .unwrap();
    let b = replica_sets
        .create(
            &PostParams::default(),
            &with_owners(replica_set("web-1"), vec![owned_by(&a, true)]),
        )
        .await
        .unwrap();
    let c = pods
        .create(
            &PostParams::default(),
            &with_owners(pod("web-1-a", None), vec![owned_by(&b, true)]),
        )
        .await
        .unwrap();
    let version = c.resource_version().unwrap().to_owned();
    let params = WatchParams::default();
    let mut deployment_events = deployments.watch(&params, &version).await.unwrap();
    let mut replica_set_events = replica_sets.watch(&params, &version).await.unwrap();
    let mut pod_events = pods.watch(&params, &version).await.unwrap();
    let collector = start(&client);

    deployments
        .delete("web", &policy(PropagationPolicy::Foreground))
        .await
        .unwrap();
    eventually("the whole chain is deleted", || async {
        !exists(&deployments, "web").await
    })
    .await;
    assert!(!exists(&replica_sets, "web-1").await);
    assert!(!exists(&pods, "web-1-a").await);

    let mut b_went_foreground = false;
    let mut b_deleted = None;
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(100), replica_set_events.next()).await
    {
        match event {
            WatchEvent::Modified(object) if object.finalizers() == ["foregroundDeletion"] => {
                b_went_foreground = true;
            }
            WatchEvent::Deleted(object) => {
                b_deleted = object.resource_version().map(|v| v.parse::<u64>().unwrap());
            }
            _ => {}
        }
    }
    assert!(
        b_went_foreground,
        "the middle of the chain, having dependents itself, is deleted in the foreground"
    );
    let a_deleted = deletions(&mut deployment_events).await["web"];
    let c_deleted = deletions(&mut pod_events).await["web-1-a"];
    let b_deleted = b_deleted.unwrap();
    assert!(
        c_deleted < b_deleted && b_deleted < a_deleted,
        "deleted bottom up: {c_deleted} < {b_deleted} < {a_deleted}"
    );
    collector.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_restarted_collector_picks_up_where_the_last_one_stopped() {
    let client = client().await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let owner = config_maps
        .create(&PostParams::default(), &config_map("owner"))
        .await
        .unwrap();
    let mut held = with_owners(config_map("held"), vec![owned_by(&owner, true)]);
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    config_maps
        .create(&PostParams::default(), &held)
        .await
        .unwrap();
    let other = config_maps
        .create(&PostParams::default(), &config_map("other-owner"))
        .await
        .unwrap();
    config_maps
        .create(
            &PostParams::default(),
            &with_owners(config_map("other-dependent"), vec![owned_by(&other, false)]),
        )
        .await
        .unwrap();

    let first = start(&client);
    config_maps
        .delete("owner", &policy(PropagationPolicy::Foreground))
        .await
        .unwrap();
    eventually("the held dependent is being deleted", || async {
        config_maps
            .get("held")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    })
    .await;
    first.stop().await;

    // While no collector runs: the held dependent goes, and another owner is deleted.
    let mut released = config_maps.get("held").await.unwrap();
    released.metadata.finalizers = None;
    config_maps
        .replace("held", &PostParams::default(), &released)
        .await
        .unwrap();
    assert!(!exists(&config_maps, "held").await);
    config_maps
        .delete("other-owner", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(exists(&config_maps, "owner").await, "nobody finalizes it");
    assert!(exists(&config_maps, "other-dependent").await);

    let second = start(&client);
    eventually("the new collector converges", || async {
        !exists(&config_maps, "owner").await && !exists(&config_maps, "other-dependent").await
    })
    .await;
    second.stop().await;
}

#[tokio::test(start_paused = true)]
async fn cluster_scoped_owners_and_invalid_references() {
    let client = client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let node = nodes
        .create(
            &PostParams::default(),
            &Node {
                metadata: meta("node-1"),
                ..Node::default()
            },
        )
        .await
        .unwrap();
    // A namespaced object may be owned by a cluster-scoped one.
    config_maps
        .create(
            &PostParams::default(),
            &with_owners(config_map("node-settings"), vec![owned_by(&node, false)]),
        )
        .await
        .unwrap();
    // A cluster-scoped object may not be owned by a namespaced one: the reference never
    // resolves, and the object is left alone.
    let missing = config_map("missing");
    let mut invalid = owned_by(
        &ConfigMap {
            metadata: ObjectMeta {
                uid: Some("00000000-0000-0000-0000-000000000001".into()),
                ..meta("missing")
            },
            ..missing
        },
        false,
    );
    invalid.controller = None;
    namespaces
        .create(
            &PostParams::default(),
            &with_owners(
                Namespace {
                    metadata: meta("owned-by-a-config-map"),
                    ..Namespace::default()
                },
                vec![invalid],
            ),
        )
        .await
        .unwrap();
    // A reference to a kind the API does not serve is retried, never taken for a gone owner.
    let unknown = OwnerReference {
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        name: "w".into(),
        uid: "00000000-0000-0000-0000-000000000002".into(),
        ..OwnerReference::default()
    };
    config_maps
        .create(
            &PostParams::default(),
            &with_owners(config_map("widget-part"), vec![unknown]),
        )
        .await
        .unwrap();
    let collector = start(&client);

    nodes
        .delete("node-1", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "the dependent of the cluster-scoped owner is collected",
        || async { !exists(&config_maps, "node-settings").await },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(exists(&namespaces, "owned-by-a-config-map").await);
    assert!(exists(&config_maps, "widget-part").await);
    collector.stop().await;
}
