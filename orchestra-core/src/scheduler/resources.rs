//! Resource amounts as the scheduler counts them, and a pod's effective request.
//!
//! The scheduler does its arithmetic on plain integers, as kube-scheduler's `framework.Resource`
//! does: CPU in thousandths of a core, memory and ephemeral storage in bytes, a pod count, and every
//! other countable resource (extended resources such as `example.com/gpu`, `hugepages-2Mi`,
//! attachable volumes) in whole units under its name. [`pod_requests`] computes what a pod asks
//! for with Kubernetes' rule for init containers, sidecars and overhead.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

use crate::quantity::Quantity;

/// The name of the CPU resource.
pub const CPU: &str = "cpu";
/// The name of the memory resource.
pub const MEMORY: &str = "memory";
/// The name of the ephemeral-storage resource.
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
/// The name of the pods resource (how many pods a node accepts).
pub const PODS: &str = "pods";

/// The CPU request (in millicores) counted for scoring when a container sets none: 100m, as
/// Kubernetes' `DefaultMilliCPURequest`.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// The memory request (in bytes) counted for scoring when a container sets none: 200Mi, as
/// Kubernetes' `DefaultMemoryRequest`.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// An amount of each resource, in the scheduler's integer units (Kubernetes'
/// `framework.Resource`).
///
/// Arithmetic saturates rather than overflows, so no input can make it panic.
///
/// # Examples
///
/// ```
/// use orchestra_core::scheduler::resources::Resource;
///
/// let mut a = Resource { milli_cpu: 500, memory: 1 << 30, ..Resource::default() };
/// a.scalar.insert("example.com/gpu".to_owned(), 1);
/// let b = a.clone();
/// a.add(&b);
/// assert_eq!(a.milli_cpu, 1000);
/// assert_eq!(a.get("example.com/gpu"), 2);
/// a.sub(&b);
/// assert_eq!(a, b);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resource {
    /// CPU, in thousandths of a core.
    pub milli_cpu: i64,
    /// Memory, in bytes.
    pub memory: i64,
    /// Ephemeral storage, in bytes.
    pub ephemeral_storage: i64,
    /// How many pods (meaningful for a node's allocatable).
    pub allowed_pods: i64,
    /// Every other countable resource (extended resources, hugepages, attachable volumes), in
    /// whole units, by name.
    pub scalar: BTreeMap<String, i64>,
}

impl Resource {
    /// The amounts of a Kubernetes resource list (`requests`, `allocatable`, `overhead`).
    ///
    /// A quantity that does not parse counts as zero (validation rejects such objects before
    /// they reach the scheduler); names that are neither native nor scalar resources are ignored.
    pub fn from_list(list: &BTreeMap<String, K8sQuantity>) -> Resource {
        let mut resource = Resource::default();
        resource.add_list(list);
        resource
    }

    /// Adds the amounts of a Kubernetes resource list (see [`Resource::from_list`]).
    pub fn add_list(&mut self, list: &BTreeMap<String, K8sQuantity>) {
        for (name, quantity) in list {
            match name.as_str() {
                CPU => self.milli_cpu = self.milli_cpu.saturating_add(milli_value(quantity)),
                MEMORY => self.memory = self.memory.saturating_add(value(quantity)),
                EPHEMERAL_STORAGE => {
                    self.ephemeral_storage = self.ephemeral_storage.saturating_add(value(quantity))
                }
                PODS => self.allowed_pods = self.allowed_pods.saturating_add(value(quantity)),
                other if is_scalar_resource_name(other) => {
                    let amount = value(quantity);
                    match self.scalar.get_mut(other) {
                        Some(existing) => *existing = existing.saturating_add(amount),
                        None => {
                            self.scalar.insert(other.to_owned(), amount);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Adds `other` to this amount, resource by resource.
    pub fn add(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        self.allowed_pods = self.allowed_pods.saturating_add(other.allowed_pods);
        for (name, amount) in &other.scalar {
            match self.scalar.get_mut(name) {
                Some(existing) => *existing = existing.saturating_add(*amount),
                None => {
                    self.scalar.insert(name.clone(), *amount);
                }
            }
        }
    }

    /// Subtracts `other` from this amount, resource by resource. A scalar resource that drops to
    /// zero is removed, so that adding and then subtracting a pod leaves the amount as it was.
    pub fn sub(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_sub(other.ephemeral_storage);
        self.allowed_pods = self.allowed_pods.saturating_sub(other.allowed_pods);
        for (name, amount) in &other.scalar {
            match self.scalar.get_mut(name) {
                Some(existing) => {
                    *existing = existing.saturating_sub(*amount);
                    if *existing == 0 {
                        self.scalar.remove(name);
                    }
                }
                None => {
                    if *amount != 0 {
                        self.scalar.insert(name.clone(), amount.saturating_neg());
                    }
                }
            }
        }
    }

    /// Raises each resource of this amount to at least that of `other` (the init-container rule).
    pub fn set_max(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        self.allowed_pods = self.allowed_pods.max(other.allowed_pods);
        for (name, amount) in &other.scalar {
            match self.scalar.get_mut(name) {
                Some(existing) => *existing = (*existing).max(*amount),
                None => {
                    self.scalar.insert(name.clone(), *amount);
                }
            }
        }
    }

    /// The amount of the resource `name` (`cpu` in millicores, the others in units; zero when
    /// absent).
    pub fn get(&self, name: &str) -> i64 {
        match name {
            CPU => self.milli_cpu,
            MEMORY => self.memory,
            EPHEMERAL_STORAGE => self.ephemeral_storage,
            PODS => self.allowed_pods,
            other => self.scalar.get(other).copied().unwrap_or(0),
        }
    }

    /// Whether every amount is zero.
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.allowed_pods == 0
            && self.scalar.values().all(|amount| *amount == 0)
    }
}

/// Whether `name` is a resource the scheduler counts under [`Resource::scalar`]: an extended
/// resource (a domain-prefixed name outside `kubernetes.io`), a prefixed native resource, hugepages
/// (`hugepages-*`) or attachable volumes (`attachable-volumes-*`), as Kubernetes'
/// `IsScalarResourceName`.
pub fn is_scalar_resource_name(name: &str) -> bool {
    name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
        || (name.contains('/') && !name.starts_with("requests."))
}

/// Whether `name` is an extended resource: domain-prefixed, outside the `kubernetes.io` domain.
pub fn is_extended_resource_name(name: &str) -> bool {
    name.contains('/') && !name.contains("kubernetes.io/") && !name.starts_with("requests.")
}

fn clamp(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

/// A quantity in thousandths, rounded up as Kubernetes' `MilliValue`; zero if it does not parse.
fn milli_value(quantity: &K8sQuantity) -> i64 {
    Quantity::try_from(quantity).map_or(0, |q| clamp(q.as_milli_ceil()))
}

/// A quantity in units, rounded up as Kubernetes' `Value`; zero if it does not parse.
fn value(quantity: &K8sQuantity) -> i64 {
    Quantity::try_from(quantity).map_or(0, |q| clamp(q.as_units_ceil()))
}

/// Whether an init container is a restartable sidecar (`restartPolicy: Always`).
pub fn is_restartable_init_container(container: &Container) -> bool {
    container.restart_policy.as_deref() == Some("Always")
}

fn container_requests(container: &Container, non_missing: bool) -> Resource {
    let requests = container
        .resources
        .as_ref()
        .and_then(|resources| resources.requests.as_ref());
    let mut resource = requests.map(Resource::from_list).unwrap_or_default();
    if non_missing {
        if !requests.is_some_and(|r| r.contains_key(CPU)) {
            resource.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !requests.is_some_and(|r| r.contains_key(MEMORY)) {
            resource.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    resource
}

fn requests(pod: &Pod, non_missing: bool) -> Resource {
    let Some(spec) = pod.spec.as_ref() else {
        return Resource::default();
    };
    let mut total = Resource::default();
    for container in &spec.containers {
        total.add(&container_requests(container, non_missing));
    }
    // Sidecars (restartable init containers) run beside the containers for the pod's life, so
    // they add to its sum; each regular init container runs alone but after (and beside) the
    // sidecars started before it, so the pod needs at least that much at that point.
    let mut sidecars = Resource::default();
    let mut init_peak = Resource::default();
    for container in spec.init_containers.iter().flatten() {
        let mut needed = container_requests(container, non_missing);
        if is_restartable_init_container(container) {
            total.add(&needed);
            sidecars.add(&needed);
            needed = sidecars.clone();
        } else {
            needed.add(&sidecars);
        }
        init_peak.set_max(&needed);
    }
    total.set_max(&init_peak);
    if let Some(overhead) = spec.overhead.as_ref() {
        total.add_list(overhead);
    }
    total
}

/// What a pod asks the scheduler for, as Kubernetes' `PodRequests` computes it.
///
/// The sum of the containers' requests and of the restartable init containers' (sidecars,
/// `restartPolicy: Always`), raised to the peak of the init phase — each regular init container's
/// request plus the sidecars started before it, and each sidecar's start — and then the pod's
/// `overhead` added. Only `requests` count (defaulting copies a limit into a missing request
/// before the scheduler sees the pod).
///
/// # Examples
///
/// ```
/// use orchestra_core::k8s::api::core::v1::Pod;
/// use orchestra_core::scheduler::resources::pod_requests;
///
/// let pod: Pod = serde_json::from_value(serde_json::json!({
///     "metadata": {"name": "p"},
///     "spec": {
///         "initContainers": [{"name": "init", "resources": {"requests": {"cpu": "2"}}}],
///         "containers": [
///             {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
///             {"name": "b", "resources": {"requests": {"cpu": "500m"}}}
///         ],
///         "overhead": {"cpu": "100m"}
///     }
/// }))?;
/// let requests = pod_requests(&pod);
/// assert_eq!(requests.milli_cpu, 2100); // max(1000, 2000) + 100
/// assert_eq!(requests.memory, 1 << 30);
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn pod_requests(pod: &Pod) -> Resource {
    requests(pod, false)
}

/// A pod's request as counted for scoring: like [`pod_requests`], but a container that sets no
/// CPU or memory request counts [`DEFAULT_MILLI_CPU_REQUEST`] and [`DEFAULT_MEMORY_REQUEST`]
/// (Kubernetes' non-zero requests), so that spreading sees pods without requests.
pub fn pod_non_zero_requests(pod: &Pod) -> Resource {
    requests(pod, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    fn c(name: &str, requests: serde_json::Value) -> serde_json::Value {
        json!({"name": name, "resources": {"requests": requests}})
    }

    fn sidecar(name: &str, requests: serde_json::Value) -> serde_json::Value {
        json!({"name": name, "restartPolicy": "Always", "resources": {"requests": requests}})
    }

    #[test]
    fn containers_sum() {
        let p = pod(json!({"containers": [
            c("a", json!({"cpu": "100m", "memory": "1Gi", "example.com/gpu": "1"})),
            c("b", json!({"cpu": "1.5", "memory": "512Mi", "ephemeral-storage": "1G", "example.com/gpu": "2"})),
        ]}));
        let r = pod_requests(&p);
        assert_eq!(r.milli_cpu, 1600);
        assert_eq!(r.memory, 1536 * 1024 * 1024);
        assert_eq!(r.ephemeral_storage, 1_000_000_000);
        assert_eq!(r.get("example.com/gpu"), 3);
    }

    #[test]
    fn init_containers_take_the_max() {
        // Kubernetes' case: init containers larger than the sum of the containers win, per
        // resource.
        let p = pod(json!({
            "initContainers": [c("i1", json!({"cpu": "2", "memory": "1Gi"})), c("i2", json!({"cpu": "1", "memory": "3Gi"}))],
            "containers": [c("a", json!({"cpu": "1", "memory": "1Gi"})), c("b", json!({"cpu": "1", "memory": "1Gi"}))],
        }));
        let r = pod_requests(&p);
        assert_eq!(r.milli_cpu, 2000);
        assert_eq!(r.memory, 3 << 30);
    }

    #[test]
    fn sidecars_add_and_stack_under_later_init_containers() {
        // Kubernetes' "restartable init container" cases: a sidecar adds to the pod's sum, and a
        // regular init container after it runs beside it.
        let p = pod(json!({
            "initContainers": [
                sidecar("s1", json!({"cpu": "1"})),
                c("i1", json!({"cpu": "5"})),
                sidecar("s2", json!({"cpu": "2"})),
            ],
            "containers": [c("a", json!({"cpu": "1"}))],
        }));
        // containers 1 + sidecars 3 = 4; init peak: s1 = 1, i1 + s1 = 6, s1 + s2 = 3 → 6.
        assert_eq!(pod_requests(&p).milli_cpu, 6000);

        let p = pod(json!({
            "initContainers": [c("i1", json!({"cpu": "2"})), sidecar("s1", json!({"cpu": "2"}))],
            "containers": [c("a", json!({"cpu": "1"}))],
        }));
        // containers 1 + sidecar 2 = 3 ≥ init peak 2.
        assert_eq!(pod_requests(&p).milli_cpu, 3000);
    }

    #[test]
    fn overhead_is_added_after_the_max() {
        let p = pod(json!({
            "initContainers": [c("i1", json!({"cpu": "2"}))],
            "containers": [c("a", json!({"cpu": "1"}))],
            "overhead": {"cpu": "250m", "memory": "120Mi"},
        }));
        let r = pod_requests(&p);
        assert_eq!(r.milli_cpu, 2250);
        assert_eq!(r.memory, 120 * 1024 * 1024);
    }

    #[test]
    fn non_zero_requests_fill_missing_cpu_and_memory_only() {
        let p = pod(json!({"containers": [
            c("a", json!({})),
            c("b", json!({"cpu": "0"})),
            json!({"name": "c"}),
        ]}));
        let r = pod_non_zero_requests(&p);
        // a and c are missing both; b set cpu to zero explicitly.
        assert_eq!(r.milli_cpu, 200);
        assert_eq!(r.memory, 3 * DEFAULT_MEMORY_REQUEST);
        assert!(pod_requests(&p).is_zero());
    }

    #[test]
    fn rounding_and_bad_quantities() {
        let p = pod(
            json!({"containers": [c("a", json!({"cpu": "0.0001", "memory": "1.5", "bogus": "1", "example.com/x": "nope"}))]}),
        );
        let r = pod_requests(&p);
        assert_eq!(r.milli_cpu, 1);
        assert_eq!(r.memory, 2);
        assert_eq!(r.get("bogus"), 0);
        assert_eq!(r.get("example.com/x"), 0);
    }

    #[test]
    fn sub_restores_and_saturates() {
        let mut a = Resource {
            milli_cpu: i64::MAX,
            ..Resource::default()
        };
        a.add(&Resource {
            milli_cpu: 5,
            ..Resource::default()
        });
        assert_eq!(a.milli_cpu, i64::MAX);
        let mut b = Resource::default();
        b.scalar.insert("hugepages-2Mi".into(), 4);
        let mut c = Resource::default();
        c.add(&b);
        c.sub(&b);
        assert_eq!(c, Resource::default());
        assert!(is_scalar_resource_name("hugepages-2Mi"));
        assert!(is_extended_resource_name("example.com/gpu"));
        assert!(!is_extended_resource_name("kubernetes.io/foo"));
        assert!(!is_scalar_resource_name("cpu"));
    }
}
