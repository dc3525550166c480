//! The built-in kinds: the k8s-openapi types of Kubernetes 1.33, as [`Resource`]s.
//!
//! Orchestra does not redefine the Kubernetes types: Pods, Deployments and the rest are the
//! k8s-openapi structs users of kube-rs already know, so objects move between Orchestra, kube-rs and
//! a real Kubernetes cluster unchanged. This module makes each of them a [`Resource`] and lists
//! them in [`builtin_resources`].
//!
//! | Kind | apiVersion | plural | scope |
//! |---|---|---|---|
//! | `Pod` | `v1` | `pods` | namespaced |
//! | `Node` | `v1` | `nodes` | cluster |
//! | `Namespace` | `v1` | `namespaces` | cluster |
//! | `Service` | `v1` | `services` | namespaced |
//! | `Endpoints` | `v1` | `endpoints` | namespaced |
//! | `ServiceAccount` | `v1` | `serviceaccounts` | namespaced |
//! | `Secret` | `v1` | `secrets` | namespaced |
//! | `ConfigMap` | `v1` | `configmaps` | namespaced |
//! | `Event` | `v1` | `events` | namespaced |
//! | `ReplicationController` | `v1` | `replicationcontrollers` | namespaced |
//! | `ReplicaSet` | `apps/v1` | `replicasets` | namespaced |
//! | `Deployment` | `apps/v1` | `deployments` | namespaced |
//! | `Lease` | `coordination.k8s.io/v1` | `leases` | namespaced |
//! | `PriorityClass` | `scheduling.k8s.io/v1` | `priorityclasses` | cluster |
//! | `Role` | `rbac.authorization.k8s.io/v1` | `roles` | namespaced |
//! | `ClusterRole` | `rbac.authorization.k8s.io/v1` | `clusterroles` | cluster |
//! | `RoleBinding` | `rbac.authorization.k8s.io/v1` | `rolebindings` | namespaced |
//! | `ClusterRoleBinding` | `rbac.authorization.k8s.io/v1` | `clusterrolebindings` | cluster |

use std::borrow::Cow;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, Pod, ReplicationController, Secret, Service,
    ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{ApiResource, Resource};

macro_rules! builtin {
    ($($ty:ty => $namespaced:expr),* $(,)?) => {
        $(
            impl Resource for $ty {
                type DynamicType = ();

                fn kind(_: &()) -> Cow<'_, str> {
                    Cow::Borrowed(<$ty as k8s_openapi::Resource>::KIND)
                }

                fn group(_: &()) -> Cow<'_, str> {
                    Cow::Borrowed(<$ty as k8s_openapi::Resource>::GROUP)
                }

                fn version(_: &()) -> Cow<'_, str> {
                    Cow::Borrowed(<$ty as k8s_openapi::Resource>::VERSION)
                }

                fn api_version(_: &()) -> Cow<'_, str> {
                    Cow::Borrowed(<$ty as k8s_openapi::Resource>::API_VERSION)
                }

                fn plural(_: &()) -> Cow<'_, str> {
                    Cow::Borrowed(<$ty as k8s_openapi::Resource>::URL_PATH_SEGMENT)
                }

                fn namespaced(_: &()) -> bool {
                    $namespaced
                }

                fn meta(&self) -> &ObjectMeta {
                    &self.metadata
                }

                fn meta_mut(&mut self) -> &mut ObjectMeta {
                    &mut self.metadata
                }
            }
        )*

        /// The description of every built-in kind, in the order of this module's table.
        pub fn builtin_resources() -> Vec<ApiResource> {
            vec![$(ApiResource::of::<$ty>()),*]
        }
    };
}

builtin! {
    Pod => true,
    Node => false,
    Namespace => false,
    Service => true,
    Endpoints => true,
    ServiceAccount => true,
    Secret => true,
    ConfigMap => true,
    Event => true,
    ReplicationController => true,
    ReplicaSet => true,
    Deployment => true,
    Lease => true,
    PriorityClass => false,
    Role => true,
    ClusterRole => false,
    RoleBinding => true,
    ClusterRoleBinding => false,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_match_kubernetes() {
        for resource in builtin_resources() {
            let cluster_scoped = matches!(
                resource.kind.as_str(),
                "Node" | "Namespace" | "PriorityClass" | "ClusterRole" | "ClusterRoleBinding"
            );
            assert_eq!(resource.namespaced, !cluster_scoped, "{}", resource.kind);
        }
    }

    #[test]
    fn type_information_comes_from_k8s_openapi() {
        assert_eq!(
            ApiResource::of::<Lease>().api_version,
            "coordination.k8s.io/v1"
        );
        assert_eq!(ApiResource::of::<Endpoints>().plural, "endpoints");
        assert_eq!(ApiResource::of::<Pod>().group, "");
        assert_eq!(ApiResource::of::<PriorityClass>().plural, "priorityclasses");
        assert_eq!(
            ApiResource::of::<ClusterRoleBinding>().api_version,
            "rbac.authorization.k8s.io/v1"
        );
        assert_eq!(ApiResource::of::<Role>().plural, "roles");
        assert_eq!(ApiResource::of::<ClusterRole>().plural, "clusterroles");
        assert_eq!(ApiResource::of::<RoleBinding>().plural, "rolebindings");
        assert_eq!(builtin_resources().len(), 18);
    }
}
