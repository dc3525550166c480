//! JSON patch: the examples of RFC 6902 (appendix A), pointers, and the limits.

use serde_json::{Value, json};

use crate::patch::{
    JsonPatchFailure, MAX_DEPTH, MAX_JSON_PATCH_COPIED_VALUES, MAX_JSON_PATCH_OPERATIONS,
    PatchError, apply_json_patch,
};

fn apply(target: Value, patch: Value) -> Result<Value, PatchError> {
    apply_json_patch(&target, &patch)
}

/// The failure of the operation at `index`, or a panic naming what came instead.
fn failure(target: Value, patch: Value) -> (usize, JsonPatchFailure) {
    match apply(target, patch) {
        Err(PatchError::JsonPatch { index, failure, .. }) => (index, failure),
        other => panic!("expected a failed operation, got {other:?}"),
    }
}

#[test]
fn rfc6902_appendix_a_successes() {
    let cases = [
        // A.1. Adding an Object Member
        (
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/baz", "value": "qux"}]),
            json!({"baz": "qux", "foo": "bar"}),
        ),
        // A.2. Adding an Array Element
        (
            json!({"foo": ["bar", "baz"]}),
            json!([{"op": "add", "path": "/foo/1", "value": "qux"}]),
            json!({"foo": ["bar", "qux", "baz"]}),
        ),
        // A.3. Removing an Object Member
        (
            json!({"baz": "qux", "foo": "bar"}),
            json!([{"op": "remove", "path": "/baz"}]),
            json!({"foo": "bar"}),
        ),
        // A.4. Removing an Array Element
        (
            json!({"foo": ["bar", "qux", "baz"]}),
            json!([{"op": "remove", "path": "/foo/1"}]),
            json!({"foo": ["bar", "baz"]}),
        ),
        // A.5. Replacing a Value
        (
            json!({"baz": "qux", "foo": "bar"}),
            json!([{"op": "replace", "path": "/baz", "value": "boo"}]),
            json!({"baz": "boo", "foo": "bar"}),
        ),
        // A.6. Moving a Value
        (
            json!({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}}),
            json!([{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}]),
            json!({"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}),
        ),
        // A.7. Moving an Array Element
        (
            json!({"foo": ["all", "grass", "cows", "eat"]}),
            json!([{"op": "move", "from": "/foo/1", "path": "/foo/3"}]),
            json!({"foo": ["all", "cows", "eat", "grass"]}),
        ),
        // A.8. Testing a Value: Success
        (
            json!({"baz": "qux", "foo": ["a", 2, "c"]}),
            json!([
                {"op": "test", "path": "/baz", "value": "qux"},
                {"op": "test", "path": "/foo/1", "value": 2},
            ]),
            json!({"baz": "qux", "foo": ["a", 2, "c"]}),
        ),
        // A.10. Adding a Nested Member Object
        (
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/child", "value": {"grandchild": {}}}]),
            json!({"foo": "bar", "child": {"grandchild": {}}}),
        ),
        // A.11. Ignoring Unrecognized Elements
        (
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}]),
            json!({"foo": "bar", "baz": "qux"}),
        ),
        // A.14. ~ Escape Ordering
        (
            json!({"/": 9, "~1": 10}),
            json!([{"op": "test", "path": "/~01", "value": 10}]),
            json!({"/": 9, "~1": 10}),
        ),
        // A.16. Adding an Array Value
        (
            json!({"foo": ["bar"]}),
            json!([{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}]),
            json!({"foo": ["bar", ["abc", "def"]]}),
        ),
    ];
    for (target, patch, expected) in cases {
        assert_eq!(apply(target, patch.clone()).ok(), Some(expected), "{patch}");
    }
}

#[test]
fn rfc6902_appendix_a_failures() {
    // A.9. Testing a Value: Error
    assert_eq!(
        failure(
            json!({"baz": "qux"}),
            json!([{"op": "test", "path": "/baz", "value": "bar"}])
        ),
        (0, JsonPatchFailure::TestFailed),
    );
    // A.12. Adding to a Nonexistent Target
    assert_eq!(
        failure(
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/baz/bat", "value": "qux"}])
        ),
        (
            0,
            JsonPatchFailure::NotFound {
                pointer: "/baz/bat".to_owned()
            }
        ),
    );
    // A.15. Comparing Strings and Numbers
    assert_eq!(
        failure(
            json!({"/": 9, "~1": 10}),
            json!([{"op": "test", "path": "/~01", "value": "10"}])
        ),
        (0, JsonPatchFailure::TestFailed),
    );
    // (A.13, an operation with two "op" members, cannot be written as a serde_json value: its
    // parser keeps the last member.)
}

#[test]
fn errors_name_the_operation() {
    let error = apply(
        json!({"a": 1}),
        json!([
            {"op": "replace", "path": "/a", "value": 2},
            {"op": "test", "path": "/a", "value": 1},
        ]),
    );
    assert_eq!(
        error,
        Err(PatchError::JsonPatch {
            index: 1,
            op: "test".to_owned(),
            path: "/a".to_owned(),
            failure: JsonPatchFailure::TestFailed,
        }),
    );
    let message = error
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert_eq!(
        message,
        "JSON patch operation 1 (test \"/a\"): test failed: the value at the path differs"
    );
}

#[test]
fn pointers_follow_rfc6901() {
    let target = json!({"a/b": {"m~n": [10, 20]}, "": {"": 1}, "arr": [1, 2, 3]});
    let value = |pointer: &str| {
        apply(
            target.clone(),
            json!([{"op": "copy", "from": pointer, "path": "/found"}]),
        )
        .ok()
        .and_then(|patched| patched.get("found").cloned())
    };
    assert_eq!(value("/a~1b/m~0n/1"), Some(json!(20)));
    assert_eq!(value("/"), Some(json!({"": 1})));
    assert_eq!(value("//"), Some(json!(1)));
    assert_eq!(value(""), Some(target.clone()));
    assert_eq!(value("/arr/0"), Some(json!(1)));

    let invalid = |pointer: &str| {
        failure(
            target.clone(),
            json!([{"op": "test", "path": pointer, "value": 1}]),
        )
        .1
    };
    for pointer in [
        "a", "/arr/01", "/arr/-1", "/arr/+1", "/arr/1.0", "/arr/", "/a~2b", "/a~", "/arr/-",
    ] {
        assert!(
            matches!(invalid(pointer), JsonPatchFailure::InvalidPointer { .. }),
            "{pointer}: {:?}",
            invalid(pointer)
        );
    }
    assert!(matches!(
        invalid("/arr/99999999999999999999999"),
        JsonPatchFailure::InvalidPointer { .. }
    ));
    assert_eq!(
        invalid("/arr/3"),
        JsonPatchFailure::IndexOutOfRange {
            pointer: "/arr/3".to_owned(),
            index: 3,
            len: 3
        }
    );
    assert_eq!(
        invalid("/missing"),
        JsonPatchFailure::NotFound {
            pointer: "/missing".to_owned()
        }
    );
    assert_eq!(
        invalid("/arr/0/x"),
        JsonPatchFailure::NotFound {
            pointer: "/arr/0/x".to_owned()
        }
    );
}

#[test]
fn operations_on_arrays_and_the_root() {
    let target = json!({"arr": [1, 2]});
    let ok = |patch: Value| apply(target.clone(), patch).ok();
    assert_eq!(
        ok(json!([{"op": "add", "path": "/arr/2", "value": 3}])),
        Some(json!({"arr": [1, 2, 3]}))
    );
    assert_eq!(
        ok(json!([{"op": "add", "path": "/arr/0", "value": 0}])),
        Some(json!({"arr": [0, 1, 2]}))
    );
    assert_eq!(
        ok(json!([{"op": "add", "path": "", "value": [1]}])),
        Some(json!([1]))
    );
    assert_eq!(
        ok(json!([{"op": "replace", "path": "", "value": "x"}])),
        Some(json!("x"))
    );
    assert_eq!(
        ok(json!([{"op": "move", "from": "/arr", "path": "/arr"}])),
        Some(target.clone())
    );
    assert_eq!(
        ok(json!([{"op": "copy", "from": "", "path": "/copy"}])),
        Some(json!({"arr": [1, 2], "copy": {"arr": [1, 2]}}))
    );
    assert_eq!(
        ok(json!([{"op": "add", "path": "/arr", "value": {}}])),
        Some(json!({"arr": {}}))
    );
    assert_eq!(
        ok(json!([{"op": "test", "path": "", "value": {"arr": [1.0, 2e0]}}])),
        Some(target.clone())
    );
    assert_eq!(ok(json!([])), Some(target.clone()));

    assert_eq!(
        failure(
            target.clone(),
            json!([{"op": "add", "path": "/arr/3", "value": 0}])
        )
        .1,
        JsonPatchFailure::IndexOutOfRange {
            pointer: "/arr/3".to_owned(),
            index: 3,
            len: 2
        },
    );
    assert_eq!(
        failure(target.clone(), json!([{"op": "remove", "path": ""}])).1,
        JsonPatchFailure::RemoveRoot
    );
    assert_eq!(
        failure(target.clone(), json!([{"op": "remove", "path": "/nope"}])).1,
        JsonPatchFailure::NotFound {
            pointer: "/nope".to_owned()
        }
    );
    assert_eq!(
        failure(
            target.clone(),
            json!([{"op": "replace", "path": "/nope", "value": 1}])
        )
        .1,
        JsonPatchFailure::NotFound {
            pointer: "/nope".to_owned()
        }
    );
    assert_eq!(
        failure(
            target.clone(),
            json!([{"op": "move", "from": "/arr", "path": "/arr/0"}])
        )
        .1,
        JsonPatchFailure::MoveIntoChild {
            from: "/arr".to_owned()
        }
    );
    assert_eq!(
        failure(
            target.clone(),
            json!([{"op": "add", "path": "/arr/0/x", "value": 1}])
        )
        .1,
        JsonPatchFailure::NotAContainer {
            pointer: "/arr/0/x".to_owned()
        }
    );
    assert_eq!(
        failure(
            target.clone(),
            json!([{"op": "copy", "from": "/nope", "path": "/x"}])
        )
        .1,
        JsonPatchFailure::NotFound {
            pointer: "/nope".to_owned()
        }
    );
}

#[test]
fn malformed_operations() {
    let target = json!({});
    let cases = [
        (json!({"path": "/a"}), JsonPatchFailure::MissingMember("op")),
        (
            json!({"op": "add", "value": 1}),
            JsonPatchFailure::MissingMember("path"),
        ),
        (
            json!({"op": "add", "path": "/a"}),
            JsonPatchFailure::MissingMember("value"),
        ),
        (
            json!({"op": "replace", "path": ""}),
            JsonPatchFailure::MissingMember("value"),
        ),
        (
            json!({"op": "test", "path": ""}),
            JsonPatchFailure::MissingMember("value"),
        ),
        (
            json!({"op": "move", "path": "/a"}),
            JsonPatchFailure::MissingMember("from"),
        ),
        (
            json!({"op": "copy", "path": "/a"}),
            JsonPatchFailure::MissingMember("from"),
        ),
        (
            json!({"op": 1, "path": "/a"}),
            JsonPatchFailure::WrongMemberType("op"),
        ),
        (
            json!({"op": "add", "path": 1, "value": 1}),
            JsonPatchFailure::WrongMemberType("path"),
        ),
        (
            json!({"op": "copy", "path": "/a", "from": ["/b"]}),
            JsonPatchFailure::WrongMemberType("from"),
        ),
        (
            json!({"op": "merge", "path": "/a"}),
            JsonPatchFailure::UnknownOp("merge".to_owned()),
        ),
    ];
    for (operation, expected) in cases {
        assert_eq!(
            failure(target.clone(), json!([operation])),
            (0, expected),
            "{operation}"
        );
    }
    for patch in [
        json!({"op": "add"}),
        json!("add"),
        json!(null),
        json!([1]),
        json!([{"op": "test", "path": "", "value": {}}, []]),
    ] {
        assert!(
            matches!(
                apply(target.clone(), patch.clone()),
                Err(PatchError::InvalidPatch { .. })
            ),
            "{patch}"
        );
    }
    assert_eq!(
        PatchError::InvalidPatch {
            reason: String::new()
        }
        .code(),
        400
    );
}

#[test]
fn failed_patches_change_nothing() {
    let target = json!({"a": 1});
    let patch = json!([
        {"op": "add", "path": "/b", "value": 2},
        {"op": "test", "path": "/a", "value": 2},
    ]);
    assert!(apply_json_patch(&target, &patch).is_err());
    assert_eq!(target, json!({"a": 1}));
}

#[test]
fn limits() {
    let too_many = Value::Array(vec![
        json!({"op": "test", "path": "", "value": {}});
        MAX_JSON_PATCH_OPERATIONS + 1
    ]);
    assert_eq!(
        apply(json!({}), too_many),
        Err(PatchError::TooManyOperations {
            count: MAX_JSON_PATCH_OPERATIONS + 1,
            max: MAX_JSON_PATCH_OPERATIONS
        }),
    );
    let enough = Value::Array(vec![
        json!({"op": "test", "path": "", "value": {}});
        MAX_JSON_PATCH_OPERATIONS
    ]);
    assert!(apply(json!({}), enough).is_ok());

    // Each copy doubles the document: the copies are rationed.
    let doubling: Vec<Value> = (0..40)
        .map(|_| json!({"op": "copy", "from": "/a", "path": "/a/-"}))
        .collect();
    let error = apply(json!({"a": [1]}), Value::Array(doubling));
    assert_eq!(
        error,
        Err(PatchError::TooLarge {
            max: MAX_JSON_PATCH_COPIED_VALUES
        })
    );
    assert_eq!(error.err().map(|error| error.code()), Some(413));

    // Nor may a patch nest values deeper than anything can be parsed back.
    let mut deep = json!(0);
    for _ in 0..MAX_DEPTH - 3 {
        deep = json!([deep]);
    }
    assert!(
        apply(
            json!({}),
            json!([{"op": "add", "path": "/a", "value": deep.clone()}])
        )
        .is_ok()
    );
    assert_eq!(
        apply(
            json!({"a": {"b": {"c": {"d": {}}}}}),
            json!([{"op": "add", "path": "/a/b/c/d/e", "value": deep.clone()}]),
        ),
        Err(PatchError::TooDeep {
            what: "result",
            max: MAX_DEPTH
        }),
    );
    // Copying a value into itself, over and over, stops at the limit too.
    let nesting: Vec<Value> = (0..MAX_DEPTH + 2)
        .map(|_| json!({"op": "copy", "from": "", "path": "/a"}))
        .collect();
    assert_eq!(
        apply(json!({}), Value::Array(nesting)),
        Err(PatchError::TooDeep {
            what: "result",
            max: MAX_DEPTH
        }),
    );
}
