//! Valid manifests are accepted: the shared voting app and one object of every built-in kind
//! using many of its fields (`tests/fixtures/valid/all-kinds.yaml`), with Kubernetes' defaults.

use std::collections::BTreeSet;

use orchestra::core::k8s::api::core::v1::{Pod, Secret};
use orchestra::core::manifest;
use orchestra::core::resource::builtin::builtin_resources;
use orchestra::core::scheme::Scheme;

#[test]
fn every_built_in_kind_has_a_valid_object_that_is_accepted() {
    let text = std::fs::read_to_string("tests/fixtures/valid/all-kinds.yaml").unwrap();
    let scheme = Scheme::default();
    let mut kinds = BTreeSet::new();
    for document in manifest::parse_all(&text).unwrap() {
        let decoded = scheme
            .decode(&document)
            .unwrap_or_else(|error| panic!("document {}: {error}", document.label()));
        kinds.insert(decoded.resource.kind.clone());
        if decoded.resource.kind == "Pod" {
            let pod: Pod = decoded.object.try_parse().unwrap();
            let container = &pod.spec.as_ref().unwrap().containers[0];
            let requests = container
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap();
            assert_eq!(
                requests["ephemeral-storage"].0, "1G",
                "requests default to limits"
            );
            assert_eq!(
                container.termination_message_path.as_deref(),
                Some("/dev/termination-log")
            );
        }
        if decoded.object.metadata.name.as_deref() == Some("creds") {
            let secret: Secret = decoded.object.try_parse().unwrap();
            let data = secret.data.unwrap();
            assert_eq!(data["user"].0, b"admin", "stringData is merged into data");
            assert_eq!(data["password"].0, b"secret");
        }
    }
    let all: BTreeSet<String> = builtin_resources().into_iter().map(|r| r.kind).collect();
    assert_eq!(kinds, all);
}

#[test]
fn the_voting_app_decodes_with_kubernetes_defaults() {
    let scheme = Scheme::default();
    let mut count = 0;
    for entry in std::fs::read_dir("../shared/fixtures/voting-app").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for document in manifest::parse_all(&text).unwrap() {
            let decoded = scheme
                .decode(&document)
                .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            count += 1;
            if decoded.resource.kind == "Service" {
                assert!(decoded.object.data["spec"]["ports"][0]["protocol"] == "TCP");
            }
        }
    }
    assert_eq!(count, 9);
}
