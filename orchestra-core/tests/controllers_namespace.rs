//! The namespace controller over a `MemoryStore`: a deleted namespace is emptied of every kind,
//! waits for finalizers and graceful deletions, then disappears.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, Pod, PodSpec, PodTemplateSpec, Secret, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use orchestra_core::api::{Api, Client, DeleteParams, Deletion, PostParams, PropagationPolicy};
use orchestra_core::clock::TokioClock;
use orchestra_core::controllers::garbage_collector::GarbageCollector;
use orchestra_core::controllers::namespace::NamespaceController;
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

/// A controller running on its own task, until stopped.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<()>,
}

fn spawn<F>(run: impl FnOnce(tokio::sync::oneshot::Receiver<()>) -> F) -> Running
where
    F: Future<Output = ()> + Send + 'static,
{
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    Running {
        stop,
        task: tokio::spawn(run(stopped)),
    }
}

fn start(client: &Client) -> Running {
    let controller = NamespaceController::new(client.clone());
    spawn(|stopped| {
        controller.run(async move {
            let _ = stopped.await;
        })
    })
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the controller stops promptly")
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

async fn create_namespace(client: &Client, name: &str) {
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: meta(name),
                ..Namespace::default()
            },
        )
        .await
        .unwrap();
}

fn pod_spec(node: Option<&str>) -> PodSpec {
    PodSpec {
        containers: vec![Container {
            name: "web".into(),
            image: Some("nginx".into()),
            ..Container::default()
        }],
        node_name: node.map(str::to_owned),
        ..PodSpec::default()
    }
}

fn pod(name: &str, node: Option<&str>) -> Pod {
    Pod {
        metadata: meta(name),
        spec: Some(pod_spec(node)),
        ..Pod::default()
    }
}

fn deployment(name: &str) -> Deployment {
    let labels = [("app".to_owned(), "web".to_owned())].into();
    Deployment {
        metadata: meta(name),
        spec: Some(DeploymentSpec {
            selector: LabelSelector {
                match_labels: Some(labels),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some([("app".to_owned(), "web".to_owned())].into()),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(None)),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

fn service(name: &str) -> Service {
    Service {
        metadata: meta(name),
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                port: 80,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn condition(namespace: &Namespace, kind: &str) -> Option<(String, String)> {
    namespace
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| (c.status.clone(), c.message.clone().unwrap_or_default()))
}

#[tokio::test(start_paused = true)]
async fn a_deleted_namespace_is_emptied_then_removed() {
    let client = client().await;
    create_namespace(&client, "shop").await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "shop");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "shop");
    let services: Api<Service> = Api::namespaced(client.clone(), "shop");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    let elsewhere: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for name in ["settings", "flags"] {
        config_maps
            .create(
                &PostParams::default(),
                &ConfigMap {
                    metadata: meta(name),
                    ..ConfigMap::default()
                },
            )
            .await
            .unwrap();
    }
    let mut held = ConfigMap {
        metadata: meta("held"),
        ..ConfigMap::default()
    };
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    config_maps
        .create(&PostParams::default(), &held)
        .await
        .unwrap();
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: meta("token"),
                ..Secret::default()
            },
        )
        .await
        .unwrap();
    services
        .create(&PostParams::default(), &service("web"))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("web-1", None))
        .await
        .unwrap();
    deployments
        .create(&PostParams::default(), &deployment("web"))
        .await
        .unwrap();
    elsewhere
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: meta("settings"),
                ..ConfigMap::default()
            },
        )
        .await
        .unwrap();
    let controller = start(&client);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        exists(&config_maps, "settings").await,
        "a namespace that is not deleted is left alone"
    );

    let Deletion::InProgress(_) = namespaces
        .delete("shop", &DeleteParams::default())
        .await
        .unwrap()
    else {
        panic!("a namespace waits for its content to be deleted");
    };
    eventually("everything without a finalizer is deleted", || async {
        !exists(&config_maps, "settings").await
            && !exists(&config_maps, "flags").await
            && !exists(&secrets, "token").await
            && !exists(&services, "web").await
            && !exists(&pods, "web-1").await
            && !exists(&deployments, "web").await
    })
    .await;
    let held = config_maps.get("held").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    eventually("the conditions say what remains", || async {
        let namespace = namespaces.get("shop").await.unwrap();
        condition(&namespace, "NamespaceFinalizersRemaining").is_some()
    })
    .await;
    let namespace = namespaces.get("shop").await.unwrap();
    assert_eq!(
        namespace.status.as_ref().unwrap().phase.as_deref(),
        Some("Terminating")
    );
    assert_eq!(
        condition(&namespace, "NamespaceContentRemaining"),
        Some((
            "True".to_owned(),
            "Some resources are remaining: configmaps has 1 resource instances".to_owned()
        ))
    );
    assert_eq!(
        condition(&namespace, "NamespaceFinalizersRemaining"),
        Some((
            "True".to_owned(),
            "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances".to_owned()
        ))
    );
    assert_eq!(
        condition(&namespace, "NamespaceDeletionContentFailure").map(|c| c.0),
        Some("False".to_owned())
    );

    // Nothing new gets in while it terminates.
    let refused = config_maps
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: meta("late"),
                ..ConfigMap::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code, 403);

    // It waits for the finalizer, however long.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(exists(&namespaces, "shop").await);

    let mut released = config_maps.get("held").await.unwrap();
    released.metadata.finalizers = None;
    config_maps
        .replace("held", &PostParams::default(), &released)
        .await
        .unwrap();
    eventually("the namespace is removed", || async {
        !exists(&namespaces, "shop").await
    })
    .await;
    assert!(
        exists(&elsewhere, "settings").await,
        "other namespaces keep their content"
    );
    controller.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_namespace_waits_for_its_pods_to_terminate() {
    let client = client().await;
    create_namespace(&client, "jobs").await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "jobs");
    pods.create(&PostParams::default(), &pod("worker", Some("node-1")))
        .await
        .unwrap();
    let controller = start(&client);

    namespaces
        .delete("jobs", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the pod is terminating", || async {
        pods.get("worker")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        exists(&namespaces, "jobs").await,
        "the pod's node agent has not finished it"
    );

    // The node agent finishes the pod.
    pods.delete("worker", &DeleteParams::immediately())
        .await
        .unwrap();
    eventually("the namespace is removed", || async {
        !exists(&namespaces, "jobs").await
    })
    .await;
    controller.stop().await;
}

#[tokio::test(start_paused = true)]
async fn namespaces_deleted_in_the_foreground_go_with_the_garbage_collector() {
    let client = client().await;
    create_namespace(&client, "team").await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    config_maps
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: meta("settings"),
                ..ConfigMap::default()
            },
        )
        .await
        .unwrap();
    // Deleted before any controller runs: they find it terminating when they start.
    let Deletion::InProgress(terminating) = namespaces
        .delete(
            "team",
            &DeleteParams {
                propagation_policy: Some(PropagationPolicy::Foreground),
                ..DeleteParams::default()
            },
        )
        .await
        .unwrap()
    else {
        panic!("the namespace waits");
    };
    assert_eq!(terminating.finalizers(), ["foregroundDeletion"]);

    let controller = start(&client);
    let collector_client = client.clone();
    let collector = spawn(|stopped| {
        GarbageCollector::new(collector_client).run(async move {
            let _ = stopped.await;
        })
    });
    eventually("the namespace is removed", || async {
        !exists(&namespaces, "team").await
    })
    .await;
    assert!(!exists(&config_maps, "settings").await);
    collector.stop().await;
    controller.stop().await;
}
