//! Checks of Leases (Kubernetes' `ValidateLease`).

use k8s_openapi::api::coordination::v1::Lease;

use super::Validate;
use super::field::{Error, ErrorList, Path};
use super::meta::{NameRule, validate_metadata};
use super::pod::nonnegative;

impl Validate for Lease {
    fn validate(&self) -> ErrorList {
        let mut errors = validate_metadata(self, NameRule::DnsSubdomain);
        if let Some(spec) = &self.spec {
            let path = Path::new("spec");
            if let Some(duration) = spec.lease_duration_seconds
                && duration <= 0
            {
                errors.push(Error::invalid(
                    &path.child("leaseDurationSeconds"),
                    duration,
                    "must be greater than 0",
                ));
            }
            if let Some(transitions) = spec.lease_transitions {
                nonnegative(
                    i64::from(transitions),
                    &path.child("leaseTransitions"),
                    &mut errors,
                );
            }
        }
        errors
    }
}
