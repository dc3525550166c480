//! Custom kinds: resources that users define themselves.
//!
//! A custom kind is written as its `spec` struct with `#[derive(CustomResource)]`; the derive
//! generates the object type around it (`metadata`, `spec` and, when asked for, `status`) and
//! everything a built-in kind has: [`Resource`], serialization with `apiVersion` and `kind`, a JSON
//! schema, defaulting and validation hooks. Register it with a [`Scheme`] and manifests of the kind
//! decode, default and validate like the built-in ones.
//!
//! # Attributes
//!
//! `#[resource(...)]` on the spec struct takes:
//!
//! | attribute | meaning |
//! |---|---|
//! | `group = "stable.example.com"` | API group (required) |
//! | `version = "v1"` | API version (required) |
//! | `kind = "CronTab"` | kind, and the name of the generated type (required) |
//! | `plural = "crontabs"` | plural; Kubernetes' guess from the kind when absent |
//! | `namespaced` | objects live in namespaces (cluster-scoped when absent) |
//! | `status = "CronTabStatus"` | the type of the `status` field; no status when absent |
//! | `derive = "PartialEq"` | an extra derive on the generated type (repeatable; `Clone` and `Debug` are always derived) |
//! | `defaults = "path::to::fn"` | `fn(&mut CronTab)`, run by [`SetDefaults`] |
//! | `validate = "path::to::fn"` | `fn(&CronTab) -> ErrorList`, run by [`Validate`] after the metadata checks |
//!
//! The spec (and status) types need `Serialize`, `Deserialize`, `JsonSchema`, `Clone` and `Debug`.
//!
//! # Examples
//!
//! ```
//! use orchestra_core::CustomResource;
//! use orchestra_core::resource::{Resource, ResourceExt};
//! use orchestra_core::validation::field::{Error, ErrorList, Path};
//! use orchestra_core::validation::Validate;
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//!
//! /// What a CronTab runs, and when.
//! #[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
//! #[resource(group = "stable.example.com", version = "v1", kind = "CronTab", namespaced)]
//! #[resource(derive = "PartialEq", validate = "check_cron_tab")]
//! #[serde(rename_all = "camelCase")]
//! pub struct CronTabSpec {
//!     /// The schedule, in cron syntax.
//!     pub cron_spec: String,
//!     /// The image to run.
//!     pub image: String,
//! }
//!
//! fn check_cron_tab(cron_tab: &CronTab) -> ErrorList {
//!     let mut errors = ErrorList::new();
//!     if cron_tab.spec.cron_spec.split_whitespace().count() != 5 {
//!         let path = Path::new("spec").child("cronSpec");
//!         errors.push(Error::invalid(&path, cron_tab.spec.cron_spec.as_str(), "must have five fields"));
//!     }
//!     errors
//! }
//!
//! let tab = CronTab::new("backup", CronTabSpec { cron_spec: "* * * * *".into(), image: "busybox".into() });
//! assert_eq!(CronTab::api_version(&()), "stable.example.com/v1");
//! assert_eq!(CronTab::plural(&()), "crontabs");
//! assert_eq!(tab.name_any(), "backup");
//! assert!(tab.validate().is_empty());
//!
//! let json = serde_json::to_value(&tab)?;
//! assert_eq!(json["kind"], "CronTab");
//! assert_eq!(serde_json::from_value::<CronTab>(json)?, tab);
//! # Ok::<(), serde_json::Error>(())
//! ```
//!
//! [`Scheme`]: crate::scheme::Scheme
//! [`SetDefaults`]: crate::defaulting::SetDefaults
//! [`Validate`]: crate::validation::Validate

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Resource;
use crate::validation::field::ErrorList;
use crate::validation::meta::{self, NameRule};

/// A custom kind: the part of a `#[derive(CustomResource)]` type that the generic code in this
/// module needs. The derive implements it; there is no need to implement it by hand.
pub trait CustomResource: Resource<DynamicType = ()> + Sized {
    /// The type of the `spec` field.
    type Spec: Serialize + DeserializeOwned + JsonSchema;
    /// The type of the `status` field ([`NoStatus`] when the kind has none).
    type Status: Serialize + DeserializeOwned + JsonSchema;
    /// Whether the kind declares a status (false when [`CustomResource::Status`] is [`NoStatus`]).
    const HAS_STATUS: bool;

    /// Builds an object from its parts.
    fn from_parts(metadata: ObjectMeta, spec: Self::Spec, status: Option<Self::Status>) -> Self;

    /// The object's spec.
    fn spec(&self) -> &Self::Spec;

    /// The object's status, if it has one.
    fn status(&self) -> Option<&Self::Status>;
}

/// The status type of a custom kind declared without one: a `status` field in its manifests is
/// dropped on decoding (and so reported as an unknown field by strict decoding).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoStatus;

impl Serialize for NoStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_unit()
    }
}

impl<'de> Deserialize<'de> for NoStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer).map(|_| NoStatus)
    }
}

impl JsonSchema for NoStatus {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "NoStatus".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schemars::json_schema!({"type": "null"})
    }
}

#[derive(Serialize)]
struct BorrowedRepr<'a, Spec, Status> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: &'a str,
    metadata: &'a ObjectMeta,
    spec: &'a Spec,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a Status>,
}

#[derive(Deserialize)]
struct OwnedRepr<Spec, Status> {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    spec: Spec,
    #[serde(default = "none")]
    status: Option<Status>,
}

fn none<T>() -> Option<T> {
    None
}

/// Serializes a custom object with its `apiVersion` and `kind` (used by the derive).
pub fn serialize<K: CustomResource, S: Serializer>(
    object: &K,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let api_version = K::api_version(&());
    let kind = K::kind(&());
    let status = object.status().filter(|_| K::HAS_STATUS);
    BorrowedRepr {
        api_version: &api_version,
        kind: &kind,
        metadata: object.meta(),
        spec: object.spec(),
        status,
    }
    .serialize(serializer)
}

/// Deserializes a custom object, checking its `apiVersion` and `kind` (used by the derive).
pub fn deserialize<'de, K: CustomResource, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<K, D::Error> {
    let repr = OwnedRepr::<K::Spec, K::Status>::deserialize(deserializer)?;
    let api_version = K::api_version(&());
    if repr.api_version != api_version {
        return Err(D::Error::invalid_value(
            serde::de::Unexpected::Str(&repr.api_version),
            &api_version.as_ref(),
        ));
    }
    let kind = K::kind(&());
    if repr.kind != kind {
        return Err(D::Error::invalid_value(
            serde::de::Unexpected::Str(&repr.kind),
            &kind.as_ref(),
        ));
    }
    Ok(K::from_parts(repr.metadata, repr.spec, repr.status))
}

/// The JSON schema of a custom object (used by the derive).
pub fn json_schema<K: CustomResource>(generator: &mut SchemaGenerator) -> Schema {
    let metadata = generator.subschema_for::<ObjectMeta>();
    let spec = generator.subschema_for::<K::Spec>();
    let mut properties = serde_json::Map::new();
    properties.insert(
        "apiVersion".into(),
        serde_json::json!({"type": "string", "enum": [K::api_version(&())]}),
    );
    properties.insert(
        "kind".into(),
        serde_json::json!({"type": "string", "enum": [K::kind(&())]}),
    );
    properties.insert("metadata".into(), metadata.to_value());
    properties.insert("spec".into(), spec.to_value());
    if K::HAS_STATUS {
        let status = generator.subschema_for::<K::Status>();
        properties.insert("status".into(), status.to_value());
    }
    schemars::json_schema!({
        "type": "object",
        "required": ["apiVersion", "kind", "spec"],
        "properties": properties,
    })
}

/// The checks every custom object gets: its metadata, as Kubernetes checks a custom resource's
/// (name a DNS subdomain, labels, annotations, namespace set only on namespaced kinds).
pub fn validate_metadata<K: CustomResource>(object: &K) -> ErrorList {
    meta::validate_metadata(object, NameRule::DnsSubdomain)
}
