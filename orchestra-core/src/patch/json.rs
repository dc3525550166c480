//! JSON patch, RFC 6902, with JSON pointers (RFC 6901).

use serde_json::{Map, Value};

use super::{
    JsonPatchFailure, MAX_DEPTH, MAX_JSON_PATCH_COPIED_VALUES, MAX_JSON_PATCH_OPERATIONS,
    PatchError, check_depth, json_equal, measure,
};

/// Applies a JSON patch (RFC 6902) to a target, returning the patched copy.
///
/// The patch is an array of operations, applied in order: `add`, `remove`, `replace`, `move`,
/// `copy` and `test`. Pointers follow RFC 6901 (`~1` is `/`, `~0` is `~`; array indices are
/// decimal without leading zeros; `-` is the end of an array, for `add`). Members an operation
/// does not use are ignored. The patch is atomic: the first operation that fails stops it with a
/// [`PatchError::JsonPatch`] naming the operation, and the target is left as it was.
///
/// A patch that is not an array of objects is a [`PatchError::InvalidPatch`]; a patch of more
/// than [`MAX_JSON_PATCH_OPERATIONS`](super::MAX_JSON_PATCH_OPERATIONS) operations a
/// [`PatchError::TooManyOperations`].
///
/// # Examples
///
/// ```
/// use orchestra_core::patch::{JsonPatchFailure, PatchError, apply_json_patch};
/// use serde_json::json;
///
/// let target = json!({"spec": {"containers": [{"name": "app", "image": "app:1"}]}});
/// let patch = json!([
///     {"op": "test", "path": "/spec/containers/0/name", "value": "app"},
///     {"op": "replace", "path": "/spec/containers/0/image", "value": "app:2"},
///     {"op": "add", "path": "/spec/containers/-", "value": {"name": "sidecar"}},
/// ]);
/// assert_eq!(apply_json_patch(&target, &patch)?, json!({"spec": {"containers": [
///     {"name": "app", "image": "app:2"},
///     {"name": "sidecar"},
/// ]}}));
///
/// let failing = json!([{"op": "test", "path": "/spec/containers/0/name", "value": "web"}]);
/// assert!(matches!(
///     apply_json_patch(&target, &failing),
///     Err(PatchError::JsonPatch { index: 0, failure: JsonPatchFailure::TestFailed, .. })
/// ));
/// # Ok::<(), PatchError>(())
/// ```
pub fn apply_json_patch(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Array(operations) = patch else {
        return Err(PatchError::InvalidPatch {
            reason: "a JSON patch must be an array of operations".to_owned(),
        });
    };
    if operations.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyOperations {
            count: operations.len(),
            max: MAX_JSON_PATCH_OPERATIONS,
        });
    }
    if let Some(index) = operations
        .iter()
        .position(|operation| !operation.is_object())
    {
        return Err(PatchError::InvalidPatch {
            reason: format!("operation {index} of the JSON patch is not an object"),
        });
    }
    check_depth(target, "object")?;
    check_depth(patch, "patch")?;
    let mut document = target.clone();
    let mut carried = 0;
    for (index, operation) in operations.iter().enumerate() {
        let Value::Object(operation) = operation else {
            continue;
        };
        apply_operation(&mut document, operation, &mut carried).map_err(|error| match error {
            Failure::Operation(failure) => PatchError::JsonPatch {
                index,
                op: string_member(operation, "op")
                    .unwrap_or_default()
                    .to_owned(),
                path: string_member(operation, "path")
                    .unwrap_or_default()
                    .to_owned(),
                failure,
            },
            Failure::Patch(error) => error,
        })?;
    }
    Ok(document)
}

/// An operation's failure, or a limit that stops the whole patch.
enum Failure {
    Operation(JsonPatchFailure),
    Patch(PatchError),
}

impl From<JsonPatchFailure> for Failure {
    fn from(failure: JsonPatchFailure) -> Failure {
        Failure::Operation(failure)
    }
}

fn string_member<'a>(operation: &'a Map<String, Value>, member: &str) -> Option<&'a str> {
    operation.get(member).and_then(Value::as_str)
}

/// A member the operation needs, as a string.
fn required_string<'a>(
    operation: &'a Map<String, Value>,
    member: &'static str,
) -> Result<&'a str, JsonPatchFailure> {
    match operation.get(member) {
        None => Err(JsonPatchFailure::MissingMember(member)),
        Some(Value::String(value)) => Ok(value),
        Some(_) => Err(JsonPatchFailure::WrongMemberType(member)),
    }
}

fn required_value(operation: &Map<String, Value>) -> Result<&Value, JsonPatchFailure> {
    operation
        .get("value")
        .ok_or(JsonPatchFailure::MissingMember("value"))
}

fn apply_operation(
    document: &mut Value,
    operation: &Map<String, Value>,
    carried: &mut usize,
) -> Result<(), Failure> {
    let op = required_string(operation, "op")?;
    let path = required_string(operation, "path")?;
    let tokens = Pointer::parse(path)?;
    match op {
        "add" => {
            let value = required_value(operation)?;
            check_insert(&tokens, value)?;
            add(document, &tokens, value.clone())?;
        }
        "remove" => {
            remove(document, &tokens)?;
        }
        "replace" => {
            let value = required_value(operation)?;
            check_insert(&tokens, value)?;
            let slot = get_mut(document, &tokens)?;
            *slot = value.clone();
        }
        "move" => {
            let from = required_string(operation, "from")?;
            let source = Pointer::parse(from)?;
            if tokens.tokens.len() > source.tokens.len()
                && tokens.tokens.starts_with(&source.tokens)
            {
                return Err(JsonPatchFailure::MoveIntoChild {
                    from: from.to_owned(),
                }
                .into());
            }
            let (_, count) = check_insert(&tokens, get(document, &source)?)?;
            charge(carried, count)?;
            if tokens.tokens != source.tokens {
                let value = remove(document, &source)?;
                add(document, &tokens, value)?;
            }
        }
        "copy" => {
            let from = required_string(operation, "from")?;
            let source = Pointer::parse(from)?;
            let value = get(document, &source)?;
            let (_, count) = check_insert(&tokens, value)?;
            charge(carried, count)?;
            let value = value.clone();
            add(document, &tokens, value)?;
        }
        "test" => {
            let value = required_value(operation)?;
            if !json_equal(get(document, &tokens)?, value) {
                return Err(JsonPatchFailure::TestFailed.into());
            }
        }
        other => return Err(JsonPatchFailure::UnknownOp(other.to_owned()).into()),
    }
    Ok(())
}

/// Counts values carried by `copy` and `move` against [`MAX_JSON_PATCH_COPIED_VALUES`].
fn charge(carried: &mut usize, count: usize) -> Result<(), Failure> {
    *carried = carried.saturating_add(count);
    if *carried > MAX_JSON_PATCH_COPIED_VALUES {
        return Err(Failure::Patch(PatchError::TooLarge {
            max: MAX_JSON_PATCH_COPIED_VALUES,
        }));
    }
    Ok(())
}

/// Checks that a value put at a pointer keeps the document within [`MAX_DEPTH`]; returns the
/// value's depth and size.
fn check_insert(pointer: &Pointer<'_>, value: &Value) -> Result<(usize, usize), Failure> {
    let room = MAX_DEPTH.saturating_sub(pointer.tokens.len());
    let (depth, count) = measure(value, room);
    if pointer.tokens.len() > MAX_DEPTH || depth > room {
        return Err(Failure::Patch(PatchError::TooDeep {
            what: "result",
            max: MAX_DEPTH,
        }));
    }
    Ok((depth, count))
}

/// A parsed JSON pointer: its reference tokens, unescaped, and the text it was parsed from.
struct Pointer<'a> {
    text: &'a str,
    tokens: Vec<String>,
}

impl<'a> Pointer<'a> {
    fn parse(text: &'a str) -> Result<Pointer<'a>, JsonPatchFailure> {
        let invalid = |reason| JsonPatchFailure::InvalidPointer {
            pointer: text.to_owned(),
            reason,
        };
        if text.is_empty() {
            return Ok(Pointer {
                text,
                tokens: Vec::new(),
            });
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(invalid("a pointer must be empty or start with '/'"));
        };
        let tokens = rest
            .split('/')
            .map(|token| {
                let mut unescaped = String::with_capacity(token.len());
                let mut chars = token.chars();
                while let Some(c) = chars.next() {
                    match c {
                        '~' => match chars.next() {
                            Some('0') => unescaped.push('~'),
                            Some('1') => unescaped.push('/'),
                            _ => return Err(invalid("'~' must be followed by '0' or '1'")),
                        },
                        c => unescaped.push(c),
                    }
                }
                Ok(unescaped)
            })
            .collect::<Result<_, _>>()?;
        Ok(Pointer { text, tokens })
    }

    fn not_found(&self) -> JsonPatchFailure {
        JsonPatchFailure::NotFound {
            pointer: self.text.to_owned(),
        }
    }

    /// The array index a token names, below `len` (or at most `len` when `end` is allowed, where
    /// `-` also names `len`).
    fn index(&self, token: &str, len: usize, end: bool) -> Result<usize, JsonPatchFailure> {
        let invalid = |reason| JsonPatchFailure::InvalidPointer {
            pointer: self.text.to_owned(),
            reason,
        };
        let index = if token == "-" {
            if !end {
                return Err(invalid("'-' names no existing array item"));
            }
            len
        } else {
            let digits = token.bytes().all(|byte| byte.is_ascii_digit());
            if token.is_empty() || !digits || (token.len() > 1 && token.starts_with('0')) {
                return Err(invalid(
                    "an array index must be a decimal number without leading zeros",
                ));
            }
            token
                .parse::<usize>()
                .map_err(|_| invalid("the array index is too large"))?
        };
        if index > len || (index == len && !end) {
            return Err(JsonPatchFailure::IndexOutOfRange {
                pointer: self.text.to_owned(),
                index,
                len,
            });
        }
        Ok(index)
    }
}

fn get<'v>(document: &'v Value, pointer: &Pointer<'_>) -> Result<&'v Value, JsonPatchFailure> {
    let mut current = document;
    for token in &pointer.tokens {
        current = match current {
            Value::Object(members) => members.get(token).ok_or_else(|| pointer.not_found())?,
            Value::Array(items) => {
                let index = pointer.index(token, items.len(), false)?;
                items.get(index).ok_or_else(|| pointer.not_found())?
            }
            _ => return Err(pointer.not_found()),
        };
    }
    Ok(current)
}

fn get_mut<'v>(
    document: &'v mut Value,
    pointer: &Pointer<'_>,
) -> Result<&'v mut Value, JsonPatchFailure> {
    walk_mut(document, pointer, &pointer.tokens)
}

/// The value `tokens` (a prefix of the pointer's tokens) names.
fn walk_mut<'v>(
    document: &'v mut Value,
    pointer: &Pointer<'_>,
    tokens: &[String],
) -> Result<&'v mut Value, JsonPatchFailure> {
    let mut current = document;
    for token in tokens {
        current = match current {
            Value::Object(members) => members.get_mut(token).ok_or_else(|| pointer.not_found())?,
            Value::Array(items) => {
                let index = pointer.index(token, items.len(), false)?;
                items.get_mut(index).ok_or_else(|| pointer.not_found())?
            }
            _ => return Err(pointer.not_found()),
        };
    }
    Ok(current)
}

/// The container holding the value a pointer names, and the last token; `None` for the root.
fn parent_mut<'v, 'p>(
    document: &'v mut Value,
    pointer: &'p Pointer<'_>,
) -> Result<Option<(&'v mut Value, &'p str)>, JsonPatchFailure> {
    let Some((last, parents)) = pointer.tokens.split_last() else {
        return Ok(None);
    };
    let parent = walk_mut(document, pointer, parents)?;
    Ok(Some((parent, last)))
}

fn add(document: &mut Value, pointer: &Pointer<'_>, value: Value) -> Result<(), JsonPatchFailure> {
    let Some((parent, last)) = parent_mut(document, pointer)? else {
        *document = value;
        return Ok(());
    };
    match parent {
        Value::Object(members) => {
            members.insert(last.to_owned(), value);
        }
        Value::Array(items) => {
            let index = pointer.index(last, items.len(), true)?;
            items.insert(index, value);
        }
        _ => {
            return Err(JsonPatchFailure::NotAContainer {
                pointer: pointer.text.to_owned(),
            });
        }
    }
    Ok(())
}

fn remove(document: &mut Value, pointer: &Pointer<'_>) -> Result<Value, JsonPatchFailure> {
    let Some((parent, last)) = parent_mut(document, pointer)? else {
        return Err(JsonPatchFailure::RemoveRoot);
    };
    match parent {
        Value::Object(members) => members.remove(last).ok_or_else(|| pointer.not_found()),
        Value::Array(items) => {
            let index = pointer.index(last, items.len(), false)?;
            Ok(items.remove(index))
        }
        _ => Err(pointer.not_found()),
    }
}
