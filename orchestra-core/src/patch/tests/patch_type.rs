//! Patch types and the status codes of errors.

use serde_json::json;

use crate::patch::{PatchError, PatchType, apply_patch};

#[test]
fn content_types_round_trip() {
    for patch_type in PatchType::ALL {
        assert_eq!(
            PatchType::from_content_type(patch_type.content_type()),
            Ok(patch_type)
        );
        assert_eq!(patch_type.to_string(), patch_type.content_type());
    }
    assert_eq!(
        PatchType::from_content_type(" Application/Strategic-Merge-Patch+JSON ; charset=utf-8"),
        Ok(PatchType::StrategicMerge),
    );
    assert_eq!(
        PatchType::from_content_type("application/json-patch+json"),
        Ok(PatchType::Json)
    );
    assert_eq!(
        PatchType::from_content_type("application/apply-patch+yaml"),
        Ok(PatchType::Apply)
    );
    for unsupported in [
        "application/json",
        "",
        "application/merge-patch",
        "text/plain; application/merge-patch+json",
    ] {
        let error = PatchType::from_content_type(unsupported);
        assert_eq!(
            error,
            Err(PatchError::UnsupportedMediaType {
                content_type: unsupported.to_owned()
            })
        );
        assert_eq!(
            error.err().map(|error| (error.code(), error.reason())),
            Some((415, "UnsupportedMediaType"))
        );
    }
}

#[test]
fn apply_is_not_a_plain_patch() {
    let error = apply_patch(&json!({}), PatchType::Apply, &json!({}), None);
    assert_eq!(error, Err(PatchError::ApplyUnsupported));
    assert_eq!(error.err().map(|error| error.code()), Some(415));
}

#[test]
fn apply_patch_dispatches_on_the_type() {
    let target = json!({"a": {"b": 1}, "list": [1]});
    assert_eq!(
        apply_patch(
            &target,
            PatchType::Merge,
            &json!({"a": {"c": 2}, "list": [2]}),
            None
        )
        .ok(),
        Some(json!({"a": {"b": 1, "c": 2}, "list": [2]})),
    );
    assert_eq!(
        apply_patch(
            &target,
            PatchType::Json,
            &json!([{"op": "add", "path": "/list/-", "value": 2}]),
            None
        )
        .ok(),
        Some(json!({"a": {"b": 1}, "list": [1, 2]})),
    );
    let keys = crate::patch::MergeKeys::new().merge_primitives("list");
    assert_eq!(
        apply_patch(
            &target,
            PatchType::StrategicMerge,
            &json!({"list": [2]}),
            Some(&keys)
        )
        .ok(),
        Some(json!({"a": {"b": 1}, "list": [2, 1]})),
    );
}

#[test]
fn error_codes_follow_kubernetes() {
    let cases = [
        (
            PatchError::TooManyOperations { count: 2, max: 1 },
            413,
            "RequestEntityTooLarge",
        ),
        (
            PatchError::TooDeep {
                what: "patch",
                max: 1,
            },
            422,
            "Invalid",
        ),
        (
            PatchError::InvalidPatch {
                reason: String::new(),
            },
            400,
            "BadRequest",
        ),
        (
            PatchError::StrategicMerge {
                path: String::new(),
                failure: crate::patch::StrategicMergeFailure::ListOfLists,
            },
            422,
            "Invalid",
        ),
        (
            PatchError::StrategicMerge {
                path: String::new(),
                failure: crate::patch::StrategicMergeFailure::MixedList,
            },
            400,
            "BadRequest",
        ),
    ];
    for (error, code, reason) in cases {
        assert_eq!((error.code(), error.reason()), (code, reason), "{error}");
    }
}
