//! Checks of what every object has: its metadata (name, namespace, labels, annotations, owners,
//! finalizers), and label selectors as they appear in specs.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};

use super::field::{Error, ErrorList, Path};
use super::names;
use crate::resource::Resource;

/// Most that all of an object's annotations (keys and values) may take, in bytes.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Finalizers that need no domain prefix.
pub const STANDARD_FINALIZERS: [&str; 3] = ["kubernetes", "orphan", "foregroundDeletion"];

/// Which syntax a kind's object names follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// An RFC 1123 subdomain (most kinds).
    DnsSubdomain,
    /// An RFC 1123 label (Namespaces).
    DnsLabel,
    /// An RFC 1035 label (Services).
    Dns1035Label,
}

impl NameRule {
    /// Problems with `name` under this rule; with `prefix`, `name` is a `generateName` prefix,
    /// which may end in a dash.
    pub fn check(self, name: &str, prefix: bool) -> Vec<String> {
        let masked;
        let name = if prefix && name.len() > 1 && name.ends_with('-') {
            masked = format!("{}a", &name[..name.len() - 1]);
            masked.as_str()
        } else {
            name
        };
        match self {
            NameRule::DnsSubdomain => names::dns1123_subdomain(name),
            NameRule::DnsLabel => names::dns1123_label(name),
            NameRule::Dns1035Label => names::dns1035_label(name),
        }
    }
}

/// Checks the metadata of an object of a static kind, at `metadata`, with the kind's scope.
pub fn validate_metadata<K: Resource<DynamicType = ()>>(object: &K, rule: NameRule) -> ErrorList {
    validate_object_meta(
        object.meta(),
        K::namespaced(&()),
        rule,
        &Path::new("metadata"),
    )
}

/// Checks an object's metadata: `name` (or `generateName`) by `rule`, `namespace` (a DNS label on
/// namespaced kinds, forbidden on cluster-scoped ones), labels, annotations, owner references and
/// finalizers.
pub fn validate_object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    rule: NameRule,
    path: &Path,
) -> ErrorList {
    let mut errors = ErrorList::new();
    let name = meta.name.as_deref().unwrap_or_default();
    let generate_name = meta.generate_name.as_deref().unwrap_or_default();
    if !generate_name.is_empty() {
        for message in rule.check(generate_name, true) {
            errors.push(Error::invalid(
                &path.child("generateName"),
                generate_name,
                &message,
            ));
        }
    }
    if name.is_empty() {
        if generate_name.is_empty() {
            errors.push(Error::required(
                &path.child("name"),
                "name or generateName is required",
            ));
        }
    } else {
        for message in rule.check(name, false) {
            errors.push(Error::invalid(&path.child("name"), name, &message));
        }
    }
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    if namespaced {
        if !namespace.is_empty() {
            for message in names::dns1123_label(namespace) {
                errors.push(Error::invalid(
                    &path.child("namespace"),
                    namespace,
                    &message,
                ));
            }
        }
    } else if !namespace.is_empty() {
        errors.push(Error::forbidden(
            &path.child("namespace"),
            "not allowed on this type",
        ));
    }
    if let Some(labels) = &meta.labels {
        errors.extend(validate_labels(labels, &path.child("labels")));
    }
    if let Some(annotations) = &meta.annotations {
        errors.extend(validate_annotations(
            annotations,
            &path.child("annotations"),
        ));
    }
    if let Some(owners) = &meta.owner_references {
        errors.extend(validate_owner_references(
            owners,
            &path.child("ownerReferences"),
        ));
    }
    if let Some(finalizers) = &meta.finalizers {
        errors.extend(validate_finalizers(finalizers, &path.child("finalizers")));
    }
    errors
}

/// Checks a label map: keys are qualified names, values label values (errors at the map's path,
/// as Kubernetes reports them).
pub fn validate_labels(labels: &BTreeMap<String, String>, path: &Path) -> ErrorList {
    let mut errors = ErrorList::new();
    for (key, value) in labels {
        for message in names::qualified_name(key) {
            errors.push(Error::invalid(path, key.as_str(), &message));
        }
        for message in names::label_value(value) {
            errors.push(Error::invalid(path, value.as_str(), &message));
        }
    }
    errors
}

/// Checks an annotation map: keys are qualified names (compared lower-case), and all of it fits in
/// [`TOTAL_ANNOTATION_SIZE_LIMIT`].
pub fn validate_annotations(annotations: &BTreeMap<String, String>, path: &Path) -> ErrorList {
    let mut errors = ErrorList::new();
    let mut total = 0;
    for (key, value) in annotations {
        for message in names::qualified_name(&key.to_ascii_lowercase()) {
            errors.push(Error::invalid(path, key.as_str(), &message));
        }
        total += key.len() + value.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errors.push(Error {
            detail: format!("must have at most {TOTAL_ANNOTATION_SIZE_LIMIT} bytes"),
            ..Error::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT)
        });
    }
    errors
}

/// Checks owner references: each names its owner fully, and at most one is the controller.
pub fn validate_owner_references(owners: &[OwnerReference], path: &Path) -> ErrorList {
    let mut errors = ErrorList::new();
    let mut controllers = Vec::new();
    for (i, owner) in owners.iter().enumerate() {
        let owner_path = path.index(i);
        if owner.api_version.is_empty() {
            errors.push(Error::invalid(
                &owner_path.child("apiVersion"),
                owner.api_version.as_str(),
                "version must not be empty",
            ));
        }
        if owner.kind.is_empty() {
            errors.push(Error::invalid(
                &owner_path.child("kind"),
                owner.kind.as_str(),
                "kind must not be empty",
            ));
        }
        if owner.name.is_empty() {
            errors.push(Error::invalid(
                &owner_path.child("name"),
                owner.name.as_str(),
                "name must not be empty",
            ));
        }
        if owner.uid.is_empty() {
            errors.push(Error::invalid(
                &owner_path.child("uid"),
                owner.uid.as_str(),
                "uid must not be empty",
            ));
        }
        if owner.controller == Some(true) {
            controllers.push(format!("{}/{}", owner.kind, owner.name));
        }
    }
    if controllers.len() > 1 {
        errors.push(Error::invalid(
            path,
            controllers.join(", "),
            "Only one reference can have Controller set to true",
        ));
    }
    errors
}

/// Checks finalizers: qualified names, fully qualified unless standard, `orphan` and
/// `foregroundDeletion` not together.
pub fn validate_finalizers(finalizers: &[String], path: &Path) -> ErrorList {
    let mut errors = ErrorList::new();
    for (i, finalizer) in finalizers.iter().enumerate() {
        let problems = names::qualified_name(finalizer);
        let any = !problems.is_empty();
        for message in problems {
            errors.push(Error::invalid(&path.index(i), finalizer.as_str(), &message));
        }
        if !any && !finalizer.contains('/') && !STANDARD_FINALIZERS.contains(&finalizer.as_str()) {
            errors.push(Error::invalid(
                &path.index(i),
                finalizer.as_str(),
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    let set: BTreeSet<&str> = finalizers.iter().map(String::as_str).collect();
    if set.contains("orphan") && set.contains("foregroundDeletion") {
        errors.push(Error::invalid(
            path,
            finalizers.join(", "),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    errors
}

/// Checks a `LabelSelector` of a spec: operators, keys, values, and values present exactly when
/// the operator needs them.
pub fn validate_label_selector(selector: &LabelSelector, path: &Path) -> ErrorList {
    let mut errors = ErrorList::new();
    for (i, requirement) in selector.match_expressions.iter().flatten().enumerate() {
        let expression_path = path.child("matchExpressions").index(i);
        let values = requirement.values.as_deref().unwrap_or_default();
        match requirement.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errors.push(Error::required(
                        &expression_path.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errors.push(Error::forbidden(
                        &expression_path.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => errors.push(Error::invalid(
                &expression_path.child("operator"),
                other,
                "not a valid selector operator",
            )),
        }
        for message in names::qualified_name(&requirement.key) {
            errors.push(Error::invalid(
                &expression_path.child("key"),
                requirement.key.as_str(),
                &message,
            ));
        }
        for (j, value) in values.iter().enumerate() {
            for message in names::label_value(value) {
                errors.push(Error::invalid(
                    &expression_path.child("values").index(j),
                    value.as_str(),
                    &message,
                ));
            }
        }
    }
    if let Some(labels) = &selector.match_labels {
        errors.extend(validate_labels(labels, &path.child("matchLabels")));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn names_follow_the_rule() {
        let path = Path::new("metadata");
        assert!(
            validate_object_meta(&meta("web.example"), true, NameRule::DnsSubdomain, &path)
                .is_empty()
        );
        let errors = validate_object_meta(&meta("web.example"), true, NameRule::DnsLabel, &path);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field.to_string(), "metadata.name");
        let errors = validate_object_meta(&ObjectMeta::default(), true, NameRule::DnsLabel, &path);
        assert_eq!(
            errors[0].to_string(),
            "metadata.name: Required value: name or generateName is required"
        );
    }

    #[test]
    fn generate_name_may_end_in_a_dash() {
        let object = ObjectMeta {
            generate_name: Some("web-".into()),
            ..ObjectMeta::default()
        };
        assert!(
            validate_object_meta(
                &object,
                true,
                NameRule::DnsSubdomain,
                &Path::new("metadata")
            )
            .is_empty()
        );
    }

    #[test]
    fn cluster_scoped_kinds_have_no_namespace() {
        let object = ObjectMeta {
            namespace: Some("default".into()),
            ..meta("node-1")
        };
        let errors = validate_object_meta(
            &object,
            false,
            NameRule::DnsSubdomain,
            &Path::new("metadata"),
        );
        assert_eq!(errors[0].field.to_string(), "metadata.namespace");
    }

    #[test]
    fn every_bad_label_is_reported() {
        let labels = BTreeMap::from([
            ("-bad".to_owned(), "ok".to_owned()),
            ("ok".to_owned(), "bad value".to_owned()),
        ]);
        let errors = validate_labels(&labels, &Path::new("metadata").child("labels"));
        assert_eq!(errors.len(), 2);
    }

    #[test]
    fn finalizers_must_be_qualified() {
        let path = Path::new("metadata").child("finalizers");
        assert!(
            validate_finalizers(&["kubernetes".into(), "example.com/cleanup".into()], &path)
                .is_empty()
        );
        assert_eq!(validate_finalizers(&["cleanup".into()], &path).len(), 1);
    }
}
