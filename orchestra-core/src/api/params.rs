//! The options of API requests, named as Kubernetes (and kube-rs) name them.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Preconditions;

use crate::patch::PatchType;

/// Options of a create or an update.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PostParams {
    /// Run every step (defaulting, validation, admission) but do not store the result.
    pub dry_run: bool,
    /// The name of the actor making the change: it comes to own the fields the write sets
    /// (`metadata.managedFields`, operation `Update`).
    pub field_manager: Option<String>,
}

/// How a list or watch reads at a `resourceVersion` (Kubernetes' `resourceVersionMatch`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VersionMatch {
    /// At that revision or any later one (the default when a version is given).
    #[default]
    NotOlderThan,
    /// Exactly at that revision (a consistent snapshot of the past).
    Exact,
}

/// Options of a list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListParams {
    /// Only objects whose labels match (Kubernetes' label selector syntax).
    pub label_selector: Option<String>,
    /// Only objects whose fields match (`metadata.name=web`, `spec.nodeName=n1`, ...).
    pub field_selector: Option<String>,
    /// At most this many objects; the rest come with [`ListParams::continue_token`].
    pub limit: Option<u32>,
    /// Where the previous page ended (its list's `metadata.continue`).
    pub continue_token: Option<String>,
    /// Read at this resource version: unset or `""` for the most recent, `"0"` for any, a
    /// revision for a past state (see [`ListParams::version_match`]).
    pub resource_version: Option<String>,
    /// How to read at `resource_version`.
    pub version_match: Option<VersionMatch>,
}

impl ListParams {
    /// Only objects whose labels match `selector`.
    #[must_use]
    pub fn labels(mut self, selector: &str) -> ListParams {
        self.label_selector = Some(selector.to_owned());
        self
    }

    /// Only objects whose fields match `selector`.
    #[must_use]
    pub fn fields(mut self, selector: &str) -> ListParams {
        self.field_selector = Some(selector.to_owned());
        self
    }

    /// At most `limit` objects per page.
    #[must_use]
    pub fn limit(mut self, limit: u32) -> ListParams {
        self.limit = Some(limit);
        self
    }

    /// The page after the one that returned `token`.
    #[must_use]
    pub fn continue_token(mut self, token: &str) -> ListParams {
        self.continue_token = Some(token.to_owned());
        self
    }

    /// Read at `resource_version`.
    #[must_use]
    pub fn at(mut self, resource_version: &str, version_match: VersionMatch) -> ListParams {
        self.resource_version = Some(resource_version.to_owned());
        self.version_match = Some(version_match);
        self
    }
}

/// Options of a watch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchParams {
    /// Only objects whose labels match.
    pub label_selector: Option<String>,
    /// Only objects whose fields match.
    pub field_selector: Option<String>,
    /// Ask for `BOOKMARK` events, which carry only a resource version up to which every change
    /// was delivered.
    pub bookmarks: bool,
    /// End the watch after this long.
    pub timeout: Option<Duration>,
}

impl WatchParams {
    /// Only objects whose labels match `selector`.
    #[must_use]
    pub fn labels(mut self, selector: &str) -> WatchParams {
        self.label_selector = Some(selector.to_owned());
        self
    }

    /// Only objects whose fields match `selector`.
    #[must_use]
    pub fn fields(mut self, selector: &str) -> WatchParams {
        self.field_selector = Some(selector.to_owned());
        self
    }

    /// With `BOOKMARK` events.
    #[must_use]
    pub fn bookmarks(mut self) -> WatchParams {
        self.bookmarks = true;
        self
    }
}

/// What happens to the objects an object owns when it is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PropagationPolicy {
    /// Leave them, without the owner reference (the `orphan` finalizer).
    Orphan,
    /// Delete the owner now; the garbage collector deletes the dependents after.
    Background,
    /// Delete the dependents first, then the owner (the `foregroundDeletion` finalizer).
    Foreground,
}

impl PropagationPolicy {
    /// The policy as Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PropagationPolicy::Orphan => "Orphan",
            PropagationPolicy::Background => "Background",
            PropagationPolicy::Foreground => "Foreground",
        }
    }
}

/// Options of a delete.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeleteParams {
    /// Run every step but do not delete.
    pub dry_run: bool,
    /// Seconds to let the object terminate (pods: the kubelet stops its containers meanwhile);
    /// `Some(0)` deletes at once. Unset: the object's own grace (a pod's
    /// `terminationGracePeriodSeconds`).
    pub grace_period_seconds: Option<i64>,
    /// Delete only if the object still has this uid and resource version.
    pub preconditions: Option<Preconditions>,
    /// What happens to dependents.
    pub propagation_policy: Option<PropagationPolicy>,
}

impl DeleteParams {
    /// Delete at once, whatever the object's grace period.
    pub fn immediately() -> DeleteParams {
        DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        }
    }
}

/// Options of a patch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchParams {
    /// The patch format.
    pub patch_type: PatchType,
    /// Run every step but do not store the result.
    pub dry_run: bool,
    /// The name of the actor making the change: it comes to own the fields the patch sets
    /// (`metadata.managedFields`). Required for a server-side apply.
    pub field_manager: Option<String>,
    /// For server-side apply: take over the fields other managers own instead of failing with a
    /// conflict.
    pub force: bool,
}

impl PatchParams {
    /// A patch of the given format.
    pub fn new(patch_type: PatchType) -> PatchParams {
        PatchParams {
            patch_type,
            dry_run: false,
            field_manager: None,
            force: false,
        }
    }
}
