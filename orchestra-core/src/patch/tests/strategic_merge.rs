//! Strategic merge patch: Kubernetes' own cases (`strategicpatch/patch_test.go`), ported as
//! tables, and the built-in kinds' merge keys.

use serde_json::{Value, json};

use crate::patch::{
    MergeKeys, PatchError, PatchStrategy, PatchType, StrategicMergeFailure, apply_patch,
    apply_strategic_merge_patch,
};
use crate::resource::ApiResource;

/// The merge keys of Kubernetes' test type `MergeItem` (and `RetainKeysMergeItem`), nested as
/// deep as the cases go.
fn merge_item() -> MergeKeys {
    fn fields(keys: MergeKeys, prefix: &str, depth: usize) -> MergeKeys {
        let at = |field: &str| {
            if prefix.is_empty() {
                field.to_owned()
            } else {
                format!("{prefix}.{field}")
            }
        };
        let mut keys = keys
            .merge_by_key(&at("mergingList"), "name")
            .merge_primitives(&at("mergingIntList"))
            .merge_by_key(&at("mergeItemPtr"), "name")
            .replace(&at("replacingItem"))
            .retain_keys(&at("retainKeysMap"))
            .merge_primitives(&at("retainKeysMap.mergingIntList"))
            .merge_by_key(&at("retainKeysMap.mergingList"), "name")
            .merge_by_key(&at("retainKeysMergingList"), "name")
            .retain_keys(&at("retainKeysMergingList"));
        if depth > 0 {
            for list in ["mergingList", "mergeItemPtr", "retainKeysMergingList"] {
                keys = fields(keys, &at(list), depth - 1);
            }
        }
        keys
    }
    fields(MergeKeys::new(), "", 2)
}

/// One case: the object, the patch, and the expected result.
struct Case {
    name: &'static str,
    object: Value,
    patch: Value,
    expected: Value,
}

fn case(name: &'static str, object: Value, patch: Value, expected: Value) -> Case {
    Case {
        name,
        object,
        patch,
        expected,
    }
}

fn run(cases: Vec<Case>, keys: &MergeKeys) {
    let mut failures = Vec::new();
    for case in &cases {
        match apply_strategic_merge_patch(&case.object, &case.patch, keys) {
            Ok(result) if result == case.expected => {}
            Ok(result) => failures.push(format!(
                "{}:\n  expected {}\n  got      {}",
                case.name, case.expected, result
            )),
            Err(error) => failures.push(format!("{}: {error}", case.name)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `customStrategicMergePatchTestCaseData` and `customStrategicMergePatchRawTestCases`: patches
/// Kubernetes' own patch computation would not produce, applied to the original.
#[test]
fn kubernetes_custom_cases() {
    run(
        vec![
            case(
                "unique scalars when merging lists",
                json!({"mergingIntList": [1, 2]}),
                json!({"mergingIntList": [2, 3]}),
                json!({"mergingIntList": [1, 2, 3]}),
            ),
            case(
                "delete map from nested map",
                json!({"simpleMap": {"key1": 1, "key2": 1}}),
                json!({"simpleMap": {"$patch": "delete"}}),
                json!({"simpleMap": {}}),
            ),
            case(
                "delete all items from merging list",
                json!({"mergingList": [{"name": 1}, {"name": 2}]}),
                json!({"mergingList": [{"$patch": "replace"}]}),
                json!({"mergingList": []}),
            ),
            case(
                "merge empty merging lists",
                json!({"mergingList": []}),
                json!({"mergingList": []}),
                json!({"mergingList": []}),
            ),
            case(
                "delete all keys from map",
                json!({"name": 1, "value": 1}),
                json!({"$patch": "replace"}),
                json!({}),
            ),
            case(
                "add key and delete all keys from map",
                json!({"name": 1, "value": 1}),
                json!({"other": "a", "$patch": "replace"}),
                json!({"other": "a"}),
            ),
            case(
                "de-duplicate entries in a merging list",
                json!({"mergingList": [
                    {"name": 1}, {"name": 1}, {"name": 2, "value": "a"}, {"name": 3}, {"name": 3},
                ]}),
                json!({"mergingList": [
                    {"name": 1, "$patch": "delete"}, {"name": 3, "$patch": "delete"},
                ]}),
                json!({"mergingList": [{"name": 1}, {"name": 2, "value": "a"}, {"name": 3}]}),
            ),
            case(
                "delete all duplicate entries in a merging list",
                json!({"mergingList": [
                    {"name": 1}, {"name": 1}, {"name": 2, "value": "a"}, {"name": 3}, {"name": 3},
                ]}),
                json!({"mergingList": [
                    {"name": 1, "$patch": "delete"}, {"name": 1, "$patch": "delete"},
                    {"name": 3, "$patch": "delete"}, {"name": 3, "$patch": "delete"},
                ]}),
                json!({"mergingList": [{"name": 2, "value": "a"}]}),
            ),
            case(
                "retainKeys map can add a field when no retainKeys directive present",
                json!({"retainKeysMap": {"name": "foo"}}),
                json!({"retainKeysMap": {"value": "bar"}}),
                json!({"retainKeysMap": {"name": "foo", "value": "bar"}}),
            ),
            case(
                "retainKeys map can delete a field when no retainKeys directive present",
                json!({"retainKeysMap": {"name": "foo", "value": "a"}}),
                json!({"retainKeysMap": {"value": null}}),
                json!({"retainKeysMap": {"name": "foo"}}),
            ),
            case(
                "retainKeys map merge an empty map",
                json!({"retainKeysMap": {"name": "foo", "value": "a"}}),
                json!({"retainKeysMap": {}}),
                json!({"retainKeysMap": {"name": "foo", "value": "a"}}),
            ),
            case(
                "retainKeys list can add a field when no retainKeys directive present",
                json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo"}]}),
                json!({"retainKeysMergingList": [{"name": "foo", "value": "a"}]}),
                json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "a"}]}),
            ),
            case(
                "retainKeys list can delete a field when no retainKeys directive present",
                json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "a"}]}),
                json!({"retainKeysMergingList": [{"name": "foo", "value": null}]}),
                json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo"}]}),
            ),
            case(
                "preserve the order from the patch in a merging list",
                json!({"mergingList": [{"name": 1}, {"name": 2, "value": "b"}, {"name": 3}]}),
                json!({"mergingList": [
                    {"name": 3, "value": "c"}, {"name": 1, "value": "a"}, {"name": 2, "other": "x"},
                ]}),
                json!({"mergingList": [
                    {"name": 3, "value": "c"},
                    {"name": 1, "value": "a"},
                    {"name": 2, "value": "b", "other": "x"},
                ]}),
            ),
            case(
                "preserve the order from the patch in a merging list 2",
                json!({"mergingList": [{"name": 1}, {"name": 2, "value": "b"}, {"name": 3}]}),
                json!({"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}]}),
                json!({"mergingList": [
                    {"name": 2, "value": "b"}, {"name": 3, "value": "c"}, {"name": 1, "value": "a"},
                ]}),
            ),
            case(
                "preserve the order from the patch in a merging int list",
                json!({"mergingIntList": [1, 2, 3]}),
                json!({"mergingIntList": [3, 1, 2]}),
                json!({"mergingIntList": [3, 1, 2]}),
            ),
            case(
                "preserve the order from the patch in a merging int list 2",
                json!({"mergingIntList": [1, 2, 3]}),
                json!({"mergingIntList": [3, 1]}),
                json!({"mergingIntList": [2, 3, 1]}),
            ),
            case(
                "$setElementOrder contains item that is not present in the list to be merged",
                json!({"mergingList": [{"name": 1}, {"name": 3}]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 3}, {"name": 2}, {"name": 1}],
                    "mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}],
                }),
                json!({"mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]}),
            ),
            case(
                "$setElementOrder contains item that is not present in the int list to be merged",
                json!({"mergingIntList": [1, 3]}),
                json!({"$setElementOrder/mergingIntList": [3, 2, 1]}),
                json!({"mergingIntList": [3, 1]}),
            ),
        ],
        &merge_item(),
    );
}

#[test]
fn kubernetes_custom_error_cases() {
    let keys = merge_item();
    let failure =
        |object: Value, patch: Value| match apply_strategic_merge_patch(&object, &patch, &keys) {
            Err(PatchError::StrategicMerge { path, failure }) => (path, failure),
            other => panic!("expected a strategic merge error, got {other:?}"),
        };
    // "should check if order in $setElementOrder and patch list match"
    assert_eq!(
        failure(
            json!({"mergingList": [{"name": 1}, {"name": 3}, {"name": 2}]}),
            json!({
                "$setElementOrder/mergingList": [{"name": 1}, {"name": 2}, {"name": 3}],
                "mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}],
            }),
        ),
        (
            "mergingList".to_owned(),
            StrategicMergeFailure::SetElementOrderMismatch
        ),
    );
    assert_eq!(
        failure(
            json!({"mergingIntList": [1, 3, 2]}),
            json!({"$setElementOrder/mergingIntList": [1, 2, 3], "mergingIntList": [3, 1]}),
        )
        .1,
        StrategicMergeFailure::SetElementOrderMismatch,
    );
    // "missing merge key should error out"
    assert_eq!(
        failure(
            json!({"mergingList": [{"name": 1, "value": "a"}]}),
            json!({"mergingList": [{"value": "b"}]}),
        ),
        (
            "mergingList[0]".to_owned(),
            StrategicMergeFailure::MissingMergeKey {
                key: "name".to_owned()
            }
        ),
    );
}

/// `createStrategicMergePatchTestCaseData` and `strategicMergePatchRawTestCases`: each Kubernetes
/// case holds a two-way patch (applied to the original gives the modified object) and a three-way
/// patch (applied to the live object gives the result); both applications are checked here.
#[test]
fn kubernetes_map_cases() {
    run(
        vec![
            case(
                "nil original (two-way)",
                json!({}),
                json!({"name": 1, "value": 1}),
                json!({"name": 1, "value": 1}),
            ),
            case(
                "nil original (three-way)",
                json!({"name": 1, "other": "a"}),
                json!({"value": 1}),
                json!({"name": 1, "value": 1, "other": "a"}),
            ),
            case(
                "nil patch",
                json!({"name": 1}),
                json!({}),
                json!({"name": 1}),
            ),
            case(
                "add field and delete field from map",
                json!({"name": 1, "other": "a"}),
                json!({"name": null, "value": 1}),
                json!({"value": 1, "other": "a"}),
            ),
            case(
                "delete field from nested map",
                json!({"simpleMap": {"key1": 1, "key2": 1, "other": "a"}}),
                json!({"simpleMap": {"key2": null}}),
                json!({"simpleMap": {"key1": 1, "other": "a"}}),
            ),
            case(
                "delete field from nested map with conflict",
                json!({"simpleMap": {"key1": "a", "key2": 1, "other": "a"}}),
                json!({"simpleMap": {"key1": 1, "key2": null}}),
                json!({"simpleMap": {"key1": 1, "other": "a"}}),
            ),
            case(
                "delete all fields from map",
                json!({"name": 1, "value": 1, "other": "a"}),
                json!({"name": null, "value": null}),
                json!({"other": "a"}),
            ),
            case(
                "add field and delete all fields from map with conflict",
                json!({"name": 1, "value": 1, "other": "b"}),
                json!({"name": null, "value": null, "other": "a"}),
                json!({"other": "a"}),
            ),
            case(
                "replace list of scalars",
                json!({"nonMergingIntList": [1, 2]}),
                json!({"nonMergingIntList": [2, 3]}),
                json!({"nonMergingIntList": [2, 3]}),
            ),
            case(
                "replace list of scalars with conflict",
                json!({"nonMergingIntList": [1, 4]}),
                json!({"nonMergingIntList": [2, 3]}),
                json!({"nonMergingIntList": [2, 3]}),
            ),
            case(
                "delete all maps from merging list with conflict",
                json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "other": "b"}]}),
                json!({"mergingList": [
                    {"name": 1, "$patch": "delete"}, {"name": 2, "$patch": "delete"},
                ]}),
                json!({"mergingList": []}),
            ),
            case(
                "delete all maps from empty merging list",
                json!({"mergingList": []}),
                json!({"mergingList": [
                    {"name": 1, "$patch": "delete"}, {"name": 2, "$patch": "delete"},
                ]}),
                json!({"mergingList": []}),
            ),
            case(
                "defined null values should propagate overwrite current fields (with conflict)",
                json!({"name": "a", "other": "a"}),
                json!({"name": 1, "value": 1, "other": null}),
                json!({"name": 1, "value": 1}),
            ),
            case(
                "defined null values should propagate removing original fields",
                json!({"name": "original-name", "value": "original-value", "other": "current-other"}),
                json!({"name": "modified-name", "value": null}),
                json!({"name": "modified-name", "other": "current-other"}),
            ),
            case(
                "retainKeys map with no change should not be present",
                json!({"name": "a", "other": "c", "retainKeysMap": {"name": "foo"}}),
                json!({"value": "b"}),
                json!({"name": "a", "value": "b", "other": "c", "retainKeysMap": {"name": "foo"}}),
            ),
            case(
                "unknown fields: added only",
                json!({"name": "foo"}),
                json!({"array": [1, 2, 3], "complex": {"nested": true}, "scalar": true}),
                json!({"array": [1, 2, 3], "complex": {"nested": true}, "name": "foo", "scalar": true}),
            ),
            case(
                "unknown fields: removed only",
                json!({"name": "foo", "scalar": true, "complex": {"nested": true}, "array": [1, 2, 3]}),
                json!({"complex": null, "scalar": null}),
                json!({"array": [1, 2, 3], "name": "foo"}),
            ),
            case(
                "replace RawExtension field and merge list",
                json!({
                    "name": "my-object", "value": "some-value", "other": "current-other",
                    "mergingList": [{"name": 1}, {"name": 3}],
                    "replacingItem": {"Some": "Generic", "Yaml": "Inside", "The": "RawExtension", "Field": "Period"},
                }),
                json!({
                    "$setElementOrder/mergingList": [{"name": 1}, {"name": 2}],
                    "mergingList": [{"name": 2}],
                    "replacingItem": {"Newly": "Modified", "Yaml": "Inside", "The": "RawExtension"},
                }),
                json!({
                    "name": "my-object", "value": "some-value", "other": "current-other",
                    "mergingList": [{"name": 1}, {"name": 2}, {"name": 3}],
                    "replacingItem": {"Newly": "Modified", "Yaml": "Inside", "The": "RawExtension"},
                }),
            ),
        ],
        &merge_item(),
    );
}

#[test]
fn kubernetes_merging_list_cases() {
    run(
        vec![
            case(
                "merge lists of maps",
                json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 4}, {"name": 1}, {"name": 2}, {"name": 3}],
                    "mergingList": [{"name": 4, "value": 4}, {"name": 3, "value": 3}],
                }),
                json!({"mergingList": [
                    {"name": 4, "value": 4},
                    {"name": 1, "other": "a"},
                    {"name": 2, "value": 2, "other": "b"},
                    {"name": 3, "value": 3},
                ]}),
            ),
            case(
                "merge lists of maps with conflict",
                json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "value": 3, "other": "b"}]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 1}, {"name": 2}, {"name": 3}],
                    "mergingList": [{"name": 2, "value": 2}, {"name": 3, "value": 3}],
                }),
                json!({"mergingList": [
                    {"name": 1, "other": "a"},
                    {"name": 2, "value": 2, "other": "b"},
                    {"name": 3, "value": 3},
                ]}),
            ),
            case(
                "add field to map in merging list with conflict",
                json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 3, "value": 2, "other": "b"}]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 1}, {"name": 2}],
                    "mergingList": [{"name": 1, "value": 1}, {"name": 2, "value": 2}],
                }),
                json!({"mergingList": [
                    {"name": 1, "value": 1, "other": "a"},
                    {"name": 2, "value": 2},
                    {"name": 3, "value": 2, "other": "b"},
                ]}),
            ),
            case(
                "de-duplicate field in merging list",
                json!({"mergingList": [{"name": 1}, {"name": 1}]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 1}],
                    "mergingList": [{"$patch": "delete", "name": 1}],
                }),
                json!({"mergingList": [{"name": 1}]}),
            ),
            case(
                "delete duplicate field in merging list",
                json!({"mergingList": [{"name": 1}, {"name": 1}]}),
                json!({"mergingList": {}}),
                json!({"mergingList": {}}),
            ),
            case(
                "replace map field value in merging list",
                json!({"mergingList": [{"name": 1, "value": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 1}, {"name": 2}],
                    "mergingList": [{"name": 1, "value": "a"}],
                }),
                json!({"mergingList": [
                    {"name": 1, "value": "a", "other": "a"}, {"name": 2, "value": 2, "other": "b"},
                ]}),
            ),
            case(
                "delete map from merging list",
                json!({"mergingList": [{"name": 1}, {"name": 2, "other": "b"}]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 2}],
                    "mergingList": [{"name": 1, "$patch": "delete"}],
                }),
                json!({"mergingList": [{"name": 2, "other": "b"}]}),
            ),
            case(
                "delete missing map from merging list",
                json!({"mergingList": [{"name": 2, "other": "b"}]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 2}],
                    "mergingList": [{"name": 1, "$patch": "delete"}],
                }),
                json!({"mergingList": [{"name": 2, "other": "b"}]}),
            ),
            case(
                "delete missing map from merging list with conflict",
                json!({"mergingList": [{"name": 3, "other": "a"}]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 2}],
                    "mergingList": [{"name": 2}, {"name": 1, "$patch": "delete"}],
                }),
                json!({"mergingList": [{"name": 2}, {"name": 3, "other": "a"}]}),
            ),
            case(
                "add map and delete map from merging list",
                json!({"mergingList": [{"name": 1}, {"name": 2, "other": "b"}, {"name": 4, "other": "c"}]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 2}, {"name": 3}],
                    "mergingList": [{"name": 3}, {"name": 1, "$patch": "delete"}],
                }),
                json!({"mergingList": [{"name": 2, "other": "b"}, {"name": 4, "other": "c"}, {"name": 3}]}),
            ),
            case(
                "add map and delete map from merging list with conflict",
                json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 4, "other": "c"}]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 2}, {"name": 3}],
                    "mergingList": [{"name": 2}, {"name": 3}, {"name": 1, "$patch": "delete"}],
                }),
                json!({"mergingList": [{"name": 4, "other": "c"}, {"name": 2}, {"name": 3}]}),
            ),
            case(
                "delete field from map in merging list",
                json!({"mergingList": [{"name": 1, "value": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 1}, {"name": 2}],
                    "mergingList": [{"name": 1, "value": null}],
                }),
                json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}]}),
            ),
            case(
                "replace non merging list nested in merging list",
                json!({"mergingList": [
                    {"name": 1, "other": "a", "nonMergingList": [{"name": 1}, {"name": 2, "value": 2}]},
                    {"name": 2, "other": "b"},
                ]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 1}, {"name": 2}],
                    "mergingList": [{"name": 1, "nonMergingList": [{"name": 1, "value": 1}]}],
                }),
                json!({"mergingList": [
                    {"name": 1, "other": "a", "nonMergingList": [{"name": 1, "value": 1}]},
                    {"name": 2, "other": "b"},
                ]}),
            ),
            case(
                "add field to map in merging list nested in merging list with value conflict",
                json!({"mergingList": [
                    {"name": 1, "other": "a", "mergingList": [
                        {"name": 1, "value": "a", "other": "c"}, {"name": 2, "value": "b", "other": "d"},
                    ]},
                    {"name": 2, "other": "b"},
                ]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 1}, {"name": 2}],
                    "mergingList": [{
                        "$setElementOrder/mergingList": [{"name": 1}, {"name": 2}],
                        "name": 1,
                        "mergingList": [{"name": 1, "value": 1}, {"name": 2, "value": 2}],
                    }],
                }),
                json!({"mergingList": [
                    {"name": 1, "other": "a", "mergingList": [
                        {"name": 1, "value": 1, "other": "c"}, {"name": 2, "value": 2, "other": "d"},
                    ]},
                    {"name": 2, "other": "b"},
                ]}),
            ),
            case(
                "add field to map in merging list nested in merging list with deletion conflict",
                json!({"mergingList": [
                    {"name": 1, "other": "a", "mergingList": [{"name": 2, "value": 2, "other": "d"}]},
                    {"name": 2, "other": "b"},
                ]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 1}, {"name": 2}],
                    "mergingList": [{
                        "$setElementOrder/mergingList": [{"name": 2}, {"name": 1}],
                        "name": 1,
                        "mergingList": [{"name": 1, "value": 1}],
                    }],
                }),
                json!({"mergingList": [
                    {"name": 1, "other": "a", "mergingList": [
                        {"name": 2, "value": 2, "other": "d"}, {"name": 1, "value": 1},
                    ]},
                    {"name": 2, "other": "b"},
                ]}),
            ),
            case(
                "add map to merging list by pointer",
                json!({"mergeItemPtr": [{"name": 1, "other": "a"}, {"name": 3}]}),
                json!({
                    "$setElementOrder/mergeItemPtr": [{"name": 1}, {"name": 2}],
                    "mergeItemPtr": [{"name": 2}],
                }),
                json!({"mergeItemPtr": [{"name": 1, "other": "a"}, {"name": 2}, {"name": 3}]}),
            ),
            case(
                "add field to map in merging list by pointer",
                json!({"mergeItemPtr": [
                    {"name": 1, "other": "a", "mergeItemPtr": [
                        {"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"},
                    ]},
                    {"name": 2, "other": "b"},
                ]}),
                json!({
                    "$setElementOrder/mergeItemPtr": [{"name": 1}, {"name": 2}],
                    "mergeItemPtr": [{
                        "$setElementOrder/mergeItemPtr": [{"name": 1}, {"name": 2}],
                        "name": 1,
                        "mergeItemPtr": [{"name": 1, "value": 1}],
                    }],
                }),
                json!({"mergeItemPtr": [
                    {"name": 1, "other": "a", "mergeItemPtr": [
                        {"name": 1, "value": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"},
                    ]},
                    {"name": 2, "other": "b"},
                ]}),
            ),
            case(
                "delete and reorder in one list, reorder in another",
                json!({
                    "mergingList": [{"name": "a", "value": "a"}, {"name": "b", "value": "b"}],
                    "mergeItemPtr": [{"name": "c", "value": "c"}, {"name": "d", "value": "d"}],
                }),
                json!({
                    "$setElementOrder/mergingList": [{"name": "b"}],
                    "$setElementOrder/mergeItemPtr": [{"name": "d"}, {"name": "c"}],
                    "mergingList": [{"$patch": "delete", "name": "a"}],
                }),
                json!({
                    "mergingList": [{"name": "b", "value": "b"}],
                    "mergeItemPtr": [{"name": "d", "value": "d"}, {"name": "c", "value": "c"}],
                }),
            ),
        ],
        &merge_item(),
    );
}

#[test]
fn kubernetes_element_order_cases() {
    run(
        vec![
            case(
                "add an item in a list and preserve order",
                json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 3}, {"name": 1}, {"name": 2}],
                    "mergingList": [{"name": 3, "value": 3}],
                }),
                json!({"mergingList": [
                    {"name": 3, "value": 3}, {"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"},
                ]}),
            ),
            case(
                "add multiple items in a list and preserve order",
                json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 1}, {"name": 4}, {"name": 2}, {"name": 3}],
                    "mergingList": [{"name": 4, "value": 4}, {"name": 3, "value": 3}],
                }),
                json!({"mergingList": [
                    {"name": 1, "other": "a"},
                    {"name": 4, "value": 4},
                    {"name": 2, "value": 2, "other": "b"},
                    {"name": 3, "value": 3},
                ]}),
            ),
            case(
                "delete an item in a list and preserve order",
                json!({"mergingList": [
                    {"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}, {"name": 3, "value": 3},
                ]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 2}, {"name": 1}],
                    "mergingList": [{"name": 3, "$patch": "delete"}],
                }),
                json!({"mergingList": [{"name": 2, "value": 2, "other": "b"}, {"name": 1, "other": "a"}]}),
            ),
            case(
                "change an item in a list and preserve order",
                json!({"mergingList": [
                    {"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}, {"name": 3, "value": 3},
                ]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 2}, {"name": 3}, {"name": 1}],
                    "mergingList": [{"name": 3, "value": "x"}],
                }),
                json!({"mergingList": [
                    {"name": 2, "value": 2, "other": "b"}, {"name": 3, "value": "x"}, {"name": 1, "other": "a"},
                ]}),
            ),
            case(
                "add and delete an item in a list and preserve order",
                json!({"mergingList": [
                    {"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}, {"name": 3, "value": 3},
                ]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 4}, {"name": 2}, {"name": 1}],
                    "mergingList": [{"name": 4, "value": 4}, {"name": 3, "$patch": "delete"}],
                }),
                json!({"mergingList": [
                    {"name": 4, "value": 4}, {"name": 2, "value": 2, "other": "b"}, {"name": 1, "other": "a"},
                ]}),
            ),
            case(
                "set elements order in a list with server-only items",
                json!({"mergingList": [
                    {"name": 1, "other": "a"}, {"name": 3, "value": 3}, {"name": 4, "value": 4},
                    {"name": 2, "value": 2}, {"name": 9},
                ]}),
                json!({"$setElementOrder/mergingList": [{"name": 4}, {"name": 2}, {"name": 3}, {"name": 1}]}),
                json!({"mergingList": [
                    {"name": 4, "value": 4}, {"name": 2, "value": 2}, {"name": 3, "value": 3},
                    {"name": 1, "other": "a"}, {"name": 9},
                ]}),
            ),
            case(
                "set elements order in a list with server-only items 2",
                json!({"mergingList": [
                    {"name": 1, "other": "a"}, {"name": 2, "value": 2}, {"name": 9},
                    {"name": 3, "value": 3}, {"name": 4, "value": 4},
                ]}),
                json!({"$setElementOrder/mergingList": [{"name": 2}, {"name": 1}, {"name": 4}, {"name": 3}]}),
                json!({"mergingList": [
                    {"name": 2, "value": 2}, {"name": 1, "other": "a"}, {"name": 9},
                    {"name": 4, "value": 4}, {"name": 3, "value": 3},
                ]}),
            ),
            case(
                "set elements order in a list with server-only items 3",
                json!({"mergingList": [
                    {"name": 1, "other": "a"}, {"name": 2, "value": 2}, {"name": 7}, {"name": 9},
                    {"name": 8}, {"name": 3, "value": 3}, {"name": 4, "value": 4},
                ]}),
                json!({"$setElementOrder/mergingList": [{"name": 2}, {"name": 1}, {"name": 4}, {"name": 3}]}),
                json!({"mergingList": [
                    {"name": 2, "value": 2}, {"name": 1, "other": "a"}, {"name": 7}, {"name": 9},
                    {"name": 8}, {"name": 4, "value": 4}, {"name": 3, "value": 3},
                ]}),
            ),
            case(
                "behavior of set element order for a merging list with duplicate",
                json!({"mergingList": [
                    {"name": 1}, {"name": 2, "value": "dup1"}, {"name": 3},
                    {"name": 2, "value": "dup2"}, {"name": 4},
                ]}),
                json!({"$setElementOrder/mergingList": [
                    {"name": 2}, {"name": 1}, {"name": 4}, {"name": 3}, {"name": 2},
                ]}),
                json!({"mergingList": [
                    {"name": 2, "value": "dup1"}, {"name": 2, "value": "dup2"}, {"name": 1},
                    {"name": 4}, {"name": 3},
                ]}),
            ),
        ],
        &merge_item(),
    );
}

#[test]
fn kubernetes_primitive_list_cases() {
    run(
        vec![
            case(
                "delete items in lists of scalars",
                json!({"mergingIntList": [1, 2, 3, 4]}),
                json!({
                    "$setElementOrder/mergingIntList": [1, 2],
                    "$deleteFromPrimitiveList/mergingIntList": [3],
                }),
                json!({"mergingIntList": [1, 2, 4]}),
            ),
            case(
                "delete all duplicate items in lists of scalars",
                json!({"mergingIntList": [1, 2, 3, 3, 4]}),
                json!({
                    "$setElementOrder/mergingIntList": [1, 2],
                    "$deleteFromPrimitiveList/mergingIntList": [3],
                }),
                json!({"mergingIntList": [1, 2, 4]}),
            ),
            case(
                "add and delete items in lists of scalars (two-way)",
                json!({"mergingIntList": [1, 2, 3]}),
                json!({
                    "$setElementOrder/mergingIntList": [1, 2, 4],
                    "$deleteFromPrimitiveList/mergingIntList": [3],
                    "mergingIntList": [4],
                }),
                json!({"mergingIntList": [1, 2, 4]}),
            ),
            case(
                "merge lists of scalars",
                json!({"mergingIntList": [1, 2, 4]}),
                json!({"$setElementOrder/mergingIntList": [1, 2, 3], "mergingIntList": [3]}),
                json!({"mergingIntList": [1, 2, 3, 4]}),
            ),
            case(
                "add duplicate field to map in merging int list",
                json!({"mergingIntList": [1, 2, 3]}),
                json!({}),
                json!({"mergingIntList": [1, 2, 3]}),
            ),
            case(
                "add an item in a list of primitives and preserve order",
                json!({"mergingIntList": [1, 4, 2]}),
                json!({"$setElementOrder/mergingIntList": [3, 1, 2], "mergingIntList": [3]}),
                json!({"mergingIntList": [3, 1, 4, 2]}),
            ),
            case(
                "delete an item in a list of primitives and preserve order",
                json!({"mergingIntList": [1, 2, 3]}),
                json!({
                    "$setElementOrder/mergingIntList": [2, 1],
                    "$deleteFromPrimitiveList/mergingIntList": [3],
                }),
                json!({"mergingIntList": [2, 1]}),
            ),
            case(
                "add multiple items in a int list and preserve order",
                json!({"mergingIntList": [1, 2]}),
                json!({"$setElementOrder/mergingIntList": [1, 4, 2, 3], "mergingIntList": [4, 3]}),
                json!({"mergingIntList": [1, 4, 2, 3]}),
            ),
            case(
                "add and delete an item in a int list and preserve order",
                json!({"mergingIntList": [1, 2, 3]}),
                json!({
                    "$setElementOrder/mergingIntList": [4, 2, 1],
                    "mergingIntList": [4],
                    "$deleteFromPrimitiveList/mergingIntList": [3],
                }),
                json!({"mergingIntList": [4, 2, 1]}),
            ),
            case(
                "set elements order in a int list with server-only items",
                json!({"mergingIntList": [1, 3, 4, 2, 9]}),
                json!({"$setElementOrder/mergingIntList": [4, 2, 3, 1]}),
                json!({"mergingIntList": [4, 2, 3, 1, 9]}),
            ),
            case(
                "set elements order in a int list with server-only items 2",
                json!({"mergingIntList": [1, 2, 9, 3, 4]}),
                json!({"$setElementOrder/mergingIntList": [2, 1, 4, 3]}),
                json!({"mergingIntList": [2, 1, 9, 4, 3]}),
            ),
            case(
                "set elements order in a int list with server-only items 3",
                json!({"mergingIntList": [1, 2, 7, 9, 8, 3, 4]}),
                json!({"$setElementOrder/mergingIntList": [2, 1, 4, 3]}),
                json!({"mergingIntList": [2, 1, 7, 9, 8, 4, 3]}),
            ),
            case(
                "behavior of set element order for a merging int list with duplicate",
                json!({"mergingIntList": [1, 2, 3, 2, 4]}),
                json!({"$setElementOrder/mergingIntList": [2, 1, 4, 3, 2]}),
                json!({"mergingIntList": [2, 2, 1, 4, 3]}),
            ),
        ],
        &merge_item(),
    );
}

#[test]
fn kubernetes_retain_keys_cases() {
    run(
        vec![
            case(
                "retainKeys map should clear defaulted field",
                json!({"retainKeysMap": {"value": "foo"}}),
                json!({"retainKeysMap": {"$retainKeys": ["other"], "other": "bar"}}),
                json!({"retainKeysMap": {"other": "bar"}}),
            ),
            case(
                "retainKeys map should clear defaulted field with conflict (discriminated union)",
                json!({"retainKeysMap": {"name": "type1", "value": "foo"}}),
                json!({"retainKeysMap": {"$retainKeys": ["name", "other"], "name": "type2", "other": "bar"}}),
                json!({"retainKeysMap": {"name": "type2", "other": "bar"}}),
            ),
            case(
                "retainKeys map adds a field and clear a field",
                json!({"retainKeysMap": {"name": "foo", "other": "a"}}),
                json!({"retainKeysMap": {"$retainKeys": ["name", "value"], "value": "bar"}}),
                json!({"retainKeysMap": {"name": "foo", "value": "bar"}}),
            ),
            case(
                "retainKeys map deletes a field and clears a field",
                json!({"retainKeysMap": {"name": "foo", "value": "bar", "other": "a"}}),
                json!({"retainKeysMap": {"$retainKeys": ["name"], "value": null}}),
                json!({"retainKeysMap": {"name": "foo"}}),
            ),
            case(
                "retainKeys map clears a field",
                json!({"retainKeysMap": {"name": "foo", "value": "bar", "other": "a"}}),
                json!({"retainKeysMap": {"$retainKeys": ["name", "value"]}}),
                json!({"retainKeysMap": {"name": "foo", "value": "bar"}}),
            ),
            case(
                "retainKeys map adds a field in a nested map",
                json!({"retainKeysMap": {"name": "foo", "value": "bar", "simpleMap": {"key1": "a", "key3": "c"}}}),
                json!({"retainKeysMap": {
                    "$retainKeys": ["name", "simpleMap", "value"], "simpleMap": {"key2": "b"},
                }}),
                json!({"retainKeysMap": {
                    "name": "foo", "value": "bar", "simpleMap": {"key1": "a", "key2": "b", "key3": "c"},
                }}),
            ),
            case(
                "retainKeys map deletes nested non-merging list",
                json!({"retainKeysMap": {"name": "foo", "nonMergingList": [{"name": "a"}, {"name": "b"}]}}),
                json!({"retainKeysMap": {
                    "$retainKeys": ["name", "value"], "value": "bar", "nonMergingList": null,
                }}),
                json!({"retainKeysMap": {"name": "foo", "value": "bar"}}),
            ),
            case(
                "retainKeys map nested merging int list with no change",
                json!({"retainKeysMap": {"name": "foo", "mergingIntList": [1, 2, 3]}}),
                json!({"retainKeysMap": {
                    "$retainKeys": ["mergingIntList", "name", "value"],
                    "$setElementOrder/mergingIntList": [1, 2],
                    "value": "bar",
                }}),
                json!({"retainKeysMap": {"name": "foo", "value": "bar", "mergingIntList": [1, 2, 3]}}),
            ),
            case(
                "retainKeys map adds an item in nested merging int list",
                json!({"retainKeysMap": {"name": "foo", "mergingIntList": [1, 2, 3]}}),
                json!({"retainKeysMap": {
                    "$setElementOrder/mergingIntList": [1, 2, 4],
                    "$retainKeys": ["mergingIntList", "name"],
                    "mergingIntList": [4],
                }}),
                json!({"retainKeysMap": {"name": "foo", "mergingIntList": [1, 2, 4, 3]}}),
            ),
            case(
                "retainKeys map adds an item and deletes an item in nested merging int list",
                json!({"retainKeysMap": {"name": "foo", "mergingIntList": [1, 2, 3, 4]}}),
                json!({"retainKeysMap": {
                    "$retainKeys": ["mergingIntList", "name"],
                    "mergingIntList": [5],
                    "$deleteFromPrimitiveList/mergingIntList": [2],
                    "$setElementOrder/mergingIntList": [1, 3, 5],
                }}),
                json!({"retainKeysMap": {"name": "foo", "mergingIntList": [1, 3, 5, 4]}}),
            ),
            case(
                "retainKeys map adds an item in nested merging list",
                json!({"retainKeysMap": {"name": "foo", "mergingList": [{"name": "a"}, {"name": "b"}, {"name": "x"}]}}),
                json!({"retainKeysMap": {
                    "$retainKeys": ["mergingList", "name"],
                    "$setElementOrder/mergingList": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
                    "mergingList": [{"name": "c"}],
                }}),
                json!({"retainKeysMap": {"name": "foo", "mergingList": [
                    {"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": "x"},
                ]}}),
            ),
            case(
                "retainKeys map deletes an item in nested merging list",
                json!({"retainKeysMap": {"name": "foo", "mergingList": [{"name": "a"}, {"name": "b"}, {"name": "x"}]}}),
                json!({"retainKeysMap": {
                    "$retainKeys": ["mergingList", "name"],
                    "$setElementOrder/mergingList": [{"name": "a"}],
                    "mergingList": [{"name": "b", "$patch": "delete"}],
                }}),
                json!({"retainKeysMap": {"name": "foo", "mergingList": [{"name": "a"}, {"name": "x"}]}}),
            ),
            case(
                "retainKeys list of maps clears a field",
                json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "a", "other": "x"}]}),
                json!({
                    "$setElementOrder/retainKeysMergingList": [{"name": "bar"}, {"name": "foo"}],
                    "retainKeysMergingList": [{"$retainKeys": ["name", "value"], "name": "foo"}],
                }),
                json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "a"}]}),
            ),
            case(
                "retainKeys list of maps deletes a field and clear a field",
                json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "a", "other": "x"}]}),
                json!({
                    "$setElementOrder/retainKeysMergingList": [{"name": "bar"}, {"name": "foo"}],
                    "retainKeysMergingList": [{"$retainKeys": ["name"], "name": "foo", "value": null}],
                }),
                json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo"}]}),
            ),
        ],
        &merge_item(),
    );
}

#[test]
fn directive_misuse_is_an_error() {
    let keys = merge_item();
    let failure =
        |object: Value, patch: Value| match apply_strategic_merge_patch(&object, &patch, &keys) {
            Err(PatchError::StrategicMerge { path, failure }) => (path, failure),
            other => panic!("expected a strategic merge error, got {other:?}"),
        };
    let bad = |value: &str| StrategicMergeFailure::BadPatchDirective {
        value: value.to_owned(),
    };
    assert_eq!(
        failure(json!({}), json!({"simpleMap": {"$patch": "merge"}})),
        ("simpleMap".to_owned(), bad("\"merge\"")),
    );
    assert_eq!(
        failure(
            json!({"mergingList": [{"name": 1}]}),
            json!({"mergingList": [{"name": 1, "$patch": 7}]})
        ),
        ("mergingList[0]".to_owned(), bad("7")),
    );
    assert_eq!(
        failure(json!({}), json!({"$patch": "delete-all"})),
        ("<root>".to_owned(), bad("\"delete-all\"")),
    );
    assert_eq!(
        failure(
            json!({"retainKeysMap": {"name": "a"}}),
            json!({"retainKeysMap": {"$retainKeys": ["name"], "value": "b"}}),
        ),
        (
            "retainKeysMap".to_owned(),
            StrategicMergeFailure::NotInRetainKeys {
                field: "value".to_owned()
            }
        ),
    );
    assert_eq!(
        failure(json!({}), json!({"$retainKeys": "name"})).1,
        StrategicMergeFailure::RetainKeysNotAList,
    );
    assert_eq!(
        failure(json!({}), json!({"$setElementOrder": []})).1,
        StrategicMergeFailure::BadDirectiveKey {
            key: "$setElementOrder".to_owned()
        },
    );
    assert_eq!(
        failure(
            json!({}),
            json!({"$setElementOrder/mergingList": {"name": 1}})
        )
        .1,
        StrategicMergeFailure::DirectiveNotAList {
            directive: "$setElementOrder/mergingList".to_owned()
        },
    );
    assert_eq!(
        failure(
            json!({"mergingList": {"name": 1}}),
            json!({"$setElementOrder/mergingList": [{"name": 1}]}),
        ),
        (
            "mergingList".to_owned(),
            StrategicMergeFailure::FieldNotAList {
                directive: "$setElementOrder/mergingList".to_owned()
            }
        ),
    );
    assert_eq!(
        failure(
            json!({"nonMergingIntList": [1, 2]}),
            json!({"$deleteFromPrimitiveList/nonMergingIntList": [1]}),
        ),
        (
            "nonMergingIntList".to_owned(),
            StrategicMergeFailure::DeleteFromNonMergingList
        ),
    );
    assert_eq!(
        failure(
            json!({"mergingList": [{"name": 1}]}),
            json!({"$deleteFromPrimitiveList/mergingList": [{"name": 1}]}),
        )
        .1,
        StrategicMergeFailure::DeleteFromNonMergingList,
    );
    assert_eq!(
        failure(
            json!({"mergingIntList": [1]}),
            json!({"mergingIntList": ["a"]})
        ),
        (
            "mergingIntList".to_owned(),
            StrategicMergeFailure::MixedList
        ),
    );
    assert_eq!(
        failure(json!({}), json!({"mergingIntList": [[1]]})).1,
        StrategicMergeFailure::ListOfLists,
    );
    assert_eq!(
        failure(
            json!({"mergingList": [{"value": 1}]}),
            json!({"mergingList": [{"name": 1}]})
        ),
        (
            "mergingList".to_owned(),
            StrategicMergeFailure::MissingMergeKey {
                key: "name".to_owned()
            }
        ),
    );
    assert_eq!(
        failure(
            json!({"nested": {"mergingList": [{"name": 1}]}}),
            json!({"nested": {"list": [{"a": 1}]}, "mergingList": [{"name": 1}, {"$patch": "delete"}]}),
        ),
        (
            "mergingList[1]".to_owned(),
            StrategicMergeFailure::MissingMergeKey {
                key: "name".to_owned()
            }
        ),
    );
    let error = apply_strategic_merge_patch(&json!({}), &json!({"$patch": "x"}), &keys)
        .err()
        .map(|error| error.code());
    assert_eq!(error, Some(400));
}

#[test]
fn null_deletes_and_absent_nulls_are_ignored() {
    let keys = merge_item();
    let patched = apply_strategic_merge_patch(
        &json!({"name": "a", "simpleMap": {"k": "v"}}),
        &json!({"name": null, "missing": null, "simpleMap": {"k": null, "new": {"x": null, "y": 1}}}),
        &keys,
    )
    .ok();
    assert_eq!(patched, Some(json!({"simpleMap": {"new": {"y": 1}}})));
}

#[test]
fn added_values_carry_no_directives() {
    // A value the object did not have is the patch applied to nothing: its nulls and directives do
    // not land in the object (Kubernetes copies it as it is, and the typed decoding drops them).
    let keys = merge_item();
    let patched = apply_strategic_merge_patch(
        &json!({}),
        &json!({
            "simpleMap": {"$patch": "delete"},
            "mergingList": [
                {"name": 1, "value": null, "mergingList": [{"name": 2, "$patch": "delete"}]},
                {"name": 3, "$patch": "delete"},
            ],
            "retainKeysMap": {"$retainKeys": ["name"], "name": "x"},
        }),
        &keys,
    )
    .ok();
    assert_eq!(
        patched,
        Some(json!({
            "simpleMap": {},
            "mergingList": [{"name": 1, "mergingList": []}],
            "retainKeysMap": {"name": "x"},
        })),
    );
}

#[test]
fn new_items_of_a_list_of_objects_go_last_and_new_primitives_first() {
    // Without a `$setElementOrder`, Kubernetes appends new objects, but puts new primitives before
    // the existing ones (its `mergeSortedSlice` finds them nowhere in the live list).
    let keys = merge_item();
    let patched = apply_strategic_merge_patch(
        &json!({"mergingList": [{"name": "a"}, {"name": "b"}], "mergingIntList": [1, 2]}),
        &json!({"mergingList": [{"name": "c"}], "mergingIntList": [3]}),
        &keys,
    )
    .ok();
    assert_eq!(
        patched,
        Some(json!({
            "mergingList": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
            "mergingIntList": [3, 1, 2],
        })),
    );
}

#[test]
fn merge_keys_compare_numbers_by_value() {
    let keys = merge_item();
    let patched = apply_strategic_merge_patch(
        &json!({"mergingList": [{"name": 1, "value": "a"}], "mergingIntList": [1, 2]}),
        &json!({"mergingList": [{"name": 1.0, "other": "b"}], "mergingIntList": [2.0, 3]}),
        &keys,
    )
    .ok();
    assert_eq!(
        patched,
        Some(json!({
            "mergingList": [{"name": 1.0, "value": "a", "other": "b"}],
            "mergingIntList": [1, 2, 3],
        })),
    );
}

#[test]
fn targets_and_patches_must_be_objects() {
    let keys = MergeKeys::new();
    for (target, patch) in [
        (json!([]), json!({})),
        (json!({}), json!([])),
        (json!({}), json!(null)),
    ] {
        assert!(matches!(
            apply_strategic_merge_patch(&target, &patch, &keys),
            Err(PatchError::InvalidPatch { .. })
        ));
    }
}

/// The built-in kinds: a Pod's containers merge by name, and so on.
#[test]
fn pod_containers_merge_by_name() {
    let pod = json!({
        "metadata": {"name": "web", "finalizers": ["a"], "ownerReferences": [{"uid": "1", "name": "rs"}]},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "app:1",
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    "args": ["-v"],
                },
                {"name": "sidecar", "image": "proxy:1"},
            ],
            "tolerations": [{"key": "a", "operator": "Exists"}],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    });
    let patch = json!({
        "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["b"]},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "app:2",
                    "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
                    "ports": [{"containerPort": 443, "protocol": "TCP"}],
                    "volumeMounts": [{"mountPath": "/data", "$patch": "delete"}],
                    "args": ["-q"],
                },
                {"name": "sidecar", "$patch": "delete"},
                {"name": "debug", "image": "busybox"},
            ],
            "tolerations": [{"key": "b", "operator": "Exists"}],
            "volumes": [{"name": "data", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/d"}}],
        },
    });
    let keys = MergeKeys::for_kind("v1", "Pod");
    let patched = apply_patch(&pod, PatchType::StrategicMerge, &patch, keys.as_ref()).ok();
    assert_eq!(
        patched,
        Some(json!({
            "metadata": {"name": "web", "finalizers": ["b"], "ownerReferences": [{"uid": "1", "name": "rs"}]},
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": "app:2",
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
                        "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443, "protocol": "TCP"}],
                        "volumeMounts": [],
                        "args": ["-q"],
                    },
                    {"name": "debug", "image": "busybox"},
                ],
                "tolerations": [{"key": "b", "operator": "Exists"}],
                "volumes": [{"name": "data", "hostPath": {"path": "/d"}}],
            },
        })),
    );
}

#[test]
fn workload_templates_merge_like_pods() {
    for (api_version, kind) in [
        ("v1", "ReplicationController"),
        ("apps/v1", "ReplicaSet"),
        ("apps/v1", "Deployment"),
    ] {
        let object = json!({
            "spec": {"template": {
                "metadata": {"finalizers": ["x"]},
                "spec": {"initContainers": [{"name": "init", "image": "i:1"}], "containers": [{"name": "app", "image": "a:1"}]},
            }},
            "status": {"conditions": [{"type": "Available", "status": "True"}]},
        });
        let patch = json!({
            "spec": {"template": {"spec": {
                "initContainers": [{"name": "init", "image": "i:2"}],
                "containers": [{"name": "app", "image": "a:2"}],
            }}},
            "status": {"conditions": [{"type": "Progressing", "status": "True"}]},
        });
        let keys = MergeKeys::for_kind(api_version, kind).unwrap_or_default();
        let patched = apply_strategic_merge_patch(&object, &patch, &keys).ok();
        assert_eq!(
            patched,
            Some(json!({
                "spec": {"template": {
                    "metadata": {"finalizers": ["x"]},
                    "spec": {"initContainers": [{"name": "init", "image": "i:2"}], "containers": [{"name": "app", "image": "a:2"}]},
                }},
                "status": {"conditions": [
                    {"type": "Available", "status": "True"}, {"type": "Progressing", "status": "True"},
                ]},
            })),
            "{kind}",
        );
    }
}

#[test]
fn deployment_strategy_retains_keys() {
    let deployment =
        json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
    let keys = MergeKeys::for_kind("apps/v1", "Deployment").unwrap_or_default();
    assert_eq!(
        apply_strategic_merge_patch(&deployment, &patch, &keys).ok(),
        Some(json!({"spec": {"strategy": {"type": "Recreate"}}})),
    );
}

#[test]
fn service_ports_merge_and_node_taints_replace() {
    let service = MergeKeys::for_kind("v1", "Service").unwrap_or_default();
    assert_eq!(
        apply_strategic_merge_patch(
            &json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": "a"}}}),
            &json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}}),
            &service,
        )
        .ok(),
        Some(
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}], "selector": {"app": "a"}}})
        ),
    );
    let node = MergeKeys::for_kind("v1", "Node").unwrap_or_default();
    assert_eq!(
        apply_strategic_merge_patch(
            &json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}], "podCIDRs": ["10.0.0.0/24"]},
                    "status": {"addresses": [{"type": "InternalIP", "address": "10.1.1.1"}]}}),
            &json!({"spec": {"taints": [{"key": "b", "effect": "NoExecute"}], "podCIDRs": ["fd00::/64"]},
                    "status": {"addresses": [{"type": "Hostname", "address": "n1"}]}}),
            &node,
        )
        .ok(),
        Some(json!({
            "spec": {"taints": [{"key": "b", "effect": "NoExecute"}], "podCIDRs": ["fd00::/64", "10.0.0.0/24"]},
            "status": {"addresses": [
                {"type": "InternalIP", "address": "10.1.1.1"}, {"type": "Hostname", "address": "n1"},
            ]},
        })),
    );
}

#[test]
fn builtin_tables_cover_every_builtin_kind() {
    let builtin = crate::resource::builtin::builtin_resources();
    assert_eq!(builtin.len(), MergeKeys::BUILTIN_KINDS.len());
    for resource in &builtin {
        let keys = MergeKeys::for_resource(resource);
        assert!(keys.is_some(), "{}", resource.kind);
        let finalizers = keys
            .as_ref()
            .and_then(|keys| keys.field("metadata.finalizers").cloned());
        assert_eq!(
            finalizers.and_then(|field| field.strategy),
            Some(PatchStrategy::Merge),
            "{}",
            resource.kind
        );
    }
    let custom = ApiResource {
        group: "example.com".to_owned(),
        version: "v1".to_owned(),
        api_version: "example.com/v1".to_owned(),
        kind: "Widget".to_owned(),
        plural: "widgets".to_owned(),
        namespaced: true,
    };
    assert_eq!(MergeKeys::for_resource(&custom), None);
    assert_eq!(MergeKeys::for_kind("v1", "Widget"), None);
    assert_eq!(MergeKeys::for_kind("apps/v1", "Pod"), None);
}

#[test]
fn builtin_merge_keys_match_kubernetes() {
    let key = |api_version: &str, kind: &str, path: &str| {
        MergeKeys::for_kind(api_version, kind)
            .and_then(|keys| keys.field(path).cloned())
            .map(|field| (field.strategy, field.merge_key, field.retain_keys))
    };
    let merge = |merge_key: &str| {
        Some((
            Some(PatchStrategy::Merge),
            Some(merge_key.to_owned()),
            false,
        ))
    };
    let set = Some((Some(PatchStrategy::Merge), None, false));
    let pod_spec = [
        ("containers", merge("name")),
        ("initContainers", merge("name")),
        ("ephemeralContainers", merge("name")),
        ("containers[*].ports", merge("containerPort")),
        ("containers[*].env", merge("name")),
        ("initContainers.volumeMounts", merge("mountPath")),
        ("containers[*].volumeDevices", merge("devicePath")),
        ("imagePullSecrets", merge("name")),
        ("hostAliases", merge("ip")),
        ("topologySpreadConstraints", merge("topologyKey")),
        ("schedulingGates", merge("name")),
        (
            "volumes",
            Some((Some(PatchStrategy::Merge), Some("name".to_owned()), true)),
        ),
        (
            "resourceClaims",
            Some((Some(PatchStrategy::Merge), Some("name".to_owned()), true)),
        ),
        ("tolerations", None),
        ("readinessGates", None),
        ("containers[*].args", None),
        ("containers[*].envFrom", None),
        ("containers[*].resizePolicy", None),
    ];
    for (path, expected) in &pod_spec {
        assert_eq!(
            key("v1", "Pod", &format!("spec.{path}")),
            *expected,
            "Pod spec.{path}"
        );
        for (api_version, kind) in [
            ("v1", "ReplicationController"),
            ("apps/v1", "ReplicaSet"),
            ("apps/v1", "Deployment"),
        ] {
            let path = format!("spec.template.spec.{path}");
            assert_eq!(key(api_version, kind, &path), *expected, "{kind} {path}");
        }
    }
    let cases = [
        ("v1", "Pod", "metadata.finalizers", set.clone()),
        ("v1", "Pod", "metadata.ownerReferences", merge("uid")),
        ("v1", "Pod", "status.conditions", merge("type")),
        ("v1", "Pod", "status.podIPs", merge("ip")),
        ("v1", "Pod", "status.hostIPs", merge("ip")),
        ("v1", "Pod", "status.containerStatuses", None),
        ("v1", "Node", "spec.podCIDRs", set),
        ("v1", "Node", "spec.taints", None),
        ("v1", "Node", "status.conditions", merge("type")),
        ("v1", "Node", "status.addresses", merge("type")),
        ("v1", "Node", "status.images", None),
        ("v1", "Namespace", "spec.finalizers", None),
        ("v1", "Namespace", "status.conditions", merge("type")),
        ("v1", "Service", "spec.ports", merge("port")),
        ("v1", "Service", "spec.externalIPs", None),
        ("v1", "Service", "status.conditions", merge("type")),
        ("v1", "Endpoints", "subsets", None),
        ("v1", "ServiceAccount", "secrets", merge("name")),
        ("v1", "ServiceAccount", "imagePullSecrets", None),
        (
            "apps/v1",
            "Deployment",
            "spec.strategy",
            Some((None, None, true)),
        ),
        ("apps/v1", "Deployment", "status.conditions", merge("type")),
        ("apps/v1", "ReplicaSet", "status.conditions", merge("type")),
        (
            "v1",
            "ReplicationController",
            "status.conditions",
            merge("type"),
        ),
        (
            "apps/v1",
            "Deployment",
            "spec.template.metadata.finalizers",
            Some((Some(PatchStrategy::Merge), None, false)),
        ),
        (
            "coordination.k8s.io/v1",
            "Lease",
            "spec.holderIdentity",
            None,
        ),
    ];
    for (api_version, kind, path, expected) in cases {
        assert_eq!(key(api_version, kind, path), expected, "{kind} {path}");
    }
}

#[test]
fn custom_tables_use_wildcards_and_replace() {
    let keys = MergeKeys::new()
        .merge_by_key("spec.groups.*.members", "id")
        .replace("spec.config");
    assert_eq!(
        keys.field("spec.groups.blue.members")
            .and_then(|field| field.merge_key.as_deref()),
        Some("id")
    );
    let object = json!({"spec": {
        "groups": {"blue": {"members": [{"id": 1, "role": "a"}]}},
        "config": {"a": 1, "b": 2},
    }});
    let patch = json!({"spec": {
        "groups": {"blue": {"members": [{"id": 1, "role": "b"}]}},
        "config": {"c": 3, "gone": null},
    }});
    assert_eq!(
        apply_strategic_merge_patch(&object, &patch, &keys).ok(),
        Some(json!({"spec": {
            "groups": {"blue": {"members": [{"id": 1, "role": "b"}]}},
            "config": {"c": 3},
        }})),
    );
}

#[test]
fn strategic_merge_needs_merge_keys() {
    let object = json!({"spec": {}});
    assert_eq!(
        apply_patch(&object, PatchType::StrategicMerge, &json!({}), None),
        Err(PatchError::StrategicMergeUnsupported),
    );
    assert_eq!(PatchError::StrategicMergeUnsupported.code(), 415);
}
