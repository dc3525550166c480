//! Defaults of the workload kinds: ReplicationController, ReplicaSet, Deployment (Kubernetes'
//! `pkg/apis/core/v1/defaults.go` and `pkg/apis/apps/v1/defaults.go`).

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentStrategy, ReplicaSet, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::ReplicationController;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::SetDefaults;
use super::pod::default_pod_spec;

/// The default `maxSurge` and `maxUnavailable` of a rolling update.
pub const DEFAULT_ROLLING_UPDATE_PERCENT: &str = "25%";

/// How many old ReplicaSets a Deployment keeps by default.
pub const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;

/// How long a Deployment may make no progress before it is reported failed, by default.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;

impl SetDefaults for ReplicationController {
    fn set_defaults(&mut self) {
        let Some(spec) = &mut self.spec else {
            return;
        };
        let template_labels = spec
            .template
            .as_ref()
            .and_then(|template| template.metadata.as_ref())
            .and_then(|meta| meta.labels.clone())
            .filter(|labels| !labels.is_empty());
        if let Some(labels) = template_labels {
            if spec.selector.as_ref().is_none_or(|s| s.is_empty()) {
                spec.selector = Some(labels.clone());
            }
            if self.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
                self.metadata.labels = Some(labels);
            }
        }
        spec.replicas.get_or_insert(1);
        if let Some(pod_spec) = spec.template.as_mut().and_then(|t| t.spec.as_mut()) {
            default_pod_spec(pod_spec);
        }
    }
}

impl SetDefaults for ReplicaSet {
    fn set_defaults(&mut self) {
        let Some(spec) = &mut self.spec else {
            return;
        };
        spec.replicas.get_or_insert(1);
        if let Some(pod_spec) = spec.template.as_mut().and_then(|t| t.spec.as_mut()) {
            default_pod_spec(pod_spec);
        }
    }
}

impl SetDefaults for Deployment {
    fn set_defaults(&mut self) {
        let Some(spec) = &mut self.spec else {
            return;
        };
        spec.replicas.get_or_insert(1);
        let strategy = spec
            .strategy
            .get_or_insert_with(DeploymentStrategy::default);
        let strategy_type = strategy
            .type_
            .get_or_insert_with(|| "RollingUpdate".to_owned());
        if strategy_type == "RollingUpdate" {
            let rolling = strategy
                .rolling_update
                .get_or_insert_with(RollingUpdateDeployment::default);
            rolling
                .max_unavailable
                .get_or_insert_with(|| IntOrString::String(DEFAULT_ROLLING_UPDATE_PERCENT.into()));
            rolling
                .max_surge
                .get_or_insert_with(|| IntOrString::String(DEFAULT_ROLLING_UPDATE_PERCENT.into()));
        }
        spec.revision_history_limit
            .get_or_insert(DEFAULT_REVISION_HISTORY_LIMIT);
        spec.progress_deadline_seconds
            .get_or_insert(DEFAULT_PROGRESS_DEADLINE_SECONDS);
        if let Some(pod_spec) = &mut spec.template.spec {
            default_pod_spec(pod_spec);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DeploymentSpec;
    use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationControllerSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    #[test]
    fn deployment_defaults_follow_kubernetes() {
        let mut deployment = Deployment {
            spec: Some(DeploymentSpec::default()),
            ..Deployment::default()
        };
        deployment.set_defaults();
        let spec = deployment.spec.unwrap();
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(spec.revision_history_limit, Some(10));
        assert_eq!(spec.progress_deadline_seconds, Some(600));
        let strategy = spec.strategy.unwrap();
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        let rolling = strategy.rolling_update.unwrap();
        assert_eq!(rolling.max_surge, Some(IntOrString::String("25%".into())));
        assert_eq!(
            rolling.max_unavailable,
            Some(IntOrString::String("25%".into()))
        );
    }

    #[test]
    fn recreate_gets_no_rolling_parameters() {
        let mut deployment = Deployment {
            spec: Some(DeploymentSpec {
                strategy: Some(DeploymentStrategy {
                    type_: Some("Recreate".into()),
                    rolling_update: None,
                }),
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        };
        deployment.set_defaults();
        assert!(
            deployment
                .spec
                .unwrap()
                .strategy
                .unwrap()
                .rolling_update
                .is_none()
        );
    }

    #[test]
    fn replication_controller_selector_comes_from_its_template() {
        let labels = BTreeMap::from([("app".to_owned(), "web".to_owned())]);
        let mut controller = ReplicationController {
            spec: Some(ReplicationControllerSpec {
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels.clone()),
                        ..ObjectMeta::default()
                    }),
                    spec: None,
                }),
                ..ReplicationControllerSpec::default()
            }),
            ..ReplicationController::default()
        };
        controller.set_defaults();
        assert_eq!(controller.metadata.labels.as_ref(), Some(&labels));
        let spec = controller.spec.unwrap();
        assert_eq!(spec.selector.as_ref(), Some(&labels));
        assert_eq!(spec.replicas, Some(1));
    }
}
