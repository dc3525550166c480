//! What differs between kinds when objects are created, updated and deleted (Kubernetes' "REST
//! strategies"): what the server sets on create, which fields an update may not change, which
//! kinds delete gracefully, which have a scale subresource.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::resource::{ApiResource, DynamicObject};
use crate::selector::Selector;
use crate::validation::field::{Error, ErrorList, Path};

fn is(resource: &ApiResource, group: &str, kind: &str) -> bool {
    resource.group == group && resource.kind == kind
}

/// Whether the resource is one of the workload kinds with a scale subresource.
pub(crate) fn has_scale(resource: &ApiResource) -> bool {
    is(resource, "apps", "Deployment")
        || is(resource, "apps", "ReplicaSet")
        || is(resource, "", "ReplicationController")
}

/// Whether deleting objects of the kind is graceful (pods: the node agent stops the containers
/// within the grace period, then deletes the object).
pub(crate) fn deletes_gracefully(resource: &ApiResource) -> bool {
    is(resource, "", "Pod")
}

/// What the server sets on a new object, besides metadata.
pub(crate) fn prepare_for_create(
    resource: &ApiResource,
    object: &mut DynamicObject,
    status_subresource: bool,
) {
    let Some(data) = ensure_object(&mut object.data) else {
        return;
    };
    if is(resource, "", "Pod") {
        let qos = pod_qos_class(data.get("spec"));
        data.insert(
            "status".into(),
            json!({"phase": "Pending", "qosClass": qos}),
        );
    } else if is(resource, "", "Namespace") {
        if let Some(spec) = ensure_object(data.entry("spec").or_insert_with(|| json!({}))) {
            let finalizers = spec.entry("finalizers").or_insert_with(|| json!([]));
            if let Value::Array(list) = finalizers
                && !list.iter().any(|f| f == "kubernetes")
            {
                list.push(json!("kubernetes"));
            }
        }
        data.insert("status".into(), json!({"phase": "Active"}));
    } else if is(resource, "", "Service") {
        data.insert("status".into(), json!({"loadBalancer": {}}));
    } else if is(resource, "", "Node") {
        // A node reports its own status when it registers.
    } else if status_subresource {
        data.remove("status");
    }
}

/// Kubernetes' quality-of-service class of a pod spec: `Guaranteed` when every container limits
/// and requests cpu and memory equally, `BestEffort` when none requests or limits anything,
/// `Burstable` otherwise.
pub(crate) fn pod_qos_class(spec: Option<&Value>) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|field| spec.and_then(|s| s.get(*field)).and_then(Value::as_array))
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for container in containers {
        let resources = container.get("resources");
        let requests = resources
            .and_then(|r| r.get("requests"))
            .and_then(Value::as_object);
        let limits = resources
            .and_then(|r| r.get("limits"))
            .and_then(Value::as_object);
        for list in [requests, limits].into_iter().flatten() {
            if list.keys().any(|name| name == "cpu" || name == "memory") {
                any = true;
            }
        }
        for name in ["cpu", "memory"] {
            let limit = limits.and_then(|l| l.get(name));
            let request = requests.and_then(|r| r.get(name)).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    if guaranteed {
        "Guaranteed"
    } else if any {
        "Burstable"
    } else {
        "BestEffort"
    }
}

/// Carries over what an update may not set: the status on an update of the object (when the kind
/// has a status subresource), everything but the status on an update of the status.
pub(crate) fn prepare_for_update(
    new: &mut DynamicObject,
    old: &DynamicObject,
    status_subresource: bool,
    updating_status: bool,
) {
    if updating_status {
        let status = ensure_object(&mut new.data).and_then(|data| data.remove("status"));
        let mut carried = old.clone();
        if let Some(data) = ensure_object(&mut carried.data) {
            match status {
                Some(status) => data.insert("status".into(), status),
                None => data.remove("status"),
            };
        }
        carried.metadata.resource_version = new.metadata.resource_version.take();
        *new = carried;
    } else if status_subresource && let Some(data) = ensure_object(&mut new.data) {
        match old.data.get("status") {
            Some(status) => data.insert("status".into(), status.clone()),
            None => data.remove("status"),
        };
    }
}

/// The checks of an update beyond those of a create: fields Kubernetes does not let an update
/// change.
pub(crate) fn validate_update(
    resource: &ApiResource,
    new: &DynamicObject,
    old: &DynamicObject,
) -> ErrorList {
    let mut errors = ErrorList::new();
    let immutable = |errors: &mut ErrorList, pointer: &str, path: Path| {
        let before = old.data.pointer(pointer);
        let after = new.data.pointer(pointer);
        if before != after {
            errors.push(Error::invalid(
                &path,
                after.cloned().unwrap_or(Value::Null),
                "field is immutable",
            ));
        }
    };
    if is(resource, "apps", "Deployment") || is(resource, "apps", "ReplicaSet") {
        immutable(
            &mut errors,
            "/spec/selector",
            Path::new("spec").child("selector"),
        );
    }
    if is(resource, "", "Pod") {
        validate_pod_update(new, old, &mut errors);
    }
    if is(resource, "", "Service") {
        let before = old.data.pointer("/spec/clusterIP").and_then(Value::as_str);
        let after = new.data.pointer("/spec/clusterIP").and_then(Value::as_str);
        if before.is_some_and(|ip| !ip.is_empty()) && before != after {
            errors.push(Error::invalid(
                &Path::new("spec").child("clusterIP"),
                after.unwrap_or_default(),
                "field is immutable",
            ));
        }
    }
    if is(resource, "", "Node") {
        let before = old.data.pointer("/spec/podCIDR").and_then(Value::as_str);
        if before.is_some_and(|cidr| !cidr.is_empty()) {
            immutable(
                &mut errors,
                "/spec/podCIDR",
                Path::new("spec").child("podCIDR"),
            );
        }
    }
    if is(resource, "scheduling.k8s.io", "PriorityClass") {
        validate_priority_class_update(new, old, &mut errors);
    }
    if is(resource, "rbac.authorization.k8s.io", "RoleBinding") {
        validate_typed_update(
            new,
            old,
            crate::validation::rbac::validate_role_binding_update,
            &mut errors,
        );
    }
    if is(resource, "rbac.authorization.k8s.io", "ClusterRoleBinding") {
        validate_typed_update(
            new,
            old,
            crate::validation::rbac::validate_cluster_role_binding_update,
            &mut errors,
        );
    }
    if (is(resource, "", "Secret") || is(resource, "", "ConfigMap"))
        && old.data.get("immutable") == Some(&Value::Bool(true))
    {
        for field in ["data", "binaryData", "immutable"] {
            let before = old.data.get(field);
            let after = new.data.get(field);
            if before != after {
                errors.push(Error::forbidden(
                    &Path::new(field),
                    "field is immutable when `immutable` is set",
                ));
            }
        }
    }
    errors
}

/// A pod's spec may only change its containers' images, `activeDeadlineSeconds`,
/// `terminationGracePeriodSeconds` and additions to its tolerations (the node it runs on is set
/// once, by binding).
fn validate_pod_update(new: &DynamicObject, old: &DynamicObject, errors: &mut ErrorList) {
    let mask = |spec: Option<&Value>| -> Value {
        let mut spec = spec.cloned().unwrap_or_else(|| json!({}));
        if let Value::Object(fields) = &mut spec {
            for field in ["containers", "initContainers"] {
                if let Some(Value::Array(containers)) = fields.get_mut(field) {
                    for container in containers {
                        if let Value::Object(container) = container {
                            container.remove("image");
                        }
                    }
                }
            }
            for field in [
                "activeDeadlineSeconds",
                "terminationGracePeriodSeconds",
                "tolerations",
                "schedulingGates",
            ] {
                fields.remove(field);
            }
        }
        spec
    };
    let old_spec = old.data.get("spec");
    let new_spec = new.data.get("spec");
    if mask(old_spec) != mask(new_spec) {
        errors.push(Error::forbidden(
            &Path::new("spec"),
            "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
        ));
    }
    let tolerations = |spec: Option<&Value>| -> Vec<Value> {
        spec.and_then(|s| s.get("tolerations"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let before = tolerations(old_spec);
    let after = tolerations(new_spec);
    if before.iter().any(|t| !after.contains(t)) {
        errors.push(Error::forbidden(
            &Path::new("spec").child("tolerations"),
            "existing toleration can not be modified except its tolerationSeconds",
        ));
    }
}

/// A PriorityClass's value and preemption policy may not change (compared once both are
/// defaulted, as Kubernetes compares them). Objects that do not decode are left to validation.
fn validate_priority_class_update(
    new: &DynamicObject,
    old: &DynamicObject,
    errors: &mut ErrorList,
) {
    use k8s_openapi::api::scheduling::v1::PriorityClass;

    use crate::defaulting::SetDefaults;

    let decode = |object: &DynamicObject| -> Option<PriorityClass> {
        let mut class: PriorityClass =
            serde_json::from_value(serde_json::to_value(object).ok()?).ok()?;
        class.set_defaults();
        Some(class)
    };
    if let (Some(new), Some(old)) = (decode(new), decode(old)) {
        errors
            .extend(crate::validation::priority_class::validate_priority_class_update(&new, &old));
    }
}

/// Runs a kind's typed update check on two objects, both decoded and defaulted (as Kubernetes
/// compares them); objects that do not decode are left to validation.
fn validate_typed_update<K>(
    new: &DynamicObject,
    old: &DynamicObject,
    check: fn(&K, &K) -> ErrorList,
    errors: &mut ErrorList,
) where
    K: serde::de::DeserializeOwned + crate::defaulting::SetDefaults,
{
    let decode = |object: &DynamicObject| -> Option<K> {
        let mut typed: K = serde_json::from_value(serde_json::to_value(object).ok()?).ok()?;
        typed.set_defaults();
        Some(typed)
    };
    if let (Some(new), Some(old)) = (decode(new), decode(old)) {
        errors.extend(check(&new, &old));
    }
}

/// Whether two objects differ in anything but metadata and status: the changes that advance
/// `metadata.generation`.
pub(crate) fn spec_changed(new: &DynamicObject, old: &DynamicObject) -> bool {
    let strip = |data: &Value| -> Map<String, Value> {
        let mut fields = data.as_object().cloned().unwrap_or_default();
        fields.remove("status");
        fields
    };
    strip(&new.data) != strip(&old.data)
}

/// The label selector of a scalable workload, in string form (`Scale.status.selector`).
pub(crate) fn scale_selector(resource: &ApiResource, object: &DynamicObject) -> String {
    let selector = object.data.pointer("/spec/selector");
    if is(resource, "", "ReplicationController") {
        let map = selector
            .and_then(Value::as_object)
            .map(|map| {
                map.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        return Selector::from_validated_map(&map).to_string();
    }
    selector
        .cloned()
        .and_then(|value| serde_json::from_value(value).ok())
        .and_then(|selector| Selector::from_label_selector(Some(&selector)).ok())
        .map(|selector| selector.to_string())
        .unwrap_or_default()
}

/// The finalizers an object carries.
pub(crate) fn finalizers(object: &DynamicObject) -> BTreeSet<String> {
    object
        .metadata
        .finalizers
        .iter()
        .flatten()
        .cloned()
        .collect()
}

/// Whether a namespace still waits for its contents to be deleted (`spec.finalizers`).
pub(crate) fn namespace_finalizing(resource: &ApiResource, object: &DynamicObject) -> bool {
    is(resource, "", "Namespace")
        && object
            .data
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|list| !list.is_empty())
}

/// `value` as a JSON object, made one if it was not (always `Some`).
pub(crate) fn ensure_object(value: &mut Value) -> Option<&mut Map<String, Value>> {
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    value.as_object_mut()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_of_service_classes() {
        assert_eq!(
            pod_qos_class(Some(&json!({"containers": [{"name": "a"}]}))),
            "BestEffort"
        );
        let guaranteed =
            json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(pod_qos_class(Some(&guaranteed)), "Guaranteed");
        let burstable = json!({"containers": [{"resources": {"requests": {"cpu": "1"}}}]});
        assert_eq!(pod_qos_class(Some(&burstable)), "Burstable");
    }

    #[test]
    fn binding_role_refs_are_immutable() {
        use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};

        let object = |kind: &str, role_kind: &str, role: &str, user: &str| -> DynamicObject {
            serde_json::from_value(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": kind,
                "metadata": {"name": "b", "namespace": "default"},
                // Left out, the API group is defaulted before the two are compared.
                "roleRef": {"kind": role_kind, "name": role},
                "subjects": [{"kind": "User", "name": user}],
            }))
            .unwrap_or_else(|error| panic!("{error}"))
        };
        let binding = ApiResource::of::<RoleBinding>();
        let old = object("RoleBinding", "Role", "reader", "alice");
        let mut same_role = object("RoleBinding", "Role", "reader", "bob");
        if let Some(role_ref) = same_role.data.get_mut("roleRef") {
            role_ref["apiGroup"] = json!("rbac.authorization.k8s.io");
        }
        assert!(validate_update(&binding, &same_role, &old).is_empty());
        let other_role = object("RoleBinding", "ClusterRole", "reader", "alice");
        let fields: Vec<(String, String)> = validate_update(&binding, &other_role, &old)
            .iter()
            .map(|e| (e.field.to_string(), e.detail.clone()))
            .collect();
        assert_eq!(
            fields,
            [("roleRef".to_owned(), "cannot change roleRef".to_owned())]
        );

        let cluster_binding = ApiResource::of::<ClusterRoleBinding>();
        let old = object("ClusterRoleBinding", "ClusterRole", "view", "alice");
        let same_role = object("ClusterRoleBinding", "ClusterRole", "view", "bob");
        assert!(validate_update(&cluster_binding, &same_role, &old).is_empty());
        let other_role = object("ClusterRoleBinding", "ClusterRole", "edit", "alice");
        assert_eq!(
            validate_update(&cluster_binding, &other_role, &old).len(),
            1
        );
    }
}
