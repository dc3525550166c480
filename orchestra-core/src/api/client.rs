//! The in-process API: Kubernetes' request semantics over a [`Store`], on objects of any kind.
//!
//! [`Client`] does what Kubernetes' API server does between decoding a request and answering it:
//! server-set metadata, defaulting, validation, admission, optimistic concurrency, finalizers and
//! graceful deletion, resource-version semantics for reads and watches. It works on
//! [`DynamicObject`]s of any kind its [`Scheme`] knows; [`Api`](super::Api) is the typed view of it,
//! and the HTTP server serves it.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use k8s_openapi::api::autoscaling::v1::{Scale, ScaleSpec, ScaleStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    ListMeta, ObjectMeta, StatusCause, StatusDetails, Time,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::admission::{
    Admission, AdmissionRequest, DefaultTolerationSeconds, Operation, Priority, ServiceAccount,
};
use super::keys::{collection_prefix, object_key};
use super::params::{
    DeleteParams, ListParams, PatchParams, PostParams, PropagationPolicy, VersionMatch, WatchParams,
};
use super::strategy;
use super::transport::Transport;
use super::watch::WatchEvent;
use crate::clock::{Clock, SystemClock};
use crate::controllers::token::TokenIssuer;
use crate::patch::{
    ApplyError, MAX_FIELD_MANAGER_LENGTH, MergeKeys, PatchType, apply_patch, record_update,
    server_side_apply,
};
use crate::resource::{ApiResource, DynamicObject, TypeMeta};
use crate::scheme::Scheme;
use crate::selector::{FieldSelector, Selector};
use crate::status::{StatusError, StatusReason};
use crate::store::{
    Compare, Event, EventKind, KeyRange, KeyValue, Op, RangeRequest, Revision, Store, StoreError,
    Txn, WatchRequest,
};
use crate::validation::field::{Error, ErrorList, Path};

mod token_request;

/// The namespaces a cluster starts with.
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// How often a watch that asked for bookmarks gets one when nothing changes, by default.
pub const DEFAULT_BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);

/// How many names `generateName` tries before giving up.
const GENERATE_NAME_ATTEMPTS: usize = 8;

/// How many times a write retries when another write got in between and the caller did not ask
/// for a particular resource version.
const UNCONDITIONAL_RETRIES: usize = 16;

/// A list of objects and the list's metadata (its resource version, the continue token).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObjectList<K> {
    /// The list's resource version and continue token.
    pub metadata: ListMeta,
    /// The objects, in key order (namespace, then name).
    pub items: Vec<K>,
}

impl<K> ObjectList<K> {
    /// The resource version the list was read at.
    pub fn resource_version(&self) -> Option<&str> {
        self.metadata.resource_version.as_deref()
    }

    /// The token that continues the list, when a limit cut it short.
    pub fn continue_token(&self) -> Option<&str> {
        self.metadata.continue_.as_deref().filter(|t| !t.is_empty())
    }
}

impl<K> IntoIterator for ObjectList<K> {
    type Item = K;
    type IntoIter = std::vec::IntoIter<K>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

/// What a delete did.
#[derive(Clone, Debug, PartialEq)]
pub enum Deletion<K> {
    /// The object is gone; this is what it last was.
    Deleted(K),
    /// The object is terminating (graceful deletion, or finalizers to run) and will go later;
    /// this is it now, with its `deletionTimestamp`.
    InProgress(K),
}

impl<K> Deletion<K> {
    /// The object, whichever happened.
    pub fn into_inner(self) -> K {
        match self {
            Deletion::Deleted(object) | Deletion::InProgress(object) => object,
        }
    }
}

/// Which part of an object a write replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    /// The object (its status left alone when the kind has a status subresource).
    Main,
    /// Only the status.
    Status,
}

struct Inner {
    /// The API server this client hands its calls to, for a remote client (whose `store` is
    /// then an unused empty one).
    transport: Option<Arc<dyn Transport>>,
    store: Arc<dyn Store>,
    scheme: Scheme,
    admission: Vec<Arc<dyn Admission>>,
    clock: Arc<dyn Clock>,
    bookmark_interval: Duration,
    ids: Arc<Ids>,
    /// What signs the tokens of `serviceaccounts/token` (in-process clients only).
    token_issuer: std::sync::RwLock<Option<TokenIssuer>>,
}

/// Where a client's object uids and generated name suffixes come from.
pub(crate) enum Ids {
    /// The system's randomness (version 4 UUIDs).
    Random,
    /// A splitmix64 sequence from a seed, so that a run replays exactly.
    Seeded(std::sync::Mutex<u64>),
}

impl Ids {
    /// 16 fresh bytes.
    pub(crate) fn next(&self) -> [u8; 16] {
        match self {
            Ids::Random => *uuid::Uuid::new_v4().as_bytes(),
            Ids::Seeded(state) => {
                let mut state = state
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let mut bytes = [0; 16];
                for half in bytes.chunks_exact_mut(8) {
                    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                    let mut z = *state;
                    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                    half.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
                }
                bytes
            }
        }
    }

    /// A fresh object uid (a version 4 UUID).
    fn uid(&self) -> String {
        uuid::Builder::from_random_bytes(self.next())
            .into_uuid()
            .to_string()
    }

    /// `length` random characters of Kubernetes' `utilrand.String` alphabet (lowercase
    /// consonants and digits, no vowels, so that no word is spelt), at most 16.
    pub(crate) fn suffix(&self, length: usize) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        self.next()
            .iter()
            .take(length)
            .map(|byte| char::from(ALPHABET[usize::from(*byte) % ALPHABET.len()]))
            .collect()
    }
}

impl fmt::Debug for Ids {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ids::Random => "Ids::Random",
            Ids::Seeded(_) => "Ids::Seeded",
        })
    }
}

/// A handle on an in-process API over a store: cheap to clone, shared by every [`Api`](super::Api).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("store", &self.inner.store)
            .field("scheme", &self.inner.scheme)
            .field("admission", &self.inner.admission)
            .finish()
    }
}

/// Builds a [`Client`]: its scheme, admission plugins, clock and bookmark interval.
pub struct ClientBuilder {
    store: Arc<dyn Store>,
    scheme: Scheme,
    admission: Vec<Arc<dyn Admission>>,
    default_admission: bool,
    default_tolerations: DefaultTolerationSeconds,
    clock: Arc<dyn Clock>,
    bookmark_interval: Duration,
    seed: Option<u64>,
    token_issuer: Option<TokenIssuer>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("store", &self.store)
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// The kinds the client serves (the built-in kinds by default).
    #[must_use]
    pub fn scheme(mut self, scheme: Scheme) -> ClientBuilder {
        self.scheme = scheme;
        self
    }

    /// Adds an admission plugin after those already added (and after the default plugins, which
    /// run first).
    #[must_use]
    pub fn admission(mut self, plugin: impl Admission) -> ClientBuilder {
        self.admission.push(Arc::new(plugin));
        self
    }

    /// Leaves out the admission plugins every client runs by default (see the
    /// [`admission` module documentation](super::admission)), as a Kubernetes API server started
    /// with them disabled.
    #[must_use]
    pub fn without_default_admission(mut self) -> ClientBuilder {
        self.default_admission = false;
        self
    }

    /// How long the default admission's [`DefaultTolerationSeconds`] lets pods tolerate a
    /// not-ready and an unreachable node (300 s each by default, as kube-apiserver's
    /// `--default-not-ready-toleration-seconds` and `--default-unreachable-toleration-seconds`).
    #[must_use]
    pub fn default_toleration_seconds(
        mut self,
        not_ready: Duration,
        unreachable: Duration,
    ) -> ClientBuilder {
        self.default_tolerations = DefaultTolerationSeconds::new(not_ready, unreachable);
        self
    }

    /// The clock for timestamps (the system clock by default).
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> ClientBuilder {
        self.clock = Arc::new(clock);
        self
    }

    /// How often idle watches that asked for bookmarks get one.
    #[must_use]
    pub fn bookmark_interval(mut self, interval: Duration) -> ClientBuilder {
        self.bookmark_interval = interval;
        self
    }

    /// Draws object uids and the suffixes of generated names from a generator seeded with `seed`
    /// instead of the system's randomness, so that a run replays exactly (what the cluster
    /// simulator does).
    #[must_use]
    pub fn seed(mut self, seed: u64) -> ClientBuilder {
        self.seed = Some(seed);
        self
    }

    /// Signs the tokens of the `serviceaccounts/token` subresource
    /// ([`Client::create_token`]) with `issuer`, on the client's clock (the issuer's own clock is
    /// replaced). Without one, token requests fail with 503 ServiceUnavailable.
    #[must_use]
    pub fn token_issuer(mut self, issuer: TokenIssuer) -> ClientBuilder {
        self.token_issuer = Some(issuer);
        self
    }

    /// The client.
    pub fn build(self) -> Client {
        let ids = Arc::new(match self.seed {
            Some(seed) => Ids::Seeded(std::sync::Mutex::new(seed)),
            None => Ids::Random,
        });
        let mut admission: Vec<Arc<dyn Admission>> = Vec::new();
        if self.default_admission {
            admission.push(Arc::new(Priority::new(Arc::clone(&self.store))));
            admission.push(Arc::new(self.default_tolerations));
            admission.push(Arc::new(
                ServiceAccount::new(Arc::clone(&self.store)).with_ids(Arc::clone(&ids)),
            ));
        }
        admission.extend(self.admission);
        let token_issuer = self
            .token_issuer
            .map(|issuer| issuer.with_clock(Arc::clone(&self.clock)));
        Client {
            inner: Arc::new(Inner {
                transport: None,
                store: self.store,
                scheme: self.scheme,
                admission,
                clock: self.clock,
                bookmark_interval: self.bookmark_interval,
                ids,
                token_issuer: std::sync::RwLock::new(token_issuer),
            }),
        }
    }
}

/// Where a list page starts: the revision of the first page and the next key.
#[derive(Serialize, Deserialize)]
struct ContinueToken {
    rv: Revision,
    start: String,
}

fn encode_token(token: &ContinueToken) -> String {
    use base64::Engine as _;
    let json = serde_json::to_vec(token).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn decode_token(text: &str) -> Option<ContinueToken> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The first key after every key that starts with `prefix` (which ends with `/`).
fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.trim_end_matches('/').to_owned();
    end.push('0');
    end
}

fn bad_request(message: impl Into<String>) -> StatusError {
    StatusError::new(StatusReason::BadRequest, message)
}

fn from_store(error: StoreError) -> StatusError {
    match error {
        StoreError::Compacted {
            revision,
            compact_revision,
        } => StatusError::gone(format!(
            "too old resource version: {revision} ({compact_revision})"
        )),
        StoreError::FutureRevision { revision, current } => StatusError::new(
            StatusReason::Timeout,
            format!("Too large resource version: {revision}, current: {current}"),
        ),
        StoreError::Unavailable(message) => {
            StatusError::new(StatusReason::ServiceUnavailable, message)
        }
        other => StatusError::internal(other.to_string()),
    }
}

fn parse_version(text: &str) -> Result<Revision, StatusError> {
    text.parse::<Revision>()
        .ok()
        .filter(|revision| *revision >= 0)
        .ok_or_else(|| bad_request(format!("invalid resource version: {text:?}")))
}

/// How a write records who owns which field (`metadata.managedFields`).
#[derive(Clone, Copy, Debug)]
enum Ownership<'a> {
    /// An ordinary write, by this field manager when one is named: it owns what it changed.
    Update(Option<&'a str>),
    /// A server-side apply, which has recorded its fields itself.
    Applied,
}

/// Options of a request that fail validation (422), as Kubernetes reports them:
/// `PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: ...`.
fn invalid_options(kind: &str, error: Error) -> StatusError {
    let options = ApiResource::new("meta.k8s.io", "v1", kind, None, false);
    StatusError::invalid(&options, "", &[error])
}

/// Checks a field manager's name as Kubernetes does: at most 128 printable characters.
fn check_field_manager(kind: &str, manager: Option<&str>) -> Result<(), StatusError> {
    let Some(manager) = manager else {
        return Ok(());
    };
    let field = Path::new("fieldManager");
    if manager.chars().count() > MAX_FIELD_MANAGER_LENGTH {
        return Err(invalid_options(
            kind,
            Error::too_long(&field, MAX_FIELD_MANAGER_LENGTH),
        ));
    }
    if manager.chars().any(char::is_control) {
        return Err(invalid_options(
            kind,
            Error::invalid(&field, manager, "must only contain printable characters"),
        ));
    }
    Ok(())
}

/// A failed apply as Kubernetes answers it: conflicts are a 409 Conflict with one
/// `FieldManagerConflict` cause per field.
fn from_apply_error(error: ApplyError) -> StatusError {
    let ApplyError::Conflicts(conflicts) = &error else {
        let reason = match error.code() {
            415 => StatusReason::UnsupportedMediaType,
            413 => StatusReason::RequestEntityTooLarge,
            422 => StatusReason::Invalid,
            _ => StatusReason::BadRequest,
        };
        return StatusError::new(reason, error.to_string());
    };
    let causes = conflicts
        .iter()
        .map(|conflict| StatusCause {
            field: Some(conflict.path.to_string()),
            message: Some(conflict.to_string()),
            reason: Some("FieldManagerConflict".to_owned()),
        })
        .collect();
    StatusError {
        details: Some(Box::new(StatusDetails {
            causes: Some(causes),
            ..StatusDetails::default()
        })),
        ..StatusError::new(StatusReason::Conflict, error.to_string())
    }
}

/// Selectors of a list or watch, parsed and checked against the kind.
struct Filter {
    labels: Selector,
    fields: FieldSelector,
}

impl Client {
    /// A client over `store` with the built-in kinds, the default admission plugins (see the
    /// [`admission` module documentation](super::admission)) and the system clock.
    pub fn new(store: impl Store) -> Client {
        Client::builder(store).build()
    }

    /// A builder of a client over `store`.
    pub fn builder(store: impl Store) -> ClientBuilder {
        ClientBuilder {
            store: Arc::new(store),
            scheme: Scheme::default(),
            admission: Vec::new(),
            default_admission: true,
            default_tolerations: DefaultTolerationSeconds::default(),
            clock: Arc::new(SystemClock),
            bookmark_interval: DEFAULT_BOOKMARK_INTERVAL,
            seed: None,
            token_issuer: None,
        }
    }

    /// A client of the API server `transport` reaches: every call goes to that server, which
    /// does the defaulting, validation and admission; `scheme` names the kinds the client knows
    /// (the server's, usually the built-in ones).
    pub fn remote(transport: Arc<dyn Transport>, scheme: Scheme) -> Client {
        Client {
            inner: Arc::new(Inner {
                transport: Some(transport),
                store: Arc::new(crate::store::MemoryStore::new()),
                scheme,
                admission: Vec::new(),
                clock: Arc::new(SystemClock),
                bookmark_interval: DEFAULT_BOOKMARK_INTERVAL,
                ids: Arc::new(Ids::Random),
                token_issuer: std::sync::RwLock::new(None),
            }),
        }
    }

    /// The store under the client; `None` for a [remote](Client::remote) client.
    pub fn store(&self) -> Option<&Arc<dyn Store>> {
        self.inner.transport.is_none().then_some(&self.inner.store)
    }

    /// Whether the client hands its calls to an API server elsewhere.
    pub fn is_remote(&self) -> bool {
        self.inner.transport.is_some()
    }

    /// The kinds the client serves.
    pub fn scheme(&self) -> &Scheme {
        &self.inner.scheme
    }

    /// The client's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Creates the namespaces every cluster has ([`SYSTEM_NAMESPACES`]) that do not exist yet.
    pub async fn bootstrap(&self) -> Result<(), StatusError> {
        if self.is_remote() {
            // The server's own client bootstraps the cluster.
            return Ok(());
        }
        let namespaces = ApiResource::new("", "v1", "Namespace", None, false);
        for name in SYSTEM_NAMESPACES {
            let object = DynamicObject::new(name, &namespaces);
            match self
                .create(&namespaces, None, object, &PostParams::default())
                .await
            {
                Ok(_) => {}
                Err(error) if error.reason == StatusReason::AlreadyExists => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    fn registered(&self, resource: &ApiResource) -> Result<(), StatusError> {
        match self
            .inner
            .scheme
            .resource(&resource.api_version, &resource.kind)
        {
            Some(registered) if registered == resource => Ok(()),
            _ => Err(StatusError::new(
                StatusReason::NotFound,
                format!(
                    "the server could not find the requested resource ({})",
                    resource.qualified_plural()
                ),
            )),
        }
    }

    fn namespace_of<'a>(
        resource: &ApiResource,
        namespace: Option<&'a str>,
    ) -> Result<Option<&'a str>, StatusError> {
        if !resource.namespaced {
            return Ok(None);
        }
        match namespace.filter(|ns| !ns.is_empty()) {
            Some(namespace) => Ok(Some(namespace)),
            None => Err(bad_request(format!(
                "a namespace is required to address {}",
                resource.qualified_plural()
            ))),
        }
    }

    fn decode_stored(&self, kv: &KeyValue) -> Result<DynamicObject, StatusError> {
        let unreadable = |error: &dyn std::fmt::Display| {
            StatusError::internal(format!("stored object {} is unreadable: {error}", kv.key))
        };
        let fields: serde_json::Map<String, Value> =
            serde_json::from_slice(&kv.value).map_err(|error| unreadable(&error))?;
        let mut object =
            DynamicObject::from_json_map(fields).map_err(|error| unreadable(&error))?;
        object.metadata.resource_version = Some(kv.mod_revision.to_string());
        Ok(object)
    }

    /// A stored object decoded straight into `K`, with its resource version.
    fn decode_stored_typed<K>(&self, kv: &KeyValue) -> Result<K, StatusError>
    where
        K: crate::resource::Resource + serde::de::DeserializeOwned,
    {
        let mut object: K = serde_json::from_slice(&kv.value).map_err(|error| {
            StatusError::internal(format!("stored object {} is unreadable: {error}", kv.key))
        })?;
        object.meta_mut().resource_version = Some(kv.mod_revision.to_string());
        Ok(object)
    }

    fn encode_stored(object: &DynamicObject) -> Result<Bytes, StatusError> {
        let mut stored = object.clone();
        stored.metadata.resource_version = None;
        serde_json::to_vec(&stored)
            .map(Bytes::from)
            .map_err(|error| StatusError::internal(format!("cannot encode the object: {error}")))
    }

    /// Defaulting and validation through the scheme, then `extra` (update checks) reported with
    /// them; the defaulted object.
    fn default_and_validate(
        &self,
        resource: &ApiResource,
        name: &str,
        object: &DynamicObject,
        extra: ErrorList,
    ) -> Result<DynamicObject, StatusError> {
        let value = serde_json::to_value(object)
            .map_err(|error| StatusError::internal(format!("cannot encode the object: {error}")))?;
        match self.inner.scheme.decode_value(value) {
            Ok(decoded) if extra.is_empty() => Ok(decoded.object),
            Ok(_) => Err(StatusError::invalid(resource, name, &extra)),
            Err(error) => {
                let mut status = error.to_status_error();
                if status.reason == StatusReason::Invalid && !extra.is_empty() {
                    let mut errors: ErrorList =
                        error.problems.into_iter().map(|p| p.error).collect();
                    errors.extend(extra);
                    status = StatusError::invalid(resource, name, &errors);
                }
                Err(status)
            }
        }
    }

    async fn admit(
        &self,
        request: &AdmissionRequest<'_>,
        object: &mut DynamicObject,
        resource: &ApiResource,
        extra: &ErrorList,
    ) -> Result<DynamicObject, StatusError> {
        // The object arrives defaulted and validated; only a mutation calls for doing it again.
        let before = (!self.inner.admission.is_empty()).then(|| object.clone());
        for plugin in &self.inner.admission {
            plugin.mutate(request, object).await?;
        }
        let admitted = match before {
            Some(before) if before != *object => {
                self.default_and_validate(resource, request.name, object, extra.clone())?
            }
            _ => object.clone(),
        };
        for plugin in &self.inner.admission {
            plugin.validate(request, &admitted).await?;
        }
        Ok(admitted)
    }

    async fn check_namespace(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<(), StatusError> {
        let Some(namespace) = namespace else {
            return Ok(());
        };
        let namespaces = ApiResource::new("", "v1", "Namespace", None, false);
        let key = object_key(&namespaces, None, namespace);
        let Some(kv) = self.inner.store.get(&key).await.map_err(from_store)? else {
            return Err(StatusError::not_found(&namespaces, namespace));
        };
        if self
            .decode_stored(&kv)?
            .metadata
            .deletion_timestamp
            .is_some()
        {
            return Err(StatusError::forbidden(
                resource,
                name,
                &format!(
                    "unable to create new content in namespace {namespace} because it is being terminated"
                ),
            ));
        }
        Ok(())
    }

    fn generate_name(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.inner.ids.suffix(5))
    }

    /// Creates an object (see the [`api` module documentation](crate::api)). With a
    /// `field_manager`, the manager owns every field of the new object (`metadata.managedFields`,
    /// operation `Update`).
    pub async fn create(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        object: DynamicObject,
        params: &PostParams,
    ) -> Result<DynamicObject, StatusError> {
        if let Some(transport) = &self.inner.transport {
            return transport.create(resource, namespace, object, params).await;
        }
        check_field_manager("CreateOptions", params.field_manager.as_deref())?;
        let ownership = Ownership::Update(params.field_manager.as_deref());
        self.create_with(resource, namespace, object, params, ownership)
            .await
    }

    /// A create, recording field ownership as `ownership` says.
    async fn create_with(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        mut object: DynamicObject,
        params: &PostParams,
        ownership: Ownership<'_>,
    ) -> Result<DynamicObject, StatusError> {
        self.registered(resource)?;
        match &object.types {
            Some(types)
                if types.api_version != resource.api_version || types.kind != resource.kind =>
            {
                return Err(bad_request(format!(
                    "the object's kind {}/{} is not the requested {}/{}",
                    types.api_version, types.kind, resource.api_version, resource.kind
                )));
            }
            _ => {}
        }
        object.types = Some(TypeMeta {
            api_version: resource.api_version.clone(),
            kind: resource.kind.clone(),
        });
        let namespace = if resource.namespaced {
            let requested = namespace
                .or(object.metadata.namespace.as_deref())
                .map(str::to_owned);
            let namespace =
                Client::namespace_of(resource, requested.as_deref())?.map(str::to_owned);
            if let (Some(given), Some(requested)) = (&object.metadata.namespace, &namespace)
                && given != requested
            {
                return Err(bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            object.metadata.namespace.clone_from(&namespace);
            namespace
        } else {
            None
        };
        let generate = object
            .metadata
            .name
            .as_deref()
            .is_none_or(str::is_empty)
            .then(|| object.metadata.generate_name.clone())
            .flatten()
            .filter(|prefix| !prefix.is_empty());
        let attempts = if generate.is_some() {
            GENERATE_NAME_ATTEMPTS
        } else {
            1
        };
        let mut last_error = None;
        for _ in 0..attempts {
            let mut attempt = object.clone();
            if let Some(prefix) = &generate {
                attempt.metadata.name = Some(self.generate_name(prefix));
            }
            match self
                .create_once(resource, namespace.as_deref(), attempt, params, ownership)
                .await
            {
                Err(error) if error.reason == StatusReason::AlreadyExists && generate.is_some() => {
                    last_error = Some(error);
                }
                outcome => return outcome,
            }
        }
        Err(last_error.unwrap_or_else(|| StatusError::internal("could not generate a name")))
    }

    async fn create_once(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        mut object: DynamicObject,
        params: &PostParams,
        ownership: Ownership<'_>,
    ) -> Result<DynamicObject, StatusError> {
        let now = self.inner.clock.now();
        let meta = &mut object.metadata;
        meta.uid = Some(self.inner.ids.uid());
        meta.creation_timestamp = Some(Time(now));
        meta.resource_version = None;
        meta.generation = Some(1);
        meta.deletion_timestamp = None;
        meta.deletion_grace_period_seconds = None;
        meta.self_link = None;
        let status_subresource = self.inner.scheme.has_status_subresource(resource);
        strategy::prepare_for_create(resource, &mut object, status_subresource);
        let name = object.metadata.name.clone().unwrap_or_default();
        let mut object = self.default_and_validate(resource, &name, &object, ErrorList::new())?;
        let request = AdmissionRequest {
            operation: Operation::Create,
            resource,
            subresource: None,
            namespace,
            name: &name,
            old_object: None,
            dry_run: params.dry_run,
        };
        let object = self
            .admit(&request, &mut object, resource, &ErrorList::new())
            .await?;
        let object = self.record_ownership(resource, None, object, ownership, Subresource::Main)?;
        self.check_namespace(resource, namespace, &name).await?;
        let key = object_key(resource, namespace, &name);
        if params.dry_run {
            if self
                .inner
                .store
                .get(&key)
                .await
                .map_err(from_store)?
                .is_some()
            {
                return Err(StatusError::already_exists(resource, &name));
            }
            return Ok(object);
        }
        let value = Client::encode_stored(&object)?;
        let response = self
            .inner
            .store
            .txn(Txn::when([Compare::absent(&key)]).and_then([Op::put(&key, value)]))
            .await
            .map_err(from_store)?;
        if !response.succeeded {
            return Err(StatusError::already_exists(resource, &name));
        }
        let mut object = object;
        object.metadata.resource_version = Some(response.revision.to_string());
        Ok(object)
    }

    /// Reads one object.
    pub async fn get(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<DynamicObject, StatusError> {
        if let Some(transport) = &self.inner.transport {
            return transport.get(resource, namespace, name).await;
        }
        self.registered(resource)?;
        let namespace = Client::namespace_of(resource, namespace)?;
        let key = object_key(resource, namespace, name);
        match self.inner.store.get(&key).await.map_err(from_store)? {
            Some(kv) => self.decode_stored(&kv),
            None => Err(StatusError::not_found(resource, name)),
        }
    }

    fn filter(
        &self,
        resource: &ApiResource,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> Result<Filter, StatusError> {
        let labels = match labels.filter(|s| !s.is_empty()) {
            Some(text) => Selector::parse(text).map_err(|error| bad_request(error.to_string()))?,
            None => Selector::everything(),
        };
        let fields = match fields.filter(|s| !s.is_empty()) {
            Some(text) => {
                FieldSelector::parse(text).map_err(|error| bad_request(error.to_string()))?
            }
            None => FieldSelector::everything(),
        };
        self.inner
            .scheme
            .check_field_selector(resource, &fields)
            .map_err(|error| bad_request(error.to_string()))?;
        Ok(Filter { labels, fields })
    }

    fn matches<T: crate::resource::Resource + Serialize>(
        &self,
        resource: &ApiResource,
        filter: &Filter,
        object: &T,
    ) -> bool {
        if !filter.labels.is_empty() {
            static NO_LABELS: std::collections::BTreeMap<String, String> =
                std::collections::BTreeMap::new();
            let labels = object.meta().labels.as_ref().unwrap_or(&NO_LABELS);
            if !filter.labels.matches(labels) {
                return false;
            }
        }
        if filter.fields.is_empty() {
            return true;
        }
        match serde_json::to_value(object) {
            Ok(value) => self
                .inner
                .scheme
                .matches_fields(resource, &filter.fields, &value),
            Err(_) => false,
        }
    }

    /// Lists objects, in one namespace or all (see [`ListParams`] for selectors, pages and
    /// resource versions).
    pub async fn list(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> Result<ObjectList<DynamicObject>, StatusError> {
        if let Some(transport) = &self.inner.transport {
            return transport.list(resource, namespace, params).await;
        }
        self.list_as(resource, namespace, params, |client, kv| {
            client.decode_stored(kv)
        })
        .await
    }

    /// [`Client::list`], decoding each stored object straight into the kind `K` (faster than
    /// going through [`DynamicObject`]).
    pub async fn list_typed<K>(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> Result<ObjectList<K>, StatusError>
    where
        K: crate::resource::Resource + Serialize + serde::de::DeserializeOwned,
    {
        if let Some(transport) = &self.inner.transport {
            let list = transport.list(resource, namespace, params).await?;
            let items = list
                .items
                .into_iter()
                .map(|object| {
                    object.into_typed().map_err(|error| {
                        StatusError::internal(format!("cannot decode the object: {error}"))
                    })
                })
                .collect::<Result<Vec<K>, StatusError>>()?;
            return Ok(ObjectList {
                metadata: list.metadata,
                items,
            });
        }
        self.list_as(resource, namespace, params, |_, kv| {
            let mut object: K = serde_json::from_slice(&kv.value).map_err(|error| {
                StatusError::internal(format!("stored object {} is unreadable: {error}", kv.key))
            })?;
            object.meta_mut().resource_version = Some(kv.mod_revision.to_string());
            Ok(object)
        })
        .await
    }

    async fn list_as<T, D>(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        params: &ListParams,
        decode: D,
    ) -> Result<ObjectList<T>, StatusError>
    where
        T: crate::resource::Resource + Serialize,
        D: Fn(&Client, &KeyValue) -> Result<T, StatusError>,
    {
        self.registered(resource)?;
        let filter = self.filter(
            resource,
            params.label_selector.as_deref(),
            params.field_selector.as_deref(),
        )?;
        let prefix = collection_prefix(resource, namespace.filter(|ns| !ns.is_empty()));
        let end = prefix_end(&prefix);
        let (mut revision, mut start) = match params
            .continue_token
            .as_deref()
            .filter(|t| !t.is_empty())
        {
            Some(token) => {
                let token = decode_token(token)
                    .filter(|token| token.start.starts_with(&prefix))
                    .ok_or_else(|| bad_request("the continue token is not valid"))?;
                (Some(token.rv), token.start)
            }
            None => {
                let revision = match params.resource_version.as_deref() {
                    None | Some("" | "0") => None,
                    Some(text) => {
                        let wanted = parse_version(text)?;
                        match params.version_match.unwrap_or_default() {
                            VersionMatch::Exact => Some(wanted),
                            VersionMatch::NotOlderThan => {
                                let current = self
                                    .inner
                                    .store
                                    .current_revision()
                                    .await
                                    .map_err(from_store)?;
                                if wanted > current {
                                    return Err(StatusError::new(
                                        StatusReason::Timeout,
                                        format!(
                                            "Too large resource version: {wanted}, current: {current}"
                                        ),
                                    ));
                                }
                                None
                            }
                        }
                    }
                };
                (revision, prefix.clone())
            }
        };
        let limit = params.limit.map(|l| l as usize).filter(|&l| l > 0);
        let mut items = Vec::new();
        let mut continue_from = None;
        'pages: loop {
            let mut request = RangeRequest::new(KeyRange::Range {
                start: start.clone(),
                end: end.clone(),
            });
            request.revision = revision;
            if let Some(limit) = limit {
                request.limit = Some((limit - items.len()).max(64));
            }
            let response = match self.inner.store.range(request).await {
                Ok(response) => response,
                Err(StoreError::Compacted { .. }) if params.continue_token.is_some() => {
                    return Err(StatusError::gone(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    ));
                }
                Err(error) => return Err(from_store(error)),
            };
            // Every further page of this list reads the same snapshot.
            revision = Some(response.revision);
            for (i, kv) in response.kvs.iter().enumerate() {
                let object = decode(self, kv)?;
                if self.matches(resource, &filter, &object) {
                    items.push(object);
                }
                if limit.is_some_and(|limit| items.len() >= limit) {
                    if i + 1 < response.kvs.len() || response.more {
                        continue_from = Some(format!("{}\u{0}", kv.key));
                    }
                    break 'pages;
                }
            }
            match response.kvs.last() {
                Some(last) if response.more => start = format!("{}\u{0}", last.key),
                _ => break,
            }
        }
        let revision = revision.unwrap_or_default();
        Ok(ObjectList {
            metadata: ListMeta {
                resource_version: Some(revision.to_string()),
                continue_: continue_from.map(|start| {
                    encode_token(&ContinueToken {
                        rv: revision,
                        start,
                    })
                }),
                ..ListMeta::default()
            },
            items,
        })
    }

    /// Replaces an object, or its status (see the [`api` module documentation](crate::api)). The object's
    /// `resourceVersion`, when set, must be the stored one (otherwise 409 Conflict); when unset the
    /// update applies to whatever is stored.
    pub async fn replace(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        object: DynamicObject,
        params: &PostParams,
        subresource: Subresource,
    ) -> Result<DynamicObject, StatusError> {
        if let Some(transport) = &self.inner.transport {
            return transport
                .replace(resource, namespace, name, object, params, subresource)
                .await;
        }
        self.registered(resource)?;
        let namespace = Client::namespace_of(resource, namespace)?;
        if object.metadata.name.as_deref().is_some_and(|n| n != name) {
            return Err(bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                object.metadata.name.as_deref().unwrap_or_default()
            )));
        }
        let expected = object
            .metadata
            .resource_version
            .clone()
            .filter(|v| !v.is_empty());
        check_field_manager("UpdateOptions", params.field_manager.as_deref())?;
        self.update_retrying(
            resource,
            namespace,
            name,
            expected.as_deref(),
            params.dry_run,
            subresource,
            Ownership::Update(params.field_manager.as_deref()),
            |_| Ok(object.clone()),
        )
        .await
    }

    /// Updates an object with what `make` makes of the stored one, retrying against newer
    /// versions when another write got in between, unless the caller named the version it
    /// expects (`expected`).
    #[allow(clippy::too_many_arguments)]
    async fn update_retrying<F>(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        expected: Option<&str>,
        dry_run: bool,
        subresource: Subresource,
        ownership: Ownership<'_>,
        make: F,
    ) -> Result<DynamicObject, StatusError>
    where
        F: Fn(&DynamicObject) -> Result<DynamicObject, StatusError>,
    {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let old = self.get(resource, namespace, name).await?;
            let new = make(&old)?;
            let outcome = self
                .update_from(
                    resource,
                    namespace,
                    name,
                    new,
                    &old,
                    expected,
                    dry_run,
                    subresource,
                    ownership,
                )
                .await;
            match outcome {
                Err(error)
                    if error.is_conflict()
                        && expected.is_none()
                        && attempts < UNCONDITIONAL_RETRIES =>
                {
                    continue;
                }
                outcome => return outcome,
            }
        }
    }

    /// One attempt at an update against `old` (the stored object).
    #[allow(clippy::too_many_arguments)]
    async fn update_from(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        mut new: DynamicObject,
        old: &DynamicObject,
        expected: Option<&str>,
        dry_run: bool,
        subresource: Subresource,
        ownership: Ownership<'_>,
    ) -> Result<DynamicObject, StatusError> {
        let old_version = old.metadata.resource_version.clone().unwrap_or_default();
        // An object without `managedFields` keeps the stored ones (an empty list clears them).
        if new.metadata.managed_fields.is_none() {
            new.metadata
                .managed_fields
                .clone_from(&old.metadata.managed_fields);
        }
        if let Some(expected) = expected
            && expected != old_version
        {
            return Err(StatusError::conflict(
                resource,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        new.types = old.types.clone();
        let status_subresource = self.inner.scheme.has_status_subresource(resource);
        strategy::prepare_for_update(
            &mut new,
            old,
            status_subresource,
            subresource == Subresource::Status,
        );
        {
            let meta = &mut new.metadata;
            let before = &old.metadata;
            meta.name = before.name.clone();
            meta.namespace = before.namespace.clone();
            meta.uid = before.uid.clone();
            meta.creation_timestamp = before.creation_timestamp.clone();
            meta.deletion_timestamp = before.deletion_timestamp.clone();
            meta.deletion_grace_period_seconds = before.deletion_grace_period_seconds;
            meta.generation = before.generation;
            meta.generate_name = before.generate_name.clone();
            meta.self_link = None;
        }
        let mut extra = strategy::validate_update(resource, &new, old);
        if old.metadata.deletion_timestamp.is_some() {
            let before = strategy::finalizers(old);
            if strategy::finalizers(&new)
                .iter()
                .any(|f| !before.contains(f))
            {
                extra.push(Error::forbidden(
                    &Path::new("metadata").child("finalizers"),
                    "no new finalizers can be added if the object is being deleted",
                ));
            }
        }
        let mut new = self.default_and_validate(resource, name, &new, extra.clone())?;
        let request = AdmissionRequest {
            operation: Operation::Update,
            resource,
            subresource: (subresource == Subresource::Status).then_some("status"),
            namespace,
            name,
            old_object: Some(old),
            dry_run,
        };
        let new = self.admit(&request, &mut new, resource, &extra).await?;
        let mut new = self.record_ownership(resource, Some(old), new, ownership, subresource)?;
        if subresource == Subresource::Main && strategy::spec_changed(&new, old) {
            new.metadata.generation = Some(old.metadata.generation.unwrap_or(1) + 1);
        }
        new.metadata.resource_version = Some(old_version.clone());
        let unchanged = Client::encode_stored(&new)? == Client::encode_stored(old)?;
        if unchanged {
            return Ok(new);
        }
        let key = object_key(resource, namespace, name);
        let old_revision = parse_version(&old_version)?;
        let finished = new.metadata.deletion_timestamp.is_some()
            && strategy::finalizers(&new).is_empty()
            && !strategy::namespace_finalizing(resource, &new)
            && !(strategy::deletes_gracefully(resource) && Client::grace_pending(&new));
        if dry_run {
            return Ok(new);
        }
        let op = if finished {
            Op::delete(&key)
        } else {
            Op::put(&key, Client::encode_stored(&new)?)
        };
        let response = self
            .inner
            .store
            .txn(Txn::when([Compare::mod_revision(&key, old_revision)]).and_then([op]))
            .await
            .map_err(from_store)?;
        if !response.succeeded {
            return Err(StatusError::conflict(
                resource,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        new.metadata.resource_version = Some(response.revision.to_string());
        Ok(new)
    }

    /// Whether a terminating pod still has grace time (a graceful delete waits for its node agent
    /// to finish it with a delete of grace 0).
    fn grace_pending(object: &DynamicObject) -> bool {
        object.metadata.deletion_grace_period_seconds.unwrap_or(0) > 0
    }

    /// Patches an object or its status, retrying against newer versions unless the patch names a
    /// resource version.
    pub async fn patch(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        patch: &Value,
        params: &PatchParams,
        subresource: Subresource,
    ) -> Result<DynamicObject, StatusError> {
        if let Some(transport) = &self.inner.transport {
            return transport
                .patch(resource, namespace, name, patch, params, subresource)
                .await;
        }
        self.registered(resource)?;
        let namespace = Client::namespace_of(resource, namespace)?;
        check_field_manager("PatchOptions", params.field_manager.as_deref())?;
        if params.patch_type == PatchType::Apply {
            return self
                .apply(resource, namespace, name, patch, params, subresource)
                .await;
        }
        if params.force {
            return Err(invalid_options(
                "PatchOptions",
                Error::forbidden(
                    &Path::new("force"),
                    "may not be specified for non-apply patch",
                ),
            ));
        }
        let expected = patch
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let merge_keys = MergeKeys::for_kind(&resource.api_version, &resource.kind);
        self.update_retrying(
            resource,
            namespace,
            name,
            expected.as_deref(),
            params.dry_run,
            subresource,
            Ownership::Update(params.field_manager.as_deref()),
            |old| {
                let current = serde_json::to_value(old)
                    .map_err(|error| StatusError::internal(error.to_string()))?;
                let patched = apply_patch(&current, params.patch_type, patch, merge_keys.as_ref())
                    .map_err(|error| {
                        let reason = match error.code() {
                            415 => StatusReason::UnsupportedMediaType,
                            413 => StatusReason::RequestEntityTooLarge,
                            422 => StatusReason::Invalid,
                            _ => StatusReason::BadRequest,
                        };
                        StatusError::new(reason, error.to_string())
                    })?;
                let new: DynamicObject = serde_json::from_value(patched).map_err(|error| {
                    bad_request(format!("the patched object is invalid: {error}"))
                })?;
                Ok(new)
            },
        )
        .await
    }

    /// A server-side apply (see [`crate::patch::server_side_apply`]): creates the object when it
    /// does not exist, applies the configuration to it otherwise, retrying against newer
    /// versions unless the configuration names a resource version.
    async fn apply(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        config: &Value,
        params: &PatchParams,
        subresource: Subresource,
    ) -> Result<DynamicObject, StatusError> {
        let Some(manager) = params
            .field_manager
            .as_deref()
            .filter(|manager| !manager.is_empty())
        else {
            return Err(invalid_options(
                "PatchOptions",
                Error::required(&Path::new("fieldManager"), "is required for apply patch"),
            ));
        };
        if subresource != Subresource::Main {
            return Err(bad_request(
                "server-side apply is supported for the main resource only, not for its status",
            ));
        }
        let mut config = config.clone();
        let Value::Object(members) = &mut config else {
            return Err(bad_request("an apply configuration must be a JSON object"));
        };
        let text = |field: &str| {
            members
                .get(field)
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        if text("apiVersion") != resource.api_version {
            return Err(bad_request(format!(
                "Incorrect version specified in apply patch. Specified patch version: {}, expected: {}",
                text("apiVersion"),
                resource.api_version
            )));
        }
        if text("kind") != resource.kind {
            return Err(bad_request(format!(
                "Incorrect kind specified in apply patch. Specified patch kind: {}, expected: {}",
                text("kind"),
                resource.kind
            )));
        }
        let metadata = members
            .entry("metadata")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        let Value::Object(metadata) = metadata else {
            return Err(bad_request("metadata must be an object"));
        };
        match metadata.get("name").and_then(Value::as_str) {
            Some(given) if given != name => {
                return Err(bad_request(format!(
                    "the name of the object ({given}) does not match the name on the URL ({name})"
                )));
            }
            Some(_) => {}
            None => {
                metadata.insert("name".into(), Value::String(name.to_owned()));
            }
        }
        if let Some(namespace) = namespace {
            match metadata.get("namespace").and_then(Value::as_str) {
                Some(given) if given != namespace => {
                    return Err(bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                Some(_) => {}
                None => {
                    metadata.insert("namespace".into(), Value::String(namespace.to_owned()));
                }
            }
        }
        let expected = metadata
            .get("resourceVersion")
            .and_then(Value::as_str)
            .filter(|version| !version.is_empty())
            .map(str::to_owned);
        let merge_keys = MergeKeys::for_resource(resource);
        let now = self.now_text();
        let applied = |live: Option<&Value>| -> Result<DynamicObject, StatusError> {
            let object = server_side_apply(
                live,
                config.clone(),
                manager,
                params.force,
                merge_keys.as_ref(),
                &now,
            )
            .map_err(from_apply_error)?;
            serde_json::from_value(object)
                .map_err(|error| bad_request(format!("the applied object is invalid: {error}")))
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            let updated = self
                .update_retrying(
                    resource,
                    namespace,
                    name,
                    expected.as_deref(),
                    params.dry_run,
                    subresource,
                    Ownership::Applied,
                    |old| {
                        let live = serde_json::to_value(old)
                            .map_err(|error| StatusError::internal(error.to_string()))?;
                        applied(Some(&live))
                    },
                )
                .await;
            match updated {
                Err(error) if error.is_not_found() && expected.is_none() => {}
                outcome => return outcome,
            }
            // Server-side apply creates what does not exist.
            let post = PostParams {
                dry_run: params.dry_run,
                field_manager: Some(manager.to_owned()),
            };
            let created = self
                .create_with(
                    resource,
                    namespace,
                    applied(None)?,
                    &post,
                    Ownership::Applied,
                )
                .await;
            match created {
                Err(error) if error.is_already_exists() && attempts < UNCONDITIONAL_RETRIES => {}
                outcome => return outcome,
            }
        }
    }

    /// The current time as `metadata.managedFields` records it.
    fn now_text(&self) -> String {
        serde_json::to_value(Time(self.inner.clock.now()))
            .ok()
            .and_then(|time| time.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Records in `metadata.managedFields` the fields a write changed as its manager's (see
    /// [`crate::patch::record_update`]); an apply has recorded its own.
    fn record_ownership(
        &self,
        resource: &ApiResource,
        old: Option<&DynamicObject>,
        new: DynamicObject,
        ownership: Ownership<'_>,
        subresource: Subresource,
    ) -> Result<DynamicObject, StatusError> {
        let Ownership::Update(manager) = ownership else {
            return Ok(new);
        };
        if manager.is_none()
            && new
                .metadata
                .managed_fields
                .as_ref()
                .is_none_or(Vec::is_empty)
        {
            return Ok(new);
        }
        let encode = |object: &DynamicObject| {
            serde_json::to_value(object).map_err(|error| {
                StatusError::internal(format!("cannot encode the object: {error}"))
            })
        };
        let old = old.map(encode).transpose()?;
        let subresource = (subresource == Subresource::Status).then_some("status");
        let merge_keys = MergeKeys::for_resource(resource);
        let recorded = record_update(
            old.as_ref(),
            encode(&new)?,
            manager,
            subresource,
            merge_keys.as_ref(),
            &self.now_text(),
        );
        serde_json::from_value(recorded)
            .map_err(|error| StatusError::internal(format!("cannot decode the object: {error}")))
    }

    /// Deletes an object: at once, or by marking it terminating when it has finalizers (and, for
    /// pods on a node, a grace period); see [`DeleteParams`].
    pub async fn delete(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        params: &DeleteParams,
    ) -> Result<Deletion<DynamicObject>, StatusError> {
        if let Some(transport) = &self.inner.transport {
            return transport.delete(resource, namespace, name, params).await;
        }
        self.registered(resource)?;
        let namespace = Client::namespace_of(resource, namespace)?;
        let key = object_key(resource, namespace, name);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let old = self.get(resource, namespace, name).await?;
            let outcome = self
                .delete_from(resource, namespace, name, &key, &old, params)
                .await;
            match outcome {
                Err(error) if error.is_conflict() && attempts < UNCONDITIONAL_RETRIES => {
                    if params.preconditions.is_some()
                        && error.message.contains("Precondition failed")
                    {
                        return Err(error);
                    }
                    continue;
                }
                outcome => return outcome,
            }
        }
    }

    async fn delete_from(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        key: &str,
        old: &DynamicObject,
        params: &DeleteParams,
    ) -> Result<Deletion<DynamicObject>, StatusError> {
        if let Some(preconditions) = &params.preconditions {
            if let Some(uid) = &preconditions.uid
                && old.metadata.uid.as_ref() != Some(uid)
            {
                return Err(StatusError::conflict(
                    resource,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        old.metadata.uid.as_deref().unwrap_or_default()
                    ),
                ));
            }
            if let Some(version) = &preconditions.resource_version
                && old.metadata.resource_version.as_ref() != Some(version)
            {
                return Err(StatusError::conflict(
                    resource,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {version}, ResourceVersion in meta: {}",
                        old.metadata.resource_version.as_deref().unwrap_or_default()
                    ),
                ));
            }
        }
        let request = AdmissionRequest {
            operation: Operation::Delete,
            resource,
            subresource: None,
            namespace,
            name,
            old_object: Some(old),
            dry_run: params.dry_run,
        };
        for plugin in &self.inner.admission {
            plugin.validate(&request, old).await?;
        }
        let old_revision = parse_version(old.metadata.resource_version.as_deref().unwrap_or("0"))?;
        let mut terminating = old.clone();
        let mut finalizers: Vec<String> = old.metadata.finalizers.clone().unwrap_or_default();
        let policy_finalizer = match params.propagation_policy {
            Some(PropagationPolicy::Orphan) => Some("orphan"),
            Some(PropagationPolicy::Foreground) => Some("foregroundDeletion"),
            _ => None,
        };
        if let Some(finalizer) = policy_finalizer {
            finalizers.retain(|f| f != "orphan" && f != "foregroundDeletion");
            finalizers.push(finalizer.to_owned());
        }
        let grace = if strategy::deletes_gracefully(resource) {
            Client::pod_grace(old, params.grace_period_seconds)
        } else {
            0
        };
        let now = self.inner.clock.now();
        let needs_marking =
            grace > 0 || !finalizers.is_empty() || strategy::namespace_finalizing(resource, old);
        if needs_marking {
            let meta = &mut terminating.metadata;
            let already = meta.deletion_timestamp.is_some();
            let shorter = meta
                .deletion_grace_period_seconds
                .is_none_or(|current| grace < current);
            if !already || (grace > 0 && shorter) {
                let deadline = now
                    .checked_add(jiff::SignedDuration::from_secs(grace))
                    .unwrap_or(now);
                meta.deletion_timestamp = Some(Time(deadline));
                meta.deletion_grace_period_seconds = Some(grace);
            }
            meta.finalizers = (!finalizers.is_empty()).then_some(finalizers);
            if resource.group.is_empty()
                && resource.kind == "Namespace"
                && let Some(data) = strategy::ensure_object(&mut terminating.data)
            {
                data.insert("status".into(), serde_json::json!({"phase": "Terminating"}));
            }
            if params.dry_run || Client::encode_stored(&terminating)? == Client::encode_stored(old)?
            {
                return Ok(Deletion::InProgress(terminating));
            }
            let value = Client::encode_stored(&terminating)?;
            let response = self
                .inner
                .store
                .txn(
                    Txn::when([Compare::mod_revision(key, old_revision)])
                        .and_then([Op::put(key, value)]),
                )
                .await
                .map_err(from_store)?;
            if !response.succeeded {
                return Err(StatusError::conflict(
                    resource,
                    name,
                    "the object has been modified",
                ));
            }
            terminating.metadata.resource_version = Some(response.revision.to_string());
            return Ok(Deletion::InProgress(terminating));
        }
        if params.dry_run {
            return Ok(Deletion::Deleted(old.clone()));
        }
        let response = self
            .inner
            .store
            .txn(Txn::when([Compare::mod_revision(key, old_revision)]).and_then([Op::delete(key)]))
            .await
            .map_err(from_store)?;
        if !response.succeeded {
            return Err(StatusError::conflict(
                resource,
                name,
                "the object has been modified",
            ));
        }
        let mut deleted = old.clone();
        deleted.metadata.resource_version = Some(response.revision.to_string());
        Ok(Deletion::Deleted(deleted))
    }

    /// The grace period of a pod's deletion: the one asked for, else the pod's own; 0 for a pod
    /// that no node runs (unscheduled, or finished).
    fn pod_grace(pod: &DynamicObject, requested: Option<i64>) -> i64 {
        let scheduled = pod
            .data
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|node| !node.is_empty());
        let finished = matches!(
            pod.data.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        );
        if !scheduled || finished {
            return 0;
        }
        requested
            .or_else(|| {
                pod.data
                    .pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(30)
            .max(0)
    }

    /// Watches objects from a resource version: `""` or `"0"` starts with an `ADDED` event for
    /// every object that exists now, a revision starts after it. Events follow the selectors: an
    /// object that comes to match is `ADDED`, one that stops matching `DELETED`. A watch from a
    /// compacted revision gets one `ERROR` event (410 Gone) and ends.
    pub async fn watch(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        params: &WatchParams,
        resource_version: &str,
    ) -> Result<BoxStream<'static, WatchEvent<DynamicObject>>, StatusError> {
        if let Some(transport) = &self.inner.transport {
            return transport
                .watch(resource, namespace, params, resource_version)
                .await;
        }
        self.watch_as(
            resource,
            namespace,
            params,
            resource_version,
            Client::decode_stored,
        )
        .await
    }

    /// [`Client::watch`] decoding the objects straight into `K` (one parse of the stored bytes
    /// per event, instead of a [`DynamicObject`] and a conversion): what a typed
    /// [`Api::watch`](crate::api::Api::watch) uses.
    pub async fn watch_typed<K>(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        params: &WatchParams,
        resource_version: &str,
    ) -> Result<BoxStream<'static, WatchEvent<K>>, StatusError>
    where
        K: crate::resource::Resource + Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        if let Some(transport) = &self.inner.transport {
            let events = transport
                .watch(resource, namespace, params, resource_version)
                .await?;
            return Ok(events
                .map(|event| {
                    event
                        .try_map(|object| object.into_typed::<K>())
                        .unwrap_or_else(|error| {
                            WatchEvent::Error(Box::new(
                                StatusError::internal(format!("cannot decode the object: {error}"))
                                    .to_status(),
                            ))
                        })
                })
                .boxed());
        }
        self.watch_as(
            resource,
            namespace,
            params,
            resource_version,
            Client::decode_stored_typed::<K>,
        )
        .await
    }

    async fn watch_as<T>(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        params: &WatchParams,
        resource_version: &str,
        decode: fn(&Client, &KeyValue) -> Result<T, StatusError>,
    ) -> Result<BoxStream<'static, WatchEvent<T>>, StatusError>
    where
        T: crate::resource::Resource + Serialize + Send + 'static,
    {
        self.registered(resource)?;
        let filter = self.filter(
            resource,
            params.label_selector.as_deref(),
            params.field_selector.as_deref(),
        )?;
        let prefix = collection_prefix(resource, namespace.filter(|ns| !ns.is_empty()));
        let mut initial = VecDeque::new();
        let start = match resource_version {
            "" | "0" => {
                let snapshot = self
                    .inner
                    .store
                    .range(RangeRequest::prefix(&prefix))
                    .await
                    .map_err(from_store)?;
                for kv in &snapshot.kvs {
                    let object = decode(self, kv)?;
                    if self.matches(resource, &filter, &object) {
                        initial.push_back(WatchEvent::Added(object));
                    }
                }
                snapshot.revision + 1
            }
            text => parse_version(text)? + 1,
        };
        let mut request = WatchRequest::new(KeyRange::Prefix(prefix))
            .from(start)
            .with_prev_kv();
        if params.bookmarks {
            request = request.progress(self.inner.bookmark_interval);
        }
        let stream = match self.inner.store.watch(request).await {
            Ok(stream) => Some(stream),
            Err(StoreError::Compacted {
                revision,
                compact_revision,
            }) => {
                initial.push_back(WatchEvent::Error(Box::new(
                    StatusError::gone(format!(
                        "too old resource version: {} ({compact_revision})",
                        revision - 1
                    ))
                    .to_status(),
                )));
                None
            }
            Err(error) => return Err(from_store(error)),
        };
        let state = WatchState {
            client: self.clone(),
            resource: resource.clone(),
            filter,
            stream,
            pending: initial,
            bookmarks: params.bookmarks,
            decode,
        };
        let events = futures_util::stream::unfold(state, |mut state| async move {
            let event = state.next().await?;
            Some((event, state))
        });
        Ok(match params.timeout {
            Some(timeout) => events.take_until(tokio::time::sleep(timeout)).boxed(),
            None => events.boxed(),
        })
    }

    /// Binds a pod to a node: what the scheduler does through Kubernetes' `pods/binding`
    /// subresource. Sets `spec.nodeName` (which no update may change) and the `PodScheduled`
    /// condition; a pod already bound is 409 Conflict, a terminating one too.
    pub async fn bind(
        &self,
        namespace: &str,
        pod: &str,
        node: &str,
    ) -> Result<DynamicObject, StatusError> {
        if let Some(transport) = &self.inner.transport {
            return transport.bind(namespace, pod, node).await;
        }
        let pods = ApiResource::new("", "v1", "Pod", None, true);
        if let Some(message) = crate::validation::names::dns1123_subdomain(node)
            .into_iter()
            .next()
        {
            return Err(StatusError::invalid(
                &pods,
                pod,
                &[Error::invalid(
                    &Path::new("target").child("name"),
                    node,
                    &message,
                )],
            ));
        }
        let key = object_key(&pods, Some(namespace), pod);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let old = self.get(&pods, Some(namespace), pod).await?;
            let assigned = old
                .data
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty());
            if let Some(assigned) = assigned {
                return Err(StatusError::conflict(
                    &pods,
                    pod,
                    &format!("pod {pod} is already assigned to node {assigned:?}"),
                ));
            }
            if old.metadata.deletion_timestamp.is_some() {
                return Err(StatusError::conflict(
                    &pods,
                    pod,
                    "the pod is being deleted",
                ));
            }
            let mut bound = old.clone();
            if let Some(data) = strategy::ensure_object(&mut bound.data) {
                if let Some(spec) = strategy::ensure_object(
                    data.entry("spec").or_insert_with(|| serde_json::json!({})),
                ) {
                    spec.insert("nodeName".into(), Value::String(node.to_owned()));
                }
                if let Some(status) = strategy::ensure_object(
                    data.entry("status")
                        .or_insert_with(|| serde_json::json!({})),
                ) {
                    let conditions = status
                        .entry("conditions")
                        .or_insert_with(|| serde_json::json!([]));
                    if let Value::Array(list) = conditions {
                        list.retain(|c| {
                            c.get("type").and_then(Value::as_str) != Some("PodScheduled")
                        });
                        list.push(serde_json::json!({
                            "type": "PodScheduled",
                            "status": "True",
                            "lastTransitionTime": Time(self.inner.clock.now()),
                        }));
                    }
                }
            }
            let revision = parse_version(old.metadata.resource_version.as_deref().unwrap_or("0"))?;
            let value = Client::encode_stored(&bound)?;
            let response = self
                .inner
                .store
                .txn(
                    Txn::when([Compare::mod_revision(&key, revision)])
                        .and_then([Op::put(&key, value)]),
                )
                .await
                .map_err(from_store)?;
            if response.succeeded {
                bound.metadata.resource_version = Some(response.revision.to_string());
                return Ok(bound);
            }
            if attempts >= UNCONDITIONAL_RETRIES {
                return Err(StatusError::conflict(
                    &pods,
                    pod,
                    "the object has been modified",
                ));
            }
        }
    }

    /// The scale of a Deployment, ReplicaSet or ReplicationController (`autoscaling/v1`).
    pub async fn get_scale(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Scale, StatusError> {
        if let Some(transport) = &self.inner.transport {
            return transport.get_scale(resource, namespace, name).await;
        }
        if !strategy::has_scale(resource) {
            return Err(StatusError::new(
                StatusReason::NotFound,
                format!("{} has no scale subresource", resource.qualified_plural()),
            ));
        }
        let object = self.get(resource, namespace, name).await?;
        Ok(Client::scale_of(resource, &object))
    }

    fn scale_of(resource: &ApiResource, object: &DynamicObject) -> Scale {
        let count = |pointer: &str| {
            object
                .data
                .pointer(pointer)
                .and_then(Value::as_i64)
                .and_then(|n| i32::try_from(n).ok())
        };
        Scale {
            metadata: ObjectMeta {
                name: object.metadata.name.clone(),
                namespace: object.metadata.namespace.clone(),
                uid: object.metadata.uid.clone(),
                resource_version: object.metadata.resource_version.clone(),
                creation_timestamp: object.metadata.creation_timestamp.clone(),
                ..ObjectMeta::default()
            },
            spec: Some(ScaleSpec {
                replicas: count("/spec/replicas"),
            }),
            status: Some(ScaleStatus {
                replicas: count("/status/replicas").unwrap_or(0),
                selector: Some(strategy::scale_selector(resource, object)),
            }),
        }
    }

    /// Sets the replicas of a Deployment, ReplicaSet or ReplicationController through its scale
    /// (the scale's `resourceVersion`, when set, must be the object's).
    pub async fn replace_scale(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        scale: &Scale,
        params: &PostParams,
    ) -> Result<Scale, StatusError> {
        if let Some(transport) = &self.inner.transport {
            return transport
                .replace_scale(resource, namespace, name, scale, params)
                .await;
        }
        if !strategy::has_scale(resource) {
            return Err(StatusError::new(
                StatusReason::NotFound,
                format!("{} has no scale subresource", resource.qualified_plural()),
            ));
        }
        let replicas = scale
            .spec
            .as_ref()
            .and_then(|spec| spec.replicas)
            .unwrap_or(0);
        if replicas < 0 {
            return Err(StatusError::invalid(
                resource,
                name,
                &[Error::invalid(
                    &Path::new("spec").child("replicas"),
                    replicas,
                    "must be greater than or equal to 0",
                )],
            ));
        }
        let mut patch = serde_json::json!({"spec": {"replicas": replicas}});
        if let Some(version) = scale
            .metadata
            .resource_version
            .as_deref()
            .filter(|v| !v.is_empty())
        {
            patch["metadata"] = serde_json::json!({"resourceVersion": version});
        }
        let params = PatchParams {
            dry_run: params.dry_run,
            field_manager: params.field_manager.clone(),
            ..PatchParams::new(crate::patch::PatchType::Merge)
        };
        let object = self
            .patch(
                resource,
                namespace,
                name,
                &patch,
                &params,
                Subresource::Main,
            )
            .await?;
        Ok(Client::scale_of(resource, &object))
    }
}

/// The state of one watch: the store's stream and the events decoded but not yet delivered.
struct WatchState<T> {
    client: Client,
    resource: ApiResource,
    filter: Filter,
    stream: Option<crate::store::WatchStream>,
    pending: VecDeque<WatchEvent<T>>,
    bookmarks: bool,
    decode: fn(&Client, &KeyValue) -> Result<T, StatusError>,
}

impl<T: crate::resource::Resource + Serialize> WatchState<T> {
    async fn next(&mut self) -> Option<WatchEvent<T>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            let stream = self.stream.as_mut()?;
            match stream.next().await {
                None => {
                    self.stream = None;
                    return None;
                }
                Some(Err(error)) => {
                    self.stream = None;
                    let status = match error {
                        StoreError::Compacted {
                            revision,
                            compact_revision,
                        } => StatusError::gone(format!(
                            "too old resource version: {revision} ({compact_revision})"
                        )),
                        other => from_store(other),
                    };
                    return Some(WatchEvent::Error(Box::new(status.to_status())));
                }
                Some(Ok(response)) => {
                    if response.progress {
                        if self.bookmarks {
                            self.pending
                                .push_back(WatchEvent::Bookmark(response.revision.to_string()));
                        }
                        continue;
                    }
                    for event in &response.events {
                        match self.translate(event) {
                            Ok(Some(event)) => self.pending.push_back(event),
                            Ok(None) => {}
                            Err(status) => {
                                self.pending
                                    .push_back(WatchEvent::Error(Box::new(status.to_status())));
                                self.stream = None;
                                break;
                            }
                        }
                    }
                }
            }
        }
    }

    fn translate(&self, event: &Event) -> Result<Option<WatchEvent<T>>, StatusError> {
        let client = &self.client;
        let decode = self.decode;
        let everything = self.filter.labels.is_empty() && self.filter.fields.is_empty();
        if everything && event.kind == EventKind::Put {
            // Without a selector, an update is Modified whenever there was a previous version:
            // no need to decode it (the watch's hot path: every write to the kind).
            let object = decode(client, &event.kv)?;
            return Ok(Some(match event.prev_kv {
                Some(_) => WatchEvent::Modified(object),
                None => WatchEvent::Added(object),
            }));
        }
        let previous = event
            .prev_kv
            .as_ref()
            .map(|kv| decode(client, kv))
            .transpose()?;
        let matched_before = previous
            .as_ref()
            .is_some_and(|object| client.matches(&self.resource, &self.filter, object));
        match event.kind {
            EventKind::Put => {
                let object = decode(client, &event.kv)?;
                let matches_now = client.matches(&self.resource, &self.filter, &object);
                Ok(match (previous.is_some() && matched_before, matches_now) {
                    (true, true) => Some(WatchEvent::Modified(object)),
                    (false, true) => Some(WatchEvent::Added(object)),
                    (true, false) => Some(WatchEvent::Deleted(object)),
                    (false, false) => None,
                })
            }
            EventKind::Delete => Ok(match previous {
                Some(mut object) if matched_before => {
                    object.meta_mut().resource_version = Some(event.kv.mod_revision.to_string());
                    Some(WatchEvent::Deleted(object))
                }
                _ => None,
            }),
        }
    }
}
