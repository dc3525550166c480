//! The scheme: which kinds exist, and how an object of each is decoded, defaulted and validated.
//!
//! Like Kubernetes' `runtime.Scheme`, a [`Scheme`] maps `apiVersion` and `kind` to a kind it
//! knows. [`Scheme::default`] knows the built-in kinds; [`Scheme::register`] adds custom kinds
//! (`#[derive(CustomResource)]` types), and [`Scheme::register_dynamic`] adds kinds known only at
//! run time, whose objects stay [`DynamicObject`]s.
//!
//! [`Scheme::decode`] takes a manifest [`Document`] through the whole pipeline a create request
//! takes in Kubernetes, and reports every problem of the document together:
//!
//! 1. the document must be an object with `apiVersion` and `kind`, of a kind the scheme knows;
//! 2. strict decoding into the kind's type: every value of the wrong type, every field the kind
//!    does not have and every key written twice is reported (Kubernetes' strict field validation,
//!    `kubectl`'s default). Where Kubernetes stops at the first value of the wrong type, the scheme
//!    drops it and goes on, so that the other problems of the document are reported with it;
//! 3. defaulting ([`SetDefaults`]), then validation ([`Validate`]), leaving out checks of the
//!    values that were dropped.
//!
//! Each problem carries its field path and, for YAML, the line and column it was written at.
//!
//! # Examples
//!
//! ```
//! use orchestra_core::manifest;
//! use orchestra_core::scheme::Scheme;
//!
//! let text = "\
//! apiVersion: apps/v1
//! kind: Deployment
//! metadata:
//!   name: web
//! spec:
//!   replicas: -1
//!   selector:
//!     matchLabels: {app: web}
//!   template:
//!     metadata:
//!       labels: {app: api}
//!     spec:
//!       containers:
//!       - name: web
//!         image: nginx
//!         imagePort: 80
//! ";
//! let scheme = Scheme::default();
//! let document = &manifest::parse_all(text)?[0];
//! let error = scheme.decode(document).unwrap_err();
//! let fields: Vec<String> = error.problems.iter().map(|p| p.error.field.to_string()).collect();
//! assert_eq!(
//!     fields,
//!     [
//!         "spec.template.spec.containers[0].imagePort",
//!         "spec.replicas",
//!         "spec.template.metadata.labels",
//!     ]
//! );
//! assert_eq!(error.problems[0].position.map(|p| p.line), Some(16));
//! # Ok::<(), manifest::SyntaxError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use schemars::{JsonSchema, Schema};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::defaulting::SetDefaults;
use crate::manifest::{Document, Position, path_from_serde};
use crate::resource::builtin::builtin_resources;
use crate::resource::{ApiResource, DynamicObject, Resource};
use crate::selector::{FieldSelector, FieldSource, UnsupportedFieldError};
use crate::status::StatusError;
use crate::validation::Validate;
use crate::validation::field::{Error, ErrorList, ErrorType, Path, Segment};
use crate::validation::meta::{NameRule, validate_object_meta};

/// How the detail of a key written twice in a YAML mapping starts.
const DUPLICATE_FIELD: &str = "duplicate field";

/// A kind the scheme can decode, default and validate: the built-in kinds and custom kinds made
/// with `#[derive(CustomResource)]` all are.
pub trait Kind:
    Resource<DynamicType = ()>
    + Serialize
    + DeserializeOwned
    + JsonSchema
    + SetDefaults
    + Validate
    + FieldSource
    + Send
    + Sync
    + 'static
{
}

impl<K> Kind for K where
    K: Resource<DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + JsonSchema
        + SetDefaults
        + Validate
        + FieldSource
        + Send
        + Sync
        + 'static
{
}

/// What the scheme does with objects of one kind, type-erased.
trait Codec: Send + Sync {
    /// Strict decoding, defaulting and validation: the defaulted object, and every problem.
    fn decode(&self, value: &Value) -> (Option<Value>, ErrorList);

    /// The kind's JSON schema, with its definitions.
    fn schema(&self) -> Schema;

    /// The fields a field selector may name for this kind.
    fn supported_fields(&self) -> &'static [&'static str];

    /// The value of a selectable field of an object of this kind (`None`: not offered).
    fn field(&self, object: &Value, name: &str) -> Option<String>;
}

struct TypedCodec<K>(PhantomData<fn() -> K>);

/// Most values of the wrong type reported for one document.
const MAX_TYPE_ERRORS: usize = 32;

/// What strict decoding found.
struct Strict<K> {
    /// The object, when one could be built: if some values had the wrong type, without them.
    object: Option<K>,
    /// Values of the wrong type, and fields the kind does not have.
    errors: ErrorList,
    /// Where values of the wrong type were dropped to go on decoding; checks of what is there are
    /// meaningless, so validation problems at or under these paths are not reported.
    dropped: Vec<Path>,
}

/// Strict decoding of a JSON object as `K`. A value of the wrong type is reported and dropped
/// (the field, or the whole list for a list item) and decoding goes on, so that every problem of
/// the document is found together; fields `K` does not have are reported too.
fn strict<K: Serialize + DeserializeOwned>(value: &Value) -> Strict<K> {
    let mut errors = ErrorList::new();
    let mut dropped = Vec::new();
    let mut patched: Option<Value> = None;
    let object = loop {
        let current = patched.as_ref().unwrap_or(value);
        match serde_path_to_error::deserialize::<_, K>(current) {
            Ok(object) => break Some(object),
            Err(error) => {
                let path = path_from_serde(error.path());
                let message = error.into_inner().to_string();
                errors.push(Error::type_invalid(&path, &message));
                let copy = patched.get_or_insert_with(|| value.clone());
                match drop_value(copy, &path) {
                    Some(removed) if errors.len() < MAX_TYPE_ERRORS => dropped.push(removed),
                    _ => break None,
                }
            }
        }
    };
    if let Some(object) = &object {
        match serde_json::to_value(object) {
            Ok(decoded) => {
                let written = patched.as_ref().unwrap_or(value);
                unknown_fields(written, &decoded, &Path::root(), &mut errors);
            }
            Err(error) => errors.push(Error::internal(&Path::root(), &error.to_string())),
        }
    }
    Strict {
        object,
        errors,
        dropped,
    }
}

/// Removes the value at `path` from `value`: the field, or for a list item the whole list (so that
/// the paths of later problems stay true). Returns the path removed, or `None` when nothing can
/// be removed (the root, or a path the document does not have).
fn drop_value(value: &mut Value, path: &Path) -> Option<Path> {
    let mut segments = path.segments();
    while let Some((Segment::Index(_), parent)) = segments.split_last() {
        segments = parent;
    }
    let (last, parent) = segments.split_last()?;
    let mut node = value;
    for segment in parent {
        node = match (segment, node) {
            (Segment::Field(name) | Segment::Key(name), Value::Object(fields)) => {
                fields.get_mut(name)?
            }
            (Segment::Index(index), Value::Array(items)) => items.get_mut(*index)?,
            _ => return None,
        };
    }
    match (last, node) {
        (Segment::Field(name) | Segment::Key(name), Value::Object(fields)) => {
            fields.remove(name)?;
            Some(Path::from(segments.to_vec()))
        }
        _ => None,
    }
}

/// The validation problems that are not about values strict decoding dropped.
fn without_dropped(problems: ErrorList, dropped: &[Path]) -> impl Iterator<Item = Error> + '_ {
    problems.into_iter().filter(move |problem| {
        !dropped
            .iter()
            .any(|path| problem.field.segments().starts_with(path.segments()))
    })
}

/// Decodes a document strictly as `K`, without defaulting or validating it: a value of the wrong
/// type, a field `K` does not have and a key written twice are problems. This is how typed code
/// reads a manifest of a kind it knows; [`Scheme::decode`] goes on to default and validate.
///
/// ```
/// use orchestra_core::k8s::api::core::v1::ConfigMap;
/// use orchestra_core::{manifest, scheme};
///
/// let documents = manifest::parse_all("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n")?;
/// let config_map: ConfigMap = scheme::decode_strict(&documents[0]).unwrap();
/// assert_eq!(config_map.data.unwrap()["k"], "v");
///
/// let documents = manifest::parse_all("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndatta: {}\n")?;
/// let error = scheme::decode_strict::<ConfigMap>(&documents[0]).unwrap_err();
/// assert_eq!(error.problems[0].error.field.to_string(), "datta");
/// # Ok::<(), manifest::SyntaxError>(())
/// ```
pub fn decode_strict<K: Serialize + DeserializeOwned>(
    document: &Document,
) -> Result<K, DecodeError> {
    let Strict {
        object, mut errors, ..
    } = strict::<K>(&document.value);
    errors.splice(0..0, duplicate_errors(document));
    match object {
        Some(object) if errors.is_empty() => Ok(object),
        _ => Err(DecodeError::new(document, None, errors)),
    }
}

fn duplicate_errors(document: &Document) -> impl Iterator<Item = Error> + '_ {
    document.duplicates.iter().map(|path| Error {
        kind: ErrorType::Duplicate,
        field: path.clone(),
        bad_value: None,
        detail: format!("{DUPLICATE_FIELD} {:?}", path.to_string()),
    })
}

impl<K: Kind> Codec for TypedCodec<K> {
    fn decode(&self, value: &Value) -> (Option<Value>, ErrorList) {
        let Strict {
            object,
            mut errors,
            dropped,
        } = strict::<K>(value);
        let Some(mut object) = object else {
            return (None, errors);
        };
        object.set_defaults();
        errors.extend(without_dropped(object.validate(), &dropped));
        match serde_json::to_value(&object) {
            Ok(defaulted) => (Some(defaulted), errors),
            Err(error) => {
                errors.push(Error::internal(&Path::root(), &error.to_string()));
                (None, errors)
            }
        }
    }

    fn schema(&self) -> Schema {
        crate::schema::schema_for::<K>()
    }

    fn supported_fields(&self) -> &'static [&'static str] {
        K::supported_fields()
    }

    fn field(&self, object: &Value, name: &str) -> Option<String> {
        let typed = K::deserialize(object).ok()?;
        typed.field(name).map(std::borrow::Cow::into_owned)
    }
}

/// Objects of a kind known only at run time: their metadata is decoded strictly and checked, the
/// rest is kept as written.
struct DynamicCodec {
    namespaced: bool,
}

impl Codec for DynamicCodec {
    fn decode(&self, value: &Value) -> (Option<Value>, ErrorList) {
        // Everything but the metadata is kept as written, so only the metadata can lose fields.
        let Strict {
            object,
            mut errors,
            dropped,
        } = strict::<DynamicObject>(value);
        let Some(object) = object else {
            return (None, errors);
        };
        let problems = validate_object_meta(
            &object.metadata,
            self.namespaced,
            NameRule::DnsSubdomain,
            &Path::new("metadata"),
        );
        errors.extend(without_dropped(problems, &dropped));
        (Some(value.clone()), errors)
    }

    fn schema(&self) -> Schema {
        schemars::json_schema!({
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
        })
    }

    fn supported_fields(&self) -> &'static [&'static str] {
        if self.namespaced {
            &["metadata.name", "metadata.namespace"]
        } else {
            &["metadata.name"]
        }
    }

    fn field(&self, object: &Value, name: &str) -> Option<String> {
        match name {
            "metadata.name" | "metadata.namespace" if self.supported_fields().contains(&name) => {
                let field = name.trim_start_matches("metadata.");
                Some(
                    object
                        .pointer(&format!("/metadata/{field}"))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                )
            }
            _ => None,
        }
    }
}

/// Every field of `written` that `decoded` (the same object after a round trip through its type)
/// lost: the fields the type does not have. Null values are absent values, not unknown fields.
fn unknown_fields(written: &Value, decoded: &Value, path: &Path, errors: &mut ErrorList) {
    match (written, decoded) {
        (Value::Object(written), Value::Object(decoded)) => {
            for (name, value) in written {
                match decoded.get(name) {
                    Some(decoded_value) => {
                        unknown_fields(value, decoded_value, &path.child(name), errors);
                    }
                    None if value.is_null() => {}
                    None => errors.push(Error::unknown_field(&path.child(name))),
                }
            }
        }
        (Value::Array(written), Value::Array(decoded)) => {
            for (i, (value, decoded_value)) in written.iter().zip(decoded).enumerate() {
                unknown_fields(value, decoded_value, &path.index(i), errors);
            }
        }
        _ => {}
    }
}

struct Registration {
    resource: ApiResource,
    codec: Arc<dyn Codec>,
    /// Whether the kind's schema has a `status` field; worked out on first use, as generating a
    /// schema is costly.
    status_subresource: std::sync::OnceLock<bool>,
}

/// The registry of kinds: see the [module documentation](self).
pub struct Scheme {
    kinds: BTreeMap<(String, String), Registration>,
}

impl fmt::Debug for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.kinds
                    .keys()
                    .map(|(api_version, kind)| format!("{api_version}/{kind}")),
            )
            .finish()
    }
}

impl Default for Scheme {
    /// A scheme that knows every built-in kind.
    fn default() -> Scheme {
        use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
        use k8s_openapi::api::coordination::v1::Lease;
        use k8s_openapi::api::core::v1::{
            ConfigMap, Endpoints, Event, Namespace, Node, Pod, ReplicationController, Secret,
            Service, ServiceAccount,
        };
        use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
        use k8s_openapi::api::scheduling::v1::PriorityClass;
        let mut scheme = Scheme::empty();
        scheme.register::<Pod>();
        scheme.register::<Node>();
        scheme.register::<Namespace>();
        scheme.register::<Service>();
        scheme.register::<Endpoints>();
        scheme.register::<ServiceAccount>();
        scheme.register::<Secret>();
        scheme.register::<ConfigMap>();
        scheme.register::<Event>();
        scheme.register::<ReplicationController>();
        scheme.register::<ReplicaSet>();
        scheme.register::<Deployment>();
        scheme.register::<Lease>();
        scheme.register::<PriorityClass>();
        scheme.register::<Role>();
        scheme.register::<ClusterRole>();
        scheme.register::<RoleBinding>();
        scheme.register::<ClusterRoleBinding>();
        debug_assert_eq!(scheme.kinds.len(), builtin_resources().len());
        scheme
    }
}

impl Scheme {
    /// A scheme that knows no kind.
    pub fn empty() -> Scheme {
        Scheme {
            kinds: BTreeMap::new(),
        }
    }

    /// Adds (or replaces) a typed kind: a built-in one or a `#[derive(CustomResource)]` type.
    pub fn register<K: Kind>(&mut self) -> &mut Scheme {
        self.insert(
            ApiResource::of::<K>(),
            Arc::new(TypedCodec::<K>(PhantomData)),
        )
    }

    /// Adds (or replaces) a kind known only at run time; its objects decode as
    /// [`DynamicObject`]s whose metadata is checked.
    pub fn register_dynamic(&mut self, resource: ApiResource) -> &mut Scheme {
        let codec = Arc::new(DynamicCodec {
            namespaced: resource.namespaced,
        });
        self.insert(resource, codec)
    }

    fn insert(&mut self, resource: ApiResource, codec: Arc<dyn Codec>) -> &mut Scheme {
        let key = (resource.api_version.clone(), resource.kind.clone());
        self.kinds.insert(
            key,
            Registration {
                resource,
                codec,
                status_subresource: std::sync::OnceLock::new(),
            },
        );
        self
    }

    /// The kind registered for `apiVersion` and `kind`.
    pub fn resource(&self, api_version: &str, kind: &str) -> Option<&ApiResource> {
        self.kinds
            .get(&(api_version.to_owned(), kind.to_owned()))
            .map(|registration| &registration.resource)
    }

    /// Whether objects of a registered kind have a `status` subresource (they do when the kind has a
    /// `status` field): writes to the object leave its status alone, and writes to the status
    /// leave the rest alone.
    pub fn has_status_subresource(&self, resource: &ApiResource) -> bool {
        self.registration(resource).is_some_and(|registration| {
            *registration.status_subresource.get_or_init(|| {
                registration
                    .codec
                    .schema()
                    .get("properties")
                    .and_then(Value::as_object)
                    .is_some_and(|properties| properties.contains_key("status"))
            })
        })
    }

    /// Checks that a field selector names only fields the kind offers, as the API server does:
    /// `field label not supported: <field>`.
    pub fn check_field_selector(
        &self,
        resource: &ApiResource,
        selector: &FieldSelector,
    ) -> Result<(), UnsupportedFieldError> {
        let supported = self.registration(resource).map_or(&[][..], |registration| {
            registration.codec.supported_fields()
        });
        match selector
            .requirements()
            .iter()
            .find(|requirement| !supported.contains(&requirement.field()))
        {
            Some(requirement) => Err(UnsupportedFieldError {
                field: requirement.field().to_owned(),
            }),
            None => Ok(()),
        }
    }

    /// Whether an object (as JSON) of a registered kind matches a field selector.
    pub fn matches_fields(
        &self,
        resource: &ApiResource,
        selector: &FieldSelector,
        object: &Value,
    ) -> bool {
        if selector.is_empty() {
            return true;
        }
        let Some(registration) = self.registration(resource) else {
            return false;
        };
        let source = JsonFields {
            object,
            codec: registration.codec.as_ref(),
        };
        selector.matches(&source)
    }

    fn registration(&self, resource: &ApiResource) -> Option<&Registration> {
        self.kinds
            .get(&(resource.api_version.clone(), resource.kind.clone()))
    }

    /// Decodes, defaults and validates an object given as JSON (an API request's body), as
    /// [`Scheme::decode`] does a manifest document.
    pub fn decode_value(&self, value: Value) -> Result<Decoded, DecodeError> {
        self.decode(&Document::from_value(value))
    }

    /// Every registered kind, ordered by `apiVersion` then kind.
    pub fn resources(&self) -> impl Iterator<Item = &ApiResource> {
        self.kinds
            .values()
            .map(|registration| &registration.resource)
    }

    /// The JSON schema of a registered kind (with its definitions under `$defs`).
    pub fn schema(&self, api_version: &str, kind: &str) -> Option<Schema> {
        let registration = self.kinds.get(&(api_version.to_owned(), kind.to_owned()))?;
        Some(registration.codec.schema())
    }

    /// Decodes one manifest document strictly, defaults it and validates it; see the
    /// [module documentation](self). On success the object is defaulted.
    pub fn decode(&self, document: &Document) -> Result<Decoded, DecodeError> {
        let fail = |resource: Option<ApiResource>, errors: ErrorList| {
            Err(DecodeError::new(document, resource, errors))
        };
        let Value::Object(fields) = &document.value else {
            let error = Error::type_invalid(&Path::root(), "a manifest document must be an object");
            return fail(None, vec![error]);
        };
        let api_version = fields.get("apiVersion").and_then(Value::as_str);
        let kind = fields.get("kind").and_then(Value::as_str);
        let (api_version, kind) = match (api_version, kind) {
            (Some(api_version), Some(kind)) if !api_version.is_empty() && !kind.is_empty() => {
                (api_version, kind)
            }
            _ => {
                let mut errors = ErrorList::new();
                if api_version.is_none_or(str::is_empty) {
                    errors.push(Error::required(
                        &Path::new("apiVersion"),
                        "Object 'apiVersion' is missing",
                    ));
                }
                if kind.is_none_or(str::is_empty) {
                    errors.push(Error::required(
                        &Path::new("kind"),
                        "Object 'kind' is missing",
                    ));
                }
                return fail(None, errors);
            }
        };
        let Some(registration) = self.kinds.get(&(api_version.to_owned(), kind.to_owned())) else {
            return fail(None, vec![self.unknown_kind(api_version, kind)]);
        };
        let (decoded, mut errors) = registration.codec.decode(&document.value);
        errors.splice(0..0, duplicate_errors(document));
        match decoded {
            Some(value) if errors.is_empty() => match serde_json::from_value(value) {
                Ok(object) => Ok(Decoded {
                    index: document.index,
                    item: document.item,
                    resource: registration.resource.clone(),
                    object,
                }),
                Err(error) => fail(
                    Some(registration.resource.clone()),
                    vec![Error::internal(&Path::root(), &error.to_string())],
                ),
            },
            _ => fail(Some(registration.resource.clone()), errors),
        }
    }

    /// Decodes one document as the kind `K` (which must be registered and match the document).
    pub fn decode_as<K: Kind>(&self, document: &Document) -> Result<K, DecodeError> {
        let decoded = self.decode(document)?;
        let resource = ApiResource::of::<K>();
        if decoded.resource != resource {
            let error = Error::invalid(
                &Path::new("kind"),
                decoded.resource.kind.as_str(),
                &format!("expected {} {}", resource.api_version, resource.kind),
            );
            return Err(DecodeError::new(
                document,
                Some(decoded.resource),
                vec![error],
            ));
        }
        decoded.object.try_parse().map_err(|error| {
            DecodeError::new(
                document,
                Some(resource),
                vec![Error::internal(&Path::root(), &error.to_string())],
            )
        })
    }

    fn unknown_kind(&self, api_version: &str, kind: &str) -> Error {
        let known: Vec<&str> = self
            .kinds
            .keys()
            .filter(|(_, k)| k == kind)
            .map(|(v, _)| v.as_str())
            .collect();
        let mut detail = format!("no kind {kind:?} is registered for version {api_version:?}");
        if !known.is_empty() {
            detail.push_str(&format!(" (it is registered for {})", known.join(", ")));
        }
        Error {
            kind: ErrorType::NotSupported,
            ..Error::invalid(&Path::new("kind"), kind, &detail)
        }
    }
}

/// A document decoded, defaulted and validated.
#[derive(Clone, Debug)]
pub struct Decoded {
    /// Index of the document in its manifest.
    pub index: usize,
    /// Index in its `List`, for a list item.
    pub item: Option<usize>,
    /// The object's kind.
    pub resource: ApiResource,
    /// The defaulted object.
    pub object: DynamicObject,
}

/// An object as JSON seen as a [`FieldSource`], through its kind's codec.
struct JsonFields<'a> {
    object: &'a Value,
    codec: &'a dyn Codec,
}

impl FieldSource for JsonFields<'_> {
    fn supported_fields() -> &'static [&'static str] {
        &[]
    }

    fn field(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        match name {
            // The common fields are read straight from the JSON, without decoding the object.
            "metadata.name" | "metadata.namespace"
                if self.codec.supported_fields().contains(&name) =>
            {
                let field = name.trim_start_matches("metadata.");
                Some(std::borrow::Cow::Borrowed(
                    self.object
                        .get("metadata")
                        .and_then(|meta| meta.get(field))
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                ))
            }
            _ => self
                .codec
                .field(self.object, name)
                .map(std::borrow::Cow::Owned),
        }
    }
}

/// One problem of a document: a field error, and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// What is wrong and where in the object.
    pub error: Error,
    /// Where in the text, for YAML.
    pub position: Option<Position>,
}

/// Everything wrong with one document.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub struct DecodeError {
    /// Index of the document in its manifest.
    pub index: usize,
    /// Index in its `List`, for a list item.
    pub item: Option<usize>,
    /// The document's kind, when the scheme knows it.
    pub resource: Option<Box<ApiResource>>,
    /// The kind as written, when there is one.
    pub kind: Option<String>,
    /// The object's name as written, when there is one.
    pub name: Option<String>,
    /// Every problem, in the order found.
    pub problems: Vec<Problem>,
}

impl DecodeError {
    fn new(document: &Document, resource: Option<ApiResource>, errors: ErrorList) -> DecodeError {
        let value = &document.value;
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .or_else(|| {
                value
                    .pointer("/metadata/generateName")
                    .and_then(Value::as_str)
            });
        DecodeError {
            index: document.index,
            item: document.item,
            resource: resource.map(Box::new),
            kind: value.get("kind").and_then(Value::as_str).map(str::to_owned),
            name: name.map(str::to_owned),
            problems: errors
                .into_iter()
                .map(|error| Problem {
                    position: document.position_of(&error.field),
                    error,
                })
                .collect(),
        }
    }

    /// The `Status` a create request with this document would get: 422 Invalid when the kind is
    /// known and every problem is a validation problem, 400 BadRequest otherwise.
    pub fn to_status_error(&self) -> StatusError {
        let errors: Vec<Error> = self.problems.iter().map(|p| p.error.clone()).collect();
        let decoding = errors.iter().any(|e| {
            matches!(e.kind, ErrorType::TypeInvalid | ErrorType::UnknownField)
                || (e.kind == ErrorType::Duplicate && e.detail.starts_with(DUPLICATE_FIELD))
        });
        match &self.resource {
            Some(resource) if !decoding => {
                StatusError::invalid(resource, self.name.as_deref().unwrap_or_default(), &errors)
            }
            _ => StatusError::bad_request(self.to_string(), &errors),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}: ",
            self.kind.as_deref().unwrap_or("<no kind>"),
            self.name.as_deref().unwrap_or("<no name>")
        )?;
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}", problem.error)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::parse_all;
    use serde_json::json;

    #[test]
    fn dropping_a_list_item_drops_the_list() {
        let mut value = json!({"spec": {"containers": [{"name": 1}], "replicas": "x"}});
        let item = Path::new("spec").child("containers").index(0);
        assert_eq!(
            drop_value(&mut value, &item.child("name")),
            Some(item.child("name"))
        );
        assert_eq!(
            drop_value(&mut value, &Path::new("spec").child("containers").index(0)),
            Some(Path::new("spec").child("containers"))
        );
        assert_eq!(drop_value(&mut value, &Path::root()), None);
        assert_eq!(drop_value(&mut value, &Path::new("status")), None);
        assert_eq!(value, json!({"spec": {"replicas": "x"}}));
    }

    #[test]
    fn every_problem_is_reported_even_after_values_of_the_wrong_type() {
        let text = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {tier: 3}
spec:
  replicas: three
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx
        ports:
        - containerPort: eighty
        - containerPort: 70000
      restartPolicy: Never
      hostNetwork: sometimes
  unknownField: 1
";
        let document = &parse_all(text).unwrap()[0];
        let error = Scheme::default().decode(document).unwrap_err();
        let fields: Vec<String> = error
            .problems
            .iter()
            .map(|p| format!("{}:{}", p.error.field, p.position.map_or(0, |p| p.line)))
            .collect();
        assert_eq!(
            fields,
            [
                "metadata.labels.tier:5",
                "spec.replicas:7",
                "spec.template.spec.containers[0].ports[0].containerPort:16",
                "spec.template.spec.hostNetwork:19",
                "spec.unknownField:20",
                "spec.template.spec.containers[0].ports[1].containerPort:17",
                "spec.template.spec.restartPolicy:18",
            ]
        );
        assert_eq!(error.to_status_error().code, 400);
    }
}
