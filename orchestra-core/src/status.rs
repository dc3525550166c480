//! Errors shaped as Kubernetes `Status` objects.
//!
//! Every error Orchestra's API returns — a request that fails validation, an object that does not
//! exist, a conflicting update — is a [`StatusError`]: an HTTP code, a machine-readable
//! [`StatusReason`], a message, and details that name the object and list one cause per field
//! problem. [`StatusError::to_status`] gives the `Status` object Kubernetes clients expect.
//!
//! # Examples
//!
//! ```
//! use orchestra_core::k8s::api::apps::v1::Deployment;
//! use orchestra_core::resource::ApiResource;
//! use orchestra_core::status::{StatusError, StatusReason};
//! use orchestra_core::validation::field::{Error, Path};
//!
//! let replicas = Path::new("spec").child("replicas");
//! let error = StatusError::invalid(
//!     &ApiResource::of::<Deployment>(),
//!     "web",
//!     &[Error::invalid(&replicas, -1, "must be greater than or equal to 0")],
//! );
//! assert_eq!(error.code, 422);
//! assert_eq!(error.reason, StatusReason::Invalid);
//! assert_eq!(
//!     error.message,
//!     "Deployment.apps \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
//! );
//! let status = error.to_status();
//! let cause = &status.details.unwrap().causes.unwrap()[0];
//! assert_eq!(cause.field.as_deref(), Some("spec.replicas"));
//! ```

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};

use crate::resource::ApiResource;
use crate::validation::field;

/// Why a request failed, as Kubernetes' `metav1.StatusReason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StatusReason {
    /// The request itself is malformed (400).
    BadRequest,
    /// The object failed validation (422).
    Invalid,
    /// The object does not exist (404).
    NotFound,
    /// The object already exists (409).
    AlreadyExists,
    /// The update conflicts with the stored object (409).
    Conflict,
    /// The requested revision is gone (410).
    Expired,
    /// The caller may not do this (403).
    Forbidden,
    /// The caller is not authenticated (401).
    Unauthorized,
    /// The method is not supported on this resource (405).
    MethodNotAllowed,
    /// The server cannot answer in any media type the client accepts (406).
    NotAcceptable,
    /// The request timed out (504).
    Timeout,
    /// The request body is too large (413).
    RequestEntityTooLarge,
    /// The request body's media type is not supported for this resource (415).
    UnsupportedMediaType,
    /// Too many requests (429).
    TooManyRequests,
    /// The server failed (500).
    InternalError,
    /// The server cannot serve the request now (503).
    ServiceUnavailable,
}

impl StatusReason {
    /// The reason as Kubernetes spells it in a `Status`.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusReason::BadRequest => "BadRequest",
            StatusReason::Invalid => "Invalid",
            StatusReason::NotFound => "NotFound",
            StatusReason::AlreadyExists => "AlreadyExists",
            StatusReason::Conflict => "Conflict",
            StatusReason::Expired => "Expired",
            StatusReason::Forbidden => "Forbidden",
            StatusReason::Unauthorized => "Unauthorized",
            StatusReason::MethodNotAllowed => "MethodNotAllowed",
            StatusReason::NotAcceptable => "NotAcceptable",
            StatusReason::Timeout => "Timeout",
            StatusReason::RequestEntityTooLarge => "RequestEntityTooLarge",
            StatusReason::UnsupportedMediaType => "UnsupportedMediaType",
            StatusReason::TooManyRequests => "TooManyRequests",
            StatusReason::InternalError => "InternalError",
            StatusReason::ServiceUnavailable => "ServiceUnavailable",
        }
    }

    /// The HTTP code that goes with the reason.
    pub fn code(self) -> u16 {
        match self {
            StatusReason::BadRequest => 400,
            StatusReason::Unauthorized => 401,
            StatusReason::Forbidden => 403,
            StatusReason::NotFound => 404,
            StatusReason::MethodNotAllowed => 405,
            StatusReason::NotAcceptable => 406,
            StatusReason::AlreadyExists | StatusReason::Conflict => 409,
            StatusReason::Expired => 410,
            StatusReason::RequestEntityTooLarge => 413,
            StatusReason::UnsupportedMediaType => 415,
            StatusReason::Invalid => 422,
            StatusReason::TooManyRequests => 429,
            StatusReason::InternalError => 500,
            StatusReason::ServiceUnavailable => 503,
            StatusReason::Timeout => 504,
        }
    }
}

impl StatusReason {
    /// Every reason.
    pub const ALL: [StatusReason; 16] = [
        StatusReason::BadRequest,
        StatusReason::Invalid,
        StatusReason::NotFound,
        StatusReason::AlreadyExists,
        StatusReason::Conflict,
        StatusReason::Expired,
        StatusReason::Forbidden,
        StatusReason::Unauthorized,
        StatusReason::MethodNotAllowed,
        StatusReason::NotAcceptable,
        StatusReason::Timeout,
        StatusReason::RequestEntityTooLarge,
        StatusReason::UnsupportedMediaType,
        StatusReason::TooManyRequests,
        StatusReason::InternalError,
        StatusReason::ServiceUnavailable,
    ];

    /// The reason a `Status` names (`"NotFound"`), if it is one of these.
    pub fn from_name(name: &str) -> Option<StatusReason> {
        StatusReason::ALL
            .into_iter()
            .find(|reason| reason.as_str() == name)
    }

    /// The reason that goes with an HTTP status code, for answers that name none (409 is
    /// `Conflict`, any other unknown code `InternalError`).
    pub fn from_code(code: u16) -> StatusReason {
        match code {
            409 => StatusReason::Conflict,
            504 => StatusReason::Timeout,
            _ => StatusReason::ALL
                .into_iter()
                .find(|reason| reason.code() == code)
                .unwrap_or(StatusReason::InternalError),
        }
    }
}

impl fmt::Display for StatusReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed request, as Kubernetes reports it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct StatusError {
    /// HTTP status code.
    pub code: u16,
    /// Machine-readable reason.
    pub reason: StatusReason,
    /// Human-readable message.
    pub message: String,
    /// The object concerned and the field causes, when there are any (boxed: most errors have
    /// none, and errors travel in `Result`s).
    pub details: Option<Box<StatusDetails>>,
}

impl StatusError {
    /// A failure with no details.
    pub fn new(reason: StatusReason, message: impl Into<String>) -> StatusError {
        StatusError {
            code: reason.code(),
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// An object that failed validation (422 Invalid), with one cause per field error, worded as
    /// Kubernetes words it: `Deployment.apps "web" is invalid: [spec.replicas: ..., ...]`.
    pub fn invalid(resource: &ApiResource, name: &str, errors: &[field::Error]) -> StatusError {
        let summary = match errors {
            [one] => one.to_string(),
            many => format!(
                "[{}]",
                many.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        StatusError {
            code: StatusReason::Invalid.code(),
            reason: StatusReason::Invalid,
            message: format!(
                "{} {name:?} is invalid: {summary}",
                resource.qualified_kind()
            ),
            details: Some(Box::new(StatusDetails {
                group: Some(resource.group.clone()),
                kind: Some(resource.kind.clone()),
                name: Some(name.to_owned()),
                causes: Some(errors.iter().map(cause).collect()),
                ..StatusDetails::default()
            })),
        }
    }

    /// An object that does not exist (404): `deployments.apps "web" not found`.
    pub fn not_found(resource: &ApiResource, name: &str) -> StatusError {
        StatusError {
            details: Some(details(resource, name)),
            ..StatusError::new(
                StatusReason::NotFound,
                format!("{} {name:?} not found", resource.qualified_plural()),
            )
        }
    }

    /// An object that exists already (409): `pods "web" already exists`.
    pub fn already_exists(resource: &ApiResource, name: &str) -> StatusError {
        StatusError {
            details: Some(details(resource, name)),
            ..StatusError::new(
                StatusReason::AlreadyExists,
                format!("{} {name:?} already exists", resource.qualified_plural()),
            )
        }
    }

    /// A write based on a stale object, or a failed precondition (409), worded as Kubernetes
    /// words it: `Operation cannot be fulfilled on pods "web": <why>`.
    pub fn conflict(resource: &ApiResource, name: &str, why: &str) -> StatusError {
        StatusError {
            details: Some(details(resource, name)),
            ..StatusError::new(
                StatusReason::Conflict,
                format!(
                    "Operation cannot be fulfilled on {} {name:?}: {why}",
                    resource.qualified_plural()
                ),
            )
        }
    }

    /// A request the caller may not make (403): `pods "web" is forbidden: <why>`.
    pub fn forbidden(resource: &ApiResource, name: &str, why: &str) -> StatusError {
        StatusError {
            details: Some(details(resource, name)),
            ..StatusError::new(
                StatusReason::Forbidden,
                format!(
                    "{} {name:?} is forbidden: {why}",
                    resource.qualified_plural()
                ),
            )
        }
    }

    /// A revision that is gone (410 Expired), as a watch or a list continuation reports it.
    pub fn gone(message: impl Into<String>) -> StatusError {
        StatusError::new(StatusReason::Expired, message)
    }

    /// A failure of the server itself (500).
    pub fn internal(message: impl Into<String>) -> StatusError {
        StatusError::new(StatusReason::InternalError, message)
    }

    /// Whether this is a 404 NotFound.
    pub fn is_not_found(&self) -> bool {
        self.reason == StatusReason::NotFound
    }

    /// Whether this is a 409 AlreadyExists (a create of a name in use).
    pub fn is_already_exists(&self) -> bool {
        self.reason == StatusReason::AlreadyExists
    }

    /// Whether this is a 409 Conflict (a stale write or a failed precondition).
    pub fn is_conflict(&self) -> bool {
        self.reason == StatusReason::Conflict
    }

    /// A malformed request (400 BadRequest), with field causes when there are any (strict decoding
    /// reports unknown fields this way).
    pub fn bad_request(message: impl Into<String>, errors: &[field::Error]) -> StatusError {
        StatusError {
            details: (!errors.is_empty()).then(|| {
                Box::new(StatusDetails {
                    causes: Some(errors.iter().map(cause).collect()),
                    ..StatusDetails::default()
                })
            }),
            ..StatusError::new(StatusReason::BadRequest, message)
        }
    }

    /// The `Status` object of this error.
    pub fn to_status(&self) -> Status {
        Status {
            code: Some(i32::from(self.code)),
            details: self.details.as_deref().cloned(),
            message: Some(self.message.clone()),
            reason: Some(self.reason.as_str().to_owned()),
            status: Some("Failure".to_owned()),
            ..Status::default()
        }
    }
}

fn details(resource: &ApiResource, name: &str) -> Box<StatusDetails> {
    Box::new(StatusDetails {
        group: Some(resource.group.clone()),
        kind: Some(resource.plural.clone()),
        name: Some(name.to_owned()),
        ..StatusDetails::default()
    })
}

fn cause(error: &field::Error) -> StatusCause {
    StatusCause {
        field: Some(error.field.to_string()),
        message: Some(error.body()),
        reason: Some(error.kind.cause_type().to_owned()),
    }
}
