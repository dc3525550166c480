//! Kubernetes' `DefaultTolerationSeconds` admission plugin: pods tolerate a lost node for a while.
//!
//! When a node's agent stops heartbeating, the node lifecycle controller taints it
//! `node.kubernetes.io/unreachable:NoExecute` (or `node.kubernetes.io/not-ready:NoExecute` when
//! the agent reports `Ready=False`), and the pods bound to it that do not tolerate the taint are
//! evicted at once. [`DefaultTolerationSeconds`] gives every pod that does not already tolerate
//! those taints a toleration of each, `operator: Exists`, `effect: NoExecute`, with
//! `tolerationSeconds` (300 by default, as kube-apiserver's
//! `--default-not-ready-toleration-seconds` and `--default-unreachable-toleration-seconds`): a
//! short network blip does not reschedule a whole node, and a node that stays lost has its pods
//! replaced after five minutes.
//!
//! A pod already tolerates a taint when one of its tolerations has the taint's key or no key
//! (with `Exists`, a toleration of every taint), and the `NoExecute` effect or none. The plugin
//! acts on pod creates and updates, not on subresources.
//!
//! # Examples
//!
//! ```
//! use orchestra_core::api::{Api, Client, PostParams};
//! use orchestra_core::k8s::api::core::v1::{Container, Pod, PodSpec};
//! use orchestra_core::store::MemoryStore;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let client = Client::new(MemoryStore::new()); // runs DefaultTolerationSeconds
//! client.bootstrap().await?;
//! let pods: Api<Pod> = Api::namespaced(client, "default");
//! let mut web = Pod::default();
//! web.metadata.name = Some("web".into());
//! web.spec = Some(PodSpec {
//!     containers: vec![Container { name: "web".into(), image: Some("web".into()), ..Container::default() }],
//!     ..PodSpec::default()
//! });
//! let created = pods.create(&PostParams::default(), &web).await?;
//! let tolerations = created.spec.unwrap().tolerations.unwrap();
//! assert_eq!(tolerations.len(), 2);
//! assert_eq!(tolerations[1].key.as_deref(), Some("node.kubernetes.io/unreachable"));
//! assert_eq!(tolerations[1].toleration_seconds, Some(300));
//! # Ok::<(), orchestra_core::status::StatusError>(())
//! # }).unwrap();
//! ```

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{Admission, AdmissionRequest, Operation};
use crate::resource::DynamicObject;
use crate::resource::taints::{TAINT_NODE_NOT_READY, TAINT_NODE_UNREACHABLE};
use crate::status::StatusError;

/// The toleration Kubernetes gives pods of both taints by default: five minutes.
pub const DEFAULT_TOLERATION_SECONDS: Duration = Duration::from_secs(300);

/// The `DefaultTolerationSeconds` admission plugin: see the [module documentation](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultTolerationSeconds {
    not_ready: Duration,
    unreachable: Duration,
}

impl Default for DefaultTolerationSeconds {
    fn default() -> DefaultTolerationSeconds {
        DefaultTolerationSeconds::new(DEFAULT_TOLERATION_SECONDS, DEFAULT_TOLERATION_SECONDS)
    }
}

/// Whether `toleration` (a pod's, as JSON) tolerates the `NoExecute` taint `key`, as the plugin
/// judges it: its key is `key` or empty, its effect `NoExecute` or empty.
fn tolerates(toleration: &Value, key: &str) -> bool {
    let field = |name: &str| toleration.get(name).and_then(Value::as_str).unwrap_or("");
    let toleration_key = field("key");
    let effect = field("effect");
    (toleration_key == key || toleration_key.is_empty())
        && (effect == "NoExecute" || effect.is_empty())
}

impl DefaultTolerationSeconds {
    /// The plugin, tolerating the not-ready taint for `not_ready` and the unreachable one for
    /// `unreachable` (whole seconds).
    pub fn new(not_ready: Duration, unreachable: Duration) -> DefaultTolerationSeconds {
        DefaultTolerationSeconds {
            not_ready,
            unreachable,
        }
    }

    /// How long pods tolerate a not-ready node.
    pub fn not_ready(&self) -> Duration {
        self.not_ready
    }

    /// How long pods tolerate an unreachable node.
    pub fn unreachable(&self) -> Duration {
        self.unreachable
    }

    /// The tolerations the plugin adds to a pod that has neither: the not-ready one, then the
    /// unreachable one.
    pub fn tolerations(&self) -> [(&'static str, Duration); 2] {
        [
            (TAINT_NODE_NOT_READY, self.not_ready),
            (TAINT_NODE_UNREACHABLE, self.unreachable),
        ]
    }
}

#[async_trait]
impl Admission for DefaultTolerationSeconds {
    fn name(&self) -> &str {
        "DefaultTolerationSeconds"
    }

    async fn mutate(
        &self,
        request: &AdmissionRequest<'_>,
        object: &mut DynamicObject,
    ) -> Result<(), StatusError> {
        if request.subresource.is_some()
            || request.operation == Operation::Delete
            || !request.resource.group.is_empty()
            || request.resource.kind != "Pod"
        {
            return Ok(());
        }
        let Some(spec) = object.data.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        let tolerations = spec
            .entry("tolerations")
            .or_insert_with(|| Value::Array(Vec::new()));
        if tolerations.is_null() {
            *tolerations = Value::Array(Vec::new());
        }
        // Not a list: validation reports it, with its field path.
        let Some(list) = tolerations.as_array_mut() else {
            return Ok(());
        };
        for (key, seconds) in self.tolerations() {
            if list.iter().any(|toleration| tolerates(toleration, key)) {
                continue;
            }
            list.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": seconds.as_secs(),
            }));
        }
        if list.is_empty() {
            spec.remove("tolerations");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::ApiResource;
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

    fn pod(tolerations: Value) -> DynamicObject {
        DynamicObject {
            types: None,
            metadata: Default::default(),
            data: json!({"spec": {"containers": [{"name": "web"}], "tolerations": tolerations}}),
        }
    }

    async fn admit(plugin: DefaultTolerationSeconds, tolerations: Value) -> Value {
        let resource = ApiResource::of::<Pod>();
        let mut object = pod(tolerations);
        plugin
            .mutate(&request(&resource, Operation::Create), &mut object)
            .await
            .unwrap();
        object.data["spec"]["tolerations"].clone()
    }

    #[tokio::test]
    async fn both_tolerations_are_added_to_a_pod_without_them() {
        let plugin =
            DefaultTolerationSeconds::new(Duration::from_secs(30), Duration::from_secs(60));
        assert_eq!(
            admit(plugin, Value::Null).await,
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
            ])
        );
    }

    #[tokio::test]
    async fn a_pod_keeps_its_own_tolerations_of_the_taints() {
        let own = json!([
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5},
            {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"},
        ]);
        let admitted = admit(DefaultTolerationSeconds::default(), own.clone()).await;
        assert_eq!(admitted.as_array().unwrap().len(), 3);
        assert_eq!(admitted[0], own[0]);
        assert_eq!(admitted[1], own[1]);
        assert_eq!(admitted[2]["key"], "node.kubernetes.io/not-ready");
        assert_eq!(admitted[2]["tolerationSeconds"], 300);
    }

    #[tokio::test]
    async fn a_toleration_of_everything_is_enough() {
        // No key and no effect: tolerates every taint.
        let own = json!([{"operator": "Exists"}]);
        assert_eq!(
            admit(DefaultTolerationSeconds::default(), own.clone()).await,
            own
        );
        // No key but another effect: tolerates neither NoExecute taint.
        let no_schedule = json!([{"operator": "Exists", "effect": "NoSchedule"}]);
        assert_eq!(
            admit(DefaultTolerationSeconds::default(), no_schedule)
                .await
                .as_array()
                .unwrap()
                .len(),
            3
        );
    }

    #[tokio::test]
    async fn other_kinds_and_subresources_are_left_alone() {
        let plugin = DefaultTolerationSeconds::default();
        let pods = ApiResource::of::<Pod>();
        let mut object = pod(Value::Null);
        let mut status = request(&pods, Operation::Update);
        status.subresource = Some("status");
        plugin.mutate(&status, &mut object).await.unwrap();
        assert_eq!(object.data["spec"]["tolerations"], Value::Null);
        let nodes = ApiResource::of::<k8s_openapi::api::core::v1::Node>();
        plugin
            .mutate(&request(&nodes, Operation::Create), &mut object)
            .await
            .unwrap();
        assert_eq!(object.data["spec"]["tolerations"], Value::Null);
    }
}
