//! Server-side apply (`application/apply-patch+yaml`) and the field ownership every write records
//! in `metadata.managedFields`, after Kubernetes' `structured-merge-diff`.
//!
//! The semantics are described in the [`patch` module documentation](super).
//!
//! # Examples
//!
//! ```
//! use orchestra_core::patch::{ApplyError, MergeKeys, server_side_apply};
//! use serde_json::json;
//!
//! let keys = MergeKeys::for_kind("apps/v1", "Deployment");
//! let time = "2024-05-01T12:00:00Z";
//! let config = json!({
//!     "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
//!     "spec": {"replicas": 3},
//! });
//! let created = server_side_apply(None, config, "ci", false, keys.as_ref(), time)?;
//! assert_eq!(
//!     created["metadata"]["managedFields"][0]["fieldsV1"],
//!     json!({"f:spec": {"f:replicas": {}}}),
//! );
//!
//! // Another manager setting the replicas to another value conflicts with "ci".
//! let config = json!({
//!     "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
//!     "spec": {"replicas": 5},
//! });
//! let error = server_side_apply(Some(&created), config.clone(), "hpa", false, keys.as_ref(), time)
//!     .unwrap_err();
//! assert_eq!(error.to_string(), r#"Apply failed with 1 conflict: conflict with "ci": .spec.replicas"#);
//!
//! // Forced, the apply takes the field.
//! let taken = server_side_apply(Some(&created), config, "hpa", true, keys.as_ref(), time)?;
//! assert_eq!(taken["spec"]["replicas"], 5);
//! assert_eq!(taken["metadata"]["managedFields"].as_array().map(Vec::len), Some(1));
//! assert_eq!(taken["metadata"]["managedFields"][0]["manager"], "hpa");
//! # Ok::<(), ApplyError>(())
//! ```

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use serde_json::{Map, Value, json};

use super::strategic::SchemaCursor;
use super::{MergeKeys, PatchError, PatchStrategy, check_depth, json_equal};

/// The only `fieldsType` Kubernetes defines, that of [`FieldSet::to_fields_v1`].
pub const FIELDS_V1: &str = "FieldsV1";

/// The longest field manager name Kubernetes takes.
pub const MAX_FIELD_MANAGER_LENGTH: usize = 128;

/// One step of a [`FieldPath`].
///
/// The order (fields, then keyed items, then set items, then indices) is that of Kubernetes'
/// field paths, so that sets list their paths as Kubernetes does.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A member of an object, by name: `.replicas`, `f:replicas` in `fieldsV1`.
    Field(String),
    /// An item of an associative list, by its key, held as the JSON text of an object of the key
    /// fields (`{"name":"web"}`): `[name="web"]`, `k:{"name":"web"}` in `fieldsV1`.
    Key(String),
    /// An item of a set, by its value, held as JSON text (`"x"`): `[="x"]`, `v:"x"` in
    /// `fieldsV1`.
    Value(String),
    /// An item of a list by its position: `[0]`, `i:0` in `fieldsV1`. Only read from entries
    /// written elsewhere; the paths made here never hold one.
    Index(usize),
}

impl PathElement {
    /// The element naming the item of an associative list whose key field is `key`; `None` when
    /// the item is not an object or lacks the key.
    fn of_item(item: &Value, key: &str) -> Option<PathElement> {
        let value = item
            .as_object()?
            .get(key)
            .filter(|value| !value.is_null())?;
        let mut fields = Map::new();
        fields.insert(key.to_owned(), value.clone());
        Some(PathElement::Key(Value::Object(fields).to_string()))
    }

    /// The element naming an item of a set.
    fn of_value(item: &Value) -> PathElement {
        PathElement::Value(item.to_string())
    }

    /// The key of this element in `fieldsV1`.
    fn fields_v1_key(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(key) => format!("k:{key}"),
            PathElement::Value(value) => format!("v:{value}"),
            PathElement::Index(index) => format!("i:{index}"),
        }
    }

    /// The element a `fieldsV1` key names.
    fn from_fields_v1_key(key: &str) -> Result<PathElement, String> {
        let parse = |text: &str| {
            serde_json::from_str::<Value>(text).map_err(|error| format!("{key:?}: {error}"))
        };
        if let Some(name) = key.strip_prefix("f:") {
            Ok(PathElement::Field(name.to_owned()))
        } else if let Some(text) = key.strip_prefix("k:") {
            match parse(text)? {
                fields @ Value::Object(_) => Ok(PathElement::Key(fields.to_string())),
                _ => Err(format!("{key:?}: a key must be a JSON object")),
            }
        } else if let Some(text) = key.strip_prefix("v:") {
            Ok(PathElement::Value(parse(text)?.to_string()))
        } else if let Some(text) = key.strip_prefix("i:") {
            text.parse()
                .map(PathElement::Index)
                .map_err(|error| format!("{key:?}: {error}"))
        } else {
            Err(format!("{key:?} is not a path element"))
        }
    }
}

impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(key) => {
                let fields = serde_json::from_str::<Map<String, Value>>(key).unwrap_or_default();
                let fields: Vec<String> = fields
                    .iter()
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect();
                write!(f, "[{}]", fields.join(","))
            }
            PathElement::Value(value) => write!(f, "[={value}]"),
            PathElement::Index(index) => write!(f, "[{index}]"),
        }
    }
}

/// A path to a field, as Kubernetes prints it: `.spec.template.spec.containers[name="web"].image`.
///
/// # Examples
///
/// ```
/// use orchestra_core::patch::{FieldPath, PathElement};
///
/// let path = FieldPath(vec![
///     PathElement::Field("spec".into()),
///     PathElement::Field("containers".into()),
///     PathElement::Key(r#"{"name":"web"}"#.into()),
///     PathElement::Field("image".into()),
/// ]);
/// assert_eq!(path.to_string(), r#".spec.containers[name="web"].image"#);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldPath(pub Vec<PathElement>);

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|element| element.fmt(f))
    }
}

/// A set of field paths: the fields a manager owns, or that a write changed (Kubernetes'
/// `fieldpath.Set`).
///
/// A path may be in the set together with paths below it: an item of an associative list is owned
/// as an item (whoever owns it keeps it in the list) and through its fields.
///
/// # Examples
///
/// ```
/// use orchestra_core::patch::{FieldSet, MergeKeys, field_set};
/// use serde_json::json;
///
/// let keys = MergeKeys::for_kind("v1", "Pod");
/// let config = json!({
///     "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "finalizers": ["x"]},
///     "spec": {"containers": [{"name": "web", "image": "web:1"}]},
/// });
/// let set = field_set(&config, keys.as_ref());
/// let fields_v1 = json!({
///     "f:metadata": {"f:finalizers": {"v:\"x\"": {}}},
///     "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}}},
/// });
/// assert_eq!(set.to_fields_v1(), fields_v1);
/// assert_eq!(FieldSet::from_fields_v1(&fields_v1), Ok(set.clone()));
/// let paths: Vec<String> = set.paths().iter().map(ToString::to_string).collect();
/// assert_eq!(paths, [
///     r#".metadata.finalizers[="x"]"#,
///     r#".spec.containers[name="web"]"#,
///     r#".spec.containers[name="web"].image"#,
///     r#".spec.containers[name="web"].name"#,
/// ]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    /// The paths that end here.
    members: BTreeSet<PathElement>,
    /// The paths that go on below, by their next element; never empty sets.
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    /// An empty set.
    pub fn new() -> FieldSet {
        FieldSet::default()
    }

    /// Whether the set holds no path.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// How many paths the set holds.
    pub fn len(&self) -> usize {
        self.members.len() + self.children.values().map(FieldSet::len).sum::<usize>()
    }

    /// Adds a path; the empty path is no path, and adds nothing.
    pub fn insert(&mut self, path: &[PathElement]) {
        let Some((last, parents)) = path.split_last() else {
            return;
        };
        let mut set = self;
        for element in parents {
            set = set.children.entry(element.clone()).or_default();
        }
        set.members.insert(last.clone());
    }

    /// Whether the set holds a path.
    pub fn contains(&self, path: &[PathElement]) -> bool {
        let Some((last, parents)) = path.split_last() else {
            return false;
        };
        parents
            .iter()
            .try_fold(self, |set, element| set.children.get(element))
            .is_some_and(|set| set.members.contains(last))
    }

    /// Whether the set holds `prefix` or a path below it.
    pub fn has_prefix(&self, prefix: &[PathElement]) -> bool {
        let Some((last, parents)) = prefix.split_last() else {
            return !self.is_empty();
        };
        parents
            .iter()
            .try_fold(self, |set, element| set.children.get(element))
            .is_some_and(|set| set.owns(last))
    }

    /// Whether the set holds the path `element` or paths below it.
    fn owns(&self, element: &PathElement) -> bool {
        self.members.contains(element) || self.children.contains_key(element)
    }

    /// The paths of both sets.
    #[must_use]
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut union = self.clone();
        union.extend(other);
        union
    }

    /// Adds the paths of `other`.
    fn extend(&mut self, other: &FieldSet) {
        self.members.extend(other.members.iter().cloned());
        for (element, child) in &other.children {
            self.children
                .entry(element.clone())
                .or_default()
                .extend(child);
        }
    }

    /// The paths of this set that `other` does not hold.
    #[must_use]
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(element, child)| {
                let rest = match other.children.get(element) {
                    Some(theirs) => child.difference(theirs),
                    None => child.clone(),
                };
                (!rest.is_empty()).then(|| (element.clone(), rest))
            })
            .collect();
        FieldSet { members, children }
    }

    /// The paths both sets hold.
    #[must_use]
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.intersection(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(element, child)| {
                let both = child.intersection(other.children.get(element)?);
                (!both.is_empty()).then(|| (element.clone(), both))
            })
            .collect();
        FieldSet { members, children }
    }

    /// The paths of the set, in order (a path before the paths below it).
    pub fn paths(&self) -> Vec<FieldPath> {
        let mut paths = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut paths);
        paths
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, paths: &mut Vec<FieldPath>) {
        let elements: BTreeSet<&PathElement> =
            self.members.iter().chain(self.children.keys()).collect();
        for element in elements {
            prefix.push(element.clone());
            if self.members.contains(element) {
                paths.push(FieldPath(prefix.clone()));
            }
            if let Some(child) = self.children.get(element) {
                child.collect_paths(prefix, paths);
            }
            prefix.pop();
        }
    }

    /// The set in Kubernetes' `fieldsV1` form: an object whose keys are path elements (`f:name`,
    /// `k:{"name":"web"}`, `v:"x"`, `i:0`), `{}` for a path that ends there, and an object of
    /// the paths below for one that goes on, with `".": {}` when the path also ends there.
    pub fn to_fields_v1(&self) -> Value {
        let mut object = Map::new();
        for element in &self.members {
            object.insert(element.fields_v1_key(), json!({}));
        }
        for (element, child) in &self.children {
            let mut below = match child.to_fields_v1() {
                Value::Object(below) => below,
                _ => Map::new(),
            };
            if self.members.contains(element) {
                below.insert(".".to_owned(), json!({}));
            }
            object.insert(element.fields_v1_key(), Value::Object(below));
        }
        Value::Object(object)
    }

    /// Reads a set in the `fieldsV1` form (see [`FieldSet::to_fields_v1`]).
    pub fn from_fields_v1(fields: &Value) -> Result<FieldSet, ApplyError> {
        check_depth(fields, "object")?;
        FieldSet::read_fields_v1(fields).map_err(|reason| ApplyError::Invalid {
            reason: format!("invalid fieldsV1: {reason}"),
        })
    }

    fn read_fields_v1(fields: &Value) -> Result<FieldSet, String> {
        let Value::Object(object) = fields else {
            return Err("the value of a path element must be an object".to_owned());
        };
        let mut set = FieldSet::new();
        for (key, below) in object {
            if key == "." {
                continue;
            }
            let element = PathElement::from_fields_v1_key(key)?;
            let child = FieldSet::read_fields_v1(below)?;
            let ends_here = below
                .as_object()
                .is_some_and(|below| below.is_empty() || below.contains_key("."));
            if ends_here {
                set.members.insert(element.clone());
            }
            if !child.is_empty() {
                set.children.insert(element, child);
            }
        }
        Ok(set)
    }
}

/// The operation through which a manager came to own its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ManagedFieldsOperation {
    /// Server-side apply: the fields of the manager's last applied configuration.
    Apply,
    /// An ordinary write (create, update, patch): the fields the manager changed.
    Update,
}

impl ManagedFieldsOperation {
    /// The operation as `managedFields` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ManagedFieldsOperation::Apply => "Apply",
            ManagedFieldsOperation::Update => "Update",
        }
    }
}

/// One entry of `metadata.managedFields`: the fields a manager owns through one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldOwner {
    /// The manager's name (`kubectl`, a controller's name).
    pub manager: String,
    /// How it came to own them.
    pub operation: ManagedFieldsOperation,
    /// The API version of the object it wrote (`apps/v1`).
    pub api_version: String,
    /// The subresource written (`status`), if not the main resource.
    pub subresource: Option<String>,
    /// When its fields last changed, in RFC 3339 (`2024-05-01T12:00:00Z`).
    pub time: Option<String>,
    /// The fields it owns.
    pub fields: FieldSet,
}

impl FieldOwner {
    /// Whether two entries are those of one manager: the same name, operation and subresource
    /// and, for updates, the same API version (as Kubernetes identifies managers).
    fn same_manager(&self, other: &FieldOwner) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == ManagedFieldsOperation::Apply
                || self.api_version == other.api_version)
    }

    /// The manager as conflict messages name it: `"kubectl"` for an applier, `"kubectl" using
    /// apps/v1` for an updater, with `with subresource "status"` for a subresource.
    pub fn describe(&self) -> String {
        let mut text = Value::String(self.manager.clone()).to_string();
        if let Some(subresource) = &self.subresource {
            text.push_str(&format!(
                " with subresource {}",
                Value::String(subresource.clone())
            ));
        }
        if self.operation == ManagedFieldsOperation::Update {
            text.push_str(&format!(" using {}", self.api_version));
        }
        text
    }

    fn decode(entry: &Value) -> Option<FieldOwner> {
        let text = |field: &str| entry.get(field).and_then(Value::as_str);
        let operation = match text("operation")? {
            "Apply" => ManagedFieldsOperation::Apply,
            "Update" => ManagedFieldsOperation::Update,
            _ => return None,
        };
        if text("fieldsType").is_some_and(|kind| kind != FIELDS_V1) {
            return None;
        }
        let fields = match entry.get("fieldsV1") {
            Some(fields) if !fields.is_null() => FieldSet::from_fields_v1(fields).ok()?,
            _ => FieldSet::new(),
        };
        Some(FieldOwner {
            manager: text("manager")?.to_owned(),
            operation,
            api_version: text("apiVersion").unwrap_or_default().to_owned(),
            subresource: text("subresource")
                .filter(|subresource| !subresource.is_empty())
                .map(str::to_owned),
            time: text("time").map(str::to_owned),
            fields,
        })
    }

    fn encode(&self) -> Value {
        let mut entry = Map::new();
        entry.insert("apiVersion".into(), json!(self.api_version));
        entry.insert("fieldsType".into(), json!(FIELDS_V1));
        entry.insert("fieldsV1".into(), self.fields.to_fields_v1());
        entry.insert("manager".into(), json!(self.manager));
        entry.insert("operation".into(), json!(self.operation.as_str()));
        if let Some(subresource) = &self.subresource {
            entry.insert("subresource".into(), json!(subresource));
        }
        if let Some(time) = &self.time {
            entry.insert("time".into(), json!(time));
        }
        Value::Object(entry)
    }
}

/// The entries of an object's `metadata.managedFields`. Entries that cannot be read (an unknown
/// operation or `fieldsType`, a malformed `fieldsV1`) are left out, as Kubernetes resets what it
/// cannot decode; entries of one manager are merged.
pub fn managed_fields(object: &Value) -> Vec<FieldOwner> {
    let entries = object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut owners: Vec<FieldOwner> = Vec::new();
    for owner in entries.iter().filter_map(FieldOwner::decode) {
        match owners.iter_mut().find(|known| known.same_manager(&owner)) {
            Some(known) => known.fields.extend(&owner.fields),
            None => owners.push(owner),
        }
    }
    owners
}

/// Writes the entries into `metadata.managedFields`, sorted as Kubernetes sorts them (appliers
/// first, then by time, manager, API version and subresource), leaving out managers that own
/// nothing, and removing the field when none is left.
fn set_managed_fields(object: &mut Value, mut owners: Vec<FieldOwner>) {
    owners.retain(|owner| !owner.fields.is_empty());
    owners.sort_by(|a, b| {
        (
            a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    let Value::Object(members) = object else {
        return;
    };
    if owners.is_empty() {
        if let Some(Value::Object(metadata)) = members.get_mut("metadata") {
            metadata.remove("managedFields");
        }
        return;
    }
    let metadata = members.entry("metadata").or_insert_with(|| json!({}));
    if !metadata.is_object() {
        *metadata = json!({});
    }
    if let Value::Object(metadata) = metadata {
        let entries = owners.iter().map(FieldOwner::encode).collect();
        metadata.insert("managedFields".into(), Value::Array(entries));
    }
}

/// A field another manager owns that an apply would change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The owner, as [`FieldOwner::describe`] names it (`"kubectl" using apps/v1`).
    pub manager: String,
    /// The field.
    pub path: FieldPath,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conflict with {}", self.manager)
    }
}

/// Kubernetes' message for conflicts: `Apply failed with 1 conflict: conflict with "m" using
/// apps/v1: .spec.replicas`, or, for several, one line per field under each manager.
fn conflicts_message(conflicts: &[Conflict]) -> String {
    if let [conflict] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            conflict.manager, conflict.path
        );
    }
    let mut by_manager: BTreeMap<&str, Vec<&FieldPath>> = BTreeMap::new();
    for conflict in conflicts {
        by_manager
            .entry(&conflict.manager)
            .or_default()
            .push(&conflict.path);
    }
    let mut lines = Vec::new();
    for (manager, paths) in by_manager {
        lines.push(format!("conflicts with {manager}:"));
        lines.extend(paths.into_iter().map(|path| format!("- {path}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// Why an apply failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The apply would change fields other managers own (409 Conflict); the conflicts are sorted
    /// by manager, then by path.
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The configuration, or a `fieldsV1` read, is malformed (400 Bad Request): not an object,
    /// without `apiVersion` or `kind`, with `metadata.managedFields`, with an item of an
    /// associative list that lacks its key, with two items of one key.
    #[error("{reason}")]
    Invalid {
        /// What is wrong.
        reason: String,
    },
    /// The configuration or the object nests deeper than [`MAX_DEPTH`](super::MAX_DEPTH) levels.
    #[error(transparent)]
    Patch(#[from] PatchError),
}

impl ApplyError {
    /// The HTTP status Kubernetes answers this error with: 409 for conflicts, 400 for a malformed
    /// configuration, as [`PatchError::code`] otherwise.
    pub fn code(&self) -> u16 {
        match self {
            ApplyError::Conflicts(_) => 409,
            ApplyError::Invalid { .. } => 400,
            ApplyError::Patch(error) => error.code(),
        }
    }

    /// The `reason` of the `Status`: `Conflict`, `BadRequest`, or as [`PatchError::reason`].
    pub fn reason(&self) -> &'static str {
        match self {
            ApplyError::Conflicts(_) => "Conflict",
            ApplyError::Invalid { .. } => "BadRequest",
            ApplyError::Patch(error) => error.reason(),
        }
    }
}

/// Which part of the object a write may change, and so which fields count for ownership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    /// The main resource: everything but `status`.
    Main,
    /// The status subresource: `status` only.
    Status,
}

/// The server-set metadata no manager owns.
const SERVER_METADATA: [&str; 11] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "managedFields",
    "clusterName",
];

/// Whether the field `name` of the object at `parent` is left out of field ownership.
fn ignored(scope: Scope, parent: &[PathElement], name: &str) -> bool {
    match parent {
        [] => match scope {
            Scope::Main => matches!(name, "apiVersion" | "kind" | "status"),
            Scope::Status => name != "status",
        },
        [PathElement::Field(metadata)] if metadata == "metadata" => SERVER_METADATA.contains(&name),
        _ => false,
    }
}

/// Adds a leaf path, unless it is `metadata` itself, which no manager owns.
fn insert_leaf(set: &mut FieldSet, path: &[PathElement]) {
    if !matches!(path, [PathElement::Field(name)] if name == "metadata") {
        set.insert(path);
    }
}

/// How a list is merged and owned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListKind<'k> {
    /// Items are objects identified by a key field.
    Associative(&'k str),
    /// Items are distinct primitives.
    Set,
    /// The list is one value.
    Atomic,
}

/// The kind of the lists at a place of the schema, given the lists found there: a declared
/// associative list or set whose items are not of the right type is atomic.
fn list_kind<'k>(schema: SchemaCursor<'k>, lists: &[&[Value]]) -> ListKind<'k> {
    let strategy = schema.strategy();
    if strategy.strategy != Some(PatchStrategy::Merge) {
        return ListKind::Atomic;
    }
    let mut items = lists.iter().flat_map(|list| list.iter());
    match strategy.merge_key.as_deref() {
        Some(key) if items.all(Value::is_object) => ListKind::Associative(key),
        None if items.all(|item| !item.is_object() && !item.is_array()) => ListKind::Set,
        _ => ListKind::Atomic,
    }
}

/// The items of an associative list by key, the first of each key; items without one are left
/// out.
fn keyed<'v>(items: &'v [Value], key: &str) -> BTreeMap<PathElement, &'v Value> {
    let mut keyed = BTreeMap::new();
    for item in items {
        if let Some(element) = PathElement::of_item(item, key) {
            keyed.entry(element).or_insert(item);
        }
    }
    keyed
}

/// Adds the fields `value` sets, at `path`, to `set`.
fn collect(
    value: &Value,
    schema: SchemaCursor<'_>,
    scope: Scope,
    path: &mut Vec<PathElement>,
    set: &mut FieldSet,
) {
    match value {
        Value::Object(members) => {
            for (name, member) in members {
                if ignored(scope, path, name) {
                    continue;
                }
                path.push(PathElement::Field(name.clone()));
                collect(member, schema.child(name), scope, path, set);
                path.pop();
            }
        }
        Value::Array(items) => match list_kind(schema, &[items]) {
            ListKind::Associative(key) => {
                for (element, item) in keyed(items, key) {
                    path.push(element);
                    set.insert(path);
                    collect(item, schema, scope, path, set);
                    path.pop();
                }
            }
            ListKind::Set => {
                for item in items {
                    path.push(PathElement::of_value(item));
                    set.insert(path);
                    path.pop();
                }
            }
            ListKind::Atomic => insert_leaf(set, path),
        },
        _ => insert_leaf(set, path),
    }
}

/// The fields an applied configuration sets (and that its applier comes to own): its leaves,
/// the items of its associative lists and sets, leaving out the fields the server sets (see the
/// [module documentation](super)) and `status`.
pub fn field_set(config: &Value, merge_keys: Option<&MergeKeys>) -> FieldSet {
    let mut set = FieldSet::new();
    if check_depth(config, "object").is_ok() {
        collect(
            config,
            SchemaCursor::root(merge_keys),
            Scope::Main,
            &mut Vec::new(),
            &mut set,
        );
    }
    set
}

/// What changed between two versions of an object (Kubernetes' `typed.Comparison`).
#[derive(Debug, Default)]
struct Comparison {
    /// Paths only the new version has.
    added: FieldSet,
    /// Leaves both have, with different values.
    modified: FieldSet,
    /// Paths only the old version has.
    removed: FieldSet,
}

impl Comparison {
    fn new(old: &Value, new: &Value, schema: SchemaCursor<'_>, scope: Scope) -> Comparison {
        let mut comparison = Comparison::default();
        comparison.compare(Some(old), Some(new), schema, scope, &mut Vec::new());
        comparison
    }

    /// The paths a write set: added or modified.
    fn changed(&self) -> FieldSet {
        self.added.union(&self.modified)
    }

    fn compare(
        &mut self,
        old: Option<&Value>,
        new: Option<&Value>,
        schema: SchemaCursor<'_>,
        scope: Scope,
        path: &mut Vec<PathElement>,
    ) {
        let (old, new) = match (old, new) {
            (None, None) => return,
            (None, Some(new)) => return collect(new, schema, scope, path, &mut self.added),
            (Some(old), None) => return collect(old, schema, scope, path, &mut self.removed),
            (Some(old), Some(new)) => (old, new),
        };
        match (old, new) {
            (Value::Object(before), Value::Object(after)) => {
                let names = before
                    .keys()
                    .chain(after.keys().filter(|name| !before.contains_key(*name)));
                for name in names {
                    if ignored(scope, path, name) {
                        continue;
                    }
                    path.push(PathElement::Field(name.clone()));
                    self.compare(
                        before.get(name),
                        after.get(name),
                        schema.child(name),
                        scope,
                        path,
                    );
                    path.pop();
                }
            }
            (Value::Array(before), Value::Array(after)) => {
                match list_kind(schema, &[before, after]) {
                    ListKind::Associative(key) => {
                        let before = keyed(before, key);
                        let after = keyed(after, key);
                        for (element, item) in &before {
                            path.push(element.clone());
                            match after.get(element) {
                                Some(new) => {
                                    self.compare(Some(item), Some(new), schema, scope, path);
                                }
                                None => {
                                    self.removed.insert(path);
                                    collect(item, schema, scope, path, &mut self.removed);
                                }
                            }
                            path.pop();
                        }
                        for (element, item) in after {
                            if before.contains_key(&element) {
                                continue;
                            }
                            path.push(element);
                            self.added.insert(path);
                            collect(item, schema, scope, path, &mut self.added);
                            path.pop();
                        }
                    }
                    ListKind::Set => {
                        let before: BTreeSet<PathElement> =
                            before.iter().map(PathElement::of_value).collect();
                        let after: BTreeSet<PathElement> =
                            after.iter().map(PathElement::of_value).collect();
                        for element in before.difference(&after) {
                            path.push(element.clone());
                            self.removed.insert(path);
                            path.pop();
                        }
                        for element in after.difference(&before) {
                            path.push(element.clone());
                            self.added.insert(path);
                            path.pop();
                        }
                    }
                    ListKind::Atomic => {
                        if !json_equal(old, new) {
                            insert_leaf(&mut self.modified, path);
                        }
                    }
                }
            }
            _ => {
                // Leaves, or values whose shape changed: what each sets, and the path itself
                // modified when both end there with different values.
                let mut before = FieldSet::new();
                collect(old, schema, scope, path, &mut before);
                let mut after = FieldSet::new();
                collect(new, schema, scope, path, &mut after);
                if before.contains(path) && after.contains(path) && !json_equal(old, new) {
                    insert_leaf(&mut self.modified, path);
                }
                self.removed.extend(&before.difference(&after));
                self.added.extend(&after.difference(&before));
            }
        }
    }
}

/// Merges an applied configuration into an object (Kubernetes' `typed.Merge`).
fn merge(live: &mut Value, config: &Value, schema: SchemaCursor<'_>) {
    match (live, config) {
        (Value::Object(live), Value::Object(config)) => {
            for (name, value) in config {
                match live.get_mut(name) {
                    Some(existing) => merge(existing, value, schema.child(name)),
                    None => {
                        live.insert(name.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(live), Value::Array(config)) => match list_kind(schema, &[live, config]) {
            ListKind::Associative(key) => {
                let mut positions: HashMap<PathElement, usize> = HashMap::new();
                for (position, item) in live.iter().enumerate() {
                    if let Some(element) = PathElement::of_item(item, key) {
                        positions.entry(element).or_insert(position);
                    }
                }
                for item in config {
                    let position = PathElement::of_item(item, key)
                        .and_then(|element| positions.get(&element).copied());
                    match position.and_then(|position| live.get_mut(position)) {
                        Some(existing) => merge(existing, item, schema),
                        None => live.push(item.clone()),
                    }
                }
            }
            ListKind::Set => {
                let mut present: HashSet<PathElement> =
                    live.iter().map(PathElement::of_value).collect();
                for item in config {
                    if present.insert(PathElement::of_value(item)) {
                        live.push(item.clone());
                    }
                }
            }
            ListKind::Atomic => live.clone_from(config),
        },
        (live, config) => live.clone_from(config),
    }
}

/// Whether a value is an empty object or list.
fn is_empty_container(value: &Value) -> bool {
    match value {
        Value::Object(members) => members.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// Removes from `value` the paths of `remove` that `keep` (the fields some manager owns) does not
/// hold at or below them, and the objects and lists this empties. The key field of a kept item of
/// an associative list stays (`key`).
fn prune(
    value: &mut Value,
    remove: &FieldSet,
    keep: Option<&FieldSet>,
    schema: SchemaCursor<'_>,
    key: Option<&str>,
) {
    let kept = |element: &PathElement| keep.is_some_and(|keep| keep.owns(element));
    let kept_member =
        |element: &PathElement| keep.is_some_and(|keep| keep.members.contains(element));
    let elements: BTreeSet<&PathElement> = remove
        .members
        .iter()
        .chain(remove.children.keys())
        .collect();
    match value {
        Value::Object(members) => {
            for element in elements {
                let PathElement::Field(name) = element else {
                    continue;
                };
                if key == Some(name.as_str()) {
                    continue;
                }
                if remove.members.contains(element) && !kept(element) {
                    members.remove(name);
                    continue;
                }
                let (Some(below), Some(child)) =
                    (remove.children.get(element), members.get_mut(name))
                else {
                    continue;
                };
                let was_empty = is_empty_container(child);
                let keep_below = keep.and_then(|keep| keep.children.get(element));
                prune(child, below, keep_below, schema.child(name), None);
                if !was_empty && is_empty_container(child) && !kept_member(element) {
                    members.remove(name);
                }
            }
        }
        Value::Array(items) => {
            let kind = list_kind(schema, &[items]);
            for element in elements {
                let matches = |item: &Value| match (element, kind) {
                    (PathElement::Key(_), ListKind::Associative(key)) => {
                        PathElement::of_item(item, key).as_ref() == Some(element)
                    }
                    (PathElement::Value(_), ListKind::Set) => {
                        &PathElement::of_value(item) == element
                    }
                    _ => false,
                };
                if remove.members.contains(element) && !kept(element) {
                    items.retain(|item| !matches(item));
                    continue;
                }
                let (Some(below), ListKind::Associative(key)) =
                    (remove.children.get(element), kind)
                else {
                    continue;
                };
                let keep_below = keep.and_then(|keep| keep.children.get(element));
                if let Some(item) = items.iter_mut().find(|item| matches(item)) {
                    prune(item, below, keep_below, schema, Some(key));
                }
            }
        }
        _ => {}
    }
}

/// Removes `null` members from the objects of an applied configuration: in an apply, a field set
/// to `null` is a field left out. Then checks its associative lists and sets: every item of an
/// associative list must have its key, and no two items one key; no value twice in a set.
fn clean_config(
    config: &mut Value,
    schema: SchemaCursor<'_>,
    path: &mut Vec<PathElement>,
) -> Result<(), String> {
    match config {
        Value::Object(members) => {
            members.retain(|_, member| !member.is_null());
            for (name, member) in members.iter_mut() {
                path.push(PathElement::Field(name.clone()));
                clean_config(member, schema.child(name), path)?;
                path.pop();
            }
        }
        Value::Array(items) => {
            let strategy = schema.strategy();
            if strategy.strategy != Some(PatchStrategy::Merge) {
                return Ok(());
            }
            let at = FieldPath(path.clone());
            let mut seen = HashSet::new();
            match strategy.merge_key.as_deref() {
                Some(key) => {
                    for (index, item) in items.iter_mut().enumerate() {
                        if let Value::Object(members) = item {
                            members.retain(|_, member| !member.is_null());
                        }
                        let Some(element) = PathElement::of_item(item, key) else {
                            return Err(format!(
                                "{at}: element {index}: associative list with keys has an element that omits key field {}",
                                Value::String(key.to_owned())
                            ));
                        };
                        if !seen.insert(element.clone()) {
                            return Err(format!("{at}: duplicate entries for key {element}"));
                        }
                        path.push(element);
                        clean_config(item, schema, path)?;
                        path.pop();
                    }
                }
                None if items
                    .iter()
                    .all(|item| !item.is_object() && !item.is_array()) =>
                {
                    for item in items.iter() {
                        let element = PathElement::of_value(item);
                        if !seen.insert(element.clone()) {
                            return Err(format!("{at}: duplicate entries for key {element}"));
                        }
                    }
                }
                None => {}
            }
        }
        _ => {}
    }
    Ok(())
}

/// Applies a configuration for a manager (server-side apply), returning the new object with its
/// `metadata.managedFields`; see the [module documentation](super).
///
/// `live` is the stored object, `None` to create one from the configuration. The configuration
/// must be an object with `apiVersion` and `kind`, without `metadata.managedFields`; its `null`
/// fields are left out. `merge_keys` describes the kind's lists ([`MergeKeys::for_kind`]); without
/// it every list is atomic. `time` is the time to record for the applier (RFC 3339, as
/// Kubernetes writes `metav1.Time`: `2024-05-01T12:00:00Z`).
///
/// Fails with [`ApplyError::Conflicts`] when the apply changes fields other managers own and
/// `force` is false; with `force`, the applier takes them. When the apply changes neither the
/// object nor what the applier owns, the live object comes back as it was, its times included.
///
/// # Examples
///
/// ```
/// use orchestra_core::patch::{ApplyError, MergeKeys, server_side_apply};
/// use serde_json::json;
///
/// let keys = MergeKeys::for_kind("v1", "ConfigMap");
/// let config = json!({
///     "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
///     "data": {"a": "1", "b": "2"},
/// });
/// let live = server_side_apply(None, config, "ci", false, keys.as_ref(), "2024-05-01T12:00:00Z")?;
///
/// // Applying without `b` removes it: "ci" no longer sets it, and nobody else owns it.
/// let config = json!({
///     "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
///     "data": {"a": "1"},
/// });
/// let applied =
///     server_side_apply(Some(&live), config, "ci", false, keys.as_ref(), "2024-05-01T12:01:00Z")?;
/// assert_eq!(applied["data"], json!({"a": "1"}));
/// assert_eq!(applied["metadata"]["managedFields"][0]["time"], "2024-05-01T12:01:00Z");
/// # Ok::<(), ApplyError>(())
/// ```
pub fn server_side_apply(
    live: Option<&Value>,
    mut config: Value,
    manager: &str,
    force: bool,
    merge_keys: Option<&MergeKeys>,
    time: &str,
) -> Result<Value, ApplyError> {
    check_depth(&config, "patch")?;
    if let Some(live) = live {
        check_depth(live, "object")?;
    }
    let schema = SchemaCursor::root(merge_keys);
    let invalid = |reason: String| ApplyError::Invalid { reason };
    if !config.is_object() {
        return Err(invalid(
            "an apply configuration must be a JSON object".to_owned(),
        ));
    }
    let text = |field: &str| {
        config
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let (api_version, kind) = (text("apiVersion").to_owned(), text("kind").to_owned());
    if api_version.is_empty() {
        return Err(invalid(
            "apiVersion must be set in the apply configuration".to_owned(),
        ));
    }
    if kind.is_empty() {
        return Err(invalid(
            "kind must be set in the apply configuration".to_owned(),
        ));
    }
    if config
        .pointer("/metadata/managedFields")
        .is_some_and(|fields| !fields.is_null())
    {
        return Err(invalid("metadata.managedFields must be nil".to_owned()));
    }
    clean_config(&mut config, schema, &mut Vec::new()).map_err(|reason| {
        invalid(format!(
            "failed to create typed patch object ({api_version}, Kind={kind}): {reason}"
        ))
    })?;

    let before = live.cloned().unwrap_or_else(|| json!({}));
    let mut owners = managed_fields(&before);
    let mut merged = before.clone();
    merge(&mut merged, &config, schema);
    let applied = field_set(&config, merge_keys);
    let me = FieldOwner {
        manager: manager.to_owned(),
        operation: ManagedFieldsOperation::Apply,
        api_version: api_version.clone(),
        subresource: None,
        time: Some(time.to_owned()),
        fields: applied.clone(),
    };

    // Fields other managers own that the apply changes are conflicts, or theirs no more.
    let comparison = Comparison::new(&before, &merged, schema, Scope::Main);
    let changed = comparison.changed();
    let mut conflicts = Vec::new();
    for owner in owners.iter_mut().filter(|owner| !owner.same_manager(&me)) {
        let taken = owner.fields.intersection(&changed);
        if taken.is_empty() {
            continue;
        }
        conflicts.extend(taken.paths().into_iter().map(|path| Conflict {
            manager: owner.describe(),
            path,
        }));
        owner.fields = owner.fields.difference(&taken);
    }
    if !conflicts.is_empty() && !force {
        conflicts.sort_by(|a, b| match a.manager.cmp(&b.manager) {
            Ordering::Equal => a.path.cmp(&b.path),
            order => order,
        });
        return Err(ApplyError::Conflicts(conflicts));
    }
    for owner in &mut owners {
        owner.fields = owner.fields.difference(&comparison.removed);
    }

    // What the applier applied last time and applies no more goes, unless someone owns it.
    let last = match owners.iter().position(|owner| owner.same_manager(&me)) {
        Some(position) => {
            let previous = owners.remove(position);
            Some(previous)
        }
        None => None,
    };
    let previous_time = last.as_ref().and_then(|last| last.time.clone());
    let last_fields = last.map(|last| last.fields).unwrap_or_default();
    owners.push(me);
    let mut keep = FieldSet::new();
    for owner in &owners {
        keep.extend(&owner.fields);
    }
    let remove = last_fields.difference(&keep);
    if !remove.is_empty() {
        prune(&mut merged, &remove, Some(&keep), schema, None);
    }

    // A no-op keeps the applier's time, and the live object as it was.
    if let Some(live) = live {
        let mut unchanged = merged.clone();
        let mut same_owners = owners.clone();
        if let Some(me) = same_owners.last_mut() {
            me.time = previous_time;
        }
        set_managed_fields(&mut unchanged, same_owners);
        if json_equal(&unchanged, live) {
            return Ok(live.clone());
        }
    }
    set_managed_fields(&mut merged, owners);
    Ok(merged)
}

/// Records the fields an ordinary write (create, update, patch; not an apply) changed as owned by
/// its manager, with the operation `Update`, returning `new` with its `metadata.managedFields`
/// updated.
///
/// `old` is the stored object (`None` for a create: every field the new object sets is the
/// manager's). The managers come from `new`'s `metadata.managedFields` when it has them, from
/// `old`'s otherwise. The fields the write set (added or changed) move to `manager` from
/// whoever owned them, and the fields it removed are nobody's any more; the manager's time
/// changes only when it takes fields. Without a manager the write only forgets the fields it
/// removed. `subresource` is the subresource written (`status`: only the status counts).
///
/// Nothing here fails: items of associative lists without their key are nobody's, and an object
/// too deep to walk comes back unchanged.
///
/// # Examples
///
/// ```
/// use orchestra_core::patch::{MergeKeys, managed_fields, record_update, server_side_apply};
/// use serde_json::json;
///
/// let keys = MergeKeys::for_kind("apps/v1", "Deployment");
/// let config = json!({
///     "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
///     "spec": {"replicas": 3, "paused": false},
/// });
/// let live = server_side_apply(None, config, "ci", false, keys.as_ref(), "2024-05-01T12:00:00Z")
///     .unwrap_or_default();
///
/// // `kubectl scale` takes the replicas.
/// let mut scaled = live.clone();
/// scaled["spec"]["replicas"] = json!(5);
/// let scaled = record_update(
///     Some(&live), scaled, Some("kubectl"), None, keys.as_ref(), "2024-05-01T12:05:00Z",
/// );
/// let owners = managed_fields(&scaled);
/// assert_eq!(owners[0].fields.to_fields_v1(), json!({"f:spec": {"f:paused": {}}}));
/// assert_eq!(owners[1].describe(), r#""kubectl" using apps/v1"#);
/// assert_eq!(owners[1].fields.to_fields_v1(), json!({"f:spec": {"f:replicas": {}}}));
/// ```
pub fn record_update(
    old: Option<&Value>,
    mut new: Value,
    manager: Option<&str>,
    subresource: Option<&str>,
    merge_keys: Option<&MergeKeys>,
    time: &str,
) -> Value {
    let has_managed_fields = new
        .pointer("/metadata/managedFields")
        .is_some_and(|fields| !fields.is_null());
    let mut owners = match (has_managed_fields, old) {
        (true, _) => managed_fields(&new),
        (false, Some(old)) => managed_fields(old),
        (false, None) => Vec::new(),
    };
    if manager.is_none() && owners.is_empty() {
        return new;
    }
    let empty = json!({});
    let old = old.unwrap_or(&empty);
    if check_depth(old, "object").is_err() || check_depth(&new, "object").is_err() {
        return new;
    }
    let scope = match subresource {
        Some("status") => Scope::Status,
        _ => Scope::Main,
    };
    let comparison = Comparison::new(old, &new, SchemaCursor::root(merge_keys), scope);
    let changed = comparison.changed();
    let me = manager.map(|manager| FieldOwner {
        manager: manager.to_owned(),
        operation: ManagedFieldsOperation::Update,
        api_version: new
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        subresource: subresource.map(str::to_owned),
        time: Some(time.to_owned()),
        fields: changed.clone(),
    });
    for owner in &mut owners {
        let mine = me.as_ref().is_some_and(|me| owner.same_manager(me));
        owner.fields = owner.fields.difference(&comparison.removed);
        if mine {
            if !changed.is_empty() {
                owner.fields.extend(&changed);
                owner.time = Some(time.to_owned());
            }
        } else if me.is_some() {
            owner.fields = owner.fields.difference(&changed);
        }
    }
    if let Some(me) = me
        && !changed.is_empty()
        && !owners.iter().any(|owner| owner.same_manager(&me))
    {
        owners.push(me);
    }
    set_managed_fields(&mut new, owners);
    new
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const T0: &str = "2024-05-01T12:00:00Z";
    const T1: &str = "2024-05-01T12:01:00Z";
    const T2: &str = "2024-05-01T12:02:00Z";

    fn deployment_keys() -> Option<MergeKeys> {
        MergeKeys::for_kind("apps/v1", "Deployment")
    }

    fn deployment(spec: Value) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": spec,
        })
    }

    fn apply(live: Option<&Value>, config: Value, manager: &str, force: bool) -> Value {
        let keys = deployment_keys();
        match server_side_apply(live, config, manager, force, keys.as_ref(), T1) {
            Ok(object) => object,
            Err(error) => panic!("the apply failed: {error}"),
        }
    }

    fn apply_error(live: &Value, config: Value, manager: &str) -> ApplyError {
        let keys = deployment_keys();
        match server_side_apply(Some(live), config, manager, false, keys.as_ref(), T2) {
            Ok(object) => panic!("the apply succeeded: {object}"),
            Err(error) => error,
        }
    }

    /// `(manager, operation, fieldsV1)` of every entry.
    fn owners(object: &Value) -> Vec<(String, &'static str, Value)> {
        managed_fields(object)
            .into_iter()
            .map(|owner| {
                let fields = owner.fields.to_fields_v1();
                (owner.manager, owner.operation.as_str(), fields)
            })
            .collect()
    }

    fn container(name: &str, image: &str) -> Value {
        json!({"name": name, "image": image})
    }

    fn with_containers(replicas: i64, containers: Value) -> Value {
        deployment(json!({
            "replicas": replicas,
            "template": {"spec": {"containers": containers}},
        }))
    }

    #[test]
    fn apply_creates_the_object_and_records_its_fields() {
        let config = deployment(json!({
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "web:1", "ports": [{"containerPort": 80}]}]},
            },
        }));
        let created = apply(None, config.clone(), "kubectl", false);
        let mut expected = config;
        expected["metadata"]["managedFields"] = json!([{
            "apiVersion": "apps/v1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {
                "f:replicas": {},
                "f:selector": {"f:matchLabels": {"f:app": {}}},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                        ".": {},
                        "f:image": {},
                        "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80}": {".": {}, "f:containerPort": {}}},
                    }}},
                },
            }},
            "manager": "kubectl",
            "operation": "Apply",
            "time": T1,
        }]);
        assert_eq!(created, expected);
    }

    #[test]
    fn reapplying_removes_the_fields_no_longer_applied() {
        let mut config = deployment(json!({"replicas": 3, "paused": true, "minReadySeconds": 5}));
        config["metadata"]["labels"] = json!({"app": "web"});
        let live = apply(None, config, "kubectl", false);
        let mut live = record_update(Some(&live), live.clone(), None, None, None, T1);
        // A field nobody applied stays.
        live["spec"]["revisionHistoryLimit"] = json!(10);

        let applied = apply(
            Some(&live),
            deployment(json!({"replicas": 4})),
            "kubectl",
            false,
        );
        assert_eq!(
            applied["spec"],
            json!({"replicas": 4, "revisionHistoryLimit": 10})
        );
        // The labels emptied went with their last label.
        assert_eq!(applied["metadata"].get("labels"), None);
        assert_eq!(
            owners(&applied),
            [(
                "kubectl".to_owned(),
                "Apply",
                json!({"f:spec": {"f:replicas": {}}})
            )]
        );
    }

    #[test]
    fn two_managers_share_a_field_applied_to_the_same_value() {
        let live = apply(
            None,
            deployment(json!({"replicas": 3, "paused": true})),
            "a",
            false,
        );
        // The same value is no conflict: both own it.
        let shared = apply(Some(&live), deployment(json!({"replicas": 3})), "b", false);
        assert_eq!(
            owners(&shared),
            [
                (
                    "a".to_owned(),
                    "Apply",
                    json!({"f:spec": {"f:paused": {}, "f:replicas": {}}})
                ),
                (
                    "b".to_owned(),
                    "Apply",
                    json!({"f:spec": {"f:replicas": {}}})
                ),
            ]
        );
        // "a" lets go of the replicas: they stay, "b" owns them still; the paused flag goes.
        let released = apply(Some(&shared), deployment(json!({})), "a", false);
        assert_eq!(released["spec"], json!({"replicas": 3}));
        assert_eq!(
            owners(&released),
            [(
                "b".to_owned(),
                "Apply",
                json!({"f:spec": {"f:replicas": {}}})
            )]
        );
    }

    #[test]
    fn changing_a_field_another_manager_owns_is_a_conflict() {
        let live = apply(
            None,
            with_containers(3, json!([container("web", "web:1")])),
            "ci",
            false,
        );
        let error = apply_error(&live, deployment(json!({"replicas": 5})), "hpa");
        assert_eq!(
            error.to_string(),
            r#"Apply failed with 1 conflict: conflict with "ci": .spec.replicas"#
        );
        assert_eq!((error.code(), error.reason()), (409, "Conflict"));

        let error = apply_error(
            &live,
            with_containers(5, json!([container("web", "web:2")])),
            "other",
        );
        assert_eq!(
            error.to_string(),
            "Apply failed with 2 conflicts: conflicts with \"ci\":\n- .spec.replicas\n- .spec.template.spec.containers[name=\"web\"].image"
        );
        let ApplyError::Conflicts(conflicts) = error else {
            panic!("not conflicts: {error:?}");
        };
        assert_eq!(conflicts[0].to_string(), r#"conflict with "ci""#);
        assert_eq!(
            conflicts[1].path.to_string(),
            r#".spec.template.spec.containers[name="web"].image"#
        );
    }

    #[test]
    fn conflicts_with_several_managers_are_listed_by_manager() {
        let live = apply(None, deployment(json!({"replicas": 3})), "b", false);
        let live = apply(Some(&live), deployment(json!({"paused": true})), "a", false);
        let error = apply_error(
            &live,
            deployment(json!({"replicas": 1, "paused": false})),
            "c",
        );
        assert_eq!(
            error.to_string(),
            "Apply failed with 2 conflicts: conflicts with \"a\":\n- .spec.paused\nconflicts with \"b\":\n- .spec.replicas"
        );
    }

    #[test]
    fn a_forced_apply_takes_the_fields() {
        let live = apply(
            None,
            deployment(json!({"replicas": 3, "paused": true})),
            "ci",
            false,
        );
        let taken = apply(Some(&live), deployment(json!({"replicas": 5})), "hpa", true);
        assert_eq!(taken["spec"], json!({"replicas": 5, "paused": true}));
        assert_eq!(
            owners(&taken),
            [
                (
                    "ci".to_owned(),
                    "Apply",
                    json!({"f:spec": {"f:paused": {}}})
                ),
                (
                    "hpa".to_owned(),
                    "Apply",
                    json!({"f:spec": {"f:replicas": {}}})
                ),
            ]
        );
        // "ci" applying its old configuration again conflicts with "hpa" now.
        let error = apply_error(
            &taken,
            deployment(json!({"replicas": 3, "paused": true})),
            "ci",
        );
        assert_eq!(
            error.to_string(),
            r#"Apply failed with 1 conflict: conflict with "hpa": .spec.replicas"#
        );
        // Without the replicas, "ci" leaves them to "hpa".
        let released = apply(
            Some(&taken),
            deployment(json!({"paused": true})),
            "ci",
            false,
        );
        assert_eq!(released["spec"], json!({"replicas": 5, "paused": true}));
    }

    #[test]
    fn associative_lists_merge_by_key() {
        let live = apply(
            None,
            with_containers(1, json!([container("web", "web:1")])),
            "a",
            false,
        );
        let sidecar = deployment(json!({
            "template": {"spec": {"containers": [
                {"name": "proxy", "image": "proxy:1"},
                {"name": "web", "image": "web:1", "args": ["-v"]},
            ]}},
        }));
        let both = apply(Some(&live), sidecar, "b", false);
        assert_eq!(
            both["spec"]["template"]["spec"]["containers"],
            json!([
                {"name": "web", "image": "web:1", "args": ["-v"]},
                {"name": "proxy", "image": "proxy:1"},
            ])
        );
        let b = json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
            "k:{\"name\":\"proxy\"}": {".": {}, "f:image": {}, "f:name": {}},
            "k:{\"name\":\"web\"}": {".": {}, "f:args": {}, "f:image": {}, "f:name": {}},
        }}}}});
        assert_eq!(owners(&both)[1], ("b".to_owned(), "Apply", b));

        // "a" drops its container: "b" owns it too, so it stays; "a"'s replicas go.
        let dropped = apply(Some(&both), deployment(json!({})), "a", false);
        assert_eq!(dropped["spec"].get("replicas"), None);
        assert_eq!(
            dropped["spec"]["template"]["spec"]["containers"],
            both["spec"]["template"]["spec"]["containers"]
        );
        // "b" drops the proxy: nobody else owns it, it goes.
        let config = deployment(json!({
            "template": {"spec": {"containers": [{"name": "web", "image": "web:1", "args": ["-v"]}]}},
        }));
        let pruned = apply(Some(&dropped), config, "b", false);
        assert_eq!(
            pruned["spec"]["template"]["spec"]["containers"],
            json!([{"name": "web", "image": "web:1", "args": ["-v"]}])
        );
    }

    #[test]
    fn a_dropped_item_stays_with_the_fields_others_own() {
        let live = apply(
            None,
            with_containers(1, json!([container("web", "web:1")])),
            "a",
            false,
        );
        let config = deployment(json!({
            "template": {"spec": {"containers": [{"name": "web", "args": ["-v"]}]}},
        }));
        let live = apply(Some(&live), config, "b", false);
        let dropped = apply(Some(&live), deployment(json!({"replicas": 1})), "a", false);
        assert_eq!(
            dropped["spec"]["template"]["spec"]["containers"],
            json!([{"name": "web", "args": ["-v"]}])
        );
    }

    #[test]
    fn sets_merge_by_value() {
        let keys = MergeKeys::for_kind("v1", "ConfigMap");
        let config = |finalizers: Value| {
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "c", "finalizers": finalizers},
            })
        };
        let live = server_side_apply(
            None,
            config(json!(["a", "b"])),
            "x",
            false,
            keys.as_ref(),
            T0,
        );
        let live = live.unwrap_or_default();
        let live = server_side_apply(
            Some(&live),
            config(json!(["c"])),
            "y",
            false,
            keys.as_ref(),
            T0,
        )
        .unwrap_or_default();
        assert_eq!(live["metadata"]["finalizers"], json!(["a", "b", "c"]));
        let live = server_side_apply(
            Some(&live),
            config(json!(["b"])),
            "x",
            false,
            keys.as_ref(),
            T0,
        )
        .unwrap_or_default();
        assert_eq!(live["metadata"]["finalizers"], json!(["b", "c"]));
        assert_eq!(
            owners(&live)[0].2,
            json!({"f:metadata": {"f:finalizers": {"v:\"b\"": {}}}})
        );
    }

    #[test]
    fn an_update_then_an_apply_of_its_field_conflicts() {
        // `kubectl create` (a client-side apply) owns everything it set.
        let created = record_update(
            None,
            deployment(json!({"replicas": 3, "paused": false})),
            Some("kubectl-client-side-apply"),
            None,
            deployment_keys().as_ref(),
            T0,
        );
        assert_eq!(
            owners(&created),
            [(
                "kubectl-client-side-apply".to_owned(),
                "Update",
                json!({"f:spec": {"f:paused": {}, "f:replicas": {}}})
            )]
        );
        let error = apply_error(&created, deployment(json!({"replicas": 5})), "kubectl");
        assert_eq!(
            error.to_string(),
            r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas"#
        );
        // `kubectl scale`, then `kubectl apply --server-side` of the replicas.
        let applied = apply(
            Some(&created),
            deployment(json!({"replicas": 3})),
            "kubectl",
            false,
        );
        let mut scaled = applied.clone();
        scaled["spec"]["replicas"] = json!(10);
        let scaled = record_update(
            Some(&applied),
            scaled,
            Some("kubectl"),
            None,
            deployment_keys().as_ref(),
            T2,
        );
        let error = apply_error(&scaled, deployment(json!({"replicas": 3})), "kubectl");
        assert_eq!(
            error.to_string(),
            r#"Apply failed with 1 conflict: conflict with "kubectl" using apps/v1: .spec.replicas"#
        );
    }

    #[test]
    fn a_no_op_apply_returns_the_live_object() {
        let live = apply(None, deployment(json!({"replicas": 3})), "kubectl", false);
        let keys = deployment_keys();
        let again = server_side_apply(
            Some(&live),
            deployment(json!({"replicas": 3})),
            "kubectl",
            false,
            keys.as_ref(),
            T2,
        );
        assert_eq!(again, Ok(live.clone()));
        let changed = apply(
            Some(&live),
            deployment(json!({"replicas": 4})),
            "kubectl",
            false,
        );
        assert_eq!(changed["metadata"]["managedFields"][0]["time"], T1);
    }

    #[test]
    fn nulls_in_a_configuration_are_fields_left_out() {
        let live = apply(
            None,
            deployment(json!({"replicas": 3, "paused": true})),
            "kubectl",
            false,
        );
        let applied = apply(
            Some(&live),
            deployment(json!({"replicas": 3, "paused": null})),
            "kubectl",
            false,
        );
        assert_eq!(applied["spec"], json!({"replicas": 3}));
    }

    #[test]
    fn malformed_configurations_are_refused() {
        let invalid = |config: Value| {
            let keys = deployment_keys();
            server_side_apply(None, config, "m", false, keys.as_ref(), T0)
                .err()
                .map(|error| (error.code(), error.to_string()))
        };
        assert_eq!(
            invalid(json!([])),
            Some((
                400,
                "an apply configuration must be a JSON object".to_owned()
            ))
        );
        assert_eq!(
            invalid(json!({"kind": "Deployment"})),
            Some((
                400,
                "apiVersion must be set in the apply configuration".to_owned()
            ))
        );
        let mut managed = deployment(json!({}));
        managed["metadata"]["managedFields"] = json!([]);
        assert_eq!(
            invalid(managed),
            Some((400, "metadata.managedFields must be nil".to_owned()))
        );
        assert_eq!(
            invalid(with_containers(1, json!([container("a", "x"), container("a", "y")]))),
            Some((
                400,
                r#"failed to create typed patch object (apps/v1, Kind=Deployment): .spec.template.spec.containers: duplicate entries for key [name="a"]"#
                    .to_owned()
            ))
        );
        assert_eq!(
            invalid(with_containers(1, json!([{"image": "x"}]))),
            Some((
                400,
                r#"failed to create typed patch object (apps/v1, Kind=Deployment): .spec.template.spec.containers: element 0: associative list with keys has an element that omits key field "name""#
                    .to_owned()
            ))
        );
    }

    #[test]
    fn updates_take_the_fields_they_change() {
        let keys = deployment_keys();
        let live = apply(
            None,
            deployment(json!({"replicas": 3, "paused": true})),
            "ci",
            false,
        );
        let mut new = live.clone();
        new["spec"]["replicas"] = json!(4);
        new["spec"]["minReadySeconds"] = json!(1);
        new["status"] = json!({"replicas": 4});
        new["metadata"]["resourceVersion"] = json!("7");
        let updated = record_update(Some(&live), new, Some("ctl"), None, keys.as_ref(), T2);
        assert_eq!(
            owners(&updated),
            [
                (
                    "ci".to_owned(),
                    "Apply",
                    json!({"f:spec": {"f:paused": {}}})
                ),
                (
                    "ctl".to_owned(),
                    "Update",
                    json!({"f:spec": {"f:minReadySeconds": {}, "f:replicas": {}}})
                ),
            ]
        );
        // A write that changes nothing keeps the times.
        let again = record_update(
            Some(&updated),
            updated.clone(),
            Some("ctl"),
            None,
            keys.as_ref(),
            T0,
        );
        assert_eq!(again, updated);
        // A status write owns the status only.
        let mut status = updated.clone();
        status["status"] = json!({"replicas": 4, "readyReplicas": 4});
        status["spec"]["replicas"] = json!(9);
        let status = record_update(
            Some(&updated),
            status,
            Some("rs"),
            Some("status"),
            keys.as_ref(),
            T2,
        );
        let owner = managed_fields(&status)
            .pop()
            .map(|owner| (owner.describe(), owner.fields.to_fields_v1()));
        assert_eq!(
            owner,
            Some((
                r#""rs" with subresource "status" using apps/v1"#.to_owned(),
                json!({"f:status": {"f:readyReplicas": {}}})
            ))
        );
        // Without a manager, a write forgets the fields it removed.
        let mut removed = updated.clone();
        if let Some(spec) = removed["spec"].as_object_mut() {
            spec.remove("paused");
        }
        let removed = record_update(Some(&updated), removed, None, None, keys.as_ref(), T2);
        assert_eq!(owners(&removed).len(), 1);
        assert_eq!(owners(&removed)[0].0, "ctl");
        // Objects nobody manages stay as they are.
        let plain = deployment(json!({"replicas": 1}));
        assert_eq!(
            record_update(None, plain.clone(), None, None, keys.as_ref(), T0),
            plain
        );
    }

    #[test]
    fn fields_v1_round_trips() {
        let fields = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}}}},
            "f:items": {"i:0": {}, "v:3": {}},
        });
        let set = FieldSet::from_fields_v1(&fields);
        assert_eq!(set.as_ref().map(FieldSet::to_fields_v1), Ok(fields));
        let set = set.unwrap_or_default();
        assert_eq!(set.len(), 6);
        let paths: Vec<String> = set.paths().iter().map(ToString::to_string).collect();
        assert_eq!(
            paths,
            [
                ".items[=3]",
                ".items[0]",
                ".metadata.labels",
                ".metadata.labels.app",
                r#".spec.ports[port=80,protocol="TCP"]"#,
                r#".spec.ports[port=80,protocol="TCP"].port"#,
            ]
        );
        for bad in [
            json!({"x:a": {}}),
            json!({"f:a": 1}),
            json!({"k:[1]": {}}),
            json!([]),
        ] {
            assert!(matches!(
                FieldSet::from_fields_v1(&bad),
                Err(ApplyError::Invalid { .. })
            ));
        }
    }

    #[test]
    fn set_operations() {
        let path = |fields: &[&str]| -> Vec<PathElement> {
            fields
                .iter()
                .map(|field| PathElement::Field((*field).to_owned()))
                .collect()
        };
        let mut a = FieldSet::new();
        a.insert(&path(&["spec", "replicas"]));
        a.insert(&path(&["spec", "paused"]));
        let mut b = FieldSet::new();
        b.insert(&path(&["spec", "replicas"]));
        b.insert(&path(&["metadata", "labels", "app"]));
        assert!(a.contains(&path(&["spec", "paused"])));
        assert!(!a.contains(&path(&["spec"])));
        assert!(a.has_prefix(&path(&["spec"])));
        assert_eq!(a.union(&b).len(), 3);
        assert_eq!(
            a.intersection(&b).paths(),
            [FieldPath(path(&["spec", "replicas"]))]
        );
        assert_eq!(
            a.difference(&b).paths(),
            [FieldPath(path(&["spec", "paused"]))]
        );
        assert!(a.difference(&a).is_empty());
        assert_eq!(a.difference(&a), FieldSet::new());
    }
}
