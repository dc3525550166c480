//! A container's environment and command line as the runtime gets them: the pod spec's `env`
//! and `envFrom` resolved (downward API fields, ConfigMap and Secret values) and `$(VAR)`
//! references expanded, as kubelet does (`makeEnvironmentVariables`, `expandCommandAndArgs`).
//!
//! The limits the runtime applies come from the container's `resources` as kubelet computes
//! them ([`container_resources`]).
//!
//! Pure: ConfigMaps and Secrets come from a [`ConfigSource`] the agent fills from the Api.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

use crate::container_runtime::{ContainerConfig, ContainerMetadata, ContainerResources, Mount};
use crate::quantity::Quantity;

/// Where the values of ConfigMaps and Secrets come from.
pub trait ConfigSource: Send + Sync {
    /// The data of the ConfigMap `name` in `namespace`, if it exists.
    fn config_map(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, String>>;
    /// The data of the Secret `name` in `namespace`, decoded, if it exists.
    fn secret(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>>;

    /// Where the pod's volume `volume` is on the host, for the volumes the agent makes there
    /// (projected service-account token volumes): the directory once it is written, or why it
    /// cannot be; `None` for the volumes it does not make (none, by default).
    fn volume_dir(&self, volume: &str) -> Option<Result<PathBuf, String>> {
        let _ = volume;
        None
    }

    /// Variables every container of the pod gets before its own `env` (which may override them
    /// or refer to them): the API server's address for a pod with a service-account token
    /// (none, by default).
    fn pod_env(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// ConfigMaps and Secrets held in maps, by `(namespace, name)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigMaps {
    /// ConfigMap data.
    pub config_maps: BTreeMap<(String, String), BTreeMap<String, String>>,
    /// Secret data.
    pub secrets: BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>,
}

impl ConfigSource for ConfigMaps {
    fn config_map(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, String>> {
        self.config_maps
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    fn secret(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        self.secrets
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }
}

/// What the downward API reads that is not in the pod object yet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodContext {
    /// The pod's addresses, primary first (`status.podIP`, `status.podIPs`).
    pub pod_ips: Vec<String>,
    /// The node's address (`status.hostIP`).
    pub host_ip: Option<String>,
}

/// Why a container's environment cannot be made (the container waits with
/// `CreateContainerConfigError` and this message, as in Kubernetes).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvironmentError {
    /// A ConfigMap or Secret that is not optional does not exist.
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// `configmap` or `secret`.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// A key that is not optional is not in its ConfigMap or Secret.
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    MissingKey {
        /// `ConfigMap` or `Secret`.
        kind: &'static str,
        /// The namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The key.
        key: String,
    },
    /// A `fieldRef` to a field the downward API does not offer.
    #[error("env {variable}: unsupported fieldPath {path:?}")]
    UnsupportedFieldPath {
        /// The variable.
        variable: String,
        /// The path.
        path: String,
    },
    /// A volume the container mounts could not be made (a service-account token that could
    /// not be had).
    #[error("volume {volume:?}: {message}")]
    VolumeNotReady {
        /// The volume's name.
        volume: String,
        /// Why.
        message: String,
    },
}

/// Expands `$(NAME)` references in `input` with `lookup`: `$$` is a literal `$`, and a
/// reference `lookup` does not know stays as written (Kubernetes' `expansion.Expand`).
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Whether `name` can be an environment variable's name (what Kubernetes accepts from
/// `envFrom`: printable ASCII without `=`, not starting with a digit).
fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_graphic() && c != '=')
}

/// A downward API field of the pod.
pub(super) fn field_value(pod: &Pod, context: &PodContext, path: &str) -> Option<String> {
    let metadata = &pod.metadata;
    let spec = pod.spec.as_ref();
    let quoted = |prefix: &str| {
        path.strip_prefix(prefix)?
            .strip_suffix("']")
            .map(str::to_owned)
    };
    if let Some(key) = quoted("metadata.labels['") {
        return Some(
            metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(&key).cloned())
                .unwrap_or_default(),
        );
    }
    if let Some(key) = quoted("metadata.annotations['") {
        return Some(
            metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(&key).cloned())
                .unwrap_or_default(),
        );
    }
    Some(match path {
        "metadata.name" => metadata.name.clone().unwrap_or_default(),
        "metadata.namespace" => metadata.namespace.clone().unwrap_or_default(),
        "metadata.uid" => metadata.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => context.host_ip.clone().unwrap_or_default(),
        "status.podIP" => context.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => context.pod_ips.join(","),
        _ => return None,
    })
}

/// The resolved value of one `env` entry (`None`: an optional source that is missing, so the
/// variable is left out).
fn env_value(
    pod: &Pod,
    context: &PodContext,
    source: &dyn ConfigSource,
    variable: &EnvVar,
    resolved: &BTreeMap<String, String>,
) -> Result<Option<String>, EnvironmentError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let Some(from) = &variable.value_from else {
        let value = variable.value.clone().unwrap_or_default();
        return Ok(Some(expand(&value, |name| resolved.get(name).cloned())));
    };
    if let Some(field) = &from.field_ref {
        return field_value(pod, context, &field.field_path)
            .map(Some)
            .ok_or_else(|| EnvironmentError::UnsupportedFieldPath {
                variable: variable.name.clone(),
                path: field.field_path.clone(),
            });
    }
    if let Some(selector) = &from.config_map_key_ref {
        let optional = selector.optional.unwrap_or(false);
        let Some(data) = source.config_map(namespace, &selector.name) else {
            return if optional {
                Ok(None)
            } else {
                Err(EnvironmentError::NotFound {
                    kind: "configmap",
                    name: selector.name.clone(),
                })
            };
        };
        return match data.get(&selector.key) {
            Some(value) => Ok(Some(value.clone())),
            None if optional => Ok(None),
            None => Err(EnvironmentError::MissingKey {
                kind: "ConfigMap",
                namespace: namespace.to_owned(),
                name: selector.name.clone(),
                key: selector.key.clone(),
            }),
        };
    }
    if let Some(selector) = &from.secret_key_ref {
        let optional = selector.optional.unwrap_or(false);
        let Some(data) = source.secret(namespace, &selector.name) else {
            return if optional {
                Ok(None)
            } else {
                Err(EnvironmentError::NotFound {
                    kind: "secret",
                    name: selector.name.clone(),
                })
            };
        };
        return match data.get(&selector.key) {
            Some(value) => Ok(Some(String::from_utf8_lossy(value).into_owned())),
            None if optional => Ok(None),
            None => Err(EnvironmentError::MissingKey {
                kind: "Secret",
                namespace: namespace.to_owned(),
                name: selector.name.clone(),
                key: selector.key.clone(),
            }),
        };
    }
    // resourceFieldRef and other sources: not offered yet; the variable is left out.
    Ok(None)
}

/// The container's environment, in the order Kubernetes builds it: `envFrom` sources in order
/// (keys that are not valid names skipped), then `env` entries in order, each overriding what
/// came before and able to refer to earlier variables with `$(NAME)`.
///
/// # Errors
///
/// [`EnvironmentError`] when a source that is not optional is missing.
pub fn container_env(
    pod: &Pod,
    container: &Container,
    context: &PodContext,
    source: &dyn ConfigSource,
) -> Result<Vec<(String, String)>, EnvironmentError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut order: Vec<String> = Vec::new();
    let mut resolved: BTreeMap<String, String> = BTreeMap::new();
    let mut set = |name: String, value: String, resolved: &mut BTreeMap<String, String>| {
        if resolved.insert(name.clone(), value).is_none() {
            order.push(name);
        }
    };
    for (name, value) in source.pod_env() {
        set(name, value, &mut resolved);
    }
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        if let Some(reference) = &from.config_map_ref {
            match source.config_map(namespace, &reference.name) {
                Some(data) => {
                    for (key, value) in data {
                        let name = format!("{prefix}{key}");
                        if is_env_name(&name) {
                            set(name, value, &mut resolved);
                        }
                    }
                }
                None if reference.optional.unwrap_or(false) => {}
                None => {
                    return Err(EnvironmentError::NotFound {
                        kind: "configmap",
                        name: reference.name.clone(),
                    });
                }
            }
        }
        if let Some(reference) = &from.secret_ref {
            match source.secret(namespace, &reference.name) {
                Some(data) => {
                    for (key, value) in data {
                        let name = format!("{prefix}{key}");
                        if is_env_name(&name) {
                            set(
                                name,
                                String::from_utf8_lossy(&value).into_owned(),
                                &mut resolved,
                            );
                        }
                    }
                }
                None if reference.optional.unwrap_or(false) => {}
                None => {
                    return Err(EnvironmentError::NotFound {
                        kind: "secret",
                        name: reference.name.clone(),
                    });
                }
            }
        }
    }
    for variable in container.env.iter().flatten() {
        if let Some(value) = env_value(pod, context, source, variable, &resolved)? {
            set(variable.name.clone(), value, &mut resolved);
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|name| resolved.remove(&name).map(|value| (name, value)))
        .collect())
}

/// The host paths `container` mounts that the agent made (see [`ConfigSource::volume_dir`]),
/// read-only (projected volumes are), at each mount's `mountPath` (and `subPath` within the
/// volume); the container's other mounts are not the agent's to make and are left out.
///
/// # Errors
///
/// [`EnvironmentError::VolumeNotReady`] when a volume it mounts could not be made.
pub fn container_mounts(
    container: &Container,
    source: &dyn ConfigSource,
) -> Result<Vec<Mount>, EnvironmentError> {
    let mut mounts = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        match source.volume_dir(&mount.name) {
            None => {}
            Some(Err(message)) => {
                return Err(EnvironmentError::VolumeNotReady {
                    volume: mount.name.clone(),
                    message,
                });
            }
            Some(Ok(dir)) => {
                let host_path = match mount.sub_path.as_deref().filter(|p| !p.is_empty()) {
                    Some(sub_path) => dir.join(sub_path),
                    None => dir,
                };
                mounts.push(Mount {
                    container_path: PathBuf::from(&mount.mount_path),
                    host_path,
                    read_only: true,
                });
            }
        }
    }
    Ok(mounts)
}

/// The fewest CPU shares a container gets (the kernel's minimum; kubelet's `MinShares`).
pub const MIN_SHARES: u64 = 2;
/// The CPU shares of one CPU (kubelet's `SharesPerCPU`).
pub const SHARES_PER_CPU: u64 = 1024;
/// The most CPU shares a container gets (kubelet's `MaxShares`).
pub const MAX_SHARES: u64 = 262_144;
/// The CFS period, in microseconds, of a container with a CPU limit (kubelet's `QuotaPeriod`,
/// 100 ms).
pub const CPU_PERIOD_US: u64 = 100_000;
/// The smallest CFS quota, in microseconds (kubelet's `MinQuotaPeriod`, 1 ms).
pub const MIN_CPU_QUOTA_US: i64 = 1_000;

/// The CPU shares of a request of `milli_cpu` thousandths of a CPU (kubelet's
/// `MilliCPUToShares`): no request gets the minimum, 2.
///
/// # Examples
///
/// ```
/// use orchestra_core::node_agent::environment::milli_cpu_to_shares;
///
/// assert_eq!(milli_cpu_to_shares(0), 2);
/// assert_eq!(milli_cpu_to_shares(1), 2);
/// assert_eq!(milli_cpu_to_shares(250), 256);
/// assert_eq!(milli_cpu_to_shares(1000), 1024);
/// ```
pub fn milli_cpu_to_shares(milli_cpu: i64) -> u64 {
    let Ok(milli_cpu) = u64::try_from(milli_cpu) else {
        return MIN_SHARES;
    };
    (milli_cpu.saturating_mul(SHARES_PER_CPU) / 1000).clamp(MIN_SHARES, MAX_SHARES)
}

/// The CFS quota, in microseconds per `period`, of a limit of `milli_cpu` thousandths of a CPU
/// (kubelet's `milliCPUToQuota`): at least 1 ms; `None` for no limit.
///
/// # Examples
///
/// ```
/// use orchestra_core::node_agent::environment::milli_cpu_to_quota;
///
/// assert_eq!(milli_cpu_to_quota(0, 100_000), None);
/// assert_eq!(milli_cpu_to_quota(500, 100_000), Some(50_000));
/// assert_eq!(milli_cpu_to_quota(1, 100_000), Some(1_000));
/// ```
pub fn milli_cpu_to_quota(milli_cpu: i64, period: u64) -> Option<i64> {
    if milli_cpu <= 0 {
        return None;
    }
    let period = i64::try_from(period).unwrap_or(i64::MAX);
    Some((milli_cpu.saturating_mul(period) / 1000).max(MIN_CPU_QUOTA_US))
}

/// The limits the runtime applies to `container`, as kubelet computes them
/// (`calculateLinuxResources`): CPU shares from the CPU request (from the limit when only a
/// limit is set; the minimum, 2, when neither is), a CFS quota per 100 ms period from the CPU
/// limit, and the memory limit. The process limit is the agent's to set for the whole pod, not
/// the container's: it stays unset.
///
/// # Examples
///
/// ```
/// use k8s_openapi::api::core::v1::Container;
/// use orchestra_core::node_agent::environment::container_resources;
///
/// let container: Container = serde_json::from_value(serde_json::json!({
///     "name": "web",
///     "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}},
/// }))?;
/// let resources = container_resources(&container);
/// assert_eq!(resources.cpu_shares, Some(256));
/// assert_eq!((resources.cpu_period, resources.cpu_quota), (Some(100_000), Some(50_000)));
/// assert_eq!(resources.memory_limit_bytes, Some(64 * 1024 * 1024));
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn container_resources(container: &Container) -> ContainerResources {
    let resources = container.resources.as_ref();
    let amount = |list: Option<&BTreeMap<String, K8sQuantity>>, name: &str| {
        list.and_then(|list| list.get(name))
            .and_then(|quantity| Quantity::try_from(quantity).ok())
            .unwrap_or_default()
    };
    let clamp = |value: i128| i64::try_from(value).unwrap_or(i64::MAX);
    let requests = resources.and_then(|r| r.requests.as_ref());
    let limits = resources.and_then(|r| r.limits.as_ref());
    let cpu_request = clamp(amount(requests, "cpu").as_milli_ceil());
    let cpu_limit = clamp(amount(limits, "cpu").as_milli_ceil());
    let memory_limit = clamp(amount(limits, "memory").as_units_ceil());
    // With a limit and no request, the request is the limit (as the Api defaults it, and kubelet
    // again for pods made before).
    let cpu_shares = milli_cpu_to_shares(if cpu_request == 0 && cpu_limit != 0 {
        cpu_limit
    } else {
        cpu_request
    });
    let cpu_quota = milli_cpu_to_quota(cpu_limit, CPU_PERIOD_US);
    ContainerResources {
        cpu_shares: Some(cpu_shares),
        cpu_period: cpu_quota.map(|_| CPU_PERIOD_US),
        cpu_quota,
        memory_limit_bytes: (memory_limit > 0).then_some(memory_limit),
        pids_limit: None,
    }
}

/// What the runtime is asked to create for `container` of `pod` (instance `attempt`), with its
/// resolved `env`: `$(VAR)` in command and args expanded with it, and the limits of its
/// `resources` ([`container_resources`]).
pub fn container_config(
    pod: &Pod,
    container: &Container,
    attempt: u32,
    env: Vec<(String, String)>,
) -> ContainerConfig {
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let expand_all = |items: &Option<Vec<String>>| -> Vec<String> {
        items
            .iter()
            .flatten()
            .map(|item| expand(item, lookup))
            .collect()
    };
    let labels = BTreeMap::from([
        (
            "io.kubernetes.pod.uid".to_owned(),
            pod.metadata.uid.clone().unwrap_or_default(),
        ),
        (
            "io.kubernetes.pod.name".to_owned(),
            pod.metadata.name.clone().unwrap_or_default(),
        ),
        (
            "io.kubernetes.pod.namespace".to_owned(),
            pod.metadata.namespace.clone().unwrap_or_default(),
        ),
        (
            "io.kubernetes.container.name".to_owned(),
            container.name.clone(),
        ),
    ]);
    ContainerConfig {
        metadata: ContainerMetadata {
            name: container.name.clone(),
            attempt,
        },
        image: container.image.clone().unwrap_or_default(),
        command: expand_all(&container.command),
        args: expand_all(&container.args),
        working_dir: container
            .working_dir
            .as_deref()
            .filter(|dir| !dir.is_empty())
            .map(Into::into),
        env,
        resources: container_resources(container),
        labels,
        ..ContainerConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1",
                         "labels": {"app": "web"}},
            "spec": {"nodeName": "node-1", "serviceAccountName": "default",
                     "containers": containers},
        }))
        .unwrap()
    }

    fn sources() -> ConfigMaps {
        let mut sources = ConfigMaps::default();
        sources.config_maps.insert(
            ("shop".to_owned(), "settings".to_owned()),
            BTreeMap::from([
                ("MODE".to_owned(), "fast".to_owned()),
                ("1BAD".to_owned(), "skipped".to_owned()),
                ("COLOR".to_owned(), "blue".to_owned()),
            ]),
        );
        sources.secrets.insert(
            ("shop".to_owned(), "creds".to_owned()),
            BTreeMap::from([("password".to_owned(), b"s3cret".to_vec())]),
        );
        sources
    }

    fn context() -> PodContext {
        PodContext {
            pod_ips: vec!["127.10.0.7".to_owned()],
            host_ip: Some("127.0.0.1".to_owned()),
        }
    }

    #[test]
    fn expansion_follows_kubernetes() {
        let lookup = |name: &str| (name == "A").then(|| "x".to_owned());
        assert_eq!(expand("$(A)-$(B)-$$(A)-$$-$", lookup), "x-$(B)-$(A)-$-$");
        assert_eq!(expand("$(A", lookup), "$(A");
        assert_eq!(expand("plain", lookup), "plain");
    }

    #[test]
    fn env_resolves_downward_api_config_maps_secrets_and_references() {
        let p = pod(json!([{
            "name": "web", "image": "hello:1",
            "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
            "env": [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                {"name": "CFG_MODE", "value": "slow"},
                {"name": "URL", "value": "http://$(POD_IP):8080/$(APP)?$(NOPE)"},
                {"name": "MAYBE", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k", "optional": true}}},
            ],
            "command": ["/bin/hello", "--name=$(POD_NAME)"],
            "args": ["$(URL)", "$$(POD_NAME)"],
        }]));
        let container = &p.spec.as_ref().unwrap().containers[0];
        let env = container_env(&p, container, &context(), &sources()).unwrap();
        let names: Vec<&str> = env.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "CFG_1BAD",
                "CFG_COLOR",
                "CFG_MODE",
                "POD_NAME",
                "POD_NAMESPACE",
                "POD_IP",
                "NODE_NAME",
                "APP",
                "PASSWORD",
                "URL"
            ]
        );
        let value = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(value("CFG_MODE"), Some("slow"));
        assert_eq!(value("POD_NAMESPACE"), Some("shop"));
        assert_eq!(value("POD_IP"), Some("127.10.0.7"));
        assert_eq!(value("PASSWORD"), Some("s3cret"));
        assert_eq!(value("URL"), Some("http://127.10.0.7:8080/web?$(NOPE)"));
        let config = container_config(&p, container, 2, env);
        assert_eq!(config.command, ["/bin/hello", "--name=web-1"]);
        assert_eq!(
            config.args,
            ["http://127.10.0.7:8080/web?$(NOPE)", "$(POD_NAME)"]
        );
        assert_eq!(config.metadata.attempt, 2);
        assert_eq!(config.labels["io.kubernetes.pod.uid"], "u-1");
    }

    #[test]
    fn missing_sources_are_errors_unless_optional() {
        let cases = [
            (
                json!({"name": "X", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k"}}}),
                "configmap \"absent\" not found",
            ),
            (
                json!({"name": "X", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nope"}}}),
                "couldn't find key nope in Secret shop/creds",
            ),
            (
                json!({"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}),
                "env X: unsupported fieldPath \"spec.bogus\"",
            ),
        ];
        for (variable, message) in cases {
            let p = pod(json!([{"name": "c", "image": "i", "env": [variable]}]));
            let container = &p.spec.as_ref().unwrap().containers[0];
            let error = container_env(&p, container, &context(), &sources()).unwrap_err();
            assert_eq!(error.to_string(), message);
        }
        // Without a prefix, a key that cannot be a variable's name is left out.
        let p = pod(json!([{"name": "c", "image": "i",
            "envFrom": [{"configMapRef": {"name": "settings"}}]}]));
        let container = &p.spec.as_ref().unwrap().containers[0];
        let names: Vec<String> = container_env(&p, container, &context(), &sources())
            .unwrap()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names, ["COLOR", "MODE"]);
        let p = pod(json!([{"name": "c", "image": "i",
            "envFrom": [{"secretRef": {"name": "absent", "optional": true}}]}]));
        let container = &p.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            container_env(&p, container, &context(), &sources()).unwrap(),
            Vec::new()
        );
    }

    fn resources(spec: serde_json::Value) -> ContainerResources {
        let p = pod(json!([{"name": "c", "image": "i", "resources": spec}]));
        container_resources(&p.spec.as_ref().unwrap().containers[0])
    }

    #[test]
    fn resources_follow_kubelet() {
        // Best effort: the fewest shares, no quota, no memory limit.
        let none = ContainerResources {
            cpu_shares: Some(2),
            ..ContainerResources::default()
        };
        assert_eq!(resources(json!({})), none);
        assert_eq!(resources(json!({"requests": {"cpu": "0"}})), none);
        // Requests give shares; limits give the quota over 100 ms and the memory limit.
        assert_eq!(
            resources(json!({"requests": {"cpu": "1500m", "memory": "1Gi"}})),
            ContainerResources {
                cpu_shares: Some(1536),
                ..ContainerResources::default()
            }
        );
        assert_eq!(
            resources(json!({
                "requests": {"cpu": "100m", "memory": "32Mi"},
                "limits": {"cpu": "2", "memory": "128Mi"},
            })),
            ContainerResources {
                cpu_shares: Some(102),
                cpu_period: Some(100_000),
                cpu_quota: Some(200_000),
                memory_limit_bytes: Some(128 * 1024 * 1024),
                pids_limit: None,
            }
        );
        // A limit alone is also the request.
        assert_eq!(
            resources(json!({"limits": {"cpu": "250m", "memory": "1G"}})),
            ContainerResources {
                cpu_shares: Some(256),
                cpu_period: Some(100_000),
                cpu_quota: Some(25_000),
                memory_limit_bytes: Some(1_000_000_000),
                pids_limit: None,
            }
        );
        // A tiny limit gets the 1 ms minimum quota; a tiny request the minimum shares; a huge
        // one the maximum; fractions of a byte round up.
        let tiny =
            resources(json!({"requests": {"cpu": "1m"}, "limits": {"cpu": "1m", "memory": "0.5"}}));
        assert_eq!(
            (tiny.cpu_shares, tiny.cpu_quota, tiny.memory_limit_bytes),
            (Some(2), Some(1_000), Some(1))
        );
        assert_eq!(
            resources(json!({"requests": {"cpu": "1000"}})).cpu_shares,
            Some(MAX_SHARES)
        );
        let huge = resources(json!({"limits": {"cpu": "10E", "memory": "10E"}}));
        assert_eq!(huge.memory_limit_bytes, Some(i64::MAX));
        assert!(huge.cpu_quota.unwrap() > 0);
    }

    #[test]
    fn the_container_config_carries_the_resources() {
        let p = pod(
            json!([{"name": "c", "image": "i", "command": ["sleep", "1"],
            "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}}]),
        );
        let container = &p.spec.as_ref().unwrap().containers[0];
        let config = container_config(&p, container, 0, Vec::new());
        assert_eq!(config.resources, container_resources(container));
        assert_eq!(config.resources.cpu_quota, Some(50_000));
        assert_eq!(config.resources.memory_limit_bytes, Some(64 * 1024 * 1024));
    }
}
