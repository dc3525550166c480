//! Objects of kinds known only at run time.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ApiResource, Resource, TypeMeta};

/// An object of any kind, its body kept as JSON: for kinds known only at run time (a custom kind
/// registered from a definition, a manifest of a kind this program has no type for), and as the
/// common currency between the decoder and typed code.
///
/// Its [`Resource::DynamicType`] is an [`ApiResource`].
///
/// # Examples
///
/// ```
/// use orchestra_core::resource::DynamicObject;
/// use orchestra_core::k8s::api::core::v1::ConfigMap;
///
/// let object: DynamicObject = serde_json::from_value(serde_json::json!({
///     "apiVersion": "v1",
///     "kind": "ConfigMap",
///     "metadata": {"name": "settings"},
///     "data": {"mode": "fast"},
/// }))?;
/// assert_eq!(object.data["data"]["mode"], "fast");
///
/// let config_map: ConfigMap = object.try_parse()?;
/// assert_eq!(config_map.data.unwrap()["mode"], "fast");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DynamicObject {
    /// `apiVersion` and `kind`, when the object carries them.
    #[serde(flatten, default)]
    pub types: Option<TypeMeta>,
    /// The object's metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Every other field (`spec`, `status`, `data`, ...), as JSON.
    #[serde(flatten)]
    pub data: Value,
}

/// A [`DynamicObject`] could not become the typed object asked for.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the object as the kind asked for: {0}")]
pub struct ParseDynamicObjectError(#[from] serde_json::Error);

impl DynamicObject {
    /// An empty object of the given kind, named `name`.
    pub fn new(name: &str, resource: &ApiResource) -> DynamicObject {
        DynamicObject {
            types: Some(TypeMeta {
                api_version: resource.api_version.clone(),
                kind: resource.kind.clone(),
            }),
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            data: Value::Object(serde_json::Map::new()),
        }
    }

    /// An object from its JSON fields: `apiVersion` and `kind` (both strings) become
    /// [`DynamicObject::types`], `metadata` the metadata, the rest the data. Faster than
    /// deserializing through serde's field flattening, for hot paths such as reading stored
    /// objects.
    pub fn from_json_map(
        mut fields: serde_json::Map<String, Value>,
    ) -> Result<DynamicObject, ParseDynamicObjectError> {
        let types = match (fields.get("apiVersion"), fields.get("kind")) {
            (Some(Value::String(api_version)), Some(Value::String(kind))) => {
                let types = TypeMeta {
                    api_version: api_version.clone(),
                    kind: kind.clone(),
                };
                fields.remove("apiVersion");
                fields.remove("kind");
                Some(types)
            }
            _ => None,
        };
        let metadata = match fields.remove("metadata") {
            Some(metadata) => ObjectMeta::deserialize(metadata)?,
            None => ObjectMeta::default(),
        };
        Ok(DynamicObject {
            types,
            metadata,
            data: Value::Object(fields),
        })
    }

    /// The object as the typed kind `K`.
    pub fn try_parse<K: DeserializeOwned>(&self) -> Result<K, ParseDynamicObjectError> {
        self.clone().into_typed()
    }

    /// The object as the typed kind `K`, consuming it (no copy of its data).
    pub fn into_typed<K: DeserializeOwned>(self) -> Result<K, ParseDynamicObjectError> {
        Ok(K::deserialize(self.into_value()?)?)
    }

    /// The object as one JSON value, consuming it.
    pub fn into_value(self) -> Result<Value, ParseDynamicObjectError> {
        let mut fields = match self.data {
            Value::Object(fields) => fields,
            Value::Null => serde_json::Map::new(),
            other => {
                let mut fields = serde_json::Map::new();
                fields.insert("data".into(), other);
                fields
            }
        };
        if let Some(types) = self.types {
            fields.insert("apiVersion".into(), Value::String(types.api_version));
            fields.insert("kind".into(), Value::String(types.kind));
        }
        fields.insert("metadata".into(), serde_json::to_value(self.metadata)?);
        Ok(Value::Object(fields))
    }

    /// A typed object as a dynamic one.
    pub fn from_typed<K: Serialize>(object: &K) -> Result<DynamicObject, ParseDynamicObjectError> {
        Ok(serde_json::from_value(serde_json::to_value(object)?)?)
    }
}

impl Resource for DynamicObject {
    type DynamicType = ApiResource;

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        Cow::Borrowed(&dt.kind)
    }

    fn group(dt: &ApiResource) -> Cow<'_, str> {
        Cow::Borrowed(&dt.group)
    }

    fn version(dt: &ApiResource) -> Cow<'_, str> {
        Cow::Borrowed(&dt.version)
    }

    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        Cow::Borrowed(&dt.api_version)
    }

    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        Cow::Borrowed(&dt.plural)
    }

    fn namespaced(dt: &ApiResource) -> bool {
        dt.namespaced
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}
