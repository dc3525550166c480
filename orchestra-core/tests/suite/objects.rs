//! The `Api<K>` test suite: Kubernetes' object semantics, one behaviour per test, on whatever
//! client the including test file's `client()` makes (in-process in orchestra-core's
//! `api_objects`, over HTTP in orchestra-api's `api_http`).

use std::collections::BTreeMap;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, Pod, PodSpec, PodTemplateSpec, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Preconditions};
use orchestra_core::api::{
    Api, DeleteParams, Deletion, ListParams, PatchParams, PostParams, PropagationPolicy,
};
use orchestra_core::patch::PatchType;
use orchestra_core::resource::ResourceExt;
use orchestra_core::status::StatusReason;
use serde_json::json;

use super::client;

pub(crate) fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..ObjectMeta::default()
    }
}

pub(crate) fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: meta(name),
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        ..ConfigMap::default()
    }
}

pub(crate) fn labelled(mut object: ConfigMap, labels: &[(&str, &str)]) -> ConfigMap {
    object.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    object
}

pub(crate) fn deployment(name: &str, replicas: i32) -> Deployment {
    let labels = BTreeMap::from([("app".to_owned(), name.to_owned())]);
    Deployment {
        metadata: meta(name),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "web".into(),
                        image: Some("web:1".into()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

pub(crate) fn pod(name: &str, node: Option<&str>) -> Pod {
    Pod {
        metadata: meta(name),
        spec: Some(PodSpec {
            node_name: node.map(str::to_owned),
            containers: vec![Container {
                name: "web".into(),
                image: Some("web:1".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

#[tokio::test]
async fn create_sets_server_fields_and_defaults() {
    let api: Api<Deployment> = Api::namespaced(client().await, "default");
    let created = api
        .create(&PostParams::default(), &deployment("web", 2))
        .await
        .unwrap();
    assert!(created.uid().is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.namespace(), Some("default"));
    assert!(created.resource_version().unwrap().parse::<i64>().unwrap() > 1);
    let spec = created.spec.unwrap();
    assert_eq!(spec.revision_history_limit, Some(10), "defaults applied");
    assert!(created.status.is_none() || created.status == Some(Default::default()));
}

#[tokio::test]
async fn create_refuses_taken_names_invalid_objects_and_missing_namespaces() {
    let client = client().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &config_map("a", &[]))
        .await
        .unwrap();
    let error = api
        .create(&PostParams::default(), &config_map("a", &[]))
        .await
        .unwrap_err();
    assert_eq!(
        (error.code, error.reason),
        (409, StatusReason::AlreadyExists)
    );
    assert_eq!(error.message, "configmaps \"a\" already exists");

    let error = api
        .create(&PostParams::default(), &config_map("Bad_Name", &[]))
        .await
        .unwrap_err();
    assert_eq!((error.code, error.reason), (422, StatusReason::Invalid));
    assert_eq!(
        error.details.unwrap().causes.unwrap()[0].field.as_deref(),
        Some("metadata.name")
    );

    let elsewhere: Api<ConfigMap> = Api::namespaced(client, "nowhere");
    let error = elsewhere
        .create(&PostParams::default(), &config_map("a", &[]))
        .await
        .unwrap_err();
    assert_eq!(error.code, 404);
    assert_eq!(error.message, "namespaces \"nowhere\" not found");
}

#[tokio::test]
async fn generate_name_makes_unique_names() {
    let api: Api<ConfigMap> = Api::namespaced(client().await, "default");
    let mut template = ConfigMap::default();
    template.metadata.generate_name = Some("job-".into());
    let mut names = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let created = api.create(&PostParams::default(), &template).await.unwrap();
        let name = created.name_any();
        assert!(name.starts_with("job-") && name.len() == 9, "{name}");
        names.insert(name);
    }
    assert_eq!(names.len(), 20);
}

#[tokio::test]
async fn get_and_not_found() {
    let api: Api<ConfigMap> = Api::namespaced(client().await, "default");
    let error = api.get("missing").await.unwrap_err();
    assert_eq!(error.code, 404);
    assert_eq!(error.message, "configmaps \"missing\" not found");
    assert!(api.get_opt("missing").await.unwrap().is_none());
}

#[tokio::test]
async fn updates_are_optimistic_and_generation_follows_the_spec() {
    let api: Api<Deployment> = Api::namespaced(client().await, "default");
    let created = api
        .create(&PostParams::default(), &deployment("web", 1))
        .await
        .unwrap();

    let mut labelled = created.clone();
    labelled.labels_mut().insert("tier".into(), "front".into());
    let after_labels = api
        .replace("web", &PostParams::default(), &labelled)
        .await
        .unwrap();
    assert_eq!(
        after_labels.metadata.generation,
        Some(1),
        "metadata changes keep the generation"
    );

    let mut scaled = after_labels.clone();
    scaled.spec.as_mut().unwrap().replicas = Some(3);
    let after_scale = api
        .replace("web", &PostParams::default(), &scaled)
        .await
        .unwrap();
    assert_eq!(
        after_scale.metadata.generation,
        Some(2),
        "spec changes advance it"
    );
    assert_ne!(
        after_scale.resource_version(),
        after_labels.resource_version()
    );

    // A write based on the old copy is refused.
    let error = api
        .replace("web", &PostParams::default(), &scaled)
        .await
        .unwrap_err();
    assert_eq!((error.code, error.reason), (409, StatusReason::Conflict));
    assert!(
        error
            .message
            .starts_with("Operation cannot be fulfilled on deployments.apps \"web\"")
    );

    // A no-op update does not write.
    let same = api
        .replace("web", &PostParams::default(), &after_scale)
        .await
        .unwrap();
    assert_eq!(same.resource_version(), after_scale.resource_version());

    // The selector cannot change.
    let mut moved = after_scale.clone();
    moved.spec.as_mut().unwrap().selector.match_labels = Some([("app".into(), "x".into())].into());
    let error = api
        .replace("web", &PostParams::default(), &moved)
        .await
        .unwrap_err();
    assert_eq!(error.code, 422);
}

#[tokio::test]
async fn status_and_spec_are_written_separately() {
    let api: Api<Deployment> = Api::namespaced(client().await, "default");
    let created = api
        .create(&PostParams::default(), &deployment("web", 1))
        .await
        .unwrap();

    let mut with_status = created.clone();
    with_status.status = Some(k8s_openapi::api::apps::v1::DeploymentStatus {
        replicas: Some(1),
        ..Default::default()
    });
    with_status.spec.as_mut().unwrap().replicas = Some(5);
    let after = api
        .replace_status("web", &PostParams::default(), &with_status)
        .await
        .unwrap();
    assert_eq!(after.status.as_ref().unwrap().replicas, Some(1));
    assert_eq!(
        after.spec.as_ref().unwrap().replicas,
        Some(1),
        "a status write leaves the spec"
    );
    assert_eq!(after.metadata.generation, Some(1));

    let mut spec_change = after.clone();
    spec_change.status = None;
    spec_change.spec.as_mut().unwrap().replicas = Some(2);
    let after = api
        .replace("web", &PostParams::default(), &spec_change)
        .await
        .unwrap();
    assert_eq!(
        after.status.as_ref().unwrap().replicas,
        Some(1),
        "a spec write leaves the status"
    );
    assert_eq!(after.spec.unwrap().replicas, Some(2));
}

#[tokio::test]
async fn the_scale_subresource_reads_and_sets_replicas() {
    let api: Api<Deployment> = Api::namespaced(client().await, "default");
    api.create(&PostParams::default(), &deployment("web", 2))
        .await
        .unwrap();
    let mut scale = api.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.as_ref().unwrap().replicas, Some(2));
    assert_eq!(
        scale.status.as_ref().unwrap().selector.as_deref(),
        Some("app=web")
    );
    scale.spec.as_mut().unwrap().replicas = Some(0);
    let scaled = api
        .replace_scale("web", &PostParams::default(), &scale)
        .await
        .unwrap();
    assert_eq!(scaled.spec.unwrap().replicas, Some(0));
    assert_eq!(
        api.get("web").await.unwrap().spec.unwrap().replicas,
        Some(0)
    );
    // The old scale's version is stale now.
    let error = api
        .replace_scale("web", &PostParams::default(), &scale)
        .await
        .unwrap_err();
    assert_eq!(error.code, 409);
}

#[tokio::test]
async fn patches_of_every_format() {
    let api: Api<Deployment> = Api::namespaced(client().await, "default");
    api.create(&PostParams::default(), &deployment("web", 1))
        .await
        .unwrap();

    let merged = api
        .patch(
            "web",
            &PatchParams::new(PatchType::Merge),
            &json!({"spec": {"replicas": 4}}),
        )
        .await
        .unwrap();
    assert_eq!(merged.spec.unwrap().replicas, Some(4));

    let patched = api
        .patch(
            "web",
            &PatchParams::new(PatchType::Json),
            &json!([{"op": "replace", "path": "/spec/replicas", "value": 5}]),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.unwrap().replicas, Some(5));

    let strategic = api
        .patch(
            "web",
            &PatchParams::new(PatchType::StrategicMerge),
            &json!({"spec": {"template": {"spec": {"containers": [
                {"name": "sidecar", "image": "proxy:1"}
            ]}}}}),
        )
        .await
        .unwrap();
    let containers = strategic.spec.unwrap().template.spec.unwrap().containers;
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["web", "sidecar"], "containers merge by name");

    let error = api
        .patch(
            "web",
            &PatchParams::new(PatchType::Merge),
            &json!({"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 1}}),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code, 409, "a patch naming a stale version conflicts");

    let error = api
        .patch(
            "web",
            &PatchParams::new(PatchType::Merge),
            &json!({"spec": {"replicas": -1}}),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code, 422);
}

#[tokio::test]
async fn lists_filter_by_labels_and_fields() {
    let client = client().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for (name, tier) in [("a", "front"), ("b", "back"), ("c", "front")] {
        api.create(
            &PostParams::default(),
            &labelled(config_map(name, &[]), &[("tier", tier)]),
        )
        .await
        .unwrap();
    }
    let names = |list: orchestra_core::api::ObjectList<ConfigMap>| -> Vec<String> {
        list.items.iter().map(ResourceExt::name_any).collect()
    };
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier=front"))
                .await
                .unwrap()
        ),
        ["a", "c"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier notin (front)"))
                .await
                .unwrap()
        ),
        ["b"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name!=a"))
                .await
                .unwrap()
        ),
        ["b", "c"]
    );
    let error = api
        .list(&ListParams::default().fields("spec.nodeName=x"))
        .await
        .unwrap_err();
    assert_eq!(error.code, 400);
    assert_eq!(error.message, "field label not supported: spec.nodeName");

    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.create(&PostParams::default(), &pod("on-one", Some("node-1")))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("on-two", Some("node-2")))
        .await
        .unwrap();
    let on_one = pods
        .list(&ListParams::default().fields("spec.nodeName=node-1"))
        .await
        .unwrap();
    assert_eq!(on_one.items.len(), 1);
    assert_eq!(on_one.items[0].name_any(), "on-one");
}

#[tokio::test]
async fn pages_are_consistent_snapshots() {
    let api: Api<ConfigMap> = Api::namespaced(client().await, "default");
    for i in 0..25 {
        api.create(
            &PostParams::default(),
            &config_map(&format!("cm-{i:02}"), &[]),
        )
        .await
        .unwrap();
    }
    let first = api.list(&ListParams::default().limit(10)).await.unwrap();
    assert_eq!(first.items.len(), 10);
    let token = first.continue_token().unwrap().to_owned();
    // Changes after the first page do not show in the later pages.
    api.create(&PostParams::default(), &config_map("cm-99", &[]))
        .await
        .unwrap();
    api.delete("cm-24", &DeleteParams::default()).await.unwrap();
    let second = api
        .list(&ListParams::default().limit(10).continue_token(&token))
        .await
        .unwrap();
    let third = api
        .list(
            &ListParams::default()
                .limit(10)
                .continue_token(second.continue_token().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(second.resource_version(), first.resource_version());
    assert!(third.continue_token().is_none());
    let all: Vec<String> = [first, second, third]
        .into_iter()
        .flat_map(|page| page.items)
        .map(|cm| cm.name_any())
        .collect();
    let expected: Vec<String> = (0..25).map(|i| format!("cm-{i:02}")).collect();
    assert_eq!(all, expected);
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let api: Api<ConfigMap> = Api::namespaced(client().await, "default");
    let mut object = config_map("held", &[]);
    object.metadata.finalizers = Some(vec!["example.com/cleanup".into()]);
    api.create(&PostParams::default(), &object).await.unwrap();

    let Deletion::InProgress(terminating) =
        api.delete("held", &DeleteParams::default()).await.unwrap()
    else {
        panic!("an object with finalizers is not deleted at once");
    };
    assert!(terminating.metadata.deletion_timestamp.is_some());
    let mut more = terminating.clone();
    more.metadata.finalizers = Some(vec![
        "example.com/cleanup".into(),
        "example.com/more".into(),
    ]);
    let error = api
        .replace("held", &PostParams::default(), &more)
        .await
        .unwrap_err();
    assert_eq!(error.code, 422, "no new finalizers once deleting");

    let mut done = terminating;
    done.metadata.finalizers = None;
    api.replace("held", &PostParams::default(), &done)
        .await
        .unwrap();
    assert!(
        api.get_opt("held").await.unwrap().is_none(),
        "removing the last finalizer deletes"
    );
}

#[tokio::test]
async fn propagation_policies_are_recorded_as_finalizers() {
    let api: Api<Deployment> = Api::namespaced(client().await, "default");
    api.create(&PostParams::default(), &deployment("orphaning", 1))
        .await
        .unwrap();
    api.create(&PostParams::default(), &deployment("foreground", 1))
        .await
        .unwrap();
    api.create(&PostParams::default(), &deployment("background", 1))
        .await
        .unwrap();
    let orphan = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        ..DeleteParams::default()
    };
    let deleted = api.delete("orphaning", &orphan).await.unwrap();
    let Deletion::InProgress(object) = deleted else {
        panic!("orphaning waits for the collector")
    };
    assert_eq!(object.finalizers(), ["orphan"]);
    let foreground = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        ..DeleteParams::default()
    };
    let Deletion::InProgress(object) = api.delete("foreground", &foreground).await.unwrap() else {
        panic!("foreground deletion waits for the dependents")
    };
    assert_eq!(object.finalizers(), ["foregroundDeletion"]);
    let background = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    assert!(matches!(
        api.delete("background", &background).await.unwrap(),
        Deletion::Deleted(_)
    ));
}

#[tokio::test]
async fn delete_preconditions_are_checked() {
    let api: Api<ConfigMap> = Api::namespaced(client().await, "default");
    let created = api
        .create(&PostParams::default(), &config_map("a", &[]))
        .await
        .unwrap();
    let wrong_uid = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("not-the-uid".into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let error = api.delete("a", &wrong_uid).await.unwrap_err();
    assert_eq!(error.code, 409);
    assert!(
        error
            .message
            .contains("Precondition failed: UID in precondition: not-the-uid")
    );
    let right = DeleteParams {
        preconditions: Some(Preconditions {
            uid: created.metadata.uid.clone(),
            resource_version: created.metadata.resource_version.clone(),
        }),
        ..DeleteParams::default()
    };
    assert!(matches!(
        api.delete("a", &right).await.unwrap(),
        Deletion::Deleted(_)
    ));
    assert_eq!(api.delete("a", &right).await.unwrap_err().code, 404);
}

#[tokio::test]
async fn pods_on_a_node_terminate_gracefully() {
    let api: Api<Pod> = Api::namespaced(client().await, "default");
    api.create(&PostParams::default(), &pod("unscheduled", None))
        .await
        .unwrap();
    assert!(matches!(
        api.delete("unscheduled", &DeleteParams::default())
            .await
            .unwrap(),
        Deletion::Deleted(_)
    ));

    let created = api
        .create(&PostParams::default(), &pod("running", Some("node-1")))
        .await
        .unwrap();
    assert_eq!(created.status.unwrap().phase.as_deref(), Some("Pending"));
    let Deletion::InProgress(terminating) = api
        .delete("running", &DeleteParams::default())
        .await
        .unwrap()
    else {
        panic!("a scheduled pod terminates gracefully");
    };
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    // The node agent finishes it with grace 0.
    assert!(matches!(
        api.delete("running", &DeleteParams::immediately())
            .await
            .unwrap(),
        Deletion::Deleted(_)
    ));
}

#[tokio::test]
async fn pod_specs_change_only_where_kubernetes_allows() {
    let api: Api<Pod> = Api::namespaced(client().await, "default");
    let created = api
        .create(&PostParams::default(), &pod("p", None))
        .await
        .unwrap();
    let mut new_image = created.clone();
    new_image.spec.as_mut().unwrap().containers[0].image = Some("web:2".into());
    let updated = api
        .replace("p", &PostParams::default(), &new_image)
        .await
        .unwrap();
    let mut new_name = updated.clone();
    new_name.spec.as_mut().unwrap().containers[0].name = "renamed".into();
    let error = api
        .replace("p", &PostParams::default(), &new_name)
        .await
        .unwrap_err();
    assert_eq!(error.code, 422);
    assert!(error.message.contains("pod updates may not change fields"));
}

#[tokio::test]
async fn dry_runs_store_nothing() {
    let api: Api<ConfigMap> = Api::namespaced(client().await, "default");
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let created = api.create(&dry, &config_map("dry", &[])).await.unwrap();
    assert!(created.uid().is_some());
    assert!(api.get_opt("dry").await.unwrap().is_none());
    let invalid = api
        .create(&dry, &config_map("Not Valid", &[]))
        .await
        .unwrap_err();
    assert_eq!(invalid.code, 422, "dry runs validate");
}

#[tokio::test]
async fn terminating_namespaces_take_no_new_objects() {
    let client = client().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: meta("shop"),
                ..Namespace::default()
            },
        )
        .await
        .unwrap();
    let Deletion::InProgress(namespace) = namespaces
        .delete("shop", &DeleteParams::default())
        .await
        .unwrap()
    else {
        panic!("namespaces wait for their contents to be deleted");
    };
    assert_eq!(
        namespace.status.unwrap().phase.as_deref(),
        Some("Terminating")
    );
    let api: Api<Service> = Api::namespaced(client, "shop");
    let service = Service {
        metadata: meta("web"),
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                port: 80,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    let error = api
        .create(&PostParams::default(), &service)
        .await
        .unwrap_err();
    assert_eq!(error.code, 403);
    assert!(error.message.contains("because it is being terminated"));
}

#[tokio::test]
async fn watches_follow_selectors_and_report_deletions() {
    let api: Api<ConfigMap> = Api::namespaced(client().await, "default");
    let start = api
        .create(&PostParams::default(), &config_map("first", &[]))
        .await
        .unwrap();
    let mut events = api
        .watch(
            &orchestra_core::api::WatchParams::default().labels("watched=yes"),
            start.resource_version().unwrap(),
        )
        .await
        .unwrap();
    let object = api
        .create(
            &PostParams::default(),
            &labelled(config_map("x", &[]), &[("watched", "yes")]),
        )
        .await
        .unwrap();
    let mut unwatched = object.clone();
    unwatched.labels_mut().insert("watched".into(), "no".into());
    api.replace("x", &PostParams::default(), &unwatched)
        .await
        .unwrap();
    api.delete("x", &DeleteParams::default()).await.unwrap();
    let types: Vec<&str> = events
        .by_ref()
        .take(2)
        .map(|e| e.type_name())
        .collect()
        .await;
    assert_eq!(
        types,
        ["ADDED", "DELETED"],
        "leaving the selection is a deletion"
    );
}
