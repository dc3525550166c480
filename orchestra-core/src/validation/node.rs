//! Checks of Nodes (Kubernetes' `ValidateNode`).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Node;

use super::Validate;
use super::field::{Error, ErrorList, Path};
use super::meta::{NameRule, validate_metadata};
use super::names;
use super::pod::{invalid_each, validate_quantity};

/// The effects a taint may have.
pub const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

impl Validate for Node {
    fn validate(&self) -> ErrorList {
        let mut errors = validate_metadata(self, NameRule::DnsSubdomain);
        if let Some(spec) = &self.spec {
            let path = Path::new("spec");
            if let Some(cidr) = spec.pod_cidr.as_deref().filter(|c| !c.is_empty()) {
                invalid_each(names::cidr(cidr), &path.child("podCIDR"), cidr, &mut errors);
            }
            for (i, cidr) in spec.pod_cidrs.iter().flatten().enumerate() {
                invalid_each(
                    names::cidr(cidr),
                    &path.child("podCIDRs").index(i),
                    cidr,
                    &mut errors,
                );
            }
            let mut seen = BTreeSet::new();
            for (i, taint) in spec.taints.iter().flatten().enumerate() {
                let taint_path = path.child("taints").index(i);
                if taint.key.is_empty() {
                    errors.push(Error::required(&taint_path.child("key"), ""));
                } else {
                    invalid_each(
                        names::qualified_name(&taint.key),
                        &taint_path.child("key"),
                        &taint.key,
                        &mut errors,
                    );
                }
                if let Some(value) = taint.value.as_deref() {
                    invalid_each(
                        names::label_value(value),
                        &taint_path.child("value"),
                        value,
                        &mut errors,
                    );
                }
                if taint.effect.is_empty() {
                    errors.push(Error::required(&taint_path.child("effect"), ""));
                } else if !TAINT_EFFECTS.contains(&taint.effect.as_str()) {
                    errors.push(Error::not_supported(
                        &taint_path.child("effect"),
                        taint.effect.as_str(),
                        &TAINT_EFFECTS,
                    ));
                }
                if !seen.insert((taint.key.clone(), taint.effect.clone())) {
                    errors.push(Error {
                        detail: "taints must be unique by key and effect pair".into(),
                        ..Error::duplicate(&taint_path, format!("{}:{}", taint.key, taint.effect))
                    });
                }
            }
        }
        if let Some(status) = &self.status {
            let path = Path::new("status");
            for (field, list) in [
                ("capacity", &status.capacity),
                ("allocatable", &status.allocatable),
            ] {
                for (name, quantity) in list.iter().flatten() {
                    validate_quantity(quantity, &path.child(field).key(name), &mut errors);
                }
            }
        }
        errors
    }
}
