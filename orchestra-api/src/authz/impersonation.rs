//! Impersonation: a caller acting as another user with the `Impersonate-User`,
//! `Impersonate-Group`, `Impersonate-Uid` and `Impersonate-Extra-<key>` headers (what
//! `kubectl --as`, `--as-group` and `--as-uid` send), as Kubernetes' impersonation filter does.
//!
//! The caller needs the `impersonate` verb on each thing it asks to be: `users` (or, for
//! `system:serviceaccount:<ns>:<name>`, the `serviceaccounts` object `<name>` in `<ns>`),
//! `groups`, `uids` and `userextras/<key>` (the last two in the `authentication.k8s.io` group),
//! by name. The request then runs as the impersonated user: its groups are those asked
//! (a service account asked without groups gets its own), plus `system:authenticated` (or
//! `system:unauthenticated` for `system:anonymous`).

use std::collections::BTreeMap;

use http::HeaderMap;
use orchestra_core::rbac::Attributes;
use orchestra_core::status::{StatusError, StatusReason};

use super::{Authorization, forbidden};
use crate::authn::UserInfo;

/// The header naming the user to act as.
pub const USER_HEADER: &str = "impersonate-user";
/// The header (repeated) naming the groups to act in.
pub const GROUP_HEADER: &str = "impersonate-group";
/// The header naming the uid to act as.
pub const UID_HEADER: &str = "impersonate-uid";
/// The prefix of the headers naming extra attributes (`Impersonate-Extra-<key>`).
pub const EXTRA_HEADER_PREFIX: &str = "impersonate-extra-";

const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// The user `headers` ask to act as, if they ask, once `caller` is found allowed to.
///
/// # Errors
///
/// `400 Bad Request` for groups, uid or extra without a user or for unreadable headers; `403
/// Forbidden` for what the caller may not impersonate.
pub async fn impersonate(
    authz: &Authorization,
    caller: &UserInfo,
    headers: &HeaderMap,
) -> Result<Option<UserInfo>, StatusError> {
    let text = |value: &http::HeaderValue| {
        value.to_str().map(str::to_owned).map_err(|_| {
            StatusError::new(
                StatusReason::BadRequest,
                "impersonation headers must be text",
            )
        })
    };
    let user = headers.get(USER_HEADER).map(text).transpose()?;
    let groups = headers
        .get_all(GROUP_HEADER)
        .iter()
        .map(text)
        .collect::<Result<Vec<String>, StatusError>>()?;
    let uid = headers.get(UID_HEADER).map(text).transpose()?;
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix(EXTRA_HEADER_PREFIX) {
            let key = percent_encoding::percent_decode_str(key)
                .decode_utf8_lossy()
                .to_lowercase();
            extra.entry(key).or_default().push(text(value)?);
        }
    }
    let Some(user) = user else {
        if groups.is_empty() && uid.is_none() && extra.is_empty() {
            return Ok(None);
        }
        return Err(StatusError::new(
            StatusReason::BadRequest,
            "requested impersonation of groups, uid or extra without impersonating a user",
        ));
    };

    let mut checks = Vec::new();
    let ask = |verb_on: Attributes| verb_on.with_groups(caller.groups.iter().cloned());
    match user
        .strip_prefix(SERVICE_ACCOUNT_PREFIX)
        .and_then(|rest| rest.split_once(':'))
    {
        Some((namespace, name)) => checks.push(ask(Attributes::resource(
            &caller.name,
            "impersonate",
            "",
            "serviceaccounts",
        )
        .in_namespace(namespace)
        .named(name))),
        None => checks.push(ask(Attributes::resource(
            &caller.name,
            "impersonate",
            "",
            "users",
        )
        .named(&user))),
    }
    for group in &groups {
        checks.push(ask(Attributes::resource(
            &caller.name,
            "impersonate",
            "",
            "groups",
        )
        .named(group)));
    }
    if let Some(uid) = &uid {
        checks.push(ask(Attributes::resource(
            &caller.name,
            "impersonate",
            "authentication.k8s.io",
            "uids",
        )
        .named(uid)));
    }
    for (key, values) in &extra {
        for value in values {
            checks.push(ask(Attributes::resource(
                &caller.name,
                "impersonate",
                "authentication.k8s.io",
                "userextras",
            )
            .on_subresource(key)
            .named(value)));
        }
    }
    for check in &checks {
        let decision = authz.authorize_attributes(check, None).await;
        if !decision.is_allowed() {
            return Err(forbidden(check, decision.reason()));
        }
    }

    let mut impersonated = UserInfo {
        name: user.clone(),
        uid: uid.unwrap_or_default(),
        groups,
        extra,
    };
    if impersonated.groups.is_empty()
        && let Some((namespace, _)) = user
            .strip_prefix(SERVICE_ACCOUNT_PREFIX)
            .and_then(|rest| rest.split_once(':'))
    {
        impersonated.groups = vec![
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{namespace}"),
        ];
    }
    let implied = if impersonated.is_anonymous() {
        crate::authn::UNAUTHENTICATED_GROUP
    } else {
        crate::authn::AUTHENTICATED_GROUP
    };
    if !impersonated.in_group(implied) {
        impersonated.groups.push(implied.to_owned());
    }
    Ok(Some(impersonated))
}
