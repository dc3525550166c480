//! Kubernetes' `Priority` admission plugin: pods get their priority from their PriorityClass.
//!
//! On a pod create, [`Priority`] resolves the pod's `spec.priorityClassName`:
//!
//! - a named class is looked up among the stored PriorityClasses and Kubernetes' two system classes
//!   (`system-node-critical`, `system-cluster-critical`; see [`SYSTEM_PRIORITY_CLASSES`]), which
//!   exist in every cluster whether stored or not; a name that is neither is refused (403
//!   Forbidden, `no PriorityClass with name <name> was found`);
//! - a pod that names no class gets the global default class (the stored class with
//!   `globalDefault: true`, the highest-valued one should there be several), whose name is
//!   written into `spec.priorityClassName`; with no default class, the pod gets priority 0 and
//!   `PreemptLowerPriority`.
//!
//! The class's value becomes `spec.priority` and its policy `spec.preemptionPolicy`. A pod that
//! already carries a different `spec.priority` or `spec.preemptionPolicy` is refused (403
//! Forbidden): priorities are chosen through classes, not set directly.
//!
//! On a PriorityClass create or update, the plugin keeps the global default unique: a class may
//! not be marked `globalDefault: true` while another class is (403 Forbidden, `PriorityClass
//! <name> is already marked as default. Only one default can exist`).
//!
//! # Examples
//!
//! ```
//! use orchestra_core::api::{Api, Client, PostParams};
//! use orchestra_core::k8s::api::core::v1::{Container, Pod, PodSpec};
//! use orchestra_core::store::MemoryStore;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let client = Client::new(MemoryStore::new()); // runs the Priority plugin
//! client.bootstrap().await?;
//! let pods: Api<Pod> = Api::namespaced(client, "kube-system");
//!
//! let mut dns = Pod::default();
//! dns.metadata.name = Some("dns".into());
//! dns.spec = Some(PodSpec {
//!     priority_class_name: Some("system-cluster-critical".into()),
//!     containers: vec![Container { name: "dns".into(), image: Some("dns".into()), ..Container::default() }],
//!     ..PodSpec::default()
//! });
//! let created = pods.create(&PostParams::default(), &dns).await?;
//! let spec = created.spec.unwrap();
//! assert_eq!(spec.priority, Some(2_000_000_000));
//! assert_eq!(spec.preemption_policy.as_deref(), Some("PreemptLowerPriority"));
//! # Ok::<(), orchestra_core::status::StatusError>(())
//! # }).unwrap();
//! ```

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use serde_json::{Value, json};

use super::{Admission, AdmissionRequest, Operation};
use crate::api::keys::{collection_prefix, object_key};
use crate::defaulting::DEFAULT_PREEMPTION_POLICY;
use crate::resource::{ApiResource, DynamicObject};
use crate::status::{StatusError, StatusReason};
use crate::store::{RangeRequest, Store, StoreError};
use crate::validation::priority_class::SYSTEM_PRIORITY_CLASSES;

/// The priority of a pod when it names no class and no class is the global default (Kubernetes'
/// `DefaultPriorityWhenNoDefaultClassExists`).
pub const DEFAULT_PRIORITY_WHEN_NO_DEFAULT_CLASS_EXISTS: i32 = 0;

/// The `Priority` admission plugin: see the [module documentation](self).
///
/// It reads PriorityClasses straight from the store the client writes them to; every client built
/// with [`Client::new`](crate::api::Client::new) or [`Client::builder`](crate::api::Client::builder)
/// runs it.
#[derive(Clone)]
pub struct Priority {
    store: Arc<dyn Store>,
}

impl fmt::Debug for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Priority").finish_non_exhaustive()
    }
}

/// What a pod takes from its class.
#[derive(Debug, PartialEq)]
struct Resolved {
    /// The class's name (empty: no class, the cluster-wide default of 0).
    name: String,
    value: i32,
    preemption_policy: Option<String>,
}

impl From<PriorityClass> for Resolved {
    fn from(class: PriorityClass) -> Resolved {
        Resolved {
            name: class.metadata.name.unwrap_or_default(),
            value: class.value,
            preemption_policy: class.preemption_policy,
        }
    }
}

fn store_error(action: &str, error: StoreError) -> StatusError {
    match error {
        StoreError::Unavailable(message) => {
            StatusError::new(StatusReason::ServiceUnavailable, message)
        }
        other => StatusError::internal(format!("{action}: {other}")),
    }
}

fn is(resource: &ApiResource, group: &str, kind: &str) -> bool {
    resource.group == group && resource.kind == kind
}

impl Priority {
    /// The plugin, reading PriorityClasses from `store` (the store of the client that runs it).
    pub fn new(store: Arc<dyn Store>) -> Priority {
        Priority { store }
    }

    fn classes() -> ApiResource {
        ApiResource::of::<PriorityClass>()
    }

    fn decode(value: &[u8]) -> Result<PriorityClass, StatusError> {
        serde_json::from_slice(value).map_err(|error| {
            StatusError::internal(format!("stored PriorityClass is unreadable: {error}"))
        })
    }

    /// The class named `name`: the stored one, else the system class of that name.
    async fn class(&self, name: &str) -> Result<Option<Resolved>, StatusError> {
        let key = object_key(&Priority::classes(), None, name);
        let stored = self.store.get(&key).await.map_err(|error| {
            store_error(
                &format!("failed to get PriorityClass with name {name}"),
                error,
            )
        })?;
        if let Some(kv) = stored {
            return Ok(Some(Priority::decode(&kv.value)?.into()));
        }
        Ok(SYSTEM_PRIORITY_CLASSES
            .iter()
            .find(|(system, _)| *system == name)
            .map(|(system, value)| Resolved {
                name: (*system).to_owned(),
                value: *value,
                preemption_policy: Some(DEFAULT_PREEMPTION_POLICY.to_owned()),
            }))
    }

    /// The global default class: the highest-valued stored class with `globalDefault: true`
    /// (Kubernetes' `getDefaultPriorityClass`).
    async fn default_class(&self) -> Result<Option<PriorityClass>, StatusError> {
        let prefix = collection_prefix(&Priority::classes(), None);
        let response = self
            .store
            .range(RangeRequest::prefix(prefix))
            .await
            .map_err(|error| store_error("failed to get default priority class", error))?;
        let mut default: Option<PriorityClass> = None;
        for kv in &response.kvs {
            let class = Priority::decode(&kv.value)?;
            if class.global_default == Some(true)
                && default.as_ref().is_none_or(|best| best.value < class.value)
            {
                default = Some(class);
            }
        }
        Ok(default)
    }

    /// Sets a new pod's priority from its class (Kubernetes' `admitPod`).
    async fn admit_pod(
        &self,
        request: &AdmissionRequest<'_>,
        pod: &mut DynamicObject,
    ) -> Result<(), StatusError> {
        let class_name = pod
            .data
            .pointer("/spec/priorityClassName")
            .and_then(Value::as_str)
            .filter(|name| !name.is_empty())
            .map(str::to_owned);
        let resolved = match class_name {
            Some(name) => self.class(&name).await?.ok_or_else(|| {
                StatusError::forbidden(
                    request.resource,
                    request.name,
                    &format!("no PriorityClass with name {name} was found"),
                )
            })?,
            None => match self.default_class().await? {
                Some(class) => class.into(),
                None => Resolved {
                    name: String::new(),
                    value: DEFAULT_PRIORITY_WHEN_NO_DEFAULT_CLASS_EXISTS,
                    preemption_policy: Some(DEFAULT_PREEMPTION_POLICY.to_owned()),
                },
            },
        };
        let Some(data) = super::super::strategy::ensure_object(&mut pod.data) else {
            return Ok(());
        };
        let Some(spec) =
            super::super::strategy::ensure_object(data.entry("spec").or_insert_with(|| json!({})))
        else {
            return Ok(());
        };
        if let Some(given) = spec.get("priority").filter(|value| !value.is_null())
            && given.as_i64() != Some(i64::from(resolved.value))
        {
            return Err(StatusError::forbidden(
                request.resource,
                request.name,
                &format!(
                    "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {} from the given PriorityClass name",
                    resolved.value
                ),
            ));
        }
        if let (Some(given), Some(computed)) = (
            spec.get("preemptionPolicy").and_then(Value::as_str),
            &resolved.preemption_policy,
        ) && given != computed
        {
            return Err(StatusError::forbidden(
                request.resource,
                request.name,
                &format!(
                    "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {computed} from the given PriorityClass name"
                ),
            ));
        }
        if !resolved.name.is_empty() {
            spec.insert("priorityClassName".into(), json!(resolved.name));
        }
        spec.insert("priority".into(), json!(resolved.value));
        match resolved.preemption_policy {
            Some(policy) => spec.insert("preemptionPolicy".into(), json!(policy)),
            None => spec.remove("preemptionPolicy"),
        };
        Ok(())
    }

    /// Keeps the global default class unique (Kubernetes' `validatePriorityClass`).
    async fn validate_priority_class(
        &self,
        request: &AdmissionRequest<'_>,
        class: &DynamicObject,
    ) -> Result<(), StatusError> {
        if class.data.get("globalDefault") != Some(&Value::Bool(true)) {
            return Ok(());
        }
        let Some(default) = self.default_class().await? else {
            return Ok(());
        };
        let default_name = default.metadata.name.unwrap_or_default();
        if request.operation == Operation::Create || default_name != request.name {
            return Err(StatusError::forbidden(
                request.resource,
                request.name,
                &format!(
                    "PriorityClass {default_name} is already marked as default. Only one default can exist"
                ),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Admission for Priority {
    fn name(&self) -> &str {
        "Priority"
    }

    async fn mutate(
        &self,
        request: &AdmissionRequest<'_>,
        object: &mut DynamicObject,
    ) -> Result<(), StatusError> {
        if request.subresource.is_some()
            || request.operation != Operation::Create
            || !is(request.resource, "", "Pod")
        {
            return Ok(());
        }
        self.admit_pod(request, object).await
    }

    async fn validate(
        &self,
        request: &AdmissionRequest<'_>,
        object: &DynamicObject,
    ) -> Result<(), StatusError> {
        if request.subresource.is_some()
            || request.operation == Operation::Delete
            || !is(request.resource, "scheduling.k8s.io", "PriorityClass")
        {
            return Ok(());
        }
        self.validate_priority_class(request, object).await
    }
}
