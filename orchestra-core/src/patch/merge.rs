//! JSON merge patch, RFC 7386: applying one, and computing the one between two values.

use serde_json::{Map, Value};

use super::{MAX_DEPTH, PatchError, check_depth};

/// Applies a JSON merge patch (RFC 7386) to a target, returning the patched copy.
///
/// An object patch merges into the target member by member (a target that is not an object is
/// first replaced by an empty one); a `null` member deletes the member; any other patch value —
/// arrays included — replaces the target. Fails only with [`PatchError::TooDeep`], for values
/// nested deeper than [`MAX_DEPTH`](super::MAX_DEPTH).
///
/// # Examples
///
/// The example of RFC 7386, section 3:
///
/// ```
/// use orchestra_core::patch::apply_merge_patch;
/// use serde_json::json;
///
/// let target = json!({
///     "title": "Goodbye!",
///     "author": {"givenName": "John", "familyName": "Doe"},
///     "tags": ["example", "sample"],
///     "content": "This will be unchanged",
/// });
/// let patch = json!({
///     "title": "Hello!",
///     "phoneNumber": "+01-123-456-7890",
///     "author": {"familyName": null},
///     "tags": ["example"],
/// });
/// assert_eq!(apply_merge_patch(&target, &patch)?, json!({
///     "title": "Hello!",
///     "author": {"givenName": "John"},
///     "tags": ["example"],
///     "content": "This will be unchanged",
///     "phoneNumber": "+01-123-456-7890",
/// }));
/// # Ok::<(), orchestra_core::patch::PatchError>(())
/// ```
pub fn apply_merge_patch(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    check_depth(target, "object")?;
    check_depth(patch, "patch")?;
    let mut result = target.clone();
    merge_into(&mut result, patch);
    Ok(result)
}

/// Merges a patch into a value in place. Recursion follows the patch, whose depth the caller
/// has checked.
fn merge_into(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(members) = target {
        for (key, value) in patch {
            if value.is_null() {
                members.remove(key);
            } else {
                merge_into(members.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// The JSON merge patch that turns `original` into `modified`: applied to `original` with
/// [`apply_merge_patch`], it gives `modified` back.
///
/// Members missing from `modified` are set to `null`, changed members to their new value
/// (objects recursively, so that only what changed is sent), and a `modified` that is not an
/// object is the patch itself. A merge patch cannot set a member *to* `null` (null deletes), so
/// the round trip holds when `modified` has no `null` members; `null` items of arrays are fine.
///
/// # Examples
///
/// ```
/// use orchestra_core::patch::{apply_merge_patch, create_merge_patch};
/// use serde_json::json;
///
/// let original = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}, "spec": {"replicas": 1}});
/// let modified = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"replicas": 3}});
/// let patch = create_merge_patch(&original, &modified);
/// assert_eq!(patch, json!({"metadata": {"labels": {"tier": null}}, "spec": {"replicas": 3}}));
/// assert_eq!(apply_merge_patch(&original, &patch)?, modified);
/// # Ok::<(), orchestra_core::patch::PatchError>(())
/// ```
pub fn create_merge_patch(original: &Value, modified: &Value) -> Value {
    diff(original, modified, 1)
}

/// The patch between two values at nesting `level`. Past [`MAX_DEPTH`] the modified value is
/// sent whole, which is still a correct patch, so that recursion stays bounded.
fn diff(original: &Value, modified: &Value, level: usize) -> Value {
    let (Value::Object(original), Value::Object(modified)) = (original, modified) else {
        return modified.clone();
    };
    if level > MAX_DEPTH {
        return Value::Object(modified.clone());
    }
    let mut patch = Map::new();
    for key in original.keys() {
        if !modified.contains_key(key) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    for (key, new) in modified {
        match original.get(key) {
            Some(old) if old.is_object() && new.is_object() => {
                let changes = diff(old, new, level + 1);
                if changes
                    .as_object()
                    .is_none_or(|changes| !changes.is_empty())
                {
                    patch.insert(key.clone(), changes);
                }
            }
            Some(old) if old == new => {}
            _ => {
                patch.insert(key.clone(), new.clone());
            }
        }
    }
    Value::Object(patch)
}
