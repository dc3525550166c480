//! JSON merge patch: the examples of RFC 7386, and merge patches computed between values.

use serde_json::{Value, json};

use crate::patch::{MAX_DEPTH, PatchError, apply_merge_patch, create_merge_patch};

/// RFC 7386, appendix A: target, patch, result.
#[test]
fn rfc7386_appendix_a() {
    let cases = [
        (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
        (
            json!({"a": "b"}),
            json!({"b": "c"}),
            json!({"a": "b", "b": "c"}),
        ),
        (json!({"a": "b"}), json!({"a": null}), json!({})),
        (
            json!({"a": "b", "b": "c"}),
            json!({"a": null}),
            json!({"b": "c"}),
        ),
        (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
        (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
        (
            json!({"a": {"b": "c"}}),
            json!({"a": {"b": "d", "c": null}}),
            json!({"a": {"b": "d"}}),
        ),
        (
            json!({"a": [{"b": "c"}]}),
            json!({"a": [1]}),
            json!({"a": [1]}),
        ),
        (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
        (json!({"a": "b"}), json!(["c"]), json!(["c"])),
        (json!({"a": "foo"}), json!(null), json!(null)),
        (json!({"a": "foo"}), json!("bar"), json!("bar")),
        (
            json!({"e": null}),
            json!({"a": 1}),
            json!({"e": null, "a": 1}),
        ),
        (
            json!([1, 2]),
            json!({"a": "b", "c": null}),
            json!({"a": "b"}),
        ),
        (
            json!({}),
            json!({"a": {"bb": {"ccc": null}}}),
            json!({"a": {"bb": {}}}),
        ),
    ];
    for (target, patch, expected) in cases {
        assert_eq!(
            apply_merge_patch(&target, &patch).ok(),
            Some(expected),
            "{target} + {patch}"
        );
    }
}

/// RFC 7386, section 3.
#[test]
fn rfc7386_section_3_example() {
    let target = json!({
        "title": "Goodbye!",
        "author": {"givenName": "John", "familyName": "Doe"},
        "tags": ["example", "sample"],
        "content": "This will be unchanged",
    });
    let patch = json!({
        "title": "Hello!",
        "phoneNumber": "+01-123-456-7890",
        "author": {"familyName": null},
        "tags": ["example"],
    });
    let expected = json!({
        "title": "Hello!",
        "author": {"givenName": "John"},
        "tags": ["example"],
        "content": "This will be unchanged",
        "phoneNumber": "+01-123-456-7890",
    });
    assert_eq!(
        apply_merge_patch(&target, &patch).ok(),
        Some(expected.clone())
    );
    // And the patch between the two does the same.
    let computed = create_merge_patch(&target, &expected);
    assert_eq!(apply_merge_patch(&target, &computed).ok(), Some(expected));
}

#[test]
fn created_patches_send_only_changes() {
    let cases = [
        (json!({"a": 1, "b": 2}), json!({"a": 1, "b": 2}), json!({})),
        (json!({"a": 1, "b": 2}), json!({"a": 1}), json!({"b": null})),
        (
            json!({"a": {"x": 1, "y": 2}}),
            json!({"a": {"x": 1, "y": 3}}),
            json!({"a": {"y": 3}}),
        ),
        (
            json!({"a": [1, 2]}),
            json!({"a": [1, 2, 3]}),
            json!({"a": [1, 2, 3]}),
        ),
        (
            json!({"a": 1}),
            json!({"a": {"b": 1}}),
            json!({"a": {"b": 1}}),
        ),
        (json!({"a": {"b": 1}}), json!({"a": "x"}), json!({"a": "x"})),
        (json!({"a": 1}), json!({"a": 1.0}), json!({"a": 1.0})),
        (json!([1]), json!({"a": 1}), json!({"a": 1})),
        (json!({"a": 1}), json!(null), json!(null)),
        (json!({"a": 1}), json!([null]), json!([null])),
    ];
    for (original, modified, expected) in cases {
        assert_eq!(
            create_merge_patch(&original, &modified),
            expected,
            "{original} -> {modified}"
        );
    }
}

/// A value nested `levels` deep: `{"a": {"a": ... 0}}`.
fn nested(levels: usize) -> Value {
    (0..levels).fold(json!(0), |inner, _| {
        Value::Object(serde_json::Map::from_iter([("a".to_owned(), inner)]))
    })
}

#[test]
fn depth_is_bounded() {
    assert!(apply_merge_patch(&nested(MAX_DEPTH), &nested(MAX_DEPTH)).is_ok());
    assert_eq!(
        apply_merge_patch(&json!({}), &nested(MAX_DEPTH + 1)),
        Err(PatchError::TooDeep {
            what: "patch",
            max: MAX_DEPTH
        }),
    );
    assert_eq!(
        apply_merge_patch(&nested(MAX_DEPTH + 1), &json!({})),
        Err(PatchError::TooDeep {
            what: "object",
            max: MAX_DEPTH
        }),
    );
    // Very deep values (built in memory, not parsed) are refused without recursing through them.
    let deep = nested(100_000);
    assert!(matches!(
        apply_merge_patch(&json!({}), &deep),
        Err(PatchError::TooDeep { .. })
    ));
    // Past the depth limit, a computed patch sends the rest whole, and stays correct.
    let original = nested(MAX_DEPTH + 5);
    let modified = json!({"b": nested(MAX_DEPTH + 5)});
    let patch = create_merge_patch(&original, &modified);
    assert_eq!(patch, json!({"a": null, "b": nested(MAX_DEPTH + 5)}));
    forget(deep);
}

/// Drops a deep value without recursing (serde_json's drop is recursive).
fn forget(mut value: Value) {
    let mut stack = vec![];
    loop {
        match &mut value {
            Value::Object(members) => {
                stack.extend(std::mem::take(members).into_iter().map(|(_, v)| v))
            }
            Value::Array(items) => stack.append(items),
            _ => {}
        }
        match stack.pop() {
            Some(next) => value = next,
            None => break,
        }
    }
}
