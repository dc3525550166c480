//! Checks of Namespaces (Kubernetes' `ValidateNamespace`).

use k8s_openapi::api::core::v1::Namespace;

use super::Validate;
use super::field::{ErrorList, Path};
use super::meta::{NameRule, validate_finalizers, validate_metadata};

impl Validate for Namespace {
    /// A namespace is named by a DNS label, has no namespace itself, and its finalizers are
    /// well-formed.
    fn validate(&self) -> ErrorList {
        let mut errors = validate_metadata(self, NameRule::DnsLabel);
        if let Some(finalizers) = self.spec.as_ref().and_then(|s| s.finalizers.as_ref()) {
            errors.extend(validate_finalizers(
                finalizers,
                &Path::new("spec").child("finalizers"),
            ));
        }
        errors
    }
}
