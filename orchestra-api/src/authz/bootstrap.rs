//! The default RBAC policy written into the store when a control plane starts (Kubernetes'
//! `rbac/bootstrap-roles` post-start hook): the ClusterRoles and ClusterRoleBindings of
//! [`orchestra_core::rbac::bootstrap_policy`].
//!
//! A missing object is created. An existing one is reconciled as Kubernetes does, unless its
//! `rbac.authorization.kubernetes.io/autoupdate` annotation is `"false"`: rules (or the
//! aggregation rule) and subjects the default has and the stored object lacks are added; what an
//! administrator added is kept.

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use orchestra_core::api::{Api, Client, PostParams};
use orchestra_core::rbac::bootstrap_policy;
use orchestra_core::status::StatusError;

/// The annotation that stops reconciliation of a default object when `"false"`.
pub const AUTOUPDATE_ANNOTATION: &str = "rbac.authorization.kubernetes.io/autoupdate";

fn autoupdate(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(AUTOUPDATE_ANNOTATION))
        .is_none_or(|value| value != "false")
}

/// What [`ensure_bootstrap_policy`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Objects created, as `kind/name`.
    pub created: Vec<String>,
    /// Objects updated, as `kind/name`.
    pub updated: Vec<String>,
}

/// Creates or reconciles the default policy; see the [module documentation](self).
///
/// # Errors
///
/// The first failed call, other than a conflict with a concurrent writer (the object is then
/// left to the next start).
pub async fn ensure_bootstrap_policy(client: &Client) -> Result<Reconciled, StatusError> {
    let (roles, bindings) = bootstrap_policy();
    let mut done = Reconciled::default();
    let role_api = Api::<ClusterRole>::all(client.clone());
    for role in roles {
        let name = role.metadata.name.clone().unwrap_or_default();
        match role_api.get_opt(&name).await? {
            None => {
                ignore_races(role_api.create(&PostParams::default(), &role).await)?;
                done.created.push(format!("clusterrole/{name}"));
            }
            Some(mut stored) if autoupdate(&stored.metadata) => {
                let mut changed = false;
                if role.aggregation_rule.is_some()
                    && stored.aggregation_rule != role.aggregation_rule
                {
                    stored.aggregation_rule = role.aggregation_rule.clone();
                    changed = true;
                }
                if role.aggregation_rule.is_none() {
                    let rules = stored.rules.get_or_insert_with(Vec::new);
                    for rule in role.rules.iter().flatten() {
                        if !rules.contains(rule) {
                            rules.push(rule.clone());
                            changed = true;
                        }
                    }
                }
                if changed {
                    ignore_races(
                        role_api
                            .replace(&name, &PostParams::default(), &stored)
                            .await,
                    )?;
                    done.updated.push(format!("clusterrole/{name}"));
                }
            }
            Some(_) => {}
        }
    }
    let binding_api = Api::<ClusterRoleBinding>::all(client.clone());
    for binding in bindings {
        let name = binding.metadata.name.clone().unwrap_or_default();
        match binding_api.get_opt(&name).await? {
            None => {
                ignore_races(binding_api.create(&PostParams::default(), &binding).await)?;
                done.created.push(format!("clusterrolebinding/{name}"));
            }
            Some(mut stored)
                if autoupdate(&stored.metadata) && stored.role_ref == binding.role_ref =>
            {
                let subjects = stored.subjects.get_or_insert_with(Vec::new);
                let mut changed = false;
                for subject in binding.subjects.iter().flatten() {
                    if !subjects.contains(subject) {
                        subjects.push(subject.clone());
                        changed = true;
                    }
                }
                if changed {
                    ignore_races(
                        binding_api
                            .replace(&name, &PostParams::default(), &stored)
                            .await,
                    )?;
                    done.updated.push(format!("clusterrolebinding/{name}"));
                }
            }
            Some(_) => {}
        }
    }
    Ok(done)
}

/// A write that lost to a concurrent writer (another server starting) is not a failure.
fn ignore_races<T>(outcome: Result<T, StatusError>) -> Result<(), StatusError> {
    match outcome {
        Ok(_) => Ok(()),
        Err(error) if error.is_conflict() || error.is_already_exists() => Ok(()),
        Err(error) => Err(error),
    }
}
