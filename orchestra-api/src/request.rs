//! What a request asks for: the resource its path names, and the options of its query string.
//!
//! Resource paths have Kubernetes' shapes:
//!
//! ```text
//! /api/v1/<plural>[/<name>[/<subresource>]]                         cluster-scoped, or every namespace
//! /api/v1/namespaces/<namespace>/<plural>[/<name>[/<subresource>]]  in one namespace
//! /apis/<group>/<version>/...                                       the same, for a named group
//! ```
//!
//! with one ambiguity Kubernetes resolves the same way: `/api/v1/namespaces/<name>/<segment>` is
//! the namespace's subresource when `<segment>` is one (`status`, `finalize`), and a collection in
//! that namespace otherwise.

use std::collections::BTreeMap;
use std::time::Duration;

use orchestra_core::api::{ListParams, PropagationPolicy, VersionMatch, WatchParams};
use orchestra_core::resource::ApiResource;
use orchestra_core::scheme::Scheme;
use orchestra_core::status::{StatusError, StatusReason};

/// The object or collection a resource path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The kind.
    pub resource: ApiResource,
    /// The namespace in the path, if any (none for a cluster-scoped kind, or a request across
    /// every namespace).
    pub namespace: Option<String>,
    /// The object's name, for a request on one object.
    pub name: Option<String>,
    /// The subresource (`status`, `scale`, `log`, ...), if any.
    pub subresource: Option<String>,
}

/// The 404 Kubernetes answers for a path it does not serve.
pub fn not_served() -> StatusError {
    StatusError::new(
        StatusReason::NotFound,
        "the server could not find the requested resource",
    )
}

/// The subresources of namespaces (`/api/v1/namespaces/<name>/status`).
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

impl Target {
    /// Reads a resource path (`/api/v1/namespaces/default/pods/web`), `None` when it is not one
    /// of a kind the scheme knows.
    pub fn parse(scheme: &Scheme, path: &str) -> Option<Target> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, rest) = match segments.as_slice() {
            ["api", version, rest @ ..] => ("", *version, rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => return None,
        };
        let find = |plural: &str| {
            scheme
                .resources()
                .find(|r| r.group == group && r.version == version && r.plural == plural)
                .cloned()
        };
        let target = |resource: ApiResource,
                      namespace: Option<&str>,
                      name: Option<&str>,
                      subresource: Option<&str>| Target {
            resource,
            namespace: namespace.map(str::to_owned),
            name: name.map(str::to_owned),
            subresource: subresource.map(str::to_owned),
        };
        let is_namespaces = group.is_empty() && rest.first() == Some(&"namespaces");
        match rest {
            [] => None,
            [plural] => Some(target(find(plural)?, None, None, None)),
            [plural, name] => Some(target(find(plural)?, None, Some(name), None)),
            ["namespaces", namespace, sub]
                if is_namespaces && NAMESPACE_SUBRESOURCES.contains(sub) =>
            {
                Some(target(
                    find("namespaces")?,
                    None,
                    Some(namespace),
                    Some(sub),
                ))
            }
            ["namespaces", namespace, plural] => {
                let resource = find(plural)?;
                resource
                    .namespaced
                    .then(|| target(resource, Some(namespace), None, None))
            }
            [plural, name, sub] => {
                let resource = find(plural)?;
                (!resource.namespaced).then(|| target(resource, None, Some(name), Some(sub)))
            }
            ["namespaces", namespace, plural, name] => {
                let resource = find(plural)?;
                resource
                    .namespaced
                    .then(|| target(resource, Some(namespace), Some(name), None))
            }
            ["namespaces", namespace, plural, name, sub] => {
                let resource = find(plural)?;
                resource
                    .namespaced
                    .then(|| target(resource, Some(namespace), Some(name), Some(sub)))
            }
            _ => None,
        }
    }
}

/// The query string of a request, decoded.
#[derive(Clone, Debug, Default)]
pub struct Query {
    params: BTreeMap<String, String>,
}

fn bad_request(message: String) -> StatusError {
    StatusError::new(StatusReason::BadRequest, message)
}

impl Query {
    /// Decodes a query string (`labelSelector=app%3Dweb&limit=10`).
    pub fn parse(query: Option<&str>) -> Query {
        let params = query
            .unwrap_or_default()
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(key), decode(value))
            })
            .collect();
        Query { params }
    }

    /// A parameter's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    /// A boolean parameter (`true`, `1`; Kubernetes' parser also takes `True`/`TRUE`/`t`).
    pub fn flag(&self, key: &str) -> Result<bool, StatusError> {
        match self.get(key) {
            None | Some("") => Ok(false),
            Some("true" | "True" | "TRUE" | "1" | "t" | "T") => Ok(true),
            Some("false" | "False" | "FALSE" | "0" | "f" | "F") => Ok(false),
            Some(other) => Err(bad_request(format!(
                "invalid value {other:?} for the boolean parameter {key:?}"
            ))),
        }
    }

    /// An integer parameter.
    pub fn integer(&self, key: &str) -> Result<Option<i64>, StatusError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|_| {
                bad_request(format!(
                    "invalid value {text:?} for the integer parameter {key:?}"
                ))
            }),
        }
    }

    /// `dryRun`: `All` runs every step and stores nothing; no other value exists.
    pub fn dry_run(&self) -> Result<bool, StatusError> {
        match self.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(bad_request(format!(
                "Invalid dryRun value {other:?}: supported values are \"All\""
            ))),
        }
    }

    /// `fieldManager`, checked as Kubernetes checks it (at most 128 printable characters).
    pub fn field_manager(&self) -> Result<Option<String>, StatusError> {
        match self.get("fieldManager") {
            None | Some("") => Ok(None),
            Some(manager) if manager.len() > 128 => Err(bad_request(
                "fieldManager: Invalid value: must not be longer than 128 characters".to_owned(),
            )),
            Some(manager) if manager.chars().any(char::is_control) => Err(bad_request(
                "fieldManager: Invalid value: must consist of printable characters".to_owned(),
            )),
            Some(manager) => Ok(Some(manager.to_owned())),
        }
    }

    /// `fieldValidation`: how unknown and duplicate fields in the body are treated.
    pub fn field_validation(&self) -> Result<FieldValidation, StatusError> {
        match self.get("fieldValidation") {
            None | Some("") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(bad_request(format!(
                "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
            ))),
        }
    }

    /// The options of a list.
    pub fn list_params(&self) -> Result<ListParams, StatusError> {
        let limit = match self.integer("limit")? {
            Some(limit) if limit > 0 => Some(u32::try_from(limit).unwrap_or(u32::MAX)),
            _ => None,
        };
        let version_match = match self.get("resourceVersionMatch") {
            None | Some("") => None,
            Some("NotOlderThan") => Some(VersionMatch::NotOlderThan),
            Some("Exact") => Some(VersionMatch::Exact),
            Some(other) => {
                return Err(bad_request(format!(
                    "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
                )));
            }
        };
        Ok(ListParams {
            label_selector: self.get("labelSelector").map(str::to_owned),
            field_selector: self.get("fieldSelector").map(str::to_owned),
            limit,
            continue_token: self
                .get("continue")
                .filter(|c| !c.is_empty())
                .map(str::to_owned),
            resource_version: self.get("resourceVersion").map(str::to_owned),
            version_match,
        })
    }

    /// The options of a watch, and the resource version it starts from.
    pub fn watch_params(&self) -> Result<(WatchParams, String), StatusError> {
        let timeout = self
            .integer("timeoutSeconds")?
            .filter(|seconds| *seconds > 0)
            .map(|seconds| Duration::from_secs(seconds.unsigned_abs()));
        let params = WatchParams {
            label_selector: self.get("labelSelector").map(str::to_owned),
            field_selector: self.get("fieldSelector").map(str::to_owned),
            bookmarks: self.flag("allowWatchBookmarks")?,
            timeout,
        };
        let version = self.get("resourceVersion").unwrap_or_default().to_owned();
        Ok((params, version))
    }

    /// `propagationPolicy`.
    pub fn propagation_policy(&self) -> Result<Option<PropagationPolicy>, StatusError> {
        parse_propagation(self.get("propagationPolicy"))
    }
}

/// Reads a propagation policy as Kubernetes spells it.
pub fn parse_propagation(value: Option<&str>) -> Result<Option<PropagationPolicy>, StatusError> {
    match value {
        None | Some("") => Ok(None),
        Some("Orphan") => Ok(Some(PropagationPolicy::Orphan)),
        Some("Background") => Ok(Some(PropagationPolicy::Background)),
        Some("Foreground") => Ok(Some(PropagationPolicy::Foreground)),
        Some(other) => Err(bad_request(format!(
            "propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
        ))),
    }
}

/// How the server treats fields of a body that the kind does not have (Kubernetes'
/// `fieldValidation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    /// Refuse the request (400), naming each field.
    Strict,
    /// Drop the fields and say so in a `Warning` header (the default).
    Warn,
    /// Drop the fields silently.
    Ignore,
}

fn decode(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// plural, namespace, name, subresource
    type Parsed = (String, Option<String>, Option<String>, Option<String>);

    fn parse(path: &str) -> Option<Parsed> {
        Target::parse(&Scheme::default(), path)
            .map(|t| (t.resource.plural, t.namespace, t.name, t.subresource))
    }

    fn some(text: &str) -> Option<String> {
        Some(text.to_owned())
    }

    #[test]
    fn resource_paths_name_their_target() {
        assert_eq!(
            parse("/api/v1/pods"),
            Some(("pods".into(), None, None, None))
        );
        assert_eq!(
            parse("/api/v1/namespaces/default/pods"),
            Some(("pods".into(), some("default"), None, None))
        );
        assert_eq!(
            parse("/api/v1/namespaces/default/pods/web/log"),
            Some(("pods".into(), some("default"), some("web"), some("log")))
        );
        assert_eq!(
            parse("/apis/apps/v1/namespaces/a/deployments/web/scale"),
            Some(("deployments".into(), some("a"), some("web"), some("scale")))
        );
        assert_eq!(
            parse("/api/v1/namespaces/kube-system"),
            Some(("namespaces".into(), None, some("kube-system"), None))
        );
        assert_eq!(
            parse("/api/v1/namespaces/a/status"),
            Some(("namespaces".into(), None, some("a"), some("status")))
        );
        assert_eq!(
            parse("/api/v1/nodes/n1/status"),
            Some(("nodes".into(), None, some("n1"), some("status")))
        );
        // A namespaced kind has no item path outside a namespace, nor a cluster-scoped one inside.
        assert_eq!(parse("/api/v1/pods/web/log"), None);
        assert_eq!(parse("/api/v1/namespaces/a/nodes"), None);
        assert_eq!(parse("/api/v1/widgets"), None);
        assert_eq!(parse("/apis/apps/v2/deployments"), None);
    }

    #[test]
    fn queries_decode_and_check_their_values() {
        let query = Query::parse(Some(
            "labelSelector=app%3Dweb%2Ctier+in+(a)&limit=5&watch=1&dryRun=All",
        ));
        assert_eq!(query.get("labelSelector"), Some("app=web,tier in (a)"));
        assert_eq!(query.flag("watch"), Ok(true));
        assert_eq!(query.dry_run(), Ok(true));
        let list = query.list_params();
        assert_eq!(list.map(|l| l.limit), Ok(Some(5)));
        let bad = Query::parse(Some("dryRun=Some&limit=x&propagationPolicy=Later"));
        assert_eq!(bad.dry_run().map_err(|e| e.code), Err(400));
        assert_eq!(bad.list_params().map_err(|e| e.code), Err(400));
        assert_eq!(bad.propagation_policy().map_err(|e| e.code), Err(400));
    }
}
