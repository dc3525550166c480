//! Label and field selectors: how controllers, list and watch requests, and Services pick the
//! objects they act on.
//!
//! A **label selector** ([`Selector`]) is a conjunction of [`Requirement`]s on an object's labels.
//! Kubernetes has two kinds of requirement, and a selector may mix them:
//!
//! - *equality-based*: `app=web` (also written `app==web`) and `tier!=cache`;
//! - *set-based*: `environment in (production,qa)`, `tier notin (frontend,backend)`, and the
//!   existence tests `canary` (the label is present) and `!canary` (it is absent);
//!
//! and Kubernetes' parser also accepts `replicas>3` and `replicas<3`, which compare integer
//! values. The string syntax is Kubernetes' (`labels.Parse`), read the way its lexer reads it:
//!
//! ```text
//! selector    ::= "" | requirement ("," requirement)*
//! requirement ::= KEY | "!" KEY
//!               | KEY ("=" | "==" | "!=" | ">" | "<") VALUE
//!               | KEY ("in" | "notin") "(" VALUE ("," VALUE)* ")"
//! ```
//!
//! Spaces, tabs and line breaks may stand between tokens; a KEY is a qualified name
//! (`[prefix/]name`, as label keys are), a VALUE a label value, possibly empty (`app=`,
//! `app in (a,)`, and `app in ()` is the set of the empty value). `in` and `notin` are
//! operators only after a key, so `in in (in)` is a requirement on the label `in`.
//!
//! Selectors also come from objects: a Deployment's or ReplicaSet's `spec.selector` is a
//! Kubernetes [`LabelSelector`](k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector)
//! (`matchLabels` and `matchExpressions`), which [`Selector::from_label_selector`] converts as
//! Kubernetes' `LabelSelectorAsSelector` does (an absent selector selects nothing, an empty one
//! everything); a ReplicationController's or Service's selector is a plain map of labels,
//! [`Selector::from_map`].
//!
//! A **field selector** ([`FieldSelector`]) compares fields of an object with values:
//! `metadata.name=web,status.phase!=Failed` (Kubernetes' `fields.ParseSelector`). Values escape
//! `,`, `=` and `\` with a backslash. Each kind offers its own fields, through [`FieldSource`]:
//! every kind its name (and namespace when namespaced), Pods also `spec.nodeName` and
//! `status.phase` among others; [`FieldSelector::validate_for`] rejects a field the kind does
//! not offer, as the API server does.
//!
//! # Canonical form
//!
//! Both selectors print ([`Display`](std::fmt::Display)) in Kubernetes' canonical form, the one
//! its `String()` methods write: requirements sorted by key (field terms sorted as text), set
//! values sorted and comma-separated without spaces, `in` and `notin` between single spaces,
//! `==` kept in label selectors and written `=` in field selectors. Parsing the canonical form
//! gives back an equal selector, and serde reads and writes selectors as these strings.
//!
//! # Examples
//!
//! ```
//! use std::collections::BTreeMap;
//! use orchestra_core::selector::{FieldSelector, Selector};
//! use orchestra_core::k8s::api::core::v1::Pod;
//!
//! let selector: Selector = "environment in (production, qa),tier notin (frontend,backend),!canary"
//!     .parse()?;
//! assert_eq!(
//!     selector.to_string(),
//!     "!canary,environment in (production,qa),tier notin (backend,frontend)"
//! );
//! let labels = BTreeMap::from([("environment".to_owned(), "production".to_owned())]);
//! assert!(selector.matches(&labels));
//!
//! let fields: FieldSelector = "spec.nodeName=node-1".parse()?;
//! assert!(fields.validate_for::<Pod>().is_ok());
//! assert!(!fields.matches(&Pod::default()));
//! # Ok::<(), orchestra_core::selector::Error>(())
//! ```

mod field;
mod label;
mod lexer;

#[cfg(test)]
mod tests;

pub use field::{
    FieldOperator, FieldRequirement, FieldSelector, FieldSource, ParseFieldSelectorError,
    UnsupportedFieldError, escape_field_value,
};
pub use label::{
    LabelSelectorError, LabelSource, Operator, ParseSelectorError, Requirement, RequirementError,
    Selector,
};

/// Any error of this module.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A string is not a label selector.
    #[error(transparent)]
    Parse(#[from] ParseSelectorError),
    /// A label requirement is not valid.
    #[error(transparent)]
    Requirement(#[from] RequirementError),
    /// A Kubernetes `LabelSelector` does not convert.
    #[error(transparent)]
    LabelSelector(#[from] LabelSelectorError),
    /// A string is not a field selector.
    #[error(transparent)]
    ParseField(#[from] ParseFieldSelectorError),
    /// A field selector names a field the kind does not offer.
    #[error(transparent)]
    UnsupportedField(#[from] UnsupportedFieldError),
}

/// A result whose error defaults to this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
