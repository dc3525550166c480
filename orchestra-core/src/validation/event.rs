//! Checks of Events (Kubernetes' `ValidateEventCreate` for `v1` events).

use k8s_openapi::api::core::v1::Event;

use super::Validate;
use super::field::{Error, ErrorList, Path};
use super::meta::{NameRule, validate_metadata};

/// The types an Event may have.
pub const EVENT_TYPES: [&str; 2] = ["Normal", "Warning"];

impl Validate for Event {
    fn validate(&self) -> ErrorList {
        let mut errors = validate_metadata(self, NameRule::DnsSubdomain);
        let involved = &self.involved_object;
        let event_namespace = self.metadata.namespace.as_deref().unwrap_or_default();
        if let Some(namespace) = involved.namespace.as_deref().filter(|n| !n.is_empty())
            && !event_namespace.is_empty()
            && namespace != event_namespace
        {
            errors.push(Error::invalid(
                &Path::new("involvedObject").child("namespace"),
                namespace,
                "does not match event.namespace",
            ));
        }
        if let Some(event_type) = self.type_.as_deref().filter(|t| !t.is_empty())
            && !EVENT_TYPES.contains(&event_type)
        {
            errors.push(Error::not_supported(
                &Path::new("type"),
                event_type,
                &EVENT_TYPES,
            ));
        }
        if self.reason.as_deref().is_some_and(|r| r.len() > 128) {
            errors.push(Error::too_long(&Path::new("reason"), 128));
        }
        errors
    }
}
