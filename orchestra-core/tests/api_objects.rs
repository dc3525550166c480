//! `Api<K>` over a `MemoryStore`: Kubernetes' object semantics, one behaviour per test. The
//! suite in `suite/objects.rs` runs here in-process, and in orchestra-api's `api_http` over HTTP;
//! the tests below need the store or the client's own admission chain, so they run here only.

#[path = "suite/objects.rs"]
mod objects;

use k8s_openapi::api::core::v1::ConfigMap;
use objects::{config_map, labelled};
use orchestra_core::api::{
    Admission, AdmissionRequest, Api, Client, DeleteParams, ListParams, Operation, PostParams,
    VersionMatch,
};
use orchestra_core::resource::{DynamicObject, ResourceExt};
use orchestra_core::status::{StatusError, StatusReason};
use orchestra_core::store::MemoryStore;

/// The client the suite runs on: in-process over a fresh `MemoryStore`.
async fn client() -> Client {
    let client = Client::new(MemoryStore::new());
    client.bootstrap().await.unwrap();
    client
}

#[tokio::test]
async fn lists_read_at_resource_versions() {
    let client = client().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let a = api
        .create(&PostParams::default(), &config_map("a", &[]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &config_map("b", &[]))
        .await
        .unwrap();
    let then = api
        .list(&ListParams::default().at(a.resource_version().unwrap(), VersionMatch::Exact))
        .await
        .unwrap();
    assert_eq!(then.items.len(), 1);
    let future = api
        .list(&ListParams::default().at("999999", VersionMatch::NotOlderThan))
        .await
        .unwrap_err();
    assert_eq!(future.code, 504);
    let revision = client.store().unwrap().current_revision().await.unwrap();
    client.store().unwrap().compact(revision).await.unwrap();
    let gone = api
        .list(&ListParams::default().at(a.resource_version().unwrap(), VersionMatch::Exact))
        .await
        .unwrap_err();
    assert_eq!(gone.code, 410);
}

#[derive(Debug)]
struct TeamLabels;

#[async_trait::async_trait]
impl Admission for TeamLabels {
    fn name(&self) -> &str {
        "TeamLabels"
    }

    async fn mutate(
        &self,
        request: &AdmissionRequest<'_>,
        object: &mut DynamicObject,
    ) -> Result<(), StatusError> {
        if request.operation == Operation::Create {
            object
                .labels_mut()
                .entry("team".into())
                .or_insert_with(|| "platform".into());
        }
        Ok(())
    }

    async fn validate(
        &self,
        request: &AdmissionRequest<'_>,
        object: &DynamicObject,
    ) -> Result<(), StatusError> {
        if request.operation == Operation::Delete && object.labels().get("protected").is_some() {
            return Err(StatusError::forbidden(
                request.resource,
                request.name,
                "the object is protected",
            ));
        }
        if object
            .labels()
            .get("team")
            .is_some_and(|team| team.contains(' '))
        {
            return Err(StatusError::forbidden(
                request.resource,
                request.name,
                "bad team",
            ));
        }
        Ok(())
    }
}

#[tokio::test]
async fn the_admission_chain_mutates_and_refuses() {
    let client = Client::builder(MemoryStore::new())
        .admission(TeamLabels)
        .build();
    client.bootstrap().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let created = api
        .create(&PostParams::default(), &config_map("a", &[]))
        .await
        .unwrap();
    assert_eq!(created.labels()["team"], "platform");
    api.create(
        &PostParams::default(),
        &labelled(config_map("p", &[]), &[("protected", "yes")]),
    )
    .await
    .unwrap();
    let error = api.delete("p", &DeleteParams::default()).await.unwrap_err();
    assert_eq!((error.code, error.reason), (403, StatusReason::Forbidden));
    assert!(api.get_opt("p").await.unwrap().is_some());
}
