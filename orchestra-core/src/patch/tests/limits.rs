//! The deepest values every format takes, on a test thread's ordinary stack.

use serde_json::{Map, Value, json};

use crate::patch::{
    MAX_DEPTH, MergeKeys, PatchError, PatchType, apply_json_patch, apply_merge_patch, apply_patch,
    apply_strategic_merge_patch,
};

/// `levels` lists of one object each, nested: `{"a": [{"k": 0, "a": [...]}]}`; the innermost
/// object holds the members of `leaf` too.
fn nested_lists(levels: usize, leaf: Value) -> Value {
    let innermost = match leaf {
        Value::Object(members) => members,
        _ => Map::new(),
    };
    let item = (1..levels).fold(innermost, |inner, _| {
        let mut item = Map::from_iter([("a".to_owned(), list_of(inner))]);
        item.insert("k".to_owned(), json!(0));
        item
    });
    Value::Object(Map::from_iter([("a".to_owned(), list_of(item))]))
}

fn list_of(mut item: Map<String, Value>) -> Value {
    item.insert("k".to_owned(), json!(0));
    Value::Array(vec![Value::Object(item)])
}

#[test]
fn the_deepest_values_patch_without_overflowing_the_stack() {
    // 63 lists of objects in objects: 127 levels of nesting.
    let levels = (MAX_DEPTH - 1) / 2;
    let target = nested_lists(levels, json!({"x": 1}));
    let patch = nested_lists(levels, json!({"y": 2}));
    let mut keys = MergeKeys::new();
    let mut path = String::from("a");
    for _ in 0..levels {
        keys = keys.merge_by_key(&path, "k");
        path.push_str(".a");
    }
    let merged = apply_strategic_merge_patch(&target, &patch, &keys);
    assert_eq!(merged, Ok(nested_lists(levels, json!({"x": 1, "y": 2}))));

    assert_eq!(apply_merge_patch(&target, &patch), Ok(patch.clone()));
    // A JSON patch nests its values two levels down (an array of operations, each an object).
    let inner = target.pointer("/a/0/a").cloned().unwrap_or_default();
    let test = json!([{"op": "test", "path": "/a/0/a", "value": inner}]);
    assert_eq!(apply_json_patch(&target, &test), Ok(target.clone()));
    let test = json!([{"op": "test", "path": "", "value": target.clone()}]);
    assert!(matches!(
        apply_json_patch(&target, &test),
        Err(PatchError::TooDeep { what: "patch", .. })
    ));

    let deeper = nested_lists(levels + 1, json!({}));
    assert_eq!(
        apply_patch(&deeper, PatchType::StrategicMerge, &json!({}), Some(&keys)),
        Err(PatchError::TooDeep {
            what: "object",
            max: MAX_DEPTH
        }),
    );
}
