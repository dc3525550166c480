//! Defaults of pods and pod templates (Kubernetes' `SetDefaults_PodSpec`, `SetDefaults_Container`
//! and friends in `pkg/apis/core/v1/defaults.go`).

use k8s_openapi::api::core::v1::EmptyDirVolumeSource;
use k8s_openapi::api::core::v1::{
    Container, HTTPGetAction, LifecycleHandler, Pod, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, Volume,
};

use super::{SetDefaults, canonicalize_quantities, canonicalize_quantity};
use crate::quantity::Quantity;

/// The `defaultMode` of secret, config map, downward API and projected volumes (0644).
pub const DEFAULT_VOLUME_MODE: i32 = 0o644;

/// The file a container writes its termination message to.
pub const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";

/// The scheduler that places pods which name none.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

impl SetDefaults for Pod {
    fn set_defaults(&mut self) {
        let Some(spec) = &mut self.spec else {
            return;
        };
        default_pod_spec(spec);
        // A container that sets a limit but no request for a resource requests its limit.
        for container in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            let Some(resources) = &mut container.resources else {
                continue;
            };
            let Some(limits) = &resources.limits else {
                continue;
            };
            let requests = resources.requests.get_or_insert_with(Default::default);
            for (name, limit) in limits {
                // A limit that is not a quantity is left for validation to report, once.
                if Quantity::parse(&limit.0).is_ok() {
                    requests
                        .entry(name.clone())
                        .or_insert_with(|| limit.clone());
                }
            }
        }
        if let Some(status) = &mut self.status {
            status.phase.get_or_insert_with(|| "Pending".to_owned());
        }
    }
}

impl SetDefaults for PodTemplateSpec {
    fn set_defaults(&mut self) {
        if let Some(spec) = &mut self.spec {
            default_pod_spec(spec);
        }
    }
}

/// The defaults of a pod spec, in pods and in pod templates alike.
pub(crate) fn default_pod_spec(spec: &mut PodSpec) {
    spec.dns_policy
        .get_or_insert_with(|| "ClusterFirst".to_owned());
    spec.restart_policy
        .get_or_insert_with(|| "Always".to_owned());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.security_context
        .get_or_insert_with(PodSecurityContext::default);
    spec.scheduler_name
        .get_or_insert_with(|| DEFAULT_SCHEDULER_NAME.to_owned());
    spec.enable_service_links.get_or_insert(true);
    canonicalize_quantities(spec.overhead.as_mut());
    let host_network = spec.host_network == Some(true);
    for container in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        default_container(container, host_network);
    }
    for volume in spec.volumes.iter_mut().flatten() {
        default_volume(volume);
    }
}

fn default_container(container: &mut Container, host_network: bool) {
    if let Some(resources) = &mut container.resources {
        canonicalize_quantities(resources.limits.as_mut());
        canonicalize_quantities(resources.requests.as_mut());
    }
    if container.image_pull_policy.is_none() {
        let policy = if image_tag(container.image.as_deref().unwrap_or_default()) == Some("latest")
        {
            "Always"
        } else {
            "IfNotPresent"
        };
        container.image_pull_policy = Some(policy.to_owned());
    }
    container
        .termination_message_path
        .get_or_insert_with(|| TERMINATION_MESSAGE_PATH.to_owned());
    container
        .termination_message_policy
        .get_or_insert_with(|| "File".to_owned());
    for port in container.ports.iter_mut().flatten() {
        port.protocol.get_or_insert_with(|| "TCP".to_owned());
        if host_network && port.host_port.is_none_or(|p| p == 0) {
            port.host_port = Some(port.container_port);
        }
    }
    for env in container.env.iter_mut().flatten() {
        if let Some(field_ref) = env
            .value_from
            .as_mut()
            .and_then(|source| source.field_ref.as_mut())
        {
            field_ref.api_version.get_or_insert_with(|| "v1".to_owned());
        }
    }
    for probe in [
        &mut container.liveness_probe,
        &mut container.readiness_probe,
        &mut container.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        default_probe(probe);
    }
    if let Some(lifecycle) = &mut container.lifecycle {
        for handler in [&mut lifecycle.post_start, &mut lifecycle.pre_stop]
            .into_iter()
            .flatten()
        {
            default_lifecycle_handler(handler);
        }
    }
}

/// The tag of an image reference as Kubernetes' `parsers.ParseImageName` reads it: the explicit
/// tag, `latest` when there is neither tag nor digest, `None` when pinned by digest alone.
fn image_tag(image: &str) -> Option<&str> {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    let last_component = name.rsplit('/').next().unwrap_or(name);
    match last_component.rsplit_once(':') {
        Some((_, tag)) => Some(tag),
        None if digest.is_some() => None,
        None => Some("latest"),
    }
}

fn default_probe(probe: &mut Probe) {
    probe.timeout_seconds.get_or_insert(1);
    probe.period_seconds.get_or_insert(10);
    probe.success_threshold.get_or_insert(1);
    probe.failure_threshold.get_or_insert(3);
    if let Some(http_get) = &mut probe.http_get {
        default_http_get(http_get);
    }
}

fn default_lifecycle_handler(handler: &mut LifecycleHandler) {
    if let Some(http_get) = &mut handler.http_get {
        default_http_get(http_get);
    }
}

fn default_http_get(action: &mut HTTPGetAction) {
    if action.path.as_deref().is_none_or(str::is_empty) {
        action.path = Some("/".to_owned());
    }
    action.scheme.get_or_insert_with(|| "HTTP".to_owned());
}

/// Whether a volume names no source at all (it then becomes an `emptyDir`).
fn has_no_source(volume: &Volume) -> bool {
    Volume {
        name: String::new(),
        ..volume.clone()
    } == Volume::default()
}

fn default_volume(volume: &mut Volume) {
    if has_no_source(volume) {
        volume.empty_dir = Some(EmptyDirVolumeSource::default());
    }
    if let Some(limit) = volume
        .empty_dir
        .as_mut()
        .and_then(|e| e.size_limit.as_mut())
    {
        canonicalize_quantity(limit);
    }
    if let Some(secret) = &mut volume.secret {
        secret.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
    }
    if let Some(config_map) = &mut volume.config_map {
        config_map.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
    }
    if let Some(downward_api) = &mut volume.downward_api {
        downward_api.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
        for item in downward_api.items.iter_mut().flatten() {
            if let Some(field_ref) = &mut item.field_ref {
                field_ref.api_version.get_or_insert_with(|| "v1".to_owned());
            }
        }
    }
    if let Some(projected) = &mut volume.projected {
        projected.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
    }
    if let Some(host_path) = &mut volume.host_path {
        host_path.type_.get_or_insert_with(String::new);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tags_as_kubernetes_reads_them() {
        assert_eq!(image_tag("nginx"), Some("latest"));
        assert_eq!(image_tag("nginx:1.27"), Some("1.27"));
        assert_eq!(image_tag("registry.local:5000/team/app"), Some("latest"));
        assert_eq!(image_tag("registry.local:5000/team/app:v2"), Some("v2"));
        assert_eq!(image_tag("app@sha256:abc"), None);
        assert_eq!(image_tag("app:v1@sha256:abc"), Some("v1"));
    }

    #[test]
    fn pod_spec_defaults() {
        let mut pod = Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "web".into(),
                    image: Some("nginx".into()),
                    liveness_probe: Some(Probe {
                        http_get: Some(HTTPGetAction::default()),
                        ..Probe::default()
                    }),
                    ..Container::default()
                }],
                volumes: Some(vec![Volume {
                    name: "scratch".into(),
                    ..Volume::default()
                }]),
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        pod.set_defaults();
        let spec = pod.spec.unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.termination_grace_period_seconds, Some(30));
        assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
        let container = &spec.containers[0];
        assert_eq!(container.image_pull_policy.as_deref(), Some("Always"));
        let probe = container.liveness_probe.as_ref().unwrap();
        assert_eq!(
            (
                probe.timeout_seconds,
                probe.period_seconds,
                probe.success_threshold,
                probe.failure_threshold
            ),
            (Some(1), Some(10), Some(1), Some(3))
        );
        assert_eq!(probe.http_get.as_ref().unwrap().path.as_deref(), Some("/"));
        assert!(spec.volumes.unwrap()[0].empty_dir.is_some());
    }

    #[test]
    fn quantities_become_canonical_and_limits_become_requests() {
        use k8s_openapi::api::core::v1::ResourceRequirements;
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Text;
        let limits = [("cpu", "0.5"), ("memory", "1.5Gi"), ("bogus", "lots")]
            .map(|(k, v)| (k.to_owned(), Text(v.to_owned())));
        let mut pod = Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "web".into(),
                    resources: Some(ResourceRequirements {
                        limits: Some(limits.into_iter().collect()),
                        ..ResourceRequirements::default()
                    }),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        pod.set_defaults();
        let resources = pod.spec.unwrap().containers[0].resources.clone().unwrap();
        let limits = resources.limits.unwrap();
        assert_eq!(limits["cpu"].0, "500m");
        assert_eq!(limits["memory"].0, "1536Mi");
        assert_eq!(limits["bogus"].0, "lots");
        let requests = resources.requests.unwrap();
        assert_eq!(requests["memory"].0, "1536Mi");
        assert!(!requests.contains_key("bogus"));
    }
}
