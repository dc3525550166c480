//! Validation: every check Kubernetes makes of an object before it is stored, reported together.
//!
//! [`Validate`] is implemented for every built-in kind, following Kubernetes' own validation
//! (`pkg/apis/*/validation`): names and metadata, required fields, unique names, port ranges,
//! selectors that match their templates, rolling-update parameters, probes, resources, RBAC rules
//! and bindings. A custom kind
//! gets the metadata checks and its own hook (see [`crate::resource::custom`]).
//!
//! Validation never stops at the first problem: [`Validate::validate`] returns an
//! [`field::ErrorList`] with one [`field::Error`] per problem, each with its field path;
//! [`crate::status::StatusError::invalid`] turns that list into a Kubernetes `Status`.
//!
//! Validation expects a defaulted object ([`crate::defaulting::SetDefaults`]), as Kubernetes
//! validates after defaulting.

mod config;
mod event;
pub mod field;
mod lease;
pub mod meta;
pub mod names;
mod namespace;
mod node;
pub mod pod;
pub mod priority_class;
pub mod rbac;
mod service;
mod workload;

pub use config::{MAX_DATA_SIZE, SERVICE_ACCOUNT_NAME_ANNOTATION};
pub use event::EVENT_TYPES;
pub use node::TAINT_EFFECTS;
pub use service::SERVICE_TYPES;

use field::ErrorList;

/// An object that can check itself the way Kubernetes checks it on create.
pub trait Validate {
    /// Every problem with this object; empty when it is valid.
    fn validate(&self) -> ErrorList;
}
