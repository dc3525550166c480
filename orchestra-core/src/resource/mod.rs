//! Resources: the kinds of object the control plane stores, and what every one of them has.
//!
//! Every kind of object (Pod, Deployment, a user's own `CronTab`) is a [`Resource`]: it knows its
//! API group, version, kind, plural and scope, and it has Kubernetes' [`ObjectMeta`]. The trait
//! serves three families of types through its associated [`Resource::DynamicType`]:
//!
//! - the **built-in kinds** ([`builtin`]): the k8s-openapi types, whose type information is static
//!   (`DynamicType = ()`);
//! - **custom kinds** that users define with `#[derive(CustomResource)]` ([`custom`]), also static;
//! - [`DynamicObject`], for kinds known only at run time, whose type information is an
//!   [`ApiResource`] value carried beside the object.
//!
//! [`ResourceExt`] adds the accessors every object has (name, namespace, labels, ...), and
//! [`ApiResource`] is the erased, run-time description of a kind that discovery, the store's key
//! layout and the manifest decoder use.
//!
//! # Examples
//!
//! ```
//! use orchestra_core::resource::{ApiResource, Resource, ResourceExt};
//! use orchestra_core::k8s::api::apps::v1::Deployment;
//!
//! assert_eq!(Deployment::api_version(&()), "apps/v1");
//! assert_eq!(Deployment::plural(&()), "deployments");
//!
//! let mut deployment = Deployment::default();
//! deployment.meta_mut().name = Some("web".into());
//! assert_eq!(deployment.name_any(), "web");
//!
//! let resource = ApiResource::of::<Deployment>();
//! assert!(resource.namespaced);
//! ```

pub mod builtin;
pub mod custom;
mod dynamic;
pub mod taints;

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::{Deserialize, Serialize};

pub use dynamic::{DynamicObject, ParseDynamicObjectError};

/// A kind of object that the control plane stores: its type information and its metadata.
///
/// The type information (group, version, kind, plural, scope) comes from the type itself when
/// [`Resource::DynamicType`] is `()`, and from a value of that type otherwise (for
/// [`DynamicObject`] it is an [`ApiResource`]).
pub trait Resource {
    /// What is needed at run time to know the kind: `()` for static kinds, [`ApiResource`] for
    /// [`DynamicObject`].
    type DynamicType: Send + Sync + 'static;

    /// The kind, in CamelCase (`"Deployment"`).
    fn kind(dt: &Self::DynamicType) -> Cow<'_, str>;

    /// The API group (`"apps"`; the empty string for the core group).
    fn group(dt: &Self::DynamicType) -> Cow<'_, str>;

    /// The API version within the group (`"v1"`).
    fn version(dt: &Self::DynamicType) -> Cow<'_, str>;

    /// The lower-case plural used in URLs and store keys (`"deployments"`).
    fn plural(dt: &Self::DynamicType) -> Cow<'_, str>;

    /// Whether objects of this kind live in a namespace (true) or in the whole cluster (false).
    fn namespaced(dt: &Self::DynamicType) -> bool;

    /// `group/version`, or just `version` for the core group (`"apps/v1"`, `"v1"`).
    fn api_version(dt: &Self::DynamicType) -> Cow<'_, str> {
        let group = Self::group(dt);
        if group.is_empty() {
            Self::version(dt)
        } else {
            Cow::Owned(format!("{group}/{}", Self::version(dt)))
        }
    }

    /// The object's metadata.
    fn meta(&self) -> &ObjectMeta;

    /// The object's metadata, to change.
    fn meta_mut(&mut self) -> &mut ObjectMeta;
}

/// Accessors every [`Resource`] has, from its metadata.
pub trait ResourceExt: Resource {
    /// The name, or the empty string when it has none yet.
    fn name_any(&self) -> String {
        self.meta()
            .name
            .clone()
            .or_else(|| self.meta().generate_name.clone())
            .unwrap_or_default()
    }

    /// The name, if it has one.
    fn name(&self) -> Option<&str> {
        self.meta().name.as_deref()
    }

    /// The namespace, if it has one.
    fn namespace(&self) -> Option<&str> {
        self.meta().namespace.as_deref()
    }

    /// The resource version (the store revision it was last written at), if stored.
    fn resource_version(&self) -> Option<&str> {
        self.meta().resource_version.as_deref()
    }

    /// The unique id the control plane gave it, if stored.
    fn uid(&self) -> Option<&str> {
        self.meta().uid.as_deref()
    }

    /// The labels (empty when none).
    fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.meta().labels.as_ref().unwrap_or(&EMPTY)
    }

    /// The labels, to change.
    fn labels_mut(&mut self) -> &mut BTreeMap<String, String> {
        self.meta_mut().labels.get_or_insert_with(BTreeMap::new)
    }

    /// The annotations (empty when none).
    fn annotations(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.meta().annotations.as_ref().unwrap_or(&EMPTY)
    }

    /// The annotations, to change.
    fn annotations_mut(&mut self) -> &mut BTreeMap<String, String> {
        self.meta_mut()
            .annotations
            .get_or_insert_with(BTreeMap::new)
    }

    /// The owners of this object (empty when none).
    fn owner_references(&self) -> &[OwnerReference] {
        self.meta().owner_references.as_deref().unwrap_or_default()
    }

    /// The finalizers that hold back its deletion (empty when none).
    fn finalizers(&self) -> &[String] {
        self.meta().finalizers.as_deref().unwrap_or_default()
    }
}

impl<K: Resource + ?Sized> ResourceExt for K {}

/// A kind described at run time: what [`Resource`] says of a type, as a value.
///
/// Discovery, store keys and the manifest decoder work with these, so that built-in, custom and
/// dynamic kinds are treated alike.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiResource {
    /// API group (`"apps"`; empty for the core group).
    pub group: String,
    /// Version within the group (`"v1"`).
    pub version: String,
    /// `group/version`, or `version` for the core group.
    pub api_version: String,
    /// Kind, in CamelCase.
    pub kind: String,
    /// Lower-case plural (`"deployments"`).
    pub plural: String,
    /// Whether objects of the kind live in namespaces.
    pub namespaced: bool,
}

impl ApiResource {
    /// The description of a static kind.
    pub fn of<K: Resource<DynamicType = ()>>() -> ApiResource {
        ApiResource::erase::<K>(&())
    }

    /// The description of any kind, given its dynamic type information.
    pub fn erase<K: Resource>(dt: &K::DynamicType) -> ApiResource {
        ApiResource {
            group: K::group(dt).into_owned(),
            version: K::version(dt).into_owned(),
            api_version: K::api_version(dt).into_owned(),
            kind: K::kind(dt).into_owned(),
            plural: K::plural(dt).into_owned(),
            namespaced: K::namespaced(dt),
        }
    }

    /// Describes a kind from its parts; the plural is the Kubernetes guess (lower-case kind plus
    /// `s`, `es` or `ies`) when `plural` is `None`.
    pub fn new(
        group: &str,
        version: &str,
        kind: &str,
        plural: Option<&str>,
        namespaced: bool,
    ) -> ApiResource {
        let api_version = if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        };
        ApiResource {
            group: group.to_owned(),
            version: version.to_owned(),
            api_version,
            kind: kind.to_owned(),
            plural: plural.map_or_else(|| default_plural(kind), str::to_owned),
            namespaced,
        }
    }

    /// The plural qualified by its group, as Kubernetes names a resource in messages
    /// (`deployments.apps`, plain `pods` for the core group).
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The kind qualified by its group, as Kubernetes names it in messages (`Deployment.apps`,
    /// plain `Pod` for the core group).
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
}

/// Kubernetes' guess at a kind's plural, as `kubectl` and the CRD tooling make it: the lower-case
/// kind plus `s`, `es` (after s, x, z, ch, sh) or `ies` (for a consonant and y).
///
/// ```
/// assert_eq!(orchestra_core::resource::default_plural("NetworkPolicy"), "networkpolicies");
/// ```
pub fn default_plural(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if lower.is_empty() {
        return lower;
    }
    if let Some(stem) = lower.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'i', 'o', 'u'])
    {
        return format!("{stem}ies");
    }
    if lower.ends_with('s')
        || lower.ends_with('x')
        || lower.ends_with('z')
        || lower.ends_with("ch")
        || lower.ends_with("sh")
    {
        return format!("{lower}es");
    }
    format!("{lower}s")
}

/// `apiVersion` and `kind`, the type information every serialized object carries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeMeta {
    /// `group/version`, or `version` for the core group.
    pub api_version: String,
    /// Kind, in CamelCase.
    pub kind: String,
}

impl TypeMeta {
    /// The type information of a static kind.
    pub fn of<K: Resource<DynamicType = ()>>() -> TypeMeta {
        TypeMeta {
            api_version: K::api_version(&()).into_owned(),
            kind: K::kind(&()).into_owned(),
        }
    }

    /// The API group part of `apiVersion` (empty for the core group).
    pub fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map_or("", |(group, _)| group)
    }

    /// The version part of `apiVersion`.
    pub fn version(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map_or(self.api_version.as_str(), |(_, version)| version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_follow_kubernetes() {
        assert_eq!(default_plural("CronTab"), "crontabs");
        assert_eq!(default_plural("Policy"), "policies");
        assert_eq!(default_plural("Gateway"), "gateways");
        assert_eq!(default_plural("Ingress"), "ingresses");
        assert_eq!(default_plural("Box"), "boxes");
    }

    #[test]
    fn type_meta_splits_api_version() {
        let apps = TypeMeta {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
        };
        assert_eq!((apps.group(), apps.version()), ("apps", "v1"));
        let core = TypeMeta {
            api_version: "v1".into(),
            kind: "Pod".into(),
        };
        assert_eq!((core.group(), core.version()), ("", "v1"));
    }
}
