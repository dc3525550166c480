//! Checks of the workload kinds: ReplicationController, ReplicaSet and Deployment (Kubernetes'
//! `ValidateReplicationController`, `pkg/apis/apps/validation`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentStrategy, ReplicaSet, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Validate;
use super::field::{Error, ErrorList, Path};
use super::meta::{NameRule, validate_label_selector, validate_labels, validate_metadata};
use super::pod::{nonnegative, validate_pod_template};
use crate::selector::Selector;

const SELECTOR_MISMATCH: &str = "`selector` does not match template `labels`";
const PERCENT_FORMAT: &str = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')";

fn template_labels(template: &PodTemplateSpec) -> BTreeMap<String, String> {
    template
        .metadata
        .as_ref()
        .and_then(|meta| meta.labels.clone())
        .unwrap_or_default()
}

/// Checks a workload's pod template: the pod template itself, labels that its selector selects,
/// `restartPolicy: Always`, and no `activeDeadlineSeconds`.
fn validate_workload_template(
    template: &PodTemplateSpec,
    selector: Option<&Selector>,
    path: &Path,
    errors: &mut ErrorList,
) {
    let labels = template_labels(template);
    if let Some(selector) = selector
        && !selector.is_empty()
        && !selector.matches(&labels)
    {
        errors.push(Error::invalid(
            &path.child("metadata").child("labels"),
            serde_json::to_value(&labels).unwrap_or_default(),
            SELECTOR_MISMATCH,
        ));
    }
    errors.extend(validate_pod_template(template, path));
    if let Some(spec) = &template.spec {
        let policy = spec.restart_policy.as_deref().unwrap_or_default();
        if policy != "Always" {
            errors.push(Error::not_supported(
                &path.child("spec").child("restartPolicy"),
                policy,
                &["Always"],
            ));
        }
        if spec.active_deadline_seconds.is_some() {
            errors.push(Error::forbidden(
                &path.child("spec").child("activeDeadlineSeconds"),
                "activeDeadlineSeconds in ReplicaSet is not Supported",
            ));
        }
    }
}

/// Checks a `LabelSelector` of a ReplicaSet or Deployment: present, well-formed and not empty;
/// returns it as a [`Selector`] when it is usable.
fn validate_workload_selector(
    selector: Option<&LabelSelector>,
    path: &Path,
    kind: &str,
    errors: &mut ErrorList,
) -> Option<Selector> {
    let Some(selector) = selector else {
        errors.push(Error::required(path, ""));
        return None;
    };
    let problems = validate_label_selector(selector, path);
    let well_formed = problems.is_empty();
    errors.extend(problems);
    let empty = selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty);
    if empty {
        errors.push(Error::invalid(
            path,
            serde_json::to_value(selector).unwrap_or_default(),
            &format!("empty selector is invalid for {kind}"),
        ));
        return None;
    }
    if !well_formed {
        return None;
    }
    Selector::try_from(selector).ok()
}

/// What every replicated workload's spec shares: non-negative `replicas` and `minReadySeconds`,
/// and a pod template (required) that its selector selects.
fn validate_replicas_and_template(
    replicas: Option<i32>,
    min_ready_seconds: Option<i32>,
    selector: Option<&Selector>,
    template: Option<&PodTemplateSpec>,
    path: &Path,
    errors: &mut ErrorList,
) {
    nonnegative(
        i64::from(replicas.unwrap_or(1)),
        &path.child("replicas"),
        errors,
    );
    nonnegative(
        i64::from(min_ready_seconds.unwrap_or_default()),
        &path.child("minReadySeconds"),
        errors,
    );
    match template {
        Some(template) => {
            validate_workload_template(template, selector, &path.child("template"), errors);
        }
        None => errors.push(Error::required(&path.child("template"), "")),
    }
}

impl Validate for ReplicationController {
    fn validate(&self) -> ErrorList {
        let mut errors = validate_metadata(self, NameRule::DnsSubdomain);
        let path = Path::new("spec");
        let Some(spec) = &self.spec else {
            errors.push(Error::required(&path.child("selector"), ""));
            return errors;
        };
        let selector_map = spec.selector.clone().unwrap_or_default();
        let selector_path = path.child("selector");
        if selector_map.is_empty() {
            errors.push(Error::required(&selector_path, ""));
        }
        let selector_problems = validate_labels(&selector_map, &selector_path);
        let selector = (selector_problems.is_empty() && !selector_map.is_empty())
            .then(|| Selector::from_validated_map(&selector_map));
        errors.extend(selector_problems);
        validate_replicas_and_template(
            spec.replicas,
            spec.min_ready_seconds,
            selector.as_ref(),
            spec.template.as_ref(),
            &path,
            &mut errors,
        );
        errors
    }
}

impl Validate for ReplicaSet {
    fn validate(&self) -> ErrorList {
        let mut errors = validate_metadata(self, NameRule::DnsSubdomain);
        let path = Path::new("spec");
        let Some(spec) = &self.spec else {
            errors.push(Error::required(&path.child("selector"), ""));
            return errors;
        };
        let selector = validate_workload_selector(
            Some(&spec.selector),
            &path.child("selector"),
            "replicaset",
            &mut errors,
        );
        validate_replicas_and_template(
            spec.replicas,
            spec.min_ready_seconds,
            selector.as_ref(),
            spec.template.as_ref(),
            &path,
            &mut errors,
        );
        errors
    }
}

impl Validate for Deployment {
    fn validate(&self) -> ErrorList {
        let mut errors = validate_metadata(self, NameRule::DnsSubdomain);
        let path = Path::new("spec");
        let Some(spec) = &self.spec else {
            errors.push(Error::required(&path.child("selector"), ""));
            return errors;
        };
        let selector = validate_workload_selector(
            Some(&spec.selector),
            &path.child("selector"),
            "deployment",
            &mut errors,
        );
        validate_replicas_and_template(
            spec.replicas,
            spec.min_ready_seconds,
            selector.as_ref(),
            Some(&spec.template),
            &path,
            &mut errors,
        );
        match &spec.strategy {
            Some(strategy) => validate_strategy(strategy, &path.child("strategy"), &mut errors),
            None => errors.push(Error::required(&path.child("strategy"), "")),
        }
        let min_ready = spec.min_ready_seconds.unwrap_or_default();
        if let Some(limit) = spec.revision_history_limit {
            nonnegative(
                i64::from(limit),
                &path.child("revisionHistoryLimit"),
                &mut errors,
            );
        }
        if let Some(deadline) = spec.progress_deadline_seconds {
            let deadline_path = path.child("progressDeadlineSeconds");
            nonnegative(i64::from(deadline), &deadline_path, &mut errors);
            if deadline >= 0 && deadline <= min_ready {
                errors.push(Error::invalid(
                    &deadline_path,
                    deadline,
                    "must be greater than minReadySeconds",
                ));
            }
        }
        errors
    }
}

fn validate_strategy(strategy: &DeploymentStrategy, path: &Path, errors: &mut ErrorList) {
    match strategy.type_.as_deref().unwrap_or_default() {
        "Recreate" => {
            if strategy.rolling_update.is_some() {
                errors.push(Error::forbidden(
                    &path.child("rollingUpdate"),
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => match &strategy.rolling_update {
            Some(rolling) => validate_rolling_update(rolling, &path.child("rollingUpdate"), errors),
            None => errors.push(Error::required(
                &path.child("rollingUpdate"),
                "this should be defaulted and never be nil",
            )),
        },
        "" => errors.push(Error::required(&path.child("type"), "")),
        other => errors.push(Error::not_supported(
            &path.child("type"),
            other,
            &["Recreate", "RollingUpdate"],
        )),
    }
}

/// The value of an int-or-percent as Kubernetes compares it with zero: the number, or the
/// percentage's number; `None` when malformed.
fn int_or_percent_value(value: &IntOrString) -> Option<i64> {
    match value {
        IntOrString::Int(number) => Some(i64::from(*number)),
        IntOrString::String(text) => text.strip_suffix('%')?.parse().ok(),
    }
}

fn validate_int_or_percent(value: &IntOrString, path: &Path, errors: &mut ErrorList) -> bool {
    match value {
        IntOrString::Int(number) => {
            let before = errors.len();
            nonnegative(i64::from(*number), path, errors);
            errors.len() == before
        }
        IntOrString::String(text) => {
            let digits = text.strip_suffix('%').unwrap_or_default();
            let valid = !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit());
            if !valid {
                errors.push(Error::invalid(path, text.as_str(), PERCENT_FORMAT));
            }
            valid
        }
    }
}

fn validate_rolling_update(rolling: &RollingUpdateDeployment, path: &Path, errors: &mut ErrorList) {
    let zero = IntOrString::Int(0);
    let max_unavailable = rolling.max_unavailable.as_ref().unwrap_or(&zero);
    let max_surge = rolling.max_surge.as_ref().unwrap_or(&zero);
    let unavailable_path = path.child("maxUnavailable");
    let unavailable_ok = validate_int_or_percent(max_unavailable, &unavailable_path, errors);
    let surge_ok = validate_int_or_percent(max_surge, &path.child("maxSurge"), errors);
    if unavailable_ok
        && let IntOrString::String(text) = max_unavailable
        && int_or_percent_value(max_unavailable).is_some_and(|v| v > 100)
    {
        errors.push(Error::invalid(
            &unavailable_path,
            text.as_str(),
            "must not be greater than 100%",
        ));
    }
    if unavailable_ok
        && surge_ok
        && int_or_percent_value(max_unavailable) == Some(0)
        && int_or_percent_value(max_surge) == Some(0)
    {
        errors.push(Error::invalid(
            &unavailable_path,
            serde_json::to_value(max_unavailable).unwrap_or_default(),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
}
