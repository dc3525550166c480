//! Property tests: merge patches computed by `create_merge_patch` round-trip, a strategic merge
//! patch without merge keys or directives is a JSON merge patch, equality of values agrees with
//! their identity, and no input makes any format panic.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::patch::{
    MergeKeys, apply_json_patch, apply_merge_patch, apply_strategic_merge_patch,
    create_merge_patch, identity, json_equal,
};

/// Scalars, among them numbers that are equal as values but not as JSON (`1` and `1.0`).
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..3).prop_map(Value::from),
        prop::sample::select(vec![0.0, -0.0, 1.0, 1.5, -2.0, 1e300]).prop_map(Value::from),
        Just(json!(u64::MAX)),
        "[ab]{0,2}".prop_map(Value::String),
    ]
}

/// Any JSON value, keys drawn from `keys`.
fn value_with(keys: Vec<&'static str>) -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 48, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(keys.clone()), inner, 0..4).prop_map(
                |members| Value::Object(
                    members
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect()
                )
            ),
        ]
    })
}

fn value() -> impl Strategy<Value = Value> {
    value_with(vec!["a", "b", "c", "d"])
}

fn object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-d]", value(), 0..4)
        .prop_map(|members| Value::Object(members.into_iter().collect()))
}

/// The value without `null` object members, which a merge patch cannot set.
fn without_null_members(value: Value) -> Value {
    match value {
        Value::Object(members) => Value::Object(
            members
                .into_iter()
                .filter(|(_, member)| !member.is_null())
                .map(|(key, member)| (key, without_null_members(member)))
                .collect::<Map<_, _>>(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_null_members).collect()),
        scalar => scalar,
    }
}

/// Keys and directives a Pod patch may use, to reach every path of the strategic merge.
const POD_KEYS: &[&str] = &[
    "metadata",
    "finalizers",
    "ownerReferences",
    "uid",
    "spec",
    "containers",
    "name",
    "image",
    "env",
    "value",
    "ports",
    "containerPort",
    "volumes",
    "tolerations",
    "status",
    "conditions",
    "type",
    "$patch",
    "$retainKeys",
    "$setElementOrder/containers",
    "$setElementOrder/finalizers",
    "$setElementOrder/env",
    "$deleteFromPrimitiveList/finalizers",
    "$deleteFromPrimitiveList/containers",
    "$setElementOrder",
    "replace",
    "delete",
];

/// Operations over a small vocabulary of pointers, so that many of them apply.
fn json_patch() -> impl Strategy<Value = Value> {
    let pointer = prop::collection::vec(
        prop::sample::select(vec!["a", "b", "0", "1", "-", "01", "~0", "~1", "", "x~2"]),
        0..4,
    )
    .prop_map(|tokens| {
        tokens
            .iter()
            .map(|token| format!("/{token}"))
            .collect::<String>()
    });
    let operation = (
        prop::sample::select(vec![
            "add", "remove", "replace", "move", "copy", "test", "bogus",
        ]),
        pointer.clone(),
        pointer,
        prop::option::of(value()),
    )
        .prop_map(|(op, path, from, value)| {
            let mut operation = json!({"op": op, "path": path, "from": from});
            if let (Some(value), Value::Object(members)) = (value, &mut operation) {
                members.insert("value".to_owned(), value);
            }
            operation
        });
    prop::collection::vec(operation, 0..6).prop_map(Value::Array)
}

proptest! {
    #[test]
    fn merge_patch_of_a_diff_gives_the_modified_value(original in value(), modified in value()) {
        let modified = without_null_members(modified);
        let patch = create_merge_patch(&original, &modified);
        prop_assert_eq!(apply_merge_patch(&original, &patch).ok(), Some(modified));
    }

    #[test]
    fn merge_patch_of_no_change_is_empty(original in object()) {
        prop_assert_eq!(create_merge_patch(&original, &original), json!({}));
    }

    #[test]
    fn strategic_merge_without_keys_or_directives_is_a_merge_patch(target in object(), patch in object()) {
        let strategic = apply_strategic_merge_patch(&target, &patch, &MergeKeys::new());
        prop_assert_eq!(strategic.ok(), apply_merge_patch(&target, &patch).ok());
    }

    #[test]
    fn identity_agrees_with_json_equality(a in value(), b in value()) {
        prop_assert_eq!(identity(&a) == identity(&b), json_equal(&a, &b));
        prop_assert!(json_equal(&a, &a));
    }

    #[test]
    fn merge_patch_never_panics(target in value(), patch in value()) {
        let _ = apply_merge_patch(&target, &patch);
    }

    #[test]
    fn json_patch_never_panics(target in value(), patch in json_patch()) {
        if let Ok(result) = apply_json_patch(&target, &patch) {
            prop_assert!(crate::patch::measure(&result, usize::MAX).0 <= crate::patch::MAX_DEPTH);
        }
    }

    #[test]
    fn strategic_merge_never_panics(target in value_with(POD_KEYS.to_vec()), patch in value_with(POD_KEYS.to_vec())) {
        let keys = MergeKeys::for_kind("v1", "Pod").unwrap_or_default();
        let _ = apply_strategic_merge_patch(&target, &patch, &keys);
        let _ = apply_strategic_merge_patch(&json!({"spec": target}), &json!({"spec": patch}), &keys);
    }
}
