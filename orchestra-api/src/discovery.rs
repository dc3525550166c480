//! API discovery: what the server serves, in the forms clients ask for it.
//!
//! Every Kubernetes client starts by asking the server which groups, versions and resources it
//! has. Two forms exist, and current `kubectl` asks for the first and falls back to the second:
//!
//! - **aggregated discovery** (`apidiscovery.k8s.io/v2`, `APIGroupDiscoveryList`): `GET /api` and
//!   `GET /apis` with `Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`
//!   answer every group, version, resource and subresource at once;
//! - **the legacy documents**: `GET /api` (`APIVersions`), `GET /apis` (`APIGroupList`), and one
//!   `APIResourceList` per group version (`GET /api/v1`, `GET /apis/apps/v1`).
//!
//! [`Discovery`] computes every document once from the [`Scheme`], as bytes ready to send: the
//! kinds do not change while a server runs.

use std::collections::BTreeMap;

use orchestra_core::resource::ApiResource;
use orchestra_core::scheme::Scheme;
use serde_json::{Value, json};

/// The `Content-Type` of an aggregated discovery answer (`kubectl` recognises the format by it).
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Every verb a resource collection and its items serve.
const ALL_VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Kubernetes' short names of the built-in resources (`kubectl get po`).
const SHORT_NAMES: [(&str, &str); 13] = [
    ("pods", "po"),
    ("services", "svc"),
    ("deployments", "deploy"),
    ("replicasets", "rs"),
    ("replicationcontrollers", "rc"),
    ("namespaces", "ns"),
    ("nodes", "no"),
    ("configmaps", "cm"),
    ("serviceaccounts", "sa"),
    ("endpoints", "ep"),
    ("events", "ev"),
    ("priorityclasses", "pc"),
    ("persistentvolumeclaims", "pvc"),
];

/// The resources in Kubernetes' `all` category (`kubectl get all`).
const CATEGORY_ALL: [&str; 9] = [
    "pods",
    "services",
    "deployments",
    "replicasets",
    "replicationcontrollers",
    "daemonsets",
    "statefulsets",
    "jobs",
    "cronjobs",
];

/// A subresource as discovery lists it.
struct SubresourceInfo {
    name: &'static str,
    /// `(group, version, kind)` of what the subresource answers with.
    response: (&'static str, &'static str, &'static str),
    verbs: &'static [&'static str],
}

/// The subresources of a resource.
fn subresources(scheme: &Scheme, resource: &ApiResource) -> Vec<SubresourceInfo> {
    let mut list = Vec::new();
    if scheme.has_status_subresource(resource) {
        list.push(SubresourceInfo {
            name: "status",
            response: ("", "", ""),
            verbs: &["get", "patch", "update"],
        });
    }
    if resource.group.is_empty() && resource.plural == "pods" {
        list.push(SubresourceInfo {
            name: "binding",
            response: ("", "v1", "Binding"),
            verbs: &["create"],
        });
        list.push(SubresourceInfo {
            name: "eviction",
            response: ("policy", "v1", "Eviction"),
            verbs: &["create"],
        });
        list.push(SubresourceInfo {
            name: "log",
            response: ("", "v1", "Pod"),
            verbs: &["get"],
        });
    }
    if resource.group.is_empty() && resource.plural == "serviceaccounts" {
        list.push(SubresourceInfo {
            name: "token",
            response: ("authentication.k8s.io", "v1", "TokenRequest"),
            verbs: &["create"],
        });
    }
    if has_scale(resource) {
        list.push(SubresourceInfo {
            name: "scale",
            response: ("autoscaling", "v1", "Scale"),
            verbs: &["get", "patch", "update"],
        });
    }
    list
}

/// The review kinds the authorization layer answers ([`crate::authz::reviews`]): served, not
/// stored, and only created.
fn review_resources() -> Vec<ApiResource> {
    crate::authz::reviews::REVIEWS
        .iter()
        .map(|(group, plural, namespaced)| {
            let kind = match *plural {
                "selfsubjectaccessreviews" => "SelfSubjectAccessReview",
                "subjectaccessreviews" => "SubjectAccessReview",
                "localsubjectaccessreviews" => "LocalSubjectAccessReview",
                "selfsubjectrulesreviews" => "SelfSubjectRulesReview",
                "tokenreviews" => "TokenReview",
                _ => "SelfSubjectReview",
            };
            ApiResource {
                group: (*group).to_owned(),
                version: "v1".to_owned(),
                api_version: format!("{group}/v1"),
                kind: kind.to_owned(),
                plural: (*plural).to_owned(),
                namespaced: *namespaced,
            }
        })
        .collect()
}

/// The verbs of a resource: every verb, but only `create` for the reviews.
fn verbs(resource: &ApiResource) -> &'static [&'static str] {
    let review = crate::authz::reviews::REVIEWS
        .iter()
        .any(|(group, plural, _)| resource.group == *group && resource.plural == *plural);
    if review { &["create"] } else { &ALL_VERBS }
}

/// Whether the resource has a `scale` subresource.
pub(crate) fn has_scale(resource: &ApiResource) -> bool {
    matches!(
        (resource.group.as_str(), resource.plural.as_str()),
        ("apps", "deployments") | ("apps", "replicasets") | ("", "replicationcontrollers")
    )
}

fn short_names(resource: &ApiResource) -> Vec<&'static str> {
    SHORT_NAMES
        .iter()
        .filter(|(plural, _)| *plural == resource.plural)
        .map(|(_, short)| *short)
        .collect()
}

fn categories(resource: &ApiResource) -> Vec<&'static str> {
    if CATEGORY_ALL.contains(&resource.plural.as_str()) {
        vec!["all"]
    } else {
        Vec::new()
    }
}

/// The discovery documents of a server, serialised once.
#[derive(Clone, Debug)]
pub struct Discovery {
    api_versions: Vec<u8>,
    api_groups: Vec<u8>,
    aggregated_core: Vec<u8>,
    aggregated_groups: Vec<u8>,
    /// `APIResourceList` by group version path (`api/v1`, `apis/apps/v1`).
    resource_lists: BTreeMap<String, Vec<u8>>,
    /// `APIGroup` by group name.
    groups: BTreeMap<String, Vec<u8>>,
}

/// The resources of one group version.
type Versions<'a> = BTreeMap<String, Vec<&'a ApiResource>>;

impl Discovery {
    /// The documents describing every kind of `scheme`.
    pub fn new(scheme: &Scheme) -> Discovery {
        // group -> version -> resources
        let mut groups: BTreeMap<String, Versions<'_>> = BTreeMap::new();
        let reviews = review_resources();
        for resource in scheme.resources().chain(&reviews) {
            groups
                .entry(resource.group.clone())
                .or_default()
                .entry(resource.version.clone())
                .or_default()
                .push(resource);
        }
        let mut resource_lists = BTreeMap::new();
        for (group, versions) in &groups {
            for (version, resources) in versions {
                let group_version = group_version(group, version);
                let path = if group.is_empty() {
                    format!("api/{version}")
                } else {
                    format!("apis/{group}/{version}")
                };
                resource_lists.insert(
                    path,
                    to_bytes(&resource_list(scheme, &group_version, resources)),
                );
            }
        }
        let core_versions: Vec<&String> = groups
            .get("")
            .map(|versions| versions.keys().collect())
            .unwrap_or_default();
        let api_versions = json!({
            "kind": "APIVersions",
            "versions": core_versions,
            "serverAddressByClientCIDRs": [],
        });
        let named: Vec<Value> = groups
            .iter()
            .filter(|(group, _)| !group.is_empty())
            .map(|(group, versions)| api_group(group, versions))
            .collect();
        let group_documents = named
            .iter()
            .filter_map(|group| {
                let name = group.get("name")?.as_str()?.to_owned();
                let mut document = group.clone();
                document["kind"] = json!("APIGroup");
                document["apiVersion"] = json!("v1");
                Some((name, to_bytes(&document)))
            })
            .collect();
        let api_groups = json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": named});
        let aggregated = |core: bool| {
            let items: Vec<Value> = groups
                .iter()
                .filter(|(group, _)| group.is_empty() == core)
                .map(|(group, versions)| aggregated_group(scheme, group, versions))
                .collect();
            json!({
                "kind": "APIGroupDiscoveryList",
                "apiVersion": "apidiscovery.k8s.io/v2",
                "metadata": {},
                "items": items,
            })
        };
        Discovery {
            api_versions: to_bytes(&api_versions),
            api_groups: to_bytes(&api_groups),
            aggregated_core: to_bytes(&aggregated(true)),
            aggregated_groups: to_bytes(&aggregated(false)),
            resource_lists,
            groups: group_documents,
        }
    }

    /// `GET /api`: the core group's versions (`APIVersions`), or with `aggregated` the core
    /// group's `APIGroupDiscoveryList`.
    pub fn core(&self, aggregated: bool) -> &[u8] {
        if aggregated {
            &self.aggregated_core
        } else {
            &self.api_versions
        }
    }

    /// `GET /apis`: the named groups (`APIGroupList`), or with `aggregated` their
    /// `APIGroupDiscoveryList`.
    pub fn groups(&self, aggregated: bool) -> &[u8] {
        if aggregated {
            &self.aggregated_groups
        } else {
            &self.api_groups
        }
    }

    /// `GET /apis/<group>`: one group (`APIGroup`).
    pub fn group(&self, group: &str) -> Option<&[u8]> {
        self.groups.get(group).map(Vec::as_slice)
    }

    /// `GET /api/v1`, `GET /apis/<group>/<version>`: the resources of a group version
    /// (`APIResourceList`), by the path without its leading `/`.
    pub fn resource_list(&self, path: &str) -> Option<&[u8]> {
        self.resource_lists.get(path).map(Vec::as_slice)
    }
}

/// Whether an `Accept` header asks for aggregated discovery.
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|media| {
        let mut parameters = media.split(';').skip(1).map(str::trim);
        parameters.any(|p| p == "as=APIGroupDiscoveryList")
            && media.contains("g=apidiscovery.k8s.io")
            && media.contains("v=v2")
            && !media.contains("v=v2beta1")
    })
}

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

fn to_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn api_group(group: &str, versions: &Versions<'_>) -> Value {
    let listed: Vec<Value> = versions
        .keys()
        .map(|version| json!({"groupVersion": group_version(group, version), "version": version}))
        .collect();
    let preferred = listed.last().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": listed, "preferredVersion": preferred})
}

fn resource_list(scheme: &Scheme, group_version: &str, resources: &[&ApiResource]) -> Value {
    let mut list = Vec::new();
    for resource in resources {
        let mut entry = json!({
            "name": resource.plural,
            "singularName": resource.kind.to_lowercase(),
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": verbs(resource),
        });
        let short = short_names(resource);
        if !short.is_empty() {
            entry["shortNames"] = json!(short);
        }
        let categories = categories(resource);
        if !categories.is_empty() {
            entry["categories"] = json!(categories);
        }
        list.push(entry);
        for sub in subresources(scheme, resource) {
            let (group, version, kind) = sub.response;
            let mut entry = json!({
                "name": format!("{}/{}", resource.plural, sub.name),
                "singularName": "",
                "namespaced": resource.namespaced,
                "kind": if kind.is_empty() { resource.kind.as_str() } else { kind },
                "verbs": sub.verbs,
            });
            if !group.is_empty() {
                entry["group"] = json!(group);
                entry["version"] = json!(version);
            }
            list.push(entry);
        }
    }
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": list,
    })
}

fn aggregated_group(scheme: &Scheme, group: &str, versions: &Versions<'_>) -> Value {
    // Newest version first, as Kubernetes orders them (the first is the preferred one).
    let listed: Vec<Value> = versions
        .iter()
        .rev()
        .map(|(version, resources)| {
            let resources: Vec<Value> = resources
                .iter()
                .map(|resource| aggregated_resource(scheme, resource))
                .collect();
            json!({"version": version, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let mut metadata = json!({"creationTimestamp": null});
    if !group.is_empty() {
        metadata["name"] = json!(group);
    }
    json!({"metadata": metadata, "versions": listed})
}

fn aggregated_resource(scheme: &Scheme, resource: &ApiResource) -> Value {
    let subresources: Vec<Value> = subresources(scheme, resource)
        .into_iter()
        .map(|sub| {
            let (group, version, kind) = sub.response;
            let response = if kind.is_empty() {
                json!({"group": resource.group, "version": resource.version, "kind": resource.kind})
            } else {
                json!({"group": group, "version": version, "kind": kind})
            };
            json!({"subresource": sub.name, "responseKind": response, "verbs": sub.verbs})
        })
        .collect();
    let mut entry = json!({
        "resource": resource.plural,
        "responseKind": {
            "group": resource.group,
            "version": resource.version,
            "kind": resource.kind,
        },
        "scope": if resource.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": resource.kind.to_lowercase(),
        "verbs": verbs(resource),
    });
    let short = short_names(resource);
    if !short.is_empty() {
        entry["shortNames"] = json!(short);
    }
    let categories = categories(resource);
    if !categories.is_empty() {
        entry["categories"] = json!(categories);
    }
    if !subresources.is_empty() {
        entry["subresources"] = json!(subresources);
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_accept_header_asks_for_aggregated_v2() {
        let accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert!(wants_aggregated(accept));
        assert!(!wants_aggregated("application/json"));
        assert!(!wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
        ));
    }

    #[test]
    fn the_documents_describe_the_scheme() -> Result<(), serde_json::Error> {
        let discovery = Discovery::new(&Scheme::default());
        let core: Value = serde_json::from_slice(discovery.core(false))?;
        assert_eq!(core["versions"], json!(["v1"]));
        let groups: Value = serde_json::from_slice(discovery.groups(false))?;
        let names: Vec<&str> = groups["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|group| group["name"].as_str())
            .collect();
        assert!(names.contains(&"apps"), "{names:?}");
        let apps: Value =
            serde_json::from_slice(discovery.resource_list("apis/apps/v1").unwrap_or_default())?;
        let deployments = apps["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["name"] == "deployments")
            .cloned()
            .unwrap_or_default();
        assert_eq!(deployments["shortNames"], json!(["deploy"]));
        assert_eq!(deployments["namespaced"], json!(true));
        let scale = apps["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["name"] == "deployments/scale")
            .cloned()
            .unwrap_or_default();
        assert_eq!(scale["kind"], json!("Scale"));
        assert_eq!(scale["group"], json!("autoscaling"));

        let aggregated: Value = serde_json::from_slice(discovery.core(true))?;
        let pods = aggregated["items"][0]["versions"][0]["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["resource"] == "pods")
            .cloned()
            .unwrap_or_default();
        assert_eq!(pods["scope"], json!("Namespaced"));
        assert_eq!(pods["categories"], json!(["all"]));
        let subresources: Vec<&str> = pods["subresources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["subresource"].as_str())
            .collect();
        assert_eq!(subresources, ["status", "binding", "eviction", "log"]);
        Ok(())
    }
}
