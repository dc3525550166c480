//! Checks of the RBAC kinds of `rbac.authorization.k8s.io/v1` (Kubernetes'
//! `pkg/apis/rbac/validation`: `ValidateRole`, `ValidateClusterRole`, `ValidateRoleBinding`,
//! `ValidateClusterRoleBinding` and the binding updates).
//!
//! - Names of roles and bindings, and the role a binding names, are path segment names
//!   ([`path_segment_name`]): anything but `.` and `..` without `/` or `%`, so that the
//!   `system:`-prefixed names of Kubernetes' bootstrap policy are valid.
//! - Each rule has verbs. A rule with `nonResourceURLs` may only appear in a ClusterRole and may
//!   not name API groups, resources or resource names; every other rule needs API groups and
//!   resources.
//! - A ClusterRole's `aggregationRule` holds at least one valid label selector.
//! - A binding refers to a `Role` or `ClusterRole` (a ClusterRoleBinding to a `ClusterRole`
//!   only) of the [`RBAC_GROUP`] by name; its subjects are `ServiceAccount`s (named by a DNS
//!   subdomain, in the core group, and with a namespace in a ClusterRoleBinding; a RoleBinding's
//!   defaults to its own), or `User`s and `Group`s of the [`RBAC_GROUP`].
//! - A binding's `roleRef` never changes ([`validate_role_binding_update`],
//!   [`validate_cluster_role_binding_update`]): a binding to another role is a new binding.

use k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef,
    Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use super::Validate;
use super::field::{Error, ErrorList, Path};
use super::meta::{NameRule, validate_label_selector, validate_object_meta};
use super::names;
use crate::rbac::RBAC_GROUP;
use crate::selector::Selector;

/// The subject kinds a binding may name.
pub const SUBJECT_KINDS: [&str; 3] = ["ServiceAccount", "User", "Group"];

/// Names a path segment may not be (Kubernetes' `NameMayNotBe`).
const NAME_MAY_NOT_BE: [&str; 2] = [".", ".."];

/// Strings a path segment name may not contain (Kubernetes' `NameMayNotContain`).
const NAME_MAY_NOT_CONTAIN: [&str; 2] = ["/", "%"];

/// Problems with `name` as a path segment (Kubernetes' `IsValidPathSegmentName`, the name rule
/// of the RBAC kinds): it may not be `.` or `..`, nor contain `/` or `%`.
///
/// # Examples
///
/// ```
/// use orchestra_core::validation::rbac::path_segment_name;
///
/// assert!(path_segment_name("system:controller:deployment-controller").is_empty());
/// assert_eq!(path_segment_name(".."), ["may not be '..'"]);
/// assert_eq!(path_segment_name("a/b%c"), ["may not contain '/'", "may not contain '%'"]);
/// ```
pub fn path_segment_name(name: &str) -> Vec<String> {
    if let Some(illegal) = NAME_MAY_NOT_BE.iter().find(|illegal| **illegal == name) {
        return vec![format!("may not be '{illegal}'")];
    }
    NAME_MAY_NOT_CONTAIN
        .iter()
        .filter(|illegal| name.contains(**illegal))
        .map(|illegal| format!("may not contain '{illegal}'"))
        .collect()
}

/// Checks the metadata of an RBAC object, at `metadata`: its name (or `generateName`) is a path
/// segment name, the rest is checked as on every kind.
fn validate_rbac_metadata(meta: &ObjectMeta, namespaced: bool) -> ErrorList {
    let path = Path::new("metadata");
    // The generic checks see a stand-in for each name given (the rule they know is not the
    // RBAC one); the names themselves are checked here, first, as Kubernetes orders them.
    let stand_in = |name: &Option<String>| {
        name.as_ref()
            .filter(|name| !name.is_empty())
            .map(|_| "n".to_owned())
    };
    let masked = ObjectMeta {
        name: stand_in(&meta.name),
        generate_name: stand_in(&meta.generate_name),
        ..meta.clone()
    };
    let mut errors = ErrorList::new();
    for (field, value) in [("generateName", &meta.generate_name), ("name", &meta.name)] {
        let value = value.as_deref().unwrap_or_default();
        if value.is_empty() {
            continue;
        }
        for message in path_segment_name(value) {
            errors.push(Error::invalid(&path.child(field), value, &message));
        }
    }
    errors.extend(validate_object_meta(
        &masked,
        namespaced,
        NameRule::DnsSubdomain,
        &path,
    ));
    errors
}

/// Checks one rule of a Role (`namespaced`) or ClusterRole at `path` (Kubernetes'
/// `ValidatePolicyRule`).
fn validate_policy_rule(rule: &PolicyRule, namespaced: bool, path: &Path) -> ErrorList {
    let mut errors = ErrorList::new();
    if rule.verbs.is_empty() {
        errors.push(Error::required(
            &path.child("verbs"),
            "verbs must contain at least one value",
        ));
    }
    let non_empty = |list: &Option<Vec<String>>| list.as_ref().is_some_and(|l| !l.is_empty());
    if let Some(urls) = rule
        .non_resource_urls
        .as_ref()
        .filter(|urls| !urls.is_empty())
    {
        let urls_path = path.child("nonResourceURLs");
        if namespaced {
            errors.push(Error::invalid(
                &urls_path,
                urls.clone(),
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if non_empty(&rule.api_groups)
            || non_empty(&rule.resources)
            || non_empty(&rule.resource_names)
        {
            errors.push(Error::invalid(
                &urls_path,
                urls.clone(),
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        return errors;
    }
    if !non_empty(&rule.api_groups) {
        errors.push(Error::required(
            &path.child("apiGroups"),
            "resource rules must supply at least one api group",
        ));
    }
    if !non_empty(&rule.resources) {
        errors.push(Error::required(
            &path.child("resources"),
            "resource rules must supply at least one resource",
        ));
    }
    errors
}

fn validate_rules(rules: Option<&Vec<PolicyRule>>, namespaced: bool) -> ErrorList {
    let path = Path::new("rules");
    rules
        .into_iter()
        .flatten()
        .enumerate()
        .flat_map(|(i, rule)| validate_policy_rule(rule, namespaced, &path.index(i)))
        .collect()
}

/// Checks a ClusterRole's aggregation rule: at least one selector, each a valid label selector.
fn validate_aggregation_rule(rule: &AggregationRule) -> ErrorList {
    let mut errors = ErrorList::new();
    let path = Path::new("aggregationRule").child("clusterRoleSelectors");
    let selectors = rule.cluster_role_selectors.as_deref().unwrap_or_default();
    if selectors.is_empty() {
        errors.push(Error::required(
            &path,
            "at least one clusterRoleSelector required if aggregationRule is non-nil",
        ));
    }
    for (i, selector) in selectors.iter().enumerate() {
        let selector_path = path.index(i);
        errors.extend(validate_label_selector(selector, &selector_path));
        if Selector::from_label_selector(Some(selector)).is_err() {
            errors.push(Error::invalid(
                &selector_path,
                Value::Null,
                "invalid label selector.",
            ));
        }
    }
    errors
}

impl Validate for Role {
    fn validate(&self) -> ErrorList {
        let mut errors = validate_rbac_metadata(&self.metadata, true);
        errors.extend(validate_rules(self.rules.as_ref(), true));
        errors
    }
}

impl Validate for ClusterRole {
    fn validate(&self) -> ErrorList {
        let mut errors = validate_rbac_metadata(&self.metadata, false);
        errors.extend(validate_rules(self.rules.as_ref(), false));
        if let Some(rule) = &self.aggregation_rule {
            errors.extend(validate_aggregation_rule(rule));
        }
        errors
    }
}

/// Checks a binding's `roleRef`: the RBAC group, one of `kinds`, and a path segment name.
fn validate_role_ref(role_ref: &RoleRef, kinds: &[&str]) -> ErrorList {
    let mut errors = ErrorList::new();
    let path = Path::new("roleRef");
    if role_ref.api_group != RBAC_GROUP {
        errors.push(Error::not_supported(
            &path.child("apiGroup"),
            role_ref.api_group.as_str(),
            &[RBAC_GROUP],
        ));
    }
    if !kinds.contains(&role_ref.kind.as_str()) {
        errors.push(Error::not_supported(
            &path.child("kind"),
            role_ref.kind.as_str(),
            kinds,
        ));
    }
    let name_path = path.child("name");
    if role_ref.name.is_empty() {
        errors.push(Error::required(&name_path, ""));
    } else {
        for message in path_segment_name(&role_ref.name) {
            errors.push(Error::invalid(&name_path, role_ref.name.as_str(), &message));
        }
    }
    errors
}

/// Checks one subject of a RoleBinding (`namespaced`) or ClusterRoleBinding at `path`
/// (Kubernetes' `ValidateRoleBindingSubject`).
fn validate_subject(subject: &Subject, namespaced: bool, path: &Path) -> ErrorList {
    let mut errors = ErrorList::new();
    let name_path = path.child("name");
    if subject.name.is_empty() {
        errors.push(Error::required(&name_path, ""));
    }
    let api_group = subject.api_group.as_deref().unwrap_or_default();
    match subject.kind.as_str() {
        "ServiceAccount" => {
            if !subject.name.is_empty() {
                for message in names::dns1123_subdomain(&subject.name) {
                    errors.push(Error::invalid(&name_path, subject.name.as_str(), &message));
                }
            }
            if !api_group.is_empty() {
                errors.push(Error::not_supported(
                    &path.child("apiGroup"),
                    api_group,
                    &[""],
                ));
            }
            if !namespaced && subject.namespace.as_deref().unwrap_or_default().is_empty() {
                errors.push(Error::required(&path.child("namespace"), ""));
            }
        }
        "User" | "Group" => {
            if api_group != RBAC_GROUP {
                errors.push(Error::not_supported(
                    &path.child("apiGroup"),
                    api_group,
                    &[RBAC_GROUP],
                ));
            }
        }
        other => errors.push(Error::not_supported(
            &path.child("kind"),
            other,
            &SUBJECT_KINDS,
        )),
    }
    errors
}

fn validate_subjects(subjects: Option<&Vec<Subject>>, namespaced: bool) -> ErrorList {
    let path = Path::new("subjects");
    subjects
        .into_iter()
        .flatten()
        .enumerate()
        .flat_map(|(i, subject)| validate_subject(subject, namespaced, &path.index(i)))
        .collect()
}

impl Validate for RoleBinding {
    fn validate(&self) -> ErrorList {
        let mut errors = validate_rbac_metadata(&self.metadata, true);
        errors.extend(validate_role_ref(&self.role_ref, &["Role", "ClusterRole"]));
        errors.extend(validate_subjects(self.subjects.as_ref(), true));
        errors
    }
}

impl Validate for ClusterRoleBinding {
    fn validate(&self) -> ErrorList {
        let mut errors = validate_rbac_metadata(&self.metadata, false);
        errors.extend(validate_role_ref(&self.role_ref, &["ClusterRole"]));
        errors.extend(validate_subjects(self.subjects.as_ref(), false));
        errors
    }
}

/// `roleRef` may not change in an update.
fn validate_role_ref_update(new: &RoleRef, old: &RoleRef) -> ErrorList {
    let mut errors = ErrorList::new();
    if new != old {
        errors.push(Error::invalid(
            &Path::new("roleRef"),
            serde_json::to_value(new).unwrap_or(Value::Null),
            "cannot change roleRef",
        ));
    }
    errors
}

/// The checks of an update of a RoleBinding beyond those of a create (Kubernetes'
/// `ValidateRoleBindingUpdate`): `roleRef` may not change. Both objects are expected defaulted.
pub fn validate_role_binding_update(new: &RoleBinding, old: &RoleBinding) -> ErrorList {
    validate_role_ref_update(&new.role_ref, &old.role_ref)
}

/// The checks of an update of a ClusterRoleBinding beyond those of a create (Kubernetes'
/// `ValidateClusterRoleBindingUpdate`): `roleRef` may not change. Both objects are expected
/// defaulted.
pub fn validate_cluster_role_binding_update(
    new: &ClusterRoleBinding,
    old: &ClusterRoleBinding,
) -> ErrorList {
    validate_role_ref_update(&new.role_ref, &old.role_ref)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

    use super::*;
    use crate::defaulting::SetDefaults;
    use crate::validation::field::ErrorType;

    fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: namespace.map(str::to_owned),
            ..ObjectMeta::default()
        }
    }

    fn strings(values: &[&str]) -> Option<Vec<String>> {
        Some(values.iter().map(|v| (*v).to_owned()).collect())
    }

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
        PolicyRule {
            verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
            api_groups: strings(groups),
            resources: strings(resources),
            ..PolicyRule::default()
        }
    }

    fn url_rule(verbs: &[&str], urls: &[&str]) -> PolicyRule {
        PolicyRule {
            verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
            non_resource_urls: strings(urls),
            ..PolicyRule::default()
        }
    }

    fn role(name: &str, rules: Vec<PolicyRule>) -> Role {
        Role {
            metadata: meta(name, Some("default")),
            rules: Some(rules),
        }
    }

    fn cluster_role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
        ClusterRole {
            metadata: meta(name, None),
            rules: Some(rules),
            ..ClusterRole::default()
        }
    }

    fn subject(kind: &str, name: &str, namespace: Option<&str>) -> Subject {
        Subject {
            kind: kind.to_owned(),
            name: name.to_owned(),
            namespace: namespace.map(str::to_owned),
            ..Subject::default()
        }
    }

    fn role_ref(kind: &str, name: &str) -> RoleRef {
        RoleRef {
            api_group: RBAC_GROUP.to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
        }
    }

    fn binding(role_ref: RoleRef, subjects: Vec<Subject>) -> RoleBinding {
        let mut binding = RoleBinding {
            metadata: meta("readers", Some("default")),
            role_ref,
            subjects: Some(subjects),
        };
        binding.set_defaults();
        binding
    }

    fn cluster_binding(role_ref: RoleRef, subjects: Vec<Subject>) -> ClusterRoleBinding {
        let mut binding = ClusterRoleBinding {
            metadata: meta("readers", None),
            role_ref,
            subjects: Some(subjects),
        };
        binding.set_defaults();
        binding
    }

    fn problems(errors: &ErrorList) -> Vec<(String, ErrorType, String)> {
        errors
            .iter()
            .map(|e| (e.field.to_string(), e.kind, e.detail.clone()))
            .collect()
    }

    fn fields(errors: &ErrorList) -> Vec<String> {
        errors.iter().map(|e| e.field.to_string()).collect()
    }

    #[test]
    fn path_segment_names_refuse_dots_slashes_and_percents() {
        assert!(path_segment_name("system:node-proxier").is_empty());
        assert!(path_segment_name("UPPER_case.name").is_empty());
        assert_eq!(path_segment_name("."), ["may not be '.'"]);
        assert_eq!(path_segment_name(".."), ["may not be '..'"]);
        assert_eq!(path_segment_name("a/b"), ["may not contain '/'"]);
        assert_eq!(
            path_segment_name("a%/b"),
            ["may not contain '/'", "may not contain '%'"]
        );
    }

    #[test]
    fn valid_roles_pass() {
        let reader = role(
            "pod-reader",
            vec![rule(
                &["get", "list", "watch"],
                &[""],
                &["pods", "pods/log"],
            )],
        );
        assert_eq!(problems(&reader.validate()), []);
        let admin = cluster_role(
            "system:admin",
            vec![
                rule(&["*"], &["*"], &["*"]),
                url_rule(&["get"], &["/healthz", "/apis/*"]),
            ],
        );
        assert_eq!(problems(&admin.validate()), []);
        // A role without rules is valid (an aggregated ClusterRole starts that way).
        let empty = Role {
            metadata: meta("empty", Some("default")),
            rules: None,
        };
        assert_eq!(problems(&empty.validate()), []);
    }

    #[test]
    fn role_names_are_path_segments() {
        let errors = role("a/b", vec![]).validate();
        assert_eq!(
            problems(&errors),
            [(
                "metadata.name".to_owned(),
                ErrorType::Invalid,
                "may not contain '/'".to_owned()
            )]
        );
        let errors = cluster_role("..", vec![]).validate();
        assert_eq!(fields(&errors), ["metadata.name"]);
        let mut generated = cluster_role("", vec![]);
        generated.metadata.name = None;
        generated.metadata.generate_name = Some("system:%".to_owned());
        assert_eq!(fields(&generated.validate()), ["metadata.generateName"]);
        generated.metadata.generate_name = None;
        assert_eq!(
            problems(&generated.validate()),
            [(
                "metadata.name".to_owned(),
                ErrorType::Required,
                "name or generateName is required".to_owned()
            )]
        );
    }

    #[test]
    fn role_metadata_gets_the_usual_checks() {
        let mut namespaced = cluster_role("view", vec![]);
        namespaced.metadata.namespace = Some("default".into());
        namespaced.metadata.labels = Some(BTreeMap::from([("-bad".to_owned(), "x".to_owned())]));
        assert_eq!(
            fields(&namespaced.validate()),
            ["metadata.namespace", "metadata.labels"]
        );
        let mut bad_namespace = role("view", vec![]);
        bad_namespace.metadata.namespace = Some("Not_A_Label".into());
        assert_eq!(fields(&bad_namespace.validate()), ["metadata.namespace"]);
    }

    #[test]
    fn rules_need_verbs_groups_and_resources() {
        let errors = role("r", vec![rule(&[], &[], &[])]).validate();
        assert_eq!(
            problems(&errors),
            [
                (
                    "rules[0].verbs".to_owned(),
                    ErrorType::Required,
                    "verbs must contain at least one value".to_owned()
                ),
                (
                    "rules[0].apiGroups".to_owned(),
                    ErrorType::Required,
                    "resource rules must supply at least one api group".to_owned()
                ),
                (
                    "rules[0].resources".to_owned(),
                    ErrorType::Required,
                    "resource rules must supply at least one resource".to_owned()
                ),
            ]
        );
        let errors = cluster_role(
            "c",
            vec![
                rule(&["get"], &[""], &["pods"]),
                rule(&["get"], &["apps"], &[]),
            ],
        )
        .validate();
        assert_eq!(fields(&errors), ["rules[1].resources"]);
    }

    #[test]
    fn non_resource_urls_are_for_cluster_roles_only() {
        let errors = role("r", vec![url_rule(&["get"], &["/healthz"])]).validate();
        assert_eq!(
            problems(&errors),
            [(
                "rules[0].nonResourceURLs".to_owned(),
                ErrorType::Invalid,
                "namespaced rules cannot apply to non-resource URLs".to_owned()
            )]
        );
        let mut mixed = url_rule(&["get"], &["/healthz"]);
        mixed.resources = strings(&["pods"]);
        let errors = cluster_role("c", vec![mixed.clone()]).validate();
        assert_eq!(
            problems(&errors),
            [(
                "rules[0].nonResourceURLs".to_owned(),
                ErrorType::Invalid,
                "rules cannot apply to both regular resources and non-resource URLs".to_owned()
            )]
        );
        assert_eq!(
            fields(&role("r", vec![mixed]).validate()),
            ["rules[0].nonResourceURLs", "rules[0].nonResourceURLs"]
        );
        let mut named = url_rule(&[], &["/metrics"]);
        named.resource_names = strings(&["x"]);
        assert_eq!(
            fields(&cluster_role("c", vec![named]).validate()),
            ["rules[0].verbs", "rules[0].nonResourceURLs"]
        );
    }

    #[test]
    fn aggregation_rules_hold_valid_selectors() {
        let selector = |key: &str, operator: &str, values: &[&str]| LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.to_owned(),
                operator: operator.to_owned(),
                values: strings(values).filter(|v| !v.is_empty()),
            }]),
            ..LabelSelector::default()
        };
        let mut aggregated = cluster_role("admin", vec![]);
        aggregated.aggregation_rule = Some(AggregationRule {
            cluster_role_selectors: Some(vec![LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "rbac.authorization.k8s.io/aggregate-to-admin".to_owned(),
                    "true".to_owned(),
                )])),
                ..LabelSelector::default()
            }]),
        });
        assert_eq!(problems(&aggregated.validate()), []);

        aggregated.aggregation_rule = Some(AggregationRule::default());
        assert_eq!(
            problems(&aggregated.validate()),
            [(
                "aggregationRule.clusterRoleSelectors".to_owned(),
                ErrorType::Required,
                "at least one clusterRoleSelector required if aggregationRule is non-nil"
                    .to_owned()
            )]
        );

        aggregated.aggregation_rule = Some(AggregationRule {
            cluster_role_selectors: Some(vec![
                selector("tier", "Exists", &[]),
                selector("tier", "Near", &["a"]),
                selector("tier", "In", &[]),
            ]),
        });
        assert_eq!(
            fields(&aggregated.validate()),
            [
                "aggregationRule.clusterRoleSelectors[1].matchExpressions[0].operator",
                "aggregationRule.clusterRoleSelectors[1]",
                "aggregationRule.clusterRoleSelectors[2].matchExpressions[0].values",
                "aggregationRule.clusterRoleSelectors[2]",
            ]
        );
    }

    #[test]
    fn valid_bindings_pass() {
        let subjects = vec![
            subject("User", "alice", None),
            subject("Group", "system:authenticated", None),
            subject("ServiceAccount", "default", Some("kube-system")),
        ];
        let role_binding = binding(role_ref("Role", "pod-reader"), subjects.clone());
        assert_eq!(problems(&role_binding.validate()), []);
        let role_binding = binding(
            role_ref("ClusterRole", "system:view"),
            vec![subject("ServiceAccount", "builder", None)],
        );
        assert_eq!(problems(&role_binding.validate()), []);
        let cluster_role_binding =
            cluster_binding(role_ref("ClusterRole", "cluster-admin"), subjects);
        assert_eq!(problems(&cluster_role_binding.validate()), []);
        // A binding without subjects binds nobody, and is valid.
        let nobody = cluster_binding(role_ref("ClusterRole", "view"), vec![]);
        assert_eq!(problems(&nobody.validate()), []);
    }

    #[test]
    fn role_refs_name_an_rbac_role() {
        let mut wrong = binding(role_ref("Pod", ""), vec![]);
        wrong.role_ref.api_group = "example.com".into();
        assert_eq!(
            problems(&wrong.validate()),
            [
                (
                    "roleRef.apiGroup".to_owned(),
                    ErrorType::NotSupported,
                    "supported values: \"rbac.authorization.k8s.io\"".to_owned()
                ),
                (
                    "roleRef.kind".to_owned(),
                    ErrorType::NotSupported,
                    "supported values: \"Role\", \"ClusterRole\"".to_owned()
                ),
                (
                    "roleRef.name".to_owned(),
                    ErrorType::Required,
                    String::new()
                ),
            ]
        );
        let errors = cluster_binding(role_ref("Role", "view"), vec![]).validate();
        assert_eq!(
            problems(&errors),
            [(
                "roleRef.kind".to_owned(),
                ErrorType::NotSupported,
                "supported values: \"ClusterRole\"".to_owned()
            )]
        );
        let errors = binding(role_ref("Role", "a/b"), vec![]).validate();
        assert_eq!(
            problems(&errors),
            [(
                "roleRef.name".to_owned(),
                ErrorType::Invalid,
                "may not contain '/'".to_owned()
            )]
        );
        // An empty roleRef.apiGroup is defaulted before validation.
        let mut defaulted = binding(role_ref("Role", "r"), vec![]);
        defaulted.role_ref.api_group = String::new();
        defaulted.set_defaults();
        assert_eq!(problems(&defaulted.validate()), []);
    }

    #[test]
    fn binding_names_are_path_segments() {
        let mut named = cluster_binding(role_ref("ClusterRole", "view"), vec![]);
        named.metadata.name = Some("system:public-info-viewer".into());
        assert_eq!(problems(&named.validate()), []);
        named.metadata.name = Some("100%".into());
        assert_eq!(fields(&named.validate()), ["metadata.name"]);
        let mut namespaced = binding(role_ref("Role", "r"), vec![]);
        namespaced.metadata.name = Some(".".into());
        assert_eq!(fields(&namespaced.validate()), ["metadata.name"]);
    }

    #[test]
    fn subjects_are_checked_by_kind() {
        let mut foreign_user = subject("User", "alice", None);
        foreign_user.api_group = Some("example.com".into());
        let mut grouped_account = subject("ServiceAccount", "builder", Some("ci"));
        grouped_account.api_group = Some(RBAC_GROUP.into());
        let subjects = vec![
            subject("Robot", "r2", None),
            subject("User", "", None),
            foreign_user,
            grouped_account,
            subject("ServiceAccount", "Not_A_Name", Some("ci")),
            subject("ServiceAccount", "", None),
        ];
        let errors = binding(role_ref("Role", "r"), subjects.clone()).validate();
        assert_eq!(
            problems(&errors),
            [
                (
                    "subjects[0].kind".to_owned(),
                    ErrorType::NotSupported,
                    "supported values: \"ServiceAccount\", \"User\", \"Group\"".to_owned()
                ),
                (
                    "subjects[1].name".to_owned(),
                    ErrorType::Required,
                    String::new()
                ),
                (
                    "subjects[2].apiGroup".to_owned(),
                    ErrorType::NotSupported,
                    "supported values: \"rbac.authorization.k8s.io\"".to_owned()
                ),
                (
                    "subjects[3].apiGroup".to_owned(),
                    ErrorType::NotSupported,
                    "supported values: \"\"".to_owned()
                ),
                (
                    "subjects[4].name".to_owned(),
                    ErrorType::Invalid,
                    names::dns1123_subdomain("Not_A_Name")
                        .first()
                        .cloned()
                        .unwrap_or_default()
                ),
                (
                    "subjects[5].name".to_owned(),
                    ErrorType::Required,
                    String::new()
                ),
            ]
        );
        // In a ClusterRoleBinding, a ServiceAccount subject also needs its namespace.
        let errors = cluster_binding(role_ref("ClusterRole", "view"), subjects).validate();
        assert_eq!(
            fields(&errors),
            [
                "subjects[0].kind",
                "subjects[1].name",
                "subjects[2].apiGroup",
                "subjects[3].apiGroup",
                "subjects[4].name",
                "subjects[5].name",
                "subjects[5].namespace",
            ]
        );
    }

    #[test]
    fn role_refs_cannot_change() {
        let old = binding(role_ref("Role", "reader"), vec![]);
        let mut new = old.clone();
        new.subjects = Some(vec![subject("User", "bob", None)]);
        new.set_defaults();
        assert_eq!(problems(&validate_role_binding_update(&new, &old)), []);
        new.role_ref.name = "writer".into();
        let errors = validate_role_binding_update(&new, &old);
        assert_eq!(
            problems(&errors),
            [(
                "roleRef".to_owned(),
                ErrorType::Invalid,
                "cannot change roleRef".to_owned()
            )]
        );
        assert_eq!(
            errors.first().and_then(|e| e.bad_value.clone()),
            Some(serde_json::json!({
                "apiGroup": RBAC_GROUP, "kind": "Role", "name": "writer",
            }))
        );

        let old = cluster_binding(role_ref("ClusterRole", "view"), vec![]);
        let mut new = old.clone();
        assert_eq!(
            problems(&validate_cluster_role_binding_update(&new, &old)),
            []
        );
        new.role_ref.kind = "Role".into();
        assert_eq!(
            fields(&validate_cluster_role_binding_update(&new, &old)),
            ["roleRef"]
        );
    }
}
