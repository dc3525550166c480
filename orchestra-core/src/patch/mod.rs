//! The three patch formats of the Kubernetes API, as pure functions over JSON values.
//!
//! A `PATCH` request names its format with its `Content-Type`, and the API server applies the
//! body to the stored object. [`PatchType`] is that choice; [`apply_patch`] applies a patch of any
//! format, and each format also has its own function.
//!
//! # JSON patch (RFC 6902, `application/json-patch+json`)
//!
//! A list of operations applied in order: `add`, `remove`, `replace`, `move`, `copy` and `test`,
//! each naming its target with a JSON pointer (RFC 6901: `/spec/containers/0/image`, where `~1`
//! stands for `/` and `~0` for `~`, and `-` is the end of an array for `add`). The patch is
//! atomic: when one operation fails — a `test` whose value differs, a path that does not exist, a
//! malformed pointer — [`apply_json_patch`] returns a [`PatchError::JsonPatch`] naming the
//! operation's index, verb and path, and nothing is changed. As in Kubernetes, a patch may hold at
//! most [`MAX_JSON_PATCH_OPERATIONS`] operations.
//!
//! # JSON merge patch (RFC 7386, `application/merge-patch+json`)
//!
//! A partial object merged into the target: objects merge member by member, `null` deletes a
//! member, and anything else — arrays included — replaces what was there.
//! [`apply_merge_patch`] applies one; [`create_merge_patch`] computes the merge patch that turns
//! one value into another (what `kubectl` and controllers send).
//!
//! # Strategic merge patch (`application/strategic-merge-patch+json`)
//!
//! Kubernetes' own extension of the merge patch. Objects merge and `null` deletes as in a merge
//! patch, but a list may *merge* instead of being replaced, as the kind's schema declares for
//! each field ([`MergeKeys`], Kubernetes' `x-kubernetes-patch-strategy` and
//! `x-kubernetes-patch-merge-key`):
//!
//! - a list of objects with a **merge key** (a Pod's `spec.containers`, by `name`) merges item by
//!   item: a patch item whose key matches an existing item is merged into it (recursively, with the
//!   same rules), a new one is added;
//! - a list of primitives with the **merge** strategy (`metadata.finalizers`) is a set: the patch's
//!   values are added to the existing ones;
//! - every other list is replaced.
//!
//! Special keys, the *directives*, say what a plain patch cannot:
//!
//! - `{"$patch": "replace"}` in an object replaces the object with the rest of the patch instead of
//!   merging; as an item of a merging list it replaces the whole list with the patch's other items;
//! - `{"$patch": "delete"}` in an object empties it; as an item of a merging list
//!   (`{"name": "sidecar", "$patch": "delete"}`) it deletes the item with that merge key (the
//!   first one, when several share it);
//! - `"$deleteFromPrimitiveList/<field>": [values]` removes values from a merging list of
//!   primitives;
//! - `"$setElementOrder/<field>": [items]` gives the order of a merging list after the patch (its
//!   items are the merge keys of the list's objects, or the primitives themselves); items the
//!   patch does not mention keep their place relative to the others;
//! - `"$retainKeys": [fields]` clears every field of the object that is not listed (how a
//!   Deployment's `spec.strategy` drops `rollingUpdate` when its type becomes `Recreate`).
//!
//! [`apply_strategic_merge_patch`] follows Kubernetes' `strategicpatch` package, including the
//! places where new items of a merging list land: after the existing items in a list of objects,
//! before them in a list of primitives, unless a `$setElementOrder` says otherwise. Kubernetes
//! refuses strategic merge patches for custom resources (415 Unsupported Media Type), since they
//! have no merge keys: [`apply_patch`] does the same when it is given no [`MergeKeys`].
//!
//! # Server-side apply (`application/apply-patch+yaml`)
//!
//! An apply sends the configuration a manager wants (a partial object, in YAML or JSON); the
//! server merges it into the live object, removes what the manager applied before and applies no
//! more, and records who owns which field in `metadata.managedFields`, refusing to change fields
//! other managers own unless forced. That needs the manager's name and the live object's owners,
//! which [`apply_patch`] does not take: it refuses [`PatchType::Apply`] with
//! [`PatchError::ApplyUnsupported`], and [`server_side_apply`] applies a configuration instead.
//!
//! A [`FieldSet`] is a set of field paths ([`FieldPath`]): members of objects (`.spec.replicas`),
//! items of *associative lists* named by their key (`.spec.containers[name="web"]`), items of *sets*
//! named by their value (`.metadata.finalizers[="x"]`). Which lists are which comes from the kind's
//! [`MergeKeys`], the table strategic merge patches read too: a list merging by a key is an
//! associative list with that key, a list of primitives merging as a set is a set, and every other
//! list is *atomic*, owned and replaced as a whole. [`field_set`] gives the fields an applied
//! configuration sets: its leaves (scalars and atomic lists), the items of its
//! associative lists and of its sets. A set is stored in Kubernetes' `fieldsV1` form
//! ([`FieldSet::to_fields_v1`]): `{"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {},
//! "f:image": {}}}}}`, where `f:` names a field, `k:` a keyed item, `v:` a set item, and `.` the
//! path itself when it has children in the set too.
//!
//! Each entry of `metadata.managedFields` ([`FieldOwner`], read with [`managed_fields`]) says which
//! fields a *manager* owns, and through which operation: `Apply` for the fields of its last applied
//! configuration, `Update` for the fields it changed with ordinary writes (create, update, patch).
//! The server ignores what it sets itself: `apiVersion`, `kind`, the server-set metadata
//! (`name`, `namespace`, `uid`, `resourceVersion`, `generation`, `creationTimestamp`,
//! `deletionTimestamp`, `deletionGracePeriodSeconds`, `selfLink`, `managedFields`), and `status`
//! for writes of the main resource (only `status` for writes of the status subresource).
//!
//! [`server_side_apply`] applies a configuration for a manager:
//!
//! - the configuration is merged into the live object: objects member by member, associative
//!   lists item by item by key, sets by value; atomic lists and scalars are replaced;
//! - the fields the manager applied last time but no longer applies are removed from the object,
//!   unless another manager owns them too (an object or list emptied this way goes too);
//! - when the apply changes a field another manager owns, that is a *conflict*, and the apply
//!   fails with [`ApplyError::Conflicts`] (409 in the API), unless it is forced: then the field
//!   moves to the applier. Setting a field to the value it has already is no conflict: the field
//!   is then owned by both managers.
//!
//! [`record_update`] records the fields an ordinary write changed as owned by its manager
//! (operation `Update`), taking them from whoever owned them.
//!
//! Where this differs from Kubernetes: the schema is the [`MergeKeys`] table, so every object is
//! merged field by field (Kubernetes treats a few, such as label selectors, as atomic), an
//! associative list has a single key field (a Service's ports are keyed by `port` alone), and
//! lists not in the table are atomic. A `null` in a configuration is a field left out. Defaults
//! the server adds after an apply are nobody's, as in Kubernetes, while an ordinary write owns the
//! defaults of what it wrote.
//!
//! # Limits
//!
//! Inputs come from HTTP requests, so nothing here panics and nothing recurses without bound:
//! values nested deeper than [`MAX_DEPTH`] levels (the nesting `serde_json` itself parses) are
//! refused with [`PatchError::TooDeep`], and a JSON patch may not build a deeper value either, nor
//! copy or move more than [`MAX_JSON_PATCH_COPIED_VALUES`] values.
//!
//! # Examples
//!
//! ```
//! use orchestra_core::patch::{MergeKeys, PatchType, apply_patch};
//! use serde_json::json;
//!
//! let pod = json!({
//!     "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
//!     "spec": {"containers": [
//!         {"name": "app", "image": "app:1"},
//!         {"name": "sidecar", "image": "proxy:1"},
//!     ]},
//! });
//!
//! // A strategic merge patch: containers merge by name.
//! let patch = json!({
//!     "metadata": {"labels": {"tier": null}},
//!     "spec": {"containers": [
//!         {"name": "app", "image": "app:2"},
//!         {"name": "sidecar", "$patch": "delete"},
//!     ]},
//! });
//! let keys = MergeKeys::for_kind("v1", "Pod");
//! let content_type = "application/strategic-merge-patch+json";
//! let patched = apply_patch(&pod, PatchType::from_content_type(content_type)?, &patch, keys.as_ref())?;
//! assert_eq!(patched, json!({
//!     "metadata": {"name": "web", "labels": {"app": "web"}},
//!     "spec": {"containers": [{"name": "app", "image": "app:2"}]},
//! }));
//!
//! // The same change as a JSON patch.
//! let patch = json!([
//!     {"op": "remove", "path": "/metadata/labels/tier"},
//!     {"op": "test", "path": "/spec/containers/1/name", "value": "sidecar"},
//!     {"op": "remove", "path": "/spec/containers/1"},
//!     {"op": "replace", "path": "/spec/containers/0/image", "value": "app:2"},
//! ]);
//! assert_eq!(apply_patch(&pod, PatchType::Json, &patch, None)?, patched);
//! # Ok::<(), orchestra_core::patch::PatchError>(())
//! ```

use std::fmt;

use serde_json::{Number, Value};

mod apply;
mod json;
mod merge;
mod strategic;

#[cfg(test)]
mod tests;

pub use apply::{
    ApplyError, Conflict, FIELDS_V1, FieldOwner, FieldPath, FieldSet, MAX_FIELD_MANAGER_LENGTH,
    ManagedFieldsOperation, PathElement, field_set, managed_fields, record_update,
    server_side_apply,
};
pub use json::apply_json_patch;
pub use merge::{apply_merge_patch, create_merge_patch};
pub use strategic::{FieldStrategy, MergeKeys, PatchStrategy, apply_strategic_merge_patch};

/// How deeply objects and arrays may nest in a patch, in the object it applies to, and in a JSON
/// patch's result: 127 levels, as many as `serde_json` parses, so that everything a request can
/// carry can be patched and every result can be read back.
pub const MAX_DEPTH: usize = 127;

/// The most operations one JSON patch may hold, as in Kubernetes (`maxJSONPatchOperations`).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// The most values (objects, arrays and scalars, counted one by one) the `copy` and `move`
/// operations of one JSON patch may carry: each copy can double a document, and each move costs a
/// walk of what it moves, so both are rationed.
pub const MAX_JSON_PATCH_COPIED_VALUES: usize = 1 << 20;

/// The format of a patch, as the `Content-Type` of a `PATCH` request names it.
///
/// # Examples
///
/// ```
/// use orchestra_core::patch::PatchType;
///
/// let patch_type = PatchType::from_content_type("application/merge-patch+json; charset=utf-8")?;
/// assert_eq!(patch_type, PatchType::Merge);
/// assert_eq!(patch_type.content_type(), "application/merge-patch+json");
/// assert!(PatchType::from_content_type("application/json").is_err());
/// # Ok::<(), orchestra_core::patch::PatchError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PatchType {
    /// JSON patch, RFC 6902: `application/json-patch+json`.
    Json,
    /// JSON merge patch, RFC 7386: `application/merge-patch+json`.
    Merge,
    /// Kubernetes' strategic merge patch: `application/strategic-merge-patch+json`.
    StrategicMerge,
    /// Server-side apply: `application/apply-patch+yaml`, applied with [`server_side_apply`]
    /// (which needs a field manager), not with [`apply_patch`].
    Apply,
}

impl PatchType {
    /// Every patch type, in the order Kubernetes lists their media types.
    pub const ALL: [PatchType; 4] = [
        PatchType::Json,
        PatchType::Merge,
        PatchType::StrategicMerge,
        PatchType::Apply,
    ];

    /// The patch type a `Content-Type` names. Parameters (`; charset=utf-8`) are ignored, and the
    /// media type is compared without regard to case; any other media type is
    /// [`PatchError::UnsupportedMediaType`] (Kubernetes answers it with 415).
    pub fn from_content_type(content_type: &str) -> Result<PatchType, PatchError> {
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        PatchType::ALL
            .into_iter()
            .find(|patch_type| patch_type.content_type().eq_ignore_ascii_case(media_type))
            .ok_or_else(|| PatchError::UnsupportedMediaType {
                content_type: content_type.to_owned(),
            })
    }

    /// The media type of this patch type.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

impl fmt::Display for PatchType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.content_type())
    }
}

/// Applies a patch of any format to a target object, returning the patched copy.
///
/// `merge_keys` describes the kind's lists for a strategic merge patch
/// ([`MergeKeys::for_kind`] for the built-in kinds); without it a strategic merge patch fails with
/// [`PatchError::StrategicMergeUnsupported`], as Kubernetes refuses strategic merge patches for
/// custom resources. The other formats ignore it. [`PatchType::Apply`] fails with
/// [`PatchError::ApplyUnsupported`]: an apply needs a field manager, see [`server_side_apply`].
///
/// # Examples
///
/// ```
/// use orchestra_core::patch::{PatchError, PatchType, apply_patch};
/// use serde_json::json;
///
/// let object = json!({"spec": {"replicas": 1, "paused": true}});
/// let patch = json!({"spec": {"replicas": 3, "paused": null}});
/// let patched = apply_patch(&object, PatchType::Merge, &patch, None)?;
/// assert_eq!(patched, json!({"spec": {"replicas": 3}}));
///
/// let refused = apply_patch(&object, PatchType::StrategicMerge, &patch, None);
/// assert_eq!(refused, Err(PatchError::StrategicMergeUnsupported));
/// # Ok::<(), PatchError>(())
/// ```
pub fn apply_patch(
    target: &Value,
    patch_type: PatchType,
    patch: &Value,
    merge_keys: Option<&MergeKeys>,
) -> Result<Value, PatchError> {
    match patch_type {
        PatchType::Json => apply_json_patch(target, patch),
        PatchType::Merge => apply_merge_patch(target, patch),
        PatchType::StrategicMerge => match merge_keys {
            Some(merge_keys) => apply_strategic_merge_patch(target, patch, merge_keys),
            None => Err(PatchError::StrategicMergeUnsupported),
        },
        PatchType::Apply => Err(PatchError::ApplyUnsupported),
    }
}

/// Why a patch could not be applied.
///
/// [`PatchError::code`] and [`PatchError::reason`] give the HTTP status and the `Status` reason
/// Kubernetes answers each error with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatchError {
    /// The `Content-Type` names no patch format.
    #[error(
        "the body of the request was in an unknown format ({content_type:?}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"
    )]
    UnsupportedMediaType {
        /// The `Content-Type` given.
        content_type: String,
    },
    /// Server-side apply asked of [`apply_patch`], which has no field manager to apply for (use
    /// [`server_side_apply`]).
    #[error(
        "server-side apply (application/apply-patch+yaml) needs a field manager: it is not a plain patch"
    )]
    ApplyUnsupported,
    /// A strategic merge patch for a kind without merge keys (a custom resource).
    #[error(
        "strategic merge patch is not supported for this kind - accepted media types include: application/json-patch+json, application/merge-patch+json"
    )]
    StrategicMergeUnsupported,
    /// The patch document, or the object it applies to, is not of the form the format requires
    /// (a JSON patch that is not an array of operations, a strategic merge patch that is not an
    /// object).
    #[error("invalid patch: {reason}")]
    InvalidPatch {
        /// What is wrong.
        reason: String,
    },
    /// A JSON patch operation failed.
    #[error("JSON patch operation {index} ({op} {path:?}): {failure}")]
    JsonPatch {
        /// The operation's index in the patch, from 0.
        index: usize,
        /// The operation's verb (`add`, `test`, ...), as written.
        op: String,
        /// The operation's `path`, as written.
        path: String,
        /// What went wrong.
        failure: JsonPatchFailure,
    },
    /// A strategic merge patch could not be applied at a place in the object.
    #[error("strategic merge patch: {failure} (at {path})")]
    StrategicMerge {
        /// Where, as a field path of the patch (`spec.containers[0]`; `<root>` for the object
        /// itself). List indices are those of the patch's items.
        path: String,
        /// What went wrong.
        failure: StrategicMergeFailure,
    },
    /// A value nests objects and arrays deeper than [`MAX_DEPTH`] levels.
    #[error("the {what} nests objects and arrays deeper than {max} levels")]
    TooDeep {
        /// Which value: `patch`, `object` or `result`.
        what: &'static str,
        /// The limit, [`MAX_DEPTH`].
        max: usize,
    },
    /// A JSON patch with more than [`MAX_JSON_PATCH_OPERATIONS`] operations.
    #[error("the allowed maximum operations in a JSON patch is {max}, got {count}")]
    TooManyOperations {
        /// The operations in the patch.
        count: usize,
        /// The limit, [`MAX_JSON_PATCH_OPERATIONS`].
        max: usize,
    },
    /// The `copy` and `move` operations of a JSON patch carry more than
    /// [`MAX_JSON_PATCH_COPIED_VALUES`] values.
    #[error("the JSON patch copies or moves more than {max} values")]
    TooLarge {
        /// The limit, [`MAX_JSON_PATCH_COPIED_VALUES`].
        max: usize,
    },
}

impl PatchError {
    /// The HTTP status Kubernetes answers this error with: 415 for a format it does not take, 413
    /// for a patch too large, 422 for a JSON patch operation that fails, a value too deep or a
    /// strategic merge list of lists, 400 for the other malformed patches.
    ///
    /// # Examples
    ///
    /// ```
    /// use orchestra_core::patch::{PatchType, apply_patch};
    /// use serde_json::json;
    ///
    /// let test = json!([{"op": "test", "path": "/a", "value": 2}]);
    /// let error = apply_patch(&json!({"a": 1}), PatchType::Json, &test, None).unwrap_err();
    /// assert_eq!((error.code(), error.reason()), (422, "Invalid"));
    /// ```
    pub fn code(&self) -> u16 {
        match self {
            PatchError::UnsupportedMediaType { .. }
            | PatchError::ApplyUnsupported
            | PatchError::StrategicMergeUnsupported => 415,
            PatchError::TooManyOperations { .. } | PatchError::TooLarge { .. } => 413,
            PatchError::JsonPatch { .. } | PatchError::TooDeep { .. } => 422,
            PatchError::StrategicMerge { failure, .. } => match failure {
                StrategicMergeFailure::ListOfLists => 422,
                _ => 400,
            },
            PatchError::InvalidPatch { .. } => 400,
        }
    }

    /// The `reason` of the `Status` Kubernetes answers this error with, matching
    /// [`PatchError::code`]: `UnsupportedMediaType`, `RequestEntityTooLarge`, `Invalid` or
    /// `BadRequest`.
    pub fn reason(&self) -> &'static str {
        match self.code() {
            415 => "UnsupportedMediaType",
            413 => "RequestEntityTooLarge",
            422 => "Invalid",
            _ => "BadRequest",
        }
    }
}

/// Why one JSON patch operation failed; see [`PatchError::JsonPatch`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonPatchFailure {
    /// A `test` found a different value.
    #[error("test failed: the value at the path differs")]
    TestFailed,
    /// A pointer names a location that does not exist (`remove`, `replace`, `test`, the `from` of
    /// `move` and `copy`, or the parent of an `add`).
    #[error("path {pointer:?} does not exist")]
    NotFound {
        /// The pointer, as written.
        pointer: String,
    },
    /// A pointer that is not a valid JSON pointer, or whose array index is malformed.
    #[error("invalid pointer {pointer:?}: {reason}")]
    InvalidPointer {
        /// The pointer, as written.
        pointer: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An array index past the end of the array.
    #[error("index {index} is out of range (the array at {pointer:?} has {len} items)")]
    IndexOutOfRange {
        /// The pointer, as written.
        pointer: String,
        /// The index.
        index: usize,
        /// The array's length.
        len: usize,
    },
    /// A pointer goes through a value that is neither an object nor an array.
    #[error("path {pointer:?} goes through a value that is neither an object nor an array")]
    NotAContainer {
        /// The pointer, as written.
        pointer: String,
    },
    /// `remove` of the whole document.
    #[error("the whole document cannot be removed")]
    RemoveRoot,
    /// `move` into one of the moved value's own children.
    #[error("cannot move {from:?} into one of its own children")]
    MoveIntoChild {
        /// The `from` pointer.
        from: String,
    },
    /// The operation lacks a member it needs: `op`, `path`, `value` or `from`.
    #[error("the operation has no {0:?} member")]
    MissingMember(&'static str),
    /// A member of the operation has the wrong type (`path` and `from` are strings).
    #[error("the operation's {0:?} member must be a string")]
    WrongMemberType(&'static str),
    /// An operation that is not one of the six.
    #[error("unknown operation {0:?}")]
    UnknownOp(String),
}

/// Why a strategic merge patch could not be applied; see [`PatchError::StrategicMerge`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StrategicMergeFailure {
    /// A `$patch` directive with a value other than `replace` or `delete` (`merge` is not
    /// supported either, as in Kubernetes).
    #[error("unknown patch type {value} in $patch: only replace and delete are supported")]
    BadPatchDirective {
        /// The value, as JSON.
        value: String,
    },
    /// An item of a list merged by key lacks the key.
    #[error("the item does not contain the declared merge key {key:?}")]
    MissingMergeKey {
        /// The merge key.
        key: String,
    },
    /// An item of a list merged by key is not an object.
    #[error("the item is not an object, but its list merges by the key {key:?}")]
    ItemNotAnObject {
        /// The merge key.
        key: String,
    },
    /// A merging list whose items are not all of one type.
    #[error("the items of the list are not all of one type")]
    MixedList,
    /// A merging list of lists.
    #[error("lists of lists are not supported")]
    ListOfLists,
    /// A list of objects declared to merge without a merge key.
    #[error("the list of objects merges but declares no merge key")]
    NoMergeKey,
    /// `$retainKeys` is not a list.
    #[error("$retainKeys must be a list of field names")]
    RetainKeysNotAList,
    /// A field of the patch is missing from its object's `$retainKeys`.
    #[error("the field {field:?} is in the patch but not in $retainKeys")]
    NotInRetainKeys {
        /// The field.
        field: String,
    },
    /// A directive key without its field name (`$setElementOrder` alone).
    #[error("the directive key {key:?} must be followed by '/' and a field name")]
    BadDirectiveKey {
        /// The key, as written.
        key: String,
    },
    /// A `$setElementOrder/<field>` or `$deleteFromPrimitiveList/<field>` that is not a list.
    #[error("{directive} must be a list")]
    DirectiveNotAList {
        /// The directive key, as written.
        directive: String,
    },
    /// A `$setElementOrder` or `$deleteFromPrimitiveList` for a field that is not a list.
    #[error("{directive} is given for a field that is not a list")]
    FieldNotAList {
        /// The directive key, as written.
        directive: String,
    },
    /// The items of a patch list are not in the order `$setElementOrder` gives.
    #[error("the order of the patch list does not match $setElementOrder")]
    SetElementOrderMismatch,
    /// `$deleteFromPrimitiveList` for a list that does not merge, or that holds objects.
    #[error("$deleteFromPrimitiveList applies only to merging lists of primitives")]
    DeleteFromNonMergingList,
}

/// The nesting of a value (0 for a scalar, 1 for an object or array of scalars, and so on) and
/// the number of values in it, stopping (with a depth past `max`) as
/// soon as the depth exceeds `max`.
pub(crate) fn measure(value: &Value, max: usize) -> (usize, usize) {
    let mut deepest = 0;
    let mut count = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, above)) = stack.pop() {
        count += 1;
        let level = above + 1;
        match value {
            Value::Array(items) => stack.extend(items.iter().map(|item| (item, level))),
            Value::Object(members) => stack.extend(members.values().map(|member| (member, level))),
            _ => continue,
        }
        deepest = deepest.max(level);
        if deepest > max {
            break;
        }
    }
    (deepest, count)
}

/// Fails with [`PatchError::TooDeep`] when a value nests deeper than [`MAX_DEPTH`].
pub(crate) fn check_depth(value: &Value, what: &'static str) -> Result<(), PatchError> {
    if measure(value, MAX_DEPTH).0 > MAX_DEPTH {
        return Err(PatchError::TooDeep {
            what,
            max: MAX_DEPTH,
        });
    }
    Ok(())
}

/// JSON equality as RFC 6902's `test` defines it: numbers are equal when their values are, so
/// `1`, `1.0` and `1e0` are one number; everything else compares structurally.
pub(crate) fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => numbers_equal(a, b),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(key, a)| b.get(key).is_some_and(|b| json_equal(a, b)))
        }
        _ => a == b,
    }
}

/// A number as an exact integer when it is one (floats too), else as a float.
enum Numeric {
    Integer(i128),
    Float(f64),
}

fn numeric(number: &Number) -> Numeric {
    if let Some(integer) = number.as_i64() {
        return Numeric::Integer(i128::from(integer));
    }
    if let Some(integer) = number.as_u64() {
        return Numeric::Integer(i128::from(integer));
    }
    let float = number.as_f64().unwrap_or(f64::NAN);
    // Every integral float below 2^64 in magnitude converts to i128 exactly.
    if float.fract() == 0.0 && float.abs() < 18_446_744_073_709_551_616.0 {
        return Numeric::Integer(float as i128);
    }
    Numeric::Float(float)
}

fn numbers_equal(a: &Number, b: &Number) -> bool {
    match (numeric(a), numeric(b)) {
        (Numeric::Integer(a), Numeric::Integer(b)) => a == b,
        (Numeric::Float(a), Numeric::Float(b)) => a == b,
        _ => false,
    }
}

/// A text that two values share exactly when they are [`json_equal`], to index values by.
pub(crate) fn identity(value: &Value) -> String {
    let mut out = String::new();
    write_identity(value, &mut out);
    out
}

fn write_identity(value: &Value, out: &mut String) {
    match value {
        Value::Number(number) => match numeric(number) {
            Numeric::Integer(integer) => out.push_str(&integer.to_string()),
            Numeric::Float(float) => out.push_str(&format!("{float:e}")),
        },
        Value::Array(items) => {
            out.push('[');
            for item in items {
                write_identity(item, out);
                out.push(',');
            }
            out.push(']');
        }
        Value::Object(members) => {
            let mut members: Vec<_> = members.iter().collect();
            members.sort_by_key(|(key, _)| *key);
            out.push('{');
            for (key, member) in members {
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_identity(member, out);
                out.push(',');
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}
