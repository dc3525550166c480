//! Defaulting: the values Kubernetes fills in for fields a manifest leaves out.
//!
//! [`SetDefaults`] is implemented for every built-in kind with Kubernetes' defaults (for example
//! `restartPolicy: Always`, `terminationGracePeriodSeconds: 30`, a Deployment's `RollingUpdate`
//! strategy with 25% / 25%, `revisionHistoryLimit: 10`, `progressDeadlineSeconds: 600`, a port's
//! `protocol: TCP`, a Service's `type: ClusterIP`, a binding's `roleRef.apiGroup:
//! rbac.authorization.k8s.io`). Defaulting never fails and never overwrites a
//! value that is set; values it cannot interpret are left for validation to report.

/// An object that can fill in Kubernetes' defaults for the fields it leaves out.
pub trait SetDefaults {
    /// Fills in every default; values already set are kept.
    fn set_defaults(&mut self);
}

pub mod pod;
pub mod service;
pub mod workload;

use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, Namespace, NamespaceStatus, Node, Secret, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::api::scheduling::v1::PriorityClass;

use crate::rbac::RBAC_GROUP;

/// The label every Namespace carries with its own name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

impl SetDefaults for Namespace {
    /// Labels the namespace with its name (`kubernetes.io/metadata.name`) and starts it `Active`.
    fn set_defaults(&mut self) {
        if let Some(name) = self.metadata.name.clone().filter(|n| !n.is_empty()) {
            self.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert(NAMESPACE_NAME_LABEL.to_owned(), name);
        }
        self.status
            .get_or_insert_with(NamespaceStatus::default)
            .phase
            .get_or_insert_with(|| "Active".to_owned());
    }
}

impl SetDefaults for Node {
    /// A node whose status reports a capacity but no allocatable resources can allocate all of its
    /// capacity.
    fn set_defaults(&mut self) {
        if let Some(status) = &mut self.status {
            if status.allocatable.is_none() {
                status.allocatable.clone_from(&status.capacity);
            }
            canonicalize_quantities(status.capacity.as_mut());
            canonicalize_quantities(status.allocatable.as_mut());
        }
    }
}

/// Rewrites every well-formed quantity of a resource list in Kubernetes' canonical form (`0.5`
/// becomes `500m`, `1.5Gi` becomes `1536Mi`), as Kubernetes stores them; malformed ones are left
/// for validation to report.
pub(crate) fn canonicalize_quantities(
    list: Option<
        &mut std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
) {
    for quantity in list.into_iter().flat_map(|list| list.values_mut()) {
        canonicalize_quantity(quantity);
    }
}

/// Rewrites one well-formed quantity in canonical form.
pub(crate) fn canonicalize_quantity(
    quantity: &mut k8s_openapi::apimachinery::pkg::api::resource::Quantity,
) {
    if let Ok(parsed) = crate::quantity::Quantity::parse(&quantity.0) {
        quantity.0 = parsed.to_string();
    }
}

impl SetDefaults for Secret {
    /// `type: Opaque`, and `stringData` (write-only) merged into `data`, as Kubernetes stores it.
    fn set_defaults(&mut self) {
        self.type_.get_or_insert_with(|| "Opaque".to_owned());
        if let Some(string_data) = self.string_data.take() {
            let data = self.data.get_or_insert_with(Default::default);
            for (key, value) in string_data {
                data.insert(key, ByteString(value.into_bytes()));
            }
        }
    }
}

/// The preemption policy of a PriorityClass (and of a pod) that sets none.
pub const DEFAULT_PREEMPTION_POLICY: &str = "PreemptLowerPriority";

impl SetDefaults for PriorityClass {
    /// `preemptionPolicy: PreemptLowerPriority`.
    fn set_defaults(&mut self) {
        self.preemption_policy
            .get_or_insert_with(|| DEFAULT_PREEMPTION_POLICY.to_owned());
    }
}

/// A role reference without an API group refers to an RBAC role (Kubernetes'
/// `SetDefaults_RoleBinding` and `SetDefaults_ClusterRoleBinding`).
fn default_role_ref(role_ref: &mut RoleRef) {
    if role_ref.api_group.is_empty() {
        RBAC_GROUP.clone_into(&mut role_ref.api_group);
    }
}

/// A subject without an API group gets its kind's: `rbac.authorization.k8s.io` for `User` and
/// `Group`, the core group (`""`, left out) for `ServiceAccount`; other kinds are left for
/// validation to report (Kubernetes' `SetDefaults_Subject`).
fn default_subjects(subjects: Option<&mut Vec<Subject>>) {
    for subject in subjects.into_iter().flatten() {
        if subject.api_group.as_deref().is_some_and(|g| !g.is_empty()) {
            continue;
        }
        if matches!(subject.kind.as_str(), "User" | "Group") {
            subject.api_group = Some(RBAC_GROUP.to_owned());
        }
    }
}

impl SetDefaults for RoleBinding {
    /// `roleRef.apiGroup: rbac.authorization.k8s.io`, and each subject's `apiGroup`:
    /// `rbac.authorization.k8s.io` for `User` and `Group` subjects, none for `ServiceAccount`s.
    fn set_defaults(&mut self) {
        default_role_ref(&mut self.role_ref);
        default_subjects(self.subjects.as_mut());
    }
}

impl SetDefaults for ClusterRoleBinding {
    /// `roleRef.apiGroup: rbac.authorization.k8s.io`, and each subject's `apiGroup`:
    /// `rbac.authorization.k8s.io` for `User` and `Group` subjects, none for `ServiceAccount`s.
    fn set_defaults(&mut self) {
        default_role_ref(&mut self.role_ref);
        default_subjects(self.subjects.as_mut());
    }
}

/// Kinds Kubernetes sets no defaults on.
macro_rules! no_defaults {
    ($($ty:ty),*) => {
        $(
            impl SetDefaults for $ty {
                /// Kubernetes has no defaults for this kind.
                fn set_defaults(&mut self) {}
            }
        )*
    };
}

no_defaults!(ConfigMap, ServiceAccount, Event, Lease, Role, ClusterRole);

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    #[test]
    fn namespaces_are_labelled_with_their_name() {
        let mut namespace = Namespace {
            metadata: ObjectMeta {
                name: Some("shop".into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        namespace.set_defaults();
        assert_eq!(
            namespace.metadata.labels.unwrap()[NAMESPACE_NAME_LABEL],
            "shop"
        );
        assert_eq!(namespace.status.unwrap().phase.as_deref(), Some("Active"));
    }

    #[test]
    fn priority_classes_preempt_lower_priorities_by_default() {
        let mut class = PriorityClass::default();
        class.set_defaults();
        assert_eq!(
            class.preemption_policy.as_deref(),
            Some("PreemptLowerPriority")
        );
        let mut never = PriorityClass {
            preemption_policy: Some("Never".into()),
            ..PriorityClass::default()
        };
        never.set_defaults();
        assert_eq!(never.preemption_policy.as_deref(), Some("Never"));
    }

    fn subject(kind: &str, api_group: Option<&str>) -> Subject {
        Subject {
            kind: kind.to_owned(),
            name: "n".to_owned(),
            api_group: api_group.map(str::to_owned),
            ..Subject::default()
        }
    }

    #[test]
    fn binding_subjects_get_their_kinds_api_group() {
        let subjects = vec![
            subject("User", None),
            subject("Group", Some("")),
            subject("ServiceAccount", None),
            subject("ServiceAccount", Some("")),
            subject("User", Some("example.com")),
            subject("Robot", None),
        ];
        let groups = |subjects: &[Subject]| -> Vec<Option<String>> {
            subjects.iter().map(|s| s.api_group.clone()).collect()
        };
        let expected = vec![
            Some(RBAC_GROUP.to_owned()),
            Some(RBAC_GROUP.to_owned()),
            None,
            Some(String::new()),
            Some("example.com".to_owned()),
            None,
        ];

        let mut binding = RoleBinding {
            subjects: Some(subjects.clone()),
            ..RoleBinding::default()
        };
        binding.set_defaults();
        assert_eq!(
            groups(binding.subjects.as_deref().unwrap_or_default()),
            expected
        );
        assert_eq!(binding.role_ref.api_group, RBAC_GROUP);

        let mut cluster_binding = ClusterRoleBinding {
            role_ref: RoleRef {
                api_group: "example.com".to_owned(),
                kind: "ClusterRole".to_owned(),
                name: "view".to_owned(),
            },
            subjects: Some(subjects),
            ..ClusterRoleBinding::default()
        };
        cluster_binding.set_defaults();
        assert_eq!(
            groups(cluster_binding.subjects.as_deref().unwrap_or_default()),
            expected
        );
        assert_eq!(cluster_binding.role_ref.api_group, "example.com");
    }

    #[test]
    fn roles_have_no_defaults() {
        let mut role = Role::default();
        role.set_defaults();
        assert_eq!(role, Role::default());
        let mut cluster_role = ClusterRole::default();
        cluster_role.set_defaults();
        assert_eq!(cluster_role, ClusterRole::default());
    }

    #[test]
    fn secret_string_data_is_merged() {
        let mut secret = Secret {
            string_data: Some(BTreeMap::from([("user".to_owned(), "admin".to_owned())])),
            ..Secret::default()
        };
        secret.set_defaults();
        assert_eq!(secret.type_.as_deref(), Some("Opaque"));
        assert!(secret.string_data.is_none());
        assert_eq!(secret.data.unwrap()["user"].0, b"admin");
    }
}
