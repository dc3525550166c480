//! Field selectors: [`FieldSelector`], its [`FieldRequirement`]s, and the [`FieldSource`] trait
//! through which each kind offers the fields it can be selected by.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, Pod, ReplicationController, Secret, Service,
    ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::resource::DynamicObject;

/// How a [`FieldRequirement`] compares a field with its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldOperator {
    /// `field=value` (or `field==value`): the field has the value.
    Equals,
    /// `field!=value`: the field has another value.
    NotEquals,
}

impl FieldOperator {
    /// The operator as a selector string writes it: `=` or `!=`.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        }
    }
}

impl fmt::Display for FieldOperator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kind whose objects a [`FieldSelector`] can select: the fields it offers and their values.
///
/// Each kind offers the fields Kubernetes' API server selects it by (its field label conversion
/// functions and `GetAttrs`): every namespaced kind `metadata.name` and `metadata.namespace`,
/// cluster-scoped kinds `metadata.name`, and some kinds more:
///
/// | Kind | Fields besides the metadata |
/// |---|---|
/// | `Pod` | `spec.nodeName`, `spec.restartPolicy`, `spec.schedulerName`, `spec.serviceAccountName`, `spec.hostNetwork`, `status.phase`, `status.podIP`, `status.nominatedNodeName` |
/// | `Node` | `spec.unschedulable` |
/// | `Namespace` | `status.phase` |
/// | `Service` | `spec.clusterIP`, `spec.type` |
/// | `Secret` | `type` |
/// | `Event` | `involvedObject.{kind,namespace,name,uid,apiVersion,resourceVersion,fieldPath}`, `reason`, `reportingComponent`, `source`, `type` |
/// | `ReplicationController`, `ReplicaSet` | `status.replicas` |
///
/// Endpoints, ServiceAccount, ConfigMap, Deployment, Lease, PriorityClass, Role, ClusterRole,
/// RoleBinding, ClusterRoleBinding and [`DynamicObject`] offer the metadata fields only. An unset field reads as Kubernetes' zero value: the empty string, `0`,
/// or `false`.
///
/// # Examples
///
/// ```
/// use orchestra_core::k8s::api::core::v1::{Pod, PodSpec};
/// use orchestra_core::selector::FieldSource;
///
/// let pod = Pod {
///     spec: Some(PodSpec { node_name: Some("node-1".into()), ..PodSpec::default() }),
///     ..Pod::default()
/// };
/// assert_eq!(pod.field("spec.nodeName").as_deref(), Some("node-1"));
/// assert_eq!(pod.field("status.phase").as_deref(), Some(""));
/// assert_eq!(pod.field("spec.foo"), None);
/// assert!(Pod::supported_fields().contains(&"status.phase"));
/// ```
pub trait FieldSource {
    /// The fields this kind can be selected by.
    fn supported_fields() -> &'static [&'static str]
    where
        Self: Sized;

    /// The value of the field `name`, or `None` when the kind does not offer it.
    fn field(&self, name: &str) -> Option<Cow<'_, str>>;
}

/// One condition of a [`FieldSelector`]: a field, an operator and a value.
///
/// # Examples
///
/// ```
/// use orchestra_core::selector::FieldRequirement;
///
/// let requirement = FieldRequirement::equals("metadata.name", "a,b");
/// assert_eq!(requirement.to_string(), r"metadata.name=a\,b");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FieldRequirement {
    field: String,
    operator: FieldOperator,
    value: String,
}

impl FieldRequirement {
    /// A requirement that `field` compare to `value` by `operator`.
    ///
    /// The value may hold anything (it is escaped in the string form); the field name is not
    /// escaped, as in Kubernetes, so a name with `=` or `,`, or ending in `!`, does not read
    /// back from the string form (no field Kubernetes offers has such a name).
    pub fn new(
        field: impl Into<String>,
        operator: FieldOperator,
        value: impl Into<String>,
    ) -> FieldRequirement {
        FieldRequirement {
            field: field.into(),
            operator,
            value: value.into(),
        }
    }

    /// `field=value`.
    pub fn equals(field: impl Into<String>, value: impl Into<String>) -> FieldRequirement {
        FieldRequirement::new(field, FieldOperator::Equals, value)
    }

    /// `field!=value`.
    pub fn not_equals(field: impl Into<String>, value: impl Into<String>) -> FieldRequirement {
        FieldRequirement::new(field, FieldOperator::NotEquals, value)
    }

    /// The field name.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The operator.
    pub fn operator(&self) -> FieldOperator {
        self.operator
    }

    /// The value, unescaped.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether `object`'s field compares as required. A field the object does not offer reads
    /// as the empty string, as in Kubernetes' `fields.Set`; check a selector with
    /// [`FieldSelector::validate_for`] to reject such fields.
    pub fn matches<F: FieldSource + ?Sized>(&self, object: &F) -> bool {
        let actual = object.field(&self.field);
        let equal = actual.as_deref().unwrap_or_default() == self.value;
        match self.operator {
            FieldOperator::Equals => equal,
            FieldOperator::NotEquals => !equal,
        }
    }

    /// Whether Kubernetes' parser drops this requirement: an empty field compared to an empty
    /// value (the string `=`).
    fn is_blank(&self) -> bool {
        self.field.is_empty() && self.value.is_empty()
    }
}

/// `field=value` or `field!=value`, the value escaped with [`escape_field_value`].
impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}{}",
            self.field,
            self.operator,
            escape_field_value(&self.value)
        )
    }
}

/// A field selector: `field=value` and `field!=value` requirements that an object must all meet.
///
/// Parse one from Kubernetes' string syntax ([`FieldSelector::parse`], [`FromStr`]) or build one
/// from [`FieldRequirement`]s. [`Display`](fmt::Display) writes Kubernetes' canonical form (the
/// terms sorted, `==` written `=`, values escaped), which parses back to an equal selector; serde
/// reads and writes the string form. Objects offer their fields through [`FieldSource`].
///
/// # Examples
///
/// ```
/// use orchestra_core::k8s::api::core::v1::{Pod, PodStatus};
/// use orchestra_core::selector::FieldSelector;
///
/// let selector: FieldSelector = "status.phase!=Failed,metadata.name==web".parse()?;
/// assert_eq!(selector.to_string(), "metadata.name=web,status.phase!=Failed");
///
/// let mut pod = Pod {
///     status: Some(PodStatus { phase: Some("Running".into()), ..PodStatus::default() }),
///     ..Pod::default()
/// };
/// pod.metadata.name = Some("web".into());
/// assert!(selector.matches(&pod));
/// assert!(selector.validate_for::<Pod>().is_ok());
/// # Ok::<(), orchestra_core::selector::ParseFieldSelectorError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches every object: no requirements (`""`).
    pub fn everything() -> FieldSelector {
        FieldSelector::default()
    }

    /// A selector of all `requirements`, in canonical order. Requirements of an empty field
    /// and an empty value are dropped, as Kubernetes' parser drops them.
    pub fn new(requirements: impl IntoIterator<Item = FieldRequirement>) -> FieldSelector {
        let mut requirements: Vec<FieldRequirement> = requirements
            .into_iter()
            .filter(|requirement| !requirement.is_blank())
            .collect();
        requirements.sort_by_cached_key(ToString::to_string);
        FieldSelector { requirements }
    }

    /// Parses Kubernetes' field selector syntax, as `fields.ParseSelector` does.
    ///
    /// The selector is a comma-separated list of terms `field=value`, `field==value` or
    /// `field!=value`, split at the first operator of each term; empty terms are skipped. In
    /// values, `\,`, `\=` and `\\` stand for `,`, `=` and `\`; an unescaped `,` ends the term,
    /// and an unescaped `=` is an error. Spaces are part of fields and values.
    ///
    /// # Errors
    ///
    /// A term without an operator, an unknown escape sequence, or an unescaped `=` in a value,
    /// with its byte offset. Like Kubernetes, the parser sorts the terms first and reports the
    /// first bad term in that order.
    ///
    /// # Examples
    ///
    /// ```
    /// use orchestra_core::selector::FieldSelector;
    ///
    /// let selector = FieldSelector::parse(r"metadata.name=a\,b,spec.nodeName!=")?;
    /// assert_eq!(selector.requirements()[0].value(), "a,b");
    /// assert_eq!(selector.requirements()[1].value(), "");
    /// assert!(FieldSelector::parse("metadata.name").is_err());
    /// # Ok::<(), orchestra_core::selector::ParseFieldSelectorError>(())
    /// ```
    pub fn parse(input: &str) -> Result<FieldSelector, ParseFieldSelectorError> {
        let mut terms = split_terms(input);
        terms.sort_by(|a, b| a.1.cmp(b.1));
        let mut requirements = Vec::with_capacity(terms.len());
        for (position, term) in terms {
            if term.is_empty() {
                continue;
            }
            let Some((field, operator, value_offset)) = split_term(term) else {
                return Err(ParseFieldSelectorError::NoOperator {
                    position,
                    term: term.to_owned(),
                });
            };
            let raw_value = term.get(value_offset..).unwrap_or_default();
            let value = unescape_value(raw_value, position + value_offset)?;
            requirements.push(FieldRequirement {
                field: field.to_owned(),
                operator,
                value,
            });
        }
        Ok(FieldSelector::new(requirements))
    }

    /// This selector with one more requirement, kept in canonical order.
    #[must_use]
    pub fn and(mut self, requirement: FieldRequirement) -> FieldSelector {
        self.requirements.push(requirement);
        FieldSelector::new(self.requirements)
    }

    /// Whether this selector has no requirements and so matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, in canonical order.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Whether `object` meets every requirement. A field the object does not offer reads as
    /// the empty string, as in Kubernetes; [`FieldSelector::validate_for`] rejects such fields
    /// beforehand, as the API server does.
    pub fn matches<F: FieldSource + ?Sized>(&self, object: &F) -> bool {
        self.requirements
            .iter()
            .all(|requirement| requirement.matches(object))
    }

    /// The value this selector requires the field to have, if it has an `=` requirement on it.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }

    /// Checks that the kind `K` offers every field of this selector, as the API server checks
    /// a list or watch request.
    ///
    /// # Errors
    ///
    /// The first field `K` does not offer.
    ///
    /// # Examples
    ///
    /// ```
    /// use orchestra_core::k8s::api::core::v1::{Node, Pod};
    /// use orchestra_core::selector::FieldSelector;
    ///
    /// let selector = FieldSelector::parse("spec.nodeName=node-1")?;
    /// assert!(selector.validate_for::<Pod>().is_ok());
    /// let error = selector.validate_for::<Node>().unwrap_err();
    /// assert_eq!(error.to_string(), "field label not supported: spec.nodeName");
    /// # Ok::<(), orchestra_core::selector::ParseFieldSelectorError>(())
    /// ```
    pub fn validate_for<K: FieldSource>(&self) -> Result<(), UnsupportedFieldError> {
        let supported = K::supported_fields();
        match self
            .requirements
            .iter()
            .find(|requirement| !supported.contains(&requirement.field.as_str()))
        {
            Some(requirement) => Err(UnsupportedFieldError {
                field: requirement.field.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// Kubernetes' canonical form: the terms joined by `,`.
impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, requirement) in self.requirements.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

impl FromStr for FieldSelector {
    type Err = ParseFieldSelectorError;

    fn from_str(input: &str) -> Result<FieldSelector, ParseFieldSelectorError> {
        FieldSelector::parse(input)
    }
}

impl FromIterator<FieldRequirement> for FieldSelector {
    fn from_iter<I: IntoIterator<Item = FieldRequirement>>(requirements: I) -> FieldSelector {
        FieldSelector::new(requirements)
    }
}

impl Serialize for FieldSelector {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FieldSelector {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<FieldSelector, D::Error> {
        let text = String::deserialize(deserializer)?;
        FieldSelector::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Escapes a field selector value as Kubernetes' `fields.EscapeValue`: `\` as `\\`, `,` as `\,`
/// and `=` as `\=`.
///
/// # Examples
///
/// ```
/// use orchestra_core::selector::escape_field_value;
///
/// assert_eq!(escape_field_value(r"a=b,c\d"), r"a\=b\,c\\d");
/// ```
pub fn escape_field_value(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', ',', '=']) {
        return Cow::Borrowed(value);
    }
    let mut escaped = String::with_capacity(value.len() + 4);
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    Cow::Owned(escaped)
}

/// The comma-separated terms of a field selector with their byte offsets; escaped commas stay in
/// their terms, backslash included.
fn split_terms(input: &str) -> Vec<(usize, &str)> {
    if input.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (index, c) in input.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push((start, input.get(start..index).unwrap_or_default()));
            start = index + 1;
        }
    }
    terms.push((start, input.get(start..).unwrap_or_default()));
    terms
}

/// Splits a term at its first operator (`!=` before `==` before `=` at each position): the
/// field, the operator and the byte offset of the (still escaped) value.
fn split_term(term: &str) -> Option<(&str, FieldOperator, usize)> {
    for (index, _) in term.char_indices() {
        let rest = term.get(index..).unwrap_or_default();
        let found = if rest.starts_with("!=") {
            Some((FieldOperator::NotEquals, 2))
        } else if rest.starts_with("==") {
            Some((FieldOperator::Equals, 2))
        } else if rest.starts_with('=') {
            Some((FieldOperator::Equals, 1))
        } else {
            None
        };
        if let Some((operator, length)) = found {
            return Some((term.get(..index)?, operator, index + length));
        }
    }
    None
}

/// Undoes [`escape_field_value`]; `position` is the byte offset of `value` in the selector.
fn unescape_value(value: &str, position: usize) -> Result<String, ParseFieldSelectorError> {
    let mut unescaped = String::with_capacity(value.len());
    let mut escape_at = None;
    for (index, c) in value.char_indices() {
        if let Some(start) = escape_at.take() {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(ParseFieldSelectorError::InvalidEscape {
                    position: position + start,
                    sequence: format!("\\{c}"),
                });
            }
            unescaped.push(c);
        } else if c == '\\' {
            escape_at = Some(index);
        } else if matches!(c, ',' | '=') {
            return Err(ParseFieldSelectorError::UnescapedCharacter {
                position: position + index,
                character: c,
            });
        } else {
            unescaped.push(c);
        }
    }
    if let Some(start) = escape_at {
        return Err(ParseFieldSelectorError::InvalidEscape {
            position: position + start,
            sequence: "\\".to_owned(),
        });
    }
    Ok(unescaped)
}

/// A string is not a field selector.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseFieldSelectorError {
    /// A term with no `=`, `==` or `!=`.
    #[error("invalid field selector at byte {position}: can't understand '{term}'")]
    NoOperator {
        /// Byte offset of the term.
        position: usize,
        /// The term.
        term: String,
    },
    /// A backslash not followed by `\`, `,` or `=`.
    #[error("invalid field selector at byte {position}: invalid escape sequence: {sequence}")]
    InvalidEscape {
        /// Byte offset of the backslash.
        position: usize,
        /// The sequence (a lone `\` at the end of a value).
        sequence: String,
    },
    /// An `=` (or, in a value, a `,`) that must be escaped.
    #[error(
        "invalid field selector at byte {position}: unescaped character in value: {character:?}"
    )]
    UnescapedCharacter {
        /// Byte offset of the character.
        position: usize,
        /// The character.
        character: char,
    },
}

impl ParseFieldSelectorError {
    /// Byte offset in the input of the offending term or character.
    pub fn position(&self) -> usize {
        match self {
            ParseFieldSelectorError::NoOperator { position, .. }
            | ParseFieldSelectorError::InvalidEscape { position, .. }
            | ParseFieldSelectorError::UnescapedCharacter { position, .. } => *position,
        }
    }
}

/// A field selector names a field the kind does not offer (see [`FieldSource`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("field label not supported: {field}")]
#[non_exhaustive]
pub struct UnsupportedFieldError {
    /// The field.
    pub field: String,
}

const NAMESPACED_METADATA: &[&str] = &["metadata.name", "metadata.namespace"];

fn text(value: Option<&str>) -> Cow<'_, str> {
    Cow::Borrowed(value.unwrap_or_default())
}

fn flag(value: Option<bool>) -> Cow<'static, str> {
    Cow::Borrowed(if value.unwrap_or_default() {
        "true"
    } else {
        "false"
    })
}

/// `metadata.name`, and `metadata.namespace` for namespaced kinds.
fn metadata_field<'a>(meta: &'a ObjectMeta, name: &str, namespaced: bool) -> Option<Cow<'a, str>> {
    match name {
        "metadata.name" => Some(text(meta.name.as_deref())),
        "metadata.namespace" if namespaced => Some(text(meta.namespace.as_deref())),
        _ => None,
    }
}

macro_rules! metadata_only {
    ($($kind:ty),* $(,)?) => {
        $(
            impl FieldSource for $kind {
                fn supported_fields() -> &'static [&'static str] {
                    NAMESPACED_METADATA
                }

                fn field(&self, name: &str) -> Option<Cow<'_, str>> {
                    metadata_field(&self.metadata, name, true)
                }
            }
        )*
    };
}

metadata_only!(
    Endpoints,
    ServiceAccount,
    ConfigMap,
    Deployment,
    Lease,
    Role,
    RoleBinding,
    DynamicObject
);

impl FieldSource for Pod {
    fn supported_fields() -> &'static [&'static str] {
        &[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ]
    }

    fn field(&self, name: &str) -> Option<Cow<'_, str>> {
        let spec = self.spec.as_ref();
        let status = self.status.as_ref();
        Some(match name {
            "spec.nodeName" => text(spec.and_then(|s| s.node_name.as_deref())),
            "spec.restartPolicy" => text(spec.and_then(|s| s.restart_policy.as_deref())),
            "spec.schedulerName" => text(spec.and_then(|s| s.scheduler_name.as_deref())),
            "spec.serviceAccountName" => text(spec.and_then(|s| s.service_account_name.as_deref())),
            "spec.hostNetwork" => flag(spec.and_then(|s| s.host_network)),
            "status.phase" => text(status.and_then(|s| s.phase.as_deref())),
            // Kubernetes reads the first of `podIPs`, which holds `podIP` when only that is set.
            "status.podIP" => text(status.and_then(|s| {
                s.pod_ips
                    .iter()
                    .flatten()
                    .next()
                    .map(|ip| ip.ip.as_str())
                    .or(s.pod_ip.as_deref())
            })),
            "status.nominatedNodeName" => {
                text(status.and_then(|s| s.nominated_node_name.as_deref()))
            }
            _ => return metadata_field(&self.metadata, name, true),
        })
    }
}

impl FieldSource for Node {
    fn supported_fields() -> &'static [&'static str] {
        &["metadata.name", "spec.unschedulable"]
    }

    fn field(&self, name: &str) -> Option<Cow<'_, str>> {
        match name {
            "spec.unschedulable" => Some(flag(self.spec.as_ref().and_then(|s| s.unschedulable))),
            _ => metadata_field(&self.metadata, name, false),
        }
    }
}

/// Cluster-scoped kinds that offer `metadata.name` only.
macro_rules! cluster_metadata_only {
    ($($kind:ty),* $(,)?) => {
        $(
            impl FieldSource for $kind {
                fn supported_fields() -> &'static [&'static str] {
                    &["metadata.name"]
                }

                fn field(&self, name: &str) -> Option<Cow<'_, str>> {
                    metadata_field(&self.metadata, name, false)
                }
            }
        )*
    };
}

cluster_metadata_only!(PriorityClass, ClusterRole, ClusterRoleBinding);

impl FieldSource for Namespace {
    fn supported_fields() -> &'static [&'static str] {
        &["metadata.name", "status.phase"]
    }

    fn field(&self, name: &str) -> Option<Cow<'_, str>> {
        match name {
            "status.phase" => Some(text(self.status.as_ref().and_then(|s| s.phase.as_deref()))),
            _ => metadata_field(&self.metadata, name, false),
        }
    }
}

impl FieldSource for Service {
    fn supported_fields() -> &'static [&'static str] {
        &[
            "metadata.name",
            "metadata.namespace",
            "spec.clusterIP",
            "spec.type",
        ]
    }

    fn field(&self, name: &str) -> Option<Cow<'_, str>> {
        let spec = self.spec.as_ref();
        match name {
            "spec.clusterIP" => Some(text(spec.and_then(|s| s.cluster_ip.as_deref()))),
            "spec.type" => Some(text(spec.and_then(|s| s.type_.as_deref()))),
            _ => metadata_field(&self.metadata, name, true),
        }
    }
}

impl FieldSource for Secret {
    fn supported_fields() -> &'static [&'static str] {
        &["metadata.name", "metadata.namespace", "type"]
    }

    fn field(&self, name: &str) -> Option<Cow<'_, str>> {
        match name {
            "type" => Some(text(self.type_.as_deref())),
            _ => metadata_field(&self.metadata, name, true),
        }
    }
}

impl FieldSource for Event {
    fn supported_fields() -> &'static [&'static str] {
        &[
            "metadata.name",
            "metadata.namespace",
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ]
    }

    fn field(&self, name: &str) -> Option<Cow<'_, str>> {
        let involved = &self.involved_object;
        Some(match name {
            "involvedObject.kind" => text(involved.kind.as_deref()),
            "involvedObject.namespace" => text(involved.namespace.as_deref()),
            "involvedObject.name" => text(involved.name.as_deref()),
            "involvedObject.uid" => text(involved.uid.as_deref()),
            "involvedObject.apiVersion" => text(involved.api_version.as_deref()),
            "involvedObject.resourceVersion" => text(involved.resource_version.as_deref()),
            "involvedObject.fieldPath" => text(involved.field_path.as_deref()),
            "reason" => text(self.reason.as_deref()),
            "reportingComponent" => text(self.reporting_component.as_deref()),
            // The source component, or else the reporting controller, as Kubernetes selects.
            "source" => text(
                self.source
                    .as_ref()
                    .and_then(|s| s.component.as_deref())
                    .filter(|component| !component.is_empty())
                    .or(self.reporting_component.as_deref()),
            ),
            "type" => text(self.type_.as_deref()),
            _ => return metadata_field(&self.metadata, name, true),
        })
    }
}

impl FieldSource for ReplicationController {
    fn supported_fields() -> &'static [&'static str] {
        &["metadata.name", "metadata.namespace", "status.replicas"]
    }

    fn field(&self, name: &str) -> Option<Cow<'_, str>> {
        match name {
            "status.replicas" => Some(Cow::Owned(
                self.status.as_ref().map_or(0, |s| s.replicas).to_string(),
            )),
            _ => metadata_field(&self.metadata, name, true),
        }
    }
}

impl FieldSource for ReplicaSet {
    fn supported_fields() -> &'static [&'static str] {
        &["metadata.name", "metadata.namespace", "status.replicas"]
    }

    fn field(&self, name: &str) -> Option<Cow<'_, str>> {
        match name {
            "status.replicas" => Some(Cow::Owned(
                self.status.as_ref().map_or(0, |s| s.replicas).to_string(),
            )),
            _ => metadata_field(&self.metadata, name, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{
        EventSource, NamespaceStatus, NodeSpec, ObjectReference, PodIP, PodSpec, PodStatus,
        ReplicationControllerStatus, ServiceSpec,
    };

    use super::*;
    use crate::resource::ApiResource;

    /// A term and how it splits.
    type SplitCase<'a> = (&'a str, Option<(&'a str, FieldOperator, &'a str)>);
    /// A selector string, a set of fields, and whether they match.
    type MatchCase<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);

    /// A plain map of fields, as Kubernetes' `fields.Set`.
    struct Fields(BTreeMap<String, String>);

    impl FieldSource for Fields {
        fn supported_fields() -> &'static [&'static str] {
            &[]
        }

        fn field(&self, name: &str) -> Option<Cow<'_, str>> {
            self.0.get(name).map(|value| Cow::Borrowed(value.as_str()))
        }
    }

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        Fields(
            pairs
                .iter()
                .map(|&(field, value)| (field.to_owned(), value.to_owned()))
                .collect(),
        )
    }

    fn parse(input: &str) -> FieldSelector {
        match FieldSelector::parse(input) {
            Ok(selector) => selector,
            Err(error) => panic!("{input:?}: {error}"),
        }
    }

    fn terms(input: &str) -> Vec<&str> {
        split_terms(input)
            .into_iter()
            .map(|(_, term)| term)
            .collect()
    }

    // Kubernetes' TestSplitTerms.
    #[test]
    fn splits_terms_like_kubernetes() {
        let cases: &[(&str, &[&str])] = &[
            ("a", &["a"]),
            ("a=avalue", &["a=avalue"]),
            ("a=avalue,b=bvalue", &["a=avalue", "b=bvalue"]),
            (
                "a=avalue,b==bvalue,c!=cvalue",
                &["a=avalue", "b==bvalue", "c!=cvalue"],
            ),
            ("", &[]),
            ("a=a,", &["a=a", ""]),
            (",a=a", &["", "a=a"]),
            (r"k=\,,k2=v2", &[r"k=\,", "k2=v2"]),
            (r"k=\\,k2=v2", &[r"k=\\", "k2=v2"]),
            (r"k=\\\,,k2=v2", &[r"k=\\\,", "k2=v2"]),
            (r"k=\a\b\", &[r"k=\a\b\"]),
            (r"k=\", &[r"k=\"]),
            ("함=수,목=록", &["함=수", "목=록"]),
        ];
        for &(input, expected) in cases {
            assert_eq!(terms(input), expected, "{input:?}");
        }
        assert_eq!(split_terms("함=수,목=록")[1].0, 8);
    }

    // Kubernetes' TestSplitTerm.
    #[test]
    fn splits_a_term_like_kubernetes() {
        let cases: &[SplitCase<'_>] = &[
            ("a=value", Some(("a", FieldOperator::Equals, "value"))),
            ("b==value", Some(("b", FieldOperator::Equals, "value"))),
            ("c!=value", Some(("c", FieldOperator::NotEquals, "value"))),
            ("", None),
            ("a", None),
            (r"k=\,", Some(("k", FieldOperator::Equals, r"\,"))),
            (r"k=\=", Some(("k", FieldOperator::Equals, r"\="))),
            (
                r"k=\\\a\b\=\,\",
                Some(("k", FieldOperator::Equals, r"\\\a\b\=\,\")),
            ),
            ("함=수", Some(("함", FieldOperator::Equals, "수"))),
            ("a!b=c", Some(("a!b", FieldOperator::Equals, "c"))),
            ("=x", Some(("", FieldOperator::Equals, "x"))),
        ];
        for &(term, expected) in cases {
            let split = split_term(term)
                .map(|(field, operator, offset)| (field, operator, &term[offset..]));
            assert_eq!(split, expected, "{term:?}");
        }
    }

    // Kubernetes' TestEscapeValue.
    #[test]
    fn escapes_values_like_kubernetes() {
        let cases = [
            ("", ""),
            ("a", "a"),
            ("=", r"\="),
            (",", r"\,"),
            (r"\", r"\\"),
            (r"\=\,\", r"\\\=\\\,\\"),
        ];
        for (unescaped, escaped) in cases {
            assert_eq!(escape_field_value(unescaped), escaped);
            assert_eq!(unescape_value(escaped, 0).as_deref(), Ok(unescaped));
        }
        for invalid in [r"\", r"\\\", r"\a"] {
            let error = unescape_value(invalid, 0).unwrap_err();
            assert!(
                error.to_string().contains("invalid escape sequence"),
                "{invalid:?}: {error}"
            );
        }
    }

    // Kubernetes' TestSelectorParse.
    #[test]
    fn parses_kubernetes_good_and_bad_strings() {
        for input in ["x=a,y=b,z=c", "", "x!=a,y=b", r"x=a||y\=b", r"x=a\=\=b"] {
            assert_eq!(parse(input).to_string(), input, "{input:?}");
        }
        for input in [
            "x=a||y=b",
            "x==a==b",
            "x=a,b",
            "x in (a)",
            "x in (a,b,c)",
            "x",
        ] {
            assert!(FieldSelector::parse(input).is_err(), "{input:?}");
        }
    }

    #[test]
    fn prints_the_canonical_form() {
        let cases = [
            ("x==a", "x=a"),
            ("b=1,a=2", "a=2,b=1"),
            ("a=x,a!=x", "a!=x,a=x"),
            ("a.b=c,a=c", "a.b=c,a=c"),
            (",,a=1,,", "a=1"),
            ("=", ""),
            ("!=", ""),
            ("=,a=1", "a=1"),
            ("=x", "=x"),
            (" a = b ", " a = b "),
            (r"a=\,\=\\", r"a=\,\=\\"),
        ];
        for (input, canonical) in cases {
            let selector = parse(input);
            assert_eq!(selector.to_string(), canonical, "{input:?}");
            assert_eq!(parse(canonical), selector, "{input:?}");
        }
    }

    #[test]
    fn reports_errors_with_positions() {
        let cases: [(&str, ParseFieldSelectorError); 5] = [
            (
                "a=1,b",
                ParseFieldSelectorError::NoOperator {
                    position: 4,
                    term: "b".into(),
                },
            ),
            (
                "a=1,b=x=y",
                ParseFieldSelectorError::UnescapedCharacter {
                    position: 7,
                    character: '=',
                },
            ),
            (
                r"a=\x",
                ParseFieldSelectorError::InvalidEscape {
                    position: 2,
                    sequence: r"\x".into(),
                },
            ),
            (
                r"a=1\",
                ParseFieldSelectorError::InvalidEscape {
                    position: 3,
                    sequence: r"\".into(),
                },
            ),
            // Terms are sorted before they are read, so `a` is reported before `b=x=y`.
            (
                "b=x=y,a",
                ParseFieldSelectorError::NoOperator {
                    position: 6,
                    term: "a".into(),
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(FieldSelector::parse(input), Err(expected), "{input:?}");
        }
        let error = FieldSelector::parse("a=1,b").unwrap_err();
        assert_eq!(error.position(), 4);
        assert_eq!(
            error.to_string(),
            "invalid field selector at byte 4: can't understand 'b'"
        );
    }

    // Kubernetes' TestSelectorMatches, TestOneTermEqualSelector, TestEverything.
    #[test]
    fn matches_like_kubernetes() {
        let cases: &[MatchCase<'_>] = &[
            ("", &[("x", "y")], true),
            ("x=y", &[("x", "y")], true),
            ("x=y,z=w", &[("x", "y"), ("z", "w")], true),
            ("x!=y,z!=w", &[("x", "z"), ("z", "a")], true),
            ("notin=in", &[("notin", "in")], true),
            ("x=y", &[("x", "z")], false),
            ("x=y,z=w", &[("x", "w"), ("z", "w")], false),
            ("x!=y,z!=w", &[("x", "z"), ("z", "w")], false),
            ("x=", &[], true),
            ("x!=", &[], false),
            ("x!=a", &[], true),
        ];
        for &(input, set, expected) in cases {
            assert_eq!(
                parse(input).matches(&fields(set)),
                expected,
                "{input:?} {set:?}"
            );
        }
        let set = fields(&[("foo", "bar"), ("baz", "blah"), ("complex", r"=value\,\")]);
        assert!(parse("foo=bar").matches(&set));
        assert!(parse("baz=blah").matches(&set));
        assert!(parse("foo=bar,baz=blah").matches(&set));
        assert!(parse(r"foo=bar,baz=blah,complex=\=value\\\,\\").matches(&set));
        assert!(!parse("foo=blah").matches(&set));
        assert!(!parse("baz=bar").matches(&set));
        assert!(!parse("foo=bar,foobar=bar,baz=blah").matches(&set));

        let one = FieldSelector::new([FieldRequirement::equals("x", "y")]);
        assert!(one.matches(&fields(&[("x", "y")])));
        assert!(!one.matches(&fields(&[("x", "z")])));
        assert!(FieldSelector::everything().is_empty());
        assert!(FieldSelector::everything().matches(&fields(&[("x", "y")])));
    }

    // Kubernetes' TestRequiresExactMatch.
    #[test]
    fn requires_exact_matches_like_kubernetes() {
        assert_eq!(
            FieldSelector::everything().requires_exact_match("test"),
            None
        );
        assert_eq!(parse("a=b").requires_exact_match("test"), None);
        assert_eq!(parse("test=b").requires_exact_match("test"), Some("b"));
        assert_eq!(parse("test=").requires_exact_match("test"), Some(""));
        assert_eq!(parse("test!=b").requires_exact_match("test"), None);
        assert_eq!(parse("a=,test=b").requires_exact_match("test"), Some("b"));
    }

    #[test]
    fn builds_selectors() {
        let selector = FieldSelector::everything()
            .and(FieldRequirement::not_equals("status.phase", "Failed"))
            .and(FieldRequirement::equals("metadata.name", "a=b"))
            .and(FieldRequirement::equals("", ""));
        assert_eq!(
            selector.to_string(),
            r"metadata.name=a\=b,status.phase!=Failed"
        );
        assert_eq!(selector.requirements()[0].field(), "metadata.name");
        assert_eq!(selector.requirements()[0].value(), "a=b");
        assert_eq!(
            selector.requirements()[1].operator(),
            FieldOperator::NotEquals
        );
        let collected: FieldSelector = selector.requirements().iter().cloned().collect();
        assert_eq!(collected, selector);
    }

    #[test]
    fn serializes_as_the_string_form() {
        let selector = parse("b==1,a!=2");
        let json = serde_json::to_string(&selector).unwrap();
        assert_eq!(json, r#""a!=2,b=1""#);
        assert_eq!(
            serde_json::from_str::<FieldSelector>(&json).unwrap(),
            selector
        );
        assert!(serde_json::from_str::<FieldSelector>(r#""a""#).is_err());
    }

    fn named<K: crate::resource::Resource>(mut object: K) -> K {
        object.meta_mut().name = Some("n".into());
        object.meta_mut().namespace = Some("ns".into());
        object
    }

    fn check_fields<K: FieldSource>(object: &K) {
        for field in K::supported_fields() {
            assert!(object.field(field).is_some(), "{field}");
        }
        for field in ["spec.foo", "", "metadata.uid", "metadata.labels"] {
            assert_eq!(object.field(field), None, "{field}");
        }
        assert_eq!(object.field("metadata.name").as_deref(), Some("n"));
    }

    #[test]
    fn every_kind_offers_its_fields() {
        check_fields(&named(Pod::default()));
        check_fields(&named(Node::default()));
        check_fields(&named(Namespace::default()));
        check_fields(&named(Service::default()));
        check_fields(&named(Endpoints::default()));
        check_fields(&named(ServiceAccount::default()));
        check_fields(&named(Secret::default()));
        check_fields(&named(ConfigMap::default()));
        check_fields(&named(Event::default()));
        check_fields(&named(ReplicationController::default()));
        check_fields(&named(ReplicaSet::default()));
        check_fields(&named(Deployment::default()));
        check_fields(&named(Lease::default()));
        check_fields(&named(PriorityClass::default()));
        check_fields(&named(Role::default()));
        check_fields(&named(ClusterRole::default()));
        check_fields(&named(RoleBinding::default()));
        check_fields(&named(ClusterRoleBinding::default()));
        let resource = ApiResource::new("example.com", "v1", "CronTab", None, true);
        check_fields(&named(DynamicObject::new("n", &resource)));

        assert_eq!(
            named(Pod::default()).field("metadata.namespace").as_deref(),
            Some("ns")
        );
        // Cluster-scoped kinds have no namespace field, as in Kubernetes.
        assert_eq!(named(Node::default()).field("metadata.namespace"), None);
        assert_eq!(
            named(Namespace::default()).field("metadata.namespace"),
            None
        );
        assert_eq!(
            named(ClusterRole::default()).field("metadata.namespace"),
            None
        );
        assert_eq!(
            named(ClusterRoleBinding::default()).field("metadata.namespace"),
            None
        );
        assert_eq!(
            named(RoleBinding::default())
                .field("metadata.namespace")
                .as_deref(),
            Some("ns")
        );
        assert_eq!(
            named(Role::default())
                .field("metadata.namespace")
                .as_deref(),
            Some("ns")
        );
        let error = parse("metadata.namespace=ns")
            .validate_for::<Node>()
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "field label not supported: metadata.namespace"
        );
    }

    #[test]
    fn reads_pod_fields() {
        let mut pod = Pod {
            spec: Some(PodSpec {
                node_name: Some("node-1".into()),
                restart_policy: Some("Always".into()),
                scheduler_name: Some("default-scheduler".into()),
                service_account_name: Some("default".into()),
                host_network: Some(true),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some("10.0.0.1".into()),
                nominated_node_name: Some("node-2".into()),
                ..PodStatus::default()
            }),
            ..Pod::default()
        };
        let selector = parse(
            "spec.nodeName=node-1,spec.restartPolicy=Always,spec.schedulerName=default-scheduler,\
             spec.serviceAccountName=default,spec.hostNetwork=true,status.phase=Running,\
             status.podIP=10.0.0.1,status.nominatedNodeName=node-2",
        );
        assert_eq!(selector.validate_for::<Pod>(), Ok(()));
        assert!(selector.matches(&pod));
        if let Some(status) = pod.status.as_mut() {
            status.pod_ips = Some(vec![PodIP {
                ip: "10.0.0.2".into(),
            }]);
        }
        assert_eq!(pod.field("status.podIP").as_deref(), Some("10.0.0.2"));

        let empty = Pod::default();
        assert!(parse("spec.nodeName=,status.phase=,spec.hostNetwork=false").matches(&empty));
        assert!(parse("spec.nodeName!=node-1").matches(&empty));
        assert_eq!(
            parse("spec.host=node-1").validate_for::<Pod>(),
            Err(UnsupportedFieldError {
                field: "spec.host".into()
            })
        );
    }

    #[test]
    fn reads_the_fields_of_other_kinds() {
        let node = Node {
            spec: Some(NodeSpec {
                unschedulable: Some(true),
                ..NodeSpec::default()
            }),
            ..Node::default()
        };
        assert_eq!(node.field("spec.unschedulable").as_deref(), Some("true"));
        assert_eq!(
            Node::default().field("spec.unschedulable").as_deref(),
            Some("false")
        );

        let namespace = Namespace {
            status: Some(NamespaceStatus {
                phase: Some("Terminating".into()),
                ..NamespaceStatus::default()
            }),
            ..Namespace::default()
        };
        assert_eq!(
            namespace.field("status.phase").as_deref(),
            Some("Terminating")
        );

        let service = Service {
            spec: Some(ServiceSpec {
                cluster_ip: Some("10.96.0.1".into()),
                type_: Some("ClusterIP".into()),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        };
        assert!(parse("spec.clusterIP=10.96.0.1,spec.type=ClusterIP").matches(&service));

        let secret = Secret {
            type_: Some("Opaque".into()),
            ..Secret::default()
        };
        assert_eq!(secret.field("type").as_deref(), Some("Opaque"));

        let mut event = Event {
            involved_object: ObjectReference {
                kind: Some("Pod".into()),
                name: Some("web".into()),
                uid: Some("u-1".into()),
                ..ObjectReference::default()
            },
            reason: Some("Scheduled".into()),
            reporting_component: Some("scheduler".into()),
            type_: Some("Normal".into()),
            ..Event::default()
        };
        let selector = parse(
            "involvedObject.kind=Pod,involvedObject.name=web,involvedObject.uid=u-1,reason=Scheduled,type=Normal",
        );
        assert_eq!(selector.validate_for::<Event>(), Ok(()));
        assert!(selector.matches(&event));
        // The source falls back to the reporting component.
        assert_eq!(event.field("source").as_deref(), Some("scheduler"));
        event.source = Some(EventSource {
            component: Some("kubelet".into()),
            ..EventSource::default()
        });
        assert_eq!(event.field("source").as_deref(), Some("kubelet"));
        assert_eq!(
            event.field("reportingComponent").as_deref(),
            Some("scheduler")
        );

        let controller = ReplicationController {
            status: Some(ReplicationControllerStatus {
                replicas: 3,
                ..ReplicationControllerStatus::default()
            }),
            ..ReplicationController::default()
        };
        assert!(parse("status.replicas=3").matches(&controller));
        assert_eq!(
            ReplicaSet::default().field("status.replicas").as_deref(),
            Some("0")
        );
    }
}
