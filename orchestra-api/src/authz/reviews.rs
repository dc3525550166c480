//! The access reviews: questions to the authorizer sent as objects that are answered, not
//! stored (Kubernetes' `authorization.k8s.io/v1` and `authentication.k8s.io/v1` review kinds).
//!
//! | path (POST) | answers |
//! |---|---|
//! | `/apis/authorization.k8s.io/v1/selfsubjectaccessreviews` | may I do this? (`kubectl auth can-i`) |
//! | `/apis/authorization.k8s.io/v1/subjectaccessreviews` | may this user do this? |
//! | `/apis/authorization.k8s.io/v1/namespaces/<ns>/localsubjectaccessreviews` | the same, in one namespace |
//! | `/apis/authorization.k8s.io/v1/selfsubjectrulesreviews` | what may I do in this namespace? (`kubectl auth can-i --list`) |
//! | `/apis/authentication.k8s.io/v1/selfsubjectreviews` | who am I? (`kubectl auth whoami`) |
//! | `/apis/authentication.k8s.io/v1/tokenreviews` | whose is this token? (webhook authenticators) |
//!
//! Each is authorized like any request first (`create` on the review resource: Kubernetes'
//! default `system:basic-user` role grants the self reviews to every authenticated user). The
//! answer is the request object with its `status` filled in, `201 Created`.

use axum::http::StatusCode;
use axum::response::Response;
use k8s_openapi::api::authentication::v1::{
    SelfSubjectReview, SelfSubjectReviewStatus, UserInfo as ReviewUserInfo,
};
use k8s_openapi::api::authorization::v1::{
    LocalSubjectAccessReview, NonResourceRule, ResourceRule, SelfSubjectAccessReview,
    SelfSubjectRulesReview, SubjectAccessReview, SubjectAccessReviewSpec,
    SubjectAccessReviewStatus, SubjectRulesReviewStatus,
};
use orchestra_core::rbac::Attributes;
use orchestra_core::status::{StatusError, StatusReason};
use serde::Serialize;

use super::{Authorization, RequestInfo, node_name};
use crate::authn::UserInfo;
use crate::response::{failure, json};

const AUTHORIZATION_GROUP: &str = "authorization.k8s.io";
const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";

/// The review resources, as `(group, plural, namespaced)`.
pub const REVIEWS: [(&str, &str, bool); 6] = [
    (AUTHORIZATION_GROUP, "selfsubjectaccessreviews", false),
    (AUTHORIZATION_GROUP, "subjectaccessreviews", false),
    (AUTHORIZATION_GROUP, "localsubjectaccessreviews", true),
    (AUTHORIZATION_GROUP, "selfsubjectrulesreviews", false),
    (AUTHENTICATION_GROUP, "selfsubjectreviews", false),
    (AUTHENTICATION_GROUP, "tokenreviews", false),
];

/// Whether the request is one of the reviews.
pub fn is_review(info: &RequestInfo) -> bool {
    info.is_resource_request
        && info.api_version == "v1"
        && info.subresource.is_none()
        && REVIEWS
            .iter()
            .any(|(group, plural, _)| info.api_group == *group && info.resource == *plural)
}

fn invalid(message: impl Into<String>) -> StatusError {
    StatusError::new(StatusReason::Invalid, message)
}

fn created<T: Serialize>(object: &T) -> Response {
    json(StatusCode::CREATED, object)
}

/// Answers the review the request is, `None` if it is not one.
pub async fn answer(
    authz: &Authorization,
    user: &UserInfo,
    info: &RequestInfo,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Option<Response> {
    if !is_review(info) {
        return None;
    }
    if info.verb != "create" {
        return Some(failure(&StatusError::new(
            StatusReason::MethodNotAllowed,
            format!("{} may only be created", info.resource),
        )));
    }
    let outcome = match info.resource.as_str() {
        "selfsubjectaccessreviews" => self_access(authz, user, headers, body).await,
        "subjectaccessreviews" => subject_access(authz, headers, body).await,
        "localsubjectaccessreviews" => local_access(authz, info, headers, body).await,
        "selfsubjectrulesreviews" => self_rules(authz, user, headers, body).await,
        "tokenreviews" => token_review(authz, headers, body).await,
        _ => self_subject(user, headers, body),
    };
    Some(outcome.unwrap_or_else(|error| failure(&error)))
}

fn decode<T: serde::de::DeserializeOwned>(
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<T, StatusError> {
    let value = crate::server::decode_request_body(headers, body)?;
    serde_json::from_value(value).map_err(|error| {
        StatusError::new(
            StatusReason::BadRequest,
            format!("the request body is not a valid review: {error}"),
        )
    })
}

/// The attributes a review's spec asks about, for `user` in `groups`.
fn spec_attributes(
    spec: &SubjectAccessReviewSpec,
    user: &str,
    groups: &[String],
) -> Result<Attributes, StatusError> {
    let attributes = match (&spec.resource_attributes, &spec.non_resource_attributes) {
        (Some(resource), None) => {
            let verb = resource.verb.clone().unwrap_or_default();
            let mut attributes = Attributes::resource(
                user,
                verb,
                resource.group.clone().unwrap_or_default(),
                resource.resource.clone().unwrap_or_default(),
            );
            if let Some(namespace) = resource.namespace.as_deref().filter(|ns| !ns.is_empty()) {
                attributes = attributes.in_namespace(namespace);
            }
            if let Some(name) = resource.name.as_deref().filter(|n| !n.is_empty()) {
                attributes = attributes.named(name);
            }
            if let Some(sub) = resource.subresource.as_deref().filter(|s| !s.is_empty()) {
                attributes = attributes.on_subresource(sub);
            }
            attributes
        }
        (None, Some(path)) => Attributes::non_resource(
            user,
            path.verb.clone().unwrap_or_default(),
            path.path.clone().unwrap_or_default(),
        ),
        _ => {
            return Err(invalid(
                "spec: Invalid value: exactly one of nonResourceAttributes or resourceAttributes must be specified",
            ));
        }
    };
    Ok(attributes.with_groups(groups.iter().cloned()))
}

async fn decide(authz: &Authorization, attributes: &Attributes) -> SubjectAccessReviewStatus {
    let decision = authz.authorize_attributes(attributes, None).await;
    SubjectAccessReviewStatus {
        allowed: decision.is_allowed(),
        reason: Some(decision.reason().to_owned()).filter(|r| !r.is_empty()),
        ..SubjectAccessReviewStatus::default()
    }
}

async fn self_access(
    authz: &Authorization,
    user: &UserInfo,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<Response, StatusError> {
    let mut review: SelfSubjectAccessReview = decode(headers, body)?;
    let spec = SubjectAccessReviewSpec {
        resource_attributes: review.spec.resource_attributes.clone(),
        non_resource_attributes: review.spec.non_resource_attributes.clone(),
        ..SubjectAccessReviewSpec::default()
    };
    let attributes = spec_attributes(&spec, &user.name, &user.groups)?;
    review.status = Some(decide(authz, &attributes).await);
    Ok(created(&review))
}

fn check_subject(spec: &SubjectAccessReviewSpec) -> Result<(), StatusError> {
    let no_user = spec.user.as_deref().unwrap_or_default().is_empty();
    if no_user && spec.groups.as_ref().is_none_or(Vec::is_empty) {
        return Err(invalid(
            "spec.user: Invalid value: \"\": at least one of user or group must be specified",
        ));
    }
    Ok(())
}

async fn subject_access(
    authz: &Authorization,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<Response, StatusError> {
    let mut review: SubjectAccessReview = decode(headers, body)?;
    review.status = Some(subject_status(authz, &review.spec).await?);
    Ok(created(&review))
}

/// The answer to a review of another subject (`spec.user`, `spec.groups`).
async fn subject_status(
    authz: &Authorization,
    spec: &SubjectAccessReviewSpec,
) -> Result<SubjectAccessReviewStatus, StatusError> {
    check_subject(spec)?;
    let attributes = spec_attributes(
        spec,
        spec.user.as_deref().unwrap_or_default(),
        spec.groups.as_deref().unwrap_or_default(),
    )?;
    Ok(decide(authz, &attributes).await)
}

async fn local_access(
    authz: &Authorization,
    info: &RequestInfo,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<Response, StatusError> {
    let mut review: LocalSubjectAccessReview = decode(headers, body)?;
    let namespace = info.namespace.clone().unwrap_or_default();
    if let Some(resource) = review.spec.resource_attributes.as_mut() {
        match resource.namespace.as_deref() {
            None | Some("") => resource.namespace = Some(namespace.clone()),
            Some(given) if given == namespace => {}
            Some(given) => {
                return Err(invalid(format!(
                    "spec.resourceAttributes.namespace: Invalid value: {given:?}: must match metadata.namespace {namespace:?}"
                )));
            }
        }
    } else {
        return Err(invalid(
            "spec.nonResourceAttributes: Invalid value: disallowed on this kind of request",
        ));
    }
    review.status = Some(subject_status(authz, &review.spec).await?);
    Ok(created(&review))
}

async fn self_rules(
    authz: &Authorization,
    user: &UserInfo,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<Response, StatusError> {
    let mut review: SelfSubjectRulesReview = decode(headers, body)?;
    let namespace = review.spec.namespace.clone().filter(|ns| !ns.is_empty());
    let rules =
        authz
            .rbac
            .authorizer()
            .await
            .rules_for(&user.name, &user.groups, namespace.as_deref());
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for rule in rules {
        if let Some(urls) = rule.non_resource_urls.filter(|urls| !urls.is_empty()) {
            non_resource_rules.push(NonResourceRule {
                verbs: rule.verbs.clone(),
                non_resource_urls: Some(urls),
            });
        }
        if rule.resources.as_ref().is_some_and(|r| !r.is_empty()) {
            resource_rules.push(ResourceRule {
                verbs: rule.verbs,
                api_groups: rule.api_groups,
                resources: rule.resources,
                resource_names: rule.resource_names,
            });
        }
    }
    let node =
        Attributes::resource(&user.name, "", "", "").with_groups(user.groups.iter().cloned());
    // The node authorizer's grants depend on what is bound to the node: they cannot be listed.
    let incomplete = node_name(&node).is_some();
    review.status = Some(SubjectRulesReviewStatus {
        resource_rules,
        non_resource_rules,
        incomplete,
        evaluation_error: incomplete
            .then(|| "node authorizer: rules depend on the pods bound to the node".to_owned()),
    });
    Ok(created(&review))
}

fn self_subject(
    user: &UserInfo,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<Response, StatusError> {
    let mut review: SelfSubjectReview = if body.iter().all(u8::is_ascii_whitespace) {
        SelfSubjectReview::default()
    } else {
        decode(headers, body)?
    };
    review.status = Some(SelfSubjectReviewStatus {
        user_info: Some(ReviewUserInfo {
            username: Some(user.name.clone()),
            uid: Some(user.uid.clone()).filter(|uid| !uid.is_empty()),
            groups: Some(user.groups.clone()),
            extra: Some(user.extra.clone()).filter(|extra| !extra.is_empty()),
        }),
    });
    Ok(created(&review))
}

/// A TokenReview: who the token in `spec.token` authenticates as, by the server's authenticator.
/// Audience-scoped reviews (`spec.audiences`) are answered unauthenticated, with the reason:
/// the authenticator checks tokens for the API server's own audiences only.
async fn token_review(
    authz: &Authorization,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<Response, StatusError> {
    use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewStatus};
    let mut review: TokenReview = decode(headers, body)?;
    let Some(authentication) = &authz.authentication else {
        return Err(StatusError::new(
            StatusReason::ServiceUnavailable,
            "this server has no authenticator to review tokens with",
        ));
    };
    let token = review.spec.token.clone().unwrap_or_default();
    let status = if review
        .spec
        .audiences
        .as_ref()
        .is_some_and(|a| !a.is_empty())
    {
        TokenReviewStatus {
            authenticated: Some(false),
            error: Some("audience-scoped token reviews are not supported".to_owned()),
            ..TokenReviewStatus::default()
        }
    } else {
        let mut presented = http::HeaderMap::new();
        let user = match http::HeaderValue::from_str(&format!("Bearer {token}")) {
            Ok(value) if !token.is_empty() => {
                presented.insert(http::header::AUTHORIZATION, value);
                authentication.user_of(&presented).await
            }
            _ => Ok(None),
        };
        match user {
            Ok(Some(user)) => TokenReviewStatus {
                authenticated: Some(true),
                user: Some(ReviewUserInfo {
                    username: Some(user.name),
                    uid: Some(user.uid).filter(|uid| !uid.is_empty()),
                    groups: Some(user.groups),
                    extra: Some(user.extra).filter(|extra| !extra.is_empty()),
                }),
                ..TokenReviewStatus::default()
            },
            Ok(None) => TokenReviewStatus {
                authenticated: Some(false),
                error: Some("no token to review".to_owned()),
                ..TokenReviewStatus::default()
            },
            Err(error) => TokenReviewStatus {
                authenticated: Some(false),
                error: Some(error.to_string()),
                ..TokenReviewStatus::default()
            },
        }
    };
    review.status = Some(status);
    Ok(created(&review))
}
