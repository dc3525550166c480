//! PriorityClasses and the `Priority` admission plugin, which every client runs: a pod's
//! `priorityClassName` becomes its `priority` and `preemptionPolicy`, as in Kubernetes.

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use orchestra_core::api::{Api, Client, PostParams};
use orchestra_core::status::{StatusError, StatusReason};
use orchestra_core::store::MemoryStore;

async fn client() -> Client {
    let client = Client::new(MemoryStore::new());
    client.bootstrap().await.unwrap();
    client
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..ObjectMeta::default()
    }
}

fn pod(name: &str, class: Option<&str>) -> Pod {
    Pod {
        metadata: meta(name),
        spec: Some(PodSpec {
            priority_class_name: class.map(str::to_owned),
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

fn class(name: &str, value: i32, global_default: bool) -> PriorityClass {
    PriorityClass {
        metadata: meta(name),
        value,
        global_default: global_default.then_some(true),
        ..PriorityClass::default()
    }
}

fn pods(client: &Client) -> Api<Pod> {
    Api::namespaced(client.clone(), "default")
}

fn classes(client: &Client) -> Api<PriorityClass> {
    Api::all(client.clone())
}

async fn create_pod(client: &Client, pod: &Pod) -> Result<PodSpec, StatusError> {
    let created = pods(client).create(&PostParams::default(), pod).await?;
    Ok(created.spec.unwrap_or_default())
}

fn assert_forbidden(error: &StatusError, message: &str) {
    assert_eq!(error.code, 403, "{error:?}");
    assert_eq!(error.reason, StatusReason::Forbidden, "{error:?}");
    assert!(
        error.message.ends_with(message),
        "{:?} does not end with {message:?}",
        error.message
    );
}

#[tokio::test]
async fn system_classes_exist_without_being_stored() {
    let client = client().await;
    let spec = create_pod(&client, &pod("dns", Some("system-cluster-critical")))
        .await
        .unwrap();
    assert_eq!(spec.priority, Some(2_000_000_000));
    assert_eq!(
        spec.preemption_policy.as_deref(),
        Some("PreemptLowerPriority")
    );
    assert_eq!(
        spec.priority_class_name.as_deref(),
        Some("system-cluster-critical")
    );

    let spec = create_pod(&client, &pod("proxy", Some("system-node-critical")))
        .await
        .unwrap();
    assert_eq!(spec.priority, Some(2_000_001_000));
}

#[tokio::test]
async fn a_user_class_gives_its_value_and_preemption_policy() {
    let client = client().await;
    let mut batch = class("batch", 1000, false);
    batch.preemption_policy = Some("Never".into());
    classes(&client)
        .create(&PostParams::default(), &batch)
        .await
        .unwrap();
    let high = classes(&client)
        .create(&PostParams::default(), &class("high", 500_000, false))
        .await
        .unwrap();
    assert_eq!(
        high.preemption_policy.as_deref(),
        Some("PreemptLowerPriority"),
        "defaulted"
    );

    let spec = create_pod(&client, &pod("job", Some("batch")))
        .await
        .unwrap();
    assert_eq!(spec.priority, Some(1000));
    assert_eq!(spec.preemption_policy.as_deref(), Some("Never"));

    let spec = create_pod(&client, &pod("web", Some("high")))
        .await
        .unwrap();
    assert_eq!(spec.priority, Some(500_000));
    assert_eq!(
        spec.preemption_policy.as_deref(),
        Some("PreemptLowerPriority")
    );

    // Stored, as the pod was admitted.
    let stored = pods(&client).get("job").await.unwrap().spec.unwrap();
    assert_eq!(stored.priority, Some(1000));
}

#[tokio::test]
async fn an_unknown_class_is_forbidden() {
    let client = client().await;
    let error = create_pod(&client, &pod("lost", Some("missing")))
        .await
        .unwrap_err();
    assert_forbidden(&error, "no PriorityClass with name missing was found");
    assert_eq!(
        error.message,
        r#"pods "lost" is forbidden: no PriorityClass with name missing was found"#
    );
    assert!(pods(&client).get_opt("lost").await.unwrap().is_none());
}

#[tokio::test]
async fn pods_without_a_class_get_priority_zero_when_there_is_no_default() {
    let client = client().await;
    classes(&client)
        .create(&PostParams::default(), &class("not-default", 7, false))
        .await
        .unwrap();
    let spec = create_pod(&client, &pod("plain", None)).await.unwrap();
    assert_eq!(spec.priority, Some(0));
    assert_eq!(
        spec.preemption_policy.as_deref(),
        Some("PreemptLowerPriority")
    );
    assert_eq!(spec.priority_class_name, None);
}

#[tokio::test]
async fn the_global_default_applies_to_pods_without_a_class() {
    let client = client().await;
    classes(&client)
        .create(&PostParams::default(), &class("standard", 100, true))
        .await
        .unwrap();
    let spec = create_pod(&client, &pod("plain", None)).await.unwrap();
    assert_eq!(spec.priority, Some(100));
    assert_eq!(spec.priority_class_name.as_deref(), Some("standard"));
    assert_eq!(
        spec.preemption_policy.as_deref(),
        Some("PreemptLowerPriority")
    );

    // A pod that names a class gets that class, not the default.
    let spec = create_pod(&client, &pod("critical", Some("system-cluster-critical")))
        .await
        .unwrap();
    assert_eq!(spec.priority, Some(2_000_000_000));
}

#[tokio::test]
async fn only_one_class_may_be_the_global_default() {
    let client = client().await;
    let api = classes(&client);
    api.create(&PostParams::default(), &class("standard", 100, true))
        .await
        .unwrap();
    let error = api
        .create(&PostParams::default(), &class("other", 200, true))
        .await
        .unwrap_err();
    assert_forbidden(
        &error,
        "PriorityClass standard is already marked as default. Only one default can exist",
    );
    assert!(api.get_opt("other").await.unwrap().is_none());

    // Marking another existing class as default is refused too.
    let mut other = api
        .create(&PostParams::default(), &class("other", 200, false))
        .await
        .unwrap();
    other.global_default = Some(true);
    let error = api
        .replace("other", &PostParams::default(), &other)
        .await
        .unwrap_err();
    assert_forbidden(
        &error,
        "PriorityClass standard is already marked as default. Only one default can exist",
    );

    // The default itself may be updated, and another may become the default once it is not.
    let mut standard = api.get("standard").await.unwrap();
    standard.description = Some("most pods".into());
    let mut standard = api
        .replace("standard", &PostParams::default(), &standard)
        .await
        .unwrap();
    standard.global_default = Some(false);
    api.replace("standard", &PostParams::default(), &standard)
        .await
        .unwrap();
    let mut other = api.get("other").await.unwrap();
    other.global_default = Some(true);
    api.replace("other", &PostParams::default(), &other)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_priority_that_differs_from_the_class_is_forbidden() {
    let client = client().await;
    classes(&client)
        .create(&PostParams::default(), &class("high", 1000, false))
        .await
        .unwrap();
    let mut explicit = pod("explicit", Some("high"));
    if let Some(spec) = explicit.spec.as_mut() {
        spec.priority = Some(5);
    }
    let error = create_pod(&client, &explicit).await.unwrap_err();
    assert_forbidden(
        &error,
        "the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name",
    );

    // Without a class, a nonzero priority differs from the computed 0.
    let mut bare = pod("bare", None);
    if let Some(spec) = bare.spec.as_mut() {
        spec.priority = Some(5);
    }
    let error = create_pod(&client, &bare).await.unwrap_err();
    assert_forbidden(
        &error,
        "the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 0 from the given PriorityClass name",
    );

    // The same value as the class's is accepted.
    let mut same = pod("same", Some("high"));
    if let Some(spec) = same.spec.as_mut() {
        spec.priority = Some(1000);
    }
    assert_eq!(
        create_pod(&client, &same).await.unwrap().priority,
        Some(1000)
    );
}

#[tokio::test]
async fn priority_classes_are_validated() {
    let client = client().await;
    let api = classes(&client);
    let error = api
        .create(&PostParams::default(), &class("system-mine", 10, false))
        .await
        .unwrap_err();
    assert_eq!(error.code, 422);
    assert!(
        error.message.contains(
            "priority class names with 'system-' prefix are reserved for system use only"
        ),
        "{}",
        error.message
    );
    let error = api
        .create(&PostParams::default(), &class("huge", 1_000_000_001, false))
        .await
        .unwrap_err();
    assert_eq!(error.code, 422);
    assert!(
        error
            .message
            .contains("maximum allowed value of a user defined priority is 1000000000"),
        "{}",
        error.message
    );

    // Value and preemption policy are immutable; a replace that leaves the policy out keeps it.
    let created = api
        .create(&PostParams::default(), &class("high", 10, false))
        .await
        .unwrap();
    let mut revalued = created.clone();
    revalued.value = 11;
    let error = api
        .replace("high", &PostParams::default(), &revalued)
        .await
        .unwrap_err();
    assert_eq!(error.code, 422);
    assert!(
        error.message.contains("value: Forbidden"),
        "{}",
        error.message
    );
    let mut repolicied = created.clone();
    repolicied.preemption_policy = Some("Never".into());
    let error = api
        .replace("high", &PostParams::default(), &repolicied)
        .await
        .unwrap_err();
    assert!(
        error.message.contains("field is immutable"),
        "{}",
        error.message
    );
    let mut unset = created;
    unset.preemption_policy = None;
    unset.description = Some("described".into());
    api.replace("high", &PostParams::default(), &unset)
        .await
        .unwrap();
}

#[tokio::test]
async fn clients_without_default_admission_leave_priorities_alone() {
    let client = Client::builder(MemoryStore::new())
        .without_default_admission()
        .build();
    client.bootstrap().await.unwrap();
    let spec = create_pod(&client, &pod("free", Some("missing")))
        .await
        .unwrap();
    assert_eq!(spec.priority, None);
}
