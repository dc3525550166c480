//! Checks of pods and pod templates, following Kubernetes' `ValidatePodSpec` and the checks it
//! calls (`pkg/apis/core/validation/validation.go`).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvFromSource, EnvVar, ExecAction, HTTPGetAction, KeyToPath,
    LifecycleHandler, Pod, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, TCPSocketAction,
    Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as QuantityString;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Validate;
use super::field::{Error, ErrorList, Path};
use super::meta::{NameRule, validate_annotations, validate_labels, validate_metadata};
use super::names;
use crate::quantity::Quantity;

/// The restart policies a pod may have.
pub const RESTART_POLICIES: [&str; 3] = ["Always", "OnFailure", "Never"];
/// The DNS policies a pod may have.
pub const DNS_POLICIES: [&str; 4] = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
/// The image pull policies a container may have.
pub const PULL_POLICIES: [&str; 3] = ["Always", "Never", "IfNotPresent"];
/// The protocols of container and service ports.
pub const PROTOCOLS: [&str; 3] = ["TCP", "UDP", "SCTP"];
/// The standard resource names a container may request without a domain prefix.
pub const STANDARD_CONTAINER_RESOURCES: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];

const NONNEGATIVE: &str = "must be greater than or equal to 0";

/// `value` must not be negative.
pub(crate) fn nonnegative(value: i64, path: &Path, errors: &mut ErrorList) {
    if value < 0 {
        errors.push(Error::invalid(path, value, NONNEGATIVE));
    }
}

/// Adds one `Invalid` error per message.
pub(crate) fn invalid_each(
    messages: Vec<String>,
    path: &Path,
    value: &str,
    errors: &mut ErrorList,
) {
    for message in messages {
        errors.push(Error::invalid(path, value, &message));
    }
}

/// `value` must be one of `supported` (a `Required` error when empty).
pub(crate) fn one_of(value: &str, supported: &[&str], path: &Path, errors: &mut ErrorList) {
    if value.is_empty() {
        errors.push(Error::required(path, ""));
    } else if !supported.contains(&value) {
        errors.push(Error::not_supported(path, value, supported));
    }
}

/// A name that must pass `check` and be unique among its siblings (containers, volumes, ports);
/// an empty name is an error only when `required`.
pub(crate) fn unique_name(
    name: &str,
    required: bool,
    check: fn(&str) -> Vec<String>,
    path: &Path,
    seen: &mut BTreeSet<String>,
    errors: &mut ErrorList,
) {
    if name.is_empty() {
        if required {
            errors.push(Error::required(path, ""));
        }
        return;
    }
    invalid_each(check(name), path, name, errors);
    if !seen.insert(name.to_owned()) {
        errors.push(Error::duplicate(path, name));
    }
}

/// A port given as a number (1-65535) or as the name of a container port.
pub(crate) fn port_number_or_name(port: &IntOrString, path: &Path, errors: &mut ErrorList) {
    match port {
        IntOrString::Int(number) => {
            for message in names::port_number(i64::from(*number)) {
                errors.push(Error::invalid(path, *number, &message));
            }
        }
        IntOrString::String(name) => {
            if name.is_empty() {
                errors.push(Error::required(path, ""));
            } else {
                invalid_each(names::port_name(name), path, name, errors);
            }
        }
    }
}

impl Validate for Pod {
    fn validate(&self) -> ErrorList {
        let mut errors = validate_metadata(self, NameRule::DnsSubdomain);
        let spec_path = Path::new("spec");
        match &self.spec {
            Some(spec) => {
                errors.extend(validate_pod_spec(spec, &spec_path));
                // Templates may leave images to be filled in later; pods may not.
                for (i, container) in spec.containers.iter().enumerate() {
                    if container.image.as_deref().is_none_or(str::is_empty) {
                        let path = spec_path.child("containers").index(i).child("image");
                        errors.push(Error::required(&path, ""));
                    }
                }
                for (i, container) in spec.init_containers.iter().flatten().enumerate() {
                    if container.image.as_deref().is_none_or(str::is_empty) {
                        let path = spec_path.child("initContainers").index(i).child("image");
                        errors.push(Error::required(&path, ""));
                    }
                }
            }
            None => errors.push(Error::required(&spec_path.child("containers"), "")),
        }
        errors
    }
}

/// Checks a pod template: its labels and annotations, and its pod spec.
pub fn validate_pod_template(template: &PodTemplateSpec, path: &Path) -> ErrorList {
    let mut errors = ErrorList::new();
    if let Some(meta) = &template.metadata {
        if let Some(labels) = &meta.labels {
            errors.extend(validate_labels(
                labels,
                &path.child("metadata").child("labels"),
            ));
        }
        if let Some(annotations) = &meta.annotations {
            errors.extend(validate_annotations(
                annotations,
                &path.child("metadata").child("annotations"),
            ));
        }
    }
    let spec_path = path.child("spec");
    match &template.spec {
        Some(spec) => errors.extend(validate_pod_spec(spec, &spec_path)),
        None => errors.push(Error::required(&spec_path.child("containers"), "")),
    }
    errors
}

/// Checks a pod spec (of a pod or of a template).
pub fn validate_pod_spec(spec: &PodSpec, path: &Path) -> ErrorList {
    let mut errors = ErrorList::new();
    let volumes = validate_volumes(
        spec.volumes.as_deref().unwrap_or_default(),
        &path.child("volumes"),
        &mut errors,
    );
    validate_containers(spec, &volumes, path, &mut errors);
    one_of(
        spec.restart_policy.as_deref().unwrap_or_default(),
        &RESTART_POLICIES,
        &path.child("restartPolicy"),
        &mut errors,
    );
    one_of(
        spec.dns_policy.as_deref().unwrap_or_default(),
        &DNS_POLICIES,
        &path.child("dnsPolicy"),
        &mut errors,
    );
    if spec.dns_policy.as_deref() == Some("None")
        && spec
            .dns_config
            .as_ref()
            .is_none_or(|c| c.nameservers.as_ref().is_none_or(Vec::is_empty))
    {
        errors.push(Error::required(
            &path.child("dnsConfig").child("nameservers"),
            "must provide at least one DNS nameserver when `dnsPolicy` is 'None'",
        ));
    }
    if let Some(selector) = &spec.node_selector {
        errors.extend(validate_labels(selector, &path.child("nodeSelector")));
    }
    for (field, value) in [
        ("serviceAccountName", &spec.service_account_name),
        ("nodeName", &spec.node_name),
    ] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            invalid_each(
                names::dns1123_subdomain(value),
                &path.child(field),
                value,
                &mut errors,
            );
        }
    }
    for (field, value) in [("hostname", &spec.hostname), ("subdomain", &spec.subdomain)] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            invalid_each(
                names::dns1123_label(value),
                &path.child(field),
                value,
                &mut errors,
            );
        }
    }
    if let Some(seconds) = spec.active_deadline_seconds
        && !(1..=i64::from(i32::MAX)).contains(&seconds)
    {
        errors.push(Error::invalid(
            &path.child("activeDeadlineSeconds"),
            seconds,
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    if let Some(seconds) = spec.termination_grace_period_seconds {
        nonnegative(
            seconds,
            &path.child("terminationGracePeriodSeconds"),
            &mut errors,
        );
    }
    for (i, toleration) in spec.tolerations.iter().flatten().enumerate() {
        validate_toleration(toleration, &path.child("tolerations").index(i), &mut errors);
    }
    for (i, secret) in spec.image_pull_secrets.iter().flatten().enumerate() {
        if secret.name.is_empty() {
            errors.push(Error::required(
                &path.child("imagePullSecrets").index(i).child("name"),
                "",
            ));
        }
    }
    if let Some(affinity) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        && let Some(required) = &affinity.required_during_scheduling_ignored_during_execution
    {
        let terms_path = path
            .child("affinity")
            .child("nodeAffinity")
            .child("requiredDuringSchedulingIgnoredDuringExecution")
            .child("nodeSelectorTerms");
        if required.node_selector_terms.is_empty() {
            errors.push(Error::required(
                &terms_path,
                "must have at least one node selector term",
            ));
        }
        for (i, term) in required.node_selector_terms.iter().enumerate() {
            for (j, requirement) in term.match_expressions.iter().flatten().enumerate() {
                let requirement_path = terms_path.index(i).child("matchExpressions").index(j);
                validate_node_selector_requirement(
                    &requirement.key,
                    &requirement.operator,
                    requirement.values.as_deref().unwrap_or_default(),
                    &requirement_path,
                    &mut errors,
                );
            }
        }
    }
    errors
}

fn validate_node_selector_requirement(
    key: &str,
    operator: &str,
    values: &[String],
    path: &Path,
    errors: &mut ErrorList,
) {
    invalid_each(names::qualified_name(key), &path.child("key"), key, errors);
    match operator {
        "In" | "NotIn" if values.is_empty() => errors.push(Error::required(
            &path.child("values"),
            "must be specified when `operator` is 'In' or 'NotIn'",
        )),
        "Exists" | "DoesNotExist" if !values.is_empty() => errors.push(Error::forbidden(
            &path.child("values"),
            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        )),
        "Gt" | "Lt" => {
            if values.len() != 1 || values[0].parse::<i64>().is_err() {
                errors.push(Error::required(
                    &path.child("values"),
                    "must be specified single value when `operator` is 'Lt' or 'Gt'",
                ));
            }
        }
        "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
        other => errors.push(Error::invalid(
            &path.child("operator"),
            other,
            "not a valid selector operator",
        )),
    }
}

fn validate_toleration(toleration: &Toleration, path: &Path, errors: &mut ErrorList) {
    let key = toleration.key.as_deref().unwrap_or_default();
    let operator = toleration.operator.as_deref().unwrap_or("Equal");
    if key.is_empty() {
        if operator != "Exists" {
            errors.push(Error::invalid(
                &path.child("operator"),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
    } else {
        invalid_each(names::qualified_name(key), &path.child("key"), key, errors);
    }
    let value = toleration.value.as_deref().unwrap_or_default();
    match operator {
        "Equal" => invalid_each(
            names::label_value(value),
            &path.child("value"),
            value,
            errors,
        ),
        "Exists" => {
            if !value.is_empty() {
                errors.push(Error::invalid(
                    &path.child("operator"),
                    value,
                    "value must be empty when `operator` is 'Exists'",
                ));
            }
        }
        other => errors.push(Error::not_supported(
            &path.child("operator"),
            other,
            &["Equal", "Exists"],
        )),
    }
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
        errors.push(Error::not_supported(
            &path.child("effect"),
            effect,
            &["NoSchedule", "PreferNoSchedule", "NoExecute"],
        ));
    }
    if toleration.toleration_seconds.is_some() && effect != "NoExecute" {
        errors.push(Error::invalid(
            &path.child("effect"),
            effect,
            "effect must be 'NoExecute' when `tolerationSeconds` is set",
        ));
    }
}

/// Checks the volumes and returns their names (for the containers' mounts).
fn validate_volumes(volumes: &[Volume], path: &Path, errors: &mut ErrorList) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for (i, volume) in volumes.iter().enumerate() {
        let volume_path = path.index(i);
        unique_name(
            &volume.name,
            true,
            names::dns1123_label,
            &volume_path.child("name"),
            &mut seen,
            errors,
        );
        validate_volume_source(volume, &volume_path, errors);
    }
    seen
}

fn validate_volume_source(volume: &Volume, path: &Path, errors: &mut ErrorList) {
    let sources = serde_json::to_value(volume)
        .ok()
        .and_then(|value| value.as_object().map(|fields| fields.len()))
        .unwrap_or(1)
        .saturating_sub(1);
    match sources {
        0 => errors.push(Error::required(path, "must specify a volume type")),
        1 => {}
        _ => errors.push(Error::forbidden(
            path,
            "may not specify more than 1 volume type",
        )),
    }
    if let Some(empty_dir) = &volume.empty_dir {
        if let Some(medium) = empty_dir.medium.as_deref()
            && !["", "Memory"].contains(&medium)
            && !medium.starts_with("HugePages")
        {
            errors.push(Error::not_supported(
                &path.child("emptyDir").child("medium"),
                medium,
                &["", "Memory", "HugePages"],
            ));
        }
        if let Some(limit) = &empty_dir.size_limit {
            validate_quantity(limit, &path.child("emptyDir").child("sizeLimit"), errors);
        }
    }
    if let Some(host_path) = &volume.host_path {
        let host_path_path = path.child("hostPath");
        if host_path.path.is_empty() {
            errors.push(Error::required(&host_path_path.child("path"), ""));
        } else if host_path.path.split('/').any(|part| part == "..") {
            errors.push(Error::invalid(
                &host_path_path.child("path"),
                host_path.path.as_str(),
                "must not contain '..'",
            ));
        }
        let kind = host_path.type_.as_deref().unwrap_or_default();
        const TYPES: [&str; 8] = [
            "",
            "DirectoryOrCreate",
            "Directory",
            "FileOrCreate",
            "File",
            "Socket",
            "CharDevice",
            "BlockDevice",
        ];
        if !TYPES.contains(&kind) {
            errors.push(Error::not_supported(
                &host_path_path.child("type"),
                kind,
                &TYPES,
            ));
        }
    }
    if let Some(secret) = &volume.secret {
        let secret_path = path.child("secret");
        if secret.secret_name.as_deref().is_none_or(str::is_empty) {
            errors.push(Error::required(&secret_path.child("secretName"), ""));
        }
        validate_mode(
            secret.default_mode,
            &secret_path.child("defaultMode"),
            errors,
        );
        validate_key_to_paths(
            secret.items.as_deref().unwrap_or_default(),
            &secret_path.child("items"),
            errors,
        );
    }
    if let Some(config_map) = &volume.config_map {
        let config_map_path = path.child("configMap");
        if config_map.name.is_empty() {
            errors.push(Error::required(&config_map_path.child("name"), ""));
        }
        validate_mode(
            config_map.default_mode,
            &config_map_path.child("defaultMode"),
            errors,
        );
        validate_key_to_paths(
            config_map.items.as_deref().unwrap_or_default(),
            &config_map_path.child("items"),
            errors,
        );
    }
    if let Some(claim) = &volume.persistent_volume_claim
        && claim.claim_name.is_empty()
    {
        errors.push(Error::required(
            &path.child("persistentVolumeClaim").child("claimName"),
            "",
        ));
    }
    if let Some(downward_api) = &volume.downward_api {
        validate_mode(
            downward_api.default_mode,
            &path.child("downwardAPI").child("defaultMode"),
            errors,
        );
        for (i, item) in downward_api.items.iter().flatten().enumerate() {
            validate_relative_path(
                &item.path,
                &path
                    .child("downwardAPI")
                    .child("items")
                    .index(i)
                    .child("path"),
                errors,
            );
        }
    }
    if let Some(projected) = &volume.projected {
        validate_mode(
            projected.default_mode,
            &path.child("projected").child("defaultMode"),
            errors,
        );
    }
}

fn validate_mode(mode: Option<i32>, path: &Path, errors: &mut ErrorList) {
    if let Some(mode) = mode
        && !(0..=0o777).contains(&mode)
    {
        errors.push(Error::invalid(
            path,
            mode,
            "must be a number between 0 and 0777 (octal), both inclusive",
        ));
    }
}

fn validate_key_to_paths(items: &[KeyToPath], path: &Path, errors: &mut ErrorList) {
    for (i, item) in items.iter().enumerate() {
        let item_path = path.index(i);
        if item.key.is_empty() {
            errors.push(Error::required(&item_path.child("key"), ""));
        }
        validate_relative_path(&item.path, &item_path.child("path"), errors);
        validate_mode(item.mode, &item_path.child("mode"), errors);
    }
}

fn validate_relative_path(value: &str, path: &Path, errors: &mut ErrorList) {
    if value.is_empty() {
        errors.push(Error::required(path, ""));
    } else if value.starts_with('/') {
        errors.push(Error::invalid(path, value, "must be a relative path"));
    } else if value.split('/').any(|part| part == "..") {
        errors.push(Error::invalid(path, value, "must not contain '..'"));
    }
}

/// Checks every container and init container, with names unique across both lists.
fn validate_containers(
    spec: &PodSpec,
    volumes: &BTreeSet<String>,
    path: &Path,
    errors: &mut ErrorList,
) {
    let mut names_seen = BTreeSet::new();
    let mut host_ports = BTreeSet::new();
    let containers_path = path.child("containers");
    if spec.containers.is_empty() {
        errors.push(Error::required(&containers_path, ""));
    }
    let host_network = spec.host_network == Some(true);
    for (i, container) in spec.init_containers.iter().flatten().enumerate() {
        let container_path = path.child("initContainers").index(i);
        validate_container(container, volumes, &container_path, &mut names_seen, errors);
        let sidecar = container.restart_policy.as_deref() == Some("Always");
        if let Some(policy) = container.restart_policy.as_deref()
            && policy != "Always"
        {
            errors.push(Error::not_supported(
                &container_path.child("restartPolicy"),
                policy,
                &["Always"],
            ));
        }
        if !sidecar {
            for (field, set) in [
                ("lifecycle", container.lifecycle.is_some()),
                ("livenessProbe", container.liveness_probe.is_some()),
                ("readinessProbe", container.readiness_probe.is_some()),
                ("startupProbe", container.startup_probe.is_some()),
            ] {
                if set {
                    errors.push(Error::forbidden(
                        &container_path.child(field),
                        "may not be set for init containers without restartPolicy=Always",
                    ));
                }
            }
        }
        validate_host_ports(
            container,
            host_network,
            &container_path,
            &mut host_ports,
            errors,
        );
    }
    for (i, container) in spec.containers.iter().enumerate() {
        let container_path = containers_path.index(i);
        validate_container(container, volumes, &container_path, &mut names_seen, errors);
        if let Some(policy) = &container.restart_policy {
            errors.push(Error::forbidden(
                &container_path.child("restartPolicy"),
                &format!("may not be set for non-init containers (found {policy:?})"),
            ));
        }
        validate_host_ports(
            container,
            host_network,
            &container_path,
            &mut host_ports,
            errors,
        );
    }
}

fn validate_host_ports(
    container: &Container,
    host_network: bool,
    path: &Path,
    seen: &mut BTreeSet<String>,
    errors: &mut ErrorList,
) {
    for (j, port) in container.ports.iter().flatten().enumerate() {
        let port_path = path.child("ports").index(j);
        let host_port = port.host_port.unwrap_or_default();
        if host_network && host_port != 0 && host_port != port.container_port {
            errors.push(Error::invalid(
                &port_path.child("containerPort"),
                port.container_port,
                "must match `hostPort` when `hostNetwork` is true",
            ));
        }
        if host_port == 0 {
            continue;
        }
        let key = format!(
            "{}/{}/{}",
            port.host_ip.as_deref().unwrap_or_default(),
            port.protocol.as_deref().unwrap_or("TCP"),
            host_port
        );
        if !seen.insert(key.clone()) {
            errors.push(Error::duplicate(&port_path.child("hostPort"), key));
        }
    }
}

fn validate_container(
    container: &Container,
    volumes: &BTreeSet<String>,
    path: &Path,
    names_seen: &mut BTreeSet<String>,
    errors: &mut ErrorList,
) {
    unique_name(
        &container.name,
        true,
        names::dns1123_label,
        &path.child("name"),
        names_seen,
        errors,
    );
    if let Some(image) = container.image.as_deref()
        && image.trim() != image
    {
        errors.push(Error::invalid(
            &path.child("image"),
            image,
            "must not have leading or trailing whitespace",
        ));
    }
    validate_container_ports(
        container.ports.as_deref().unwrap_or_default(),
        &path.child("ports"),
        errors,
    );
    for (i, env) in container.env.iter().flatten().enumerate() {
        validate_env(env, &path.child("env").index(i), errors);
    }
    for (i, source) in container.env_from.iter().flatten().enumerate() {
        validate_env_from(source, &path.child("envFrom").index(i), errors);
    }
    validate_volume_mounts(
        container.volume_mounts.as_deref().unwrap_or_default(),
        volumes,
        &path.child("volumeMounts"),
        errors,
    );
    if let Some(resources) = &container.resources {
        validate_resources(resources, &path.child("resources"), errors);
    }
    for (field, probe, liveness_like) in [
        ("livenessProbe", &container.liveness_probe, true),
        ("readinessProbe", &container.readiness_probe, false),
        ("startupProbe", &container.startup_probe, true),
    ] {
        if let Some(probe) = probe {
            validate_probe(probe, liveness_like, &path.child(field), errors);
        }
    }
    if let Some(lifecycle) = &container.lifecycle {
        for (field, handler) in [
            ("postStart", &lifecycle.post_start),
            ("preStop", &lifecycle.pre_stop),
        ] {
            if let Some(handler) = handler {
                validate_lifecycle_handler(handler, &path.child("lifecycle").child(field), errors);
            }
        }
    }
    one_of(
        container.image_pull_policy.as_deref().unwrap_or_default(),
        &PULL_POLICIES,
        &path.child("imagePullPolicy"),
        errors,
    );
    one_of(
        container
            .termination_message_policy
            .as_deref()
            .unwrap_or_default(),
        &["File", "FallbackToLogsOnError"],
        &path.child("terminationMessagePolicy"),
        errors,
    );
}

fn validate_container_ports(ports: &[ContainerPort], path: &Path, errors: &mut ErrorList) {
    let mut names_seen = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let port_path = path.index(i);
        unique_name(
            port.name.as_deref().unwrap_or_default(),
            false,
            names::port_name,
            &port_path.child("name"),
            &mut names_seen,
            errors,
        );
        let container_port_path = port_path.child("containerPort");
        if port.container_port == 0 {
            errors.push(Error::required(&container_port_path, ""));
        } else {
            for message in names::port_number(i64::from(port.container_port)) {
                errors.push(Error::invalid(
                    &container_port_path,
                    port.container_port,
                    &message,
                ));
            }
        }
        if let Some(host_port) = port.host_port.filter(|&p| p != 0) {
            for message in names::port_number(i64::from(host_port)) {
                errors.push(Error::invalid(
                    &port_path.child("hostPort"),
                    host_port,
                    &message,
                ));
            }
        }
        one_of(
            port.protocol.as_deref().unwrap_or_default(),
            &PROTOCOLS,
            &port_path.child("protocol"),
            errors,
        );
        if let Some(host_ip) = port.host_ip.as_deref().filter(|ip| !ip.is_empty()) {
            invalid_each(
                names::ip_address(host_ip),
                &port_path.child("hostIP"),
                host_ip,
                errors,
            );
        }
    }
}

/// The pod fields a `fieldRef` may name (besides `metadata.labels['key']` and
/// `metadata.annotations['key']`).
pub const FIELD_REF_PATHS: [&str; 12] = [
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "metadata.labels",
    "metadata.annotations",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
    "metadata.generateName",
];

/// The container fields a `resourceFieldRef` may name.
pub const RESOURCE_FIELD_REFS: [&str; 6] = [
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
];

fn validate_env(env: &EnvVar, path: &Path, errors: &mut ErrorList) {
    let name_path = path.child("name");
    if env.name.is_empty() {
        errors.push(Error::required(&name_path, ""));
    } else {
        invalid_each(
            names::env_var_name(&env.name),
            &name_path,
            &env.name,
            errors,
        );
    }
    let Some(source) = &env.value_from else {
        return;
    };
    let source_path = path.child("valueFrom");
    let mut count = 0;
    if let Some(field_ref) = &source.field_ref {
        count += 1;
        let field_path = source_path.child("fieldRef").child("fieldPath");
        let field = field_ref.field_path.as_str();
        let subscripted = ["metadata.labels['", "metadata.annotations['"]
            .iter()
            .any(|prefix| field.starts_with(prefix) && field.ends_with("']"));
        if field.is_empty() {
            errors.push(Error::required(&field_path, ""));
        } else if !subscripted && !FIELD_REF_PATHS.contains(&field) {
            errors.push(Error::not_supported(&field_path, field, &FIELD_REF_PATHS));
        }
        if let Some(version) = field_ref.api_version.as_deref()
            && version != "v1"
        {
            errors.push(Error::not_supported(
                &source_path.child("fieldRef").child("apiVersion"),
                version,
                &["v1"],
            ));
        }
    }
    if let Some(resource_ref) = &source.resource_field_ref {
        count += 1;
        let resource_path = source_path.child("resourceFieldRef").child("resource");
        let resource = resource_ref.resource.as_str();
        if resource.is_empty() {
            errors.push(Error::required(&resource_path, ""));
        } else if !RESOURCE_FIELD_REFS.contains(&resource) && !resource.contains("hugepages-") {
            errors.push(Error::not_supported(
                &resource_path,
                resource,
                &RESOURCE_FIELD_REFS,
            ));
        }
    }
    if let Some(key_ref) = &source.config_map_key_ref {
        count += 1;
        validate_key_ref(
            &key_ref.name,
            &key_ref.key,
            &source_path.child("configMapKeyRef"),
            errors,
        );
    }
    if let Some(key_ref) = &source.secret_key_ref {
        count += 1;
        validate_key_ref(
            &key_ref.name,
            &key_ref.key,
            &source_path.child("secretKeyRef"),
            errors,
        );
    }
    match count {
        0 => errors.push(Error::invalid(
            &source_path,
            "",
            "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
        )),
        1 => {}
        _ => errors.push(Error::invalid(
            &source_path,
            "",
            "may not have more than one field specified at a time",
        )),
    }
    if env.value.as_deref().is_some_and(|v| !v.is_empty()) {
        errors.push(Error::invalid(
            &source_path,
            "",
            "may not be specified when `value` is not empty",
        ));
    }
}

fn validate_key_ref(name: &str, key: &str, path: &Path, errors: &mut ErrorList) {
    if name.is_empty() {
        errors.push(Error::required(&path.child("name"), ""));
    }
    if key.is_empty() {
        errors.push(Error::required(&path.child("key"), ""));
    } else {
        invalid_each(names::config_key(key), &path.child("key"), key, errors);
    }
}

fn validate_env_from(source: &EnvFromSource, path: &Path, errors: &mut ErrorList) {
    if let Some(prefix) = source.prefix.as_deref().filter(|p| !p.is_empty()) {
        invalid_each(
            names::env_var_name(prefix),
            &path.child("prefix"),
            prefix,
            errors,
        );
    }
    let mut count = 0;
    if let Some(reference) = &source.config_map_ref {
        count += 1;
        if reference.name.is_empty() {
            errors.push(Error::required(
                &path.child("configMapRef").child("name"),
                "",
            ));
        }
    }
    if let Some(reference) = &source.secret_ref {
        count += 1;
        if reference.name.is_empty() {
            errors.push(Error::required(&path.child("secretRef").child("name"), ""));
        }
    }
    match count {
        0 => errors.push(Error::invalid(
            path,
            "",
            "must specify one of: `configMapRef` or `secretRef`",
        )),
        1 => {}
        _ => errors.push(Error::invalid(
            path,
            "",
            "may not have more than one field specified at a time",
        )),
    }
}

fn validate_volume_mounts(
    mounts: &[VolumeMount],
    volumes: &BTreeSet<String>,
    path: &Path,
    errors: &mut ErrorList,
) {
    let mut mount_paths = BTreeSet::new();
    for (i, mount) in mounts.iter().enumerate() {
        let mount_path = path.index(i);
        if mount.name.is_empty() {
            errors.push(Error::required(&mount_path.child("name"), ""));
        } else if !volumes.contains(&mount.name) {
            errors.push(Error::not_found(
                &mount_path.child("name"),
                mount.name.as_str(),
            ));
        }
        let target = mount_path.child("mountPath");
        if mount.mount_path.is_empty() {
            errors.push(Error::required(&target, ""));
        } else if !mount_paths.insert(mount.mount_path.clone()) {
            errors.push(Error::invalid(
                &target,
                mount.mount_path.as_str(),
                "must be unique",
            ));
        }
        if let Some(sub_path) = mount.sub_path.as_deref().filter(|p| !p.is_empty()) {
            if sub_path.starts_with('/') {
                errors.push(Error::invalid(
                    &mount_path.child("subPath"),
                    sub_path,
                    "must be a relative path",
                ));
            } else if sub_path.split('/').any(|part| part == "..") {
                errors.push(Error::invalid(
                    &mount_path.child("subPath"),
                    sub_path,
                    "must not contain '..'",
                ));
            }
        }
        if let Some(propagation) = mount.mount_propagation.as_deref() {
            const MODES: [&str; 3] = ["None", "HostToContainer", "Bidirectional"];
            if !MODES.contains(&propagation) {
                errors.push(Error::not_supported(
                    &mount_path.child("mountPropagation"),
                    propagation,
                    &MODES,
                ));
            }
        }
    }
}

/// Checks a quantity written in a manifest: it must parse and not be negative.
pub(crate) fn validate_quantity(quantity: &QuantityString, path: &Path, errors: &mut ErrorList) {
    match Quantity::parse(&quantity.0) {
        Ok(parsed) if parsed.signum() < 0 => {
            errors.push(Error::invalid(path, quantity.0.as_str(), NONNEGATIVE));
        }
        Ok(_) => {}
        Err(error) => errors.push(Error::invalid(
            path,
            quantity.0.as_str(),
            &error.to_string(),
        )),
    }
}

/// Whether a resource name may appear in a container's requests and limits: a standard one, a
/// huge page size, or an extended resource with a domain prefix.
fn validate_resource_name(name: &str, path: &Path, errors: &mut ErrorList) {
    let problems = names::qualified_name(name);
    if !problems.is_empty() {
        invalid_each(problems, path, name, errors);
        return;
    }
    let standard = STANDARD_CONTAINER_RESOURCES.contains(&name)
        || name.starts_with("hugepages-")
        || (name.contains('/')
            && !name.starts_with("kubernetes.io/")
            && !name.contains(".kubernetes.io/"));
    if !standard {
        errors.push(Error::invalid(
            path,
            name,
            "must be a standard resource for containers",
        ));
    }
}

/// Checks a container's resources: names, quantities, and requests not above limits.
pub fn validate_resources(resources: &ResourceRequirements, path: &Path, errors: &mut ErrorList) {
    let empty = BTreeMap::new();
    let limits = resources.limits.as_ref().unwrap_or(&empty);
    let requests = resources.requests.as_ref().unwrap_or(&empty);
    for (name, quantity) in limits {
        let limit_path = path.child("limits").key(name);
        validate_resource_name(name, &limit_path, errors);
        validate_quantity(quantity, &limit_path, errors);
    }
    for (name, quantity) in requests {
        let request_path = path.child("requests").key(name);
        validate_resource_name(name, &request_path, errors);
        validate_quantity(quantity, &request_path, errors);
        let (Some(limit), Ok(request)) = (limits.get(name), Quantity::parse(&quantity.0)) else {
            continue;
        };
        let Ok(limit) = Quantity::parse(&limit.0) else {
            continue;
        };
        let overcommit = STANDARD_CONTAINER_RESOURCES.contains(&name.as_str());
        if !overcommit && request != limit {
            errors.push(Error::invalid(
                &path.child("requests"),
                request.to_string(),
                &format!("must be equal to {name} limit of {limit}"),
            ));
        } else if request > limit {
            errors.push(Error::invalid(
                &path.child("requests"),
                request.to_string(),
                &format!("must be less than or equal to {name} limit of {limit}"),
            ));
        }
    }
}

fn validate_probe(probe: &Probe, liveness_like: bool, path: &Path, errors: &mut ErrorList) {
    let handler = Handler {
        exec: probe.exec.as_ref(),
        http_get: probe.http_get.as_ref(),
        tcp_socket: probe.tcp_socket.as_ref(),
        others: usize::from(probe.grpc.is_some()),
    };
    handler.validate(path, errors);
    if let Some(grpc) = &probe.grpc {
        for message in names::port_number(i64::from(grpc.port)) {
            errors.push(Error::invalid(
                &path.child("grpc").child("port"),
                grpc.port,
                &message,
            ));
        }
    }
    for (field, value) in [
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ] {
        if let Some(value) = value {
            nonnegative(i64::from(value), &path.child(field), errors);
        }
    }
    if liveness_like && let Some(threshold) = probe.success_threshold.filter(|&t| t != 1) {
        errors.push(Error::invalid(
            &path.child("successThreshold"),
            threshold,
            "must be 1",
        ));
    }
    if let Some(seconds) = probe.termination_grace_period_seconds {
        let grace_path = path.child("terminationGracePeriodSeconds");
        if !liveness_like {
            errors.push(Error::invalid(
                &grace_path,
                seconds,
                "must not be set for readinessProbes",
            ));
        } else if seconds <= 0 {
            errors.push(Error::invalid(
                &grace_path,
                seconds,
                "must be greater than 0",
            ));
        }
    }
}

fn validate_http_get(action: &HTTPGetAction, path: &Path, errors: &mut ErrorList) {
    if action.path.as_deref().is_none_or(str::is_empty) {
        errors.push(Error::required(&path.child("path"), ""));
    }
    port_number_or_name(&action.port, &path.child("port"), errors);
    if let Some(scheme) = action.scheme.as_deref()
        && !["HTTP", "HTTPS"].contains(&scheme)
    {
        errors.push(Error::not_supported(
            &path.child("scheme"),
            scheme,
            &["HTTP", "HTTPS"],
        ));
    }
    for (i, header) in action.http_headers.iter().flatten().enumerate() {
        let valid = !header.name.is_empty()
            && header
                .name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c));
        if !valid {
            errors.push(Error::invalid(
                &path.child("httpHeaders").index(i).child("name"),
                header.name.as_str(),
                "a valid HTTP header must consist of alphanumeric characters or '-' (e.g. 'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')",
            ));
        }
    }
}

/// What probes and lifecycle hooks share: exactly one handler, and well-formed `exec`,
/// `httpGet` and `tcpSocket` handlers (`others` counts the handlers the caller checks itself).
struct Handler<'a> {
    exec: Option<&'a ExecAction>,
    http_get: Option<&'a HTTPGetAction>,
    tcp_socket: Option<&'a TCPSocketAction>,
    others: usize,
}

impl Handler<'_> {
    fn validate(&self, path: &Path, errors: &mut ErrorList) {
        let handlers = usize::from(self.exec.is_some())
            + usize::from(self.http_get.is_some())
            + usize::from(self.tcp_socket.is_some())
            + self.others;
        match handlers {
            0 => errors.push(Error::required(path, "must specify a handler type")),
            1 => {}
            _ => errors.push(Error::forbidden(
                path,
                "may not specify more than 1 handler type",
            )),
        }
        if let Some(exec) = self.exec
            && exec.command.as_ref().is_none_or(Vec::is_empty)
        {
            errors.push(Error::required(&path.child("exec").child("command"), ""));
        }
        if let Some(http_get) = self.http_get {
            validate_http_get(http_get, &path.child("httpGet"), errors);
        }
        if let Some(tcp) = self.tcp_socket {
            port_number_or_name(&tcp.port, &path.child("tcpSocket").child("port"), errors);
        }
    }
}

fn validate_lifecycle_handler(handler: &LifecycleHandler, path: &Path, errors: &mut ErrorList) {
    Handler {
        exec: handler.exec.as_ref(),
        http_get: handler.http_get.as_ref(),
        tcp_socket: handler.tcp_socket.as_ref(),
        others: usize::from(handler.sleep.is_some()),
    }
    .validate(path, errors);
    if let Some(sleep) = &handler.sleep
        && sleep.seconds <= 0
    {
        errors.push(Error::invalid(
            &path.child("sleep").child("seconds"),
            sleep.seconds,
            "must be greater than 0",
        ));
    }
}
