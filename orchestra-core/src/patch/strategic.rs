//! Kubernetes' strategic merge patch (`k8s.io/apimachinery/pkg/util/strategicpatch`), and the
//! merge keys of the built-in kinds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use serde_json::{Map, Value};

use super::{PatchError, StrategicMergeFailure, check_depth, identity};
use crate::resource::ApiResource;

/// `$patch: replace | delete`, in an object or as an item of a merging list.
const DIRECTIVE: &str = "$patch";
/// `$retainKeys: [fields]`: the fields of an object to keep.
const RETAIN_KEYS: &str = "$retainKeys";
/// `$setElementOrder/<field>: [items]`: the order of a merging list.
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
/// `$deleteFromPrimitiveList/<field>: [values]`: values to remove from a merging list.
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

/// A field's patch strategy, Kubernetes' `x-kubernetes-patch-strategy` (`patchStrategy` in the Go
/// types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PatchStrategy {
    /// `merge`: a list merges, by its merge key when it holds objects, as a set when it holds
    /// primitives.
    Merge,
    /// `replace`: an object is replaced instead of merged.
    Replace,
}

/// How a strategic merge patch treats one field; see [`MergeKeys`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldStrategy {
    /// The patch strategy; `None` is the default: objects merge, lists are replaced.
    pub strategy: Option<PatchStrategy>,
    /// The field identifying the items of a merging list of objects
    /// (`x-kubernetes-patch-merge-key`).
    pub merge_key: Option<String>,
    /// Whether the field also has the `retainKeys` strategy. It matters to clients computing
    /// patches (they send a `$retainKeys` directive); applying a patch obeys whatever
    /// `$retainKeys` the patch holds.
    pub retain_keys: bool,
}

/// The default strategy, for fields the table does not describe.
static NO_STRATEGY: FieldStrategy = FieldStrategy {
    strategy: None,
    merge_key: None,
    retain_keys: false,
};

/// One field of the table: its strategy, and the strategies of its own fields (for a list, the
/// fields of its items).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Node {
    strategy: FieldStrategy,
    fields: BTreeMap<String, Node>,
}

/// The patch strategies and merge keys of a kind's fields: what a strategic merge patch needs to
/// know of a kind.
///
/// Fields are named by their path from the kind's root, with dots: `spec.template.spec.containers`.
/// Lists are transparent, so the fields of a list's items follow the list's own path:
/// `spec.containers.ports` (also written `spec.containers[*].ports`) is the `ports` of every
/// container. A `*` segment stands for every key of a map. Fields the table does not name merge
/// as objects, or are replaced as lists.
///
/// [`MergeKeys::for_kind`] has the tables of the built-in kinds, taken from the
/// `patchStrategy`/`patchMergeKey` tags of Kubernetes' Go types (the `x-kubernetes-patch-strategy`
/// and `x-kubernetes-patch-merge-key` of its OpenAPI document): a Pod's containers merge by
/// `name`, their ports by `containerPort`, their volume mounts by `mountPath`, finalizers as a
/// set, and so on. A custom kind declares its own with the builder methods.
///
/// # Examples
///
/// ```
/// use orchestra_core::patch::{MergeKeys, PatchStrategy, apply_strategic_merge_patch};
/// use serde_json::json;
///
/// let keys = MergeKeys::new()
///     .merge_by_key("spec.backends", "host")
///     .merge_primitives("spec.backends[*].tags");
/// assert_eq!(keys.field("spec.backends").and_then(|field| field.strategy), Some(PatchStrategy::Merge));
///
/// let object = json!({"spec": {"backends": [{"host": "a", "weight": 1, "tags": ["x"]}]}});
/// let patch = json!({"spec": {"backends": [
///     {"host": "a", "weight": 2, "tags": ["y"]},
///     {"host": "b", "weight": 1},
/// ]}});
/// assert_eq!(
///     apply_strategic_merge_patch(&object, &patch, &keys)?,
///     json!({"spec": {"backends": [
///         {"host": "a", "weight": 2, "tags": ["y", "x"]},
///         {"host": "b", "weight": 1},
///     ]}}),
/// );
///
/// let pod = MergeKeys::for_kind("v1", "Pod").unwrap_or_default();
/// let containers = pod.field("spec.containers").and_then(|field| field.merge_key.as_deref());
/// assert_eq!(containers, Some("name"));
/// # Ok::<(), orchestra_core::patch::PatchError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MergeKeys {
    root: Arc<Node>,
}

impl MergeKeys {
    /// The built-in kinds [`MergeKeys::for_kind`] knows, as `(apiVersion, kind)`.
    pub const BUILTIN_KINDS: [(&'static str, &'static str); 18] = [
        ("v1", "Pod"),
        ("v1", "Node"),
        ("v1", "Namespace"),
        ("v1", "Service"),
        ("v1", "Endpoints"),
        ("v1", "ServiceAccount"),
        ("v1", "Secret"),
        ("v1", "ConfigMap"),
        ("v1", "Event"),
        ("v1", "ReplicationController"),
        ("apps/v1", "ReplicaSet"),
        ("apps/v1", "Deployment"),
        ("coordination.k8s.io/v1", "Lease"),
        ("scheduling.k8s.io/v1", "PriorityClass"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ];

    /// An empty table: every object merges and every list is replaced, as in a JSON merge patch,
    /// and the directives still apply.
    pub fn new() -> MergeKeys {
        MergeKeys::default()
    }

    /// The table of a built-in kind (see [`MergeKeys::BUILTIN_KINDS`]); `None` for any other
    /// kind, for which Kubernetes refuses strategic merge patches.
    pub fn for_kind(api_version: &str, kind: &str) -> Option<MergeKeys> {
        BUILTIN
            .iter()
            .find(|(builtin, _)| *builtin == (api_version, kind))
            .map(|(_, keys)| keys.clone())
    }

    /// The table of a resource's kind, as [`MergeKeys::for_kind`].
    pub fn for_resource(resource: &ApiResource) -> Option<MergeKeys> {
        MergeKeys::for_kind(&resource.api_version, &resource.kind)
    }

    /// Declares a list of objects that merges by the field `key` (`patchStrategy: merge` with a
    /// `patchMergeKey`).
    pub fn merge_by_key(self, path: &str, key: &str) -> MergeKeys {
        self.declare(path, |field| {
            field.strategy = Some(PatchStrategy::Merge);
            field.merge_key = Some(key.to_owned());
        })
    }

    /// Declares a list of primitives that merges as a set (`patchStrategy: merge` without a merge
    /// key), as `metadata.finalizers`.
    pub fn merge_primitives(self, path: &str) -> MergeKeys {
        self.declare(path, |field| {
            field.strategy = Some(PatchStrategy::Merge);
            field.merge_key = None;
        })
    }

    /// Declares an object that a patch replaces instead of merging into (`patchStrategy:
    /// replace`).
    pub fn replace(self, path: &str) -> MergeKeys {
        self.declare(path, |field| {
            field.strategy = Some(PatchStrategy::Replace);
            field.merge_key = None;
        })
    }

    /// Declares the `retainKeys` strategy of a field, beside its other strategy.
    pub fn retain_keys(self, path: &str) -> MergeKeys {
        self.declare(path, |field| field.retain_keys = true)
    }

    /// The strategy declared for a field, if any.
    pub fn field(&self, path: &str) -> Option<&FieldStrategy> {
        let mut node = self.root.as_ref();
        for segment in segments(path) {
            node = child(Some(node), &segment)?;
        }
        (node.strategy != NO_STRATEGY).then_some(&node.strategy)
    }

    fn declare(mut self, path: &str, change: impl FnOnce(&mut FieldStrategy)) -> MergeKeys {
        let mut node = Arc::make_mut(&mut self.root);
        for segment in segments(path) {
            node = node.fields.entry(segment).or_default();
        }
        change(&mut node.strategy);
        self
    }
}

/// The segments of a field path: dot-separated, a trailing `[*]` or `[]` ignored.
fn segments(path: &str) -> impl Iterator<Item = String> + '_ {
    path.split('.')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            segment
                .strip_suffix("[*]")
                .or_else(|| segment.strip_suffix("[]"))
                .unwrap_or(segment)
                .to_owned()
        })
}

/// A place in a [`MergeKeys`] table, walked alongside a value (server-side apply reads the same
/// table): the strategy of the field there, and the places of its fields. Lists are transparent,
/// as in the table: the fields of a list's items are the list's own fields.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SchemaCursor<'s>(Option<&'s Node>);

impl<'s> SchemaCursor<'s> {
    /// The root of a table; without one, every object merges and every list is atomic.
    pub(crate) fn root(merge_keys: Option<&'s MergeKeys>) -> SchemaCursor<'s> {
        SchemaCursor(merge_keys.map(|keys| keys.root.as_ref()))
    }

    /// The place of a field of the value here (or of the items' field, for a list).
    pub(crate) fn child(self, field: &str) -> SchemaCursor<'s> {
        SchemaCursor(child(self.0, field))
    }

    /// The strategy declared here.
    pub(crate) fn strategy(self) -> &'s FieldStrategy {
        strategy_of(self.0)
    }
}

fn child<'s>(schema: Option<&'s Node>, field: &str) -> Option<&'s Node> {
    schema.and_then(|node| node.fields.get(field).or_else(|| node.fields.get("*")))
}

fn strategy_of(schema: Option<&Node>) -> &FieldStrategy {
    schema.map_or(&NO_STRATEGY, |node| &node.strategy)
}

/// Applies a strategic merge patch to an object, returning the patched copy.
///
/// The patch merges into the object as a JSON merge patch does — objects member by member, `null`
/// deleting — except for the lists `merge_keys` declares as merging, and for the directives
/// (`$patch`, `$retainKeys`, `$setElementOrder/<field>`, `$deleteFromPrimitiveList/<field>`); see
/// the [module documentation](super). Both the object and the patch must be JSON objects.
///
/// Errors are [`PatchError::StrategicMerge`], naming where in the patch the problem is: an item of
/// a list merged by key without the key, a `$patch` that is neither `replace` nor `delete`, a
/// field missing from `$retainKeys`, a patch list out of the `$setElementOrder` order, and so on.
///
/// # Examples
///
/// ```
/// use orchestra_core::patch::{MergeKeys, apply_strategic_merge_patch};
/// use serde_json::json;
///
/// let deployment = json!({
///     "metadata": {"finalizers": ["a"]},
///     "spec": {
///         "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
///         "template": {"spec": {"containers": [{"name": "app", "image": "app:1", "args": ["-v"]}]}},
///     },
/// });
/// let patch = json!({
///     "metadata": {"finalizers": ["b"]},
///     "spec": {
///         "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
///         "template": {"spec": {"containers": [{"name": "app", "args": ["-q"]}]}},
///     },
/// });
/// let keys = MergeKeys::for_kind("apps/v1", "Deployment").unwrap_or_default();
/// assert_eq!(
///     apply_strategic_merge_patch(&deployment, &patch, &keys)?,
///     json!({
///         "metadata": {"finalizers": ["b", "a"]},
///         "spec": {
///             "strategy": {"type": "Recreate"},
///             "template": {"spec": {"containers": [{"name": "app", "image": "app:1", "args": ["-q"]}]}},
///         },
///     }),
/// );
/// # Ok::<(), orchestra_core::patch::PatchError>(())
/// ```
pub fn apply_strategic_merge_patch(
    target: &Value,
    patch: &Value,
    merge_keys: &MergeKeys,
) -> Result<Value, PatchError> {
    check_depth(target, "object")?;
    check_depth(patch, "patch")?;
    let Value::Object(patch) = patch else {
        return Err(PatchError::InvalidPatch {
            reason: "a strategic merge patch must be a JSON object".to_owned(),
        });
    };
    let Value::Object(original) = target else {
        return Err(PatchError::InvalidPatch {
            reason: "a strategic merge patch applies to a JSON object".to_owned(),
        });
    };
    let merged = merge_map(original.clone(), patch, Some(merge_keys.root.as_ref()))?;
    Ok(Value::Object(merged))
}

/// A failure, and the path from it back to the root, innermost segment first.
struct Error {
    path: Vec<Segment>,
    failure: StrategicMergeFailure,
}

enum Segment {
    Field(String),
    Index(usize),
}

type Result<T, E = Error> = std::result::Result<T, E>;

fn fail<T>(failure: StrategicMergeFailure) -> Result<T> {
    Err(Error {
        path: Vec::new(),
        failure,
    })
}

/// Adds a segment to the path of an error on its way out.
trait At {
    fn at_field(self, field: &str) -> Self;
    fn at_index(self, index: usize) -> Self;
}

impl<T> At for Result<T> {
    fn at_field(self, field: &str) -> Self {
        self.map_err(|mut error| {
            error.path.push(Segment::Field(field.to_owned()));
            error
        })
    }

    fn at_index(self, index: usize) -> Self {
        self.map_err(|mut error| {
            error.path.push(Segment::Index(index));
            error
        })
    }
}

impl From<Error> for PatchError {
    fn from(error: Error) -> PatchError {
        let mut path = String::new();
        for segment in error.path.iter().rev() {
            match segment {
                Segment::Field(field) => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(field);
                }
                Segment::Index(index) => path.push_str(&format!("[{index}]")),
            }
        }
        if path.is_empty() {
            path.push_str("<root>");
        }
        PatchError::StrategicMerge {
            path,
            failure: error.failure,
        }
    }
}

/// The field a directive key (`$setElementOrder/<field>`) names.
fn directive_field<'k>(key: &'k str, prefix: &str) -> Result<&'k str> {
    match key
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('/'))
    {
        Some(field) => Ok(field),
        None => fail(StrategicMergeFailure::BadDirectiveKey {
            key: key.to_owned(),
        }),
    }
}

/// Merges a patch object into an object (Kubernetes' `mergeMap`). Recursion follows the patch,
/// whose depth the caller has checked.
fn merge_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    schema: Option<&Node>,
) -> Result<Map<String, Value>> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => {
                let mut rest = patch.clone();
                rest.remove(DIRECTIVE);
                merge_map(Map::new(), &rest, schema)
            }
            Some("delete") => Ok(Map::new()),
            _ => fail(StrategicMergeFailure::BadPatchDirective {
                value: directive.to_string(),
            }),
        };
    }

    if let Some(retained) = patch.get(RETAIN_KEYS) {
        let Value::Array(retained) = retained else {
            return fail(StrategicMergeFailure::RetainKeysNotAList);
        };
        let retained: HashSet<&str> = retained.iter().filter_map(Value::as_str).collect();
        for (key, value) in patch {
            let directive = key == RETAIN_KEYS
                || key.starts_with(SET_ELEMENT_ORDER)
                || key.starts_with(DELETE_FROM_PRIMITIVE_LIST);
            if !directive && !value.is_null() && !retained.contains(key.as_str()) {
                return fail(StrategicMergeFailure::NotInRetainKeys { field: key.clone() });
            }
        }
        original.retain(|key, _| retained.contains(key.as_str()));
    }

    // Lists with an order first: they take their patch list along.
    let mut ordered = HashSet::new();
    for (key, order) in patch {
        if !key.starts_with(SET_ELEMENT_ORDER) {
            continue;
        }
        let field = directive_field(key, SET_ELEMENT_ORDER)?;
        let Value::Array(order) = order else {
            return fail(StrategicMergeFailure::DirectiveNotAList {
                directive: key.clone(),
            });
        };
        let list = set_element_order(
            original.remove(field),
            patch.get(field),
            order,
            key,
            child(schema, field),
        )
        .at_field(field)?;
        if let Some(list) = list {
            original.insert(field.to_owned(), Value::Array(list));
        }
        ordered.insert(field);
    }

    let mut deletions = Vec::new();
    for (key, value) in patch {
        if key == RETAIN_KEYS
            || key.starts_with(SET_ELEMENT_ORDER)
            || ordered.contains(key.as_str())
        {
            continue;
        }
        if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            deletions.push((
                directive_field(key, DELETE_FROM_PRIMITIVE_LIST)?,
                key,
                value,
            ));
            continue;
        }
        if value.is_null() {
            original.remove(key);
            continue;
        }
        let schema = child(schema, key);
        let merged = match original.remove(key) {
            Some(existing) => merge_value(existing, value, schema),
            None => fresh(value, schema),
        }
        .at_field(key)?;
        original.insert(key.clone(), merged);
    }

    for (field, directive, values) in deletions {
        delete_from_list(
            &mut original,
            field,
            directive,
            values,
            child(schema, field),
        )
        .at_field(field)?;
    }
    Ok(original)
}

/// Merges a patch value into an existing one.
fn merge_value(existing: Value, patch: &Value, schema: Option<&Node>) -> Result<Value> {
    let strategy = strategy_of(schema).strategy;
    match (existing, patch) {
        (Value::Object(existing), Value::Object(patch))
            if strategy != Some(PatchStrategy::Replace) =>
        {
            Ok(Value::Object(merge_map(existing, patch, schema)?))
        }
        (Value::Array(existing), Value::Array(patch)) if strategy == Some(PatchStrategy::Merge) => {
            Ok(Value::Array(merge_list(existing, patch, schema)?.0))
        }
        (_, patch) => fresh(patch, schema),
    }
}

/// A patch value where there was none, or that replaces what there was: the patch applied to
/// nothing, so that its nulls and directives do not land in the object. Lists that do not merge
/// are taken as they are, as a JSON merge patch takes arrays.
fn fresh(patch: &Value, schema: Option<&Node>) -> Result<Value> {
    match patch {
        Value::Object(patch) => Ok(Value::Object(merge_map(Map::new(), patch, schema)?)),
        Value::Array(patch) if strategy_of(schema).strategy == Some(PatchStrategy::Merge) => {
            Ok(Value::Array(merge_list(Vec::new(), patch, schema)?.0))
        }
        other => Ok(other.clone()),
    }
}

/// The type of the items of a merging list, which must all be of one type and not lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Number,
    String,
    Object,
}

fn element_kind<'v>(items: impl IntoIterator<Item = &'v Value>) -> Result<Option<Kind>> {
    let mut kind = None;
    for item in items {
        let this = match item {
            Value::Array(_) => return fail(StrategicMergeFailure::ListOfLists),
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Number(_) => Kind::Number,
            Value::String(_) => Kind::String,
            Value::Object(_) => Kind::Object,
        };
        match kind {
            None => kind = Some(this),
            Some(kind) if kind == this => {}
            Some(_) => return fail(StrategicMergeFailure::MixedList),
        }
    }
    Ok(kind)
}

/// What identifies an item of a list: its merge key's value, or the item itself.
fn item_identity(item: &Value, key: Option<&str>) -> Result<String> {
    let Some(key) = key else {
        return Ok(identity(item));
    };
    let Value::Object(item) = item else {
        return fail(StrategicMergeFailure::ItemNotAnObject {
            key: key.to_owned(),
        });
    };
    match item.get(key) {
        Some(value) => Ok(identity(value)),
        None => fail(StrategicMergeFailure::MissingMergeKey {
            key: key.to_owned(),
        }),
    }
}

fn identities(items: &[Value], key: Option<&str>) -> Result<Vec<String>> {
    items.iter().map(|item| item_identity(item, key)).collect()
}

/// Merges a patch list into a merging list (Kubernetes' `mergeSlice`). Returns the merged list,
/// and the order of the live list that a `$setElementOrder` places the items the patch does not
/// mention by.
fn merge_list(
    original: Vec<Value>,
    patch: &[Value],
    schema: Option<&Node>,
) -> Result<(Vec<Value>, Vec<Value>)> {
    if original.is_empty() && patch.is_empty() {
        return Ok((original, Vec::new()));
    }
    match element_kind(original.iter().chain(patch))? {
        Some(Kind::Object) => match strategy_of(schema).merge_key.as_deref() {
            Some(key) => merge_object_list(original, patch, key, schema),
            None => fail(StrategicMergeFailure::NoMergeKey),
        },
        _ => {
            // A set: the patch's values join the list's, each value once.
            let mut seen = HashSet::new();
            let merged = original
                .iter()
                .chain(patch)
                .filter(|item| seen.insert(identity(item)))
                .cloned()
                .collect();
            let order = identities(patch, None)?;
            let server = identities(&original, None)?;
            let merged = order_items(merged, &order, &server, None)?;
            Ok((merged, original))
        }
    }
}

/// Merges a patch list into a list of objects merged by `key`.
fn merge_object_list(
    mut list: Vec<Value>,
    patch: &[Value],
    key: &str,
    schema: Option<&Node>,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let live = list.len();
    // How many items of each key to delete: each `$patch: delete` deletes the first item with its
    // key (Kubernetes' `deleteMatchingEntry`), so duplicates go one by one.
    let mut doomed: HashMap<String, usize> = HashMap::new();
    let mut replace = false;
    let mut items = Vec::new();
    for (index, item) in patch.iter().enumerate() {
        let Value::Object(members) = item else {
            return fail(StrategicMergeFailure::ItemNotAnObject {
                key: key.to_owned(),
            })
            .at_index(index);
        };
        let Some(directive) = members.get(DIRECTIVE) else {
            items.push((index, members));
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                *doomed
                    .entry(item_identity(item, Some(key)).at_index(index)?)
                    .or_default() += 1;
            }
            Some("replace") => replace = true,
            _ => {
                return fail(StrategicMergeFailure::BadPatchDirective {
                    value: directive.to_string(),
                })
                .at_index(index);
            }
        }
    }
    if !doomed.is_empty() {
        list.retain(|existing| {
            let Some(count) = existing
                .get(key)
                .and_then(|value| doomed.get_mut(&identity(value)))
                .filter(|count| **count > 0)
            else {
                return true;
            };
            *count -= 1;
            false
        });
    }

    if replace {
        // The list becomes the patch's other items; Kubernetes still wants them keyed.
        let mut merged = Vec::with_capacity(items.len());
        for (index, members) in items {
            let item = Value::Object(merge_map(Map::new(), members, schema).at_index(index)?);
            item_identity(&item, Some(key)).at_index(index)?;
            merged.push(item);
        }
        return Ok((merged, list));
    }

    let mut positions = HashMap::new();
    for (position, existing) in list.iter().enumerate() {
        if let Some(value) = existing.get(key) {
            positions.entry(identity(value)).or_insert(position);
        }
    }
    let mut order = Vec::with_capacity(items.len());
    for (index, members) in items {
        let Some(value) = members.get(key) else {
            return fail(StrategicMergeFailure::MissingMergeKey {
                key: key.to_owned(),
            })
            .at_index(index);
        };
        let id = identity(value);
        let slot = positions
            .get(&id)
            .and_then(|&position| list.get_mut(position));
        match slot {
            Some(slot) => {
                let existing = match std::mem::take(slot) {
                    Value::Object(existing) => existing,
                    _ => Map::new(),
                };
                *slot = Value::Object(merge_map(existing, members, schema).at_index(index)?);
            }
            None => {
                let added = merge_map(Map::new(), members, schema).at_index(index)?;
                positions.insert(id.clone(), list.len());
                list.push(Value::Object(added));
            }
        }
        order.push(id);
    }
    // Within the merge the whole list is the live order, added items last; a `$setElementOrder`
    // places items by the live list's slots: what survived the deletions, then as many added
    // items as were deleted (where Kubernetes' in-place slice edits leave them).
    let everything = identities(&list, Some(key))?;
    let slots: Vec<Value> = list.iter().take(live).cloned().collect();
    let merged = order_items(list, &order, &everything, Some(key))?;
    Ok((merged, slots))
}

/// Orders a merged list as Kubernetes does (`normalizeElementOrder`): the items whose identity is
/// in `order` take that order, the others keep the order of `server` (the live list), and the two
/// interleave so that an item of the live list stays before the listed items that came after it
/// there. Every item must be identifiable (carry the merge key, when there is one).
fn order_items(
    merged: Vec<Value>,
    order: &[String],
    server: &[String],
    key: Option<&str>,
) -> Result<Vec<Value>> {
    fn first_positions(ids: &[String]) -> HashMap<&str, usize> {
        let mut positions = HashMap::with_capacity(ids.len());
        for (position, id) in ids.iter().enumerate() {
            positions.entry(id.as_str()).or_insert(position);
        }
        positions
    }
    let order_at = first_positions(order);
    let server_at = first_positions(server);
    let mut listed = Vec::new();
    let mut others = Vec::new();
    for item in merged {
        let id = item_identity(&item, key)?;
        if order_at.contains_key(id.as_str()) {
            listed.push((id, item));
        } else {
            others.push((id, item));
        }
    }
    listed.sort_by_key(|(id, _)| order_at.get(id.as_str()).copied().unwrap_or(usize::MAX));
    others.sort_by_key(|(id, _)| server_at.get(id.as_str()).copied().unwrap_or(usize::MAX));

    let mut result = Vec::with_capacity(listed.len() + others.len());
    let mut listed = listed.into_iter().peekable();
    let mut others = others.into_iter().peekable();
    loop {
        let take_other = match (others.peek(), listed.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((other, _)), Some((item, _))) => matches!(
                (server_at.get(other.as_str()), server_at.get(item.as_str())),
                (Some(other), Some(item)) if other < item
            ),
        };
        let next = if take_other {
            others.next()
        } else {
            listed.next()
        };
        if let Some((_, item)) = next {
            result.push(item);
        }
    }
    Ok(result)
}

/// Applies a `$setElementOrder/<field>` and the field's patch list, if any (Kubernetes'
/// `mergePatchIntoOriginal`). `None` when the field is neither in the object nor in the patch.
fn set_element_order(
    original: Option<Value>,
    patch: Option<&Value>,
    order: &[Value],
    directive: &str,
    schema: Option<&Node>,
) -> Result<Option<Vec<Value>>> {
    let not_a_list = || {
        fail(StrategicMergeFailure::FieldNotAList {
            directive: directive.to_owned(),
        })
    };
    let original = match original {
        None => None,
        Some(Value::Array(items)) => Some(items),
        Some(_) => return not_a_list(),
    };
    let patch = match patch {
        None => None,
        Some(Value::Array(items)) => Some(items.as_slice()),
        Some(_) => return not_a_list(),
    };
    let strategy = strategy_of(schema);
    let kind = element_kind(original.iter().flatten().chain(patch.into_iter().flatten()))?;
    let key = match kind {
        Some(Kind::Object) => strategy.merge_key.as_deref(),
        _ => None,
    };
    let order = identities(order, key)?;
    if let Some(patch) = patch {
        check_order(patch, &order, key)?;
    }
    let merges = strategy.strategy == Some(PatchStrategy::Merge);
    let (merged, server) = match (original, patch) {
        (None, None) => return Ok(None),
        (Some(original), None) => (original.clone(), original),
        (None, Some(patch)) if merges => (merge_list(Vec::new(), patch, schema)?.0, Vec::new()),
        (None, Some(patch)) => (patch.to_vec(), Vec::new()),
        (Some(original), Some(patch)) if merges => merge_list(original, patch, schema)?,
        (Some(original), Some(patch)) => (patch.to_vec(), original),
    };
    let server = identities(&server, key)?;
    Ok(Some(order_items(merged, &order, &server, key)?))
}

/// Checks that the patch list's items (but deletions and directives) come in the order of the
/// `$setElementOrder` list, which may hold more items (Kubernetes'
/// `validatePatchWithSetOrderList`).
fn check_order(patch: &[Value], order: &[String], key: Option<&str>) -> Result<()> {
    let is_directive = |item: &Value| item.get(DIRECTIVE).is_some();
    let mut items = patch.iter().filter(|item| !is_directive(item)).peekable();
    let mut order = order.iter();
    while let Some(item) = items.peek() {
        let id = item_identity(item, key)?;
        match order.next() {
            Some(next) if *next == id => {
                items.next();
            }
            Some(_) => {}
            None => return fail(StrategicMergeFailure::SetElementOrderMismatch),
        }
    }
    Ok(())
}

/// Applies a `$deleteFromPrimitiveList/<field>`.
fn delete_from_list(
    object: &mut Map<String, Value>,
    field: &str,
    directive: &str,
    values: &Value,
    schema: Option<&Node>,
) -> Result<()> {
    let Value::Array(values) = values else {
        return fail(StrategicMergeFailure::DirectiveNotAList {
            directive: directive.to_owned(),
        });
    };
    let Some(existing) = object.get_mut(field) else {
        // Nothing to delete from.
        return Ok(());
    };
    let Value::Array(items) = existing else {
        return fail(StrategicMergeFailure::FieldNotAList {
            directive: directive.to_owned(),
        });
    };
    let merges = strategy_of(schema).strategy == Some(PatchStrategy::Merge);
    let objects = element_kind(items.iter().chain(values))? == Some(Kind::Object);
    if !merges || objects {
        return fail(StrategicMergeFailure::DeleteFromNonMergingList);
    }
    let doomed: HashSet<String> = values.iter().map(identity).collect();
    items.retain(|item| !doomed.contains(&identity(item)));
    Ok(())
}

/// The tables of the built-in kinds.
static BUILTIN: LazyLock<Vec<((&'static str, &'static str), MergeKeys)>> = LazyLock::new(|| {
    MergeKeys::BUILTIN_KINDS
        .iter()
        .map(|&(api_version, kind)| ((api_version, kind), builtin(api_version, kind)))
        .collect()
});

/// The table of a built-in kind, from the `patchStrategy` and `patchMergeKey` tags of
/// Kubernetes' types (`k8s.io/api/core/v1`, `apps/v1`, `coordination/v1`, `scheduling/v1`,
/// `rbac/v1` and `apimachinery/pkg/apis/meta/v1`, Kubernetes 1.33). Lists marked atomic there (a Pod's
/// tolerations, a Node's taints, an Endpoints' subsets, container statuses, ...) are replaced.
fn builtin(api_version: &str, kind: &str) -> MergeKeys {
    let keys = object_meta(MergeKeys::new(), "metadata");
    match (api_version, kind) {
        ("v1", "Pod") => pod_status(pod_spec(keys, "spec"), "status"),
        ("v1", "Node") => keys
            .merge_primitives("spec.podCIDRs")
            .merge_by_key("status.conditions", "type")
            .merge_by_key("status.addresses", "type"),
        ("v1", "Namespace") => keys.merge_by_key("status.conditions", "type"),
        ("v1", "Service") => keys
            .merge_by_key("spec.ports", "port")
            .merge_by_key("status.conditions", "type"),
        ("v1", "ServiceAccount") => keys.merge_by_key("secrets", "name"),
        ("v1", "ReplicationController") | ("apps/v1", "ReplicaSet") => {
            pod_template(keys, "spec.template").merge_by_key("status.conditions", "type")
        }
        ("apps/v1", "Deployment") => pod_template(keys, "spec.template")
            .retain_keys("spec.strategy")
            .merge_by_key("status.conditions", "type"),
        // Endpoints, Secret, ConfigMap, Event, Lease, PriorityClass and the RBAC kinds: only their
        // metadata merges. A Role's or ClusterRole's `rules`, a ClusterRole's
        // `aggregationRule.clusterRoleSelectors` and a binding's `subjects` carry no patch
        // strategy in Kubernetes, so a patch replaces them whole.
        _ => keys,
    }
}

fn at(prefix: &str, path: &str) -> String {
    format!("{prefix}.{path}")
}

/// `ObjectMeta`: finalizers merge as a set, owner references by `uid`.
fn object_meta(keys: MergeKeys, prefix: &str) -> MergeKeys {
    keys.merge_primitives(&at(prefix, "finalizers"))
        .merge_by_key(&at(prefix, "ownerReferences"), "uid")
}

/// `PodTemplateSpec`.
fn pod_template(keys: MergeKeys, prefix: &str) -> MergeKeys {
    pod_spec(
        object_meta(keys, &at(prefix, "metadata")),
        &at(prefix, "spec"),
    )
}

/// `PodSpec`.
fn pod_spec(keys: MergeKeys, prefix: &str) -> MergeKeys {
    let volumes = at(prefix, "volumes");
    let resource_claims = at(prefix, "resourceClaims");
    let mut keys = object_meta(
        keys.merge_by_key(&volumes, "name").retain_keys(&volumes),
        &at(&volumes, "ephemeral.volumeClaimTemplate.metadata"),
    );
    for containers in ["containers", "initContainers", "ephemeralContainers"] {
        let containers = at(prefix, containers);
        keys = keys
            .merge_by_key(&containers, "name")
            .merge_by_key(&at(&containers, "ports"), "containerPort")
            .merge_by_key(&at(&containers, "env"), "name")
            .merge_by_key(&at(&containers, "volumeMounts"), "mountPath")
            .merge_by_key(&at(&containers, "volumeDevices"), "devicePath");
    }
    keys.merge_by_key(&at(prefix, "imagePullSecrets"), "name")
        .merge_by_key(&at(prefix, "hostAliases"), "ip")
        .merge_by_key(&at(prefix, "topologySpreadConstraints"), "topologyKey")
        .merge_by_key(&at(prefix, "schedulingGates"), "name")
        .merge_by_key(&resource_claims, "name")
        .retain_keys(&resource_claims)
}

/// `PodStatus`.
fn pod_status(keys: MergeKeys, prefix: &str) -> MergeKeys {
    let claim_statuses = at(prefix, "resourceClaimStatuses");
    keys.merge_by_key(&at(prefix, "conditions"), "type")
        .merge_by_key(&at(prefix, "podIPs"), "ip")
        .merge_by_key(&at(prefix, "hostIPs"), "ip")
        .merge_by_key(&claim_statuses, "name")
        .retain_keys(&claim_statuses)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const RBAC: &str = "rbac.authorization.k8s.io/v1";

    #[test]
    fn rbac_kinds_merge_only_their_metadata() {
        for kind in ["Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"] {
            let keys = MergeKeys::for_kind(RBAC, kind);
            assert!(keys.is_some(), "{kind}");
            let keys = keys.unwrap_or_default();
            assert_eq!(
                keys.field("metadata.finalizers")
                    .and_then(|field| field.strategy),
                Some(PatchStrategy::Merge),
                "{kind}"
            );
            for path in ["rules", "subjects", "aggregationRule.clusterRoleSelectors"] {
                assert_eq!(
                    keys.field(path).and_then(|field| field.merge_key.clone()),
                    None,
                    "{kind} {path}"
                );
            }
        }
    }

    #[test]
    fn rbac_rules_and_subjects_are_replaced_whole() {
        let role = json!({
            "metadata": {"name": "reader", "finalizers": ["a"]},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        });
        let patch = json!({
            "metadata": {"finalizers": ["b"]},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}],
        });
        let keys = MergeKeys::for_kind(RBAC, "Role").unwrap_or_default();
        assert_eq!(
            apply_strategic_merge_patch(&role, &patch, &keys).ok(),
            Some(json!({
                "metadata": {"name": "reader", "finalizers": ["b", "a"]},
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}],
            }))
        );

        let binding = json!({
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"}],
        });
        let patch = json!({"subjects": [{"kind": "Group", "name": "ops"}]});
        let keys = MergeKeys::for_kind(RBAC, "ClusterRoleBinding").unwrap_or_default();
        assert_eq!(
            apply_strategic_merge_patch(&binding, &patch, &keys).ok(),
            Some(json!({
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                "subjects": [{"kind": "Group", "name": "ops"}],
            }))
        );
    }
}
