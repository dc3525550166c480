//! Kubernetes' `ServiceAccount` admission plugin: every pod runs as a service account, and gets
//! its token.
//!
//! On a pod create, [`ServiceAccount`]:
//!
//! - sets `spec.serviceAccountName` to `default` when the pod names no account;
//! - unless the pod (or, when the pod does not say, its account) sets
//!   `automountServiceAccountToken: false`, adds the projected volume
//!   `kube-api-access-<5 random characters>` that Kubernetes adds ([`token_volume`]): the
//!   account's token (`token`, a bound token of [`TOKEN_EXPIRATION_SECONDS`]), the cluster's CA
//!   (`ca.crt`, from the ConfigMap `kube-root-ca.crt`) and the pod's namespace (`namespace`), and
//!   mounts it read-only at [`TOKEN_MOUNT_PATH`] in every container and init container that does
//!   not already mount something there. A pod that already has a `kube-api-access-*` volume keeps
//!   it (and its containers mount that one).
//!
//! The node agent fills the volume in with a token it asks for through
//! [`Client::create_token`](crate::api::Client::create_token), bound to the pod.
//!
//! # Differences from Kubernetes
//!
//! - A pod whose account does not exist is admitted (Kubernetes refuses it until the account
//!   exists): pods may be created before the controller that makes `default` accounts runs.
//! - Mirror pods, ephemeral containers and the legacy secret-based token volumes get no special
//!   treatment; updates are not checked.
//!
//! # Examples
//!
//! ```
//! use orchestra_core::api::{Api, Client, PostParams};
//! use orchestra_core::k8s::api::core::v1::{Container, Pod, PodSpec};
//! use orchestra_core::store::MemoryStore;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let client = Client::new(MemoryStore::new()); // runs the ServiceAccount plugin
//! client.bootstrap().await?;
//! let pods: Api<Pod> = Api::namespaced(client, "default");
//! let mut web = Pod::default();
//! web.metadata.name = Some("web".into());
//! web.spec = Some(PodSpec {
//!     containers: vec![Container { name: "web".into(), image: Some("web".into()), ..Container::default() }],
//!     ..PodSpec::default()
//! });
//! let spec = pods.create(&PostParams::default(), &web).await?.spec.unwrap();
//! assert_eq!(spec.service_account_name.as_deref(), Some("default"));
//! let volume = &spec.volumes.unwrap()[0];
//! assert!(volume.name.starts_with("kube-api-access-"));
//! let mount = &spec.containers[0].volume_mounts.as_ref().unwrap()[0];
//! assert_eq!(mount.mount_path, "/var/run/secrets/kubernetes.io/serviceaccount");
//! assert_eq!(mount.read_only, Some(true));
//! # Ok::<(), orchestra_core::status::StatusError>(())
//! # }).unwrap();
//! ```

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::ServiceAccount as Account;
use serde_json::{Value, json};

use super::{Admission, AdmissionRequest, Operation};
use crate::api::client::Ids;
use crate::api::keys::object_key;
use crate::resource::{ApiResource, DynamicObject};
use crate::status::{StatusError, StatusReason};
use crate::store::Store;

/// The account of a pod that names none.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// Where the token volume is mounted in every container (Kubernetes' `DefaultAPITokenMountPath`).
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The prefix of the token volume's name (Kubernetes' `ServiceAccountVolumeName`).
pub const TOKEN_VOLUME_PREFIX: &str = "kube-api-access-";

/// The lifetime of the tokens of the volume (Kubernetes' `WarnOnlyBoundTokenExpirationSeconds`:
/// an hour and seven seconds, which tells these tokens apart).
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;

/// The ConfigMap every namespace has, holding the cluster's CA (`ca.crt`).
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";

/// The `defaultMode` of the token volume (0644).
pub const TOKEN_VOLUME_MODE: i32 = 0o644;

/// The projected volume source Kubernetes gives pods (`TokenVolumeSource`), as JSON: the token,
/// the CA and the namespace.
pub fn token_volume() -> Value {
    json!({
        "defaultMode": TOKEN_VOLUME_MODE,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
            {"configMap": {"name": ROOT_CA_CONFIG_MAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [
                {"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}},
            ]}},
        ],
    })
}

/// The `ServiceAccount` admission plugin: see the [module documentation](self).
///
/// It reads service accounts straight from the store the client writes them to; every client
/// built with [`Client::new`](crate::api::Client::new) or
/// [`Client::builder`](crate::api::Client::builder) runs it, drawing volume names from the
/// client's randomness (seeded, when the client is).
#[derive(Clone)]
pub struct ServiceAccount {
    store: Arc<dyn Store>,
    ids: Arc<Ids>,
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount").finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// The plugin, reading service accounts from `store` (the store of the client that runs
    /// it), naming volumes from the system's randomness.
    pub fn new(store: Arc<dyn Store>) -> ServiceAccount {
        ServiceAccount {
            store,
            ids: Arc::new(Ids::Random),
        }
    }

    /// Names volumes from `ids` (the client's).
    pub(crate) fn with_ids(mut self, ids: Arc<Ids>) -> ServiceAccount {
        self.ids = ids;
        self
    }

    /// The account's `automountServiceAccountToken`, when it exists and says.
    async fn account_automounts(&self, namespace: &str, name: &str) -> Option<bool> {
        let key = object_key(&ApiResource::of::<Account>(), Some(namespace), name);
        match self.store.get(&key).await {
            Ok(Some(kv)) => {
                serde_json::from_slice::<Account>(&kv.value)
                    .ok()?
                    .automount_service_account_token
            }
            Ok(None) => None,
            Err(_) => None,
        }
    }
}

/// Whether the container (as JSON) mounts something at the token's path.
fn mounts_token_path(container: &Value) -> bool {
    container
        .get("volumeMounts")
        .and_then(Value::as_array)
        .is_some_and(|mounts| {
            mounts
                .iter()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH))
        })
}

#[async_trait]
impl Admission for ServiceAccount {
    fn name(&self) -> &str {
        "ServiceAccount"
    }

    async fn mutate(
        &self,
        request: &AdmissionRequest<'_>,
        object: &mut DynamicObject,
    ) -> Result<(), StatusError> {
        if request.subresource.is_some()
            || request.operation != Operation::Create
            || !request.resource.group.is_empty()
            || request.resource.kind != "Pod"
        {
            return Ok(());
        }
        let namespace = request
            .namespace
            .or(object.metadata.namespace.as_deref())
            .unwrap_or_default()
            .to_owned();
        let Some(spec) = object.data.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        let account = match spec.get("serviceAccountName").and_then(Value::as_str) {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => {
                spec.insert(
                    "serviceAccountName".into(),
                    Value::from(DEFAULT_SERVICE_ACCOUNT),
                );
                DEFAULT_SERVICE_ACCOUNT.to_owned()
            }
        };
        let automount = match spec
            .get("automountServiceAccountToken")
            .and_then(Value::as_bool)
        {
            Some(automount) => automount,
            None => self
                .account_automounts(&namespace, &account)
                .await
                .unwrap_or(true),
        };
        if !automount {
            return Ok(());
        }
        let existing = spec
            .get("volumes")
            .and_then(Value::as_array)
            .and_then(|volumes| {
                volumes
                    .iter()
                    .filter_map(|v| v.get("name").and_then(Value::as_str))
                    .find(|name| name.starts_with(TOKEN_VOLUME_PREFIX))
                    .map(str::to_owned)
            });
        let volume_name = match &existing {
            Some(name) => name.clone(),
            None => {
                let taken: Vec<String> = spec
                    .get("volumes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.get("name").and_then(Value::as_str).map(str::to_owned))
                    .collect();
                let mut name = format!("{TOKEN_VOLUME_PREFIX}{}", self.ids.suffix(5));
                while taken.contains(&name) {
                    name = format!("{TOKEN_VOLUME_PREFIX}{}", self.ids.suffix(5));
                }
                name
            }
        };
        let mount = json!({
            "name": volume_name,
            "readOnly": true,
            "mountPath": TOKEN_MOUNT_PATH,
        });
        let mut needs_volume = false;
        for list in ["initContainers", "containers"] {
            let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
                continue;
            };
            for container in containers.iter_mut() {
                if mounts_token_path(container) {
                    continue;
                }
                let Some(fields) = container.as_object_mut() else {
                    continue;
                };
                let mounts = fields
                    .entry("volumeMounts")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if mounts.is_null() {
                    *mounts = Value::Array(Vec::new());
                }
                // Not a list: validation reports it.
                if let Some(mounts) = mounts.as_array_mut() {
                    mounts.push(mount.clone());
                    needs_volume = true;
                }
            }
        }
        if existing.is_none() && needs_volume {
            let volumes = spec
                .entry("volumes")
                .or_insert_with(|| Value::Array(Vec::new()));
            if volumes.is_null() {
                *volumes = Value::Array(Vec::new());
            }
            let Some(volumes) = volumes.as_array_mut() else {
                return Err(StatusError::new(
                    StatusReason::BadRequest,
                    "spec.volumes must be a list",
                ));
            };
            volumes.push(json!({"name": volume_name, "projected": token_volume()}));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Api, Client, PostParams};
    use crate::store::MemoryStore;
    use k8s_openapi::api::core::v1::Pod;

    fn request(resource: &ApiResource, operation: Operation) -> AdmissionRequest<'_> {
        AdmissionRequest {
            operation,
            resource,
            subresource: None,
            namespace: Some("default"),
            name: "web",
            old_object: None,
            dry_run: false,
        }
    }

    fn plugin() -> ServiceAccount {
        ServiceAccount::new(Arc::new(MemoryStore::new()))
            .with_ids(Arc::new(Ids::Seeded(std::sync::Mutex::new(7))))
    }

    async fn admit(plugin: &ServiceAccount, spec: Value) -> Value {
        let resource = ApiResource::of::<Pod>();
        let mut object = DynamicObject {
            types: None,
            metadata: Default::default(),
            data: json!({ "spec": spec }),
        };
        plugin
            .mutate(&request(&resource, Operation::Create), &mut object)
            .await
            .unwrap();
        object.data["spec"].clone()
    }

    #[tokio::test]
    async fn the_default_account_and_its_token_volume_are_added() {
        let spec = admit(
            &plugin(),
            json!({
                "initContainers": [{"name": "setup"}],
                "containers": [
                    {"name": "web", "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                    {"name": "own", "volumeMounts": [{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]},
                ],
                "volumes": [{"name": "data", "emptyDir": {}}, {"name": "mine", "emptyDir": {}}],
            }),
        )
        .await;
        assert_eq!(spec["serviceAccountName"], "default");
        let volumes = spec["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 3);
        let name = volumes[2]["name"].as_str().unwrap();
        let suffix = name.strip_prefix(TOKEN_VOLUME_PREFIX).unwrap();
        assert_eq!(suffix.len(), 5);
        assert!(
            suffix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert_eq!(volumes[2]["projected"], token_volume());
        assert_eq!(
            volumes[2]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3607
        );
        let mount = json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
        assert_eq!(spec["initContainers"][0]["volumeMounts"], json!([mount]));
        assert_eq!(spec["containers"][0]["volumeMounts"][1], mount);
        // A container mounting its own volume at the path keeps it.
        assert_eq!(
            spec["containers"][1]["volumeMounts"],
            json!([{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}])
        );
    }

    #[tokio::test]
    async fn seeded_names_replay() {
        let spec = json!({"containers": [{"name": "web"}]});
        let first = admit(&plugin(), spec.clone()).await;
        let again = admit(&plugin(), spec).await;
        assert_eq!(first["volumes"], again["volumes"]);
    }

    #[tokio::test]
    async fn automount_false_on_the_pod_or_its_account_adds_no_volume() {
        let spec = admit(
            &plugin(),
            json!({"serviceAccountName": "builder", "automountServiceAccountToken": false,
                   "containers": [{"name": "web"}]}),
        )
        .await;
        assert_eq!(spec["serviceAccountName"], "builder");
        assert_eq!(spec.get("volumes"), None);
        assert_eq!(spec["containers"][0].get("volumeMounts"), None);

        let client = Client::new(MemoryStore::new());
        client.bootstrap().await.unwrap();
        let mut account = Account::default();
        account.metadata.name = Some("quiet".into());
        account.automount_service_account_token = Some(false);
        Api::<Account>::namespaced(client.clone(), "default")
            .create(&PostParams::default(), &account)
            .await
            .unwrap();
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"serviceAccountName": "quiet", "containers": [{"name": "web", "image": "web"}]},
        }))
        .unwrap();
        let pods = Api::<Pod>::namespaced(client.clone(), "default");
        let created = pods.create(&PostParams::default(), &pod).await.unwrap();
        assert_eq!(created.spec.unwrap().volumes, None);
        // The pod's own setting wins over its account's.
        pod.metadata.name = Some("loud".into());
        pod.spec.as_mut().unwrap().automount_service_account_token = Some(true);
        let created = pods.create(&PostParams::default(), &pod).await.unwrap();
        assert_eq!(created.spec.unwrap().volumes.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_pod_with_a_token_volume_keeps_it_and_other_writes_are_left_alone() {
        let spec = admit(
            &plugin(),
            json!({"containers": [{"name": "web"}],
                   "volumes": [{"name": "kube-api-access-abcde", "projected": {"sources": []}}]}),
        )
        .await;
        assert_eq!(spec["volumes"].as_array().unwrap().len(), 1);
        assert_eq!(
            spec["containers"][0]["volumeMounts"][0]["name"],
            "kube-api-access-abcde"
        );

        let plugin = plugin();
        let pods = ApiResource::of::<Pod>();
        let mut object = DynamicObject {
            types: None,
            metadata: Default::default(),
            data: json!({"spec": {"containers": [{"name": "web"}]}}),
        };
        let before = object.clone();
        plugin
            .mutate(&request(&pods, Operation::Update), &mut object)
            .await
            .unwrap();
        assert_eq!(object, before);
        let nodes = ApiResource::of::<k8s_openapi::api::core::v1::Node>();
        plugin
            .mutate(&request(&nodes, Operation::Create), &mut object)
            .await
            .unwrap();
        assert_eq!(object, before);
    }

    #[tokio::test]
    async fn admitted_pods_pass_validation() {
        let client = Client::new(MemoryStore::new());
        client.bootstrap().await.unwrap();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"initContainers": [{"name": "init", "image": "init"}],
                     "containers": [{"name": "web", "image": "web"}]},
        }))
        .unwrap();
        let created = Api::<Pod>::namespaced(client, "default")
            .create(&PostParams::default(), &pod)
            .await
            .unwrap();
        let spec = created.spec.unwrap();
        let volume = &spec.volumes.unwrap()[0];
        let projected = volume.projected.as_ref().unwrap();
        assert_eq!(projected.default_mode, Some(0o644));
        let sources = projected.sources.as_ref().unwrap();
        assert_eq!(
            sources[0].service_account_token.as_ref().unwrap().path,
            "token"
        );
        assert_eq!(
            sources[1].config_map.as_ref().unwrap().name,
            ROOT_CA_CONFIG_MAP
        );
        for container in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            assert_eq!(
                container.volume_mounts.as_ref().unwrap()[0].name,
                volume.name
            );
        }
    }
}
