//! Privilege escalation prevention, as Kubernetes' RBAC storage does it: writing RBAC objects
//! never gives anyone more than the writer holds.
//!
//! - Creating, updating or patching a Role or ClusterRole is allowed when the writer has the
//!   `escalate` verb on it, or already holds every permission the new rules grant (in the role's
//!   namespace, or cluster-wide for a ClusterRole).
//! - Creating, updating or patching a RoleBinding or ClusterRoleBinding is allowed when the
//!   writer has the `bind` verb on the role it references, or already holds every permission of
//!   that role (where the binding grants it).
//!
//! Permissions are compared rule by rule, each new rule broken down into its single verbs,
//! groups, resources and names (Kubernetes' `ConfirmNoEscalation`): a wildcard is covered only by
//! a wildcard. Members of `system:masters` hold everything.

use http::HeaderMap;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use orchestra_core::api::Client;
use orchestra_core::patch::{MergeKeys, PatchType, apply_patch};
use orchestra_core::rbac::{Attributes, rule_allows};
use orchestra_core::status::{StatusError, StatusReason};
use serde_json::Value;

use super::{Authorization, RequestInfo};
use crate::authn::{MASTERS_GROUP, UserInfo};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Whether the request writes an RBAC object, so that [`check`] must see it.
pub fn applies(info: &RequestInfo) -> bool {
    info.is_resource_request
        && info.api_group == RBAC_GROUP
        && info.subresource.is_none()
        && matches!(info.verb.as_str(), "create" | "update" | "patch")
        && matches!(
            info.resource.as_str(),
            "roles" | "clusterroles" | "rolebindings" | "clusterrolebindings"
        )
}

fn bad_request(message: impl Into<String>) -> StatusError {
    StatusError::new(StatusReason::BadRequest, message)
}

/// The object the request would store: its body, or for a patch the current object patched
/// (for a server-side apply, the applied configuration).
pub(super) async fn written_object(
    client: &Client,
    info: &RequestInfo,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, StatusError> {
    let value = crate::server::decode_request_body(headers, body)?;
    let media = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if info.verb != "patch" || media.starts_with("application/apply-patch") {
        return Ok(value);
    }
    let patch_type = PatchType::from_content_type(media)
        .map_err(|error| StatusError::new(StatusReason::UnsupportedMediaType, error.to_string()))?;
    let resource = client
        .scheme()
        .resources()
        .find(|r| r.group == info.api_group && r.plural == info.resource)
        .cloned()
        .ok_or_else(crate::request::not_served)?;
    let name = info.name.as_deref().unwrap_or_default();
    let current = client
        .get(&resource, info.namespace.as_deref(), name)
        .await?;
    let current =
        serde_json::to_value(&current).map_err(|error| StatusError::internal(error.to_string()))?;
    apply_patch(&current, patch_type, &value, Some(&MergeKeys::new()))
        .map_err(|error| bad_request(error.to_string()))
}

/// Refuses the request if it would escalate the user's privileges; see the
/// [module documentation](self).
///
/// # Errors
///
/// `403 Forbidden` naming what the user may not grant; `400` for a body that cannot be read.
pub async fn check(
    authz: &Authorization,
    user: &UserInfo,
    info: &RequestInfo,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), StatusError> {
    if user.in_group(MASTERS_GROUP) {
        return Ok(());
    }
    let object = written_object(&authz.client, info, headers, body).await?;
    let namespace = info.namespace.as_deref();
    let decode_error =
        |error: serde_json::Error| bad_request(format!("the body cannot be read: {error}"));
    let (rules, special_verb, role_resource, role_name, role_namespace) = match info
        .resource
        .as_str()
    {
        "roles" => {
            let role: Role = serde_json::from_value(object).map_err(decode_error)?;
            let name = role.metadata.name.clone().unwrap_or_default();
            (
                role.rules.unwrap_or_default(),
                "escalate",
                "roles",
                name,
                namespace,
            )
        }
        "clusterroles" => {
            let role: ClusterRole = serde_json::from_value(object).map_err(decode_error)?;
            let name = role.metadata.name.clone().unwrap_or_default();
            // An aggregated role's rules are the aggregation's business, not the writer's.
            let rules = if role.aggregation_rule.is_some() {
                Vec::new()
            } else {
                role.rules.unwrap_or_default()
            };
            (rules, "escalate", "clusterroles", name, None)
        }
        "rolebindings" | "clusterrolebindings" => {
            let role_ref = if info.resource == "rolebindings" {
                let binding: RoleBinding = serde_json::from_value(object).map_err(decode_error)?;
                binding.role_ref
            } else {
                let binding: ClusterRoleBinding =
                    serde_json::from_value(object).map_err(decode_error)?;
                binding.role_ref
            };
            let authorizer = authz.rbac.authorizer().await;
            let (rules, resource, role_namespace) = match role_ref.kind.as_str() {
                "Role" => (
                    namespace
                        .and_then(|ns| authorizer.role_rules(ns, &role_ref.name))
                        .map(<[PolicyRule]>::to_vec),
                    "roles",
                    namespace,
                ),
                _ => (
                    authorizer
                        .cluster_role_rules(&role_ref.name)
                        .map(<[PolicyRule]>::to_vec),
                    "clusterroles",
                    None,
                ),
            };
            let bind = Attributes::resource(&user.name, "bind", RBAC_GROUP, resource)
                .with_groups(user.groups.iter().cloned())
                .named(&role_ref.name);
            let bind = match role_namespace {
                Some(ns) => bind.in_namespace(ns),
                None => bind,
            };
            if authz.authorize_attributes(&bind, None).await.is_allowed() {
                return Ok(());
            }
            let Some(rules) = rules else {
                return Err(StatusError::new(
                    StatusReason::Forbidden,
                    format!(
                        "user {:?} cannot bind {} {:?}: it does not exist, and only users with the bind verb on it may bind it",
                        user.name, role_ref.kind, role_ref.name
                    ),
                ));
            };
            return confirm_no_escalation(authz, user, namespace, &rules).await;
        }
        _ => return Ok(()),
    };
    let escalate = Attributes::resource(&user.name, special_verb, RBAC_GROUP, role_resource)
        .with_groups(user.groups.iter().cloned())
        .named(&role_name);
    let escalate = match role_namespace {
        Some(ns) => escalate.in_namespace(ns),
        None => escalate,
    };
    if authz
        .authorize_attributes(&escalate, None)
        .await
        .is_allowed()
    {
        return Ok(());
    }
    confirm_no_escalation(authz, user, namespace, &rules).await
}

/// Kubernetes' `ConfirmNoEscalation`: every permission of `rules` is held by `user` in
/// `namespace` (cluster-wide for `None`).
async fn confirm_no_escalation(
    authz: &Authorization,
    user: &UserInfo,
    namespace: Option<&str>,
    rules: &[PolicyRule],
) -> Result<(), StatusError> {
    let authorizer = authz.rbac.authorizer().await;
    let owned = authorizer.rules_for(&user.name, &user.groups, namespace);
    let missing: Vec<String> = rules
        .iter()
        .flat_map(breakdown)
        .filter(|attributes| !owned.iter().any(|rule| rule_allows(attributes, rule)))
        .map(|attributes| describe(&attributes))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(StatusError::new(
        StatusReason::Forbidden,
        format!(
            "user {:?} (groups={:?}) is attempting to grant RBAC permissions not currently held: {}",
            user.name,
            user.groups,
            missing.join(", ")
        ),
    ))
}

/// A rule broken down into one request per verb, group, resource (and subresource) and name, or
/// per verb and non-resource URL.
fn breakdown(rule: &PolicyRule) -> Vec<Attributes> {
    let mut out = Vec::new();
    for verb in &rule.verbs {
        for url in rule.non_resource_urls.iter().flatten() {
            out.push(Attributes::non_resource("", verb, url));
        }
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                let (resource, subresource) = match resource.split_once('/') {
                    Some((resource, sub)) => (resource, Some(sub)),
                    None => (resource.as_str(), None),
                };
                let base = Attributes::resource("", verb, group, resource);
                let base = match subresource {
                    Some(sub) => base.on_subresource(sub),
                    None => base,
                };
                match rule.resource_names.as_deref() {
                    Some(names) if !names.is_empty() => {
                        out.extend(names.iter().map(|name| base.clone().named(name)));
                    }
                    _ => out.push(base),
                }
            }
        }
    }
    out
}

fn describe(attributes: &Attributes) -> String {
    match &attributes.request {
        orchestra_core::rbac::RequestTarget::NonResource { path } => {
            format!("{{NonResourceURLs:[{path}], Verbs:[{}]}}", attributes.verb)
        }
        orchestra_core::rbac::RequestTarget::Resource(r) => {
            let resource = match &r.subresource {
                Some(sub) => format!("{}/{sub}", r.resource),
                None => r.resource.clone(),
            };
            let names = r
                .name
                .as_ref()
                .map(|n| format!(", ResourceNames:[{n}]"))
                .unwrap_or_default();
            format!(
                "{{APIGroups:[{:?}], Resources:[{resource:?}]{names}, Verbs:[{:?}]}}",
                r.api_group, attributes.verb
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        let strings = |s: &[&str]| Some(s.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        PolicyRule {
            verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
            api_groups: strings(groups),
            resources: strings(resources),
            resource_names: if names.is_empty() {
                None
            } else {
                strings(names)
            },
            non_resource_urls: None,
        }
    }

    fn covered(owned: &[PolicyRule], wanted: &PolicyRule) -> bool {
        breakdown(wanted)
            .iter()
            .all(|attributes| owned.iter().any(|rule| rule_allows(attributes, rule)))
    }

    #[test]
    fn a_wildcard_is_covered_only_by_a_wildcard() {
        let reader = [rule(&["get", "list"], &[""], &["pods"], &[])];
        assert!(covered(&reader, &rule(&["get"], &[""], &["pods"], &[])));
        assert!(covered(
            &reader,
            &rule(&["get"], &[""], &["pods"], &["web"])
        ));
        assert!(!covered(&reader, &rule(&["*"], &[""], &["pods"], &[])));
        assert!(!covered(&reader, &rule(&["get"], &["*"], &["pods"], &[])));
        assert!(!covered(&reader, &rule(&["get"], &[""], &["*"], &[])));
        assert!(!covered(
            &reader,
            &rule(&["get"], &[""], &["pods/log"], &[])
        ));
        assert!(!covered(&reader, &rule(&["delete"], &[""], &["pods"], &[])));
        let named = [rule(&["get"], &[""], &["secrets"], &["a"])];
        assert!(covered(
            &named,
            &rule(&["get"], &[""], &["secrets"], &["a"])
        ));
        assert!(!covered(
            &named,
            &rule(&["get"], &[""], &["secrets"], &["a", "b"])
        ));
        assert!(!covered(&named, &rule(&["get"], &[""], &["secrets"], &[])));
        let admin = [rule(&["*"], &["*"], &["*"], &[])];
        assert!(covered(&admin, &rule(&["*"], &["*"], &["*"], &[])));
        assert!(covered(
            &admin,
            &rule(&["get"], &["apps"], &["deployments/scale"], &["x"])
        ));
    }
}
