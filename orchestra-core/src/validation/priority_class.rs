//! Checks of PriorityClasses (Kubernetes' `ValidatePriorityClass` and
//! `ValidatePriorityClassUpdate`).
//!
//! A PriorityClass's name is a DNS-1123 subdomain. Names that start with `system-` are reserved:
//! only the two classes Kubernetes defines itself ([`SYSTEM_PRIORITY_CLASSES`]) may use the prefix,
//! with exactly their values. Any other class may not be valued above
//! [`HIGHEST_USER_DEFINABLE_PRIORITY`]. On update, the value and the preemption policy may not
//! change.

use k8s_openapi::api::scheduling::v1::PriorityClass;

use super::Validate;
use super::field::{Error, ErrorList, Path};
use super::meta::{NameRule, validate_metadata};

/// The prefix of the names reserved for Kubernetes' own priority classes.
pub const SYSTEM_PRIORITY_CLASS_PREFIX: &str = "system-";

/// The highest value a user-defined PriorityClass may have (Kubernetes'
/// `HighestUserDefinablePriority`); higher values are kept for the system classes.
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i32 = 1_000_000_000;

/// The value of `system-cluster-critical` (Kubernetes' `SystemCriticalPriority`).
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2 * HIGHEST_USER_DEFINABLE_PRIORITY;

/// The PriorityClass for pods a node cannot do without.
pub const SYSTEM_NODE_CRITICAL: &str = "system-node-critical";

/// The PriorityClass for pods a cluster cannot do without.
pub const SYSTEM_CLUSTER_CRITICAL: &str = "system-cluster-critical";

/// Kubernetes' built-in priority classes, as `(name, value)`: neither is a global default, and
/// both preempt lower priorities. They exist in every cluster, stored or not.
pub const SYSTEM_PRIORITY_CLASSES: [(&str, i32); 2] = [
    (SYSTEM_NODE_CRITICAL, SYSTEM_CRITICAL_PRIORITY + 1000),
    (SYSTEM_CLUSTER_CRITICAL, SYSTEM_CRITICAL_PRIORITY),
];

/// The preemption policies a PriorityClass (or a pod) may have.
pub const PREEMPTION_POLICIES: [&str; 2] = ["PreemptLowerPriority", "Never"];

/// Why a class named with the `system-` prefix is not one of the system classes, if it is not
/// (Kubernetes' `IsKnownSystemPriorityClass`).
fn unknown_system_class(name: &str, value: i32, global_default: bool) -> Option<String> {
    match SYSTEM_PRIORITY_CLASSES
        .iter()
        .find(|(known, _)| *known == name)
    {
        None => Some(format!("{name} is not a known system priority class")),
        Some((_, known)) if *known != value => {
            Some(format!("value of {name} PriorityClass must be {known}"))
        }
        Some(_) if global_default => Some(format!(
            "globalDefault of {name} PriorityClass must be false"
        )),
        Some(_) => None,
    }
}

impl Validate for PriorityClass {
    fn validate(&self) -> ErrorList {
        let mut errors = validate_metadata(self, NameRule::DnsSubdomain);
        let name = self.metadata.name.as_deref().unwrap_or_default();
        if name.starts_with(SYSTEM_PRIORITY_CLASS_PREFIX) {
            let global_default = self.global_default.unwrap_or(false);
            if let Some(why) = unknown_system_class(name, self.value, global_default) {
                errors.push(Error::forbidden(
                    &Path::new("metadata").child("name"),
                    &format!(
                        "priority class names with '{SYSTEM_PRIORITY_CLASS_PREFIX}' prefix are reserved for system use only. error: {why}"
                    ),
                ));
            }
        } else if self.value > HIGHEST_USER_DEFINABLE_PRIORITY {
            errors.push(Error::forbidden(
                &Path::new("value"),
                &format!(
                    "maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"
                ),
            ));
        }
        if let Some(policy) = &self.preemption_policy
            && !PREEMPTION_POLICIES.contains(&policy.as_str())
        {
            errors.push(Error::not_supported(
                &Path::new("preemptionPolicy"),
                policy.as_str(),
                &PREEMPTION_POLICIES,
            ));
        }
        errors
    }
}

/// The checks of an update of a PriorityClass beyond those of a create (Kubernetes'
/// `ValidatePriorityClassUpdate`): the value and the preemption policy may not change. Both
/// objects are expected defaulted.
pub fn validate_priority_class_update(new: &PriorityClass, old: &PriorityClass) -> ErrorList {
    let mut errors = ErrorList::new();
    if new.value != old.value {
        errors.push(Error::forbidden(
            &Path::new("value"),
            "may not be changed in an update.",
        ));
    }
    if new.preemption_policy != old.preemption_policy {
        errors.push(Error::invalid(
            &Path::new("preemptionPolicy"),
            new.preemption_policy.clone().unwrap_or_default(),
            "field is immutable",
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::defaulting::SetDefaults;
    use crate::validation::field::ErrorType;

    fn class(name: &str, value: i32) -> PriorityClass {
        let mut class = PriorityClass {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            value,
            ..PriorityClass::default()
        };
        class.set_defaults();
        class
    }

    fn problems(errors: &ErrorList) -> Vec<(String, ErrorType, String)> {
        errors
            .iter()
            .map(|e| (e.field.to_string(), e.kind, e.detail.clone()))
            .collect()
    }

    #[test]
    fn user_classes_up_to_the_highest_user_definable_priority_are_valid() {
        assert!(
            class("high", HIGHEST_USER_DEFINABLE_PRIORITY)
                .validate()
                .is_empty()
        );
        assert!(class("low", -5).validate().is_empty());
        let mut never = class("batch", 10);
        never.preemption_policy = Some("Never".into());
        never.global_default = Some(true);
        never.description = Some("batch jobs".into());
        assert!(never.validate().is_empty());
    }

    #[test]
    fn user_classes_above_the_highest_user_definable_priority_are_forbidden() {
        let errors = class("too-high", HIGHEST_USER_DEFINABLE_PRIORITY + 1).validate();
        assert_eq!(
            problems(&errors),
            [(
                "value".to_owned(),
                ErrorType::Forbidden,
                "maximum allowed value of a user defined priority is 1000000000".to_owned()
            )]
        );
    }

    #[test]
    fn the_system_classes_are_valid_with_their_own_values_only() {
        assert!(
            class(SYSTEM_NODE_CRITICAL, 2_000_001_000)
                .validate()
                .is_empty()
        );
        assert!(
            class(SYSTEM_CLUSTER_CRITICAL, 2_000_000_000)
                .validate()
                .is_empty()
        );
        let errors = class(SYSTEM_CLUSTER_CRITICAL, 5).validate();
        assert_eq!(
            problems(&errors),
            [(
                "metadata.name".to_owned(),
                ErrorType::Forbidden,
                "priority class names with 'system-' prefix are reserved for system use only. error: value of system-cluster-critical PriorityClass must be 2000000000".to_owned()
            )]
        );
        let mut default = class(SYSTEM_NODE_CRITICAL, 2_000_001_000);
        default.global_default = Some(true);
        assert_eq!(default.validate().len(), 1);
    }

    #[test]
    fn other_system_prefixed_names_are_reserved() {
        let errors = class("system-mine", 10).validate();
        assert_eq!(
            problems(&errors),
            [(
                "metadata.name".to_owned(),
                ErrorType::Forbidden,
                "priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class".to_owned()
            )]
        );
        assert!(errors[0].to_string().contains(
            "priority class names with 'system-' prefix are reserved for system use only"
        ));
    }

    #[test]
    fn names_are_dns_subdomains() {
        let errors = class("Not_A_Name", 1).validate();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field.to_string(), "metadata.name");
        assert_eq!(errors[0].kind, ErrorType::Invalid);
        assert!(class("a.b-c", 1).validate().is_empty());
    }

    #[test]
    fn cluster_scoped_classes_have_no_namespace() {
        let mut namespaced = class("high", 1);
        namespaced.metadata.namespace = Some("default".into());
        let errors = namespaced.validate();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field.to_string(), "metadata.namespace");
    }

    #[test]
    fn preemption_policies_are_a_closed_set() {
        let mut odd = class("odd", 1);
        odd.preemption_policy = Some("Sometimes".into());
        let errors = odd.validate();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field.to_string(), "preemptionPolicy");
        assert_eq!(errors[0].kind, ErrorType::NotSupported);
        assert_eq!(
            errors[0].detail,
            r#"supported values: "PreemptLowerPriority", "Never""#
        );
    }

    #[test]
    fn value_and_preemption_policy_are_immutable() {
        let old = class("high", 10);
        let mut described = old.clone();
        described.description = Some("changed".into());
        described.global_default = Some(true);
        assert!(validate_priority_class_update(&described, &old).is_empty());

        let mut revalued = old.clone();
        revalued.value = 11;
        revalued.preemption_policy = Some("Never".into());
        let errors = validate_priority_class_update(&revalued, &old);
        assert_eq!(
            problems(&errors),
            [
                (
                    "value".to_owned(),
                    ErrorType::Forbidden,
                    "may not be changed in an update.".to_owned()
                ),
                (
                    "preemptionPolicy".to_owned(),
                    ErrorType::Invalid,
                    "field is immutable".to_owned()
                ),
            ]
        );
    }
}
