//! Server-side apply through `Api<K>` over a `MemoryStore`: `PATCH` with
//! `application/apply-patch+yaml`, field managers, conflicts, and the `managedFields` ordinary
//! writes record.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v1::{Scale, ScaleSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, StatusCause};
use orchestra_core::api::{Api, Client, PatchParams, PostParams};
use orchestra_core::patch::PatchType;
use orchestra_core::status::{StatusError, StatusReason};
use orchestra_core::store::MemoryStore;
use serde_json::{Value, json};

async fn deployments() -> Api<Deployment> {
    let client = Client::new(MemoryStore::new());
    client.bootstrap().await.unwrap();
    Api::namespaced(client, "default")
}

fn apply_params(manager: &str, force: bool) -> PatchParams {
    PatchParams {
        field_manager: Some(manager.to_owned()),
        force,
        ..PatchParams::new(PatchType::Apply)
    }
}

/// An apply configuration of the deployment `web`: its replicas (when given) and containers.
fn config(replicas: Option<i64>, containers: Value) -> Value {
    let mut spec = json!({
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": containers},
        },
    });
    if let Some(replicas) = replicas {
        spec["replicas"] = json!(replicas);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": spec,
    })
}

fn web(image: &str) -> Value {
    json!([{"name": "web", "image": image}])
}

/// `(manager, operation, fieldsV1)` of every `managedFields` entry.
fn owners(deployment: &Deployment) -> Vec<(String, String, Value)> {
    deployment
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|entry| {
            (
                entry.manager.clone().unwrap_or_default(),
                entry.operation.clone().unwrap_or_default(),
                entry
                    .fields_v1
                    .as_ref()
                    .map(|fields| fields.0.clone())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

fn replicas(deployment: &Deployment) -> Option<i32> {
    deployment.spec.as_ref().and_then(|spec| spec.replicas)
}

fn cause(field: &str, message: &str) -> StatusCause {
    StatusCause {
        field: Some(field.to_owned()),
        message: Some(message.to_owned()),
        reason: Some("FieldManagerConflict".to_owned()),
    }
}

fn causes(error: &StatusError) -> Vec<StatusCause> {
    error
        .details
        .as_ref()
        .and_then(|details| details.causes.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn two_managers_apply_one_deployment() {
    let api = deployments().await;

    // The first apply creates the deployment.
    let created = api
        .patch(
            "web",
            &apply_params("ci", false),
            &config(Some(3), web("web:1")),
        )
        .await
        .unwrap();
    assert_eq!(replicas(&created), Some(3));
    assert!(created.metadata.uid.is_some());
    let ci_fields = json!({"f:spec": {
        "f:replicas": {},
        "f:selector": {"f:matchLabels": {"f:app": {}}},
        "f:template": {
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                ".": {}, "f:image": {}, "f:name": {},
            }}},
        },
    }});
    assert_eq!(
        owners(&created),
        [("ci".to_owned(), "Apply".to_owned(), ci_fields.clone())]
    );
    let entry = &created.metadata.managed_fields.as_ref().unwrap()[0];
    assert_eq!(entry.api_version.as_deref(), Some("apps/v1"));
    assert_eq!(entry.fields_type.as_deref(), Some("FieldsV1"));
    assert!(entry.time.is_some());

    // Applying the same configuration again changes nothing, not even the resource version.
    let again = api
        .patch(
            "web",
            &apply_params("ci", false),
            &config(Some(3), web("web:1")),
        )
        .await
        .unwrap();
    assert_eq!(again, created);

    // A second manager changing the replicas conflicts with the first.
    let hpa = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 5},
    });
    let error = api
        .patch("web", &apply_params("hpa", false), &hpa)
        .await
        .unwrap_err();
    assert_eq!((error.code, error.reason), (409, StatusReason::Conflict));
    assert_eq!(
        error.message,
        r#"Apply failed with 1 conflict: conflict with "ci": .spec.replicas"#
    );
    assert_eq!(
        causes(&error),
        [cause(".spec.replicas", r#"conflict with "ci""#)]
    );

    // Setting the same value is no conflict: both own the replicas.
    let mut same = hpa.clone();
    same["spec"]["replicas"] = json!(3);
    let shared = api
        .patch("web", &apply_params("hpa", false), &same)
        .await
        .unwrap();
    assert_eq!(owners(&shared).len(), 2);

    // Forced, the second manager takes the replicas.
    let forced = api
        .patch("web", &apply_params("hpa", true), &hpa)
        .await
        .unwrap();
    assert_eq!(replicas(&forced), Some(5));
    let mut ci_without_replicas = ci_fields.clone();
    ci_without_replicas["f:spec"]
        .as_object_mut()
        .unwrap()
        .remove("f:replicas");
    assert_eq!(
        owners(&forced),
        [
            ("ci".to_owned(), "Apply".to_owned(), ci_without_replicas),
            (
                "hpa".to_owned(),
                "Apply".to_owned(),
                json!({"f:spec": {"f:replicas": {}}})
            ),
        ]
    );

    // The first manager now leaves the replicas out and adds a container: the replicas stay
    // (the second owns them), the containers merge by name.
    let containers = json!([
        {"name": "web", "image": "web:2"},
        {"name": "proxy", "image": "proxy:1"},
    ]);
    let applied = api
        .patch("web", &apply_params("ci", false), &config(None, containers))
        .await
        .unwrap();
    assert_eq!(replicas(&applied), Some(5));
    let template = applied
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    let images: Vec<(&str, Option<&str>)> = template
        .containers
        .iter()
        .map(|c| (c.name.as_str(), c.image.as_deref()))
        .collect();
    assert_eq!(images, [("web", Some("web:2")), ("proxy", Some("proxy:1"))]);
    assert_eq!(applied.metadata.generation, Some(3));

    // Dropping the proxy from the configuration removes it.
    let pruned = api
        .patch(
            "web",
            &apply_params("ci", false),
            &config(None, web("web:2")),
        )
        .await
        .unwrap();
    let template = pruned
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    assert_eq!(template.containers.len(), 1);
    assert_eq!(api.get("web").await.unwrap(), pruned);
}

#[tokio::test]
async fn ordinary_writes_record_their_managers() {
    let api = deployments().await;
    let params = PostParams {
        field_manager: Some("kubectl-client-side-apply".to_owned()),
        ..PostParams::default()
    };
    let object: Deployment = serde_json::from_value(config(Some(3), web("web:1"))).unwrap();
    let created = api.create(&params, &object).await.unwrap();
    let owned = owners(&created);
    assert_eq!(owned.len(), 1);
    assert_eq!(
        (owned[0].0.as_str(), owned[0].1.as_str()),
        ("kubectl-client-side-apply", "Update")
    );
    // The creator owns the defaults too, as in Kubernetes.
    assert_eq!(owned[0].2["f:spec"]["f:replicas"], json!({}));
    assert_eq!(owned[0].2["f:spec"]["f:strategy"]["f:type"], json!({}));
    assert_eq!(owned[0].2.get("f:status"), None);

    let error = api
        .patch(
            "web",
            &apply_params("kubectl", false),
            &config(Some(5), web("web:1")),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.message,
        r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas"#
    );

    // `kubectl scale` through the scale subresource takes the replicas.
    let scale = Scale {
        metadata: ObjectMeta::default(),
        spec: Some(ScaleSpec { replicas: Some(4) }),
        status: None,
    };
    let scale_params = PostParams {
        field_manager: Some("kubectl".to_owned()),
        ..PostParams::default()
    };
    api.replace_scale("web", &scale_params, &scale)
        .await
        .unwrap();
    let scaled = api.get("web").await.unwrap();
    let owned = owners(&scaled);
    let fields_of = |manager: &str| {
        owned
            .iter()
            .find(|(name, _, _)| name == manager)
            .map(|(_, _, fields)| fields.clone())
            .unwrap_or_default()
    };
    assert_eq!(fields_of("kubectl"), json!({"f:spec": {"f:replicas": {}}}));
    assert_eq!(
        fields_of("kubectl-client-side-apply")["f:spec"].get("f:replicas"),
        None
    );

    // Writes without a manager leave the owners as they are.
    let patched = api
        .patch(
            "web",
            &PatchParams::new(PatchType::Merge),
            &json!({"spec": {"minReadySeconds": 1}}),
        )
        .await
        .unwrap();
    assert_eq!(owners(&patched), owned);
}

#[tokio::test]
async fn apply_requests_are_checked() {
    let api = deployments().await;
    let error = api
        .patch(
            "web",
            &PatchParams::new(PatchType::Apply),
            &config(Some(1), web("web:1")),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code, 422);
    assert_eq!(
        error.message,
        r#"PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch"#
    );

    let forced_merge = PatchParams {
        force: true,
        ..PatchParams::new(PatchType::Merge)
    };
    let error = api
        .patch("web", &forced_merge, &json!({}))
        .await
        .unwrap_err();
    assert_eq!(error.code, 422);

    let mut wrong_version = config(Some(1), web("web:1"));
    wrong_version["apiVersion"] = json!("apps/v1beta1");
    let error = api
        .patch("web", &apply_params("ci", false), &wrong_version)
        .await
        .unwrap_err();
    assert_eq!(error.code, 400);

    let mut wrong_name = config(Some(1), web("web:1"));
    wrong_name["metadata"]["name"] = json!("other");
    let error = api
        .patch("web", &apply_params("ci", false), &wrong_name)
        .await
        .unwrap_err();
    assert_eq!(error.code, 400);

    let duplicated = config(Some(1), json!([{"name": "a"}, {"name": "a"}]));
    let error = api
        .patch("web", &apply_params("ci", false), &duplicated)
        .await
        .unwrap_err();
    assert_eq!(error.code, 400);

    // A dry run creates nothing.
    let dry_run = PatchParams {
        dry_run: true,
        ..apply_params("ci", false)
    };
    let object = api
        .patch("web", &dry_run, &config(Some(1), web("web:1")))
        .await
        .unwrap();
    assert_eq!(replicas(&object), Some(1));
    assert!(api.get_opt("web").await.unwrap().is_none());

    // An invalid object is refused by validation, as any other write.
    let error = api
        .patch(
            "web",
            &apply_params("ci", false),
            &config(Some(-1), web("web:1")),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code, 422);
}
