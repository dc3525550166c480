//! JSON schemas of kinds, through schemars.
//!
//! Every kind the scheme knows has a JSON schema: the built-in kinds' come from k8s-openapi (the
//! same definitions as Kubernetes' OpenAPI document, named `io.k8s.api.apps.v1.Deployment` and so
//! on), custom kinds' from their `#[derive(JsonSchema)]` spec and status. The API server serves
//! them as OpenAPI, and clients such as `kubectl explain` read them.
//!
//! # Examples
//!
//! ```
//! use orchestra_core::k8s::api::core::v1::Pod;
//! use orchestra_core::schema::schema_for;
//!
//! let schema = schema_for::<Pod>();
//! assert!(schema.get("properties").unwrap().get("spec").is_some());
//! assert!(schema.get("$defs").unwrap().get("io.k8s.api.core.v1.PodSpec").is_some());
//! ```

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema};

/// The JSON schema (draft 2020-12) of `K`, with every definition it refers to under `$defs`.
pub fn schema_for<K: JsonSchema>() -> Schema {
    SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<K>()
}

#[cfg(test)]
mod tests {
    use crate::resource::builtin::builtin_resources;
    use crate::scheme::Scheme;

    #[test]
    fn every_builtin_kind_has_a_schema_with_its_fields() {
        let scheme = Scheme::default();
        for resource in builtin_resources() {
            let schema = scheme
                .schema(&resource.api_version, &resource.kind)
                .unwrap_or_else(|| panic!("no schema for {}", resource.kind));
            let properties = schema
                .get("properties")
                .and_then(|p| p.as_object())
                .unwrap_or_else(|| panic!("no properties for {}", resource.kind));
            for field in ["apiVersion", "kind", "metadata"] {
                assert!(
                    properties.contains_key(field),
                    "{} lacks {field}",
                    resource.kind
                );
            }
        }
    }
}
