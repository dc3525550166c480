//! Admission: the chain of checks and changes every write goes through before it is stored.
//!
//! As in Kubernetes, a write is defaulted, then offered to every [`Admission`] plugin's
//! [`Admission::mutate`] (which may change the object), then validated, then offered to every
//! plugin's [`Admission::validate`] (which may refuse it), and only then stored. Plugins run in the
//! order they were added to the [`Client`](super::Client). Deletes are offered to
//! [`Admission::validate`] with the object being deleted.
//!
//! Every client built the usual way ([`Client::new`](super::Client::new),
//! [`Client::builder`](super::Client::builder)) runs the plugins Kubernetes enables by default
//! that Orchestra implements, before those added with
//! [`ClientBuilder::admission`](super::ClientBuilder::admission):
//!
//! | Plugin | What it does |
//! |---|---|
//! | [`Priority`] | resolves a pod's `priorityClassName` to its `priority` and `preemptionPolicy`; keeps PriorityClasses to one global default |
//! | [`DefaultTolerationSeconds`] | gives pods 300 s tolerations of the not-ready and unreachable `NoExecute` taints (configurable with [`ClientBuilder::default_toleration_seconds`](super::ClientBuilder::default_toleration_seconds)) |
//! | [`ServiceAccount`] | gives pods the `default` service account when they name none, and the projected volume of their account's token mounted in every container |
//!
//! [`ClientBuilder::without_default_admission`](super::ClientBuilder::without_default_admission)
//! leaves them out.

pub mod default_toleration_seconds;
pub mod priority;
pub mod service_account;

use std::fmt;

use async_trait::async_trait;

use crate::resource::{ApiResource, DynamicObject};
use crate::status::StatusError;

pub use default_toleration_seconds::DefaultTolerationSeconds;
pub use priority::Priority;
pub use service_account::ServiceAccount;

/// What a write does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// A new object.
    Create,
    /// A change to an object (an update or a patch, of the object or of a subresource).
    Update,
    /// A delete.
    Delete,
}

/// Everything a plugin knows of the write it is asked about.
#[derive(Clone, Copy, Debug)]
pub struct AdmissionRequest<'a> {
    /// What the write does.
    pub operation: Operation,
    /// The kind of object.
    pub resource: &'a ApiResource,
    /// The subresource written (`"status"`, `"scale"`), if any.
    pub subresource: Option<&'a str>,
    /// The object's namespace, for namespaced kinds.
    pub namespace: Option<&'a str>,
    /// The object's name.
    pub name: &'a str,
    /// The object as stored before the write (updates and deletes).
    pub old_object: Option<&'a DynamicObject>,
    /// Whether the write is a dry run (plugins with side effects must not act on it).
    pub dry_run: bool,
}

/// An admission plugin. Both hooks do nothing unless overridden.
#[async_trait]
pub trait Admission: Send + Sync + fmt::Debug + 'static {
    /// The plugin's name, for messages.
    fn name(&self) -> &str;

    /// May change the object of a create or update before it is validated.
    async fn mutate(
        &self,
        request: &AdmissionRequest<'_>,
        object: &mut DynamicObject,
    ) -> Result<(), StatusError> {
        let _ = (request, object);
        Ok(())
    }

    /// May refuse a write (for a delete, `object` is the object being deleted).
    async fn validate(
        &self,
        request: &AdmissionRequest<'_>,
        object: &DynamicObject,
    ) -> Result<(), StatusError> {
        let _ = (request, object);
        Ok(())
    }
}
