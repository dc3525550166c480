//! Where objects live in the store: `/registry/<group>/<plural>/<namespace>/<name>`.
//!
//! The core group is spelled `core`, so every resource's keys sit at the same depth;
//! cluster-scoped objects have no namespace segment. A namespace's objects of one resource share
//! the prefix `/registry/<group>/<plural>/<namespace>/`, and all of a resource's objects the prefix
//! `/registry/<group>/<plural>/`.

use crate::resource::ApiResource;

/// The root of every object key.
pub const REGISTRY_ROOT: &str = "/registry";

fn group(resource: &ApiResource) -> &str {
    if resource.group.is_empty() {
        "core"
    } else {
        &resource.group
    }
}

/// The prefix of all objects of a resource.
pub fn resource_prefix(resource: &ApiResource) -> String {
    format!("{REGISTRY_ROOT}/{}/{}/", group(resource), resource.plural)
}

/// The prefix of a resource's objects in one namespace (all of them for cluster-scoped resources
/// or when `namespace` is `None`).
pub fn collection_prefix(resource: &ApiResource, namespace: Option<&str>) -> String {
    match namespace {
        Some(namespace) if resource.namespaced => {
            format!("{}{namespace}/", resource_prefix(resource))
        }
        _ => resource_prefix(resource),
    }
}

/// The key of one object.
pub fn object_key(resource: &ApiResource, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(namespace) if resource.namespaced => {
            format!("{}{namespace}/{name}", resource_prefix(resource))
        }
        _ => format!("{}{name}", resource_prefix(resource)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_layout() {
        let pods = ApiResource::new("", "v1", "Pod", None, true);
        assert_eq!(
            object_key(&pods, Some("shop"), "web"),
            "/registry/core/pods/shop/web"
        );
        assert_eq!(
            collection_prefix(&pods, Some("shop")),
            "/registry/core/pods/shop/"
        );
        assert_eq!(collection_prefix(&pods, None), "/registry/core/pods/");
        let deployments = ApiResource::new("apps", "v1", "Deployment", None, true);
        assert_eq!(resource_prefix(&deployments), "/registry/apps/deployments/");
        let nodes = ApiResource::new("", "v1", "Node", None, false);
        assert_eq!(
            object_key(&nodes, Some("ignored"), "n1"),
            "/registry/core/nodes/n1"
        );
    }
}
