//! Role-based access control: the decision logic of Kubernetes' RBAC authorizer
//! (`plugin/pkg/auth/authorizer/rbac`, `pkg/registry/rbac/validation/rule.go`,
//! `pkg/apis/rbac/v1/evaluation_helpers.go`) and its bootstrap policy
//! (`plugin/pkg/auth/authorizer/rbac/bootstrappolicy`).
//!
//! This module is pure: it reads `rbac.authorization.k8s.io/v1` objects handed to it and answers
//! questions; serving those kinds, watching them and wiring the answer into the API server are
//! the business of the crates above.
//!
//! # Requests
//!
//! An [`Attributes`] says who asks (user name and groups, as an authenticator found them), what
//! for (the verb: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
//! `deletecollection`, or a custom verb such as `impersonate`, `bind`, `escalate`; for
//! non-resource requests the lower-case HTTP method) and on what: a resource
//! ([`ResourceAttributes`]: API group, resource, optional subresource, namespace and name) or a
//! non-resource path such as `/healthz`.
//!
//! # Decisions
//!
//! [`Authorizer::authorize`] answers [`Decision::Allow`] or [`Decision::NoOpinion`]: RBAC is
//! additive and never denies; a request nothing allows is refused by the chain of authorizers
//! when no other one allows it. The rules that apply to a request are, as in Kubernetes:
//!
//! - the rules of the role referenced by every ClusterRoleBinding with a subject matching the
//!   user, whatever the request's namespace (a ClusterRoleBinding referencing a `Role` grants
//!   nothing);
//! - for a namespaced request only, the rules of the role referenced by every RoleBinding **of
//!   that namespace** with a matching subject: a `Role` of the binding's namespace, or a
//!   `ClusterRole`, whose rules then count in that namespace only.
//!
//! Subjects match as in `appliesToUser`: a `User` by name, a `Group` when the user is in it, a
//! `ServiceAccount` when the user is `system:serviceaccount:<namespace>:<name>`, its namespace
//! defaulting to the RoleBinding's (a ServiceAccount subject of a ClusterRoleBinding needs its
//! namespace). Other kinds match nobody. Roles that a binding references but that do not exist
//! grant nothing; they are named in the [`Decision::NoOpinion`] reason, as Kubernetes does.
//!
//! A rule ([`rule_allows`]) allows a resource request when its verbs hold the verb or `*`, its
//! API groups the group or `*` (`""` is the core group), its resources `*`, the resource
//! (`pods`), the resource and subresource (`pods/log`) or `*/<subresource>` (`*/scale`), and its
//! resource names are empty or hold the request's name. Kubernetes knows no `pods/*` form:
//! such a rule matches only a subresource literally named `*`. A rule with resource names thus
//! never allows a request without a name (`list`, `watch`, `create`, `deletecollection` of the
//! whole collection): narrowing a `list` or `watch` to one name with a `metadata.name` field
//! selector is the request builder's business (it then fills in the name). A rule allows a
//! non-resource request when its verbs match and one of its non-resource URLs is `*`, the path,
//! or a prefix of it followed by `*` (`/apis/*`). Non-resource requests have no namespace, so
//! only ClusterRoleBindings grant them.
//!
//! # Aggregation
//!
//! A ClusterRole with an `aggregationRule` has, as Kubernetes' ClusterRole aggregation controller
//! makes it, the rules of every other ClusterRole whose labels one of its
//! `clusterRoleSelectors` selects (its own stored rules are replaced, duplicates dropped). The
//! [`Authorizer`] evaluates this once, when it is built, to the fixed point the controller
//! converges to: an aggregated role selected by another (Kubernetes' `edit` is aggregated into
//! `admin`) passes on its aggregated rules. A selector that does not convert to a label selector
//! selects nothing.
//!
//! # Bootstrap policy
//!
//! [`bootstrap_policy`] returns the default ClusterRoles and ClusterRoleBindings an API server
//! creates: `cluster-admin` for `system:masters`, the discovery, basic-user and public-info
//! roles for `system:authenticated` (and `system:unauthenticated` for public information), and
//! the aggregated `admin`, `edit` and `view` roles with the rules for the kinds Orchestra
//! serves.
//!
//! # Examples
//!
//! ```
//! use orchestra_core::rbac::{Attributes, Authorizer, bootstrap_policy};
//!
//! let (cluster_roles, cluster_role_bindings) = bootstrap_policy();
//! let authorizer = Authorizer::new(&[], &cluster_roles, &[], &cluster_role_bindings);
//!
//! let admin = Attributes::resource("alice", "delete", "apps", "deployments")
//!     .with_groups(["system:masters", "system:authenticated"])
//!     .in_namespace("default")
//!     .named("web");
//! assert!(authorizer.authorize(&admin).is_allowed());
//!
//! let health = Attributes::non_resource("bob", "get", "/healthz").with_groups(["system:authenticated"]);
//! assert!(authorizer.authorize(&health).is_allowed());
//!
//! let secrets = Attributes::resource("bob", "list", "", "secrets")
//!     .with_groups(["system:authenticated"])
//!     .in_namespace("default");
//! assert!(!authorizer.authorize(&secrets).is_allowed());
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::ControlFlow;

use k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef,
    Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::selector::Selector;

#[cfg(test)]
mod tests;

/// The API group of the RBAC kinds, `rbac.authorization.k8s.io`.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// The prefix of service-account user names: `system:serviceaccount:`.
pub const SERVICE_ACCOUNT_USERNAME_PREFIX: &str = "system:serviceaccount:";

/// The group of every authenticated user, `system:authenticated`.
pub const ALL_AUTHENTICATED: &str = "system:authenticated";

/// The group of anonymous requests, `system:unauthenticated`.
pub const ALL_UNAUTHENTICATED: &str = "system:unauthenticated";

/// The group whose members may do anything, `system:masters`.
pub const SYSTEM_MASTERS: &str = "system:masters";

/// The user name of a service account: `system:serviceaccount:<namespace>:<name>`.
///
/// # Examples
///
/// ```
/// use orchestra_core::rbac::service_account_username;
///
/// assert_eq!(service_account_username("kube-system", "default"), "system:serviceaccount:kube-system:default");
/// ```
pub fn service_account_username(namespace: &str, name: &str) -> String {
    format!("{SERVICE_ACCOUNT_USERNAME_PREFIX}{namespace}:{name}")
}

/// What a request is, as the authorizer sees it (Kubernetes' `authorizer.Attributes`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    /// The user name (`alice`, `system:serviceaccount:default:builder`, `system:anonymous`).
    pub user: String,
    /// The groups of the user (`system:authenticated`, `system:masters`, ...).
    pub groups: Vec<String>,
    /// The verb: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection` or a custom one (`impersonate`, `bind`, `escalate`, ...); for a
    /// non-resource request, the lower-case HTTP method.
    pub verb: String,
    /// What the request is on.
    pub request: RequestTarget,
}

/// What a request is on: a resource, or a non-resource path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestTarget {
    /// A request on a resource (`/api/v1/namespaces/default/pods/web`).
    Resource(ResourceAttributes),
    /// A request on a path outside the resource tree (`/healthz`, `/apis`, `/version`).
    NonResource {
        /// The request path.
        path: String,
    },
}

impl Default for RequestTarget {
    fn default() -> Self {
        RequestTarget::NonResource {
            path: String::new(),
        }
    }
}

/// The resource a resource request is on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceAttributes {
    /// The API group, `""` for the core group.
    pub api_group: String,
    /// The resource, in the plural (`pods`, `deployments`).
    pub resource: String,
    /// The subresource (`log`, `status`, `scale`), if any.
    pub subresource: Option<String>,
    /// The namespace; `None` (or `Some("")`) for cluster-scoped resources and requests across
    /// all namespaces.
    pub namespace: Option<String>,
    /// The object's name; `None` for requests on a collection (`list`, `watch`, `create`,
    /// `deletecollection`).
    pub name: Option<String>,
}

impl Attributes {
    /// A request by `user` (no groups yet) to `verb` the `resource` of `api_group`, across all
    /// namespaces and on the whole collection until [`in_namespace`](Self::in_namespace) and
    /// [`named`](Self::named) say otherwise.
    pub fn resource(
        user: impl Into<String>,
        verb: impl Into<String>,
        api_group: impl Into<String>,
        resource: impl Into<String>,
    ) -> Attributes {
        Attributes {
            user: user.into(),
            groups: Vec::new(),
            verb: verb.into(),
            request: RequestTarget::Resource(ResourceAttributes {
                api_group: api_group.into(),
                resource: resource.into(),
                ..ResourceAttributes::default()
            }),
        }
    }

    /// A request by `user` (no groups yet) to `verb` the non-resource `path`.
    pub fn non_resource(
        user: impl Into<String>,
        verb: impl Into<String>,
        path: impl Into<String>,
    ) -> Attributes {
        Attributes {
            user: user.into(),
            groups: Vec::new(),
            verb: verb.into(),
            request: RequestTarget::NonResource { path: path.into() },
        }
    }

    /// This request with the user in `groups` (replacing any groups given before).
    pub fn with_groups<I, S>(mut self, groups: I) -> Attributes
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.groups = groups.into_iter().map(Into::into).collect();
        self
    }

    /// This resource request in `namespace`; no effect on a non-resource request.
    pub fn in_namespace(mut self, namespace: impl Into<String>) -> Attributes {
        if let RequestTarget::Resource(resource) = &mut self.request {
            resource.namespace = Some(namespace.into());
        }
        self
    }

    /// This resource request on the object `name`; no effect on a non-resource request.
    pub fn named(mut self, name: impl Into<String>) -> Attributes {
        if let RequestTarget::Resource(resource) = &mut self.request {
            resource.name = Some(name.into());
        }
        self
    }

    /// This resource request on the subresource `subresource` (`log`, `scale`); no effect on a
    /// non-resource request.
    pub fn on_subresource(mut self, subresource: impl Into<String>) -> Attributes {
        if let RequestTarget::Resource(resource) = &mut self.request {
            resource.subresource = Some(subresource.into());
        }
        self
    }

    /// The namespace of a resource request, `None` when it has none (or an empty one) and for
    /// non-resource requests.
    pub fn namespace(&self) -> Option<&str> {
        match &self.request {
            RequestTarget::Resource(resource) => non_empty(resource.namespace.as_deref()),
            RequestTarget::NonResource { .. } => None,
        }
    }
}

/// What RBAC says of a request. RBAC never denies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A rule allows the request.
    Allow {
        /// Which binding, role and subject allowed it, as Kubernetes words it:
        /// `RBAC: allowed by ClusterRoleBinding "cluster-admin" of ClusterRole "cluster-admin" to Group "system:masters"`.
        reason: String,
    },
    /// No rule allows the request; another authorizer may, or the request is refused.
    NoOpinion {
        /// Empty, or the roles that bindings of the user reference but that do not exist.
        reason: String,
    },
}

impl Decision {
    /// Whether this is [`Decision::Allow`].
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    /// The reason given.
    pub fn reason(&self) -> &str {
        match self {
            Decision::Allow { reason } | Decision::NoOpinion { reason } => reason,
        }
    }
}

/// Whether `rule` allows the request `attributes` (Kubernetes' `RuleAllows`): see the
/// [module documentation](self).
///
/// # Examples
///
/// ```
/// use orchestra_core::k8s::api::rbac::v1::PolicyRule;
/// use orchestra_core::rbac::{Attributes, rule_allows};
///
/// let rule = PolicyRule {
///     verbs: vec!["get".into()],
///     api_groups: Some(vec!["".into()]),
///     resources: Some(vec!["*/log".into()]),
///     ..PolicyRule::default()
/// };
/// let logs = Attributes::resource("alice", "get", "", "pods").on_subresource("log").named("web-0");
/// assert!(rule_allows(&logs, &rule));
/// assert!(!rule_allows(&Attributes::resource("alice", "get", "", "pods"), &rule));
/// ```
pub fn rule_allows(attributes: &Attributes, rule: &PolicyRule) -> bool {
    if !verb_matches(rule, &attributes.verb) {
        return false;
    }
    match &attributes.request {
        RequestTarget::Resource(resource) => {
            let subresource = resource.subresource.as_deref().unwrap_or("");
            let combined = if subresource.is_empty() {
                resource.resource.clone()
            } else {
                format!("{}/{subresource}", resource.resource)
            };
            api_group_matches(rule, &resource.api_group)
                && resource_matches(rule, &combined, subresource)
                && resource_name_matches(rule, resource.name.as_deref().unwrap_or(""))
        }
        RequestTarget::NonResource { path } => non_resource_url_matches(rule, path),
    }
}

fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == "*" || v == verb)
}

fn api_group_matches(rule: &PolicyRule, group: &str) -> bool {
    rule.api_groups
        .iter()
        .flatten()
        .any(|g| g == "*" || g == group)
}

fn resource_matches(rule: &PolicyRule, combined: &str, subresource: &str) -> bool {
    rule.resources.iter().flatten().any(|r| {
        r == "*"
            || r == combined
            || (!subresource.is_empty()
                && r.strip_prefix("*/")
                    .is_some_and(|rule_sub| rule_sub == subresource))
    })
}

fn resource_name_matches(rule: &PolicyRule, name: &str) -> bool {
    match &rule.resource_names {
        None => true,
        Some(names) => names.is_empty() || names.iter().any(|n| n == name),
    }
}

fn non_resource_url_matches(rule: &PolicyRule, path: &str) -> bool {
    rule.non_resource_urls.iter().flatten().any(|url| {
        url == "*"
            || url == path
            || (url.ends_with('*') && path.starts_with(url.trim_end_matches('*')))
    })
}

fn non_empty(namespace: Option<&str>) -> Option<&str> {
    namespace.filter(|ns| !ns.is_empty())
}

/// Whether `subject` is the user (Kubernetes' `appliesToUser`); `namespace` is the binding's,
/// empty for ClusterRoleBindings.
fn applies_to_user(user: &str, groups: &[String], subject: &Subject, namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => user == subject.name,
        "Group" => groups.contains(&subject.name),
        "ServiceAccount" => {
            let sa_namespace = match subject.namespace.as_deref() {
                Some(ns) if !ns.is_empty() => ns,
                _ => namespace,
            };
            if sa_namespace.is_empty() {
                return false;
            }
            user.strip_prefix(SERVICE_ACCOUNT_USERNAME_PREFIX)
                .and_then(|rest| rest.strip_prefix(sa_namespace))
                .and_then(|rest| rest.strip_prefix(':'))
                .is_some_and(|name| name == subject.name)
        }
        _ => false,
    }
}

fn describe_subject(subject: &Subject, binding_namespace: &str) -> String {
    if subject.kind == "ServiceAccount" {
        let namespace = match subject.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => ns,
            _ => binding_namespace,
        };
        format!("{} \"{}/{namespace}\"", subject.kind, subject.name)
    } else {
        format!("{} {:?}", subject.kind, subject.name)
    }
}

/// Where a rule came from: a binding and the subject of it that matched.
#[derive(Clone, Copy)]
enum Source<'a> {
    Cluster(&'a ClusterRoleBinding, &'a Subject),
    Namespaced(&'a RoleBinding, &'a str, &'a Subject),
}

impl fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Cluster(binding, subject) => write!(
                f,
                "ClusterRoleBinding {:?} of {} {:?} to {}",
                name_of(&binding.metadata),
                binding.role_ref.kind,
                binding.role_ref.name,
                describe_subject(subject, "")
            ),
            Source::Namespaced(binding, namespace, subject) => write!(
                f,
                "RoleBinding \"{}/{namespace}\" of {} {:?} to {}",
                name_of(&binding.metadata),
                binding.role_ref.kind,
                binding.role_ref.name,
                describe_subject(subject, namespace)
            ),
        }
    }
}

fn name_of(metadata: &ObjectMeta) -> &str {
    metadata.name.as_deref().unwrap_or("")
}

/// What the rule walk meets: a rule and where it came from, or a missing role.
enum Visit<'a> {
    Rule(Source<'a>, &'a PolicyRule),
    Missing(String),
}

/// The RBAC authorizer over a snapshot of Roles, ClusterRoles, RoleBindings and
/// ClusterRoleBindings, with ClusterRole aggregation evaluated: see the
/// [module documentation](self).
///
/// Objects with the same name (and namespace) as an earlier one are ignored, as are Roles and
/// RoleBindings without a namespace.
///
/// # Examples
///
/// ```
/// use orchestra_core::k8s::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
/// use orchestra_core::k8s::apimachinery::pkg::apis::meta::v1::ObjectMeta;
/// use orchestra_core::rbac::{Attributes, Authorizer};
///
/// let meta = |name: &str| ObjectMeta {
///     name: Some(name.into()),
///     namespace: Some("dev".into()),
///     ..ObjectMeta::default()
/// };
/// let role = Role {
///     metadata: meta("pod-reader"),
///     rules: Some(vec![PolicyRule {
///         verbs: vec!["get".into(), "list".into()],
///         api_groups: Some(vec!["".into()]),
///         resources: Some(vec!["pods".into()]),
///         ..PolicyRule::default()
///     }]),
/// };
/// let binding = RoleBinding {
///     metadata: meta("read-pods"),
///     role_ref: RoleRef {
///         api_group: "rbac.authorization.k8s.io".into(),
///         kind: "Role".into(),
///         name: "pod-reader".into(),
///     },
///     subjects: Some(vec![Subject { kind: "User".into(), name: "jane".into(), ..Subject::default() }]),
/// };
/// let authorizer = Authorizer::new(&[role], &[], &[binding], &[]);
///
/// let in_dev = Attributes::resource("jane", "list", "", "pods").in_namespace("dev");
/// assert_eq!(
///     authorizer.authorize(&in_dev).reason(),
///     r#"RBAC: allowed by RoleBinding "read-pods/dev" of Role "pod-reader" to User "jane""#,
/// );
/// let in_prod = Attributes::resource("jane", "list", "", "pods").in_namespace("prod");
/// assert!(!authorizer.authorize(&in_prod).is_allowed());
/// assert_eq!(authorizer.rules_for("jane", &[], Some("dev")).len(), 1);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Authorizer {
    /// Rules of each Role, by namespace and name.
    roles: HashMap<(String, String), Vec<PolicyRule>>,
    /// Rules of each ClusterRole, aggregated, by name.
    cluster_roles: HashMap<String, Vec<PolicyRule>>,
    /// RoleBindings by namespace, in the order given.
    role_bindings: HashMap<String, Vec<RoleBinding>>,
    /// ClusterRoleBindings in the order given.
    cluster_role_bindings: Vec<ClusterRoleBinding>,
}

impl Authorizer {
    /// The authorizer over these objects (cloned), with ClusterRole aggregation evaluated.
    pub fn new<'a>(
        roles: impl IntoIterator<Item = &'a Role>,
        cluster_roles: impl IntoIterator<Item = &'a ClusterRole>,
        role_bindings: impl IntoIterator<Item = &'a RoleBinding>,
        cluster_role_bindings: impl IntoIterator<Item = &'a ClusterRoleBinding>,
    ) -> Authorizer {
        let mut authorizer = Authorizer::default();
        for role in roles {
            let Some(namespace) = non_empty(role.metadata.namespace.as_deref()) else {
                continue;
            };
            authorizer
                .roles
                .entry((namespace.to_owned(), name_of(&role.metadata).to_owned()))
                .or_insert_with(|| role.rules.clone().unwrap_or_default());
        }
        authorizer.cluster_roles = aggregate(cluster_roles);
        for binding in role_bindings {
            let Some(namespace) = non_empty(binding.metadata.namespace.as_deref()) else {
                continue;
            };
            let bindings = authorizer
                .role_bindings
                .entry(namespace.to_owned())
                .or_default();
            if !bindings
                .iter()
                .any(|b| b.metadata.name == binding.metadata.name)
            {
                bindings.push(binding.clone());
            }
        }
        for binding in cluster_role_bindings {
            if !authorizer
                .cluster_role_bindings
                .iter()
                .any(|b| b.metadata.name == binding.metadata.name)
            {
                authorizer.cluster_role_bindings.push(binding.clone());
            }
        }
        authorizer
    }

    /// The rules of the ClusterRole `name`, after aggregation; `None` if there is none.
    pub fn cluster_role_rules(&self, name: &str) -> Option<&[PolicyRule]> {
        self.cluster_roles.get(name).map(Vec::as_slice)
    }

    /// The rules of the Role `name` in `namespace`; `None` if there is none.
    pub fn role_rules(&self, namespace: &str, name: &str) -> Option<&[PolicyRule]> {
        self.roles
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(Vec::as_slice)
    }

    /// Whether RBAC allows the request (Kubernetes' `RBACAuthorizer.Authorize`).
    pub fn authorize(&self, attributes: &Attributes) -> Decision {
        let mut allowed_by = None;
        let mut missing = Vec::new();
        self.visit_rules_for(
            &attributes.user,
            &attributes.groups,
            attributes.namespace(),
            |visit| match visit {
                Visit::Rule(source, rule) => {
                    if rule_allows(attributes, rule) {
                        allowed_by = Some(source.to_string());
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                }
                Visit::Missing(error) => {
                    missing.push(error);
                    ControlFlow::Continue(())
                }
            },
        );
        if let Some(source) = allowed_by {
            return Decision::Allow {
                reason: format!("RBAC: allowed by {source}"),
            };
        }
        let reason = match missing.as_slice() {
            [] => String::new(),
            [one] => format!("RBAC: {one}"),
            many => format!("RBAC: [{}]", many.join(", ")),
        };
        Decision::NoOpinion { reason }
    }

    /// Every rule that applies to `user` in `groups` in `namespace` (`None` for cluster-wide
    /// requests: ClusterRoleBindings only), in the order the authorizer considers them,
    /// duplicates kept: what a `SelfSubjectRulesReview` reports (Kubernetes' `RulesFor`).
    pub fn rules_for(
        &self,
        user: &str,
        groups: &[String],
        namespace: Option<&str>,
    ) -> Vec<PolicyRule> {
        let mut rules = Vec::new();
        self.visit_rules_for(user, groups, non_empty(namespace), |visit| {
            if let Visit::Rule(_, rule) = visit {
                rules.push(rule.clone());
            }
            ControlFlow::Continue(())
        });
        rules
    }

    /// Kubernetes' `VisitRulesFor`: the rules of ClusterRoleBindings, then of the namespace's
    /// RoleBindings, until the visitor breaks.
    fn visit_rules_for<'a>(
        &'a self,
        user: &str,
        groups: &[String],
        namespace: Option<&'a str>,
        mut visitor: impl FnMut(Visit<'a>) -> ControlFlow<()>,
    ) {
        for binding in &self.cluster_role_bindings {
            let Some(subject) = binding
                .subjects
                .iter()
                .flatten()
                .find(|s| applies_to_user(user, groups, s, ""))
            else {
                continue;
            };
            let source = Source::Cluster(binding, subject);
            if self
                .visit_role(&binding.role_ref, None, source, &mut visitor)
                .is_break()
            {
                return;
            }
        }
        let Some(namespace) = namespace else {
            return;
        };
        for binding in self.role_bindings.get(namespace).into_iter().flatten() {
            let Some(subject) = binding
                .subjects
                .iter()
                .flatten()
                .find(|s| applies_to_user(user, groups, s, namespace))
            else {
                continue;
            };
            let source = Source::Namespaced(binding, namespace, subject);
            if self
                .visit_role(&binding.role_ref, Some(namespace), source, &mut visitor)
                .is_break()
            {
                return;
            }
        }
    }

    fn visit_role<'a>(
        &'a self,
        role_ref: &RoleRef,
        namespace: Option<&str>,
        source: Source<'a>,
        visitor: &mut impl FnMut(Visit<'a>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let rules = match (role_ref.kind.as_str(), namespace) {
            ("ClusterRole", _) => self.cluster_roles.get(&role_ref.name).ok_or_else(|| {
                format!(
                    "clusterrole.{RBAC_GROUP} {:?} not found",
                    role_ref.name.as_str()
                )
            }),
            ("Role", Some(namespace)) => self
                .roles
                .get(&(namespace.to_owned(), role_ref.name.clone()))
                .ok_or_else(|| format!("role.{RBAC_GROUP} {:?} not found", role_ref.name.as_str())),
            ("Role", None) => Err(format!(
                "role.{RBAC_GROUP} {:?} not found",
                role_ref.name.as_str()
            )),
            (other, _) => Err(format!("unsupported role reference kind: {other:?}")),
        };
        match rules {
            Ok(rules) => {
                for rule in rules {
                    visitor(Visit::Rule(source, rule))?;
                }
                ControlFlow::Continue(())
            }
            Err(error) => visitor(Visit::Missing(error)),
        }
    }
}

/// The rules of every ClusterRole by name, aggregation evaluated to its fixed point.
/// The rules every aggregated ClusterRole among `cluster_roles` has once aggregation has
/// converged, by name (what the ClusterRole aggregation controller writes into them); roles
/// without an `aggregationRule` are not in the map.
pub fn aggregated_rules<'a>(
    cluster_roles: impl IntoIterator<Item = &'a ClusterRole>,
) -> BTreeMap<String, Vec<PolicyRule>> {
    let roles: Vec<&ClusterRole> = cluster_roles.into_iter().collect();
    let mut all = aggregate(roles.iter().copied());
    roles
        .iter()
        .filter(|role| role.aggregation_rule.is_some())
        .filter_map(|role| {
            let name = name_of(&role.metadata);
            all.remove(name).map(|rules| (name.to_owned(), rules))
        })
        .collect()
}

fn aggregate<'a>(
    cluster_roles: impl IntoIterator<Item = &'a ClusterRole>,
) -> HashMap<String, Vec<PolicyRule>> {
    // By name, as the aggregation controller lists them; the first of a name wins.
    let mut by_name: BTreeMap<&str, &ClusterRole> = BTreeMap::new();
    for role in cluster_roles {
        by_name.entry(name_of(&role.metadata)).or_insert(role);
    }
    let mut rules: BTreeMap<&str, Vec<PolicyRule>> = by_name
        .iter()
        .map(|(name, role)| {
            let own = if role.aggregation_rule.is_some() {
                Vec::new()
            } else {
                role.rules.clone().unwrap_or_default()
            };
            (*name, own)
        })
        .collect();
    let aggregated: Vec<(&str, Vec<Selector>)> = by_name
        .iter()
        .filter_map(|(name, role)| {
            role.aggregation_rule
                .as_ref()
                .map(|rule| (*name, selectors(rule)))
        })
        .collect();
    let empty = BTreeMap::new();
    // Every pass only adds rules (it starts from nothing and reads supersets of what the pass
    // before read), and there are finitely many, so this ends.
    loop {
        let mut changed = false;
        for (name, selectors) in &aggregated {
            let mut new: Vec<PolicyRule> = Vec::new();
            for selector in selectors {
                for (other, role) in &by_name {
                    if other == name
                        || !selector.matches(role.metadata.labels.as_ref().unwrap_or(&empty))
                    {
                        continue;
                    }
                    for rule in rules.get(other).into_iter().flatten() {
                        if !new.contains(rule) {
                            new.push(rule.clone());
                        }
                    }
                }
            }
            if let Some(current) = rules.get_mut(name) {
                if current.len() != new.len() {
                    changed = true;
                }
                *current = new;
            }
        }
        if !changed {
            break;
        }
    }
    rules
        .into_iter()
        .map(|(name, rules)| (name.to_owned(), rules))
        .collect()
}

fn selectors(rule: &AggregationRule) -> Vec<Selector> {
    rule.cluster_role_selectors
        .iter()
        .flatten()
        .map(|selector| {
            Selector::from_label_selector(Some(selector)).unwrap_or_else(|_| Selector::nothing())
        })
        .collect()
}

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];
const READ_WRITE: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn resource_rule(verbs: &[&str], group: &str, resources: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: strings(verbs),
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(strings(resources)),
        ..PolicyRule::default()
    }
}

fn url_rule(verbs: &[&str], urls: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: strings(verbs),
        non_resource_urls: Some(strings(urls)),
        ..PolicyRule::default()
    }
}

fn bootstrap_meta(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    let mut all: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    all.insert(
        "kubernetes.io/bootstrapping".to_owned(),
        "rbac-defaults".to_owned(),
    );
    ObjectMeta {
        name: Some(name.to_owned()),
        labels: Some(all),
        annotations: Some(BTreeMap::from([(
            "rbac.authorization.kubernetes.io/autoupdate".to_owned(),
            "true".to_owned(),
        )])),
        ..ObjectMeta::default()
    }
}

fn cluster_role(name: &str, labels: &[(&str, &str)], rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: bootstrap_meta(name, labels),
        rules: Some(rules),
        aggregation_rule: None,
    }
}

fn aggregated_role(name: &str, labels: &[(&str, &str)], aggregate_label: &str) -> ClusterRole {
    ClusterRole {
        metadata: bootstrap_meta(name, labels),
        rules: None,
        aggregation_rule: Some(AggregationRule {
            cluster_role_selectors: Some(vec![LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    aggregate_label.to_owned(),
                    "true".to_owned(),
                )])),
                match_expressions: None,
            }]),
        }),
    }
}

fn cluster_binding(role: &str, groups: &[&str]) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: bootstrap_meta(role, &[]),
        role_ref: RoleRef {
            api_group: RBAC_GROUP.to_owned(),
            kind: "ClusterRole".to_owned(),
            name: role.to_owned(),
        },
        subjects: Some(
            groups
                .iter()
                .map(|group| Subject {
                    api_group: Some(RBAC_GROUP.to_owned()),
                    kind: "Group".to_owned(),
                    name: (*group).to_owned(),
                    namespace: None,
                })
                .collect(),
        ),
    }
}

/// A ClusterRoleBinding of the bootstrap ClusterRole `role` to the user of the same name.
fn user_binding(role: &str) -> ClusterRoleBinding {
    let mut binding = cluster_binding(role, &[]);
    binding.subjects = Some(vec![Subject {
        api_group: Some(RBAC_GROUP.to_owned()),
        kind: "User".to_owned(),
        name: role.to_owned(),
        namespace: None,
    }]);
    binding
}

/// The user the control plane reaches node agents as (for pods' logs), bound to
/// `system:kubelet-api-admin`.
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";

/// The user name of the scheduler when it calls the API from its own process.
pub const SCHEDULER_USER: &str = "system:kube-scheduler";
/// The user name of the controller manager when it calls the API from its own process.
pub const CONTROLLER_MANAGER_USER: &str = "system:kube-controller-manager";

/// The label that aggregates a ClusterRole into `admin`.
pub const AGGREGATE_TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
/// The label that aggregates a ClusterRole into `edit`.
pub const AGGREGATE_TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
/// The label that aggregates a ClusterRole into `view`.
pub const AGGREGATE_TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

/// The roles of the control plane's own components.
fn component_roles() -> Vec<ClusterRole> {
    const APPS: &str = "apps";
    const COORDINATION: &str = "coordination.k8s.io";
    const EVENTS: &[&str] = &["create", "update", "patch"];
    vec![
        cluster_role(
            SCHEDULER_USER,
            &[],
            vec![
                resource_rule(
                    READ,
                    "",
                    &[
                        "pods",
                        "nodes",
                        "namespaces",
                        "services",
                        "replicationcontrollers",
                    ],
                ),
                resource_rule(READ, APPS, &["replicasets", "deployments"]),
                resource_rule(READ, "scheduling.k8s.io", &["priorityclasses"]),
                resource_rule(&["delete"], "", &["pods"]),
                resource_rule(&["create"], "", &["pods/binding", "bindings"]),
                resource_rule(&["patch", "update"], "", &["pods/status"]),
                resource_rule(EVENTS, "", &["events"]),
                resource_rule(EVENTS, "events.k8s.io", &["events"]),
                resource_rule(READ_WRITE, COORDINATION, &["leases"]),
            ],
        ),
        cluster_role(
            CONTROLLER_MANAGER_USER,
            &[],
            vec![
                resource_rule(READ, "*", &["*"]),
                // The garbage collector's: owners' dependents of any kind are deleted (or
                // orphaned by a patch of their owner references).
                resource_rule(&["update", "patch", "delete"], "*", &["*"]),
                resource_rule(
                    WRITE,
                    "",
                    &[
                        "pods",
                        "pods/status",
                        "replicationcontrollers",
                        "replicationcontrollers/status",
                        "replicationcontrollers/scale",
                        "endpoints",
                        "namespaces",
                        "namespaces/status",
                        "namespaces/finalize",
                        "nodes",
                        "nodes/status",
                        "serviceaccounts",
                        "secrets",
                        "configmaps",
                        "events",
                    ],
                ),
                resource_rule(&["create"], "", &["pods/eviction", "serviceaccounts/token"]),
                resource_rule(
                    WRITE,
                    APPS,
                    &[
                        "deployments",
                        "deployments/status",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/status",
                        "replicasets/scale",
                    ],
                ),
                resource_rule(READ_WRITE, COORDINATION, &["leases"]),
                resource_rule(EVENTS, "events.k8s.io", &["events"]),
            ],
        ),
        cluster_role(
            "system:service-account-issuer-discovery",
            &[],
            vec![url_rule(
                &["get"],
                &["/.well-known/openid-configuration", "/openid/v1/jwks"],
            )],
        ),
        cluster_role(
            "system:auth-delegator",
            &[],
            vec![
                resource_rule(&["create"], "authentication.k8s.io", &["tokenreviews"]),
                resource_rule(
                    &["create"],
                    "authorization.k8s.io",
                    &["subjectaccessreviews"],
                ),
            ],
        ),
        cluster_role(
            "system:kubelet-api-admin",
            &[],
            vec![
                resource_rule(READ, "", &["nodes"]),
                resource_rule(&["proxy"], "", &["nodes"]),
                resource_rule(
                    &["*"],
                    "",
                    &["nodes/log", "nodes/metrics", "nodes/proxy", "nodes/stats"],
                ),
            ],
        ),
        cluster_role(
            "system:node",
            &[],
            vec![
                resource_rule(READ, "", &["nodes", "pods", "services", "endpoints"]),
                resource_rule(
                    &["create", "update", "patch", "delete"],
                    "",
                    &["nodes", "nodes/status"],
                ),
                resource_rule(&["update", "patch", "delete"], "", &["pods", "pods/status"]),
                resource_rule(&["create"], "", &["pods/eviction", "serviceaccounts/token"]),
                resource_rule(&["get"], "", &["secrets", "configmaps", "serviceaccounts"]),
                resource_rule(EVENTS, "", &["events"]),
                resource_rule(EVENTS, "events.k8s.io", &["events"]),
                resource_rule(READ_WRITE, COORDINATION, &["leases"]),
            ],
        ),
    ]
}

/// The default ClusterRoles and ClusterRoleBindings of an API server (the part of Kubernetes'
/// bootstrap policy for what Orchestra serves), labelled `kubernetes.io/bootstrapping:
/// rbac-defaults` and annotated `rbac.authorization.kubernetes.io/autoupdate: "true"` as
/// Kubernetes' are:
///
/// - `cluster-admin`: every verb on every resource and non-resource URL, bound to
///   `system:masters`;
/// - `system:discovery`: `get` on `/healthz`, `/livez`, `/readyz`, `/version`, `/version/`,
///   `/api`, `/api/*`, `/apis`, `/apis/*`, `/openapi`, `/openapi/*`, bound to
///   `system:authenticated`;
/// - `system:basic-user`: creating `selfsubjectaccessreviews`, `selfsubjectrulesreviews`
///   (`authorization.k8s.io`) and `selfsubjectreviews` (`authentication.k8s.io`), bound to
///   `system:authenticated`;
/// - `system:public-info-viewer`: `get` on `/healthz`, `/livez`, `/readyz`, `/version`,
///   `/version/`, bound to `system:authenticated` and `system:unauthenticated`;
/// - `admin`, `edit` and `view`, aggregated from the ClusterRoles labelled
///   [`AGGREGATE_TO_ADMIN`], [`AGGREGATE_TO_EDIT`], [`AGGREGATE_TO_VIEW`] (`edit` is itself
///   aggregated into `admin`, `view` into `edit`), and `system:aggregate-to-admin`, `-edit`,
///   `-view` carrying Kubernetes' rules for the kinds Orchestra serves: `view` reads pods (and
///   their `log` and `status`), services, endpoints, configmaps, serviceaccounts, events,
///   replicationcontrollers, namespaces, deployments and replicasets (and their `scale` and
///   `status`); `edit` also reads secrets, writes all of these but endpoints, namespaces,
///   `pods/log` and the `status` subresources, creates `serviceaccounts/token` and impersonates service
///   accounts; `admin` also manages `roles` and `rolebindings` and creates
///   `localsubjectaccessreviews`. Orchestra adds `leases` (`coordination.k8s.io`), which
///   Kubernetes leaves out of these roles: read in `view`, written in `edit`;
/// - `system:kube-scheduler`, bound to the user [`SCHEDULER_USER`]: reads what scheduling
///   reads, binds pods, writes their status, deletes (preempts) pods, records events and holds
///   its leader Lease;
/// - `system:kube-controller-manager`, bound to the user [`CONTROLLER_MANAGER_USER`]: reads,
///   updates, patches and deletes every resource (the garbage collector's need, as Kubernetes'
///   `system:controller:generic-garbage-collector`) and creates what Orchestra's controllers create (one
///   identity for every controller: Kubernetes' per-controller service accounts are not made);
/// - `system:service-account-issuer-discovery`, bound to `system:serviceaccounts`: reading
///   `/.well-known/openid-configuration` and `/openid/v1/jwks`;
/// - `system:auth-delegator` (not bound): creating `tokenreviews` and `subjectaccessreviews`, for
///   services that delegate authentication and authorization to the API server;
/// - `system:kubelet-api-admin`, bound to the user [`KUBELET_CLIENT_USER`]: every verb on
///   the nodes' own endpoints (`nodes/proxy`, `nodes/log`, ...), what the API server needs to read
///   pods' logs from node agents;
/// - `system:node`: what a node agent's requests need, not bound to anyone (as in Kubernetes,
///   node agents are authorized by the node authorizer, which also restricts them to their own
///   node's objects).
///
/// # Examples
///
/// ```
/// use orchestra_core::rbac::{Attributes, Authorizer, bootstrap_policy};
///
/// let (cluster_roles, bindings) = bootstrap_policy();
/// let authorizer = Authorizer::new(&[], &cluster_roles, &[], &bindings);
/// let anonymous = Attributes::non_resource("system:anonymous", "get", "/version")
///     .with_groups(["system:unauthenticated"]);
/// assert!(authorizer.authorize(&anonymous).is_allowed());
/// let admin = authorizer.cluster_role_rules("admin").unwrap_or_default();
/// assert!(admin.iter().any(|rule| rule.resources.iter().flatten().any(|r| r == "rolebindings")));
/// ```
pub fn bootstrap_policy() -> (Vec<ClusterRole>, Vec<ClusterRoleBinding>) {
    const AUTHORIZATION: &str = "authorization.k8s.io";
    const AUTHENTICATION: &str = "authentication.k8s.io";
    const APPS: &str = "apps";
    const COORDINATION: &str = "coordination.k8s.io";
    let roles = vec![
        cluster_role(
            "cluster-admin",
            &[],
            vec![resource_rule(&["*"], "*", &["*"]), url_rule(&["*"], &["*"])],
        ),
        cluster_role(
            "system:discovery",
            &[],
            vec![url_rule(
                &["get"],
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
            )],
        ),
        cluster_role(
            "system:basic-user",
            &[],
            vec![
                resource_rule(
                    &["create"],
                    AUTHORIZATION,
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                resource_rule(&["create"], AUTHENTICATION, &["selfsubjectreviews"]),
            ],
        ),
        cluster_role(
            "system:public-info-viewer",
            &[],
            vec![url_rule(
                &["get"],
                &["/healthz", "/livez", "/readyz", "/version", "/version/"],
            )],
        ),
        aggregated_role("admin", &[], AGGREGATE_TO_ADMIN),
        aggregated_role("edit", &[(AGGREGATE_TO_ADMIN, "true")], AGGREGATE_TO_EDIT),
        aggregated_role("view", &[(AGGREGATE_TO_EDIT, "true")], AGGREGATE_TO_VIEW),
        cluster_role(
            "system:aggregate-to-admin",
            &[(AGGREGATE_TO_ADMIN, "true")],
            vec![
                resource_rule(&["create"], AUTHORIZATION, &["localsubjectaccessreviews"]),
                resource_rule(READ_WRITE, RBAC_GROUP, &["roles", "rolebindings"]),
            ],
        ),
        cluster_role(
            "system:aggregate-to-edit",
            &[(AGGREGATE_TO_EDIT, "true")],
            vec![
                resource_rule(READ, "", &["secrets"]),
                resource_rule(&["impersonate"], "", &["serviceaccounts"]),
                resource_rule(WRITE, "", &["pods"]),
                resource_rule(
                    WRITE,
                    "",
                    &[
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "serviceaccounts",
                        "services",
                        "configmaps",
                        "secrets",
                        "events",
                    ],
                ),
                resource_rule(&["create"], "", &["serviceaccounts/token"]),
                resource_rule(
                    WRITE,
                    APPS,
                    &[
                        "deployments",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/scale",
                    ],
                ),
                resource_rule(WRITE, COORDINATION, &["leases"]),
            ],
        ),
        cluster_role(
            "system:aggregate-to-view",
            &[(AGGREGATE_TO_VIEW, "true")],
            vec![
                resource_rule(
                    READ,
                    "",
                    &[
                        "pods",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "serviceaccounts",
                        "services",
                        "services/status",
                        "endpoints",
                        "configmaps",
                    ],
                ),
                resource_rule(
                    READ,
                    "",
                    &[
                        "events",
                        "pods/status",
                        "namespaces/status",
                        "replicationcontrollers/status",
                        "pods/log",
                    ],
                ),
                resource_rule(READ, "", &["namespaces"]),
                resource_rule(
                    READ,
                    APPS,
                    &[
                        "deployments",
                        "deployments/status",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/status",
                        "replicasets/scale",
                    ],
                ),
                resource_rule(READ, COORDINATION, &["leases"]),
            ],
        ),
    ];
    let roles = [roles, component_roles()].concat();
    let mut kubelet_api_admin = user_binding("system:kubelet-api-admin");
    if let Some(subject) = kubelet_api_admin
        .subjects
        .as_mut()
        .and_then(|s| s.first_mut())
    {
        subject.name = KUBELET_CLIENT_USER.to_owned();
    }
    let bindings = vec![
        cluster_binding(
            "system:service-account-issuer-discovery",
            &["system:serviceaccounts"],
        ),
        kubelet_api_admin,
        user_binding(SCHEDULER_USER),
        user_binding(CONTROLLER_MANAGER_USER),
        cluster_binding("cluster-admin", &[SYSTEM_MASTERS]),
        cluster_binding("system:discovery", &[ALL_AUTHENTICATED]),
        cluster_binding("system:basic-user", &[ALL_AUTHENTICATED]),
        cluster_binding(
            "system:public-info-viewer",
            &[ALL_AUTHENTICATED, ALL_UNAUTHENTICATED],
        ),
    ];
    (roles, bindings)
}
