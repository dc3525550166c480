//! What a request asks to do, read off its method, path and query alone (Kubernetes'
//! `RequestInfoFactory`), before anything knows whether the resource exists: authorization
//! decides on this, so that a caller without rights learns nothing from a 404.
//!
//! ```text
//! GET    /api/v1/namespaces/default/pods              list pods in default
//! GET    /api/v1/namespaces/default/pods?watch=true   watch pods in default
//! GET    /api/v1/watch/namespaces/default/pods        watch (the legacy path form)
//! GET    /api/v1/pods?fieldSelector=metadata.name=web list pods, named web
//! POST   /apis/apps/v1/namespaces/a/deployments       create deployments in a
//! DELETE /api/v1/namespaces/a/pods                    deletecollection pods in a
//! GET    /api/v1/namespaces/a/pods/web/log            get pods/log web in a
//! GET    /api/v1/namespaces/a                         get namespaces a (namespace a)
//! GET    /healthz                                     non-resource get /healthz
//! ```

use orchestra_core::rbac::Attributes;

use crate::request::Query;

/// The namespace subresources that keep `/api/v1/namespaces/<name>/<segment>` a request on the
/// namespace itself.
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

/// What a request asks to do (Kubernetes' `request.RequestInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// Whether the path is in the resource tree (`/api/v1/...`, `/apis/<group>/<version>/...`).
    pub is_resource_request: bool,
    /// The path, as requested.
    pub path: String,
    /// The verb: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`; for non-resource requests the lower-case HTTP method.
    pub verb: String,
    /// The API group (`""` for the core group).
    pub api_group: String,
    /// The API version.
    pub api_version: String,
    /// The resource, plural.
    pub resource: String,
    /// The subresource, if any.
    pub subresource: Option<String>,
    /// The namespace, if any.
    pub namespace: Option<String>,
    /// The object's name, if the request is on one (a `list` or `watch` narrowed to one name by
    /// a `metadata.name` field selector counts as on that name).
    pub name: Option<String>,
    /// The `fieldSelector` of a `list` or `watch`, as sent.
    pub field_selector: Option<String>,
}

impl RequestInfo {
    /// Reads a request (`query` is the raw query string, if any).
    pub fn parse(method: &http::Method, path: &str, query: Option<&str>) -> RequestInfo {
        let mut info = RequestInfo {
            path: path.to_owned(),
            verb: method.as_str().to_ascii_lowercase(),
            ..RequestInfo::default()
        };
        let mut parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match parts.first() {
            Some(&"api") if parts.len() >= 3 => {
                info.api_version = parts[1].to_owned();
                parts.drain(..2);
            }
            Some(&"apis") if parts.len() >= 4 => {
                info.api_group = parts[1].to_owned();
                info.api_version = parts[2].to_owned();
                parts.drain(..3);
            }
            _ => return info,
        }
        if parts.iter().any(|part| part.is_empty()) {
            return RequestInfo {
                api_group: String::new(),
                api_version: String::new(),
                ..info
            };
        }
        info.is_resource_request = true;
        info.verb = match *method {
            http::Method::POST => "create",
            http::Method::GET | http::Method::HEAD => "get",
            http::Method::PUT => "update",
            http::Method::PATCH => "patch",
            http::Method::DELETE => "delete",
            _ => "",
        }
        .to_owned();
        if parts.first() == Some(&"watch") {
            parts.remove(0);
            info.verb = "watch".to_owned();
        }
        if parts.first() == Some(&"namespaces")
            && let Some(namespace) = parts.get(1)
        {
            info.namespace = Some((*namespace).to_owned());
            // /namespaces/<ns>/<resource>...: the rest is in the namespace; otherwise the
            // request is on the namespace object itself.
            if parts.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&parts[2]) {
                parts.drain(..2);
            }
        }
        info.resource = parts.first().map(|p| (*p).to_owned()).unwrap_or_default();
        info.name = parts.get(1).map(|p| (*p).to_owned());
        info.subresource = parts.get(2).map(|p| (*p).to_owned());

        let query = Query::parse(query);
        if info.name.is_none() && info.verb == "get" {
            info.verb = if query.flag("watch").unwrap_or(false) {
                "watch"
            } else {
                "list"
            }
            .to_owned();
        }
        if info.name.is_none() && info.verb == "delete" {
            info.verb = "deletecollection".to_owned();
        }
        if (info.verb == "list" || info.verb == "watch")
            && let Some(selector) = query.get("fieldSelector")
        {
            info.field_selector = Some(selector.to_owned());
            if info.name.is_none() {
                info.name = single_value(selector, "metadata.name");
            }
        }
        info
    }

    /// The authorizer's view of this request by `user` in `groups`.
    pub fn attributes(&self, user: &str, groups: &[String]) -> Attributes {
        let attributes = if self.is_resource_request {
            let mut attributes =
                Attributes::resource(user, &*self.verb, &*self.api_group, &*self.resource);
            if let Some(namespace) = &self.namespace {
                attributes = attributes.in_namespace(namespace);
            }
            if let Some(name) = &self.name {
                attributes = attributes.named(name);
            }
            if let Some(subresource) = &self.subresource {
                attributes = attributes.on_subresource(subresource);
            }
            attributes
        } else {
            Attributes::non_resource(user, &*self.verb, &*self.path)
        };
        attributes.with_groups(groups.iter().cloned())
    }

    /// The value a field selector requires of `field` with `=` or `==`, when it requires one.
    pub fn field_value(&self, field: &str) -> Option<String> {
        single_value(self.field_selector.as_deref()?, field)
    }
}

/// The value `selector` requires of `field` (`field=value` or `field==value` among its
/// comma-separated requirements).
fn single_value(selector: &str, field: &str) -> Option<String> {
    selector.split(',').find_map(|requirement| {
        let (key, value) = requirement
            .split_once("==")
            .or_else(|| requirement.split_once('='))?;
        (key.trim() == field && !key.ends_with('!')).then(|| value.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;

    fn parse(method: Method, path_and_query: &str) -> RequestInfo {
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        RequestInfo::parse(&method, path, query)
    }

    fn summary(info: &RequestInfo) -> String {
        format!(
            "{} {}/{}/{} sub={} ns={} name={}",
            info.verb,
            info.api_group,
            info.api_version,
            info.resource,
            info.subresource.as_deref().unwrap_or("-"),
            info.namespace.as_deref().unwrap_or("-"),
            info.name.as_deref().unwrap_or("-"),
        )
    }

    #[test]
    fn resource_requests_read_as_kubernetes_reads_them() {
        let cases = [
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                "list /v1/pods sub=- ns=default name=-",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods?watch=true",
                "watch /v1/pods sub=- ns=default name=-",
            ),
            (
                Method::GET,
                "/api/v1/watch/namespaces/default/pods",
                "watch /v1/pods sub=- ns=default name=-",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods/web",
                "get /v1/pods sub=- ns=default name=web",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods/web/log",
                "get /v1/pods sub=log ns=default name=web",
            ),
            (
                Method::POST,
                "/api/v1/namespaces/default/pods/web/eviction",
                "create /v1/pods sub=eviction ns=default name=web",
            ),
            (
                Method::PUT,
                "/apis/apps/v1/namespaces/a/deployments/d/scale",
                "update apps/v1/deployments sub=scale ns=a name=d",
            ),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/a/deployments/d",
                "patch apps/v1/deployments sub=- ns=a name=d",
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/a/pods",
                "deletecollection /v1/pods sub=- ns=a name=-",
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/a/pods/p",
                "delete /v1/pods sub=- ns=a name=p",
            ),
            (
                Method::POST,
                "/apis/apps/v1/namespaces/a/deployments",
                "create apps/v1/deployments sub=- ns=a name=-",
            ),
            (
                Method::GET,
                "/api/v1/pods",
                "list /v1/pods sub=- ns=- name=-",
            ),
            (
                Method::GET,
                "/api/v1/nodes/n1",
                "get /v1/nodes sub=- ns=- name=n1",
            ),
            (
                Method::PATCH,
                "/api/v1/nodes/n1/status",
                "patch /v1/nodes sub=status ns=- name=n1",
            ),
            (
                Method::GET,
                "/api/v1/namespaces",
                "list /v1/namespaces sub=- ns=- name=-",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/a",
                "get /v1/namespaces sub=- ns=a name=a",
            ),
            (
                Method::PUT,
                "/api/v1/namespaces/a/finalize",
                "update /v1/namespaces sub=finalize ns=a name=a",
            ),
            (
                Method::GET,
                "/api/v1/pods?fieldSelector=metadata.name%3Dweb",
                "list /v1/pods sub=- ns=- name=web",
            ),
            (
                Method::GET,
                "/api/v1/pods?watch=1&fieldSelector=spec.nodeName%3Dn1",
                "watch /v1/pods sub=- ns=- name=-",
            ),
        ];
        for (method, path, expected) in cases {
            assert_eq!(
                summary(&parse(method.clone(), path)),
                expected,
                "{method} {path}"
            );
        }
        let info = parse(
            Method::GET,
            "/api/v1/pods?fieldSelector=spec.nodeName%3D%3Dn1,status.phase%3DRunning",
        );
        assert_eq!(info.field_value("spec.nodeName").as_deref(), Some("n1"));
        assert_eq!(info.field_value("status.phase").as_deref(), Some("Running"));
        assert_eq!(info.field_value("metadata.name"), None);
        let negated = parse(
            Method::GET,
            "/api/v1/pods?fieldSelector=spec.nodeName%21%3Dn1",
        );
        assert_eq!(negated.field_value("spec.nodeName"), None);
    }

    #[test]
    fn other_paths_are_non_resource_requests() {
        for (method, path) in [
            (Method::GET, "/healthz"),
            (Method::GET, "/api"),
            (Method::GET, "/api/v1"),
            (Method::GET, "/apis/apps"),
            (Method::GET, "/apis/apps/v1"),
            (Method::GET, "/openapi/v3/apis/apps/v1"),
            (Method::POST, "/version"),
            (Method::GET, "/api/v1//pods"),
        ] {
            let info = parse(method.clone(), path);
            assert!(!info.is_resource_request, "{path}");
            assert_eq!(info.verb, method.as_str().to_ascii_lowercase());
            let attributes = info.attributes("bob", &["g".to_owned()]);
            assert_eq!(attributes.groups, ["g"]);
            assert_eq!(
                attributes.request,
                orchestra_core::rbac::RequestTarget::NonResource {
                    path: path.to_owned()
                }
            );
        }
    }

    #[test]
    fn attributes_carry_every_part() {
        let info = parse(Method::GET, "/api/v1/namespaces/a/pods/web/log");
        let attributes = info.attributes("bob", &[]);
        let expected = Attributes::resource("bob", "get", "", "pods")
            .in_namespace("a")
            .named("web")
            .on_subresource("log");
        assert_eq!(attributes, expected);
    }
}
