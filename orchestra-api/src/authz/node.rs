//! The node authorizer and NodeRestriction: what a node agent (`system:node:<name>` in
//! `system:nodes`) may do, which is what it needs to run the pods bound to it and nothing more.
//!
//! | resource | allowed |
//! |---|---|
//! | `nodes` (and `nodes/status`) | get, update, patch, delete its own Node; list and watch only narrowed to it (`metadata.name` field selector); create only its own (the body's name is checked) |
//! | `leases` in `kube-node-lease` | every verb on its own Lease (named after the node; the body's name is checked on create) |
//! | `pods` (and `pods/status`, `pods/eviction`) | get, update, patch, delete the pods bound to it; list and watch only narrowed to it (`spec.nodeName` field selector) |
//! | `secrets`, `configmaps` | get (or list/watch narrowed to the name) those a pod bound to it uses: env, envFrom, volumes, projected volumes, image pull secrets |
//! | `serviceaccounts` | get those a pod bound to it runs as |
//! | `serviceaccounts/token` | create, for a pod bound to it that runs as the account (the body's `boundObjectRef` must name it) |
//! | `events` (core and `events.k8s.io`) | create, update, patch |
//! | `services`, `endpoints` | get, list, watch (what a node needs for its pods' environment) |
//!
//! Anything else gets no opinion here, so only RBAC can grant it.

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use orchestra_core::api::{Api, Client, ListParams};
use orchestra_core::rbac::{Attributes, Decision, RequestTarget, ResourceAttributes};
use orchestra_core::status::{StatusError, StatusReason};

use super::RequestInfo;

/// The namespace of node Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

const READ: &[&str] = &["get", "list", "watch"];

fn allow(why: &str) -> Decision {
    Decision::Allow {
        reason: format!("node authorizer: {why}"),
    }
}

fn no_opinion(why: impl Into<String>) -> Decision {
    Decision::NoOpinion {
        reason: format!("node authorizer: {}", why.into()),
    }
}

/// Whether the request narrows a list or watch to `name` (the authorizer's name, filled from a
/// `metadata.name` field selector), or is on `name`.
fn on_name(resource: &ResourceAttributes, name: &str) -> bool {
    resource.name.as_deref() == Some(name)
}

/// What node `node` may do (see the [module documentation](self)); `info` is the real
/// request, when there is one, for its field selector.
pub async fn authorize(
    client: &Client,
    node: &str,
    attributes: &Attributes,
    info: Option<&RequestInfo>,
) -> Decision {
    let RequestTarget::Resource(resource) = &attributes.request else {
        return no_opinion("not a resource request");
    };
    let verb = attributes.verb.as_str();
    let sub = resource.subresource.as_deref();
    let namespace = resource.namespace.as_deref().unwrap_or_default();
    match (resource.api_group.as_str(), resource.resource.as_str()) {
        ("", "nodes") if matches!(sub, None | Some("status")) => {
            if verb == "create" && sub.is_none() {
                // The body's name is checked by `admit`.
                allow("a node registers itself")
            } else if on_name(resource, node) && verb != "deletecollection" {
                allow("its own Node")
            } else {
                no_opinion("only its own Node")
            }
        }
        ("coordination.k8s.io", "leases") if namespace == NODE_LEASE_NAMESPACE => {
            if verb == "create" || on_name(resource, node) {
                allow("its own Lease")
            } else {
                no_opinion("only its own Lease")
            }
        }
        ("", "pods") if matches!(sub, None | Some("status") | Some("eviction")) => {
            if matches!(verb, "list" | "watch") && sub.is_none() {
                let narrowed = info
                    .and_then(|info| info.field_value("spec.nodeName"))
                    .is_some_and(|selected| selected == node);
                return if narrowed {
                    allow("the pods bound to it")
                } else {
                    no_opinion("lists and watches of pods must select spec.nodeName=<node>")
                };
            }
            let Some(name) = &resource.name else {
                return no_opinion("only the pods bound to it");
            };
            if verb == "create" && sub != Some("eviction") {
                return no_opinion("a node may not create pods");
            }
            match bound_pod(client, namespace, name, node).await {
                Some(_) => allow("a pod bound to it"),
                None => no_opinion(format!("pod {namespace}/{name} is not bound to it")),
            }
        }
        ("", kind @ ("secrets" | "configmaps")) if sub.is_none() && READ.contains(&verb) => {
            let Some(name) = &resource.name else {
                return no_opinion(format!("only the {kind} its pods use, by name"));
            };
            let used = pods_on(client, namespace, node).await.iter().any(|pod| {
                let spec = pod.spec.as_ref();
                match kind {
                    "secrets" => spec.is_some_and(|s| secret_names(s).any(|n| n == name)),
                    _ => spec.is_some_and(|s| config_map_names(s).any(|n| n == name)),
                }
            });
            if used {
                allow("used by a pod bound to it")
            } else {
                no_opinion(format!("no pod bound to it uses {kind} {namespace}/{name}"))
            }
        }
        ("", "serviceaccounts") if matches!(sub, None | Some("token")) => {
            let allowed_verb = match sub {
                None => verb == "get",
                _ => verb == "create",
            };
            let Some(name) = resource.name.as_deref().filter(|_| allowed_verb) else {
                return no_opinion("only reading, or asking tokens for, its pods' accounts");
            };
            let used = pods_on(client, namespace, node)
                .await
                .iter()
                .any(|pod| account_of(pod) == name);
            if used {
                allow("the account of a pod bound to it")
            } else {
                no_opinion(format!("no pod bound to it runs as {namespace}/{name}"))
            }
        }
        ("" | "events.k8s.io", "events") if matches!(verb, "create" | "update" | "patch") => {
            allow("events")
        }
        ("", "services" | "endpoints") if READ.contains(&verb) => allow("services"),
        _ => no_opinion("not a resource nodes use"),
    }
}

/// Whether [`admit`] must see the body of a node's request.
pub fn reads_body(info: &RequestInfo) -> bool {
    let core = info.api_group.is_empty();
    if info.is_resource_request
        && core
        && info.resource == "nodes"
        && matches!(info.verb.as_str(), "update" | "patch")
        && matches!(info.subresource.as_deref(), None | Some("status"))
    {
        return true;
    }
    info.is_resource_request
        && info.verb == "create"
        && ((core && info.resource == "nodes" && info.subresource.is_none())
            || (core
                && info.resource == "serviceaccounts"
                && info.subresource.as_deref() == Some("token"))
            || (info.api_group == "coordination.k8s.io" && info.resource == "leases"))
}

/// The prefix of the Node labels a node may not set on itself (Kubernetes'
/// `node-restriction.kubernetes.io/`): labels an administrator sets to mark nodes that workloads
/// can then trust, which a compromised node must not be able to claim.
pub const RESTRICTED_LABEL_PREFIX: &str = "node-restriction.kubernetes.io/";

/// NodeRestriction: a node creates only its own Node and Lease, asks tokens only bound to its
/// pods, and, updating its Node, changes neither its taints nor the labels under
/// [`RESTRICTED_LABEL_PREFIX`].
///
/// # Errors
///
/// `403 Forbidden` naming what the node may not do.
pub async fn admit(
    client: &Client,
    node: &str,
    info: &RequestInfo,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<(), StatusError> {
    if !reads_body(info) {
        return Ok(());
    }
    let refuse = |why: String| {
        Err(StatusError::new(
            StatusReason::Forbidden,
            format!("node {node:?} is not allowed to {why}"),
        ))
    };
    if info.resource == "nodes" && info.verb != "create" {
        // Writes of the status subresource change neither labels nor spec.
        if info.subresource.is_some() {
            return Ok(());
        }
        let written = super::escalation::written_object(client, info, headers, body).await?;
        let current = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
            .get(node)
            .await?;
        let current = serde_json::to_value(&current)
            .map_err(|error| StatusError::internal(error.to_string()))?;
        let restricted = |object: &serde_json::Value| -> Vec<(String, serde_json::Value)> {
            object["metadata"]["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(key, _)| key.starts_with(RESTRICTED_LABEL_PREFIX))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect()
        };
        if restricted(&written) != restricted(&current) {
            return refuse(format!(
                "modify labels under {RESTRICTED_LABEL_PREFIX} of its Node"
            ));
        }
        let taints = |object: &serde_json::Value| object["spec"]["taints"].clone();
        let no_taints = |value: &serde_json::Value| {
            value.is_null() || value.as_array().is_some_and(Vec::is_empty)
        };
        let (new, old) = (taints(&written), taints(&current));
        if new != old && !(no_taints(&new) && no_taints(&old)) && written.get("spec").is_some() {
            return refuse("modify the taints of its Node".to_owned());
        }
        return Ok(());
    }
    if info.resource == "nodes" || info.resource == "leases" {
        let kind = if info.resource == "nodes" {
            "Node"
        } else {
            "Lease"
        };
        let object: ObjectMetaOnly = match serde_json::from_slice(body) {
            Ok(object) => object,
            Err(error) => return refuse(format!("create a {kind} it cannot read ({error})")),
        };
        let name = object.metadata.name.unwrap_or_default();
        if name != node {
            return refuse(format!("create the {kind} {name:?}"));
        }
        return Ok(());
    }
    let request: TokenRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(error) => return refuse(format!("ask a token it cannot read ({error})")),
    };
    let namespace = info.namespace.as_deref().unwrap_or_default();
    let account = info.name.as_deref().unwrap_or_default();
    let Some(bound) = request.spec.bound_object_ref.as_ref() else {
        return refuse("ask a token not bound to a pod".to_owned());
    };
    if bound.kind.as_deref() != Some("Pod") {
        return refuse("ask a token not bound to a pod".to_owned());
    }
    let pod_name = bound.name.as_deref().unwrap_or_default();
    match bound_pod(client, namespace, pod_name, node).await {
        Some(pod) if account_of(&pod) == account => {
            if bound
                .uid
                .as_deref()
                .is_some_and(|uid| Some(uid) != pod.metadata.uid.as_deref())
            {
                return refuse(format!(
                    "ask a token for another pod {namespace}/{pod_name}"
                ));
            }
            Ok(())
        }
        Some(_) => refuse(format!(
            "ask a token of {account} for pod {namespace}/{pod_name}, which runs as another account"
        )),
        None => refuse(format!(
            "ask a token for pod {namespace}/{pod_name}, which is not bound to it"
        )),
    }
}

/// The metadata of any object.
#[derive(serde::Deserialize)]
struct ObjectMetaOnly {
    #[serde(default)]
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
}

/// The pod `namespace/name` if it exists and is bound to `node`.
async fn bound_pod(client: &Client, namespace: &str, name: &str, node: &str) -> Option<Pod> {
    let pod = Api::<Pod>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .ok()??;
    let bound = pod.spec.as_ref()?.node_name.as_deref() == Some(node);
    bound.then_some(pod)
}

/// The pods of `namespace` bound to `node`.
async fn pods_on(client: &Client, namespace: &str, node: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await
        .map(|list| list.items)
        .unwrap_or_default()
}

/// The account a pod runs as.
fn account_of(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.service_account_name.as_deref())
        .filter(|name| !name.is_empty())
        .unwrap_or("default")
}

fn containers(spec: &PodSpec) -> impl Iterator<Item = &k8s_openapi::api::core::v1::Container> {
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
}

/// The Secrets a pod uses.
fn secret_names(spec: &PodSpec) -> impl Iterator<Item = &str> {
    let env = containers(spec).flat_map(|c| {
        let values = c.env.iter().flatten().filter_map(|e| {
            e.value_from
                .as_ref()?
                .secret_key_ref
                .as_ref()
                .map(|s| s.name.as_str())
        });
        let from = c
            .env_from
            .iter()
            .flatten()
            .filter_map(|e| e.secret_ref.as_ref().map(|s| s.name.as_str()));
        values.chain(from)
    });
    let volumes = spec.volumes.iter().flatten().flat_map(|v| {
        let direct = v.secret.as_ref().and_then(|s| s.secret_name.as_deref());
        let projected = v
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
            .filter_map(|s| s.secret.as_ref().map(|s| s.name.as_str()));
        direct.into_iter().chain(projected)
    });
    let pull = spec
        .image_pull_secrets
        .iter()
        .flatten()
        .map(|s| s.name.as_str());
    env.chain(volumes).chain(pull)
}

/// The ConfigMaps a pod uses.
fn config_map_names(spec: &PodSpec) -> impl Iterator<Item = &str> {
    let env = containers(spec).flat_map(|c| {
        let values = c.env.iter().flatten().filter_map(|e| {
            e.value_from
                .as_ref()?
                .config_map_key_ref
                .as_ref()
                .map(|s| s.name.as_str())
        });
        let from = c
            .env_from
            .iter()
            .flatten()
            .filter_map(|e| e.config_map_ref.as_ref().map(|s| s.name.as_str()));
        values.chain(from)
    });
    let volumes = spec.volumes.iter().flatten().flat_map(|v| {
        let direct = v.config_map.as_ref().map(|c| c.name.as_str());
        let projected = v
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
            .filter_map(|s| s.config_map.as_ref().map(|c| c.name.as_str()));
        direct.into_iter().chain(projected)
    });
    env.chain(volumes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pods_secrets_and_config_maps_are_found_everywhere_it_names_them() {
        let spec: PodSpec = serde_json::from_value(serde_json::json!({
            "containers": [{
                "name": "c",
                "env": [
                    {"name": "A", "valueFrom": {"secretKeyRef": {"name": "s-env", "key": "k"}}},
                    {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "c-env", "key": "k"}}}
                ],
                "envFrom": [{"secretRef": {"name": "s-from"}}, {"configMapRef": {"name": "c-from"}}]
            }],
            "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "s-init"}}]}],
            "volumes": [
                {"name": "v1", "secret": {"secretName": "s-vol"}},
                {"name": "v2", "configMap": {"name": "c-vol"}},
                {"name": "v3", "projected": {"sources": [
                    {"secret": {"name": "s-proj"}}, {"configMap": {"name": "c-proj"}}
                ]}}
            ],
            "imagePullSecrets": [{"name": "s-pull"}]
        }))
        .unwrap_or_default();
        let secrets: Vec<&str> = secret_names(&spec).collect();
        assert_eq!(
            secrets,
            ["s-env", "s-from", "s-init", "s-vol", "s-proj", "s-pull"]
        );
        let maps: Vec<&str> = config_map_names(&spec).collect();
        assert_eq!(maps, ["c-env", "c-from", "c-vol", "c-proj"]);
    }
}
