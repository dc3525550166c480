//! Authorization: whether the caller may do what a request asks, decided before anything is
//! served, as Kubernetes' authorization filter does.
//!
//! [`authorize`] is the axum middleware behind [`crate::authn::authenticate`]. For every request
//! it:
//!
//! 1. takes the caller ([`UserInfo`]) the authenticator found, and swaps in the user named by
//!    `Impersonate-User`, `Impersonate-Group`, `Impersonate-Uid` and `Impersonate-Extra-*`
//!    headers when the caller may `impersonate` them ([`impersonation`]);
//! 2. reads what the request asks ([`RequestInfo`]: verb, resource, subresource, namespace,
//!    name; or a non-resource path) from its method, path and query alone;
//! 3. asks the authorizers in Kubernetes' order: the `system:masters` group may do anything;
//!    node agents (`system:node:<name>` in `system:nodes`) get what the [`node`] authorizer
//!    grants them; everyone gets what the RBAC objects in the store grant ([`RbacCache`], kept
//!    current by watches). Nothing allowed means `403 Forbidden` with Kubernetes' `Status` and
//!    message (`pods "web" is forbidden: User "bob" cannot get resource "pods" in API group ""
//!    in the namespace "default"`);
//! 4. for requests that write roles or bindings, refuses privilege escalation
//!    ([`escalation`]): a role may only hold rules its author holds (or has `escalate` on it), a
//!    binding may only reference a role whose rules its author holds (or has `bind` on it);
//! 5. for node agents, checks the written object as NodeRestriction does (a node may create only
//!    its own Node, and ask tokens only for the pods bound to it);
//! 6. answers the access reviews itself ([`reviews`]: `SelfSubjectAccessReview`,
//!    `SubjectAccessReview`, `LocalSubjectAccessReview`, `SelfSubjectRulesReview`,
//!    `SelfSubjectReview`, `TokenReview`), the way `kubectl auth can-i` and `kubectl auth
//!    whoami` ask them, and webhook authenticators (Vault, other clusters) check tokens.
//!
//! The user and the request's description go on in the request's extensions, and are copied into
//! the response's for the [`crate::audit`] log.
//!
//! # Differences from Kubernetes
//!
//! - The node authorizer is stricter than Kubernetes': a node reads only its own Node, Lease and
//!   the pods bound to it (Kubernetes lets nodes read every pod and node), and lists and watches
//!   of those only with the field selector that narrows them to it.
//! - Mirror pods are not supported, so a node may not create pods.

pub mod bootstrap;
pub mod escalation;
pub mod impersonation;
pub mod node;
pub mod rbac_cache;
pub mod request_info;
pub mod reviews;

use std::fmt;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use orchestra_core::api::Client;
use orchestra_core::rbac::{Attributes, Decision, RequestTarget};
use orchestra_core::status::{StatusError, StatusReason};

pub use self::rbac_cache::RbacCache;
pub use self::request_info::RequestInfo;
use crate::authn::UserInfo;
use crate::response::failure;
use crate::server::MAX_BODY_BYTES;

/// The group whose members may do anything (Kubernetes' `system:masters`).
pub const PRIVILEGED_GROUP: &str = crate::authn::MASTERS_GROUP;

/// The group of node agents.
pub const NODES_GROUP: &str = crate::authn::NODES_GROUP;

/// The prefix of a node agent's user name: `system:node:<node name>`.
pub const NODE_USER_PREFIX: &str = "system:node:";

/// The authorizers a server asks; see the [module documentation](self). Cheap to clone.
#[derive(Clone)]
pub struct Authorization {
    client: Client,
    rbac: Arc<RbacCache>,
    /// The server's authenticator, for TokenReviews.
    authentication: Option<crate::authn::Authentication>,
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorization").finish_non_exhaustive()
    }
}

impl Authorization {
    /// Authorization by the RBAC objects of `client`'s store (watched from now on: call it
    /// within a tokio runtime) and the node authorizer.
    pub fn new(client: Client) -> Authorization {
        Authorization {
            rbac: Arc::new(RbacCache::start(client.clone())),
            client,
            authentication: None,
        }
    }

    /// Answers TokenReviews with this authenticator (the server's own: [`crate::ApiServerBuilder`]
    /// sets it when it has both); without one they fail with 503.
    #[must_use]
    pub fn with_authentication(
        mut self,
        authentication: crate::authn::Authentication,
    ) -> Authorization {
        self.authentication = Some(authentication);
        self
    }

    /// The cache of RBAC objects decisions are made on.
    pub fn rbac(&self) -> &RbacCache {
        &self.rbac
    }

    /// Whether `user` may do what `info` asks: the privileged group, then the node authorizer
    /// for node agents, then RBAC.
    pub async fn authorize(&self, user: &UserInfo, info: &RequestInfo) -> Decision {
        self.authorize_attributes(&info.attributes(&user.name, &user.groups), Some(info))
            .await
    }

    /// Whether the request `attributes` describe is allowed (`info`, when the request is a real
    /// one, lets the node authorizer read its field selector).
    pub async fn authorize_attributes(
        &self,
        attributes: &Attributes,
        info: Option<&RequestInfo>,
    ) -> Decision {
        if attributes.groups.iter().any(|g| g == PRIVILEGED_GROUP) {
            return Decision::Allow {
                reason: format!("allowed as a member of {PRIVILEGED_GROUP}"),
            };
        }
        if let Some(node_name) = node_name(attributes) {
            let decision = node::authorize(&self.client, node_name, attributes, info).await;
            if decision.is_allowed() {
                return decision;
            }
        }
        self.rbac.authorizer().await.authorize(attributes)
    }
}

/// The node a user is the agent of: `system:node:<name>` in the group `system:nodes`.
pub fn node_name(attributes: &Attributes) -> Option<&str> {
    let name = attributes.user.strip_prefix(NODE_USER_PREFIX)?;
    (!name.is_empty() && attributes.groups.iter().any(|g| g == NODES_GROUP)).then_some(name)
}

/// The `403 Forbidden` of a request the authorizers did not allow, worded as Kubernetes words
/// it.
pub fn forbidden(attributes: &Attributes, reason: &str) -> StatusError {
    let user = &attributes.user;
    let verb = &attributes.verb;
    let mut message = match &attributes.request {
        RequestTarget::NonResource { path } => {
            format!("forbidden: User {user:?} cannot {verb} path {path:?}")
        }
        RequestTarget::Resource(resource) => {
            let mut what = resource.resource.clone();
            if let Some(subresource) = &resource.subresource {
                what = format!("{what}/{subresource}");
            }
            let object = match &resource.name {
                Some(name) => format!("{} {name:?}", resource.resource),
                None => resource.resource.clone(),
            };
            let scope = match resource.namespace.as_deref().filter(|ns| !ns.is_empty()) {
                Some(namespace) => format!("in the namespace {namespace:?}"),
                None => "at the cluster scope".to_owned(),
            };
            format!(
                "{object} is forbidden: User {user:?} cannot {verb} resource {what:?} in API group {:?} {scope}",
                resource.api_group
            )
        }
    };
    if !reason.is_empty() {
        message = format!("{message}: {reason}");
    }
    let mut error = StatusError::new(StatusReason::Forbidden, message);
    if let RequestTarget::Resource(resource) = &attributes.request {
        error.details = Some(Box::new(
            orchestra_core::k8s::apimachinery::pkg::apis::meta::v1::StatusDetails {
                name: resource.name.clone(),
                group: Some(resource.api_group.clone()),
                kind: Some(resource.resource.clone()),
                ..Default::default()
            },
        ));
    }
    error
}

/// The axum middleware: see the [module documentation](self). Use it with
/// [`axum::middleware::from_fn_with_state`], inside the authentication layer.
pub async fn authorize(
    State(authz): State<Authorization>,
    mut request: Request,
    next: Next,
) -> Response {
    let caller = request
        .extensions()
        .get::<UserInfo>()
        .cloned()
        .unwrap_or_else(UserInfo::anonymous);
    let user = match impersonation::impersonate(&authz, &caller, request.headers()).await {
        Ok(Some(user)) => user,
        Ok(None) => caller.clone(),
        Err(error) => return with_identity(failure(&error), &caller, &caller, None),
    };
    let info = RequestInfo::parse(
        request.method(),
        request.uri().path(),
        request.uri().query(),
    );
    let attributes = info.attributes(&user.name, &user.groups);
    let decision = authz.authorize_attributes(&attributes, Some(&info)).await;
    if !decision.is_allowed() {
        let error = forbidden(&attributes, decision.reason());
        return with_identity(failure(&error), &caller, &user, Some(&info));
    }

    // Checks that read the body: escalation, NodeRestriction, the reviews.
    let needs_body = escalation::applies(&info)
        || (node_name(&attributes).is_some() && node::reads_body(&info))
        || reviews::is_review(&info);
    if needs_body {
        let (parts, body) = request.into_parts();
        let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
            Ok(bytes) => bytes,
            Err(error) => {
                let error = StatusError::new(
                    StatusReason::RequestEntityTooLarge,
                    format!("cannot read the request body: {error}"),
                );
                return with_identity(failure(&error), &caller, &user, Some(&info));
            }
        };
        if let Some(response) = reviews::answer(&authz, &user, &info, &parts.headers, &bytes).await
        {
            return with_identity(response, &caller, &user, Some(&info));
        }
        if let Some(node_name) = node_name(&attributes)
            && let Err(error) =
                node::admit(&authz.client, node_name, &info, &parts.headers, &bytes).await
        {
            return with_identity(failure(&error), &caller, &user, Some(&info));
        }
        if escalation::applies(&info)
            && let Err(error) =
                escalation::check(&authz, &user, &info, &parts.headers, &bytes).await
        {
            return with_identity(failure(&error), &caller, &user, Some(&info));
        }
        request = Request::from_parts(parts, Body::from(bytes));
    }
    request.extensions_mut().insert(user.clone());
    request.extensions_mut().insert(info.clone());
    let response = next.run(request).await;
    with_identity(response, &caller, &user, Some(&info))
}

/// Who made a request and what it asked, as the audit log reads them off the response.
#[derive(Clone, Debug)]
pub struct RequestIdentity {
    /// The authenticated caller.
    pub caller: UserInfo,
    /// The user the request ran as: the caller, or the user it impersonated.
    pub user: UserInfo,
    /// What it asked, when that was read.
    pub info: Option<RequestInfo>,
}

fn with_identity(
    mut response: Response,
    caller: &UserInfo,
    user: &UserInfo,
    info: Option<&RequestInfo>,
) -> Response {
    response.extensions_mut().insert(RequestIdentity {
        caller: caller.clone(),
        user: user.clone(),
        info: info.cloned(),
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_worded_as_kubernetes_words_them() {
        let named = Attributes::resource("bob", "get", "", "pods")
            .in_namespace("default")
            .named("web");
        assert_eq!(
            forbidden(&named, "").message,
            r#"pods "web" is forbidden: User "bob" cannot get resource "pods" in API group "" in the namespace "default""#
        );
        let cluster =
            Attributes::resource("bob", "list", "apps", "deployments").on_subresource("scale");
        let error = forbidden(
            &cluster,
            "RBAC: clusterrole.rbac.authorization.k8s.io \"x\" not found",
        );
        assert_eq!(error.code, 403);
        assert_eq!(error.reason, StatusReason::Forbidden);
        assert_eq!(
            error.message,
            r#"deployments is forbidden: User "bob" cannot list resource "deployments/scale" in API group "apps" at the cluster scope: RBAC: clusterrole.rbac.authorization.k8s.io "x" not found"#
        );
        let path = Attributes::non_resource("system:anonymous", "get", "/apis");
        assert_eq!(
            forbidden(&path, "").message,
            r#"forbidden: User "system:anonymous" cannot get path "/apis""#
        );
    }

    #[test]
    fn node_users_need_the_nodes_group() {
        let node =
            Attributes::resource("system:node:n1", "get", "", "pods").with_groups([NODES_GROUP]);
        assert_eq!(node_name(&node), Some("n1"));
        let pretender = Attributes::resource("system:node:n1", "get", "", "pods");
        assert_eq!(node_name(&pretender), None);
        let empty =
            Attributes::resource("system:node:", "get", "", "pods").with_groups([NODES_GROUP]);
        assert_eq!(node_name(&empty), None);
    }
}
